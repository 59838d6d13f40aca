"""The study at a glance, for /stats and `adherence-bot stats`: who is in, who answers, how
they are, which alerts fire, per cohort on request.

Small cells: any number that describes fewer than 5 participants (1 to 4) is shown as "<5",
and a chart point resting on fewer than 5 is left out, so the overview never singles anyone
out. Definitions (the same in the chat and the terminal):

- enrolled: everyone who joined and was not deleted; unreachable: blocked us, still in.
- response rate: scheduled check-ins sent to her whose window has closed (or that she
  answered), answered / all; by due time, over the last 7 and 30 days.
- tablet: the share of "did you take your tablet" answers that were "yes".
- median worst pain: the median of every worst-pain answer (0-10) in the period.
- open alerts: not closed; alerts per week: alert rows created that week (a row gathers
  repeated triggers of one kind, so a noisy rule shows as a high count on one row too).
- broadcasts: those with a delivery sent in the last 30 days, in the whole study, also in a
  cohort's overview (`bot.broadcasts.count_sent`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import broadcasts
from bot.charts import CohortWeeks, StudyWeeks
from bot.checkins import DRAFT_SUFFIX
from bot.clock import now
from bot.config import Settings
from bot.content import Messages
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    CheckIn,
    CheckInOrigin,
    Cohort,
    Lifecycle,
    Participant,
)

SMALL = 5  # cells describing fewer participants than this are shown as "<5"
WINDOWS = (7, 30)
CHART_WEEKS = 12
ALERT_WEEKS = 4  # weeks of alerts per kind in the text (the chart has twelve)
NO_COHORT = "open"  # how participants who joined without an invite are grouped
TABLET_ITEM, PAIN_ITEM = "took_med", "worst_pain"


def team_zone(settings: Settings) -> ZoneInfo:
    """Returns the care team's time zone: weeks start on its Mondays."""
    return ZoneInfo(settings.coverage_timezone or settings.default_timezone)


def count_cell(count: int) -> str:
    """Returns a count of participants, or "<5" for 1 to 4 of them."""
    return "<5" if 0 < count < SMALL else str(count)


@dataclass(frozen=True)
class Share:
    """A part of a whole, with how many participants it rests on."""

    part: int
    whole: int
    people: int

    @property
    def small(self) -> bool:
        """Tells whether it rests on 1 to 4 participants."""
        return 0 < self.people < SMALL

    @property
    def percent(self) -> int | None:
        """Returns the whole-number percentage (half up), None when there is no whole."""
        if not self.whole:
            return None
        return math.floor(100 * self.part / self.whole + 0.5)


@dataclass(frozen=True)
class Median:
    """A median score with how many participants it rests on."""

    value: float | None
    people: int

    @property
    def small(self) -> bool:
        """Tells whether it rests on 1 to 4 participants."""
        return 0 < self.people < SMALL


@dataclass(frozen=True)
class Window:
    """Check-in figures for the last `days` days."""

    days: int
    answered: Share
    tablet: Share
    pain: Median


@dataclass(frozen=True)
class AlertCount:
    """How many alerts, from how many participants."""

    count: int
    people: int

    @property
    def cell(self) -> str:
        """Returns the count, or "<5" when it comes from 1 to 4 participants."""
        return "<5" if 0 < self.people < SMALL else str(self.count)


@dataclass
class Overview:
    """Everything /stats shows for the whole study or one cohort."""

    cohort: str | None
    enrolled: int = 0
    active: int = 0
    paused: int = 0
    withdrawn: int = 0
    unreachable: int = 0
    windows: list[Window] = field(default_factory=list)
    open_alerts: dict[str, AlertCount] = field(default_factory=dict)
    weekly_alerts: dict[str, list[AlertCount]] = field(default_factory=dict)
    alert_weeks: list[date] = field(default_factory=list)
    broadcasts: int = 0  # sent in the whole study (a broadcast may reach several cohorts)
    cohorts: list[str] = field(default_factory=list)
    chart: StudyWeeks | None = None


