"""Her trend data and picture: one point per answered day, gaps for missed days, a summary."""

from __future__ import annotations

import io
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.text import Text

from bot import clock
from bot.charts import Day, Summary, Trend, load_trend, summarise, summary_sentence
from bot.content import messages
from bot.db import Database
from bot.images import (
    GID_INTERFERENCE,
    GID_MISSED,
    GID_PAIN,
    GID_STOPPED,
    GID_TAKEN,
    render_trend_png,
    trend_figure,
)
from bot.models import Answer, CheckIn, CheckInStatus, Participant
from bot.safety_scan import lock_screen_words
from tests.conftest import Harness
from tests.factories import make_active_participant
from tests.picture_steps import ANSWERED, TWO_WEEKS, live_two_weeks

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHONE_WIDTH_PT = 390  # about how wide Telegram shows a photo on a phone
MIN_PHONE_FONT_PT = 11
# The picture is one she asked for, so "Tablet taken" may stay; it still names no drug or
# illness (the lock-screen list in content/safety/, less the words for taking a medicine).
_NAMES = [w for w in lock_screen_words("en") if w not in {"tablet", "medicine", "medication"}]
LOCK_WORD = re.compile(r"\b(" + "|".join(re.escape(w) for w in _NAMES) + ")", re.IGNORECASE)


# ---------------------------------------------------------------- helpers


async def trend_of(h: Harness, participant: Participant, days: int = 30) -> tuple[Trend, Summary]:
    """Loads her trend the way /mytrend does."""
    async with h.db.session() as session:
        return await load_trend(
            session=session,
            participant=participant,
            days=days,
            default_zone=h.settings.default_timezone,
        )


def line(fig: Figure, gid: str) -> Line2D:
    """Returns the one plotted line with this id."""
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line {gid!r}, found {len(found)}"
    return found[0]


def ys(ln: Line2D) -> np.ndarray[Any, Any]:
    """Returns a line's y values as floats."""
    return np.asarray(ln.get_ydata(), dtype=float)


def shown_texts(fig: Figure) -> list[Text]:
    """Returns every visible, non-empty text on the figure (titles, labels, legend, ticks)."""
    fig.canvas.draw()  # tick labels exist only once drawn
    return [
        t
        for t in fig.findobj(Text)
        if isinstance(t, Text) and t.get_visible() and t.get_text().strip()
    ]


async def add_day(
    db: Database, participant: Participant, due_at: datetime, **answers: str
) -> None:
    """Stores one completed check-in with these answers straight in the database."""
    async with db.session() as session:
        checkin = CheckIn(
            participant_id=participant.id or 0,
            questionnaire_id="daily_checkin",
            questionnaire_version="1.0",
            due_at=due_at,
            window_closes_at=due_at + timedelta(hours=6),
            sent_at=due_at,
            status=CheckInStatus.completed,
        )
        session.add(checkin)
        await session.flush()
        for code, value in answers.items():
            session.add(Answer(checkin_id=checkin.id or 0, item_code=code, value=value))


# ---------------------------------------------------------------- data from the real flow


async def test_two_weeks_of_checkins_give_one_point_per_answered_day_and_gaps_for_missed(
    harness: Harness,
) -> None:
    participant = await live_two_weeks(harness)
    trend, _ = await trend_of(harness, participant)

    assert trend.length == 30
    assert trend.end == date(2026, 1, 25)  # the last evening, in London
    assert trend.start == date(2025, 12, 27)
    # The last 14 days are the two weeks she lived; the 16 before have no answers at all.
    expected = [float("nan")] * 16 + [
        float(e.pain) if e is not None else float("nan") for e in TWO_WEEKS
    ]
    assert np.array_equal(np.array(trend.worst_pain), np.array(expected), equal_nan=True)
    # Missed check-ins are gaps, never zeros; the one real 0 (a pain-free day) stays a 0.
    missed = [16 + i for i, e in enumerate(TWO_WEEKS) if e is None]
    assert all(math.isnan(trend.worst_pain[i]) for i in missed)
    assert trend.worst_pain.count(0.0) == 1
    # "Did you take your tablet yesterday?": each answer marks the day before its check-in,
    # and today's mark waits for tomorrow's check-in.
    assert trend.took_med[15:] == [e.took if e else None for e in TWO_WEEKS] + [None]


