"""Her one-page card for the next visit: pain, tablet answers, symptoms, barriers, treatment
and her own questions, as a PDF she can show or print.

The card is for her, so it carries no name, pseudonym or Telegram id; dates are in her time
zone. `load_card` gathers the facts (async, database); `card_figure` lays them out on one A4
page (blocking; tests inspect the figure); `render_card_pdf` writes it with fonts embedded as
TrueType (fonttype 42), so the text stays searchable and copyable in a PDF reader.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.charts import Day, Summary, Trend, load_days, load_trend, today_for, zone_of
from bot.clock import now
from bot.content import Messages, questionnaire
from bot.models import BarrierReport, Participant, SavedQuestion, TherapyChange

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib (about half a second to import) is loaded when the first card is drawn, not at
# start-up: most runs of the bot never draw one.

CARD_DAYS = 30  # pain, interference and tablet answers
HISTORY_DAYS = 90  # symptoms and barriers: a visit is often months away
MAX_CHANGES = 3
# Printed lines each section may use, so that her questions always keep room on the page.
SECTION_LINES = {"tablet": 1, "symptoms": 5, "barriers": 4, "therapy": 4}
MAX_ENTRY_LINES = 3  # a long question (or list entry) is cut after this many lines
A4 = (8.27, 11.69)
WRAP = 90  # characters per body line at BODY_SIZE within the page margins
LEFT = 0.08
TITLE_SIZE = 20
HEADING_SIZE = 13
BODY_SIZE = 11
SMALL_SIZE = 9
LINE = BODY_SIZE * 1.5 / (A4[1] * 72)  # one body line as a fraction of the page height
HEADING_GAP = LINE * 1.9
BOTTOM = 0.065  # the footer lives below this
GID_QUESTION = "question"  # marks the lines of her questions, for tests


@dataclass(frozen=True)
class Barrier:
    """One barrier code she reported, how often and when last."""

    code: str
    count: int
    last: date


@dataclass(frozen=True)
class Change:
    """One change to her treatment that she says her doctor advised."""

    kind: str
    new_medicine: str | None
    on: date


@dataclass(frozen=True)
class CardData:
    """Everything on the card, already in her local dates."""

    made_on: date
    trend: Trend
    summary: Summary
    symptom_days: list[Day]  # newest first, days with something new only
    history_days: int
    barriers: list[Barrier]
    therapy_status: str
    medicine: str | None
    changes: list[Change]
    questions: list[str] = field(default_factory=list)


async def saved_questions(
    *, session: AsyncSession, participant: Participant
) -> list[SavedQuestion]:
    """Returns her saved questions that are not deleted, oldest first."""
    result = await session.exec(
        select(SavedQuestion)
        .where(
            SavedQuestion.participant_id == participant.id,
            col(SavedQuestion.deleted_at).is_(None),
        )
        .order_by(col(SavedQuestion.created_at), col(SavedQuestion.id))
    )
    return list(result.all())


async def load_card(
    *, session: AsyncSession, participant: Participant, default_zone: str
) -> CardData:
    """Gathers the facts for her card from her answers, reports and saved questions."""
    zone = zone_of(participant, default_zone)
    today = today_for(zone)
    trend, summary = await load_trend(
        session=session, participant=participant, days=CARD_DAYS, default_zone=default_zone
    )
    history = await load_days(
        session=session,
        participant=participant,
        start=today - timedelta(days=HISTORY_DAYS - 1),
        end=today,
        zone=zone,
    )
    since = now() - timedelta(days=HISTORY_DAYS)
    reports = await session.exec(
        select(BarrierReport)
        .where(
            BarrierReport.participant_id == participant.id,
            col(BarrierReport.recorded_at) >= since,
        )
        .order_by(col(BarrierReport.recorded_at))
    )
    barriers: dict[str, Barrier] = {}
    for report in reports.all():
        seen = barriers.get(report.code)
        barriers[report.code] = Barrier(
            code=report.code,
            count=(seen.count if seen else 0) + 1,
            last=report.recorded_at.astimezone(zone).date(),
        )
    changes = await session.exec(
        select(TherapyChange)
        .where(TherapyChange.participant_id == participant.id)
        .order_by(col(TherapyChange.recorded_at).desc(), col(TherapyChange.id).desc())
        .limit(MAX_CHANGES)
    )
    questions = await saved_questions(session=session, participant=participant)
    return CardData(
        made_on=today,
        trend=trend,
        summary=summary,
        symptom_days=[d for d in reversed(history) if d.symptoms],
        history_days=HISTORY_DAYS,
        barriers=sorted(barriers.values(), key=lambda b: (-b.count, b.code)),
        therapy_status=participant.therapy_status,
        medicine=participant.medicine,
        changes=[
            Change(
                kind=c.kind,
                new_medicine=c.new_medicine,
                on=(c.changed_on or c.recorded_at).astimezone(zone).date(),
            )
            for c in changes.all()
        ],
        questions=[q.text for q in questions],
    )


# ---------------------------------------------------------------- words


def _date(m: Messages, day: date) -> str:
    """Formats a local date the way the card shows dates."""
    return day.strftime(m.get("pictures.card_date_format"))


def medicine_label(m: Messages, code: str | None) -> str:
    """Returns a medicine in words (the set-up label when it is one of ours)."""
    if not code:
        return m.get("pictures.card_medicine_unknown")
    key = f"onboarding.medicine.{code}"
    return m.get(key) if key in m.texts else code


def symptom_labels(m: Messages, values: tuple[str, ...]) -> str:
    """Returns the check-in's wording for the symptoms she ticked."""
    item = questionnaire("daily_checkin").item("new_symptoms")
    labels = []
    for value in values:
        option = item.option(value) if item else None
        labels.append(option.text(m.locale) if option else value)
    return ", ".join(labels)