def week_start(at: datetime, zone: ZoneInfo) -> date:
    """Returns the Monday of the team's week that holds this instant."""
    day = at.astimezone(zone).date()
    return day - timedelta(days=day.weekday())


def _instant(day: date, zone: ZoneInfo) -> datetime:
    """Returns the instant the team's local day begins."""
    return datetime.combine(day, time(0), tzinfo=zone)


@dataclass(frozen=True)
class _Row:
    """One check-in with what the overview needs of it."""

    participant_id: int
    group: str
    due_at: datetime
    counts: bool  # counts towards the response rate
    answered: bool
    tablet: str | None
    pain: float | None


async def known_cohorts(*, session: AsyncSession) -> list[str]:
    """Returns every cohort code, alphabetically."""
    return sorted((await session.exec(select(Cohort.code))).all())


async def _participants(
    session: AsyncSession, cohort_id: int | None, scoped: bool
) -> dict[int, tuple[Participant, str]]:
    """Returns participants (not deleted) in scope, each with their cohort group."""
    codes = {c.id: c.code for c in (await session.exec(select(Cohort))).all()}
    query = select(Participant).where(Participant.status != Lifecycle.deleted)
    if scoped:
        query = query.where(Participant.cohort_id == cohort_id)
    found: dict[int, tuple[Participant, str]] = {}
    for p in (await session.exec(query)).all():
        assert p.id is not None
        found[p.id] = (p, codes.get(p.cohort_id, NO_COHORT) if p.cohort_id else NO_COHORT)
    return found


async def _checkins(
    session: AsyncSession, people: dict[int, tuple[Participant, str]], since: datetime
) -> list[_Row]:
    """Returns the check-ins due since `since` of the participants in scope, with answers."""
    at = now()
    rows = await session.exec(
        select(CheckIn).where(col(CheckIn.due_at) >= since, col(CheckIn.due_at) < at)
    )
    checkins = [c for c in rows.all() if c.participant_id in people]
    answers: dict[int, dict[str, str]] = defaultdict(dict)
    ids = [c.id for c in checkins]
    for start in range(0, len(ids), 500):  # stays under every driver's parameter limit
        chunk = ids[start : start + 500]
        found = await session.exec(
            select(Answer).where(
                col(Answer.checkin_id).in_(chunk),
                col(Answer.item_code).in_((TABLET_ITEM, PAIN_ITEM)),
            )
        )
        for a in found.all():
            if not a.item_code.endswith(DRAFT_SUFFIX):
                answers[a.checkin_id][a.item_code] = a.value
    out: list[_Row] = []
    for c in checkins:
        assert c.id is not None
        values = answers.get(c.id, {})
        answered = c.first_answer_at is not None
        closed = c.window_closes_at <= at
        counts = (
            c.origin == CheckInOrigin.scheduled and c.sent_at is not None and (answered or closed)
        )
        raw_pain = values.get(PAIN_ITEM, "").strip()
        out.append(
            _Row(
                participant_id=c.participant_id,
                group=people[c.participant_id][1],
                due_at=c.due_at,
                counts=counts,
                answered=answered,
                tablet=values.get(TABLET_ITEM),
                pain=float(raw_pain) if raw_pain.isdigit() else None,
            )
        )
    return out


def _rate(rows: list[_Row]) -> Share:
    """Returns answered / due of the rows that count, and how many people they cover."""
    due = [r for r in rows if r.counts]
    answered = sum(1 for r in due if r.answered)
    return Share(answered, len(due), len({r.participant_id for r in due}))


def _tablet(rows: list[_Row]) -> Share:
    """Returns the "yes" answers among the tablet answers."""
    said = [r for r in rows if r.tablet is not None]
    yes = sum(1 for r in said if r.tablet == "yes")
    return Share(yes, len(said), len({r.participant_id for r in said}))