async def test_trend_figure_plots_her_answers_with_nan_gaps(harness: Harness) -> None:
    participant = await live_two_weeks(harness)
    trend, _ = await trend_of(harness, participant)
    fig = trend_figure(trend, messages("en"))

    pain = ys(line(fig, GID_PAIN))
    assert len(pain) == 30
    assert int(np.isfinite(pain).sum()) == len(ANSWERED) == 10
    assert [float(v) for v in pain[np.isfinite(pain)]] == [float(e.pain) for e in ANSWERED]
    gaps = [i for i in range(16, 30) if math.isnan(pain[i])]
    assert gaps == [16 + i for i, e in enumerate(TWO_WEEKS) if e is None]  # 19, 23, 24, 27

    interference = ys(line(fig, GID_INTERFERENCE))
    assert int(np.isfinite(interference).sum()) == 10
    # The pain-free evening skipped the interference question: drawn as 0, not as a gap.
    assert interference[16 + 6] == 0.0
    assert math.isnan(interference[16 + 7])

    assert len(line(fig, GID_TAKEN).get_xdata()) == 8
    assert len(line(fig, GID_MISSED).get_xdata()) == 2
    assert len(line(fig, GID_STOPPED).get_xdata()) == 0


async def test_summary_sentence_matches_her_answers(harness: Harness) -> None:
    participant = await live_two_weeks(harness)
    _, summary = await trend_of(harness, participant)

    # (2+3+4+5+6+0+7+6+5+4) / 10 = 4.2; no answers in the 30 days before.
    assert summary.answered_days == 10
    assert summary.pain_average == 4
    assert summary.interference_average == 3  # (1+2+3+4+5+0+6+5+4+3) / 10 = 3.3
    assert (summary.taken, summary.missed, summary.stopped) == (8, 2, 0)
    assert summary.unanswered == 20
    assert summary.direction is None
    assert (
        summary_sentence(summary, messages("en"))
        == "Your worst pain averaged 4 in the last 30 days."
    )


# ---------------------------------------------------------------- summary rules


async def test_pain_is_compared_with_the_period_of_the_same_length_before(
    harness: Harness,
) -> None:
    participant = await make_active_participant(harness.db)
    evening = clock.now().replace(hour=19)
    for n in range(5):  # the 30 days before: worst pain 6 on five days
        await add_day(harness.db, participant, evening - timedelta(days=40 + n), worst_pain="6")
    for n, pain in enumerate(["5", "4", "6", "5"]):  # the last 30 days: 20/4 = 5
        await add_day(harness.db, participant, evening - timedelta(days=n + 1), worst_pain=pain)
    _, summary = await trend_of(harness, participant)

    assert (summary.pain_average, summary.previous_pain_average) == (5, 6)
    assert summary.direction == "down"
    assert summary_sentence(summary, messages("en")) == (
        "Your worst pain averaged 5 in the last 30 days, down from 6 in the 30 days before."
    )
    # Ninety days reach back over both: one average, nothing before it to compare with.
    _, longer = await trend_of(harness, participant, days=90)
    assert longer.answered_days == 9
    assert longer.direction is None


def test_up_same_and_half_rounding_in_the_summary() -> None:
    m = messages("en")
    day = date(2026, 1, 1)

    def days(*pains: float) -> list[Day]:
        """Returns answered days with these pain scores."""
        return [Day(day=day, worst_pain=p) for p in pains]

    up = summarise(days(5, 6, 6), days(3, 4, 4))  # 5.67 -> 6 against 3.67 -> 4
    assert summary_sentence(up, m).endswith("up from 4 in the 3 days before.")
    same = summarise(days(4, 5, 5, 4), days(4, 4, 5))  # 4.5 rounds up to 5; 4.33 -> 4
    assert same.pain_average == 5 and same.direction == "up"
    level = summarise(days(4, 4, 4), days(4, 5, 3))
    assert summary_sentence(level, m) == (
        "Your worst pain averaged 4 in the last 3 days, about the same as the 3 days before."
    )