def pain_lines(m: Messages, data: CardData) -> list[str]:
    """Returns the pain and interference numbers under the small chart."""
    s, days = data.summary, data.trend.length
    scores = [v for v in data.trend.worst_pain if not math.isnan(v)]
    if not scores:
        return [m.get("pictures.card_pain_none")]
    low, high = int(min(scores)), int(max(scores))
    if s.pain_average is None:
        return [
            m.get(
                "pictures.card_pain_few", answered=s.answered_days, days=days, low=low, high=high
            )
        ]
    lines = [
        m.get(
            "pictures.card_pain_numbers",
            average=s.pain_average,
            low=low,
            high=high,
            answered=s.answered_days,
            days=days,
        )
    ]
    if s.interference_average is not None:
        lines.append(m.get("pictures.card_interference_numbers", average=s.interference_average))
    return lines


def sections(m: Messages, data: CardData) -> list[tuple[str, list[str], int]]:
    """Returns the sections between the chart and her questions: heading, entries, line cap."""
    s = data.summary
    tablet = [
        m.get(
            "pictures.card_tablet_numbers",
            taken=s.taken,
            missed=s.missed,
            stopped=s.stopped,
            unanswered=s.unanswered,
        )
    ]
    symptoms = [
        m.get(
            "pictures.card_symptom_line",
            date=_date(m, d.day),
            symptoms=symptom_labels(m, d.symptoms),
        )
        for d in data.symptom_days
    ]
    barriers = [
        m.get(
            "pictures.card_barrier_line",
            label=m.get(f"pictures.barrier.{b.code}")
            if f"pictures.barrier.{b.code}" in m.texts
            else b.code,
            count=b.count,
            date=_date(m, b.last),
        )
        for b in data.barriers
    ]
    status_key = f"pictures.therapy_status.{data.therapy_status}"
    if status_key not in m.texts:
        status_key = "pictures.therapy_status.taking"
    therapy = [m.get(status_key, medicine=medicine_label(m, data.medicine))]
    for change in data.changes:
        change_key = f"pictures.therapy_change.{change.kind}"
        if change_key in m.texts:
            words = m.get(change_key, medicine=medicine_label(m, change.new_medicine))
            therapy.append(
                m.get("pictures.card_change_line", date=_date(m, change.on), change=words)
            )
    return [
        (m.get("pictures.card_tablet_heading"), tablet, SECTION_LINES["tablet"]),
        (
            m.get("pictures.card_symptoms_heading", days=data.history_days),
            symptoms,
            SECTION_LINES["symptoms"],
        ),
        (m.get("pictures.card_barriers_heading"), barriers, SECTION_LINES["barriers"]),
        (m.get("pictures.card_therapy_heading"), therapy, SECTION_LINES["therapy"]),
    ]


@lru_cache(maxsize=1)
def _font_chars() -> frozenset[int]:
    """Returns the code points the card's font can draw."""
    from matplotlib import font_manager, rcParams
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    return frozenset(FT2Font(path).get_charmap())


def printable(text: str) -> str:
    """Drops what the font cannot draw (emoji, mostly), which would print as empty boxes."""
    drawable = _font_chars()
    kept = "".join(ch for ch in text if ord(ch) in drawable or ch.isspace())
    return " ".join(kept.split())


def question_entries(m: Messages, questions: list[str]) -> list[str]:
    """Returns her questions numbered, each on one line before wrapping."""
    return [
        m.get("pictures.card_question_line", number=number, text=printable(text))
        for number, text in enumerate(questions, start=1)
    ]


