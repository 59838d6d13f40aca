"""Her answers as day-by-day series for pictures: worst pain, interference, tablet answers.

One value per local day in her time zone. A day without an answer is NaN (a gap in the
picture), never zero: a missed check-in says nothing about her pain. Nothing here draws or
knows about Telegram; `bot.images` and `bot.doctor_card` turn these series into files.
The study overview's weekly series (/stats) are at the end, with their chart, which draws
through `bot.images` on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.checkins import DRAFT_SUFFIX, split_values
from bot.clock import now
from bot.content import Messages
from bot.doctor_first import ADHERENCE_ITEM  # "Did you take your tablet yesterday?"
from bot.models import Answer, CheckIn, Participant

NAN = math.nan
PERIODS = (30, 90)  # the lengths she can switch between, in days
MIN_ANSWERED_DAYS = 3  # fewer answered days than this make no average worth saying out loud
TOOK_MED_VALUES = ("yes", "missed", "stopped")
NO_NEW_SYMPTOMS = "none"


@dataclass(frozen=True)
class Day:
    """Her answers on one local day (NaN / None where she gave none)."""

    day: date
    worst_pain: float = NAN
    interference: float = NAN
    took_med: str | None = None
    symptoms: tuple[str, ...] = ()

    @property
    def answered(self) -> bool:
        """Tells whether she reported a pain score that day."""
        return not math.isnan(self.worst_pain)


@dataclass(frozen=True)
class Trend:
    """One value per day from `start` to `end` (both included, her local dates)."""

    start: date
    end: date
    days: list[Day]

    @property
    def length(self) -> int:
        """Returns the number of days covered."""
        return len(self.days)

    @property
    def dates(self) -> list[date]:
        """Returns every date covered, oldest first."""
        return [d.day for d in self.days]

    @property
    def worst_pain(self) -> list[float]:
        """Returns the worst-pain series with NaN gaps."""
        return [d.worst_pain for d in self.days]

    @property
    def interference(self) -> list[float]:
        """Returns the interference series with NaN gaps."""
        return [d.interference for d in self.days]

    @property
    def took_med(self) -> list[str | None]:
        """Returns the tablet answers, None where she gave none."""
        return [d.took_med for d in self.days]


@dataclass(frozen=True)
class Summary:
    """The numbers behind the one-line summary, this period against the one before."""

    period_days: int
    answered_days: int
    pain_average: int | None
    interference_average: int | None
    previous_answered_days: int
    previous_pain_average: int | None
    taken: int
    missed: int
    stopped: int

    @property
    def enough(self) -> bool:
        """Tells whether this period has enough answers for an average."""
        return self.pain_average is not None

    @property
    def direction(self) -> str | None:
        """Returns 'down', 'up' or 'same' against the previous period, or None if not known."""
        if self.pain_average is None or self.previous_pain_average is None:
            return None
        if self.pain_average < self.previous_pain_average:
            return "down"
        if self.pain_average > self.previous_pain_average:
            return "up"
        return "same"

    @property
    def unanswered(self) -> int:
        """Returns the days with no tablet answer."""
        return self.period_days - self.taken - self.missed - self.stopped


def zone_of(participant: Participant, default: str) -> ZoneInfo:
    """Returns her time zone (the study default if she has none)."""
    return ZoneInfo(participant.timezone or default)


def today_for(zone: ZoneInfo) -> date:
    """Returns today's date in her time zone."""
    return now().astimezone(zone).date()


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """Returns the UTC instant her local day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _score(value: str | None) -> float:
    """Returns a 0-10 score as a float, NaN for anything else."""
    if value is None or not value.strip().isdigit():
        return NAN
    return float(int(value))


async def load_days(
    *, session: AsyncSession, participant: Participant, start: date, end: date, zone: ZoneInfo
) -> list[Day]:
    """Returns one Day per local date from start to end, from her stored answers."""
    since = local_midnight(start, zone)
    # One day more: the tablet question asks about yesterday, so a check-in tells of the day
    # before it (pain and the rest belong to the check-in's own day).
    until = local_midnight(end + timedelta(days=2), zone)
    result = await session.exec(
        select(CheckIn, Answer)
        .join(Answer, col(Answer.checkin_id) == col(CheckIn.id))
        .where(
            CheckIn.participant_id == participant.id,
            col(CheckIn.due_at) >= since,
            col(CheckIn.due_at) < until,
        )
        .order_by(col(Answer.answered_at), col(Answer.id))
    )
    # Later answers win: if she checked in twice on one day, the newest answer is the day's.
    by_day: dict[date, dict[str, str]] = {}
    for checkin, answer in result.all():
        if answer.item_code.endswith(DRAFT_SUFFIX):
            continue
        day = checkin.due_at.astimezone(zone).date()
        if answer.item_code == ADHERENCE_ITEM:
            day -= timedelta(days=1)
        by_day.setdefault(day, {})[answer.item_code] = answer.value
    days: list[Day] = []
    current = start
    while current <= end:
        values = by_day.get(current, {})
        pain = _score(values.get("worst_pain"))
        interference = _score(values.get("interference"))
        if pain == 0 and "interference" not in values:
            # No pain skips the interference question: pain that is not there got in the
            # way of nothing, so the day counts as 0 rather than a gap.
            interference = 0.0
        took = values.get(ADHERENCE_ITEM)
        symptoms = tuple(
            v for v in split_values(values.get("new_symptoms", "")) if v != NO_NEW_SYMPTOMS
        )
        days.append(
            Day(
                day=current,
                worst_pain=pain,
                interference=interference,
                took_med=took if took in TOOK_MED_VALUES else None,
                symptoms=symptoms,
            )
        )
        current += timedelta(days=1)
    return days


def _average(values: list[float]) -> int | None:
    """Returns the whole-number average of the answered values (half rounds up), if enough."""
    answered = [v for v in values if not math.isnan(v)]
    if len(answered) < MIN_ANSWERED_DAYS:
        return None
    return math.floor(sum(answered) / len(answered) + 0.5)


def summarise(current: list[Day], previous: list[Day]) -> Summary:
    """Returns this period's averages and tablet counts, and the previous period's average."""
    took = [d.took_med for d in current]
    return Summary(
        period_days=len(current),
        answered_days=sum(1 for d in current if d.answered),
        pain_average=_average([d.worst_pain for d in current]),
        interference_average=_average([d.interference for d in current]),
        previous_answered_days=sum(1 for d in previous if d.answered),
        previous_pain_average=_average([d.worst_pain for d in previous]),
        taken=took.count("yes"),
        missed=took.count("missed"),
        stopped=took.count("stopped"),
    )


async def load_trend(
    *, session: AsyncSession, participant: Participant, days: int, default_zone: str
) -> tuple[Trend, Summary]:
    """Returns her last `days` days (today included) and a summary against the days before."""
    zone = zone_of(participant, default_zone)
    end = today_for(zone)
    start = end - timedelta(days=days - 1)
    both = await load_days(
        session=session,
        participant=participant,
        start=start - timedelta(days=days),
        end=end,
        zone=zone,
    )
    previous, current = both[:days], both[days:]
    return Trend(start=start, end=end, days=current), summarise(current, previous)


def summary_sentence(summary: Summary, m: Messages) -> str:
    """Returns the one-line summary in plain words ("... averaged 5 ..., down from 6 ...")."""
    days = summary.period_days
    if not summary.enough:
        return m.get("pictures.summary_too_little", answered=summary.answered_days, days=days)
    direction = summary.direction
    if direction is None:
        return m.get("pictures.summary_first", average=summary.pain_average, days=days)
    return m.get(
        f"pictures.summary_{direction}",
        average=summary.pain_average,
        previous=summary.previous_pain_average,
        days=days,
    )


def tablet_sentence(summary: Summary, m: Messages) -> str | None:
    """Returns her tablet answer counts in words, or None when she gave none."""
    if not (summary.taken or summary.missed or summary.stopped):
        return None
    return m.get(
        "pictures.caption_tablet",
        taken=summary.taken,
        missed=summary.missed,
        stopped=summary.stopped,
    )


# ---------------------------------------------------------------- the study overview (/stats)
#
# Weekly response rate and median worst pain per cohort, drawn in the same style as her trend
# (bot.images: Okabe-Ito colours, each series also told apart by marker and line style, sized
# for a phone). Points resting on fewer than 5 participants are NaN: gaps, never shown.

STATS_GID_RATE = "rate:"  # + cohort code: the line's gid, so tests can read what is plotted
STATS_GID_PAIN = "pain:"
_STATS_STYLES = ("-", "--", "-.", ":")
_STATS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class CohortWeeks:
    """One cohort's weekly figures (NaN where fewer than 5 participants stand behind them)."""

    code: str
    rate: list[float]  # check-ins answered, percent
    pain: list[float]  # median worst pain, 0-10