def _pain(rows: list[_Row]) -> Median:
    """Returns the median worst pain of the rows with a pain answer."""
    scored = [r for r in rows if r.pain is not None]
    values = [r.pain for r in scored if r.pain is not None]
    median = float(statistics.median(values)) if values else None
    return Median(median, len({r.participant_id for r in scored}))


def _weekly(
    rows: list[_Row], weeks: list[date], zone: ZoneInfo
) -> tuple[list[float], list[float]]:
    """Returns the weekly response rate (%) and median worst pain; NaN where fewer than 5
    participants stand behind the point (or there is nothing to show)."""
    by_week: dict[date, list[_Row]] = defaultdict(list)
    for r in rows:
        by_week[week_start(r.due_at, zone)].append(r)
    rates: list[float] = []
    pains: list[float] = []
    for week in weeks:
        group = by_week.get(week, [])
        rate, pain = _rate(group), _pain(group)
        enough = rate.people >= SMALL and rate.percent is not None
        rates.append(100 * rate.part / rate.whole if enough and rate.whole else math.nan)
        ok = pain.people >= SMALL and pain.value is not None
        pains.append(pain.value if ok and pain.value is not None else math.nan)
    return rates, pains


async def _alerts(
    session: AsyncSession,
    people: dict[int, tuple[Participant, str]],
    weeks: list[date],
    zone: ZoneInfo,
) -> tuple[dict[str, AlertCount], dict[str, list[AlertCount]]]:
    """Returns open alerts by kind, and alerts created per kind per week."""
    since = _instant(weeks[0], zone)
    rows = await session.exec(
        select(Alert).where(
            (col(Alert.status) != AlertStatus.closed) | (col(Alert.created_at) >= since)
        )
    )
    alerts = [a for a in rows.all() if a.participant_id in people]
    open_people: dict[str, set[int]] = defaultdict(set)
    open_count: dict[str, int] = defaultdict(int)
    week_people: dict[tuple[str, date], set[int]] = defaultdict(set)
    week_count: dict[tuple[str, date], int] = defaultdict(int)
    for a in alerts:
        if a.status != AlertStatus.closed:
            open_people[a.kind].add(a.participant_id)
            open_count[a.kind] += 1
        if a.created_at >= since:
            key = (a.kind, week_start(a.created_at, zone))
            week_people[key].add(a.participant_id)
            week_count[key] += 1
    opened = {k: AlertCount(open_count[k], len(open_people[k])) for k in sorted(open_count)}
    kinds = sorted({k for k, _ in week_count})
    weekly = {
        k: [AlertCount(week_count[(k, w)], len(week_people[(k, w)])) for w in weeks] for k in kinds
    }
    return opened, weekly


async def overview(
    *, session: AsyncSession, settings: Settings, cohort: str | None = None
) -> Overview | None:
    """Returns the overview of the study, or of one cohort (None: no such cohort)."""
    zone = team_zone(settings)
    cohort_id: int | None = None
    if cohort is not None:
        found = (await session.exec(select(Cohort).where(Cohort.code == cohort))).first()
        if found is None:
            return None
        cohort_id = found.id
    people = await _participants(session, cohort_id, cohort is not None)
    ov = Overview(cohort=cohort, cohorts=await known_cohorts(session=session))
    for p, _ in people.values():
        ov.enrolled += 1
        ov.active += p.status == Lifecycle.active
        ov.paused += p.status == Lifecycle.paused
        ov.withdrawn += p.status == Lifecycle.withdrawn
        ov.unreachable += not p.reachable and not p.has_left
    at = now()
    this_week = week_start(at, zone)
    weeks = [this_week - timedelta(weeks=n) for n in range(CHART_WEEKS - 1, -1, -1)]
    since = min(_instant(weeks[0], zone), at - timedelta(days=max(WINDOWS)))
    rows = await _checkins(session, people, since)
    for days in WINDOWS:
        recent = [r for r in rows if r.due_at >= at - timedelta(days=days)]
        ov.windows.append(Window(days, _rate(recent), _tablet(recent), _pain(recent)))
    ov.open_alerts, weekly = await _alerts(session, people, weeks, zone)
    ov.alert_weeks = weeks[-ALERT_WEEKS:]
    ov.weekly_alerts = {k: v[-ALERT_WEEKS:] for k, v in weekly.items()}
    ov.broadcasts = await broadcasts.count_sent(session, at - timedelta(days=max(WINDOWS)))
    groups = sorted({g for _, g in people.values()}) if cohort is None else [cohort]
    series: list[CohortWeeks] = []
    for group in groups:
        rate, pain = _weekly([r for r in rows if r.group == group], weeks, zone)
        series.append(CohortWeeks(code=group, rate=rate, pain=pain))
    ov.chart = StudyWeeks(weeks=weeks, cohorts=series, scope=cohort)
    return ov