def test_too_few_answers_give_no_average_but_say_how_many() -> None:
    day = date(2026, 1, 1)
    current = [Day(day=day, worst_pain=8), Day(day=day, worst_pain=2)] + [Day(day=day)] * 28
    summary = summarise(current, [])
    assert not summary.enough
    assert summary.pain_average is None
    assert summary_sentence(summary, messages("en")) == (
        "You answered on 2 of the last 30 days. "
        "After a few more check-ins, this picture will show more."
    )


async def test_days_are_her_local_days(harness: Harness) -> None:
    participant = await make_active_participant(harness.db, timezone="America/New_York")
    # 21:00 in New York on Sunday 11 January is 02:00 UTC on Monday 12 January.
    await add_day(harness.db, participant, datetime(2026, 1, 12, 2, 0, tzinfo=UTC), worst_pain="7")
    trend, _ = await trend_of(harness, participant)
    assert trend.end == date(2026, 1, 12)  # 04:00 in New York
    assert trend.worst_pain[-2] == 7.0  # Sunday, her day
    assert math.isnan(trend.worst_pain[-1])


async def test_a_second_checkin_on_one_day_counts_once_with_the_newer_answer(
    harness: Harness,
) -> None:
    participant = await make_active_participant(harness.db)
    morning = clock.now() - timedelta(days=1)
    await add_day(harness.db, participant, morning, worst_pain="3")
    clock.advance(timedelta(minutes=1))  # the evening answer is stored later
    await add_day(harness.db, participant, morning + timedelta(hours=9), worst_pain="6")
    trend, summary = await trend_of(harness, participant)
    assert trend.worst_pain[-2] == 6.0
    assert summary.answered_days == 1


# ---------------------------------------------------------------- the picture itself


async def test_trend_png_decodes_at_phone_friendly_size_and_fonts(harness: Harness) -> None:
    participant = await live_two_weeks(harness)
    trend, _ = await trend_of(harness, participant)
    png = render_trend_png(trend, messages("en"))

    assert png.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(png))
    height, width = pixels.shape[:2]
    assert (width, height) == (1088, 1292)
    assert pixels.std() > 0.05  # something is drawn, not a blank canvas

    fig = trend_figure(trend, messages("en"))
    width_pt = fig.get_figwidth() * 72
    smallest = min(t.get_fontsize() for t in shown_texts(fig))
    # Scaled down to a phone's width, the smallest text is still comfortably readable.
    assert smallest * PHONE_WIDTH_PT / width_pt >= MIN_PHONE_FONT_PT


async def test_picture_title_and_words_name_no_medicine_or_illness(harness: Harness) -> None:
    participant = await live_two_weeks(harness)
    trend, _ = await trend_of(harness, participant, days=90)
    fig = trend_figure(trend, messages("en"))

    assert fig.get_suptitle() == "Your last 90 days"
    words = [t.get_text() for t in shown_texts(fig)]
    assert "Worst joint pain" in words and "A gap is a day with no answer." in words
    assert not [w for w in words if LOCK_WORD.search(w)]


def test_colours_are_okabe_ito_and_series_differ_by_marker_too() -> None:
    day = date(2026, 1, 1)
    trend = Trend(start=day, end=day, days=[Day(day=day, worst_pain=3, took_med="yes")])
    fig = trend_figure(trend, messages("en"))
    okabe_ito = {"#d55e00", "#0072b2", "#009e73", "#e69f00", "#cc79a7"}
    panels = [(GID_PAIN, GID_INTERFERENCE), (GID_TAKEN, GID_MISSED, GID_STOPPED)]
    for gids in panels:
        lines = [line(fig, gid) for gid in gids]
        assert {str(ln.get_color()).lower() for ln in lines} <= okabe_ito
        # Within a panel no two series share a colour or a marker: colour is never the only cue.
        assert len({str(ln.get_color()) for ln in lines}) == len(lines)
        assert len({str(ln.get_marker()) for ln in lines}) == len(lines)