@dataclass(frozen=True)
class StudyWeeks:
    """The last weeks (their Mondays, oldest first) and each cohort's series."""

    weeks: list[date]
    cohorts: list[CohortWeeks]
    scope: str | None = None  # one cohort, or None for the whole study


def stats_figure(data: StudyWeeks, m: Messages) -> Any:
    """Builds the overview chart: answered % above, median worst pain below, one line each."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator

    from bot import images

    colours = (
        images.VERMILLION,
        images.BLUE,
        images.BLUISH_GREEN,
        images.ORANGE,
        images.REDDISH_PURPLE,
        "#56B4E9",  # sky blue
        "#000000",
        "#F0E442",  # yellow, last: faint on white
    )
    fig = Figure(figsize=images.TREND_SIZE, dpi=images.TREND_DPI, layout="constrained")
    rate_ax = fig.add_subplot(2, 1, 1)
    pain_ax = fig.add_subplot(2, 1, 2, sharex=rate_ax)
    # A point sits mid-week (Thursday noon) so the Monday ticks frame it.
    x = images.day_numbers([w + timedelta(days=3) for w in data.weeks])
    title = (
        m.get("stats.chart_title_cohort", cohort=data.scope, weeks=len(data.weeks))
        if data.scope
        else m.get("stats.chart_title", weeks=len(data.weeks))
    )
    fig.suptitle(title, fontsize=images.TITLE_SIZE * 0.85)
    for n, cohort in enumerate(data.cohorts):
        style: dict[str, Any] = {
            "color": colours[n % len(colours)],
            "linestyle": _STATS_STYLES[n % len(_STATS_STYLES)],
            "marker": _STATS_MARKERS[n % len(_STATS_MARKERS)],
            "linewidth": 2.5,
            "markersize": 8,
            "label": cohort.code,
        }
        rate_ax.plot(x, cohort.rate, gid=STATS_GID_RATE + cohort.code, **style)
        pain_ax.plot(x, cohort.pain, gid=STATS_GID_PAIN + cohort.code, **style)
    rate_ax.set_ylim(-5, 105)
    rate_ax.set_yticks([0, 25, 50, 75, 100])
    rate_ax.set_ylabel(m.get("stats.chart_rate_axis"), fontsize=images.LABEL_SIZE)
    pain_ax.set_ylim(-0.5, 10.5)
    pain_ax.set_yticks([0, 2, 4, 6, 8, 10])
    pain_ax.set_ylabel(m.get("stats.chart_pain_axis"), fontsize=images.LABEL_SIZE)
    for ax in (rate_ax, pain_ax):
        ax.grid(axis="y", color="#dddddd")
        ax.tick_params(axis="both", labelsize=images.TICK_SIZE)
    if data.cohorts:
        rate_ax.legend(
            loc="lower left",
            bbox_to_anchor=(0.0, 1.01),
            ncol=min(3, len(data.cohorts)),
            fontsize=images.LABEL_SIZE,
            frameon=False,
            borderaxespad=0.0,
        )
    rate_ax.tick_params(labelbottom=False)
    # Four dates, three weeks apart, counted back from this week: never crowded.
    ticks = data.weeks[::-3][::-1]
    pain_ax.xaxis.set_major_locator(FixedLocator(images.day_numbers(ticks)))
    pain_ax.xaxis.set_major_formatter(DateFormatter(m.get("pictures.date_format")))
    if data.weeks:
        first = images.day_numbers([data.weeks[0]])[0] - 0.5
        pain_ax.set_xlim(first, first + 7 * len(data.weeks))
    pain_ax.set_xlabel(m.get("stats.chart_note"), fontsize=images.NOTE_SIZE, color=images.GREY)
    return fig


def render_stats_png(data: StudyWeeks, m: Messages) -> bytes:
    """Draws the overview chart as PNG bytes (blocking: run it in a worker thread)."""
    from bot import images

    return images.rendered(lambda: images.png_bytes(stats_figure(data, m)))