# ---------------------------------------------------------------- in words


def status_cells(**counts: int) -> dict[str, str]:
    """Returns the status counts as cells. When exactly one of them is hidden ("<5"), the
    total minus the others would give it away, so the smallest other non-zero count is hidden
    too, as "5+" (secondary suppression)."""
    cells = {name: count_cell(n) for name, n in counts.items()}
    hidden = [name for name, n in counts.items() if 0 < n < SMALL]
    if len(hidden) == 1:
        others = sorted((n, name) for name, n in counts.items() if n >= SMALL)
        if others:
            cells[others[0][1]] = f"{SMALL}+"
    return cells


def _share(share: Share, m: Messages) -> str:
    """Returns a share as "62% (31 of 50)", "<5" for a small cell, "-" when there is none."""
    if share.small:
        return "<5"
    if share.percent is None:
        return "-"
    return m.get("stats.share", percent=share.percent, part=share.part, whole=share.whole)


def _median(median: Median) -> str:
    """Returns a median score, "<5" for a small cell, "-" when there is none."""
    if median.small:
        return "<5"
    if median.value is None:
        return "-"
    return f"{median.value:g}"


def report_lines(ov: Overview, m: Messages) -> list[str]:
    """Returns the overview as short lines that read on a phone and in a terminal."""
    title = m.get("stats.title_cohort", cohort=ov.cohort) if ov.cohort else m.get("stats.title")
    lines = [title, ""]
    lines.append(
        m.get(
            "stats.people",
            enrolled=count_cell(ov.enrolled),
            unreachable=count_cell(ov.unreachable),
            **status_cells(active=ov.active, paused=ov.paused, withdrawn=ov.withdrawn),
        )
    )
    for w in ov.windows:
        lines.append("")
        lines.append(m.get("stats.window", days=w.days))
        lines.append(m.get("stats.answered", share=_share(w.answered, m)))
        lines.append(m.get("stats.tablet", share=_share(w.tablet, m)))
        lines.append(m.get("stats.pain", median=_median(w.pain)))
    lines.append("")
    if ov.open_alerts:
        lines.append(m.get("stats.open_alerts"))
        lines += [
            m.get("stats.alert_line", kind=k, cell=c.cell) for k, c in ov.open_alerts.items()
        ]
    else:
        lines.append(m.get("stats.open_alerts_none"))
    lines.append("")
    if ov.weekly_alerts:
        weeks = " | ".join(w.strftime("%d %b") for w in ov.alert_weeks)
        lines.append(m.get("stats.weekly_alerts", weeks=weeks))
        lines += [
            m.get("stats.alert_line", kind=k, cell=" | ".join(c.cell for c in counts))
            for k, counts in ov.weekly_alerts.items()
        ]
    else:
        lines.append(m.get("stats.weekly_alerts_none", weeks=len(ov.alert_weeks)))
    lines.append("")
    lines.append(m.get("stats.broadcasts", count=ov.broadcasts, days=max(WINDOWS)))
    lines.append(m.get("stats.small_note"))
    if ov.cohort is None and ov.cohorts:
        lines.append(m.get("stats.cohorts", cohorts=", ".join(ov.cohorts)))
    return lines