def fit(m: Messages, entries: list[str], room: int) -> list[str]:
    """Wraps entries to the page and keeps as many as fit in `room` lines ('... and N more')."""
    out: list[str] = []
    for index, entry in enumerate(entries):
        wrapped = textwrap.wrap(entry, WRAP, subsequent_indent="    ") or [entry]
        if len(wrapped) > MAX_ENTRY_LINES:
            wrapped = [*wrapped[: MAX_ENTRY_LINES - 1], wrapped[MAX_ENTRY_LINES - 1] + "..."]
        left = len(entries) - index
        # Keep one line free to say how many did not fit.
        if len(out) + len(wrapped) > room - (1 if left > 1 else 0):
            out.append(m.get("pictures.card_more", count=left))
            break
        out.extend(wrapped)
    return out or [m.get("pictures.card_none")]


# ---------------------------------------------------------------- drawing


def card_figure(data: CardData, m: Messages) -> Figure:
    """Lays out her card on one A4 page: title, small chart, numbers, lists, questions."""
    from matplotlib.figure import Figure

    from bot import images

    fig = Figure(figsize=A4, dpi=100)
    y = 0.955

    def text(line: str, *, size: float = BODY_SIZE, bold: bool = False, gid: str = "") -> None:
        """Writes one line at the cursor and moves the cursor down."""
        nonlocal y
        # parse_math=False: a "$" in her question must stay a dollar sign, not start maths.
        fig.text(
            LEFT,
            y,
            line,
            fontsize=size,
            fontweight="bold" if bold else "normal",
            va="top",
            parse_math=False,
            gid=gid or None,
        )
        y -= LINE * size / BODY_SIZE

    text(m.get("pictures.card_title"), size=TITLE_SIZE, bold=True)
    y -= LINE * 0.6
    made = m.get(
        "pictures.card_made",
        date=_date(m, data.made_on),
        start=_date(m, data.trend.start),
        end=_date(m, data.trend.end),
    )
    text(made, size=BODY_SIZE)
    y -= LINE * 0.6

    text(m.get("pictures.card_pain_heading"), size=HEADING_SIZE, bold=True)
    chart_height = 0.15
    ax = fig.add_axes((LEFT + 0.05, y - chart_height, 0.86 - LEFT, chart_height))
    x = images.day_numbers(data.trend.dates)
    ax.plot(
        x,
        data.trend.worst_pain,
        color=images.VERMILLION,
        linewidth=1.8,
        marker="o",
        markersize=3.5,
        label=m.get("pictures.trend_pain"),
        gid=images.GID_PAIN,
    )
    ax.plot(
        x,
        data.trend.interference,
        color=images.BLUE,
        linewidth=1.5,
        linestyle="--",
        marker="s",
        markersize=3,
        label=m.get("pictures.trend_interference"),
        gid=images.GID_INTERFERENCE,
    )
    ax.set_ylim(-0.5, 10.5)
    ax.set_yticks([0, 5, 10])
    ax.grid(axis="y", color="#dddddd")
    ax.legend(loc="upper left", fontsize=SMALL_SIZE, ncol=2, frameon=False)
    images.date_axis(ax, data.trend, m, labelsize=SMALL_SIZE)
    y -= chart_height + LINE * 2.2
    for line in pain_lines(m, data):
        text(line)
    y -= LINE * 0.5

    for heading, entries, cap in sections(m, data):
        text(heading, size=HEADING_SIZE, bold=True)
        for line in fit(m, entries, cap):
            text(line)
        y -= LINE * 0.5

    text(m.get("pictures.card_questions_heading"), size=HEADING_SIZE, bold=True)
    room = int((y - BOTTOM) / LINE)
    for line in fit(m, question_entries(m, data.questions), room):
        text(line, gid=GID_QUESTION)

    fig.text(
        0.5,
        0.035,
        m.get("pictures.card_footer"),
        ha="center",
        fontsize=SMALL_SIZE,
        color=images.GREY,
        parse_math=False,
    )
    return fig


def pdf_bytes(fig: Figure) -> bytes:
    """Returns the figure as a one-page PDF with TrueType fonts (searchable text)."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig.savefig(
            buffer,
            format="pdf",
            metadata={"Creator": None, "Producer": None, "CreationDate": None},
        )
    return buffer.getvalue()


def render_card_pdf(data: CardData, m: Messages) -> bytes:
    """Lays out her card and returns the PDF bytes (blocking: run it in a worker thread)."""
    from bot import images

    return images.rendered(lambda: pdf_bytes(card_figure(data, m)))


def render_card_png(data: CardData, m: Messages, *, dpi: float = 100) -> bytes:
    """Returns the card as a PNG (for previews and checks; the chat gets the PDF)."""
    from bot import images

    return images.rendered(lambda: images.png_bytes(card_figure(data, m), dpi=dpi))
