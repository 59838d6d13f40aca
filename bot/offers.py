"""Tailored offers after a check-in, and the coordinator alerts the same answers imply.

The thresholds and rules are data in `content/rules/offers.yaml` (one file, also read by the
coordinator work); this module only knows how to apply the rule kinds described there.
Nothing here knows about Telegram: `evaluate` decides what follows an answered check-in (run
once every question is answered, before the optional note she may never write), records the
offers as shown and raises Alert rows that carry codes and scores, never her words.

The file's `standing_rules` follow no answered check-in; the dispatcher applies them:
`after_missed` when one of her check-ins closes unanswered (check-ins missed in a row), and
`raise_unreachable` for participants who became unreachable (`newly_unreachable`); her
unreachable alert closes itself when she unblocks the bot (`close_unreachable`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from bot import alerts, checkins
from bot.clock import now
from bot.content import (
    DEFAULT_LOCALE,
    ContentError,
    Questionnaire,
    messages,
    parse_yaml,
    questionnaire,
)
from bot.doctor_first import CHECKIN_CODE, RED_FLAG
from bot.education import pages_offerable_after_checkin
from bot.models import (
    Alert,
    Answer,
    CheckIn,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OfferEvent,
    Participant,
)
from bot.paths import content_dir

RULES_FILE = Path("rules/offers.yaml")
CALLBACK_PREFIX = "of:"
OPEN, OPT_OUT = "open", "no"
SHOWN, OPENED, OPTED_OUT = "shown", "opened", "opted_out"
KINDS = ("at_least", "any_of", "above_baseline", "count_within")
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
MAX_CALLBACK_BYTES = 64
# Offers follow her check-in only while she takes part; after leaving nothing is stored.
EVALUATED_STATUSES = (Lifecycle.active, Lifecycle.paused)
# Standing rules (`standing_rules` in the rules file): alerts that follow no check-in.
MISSED_IN_A_ROW, UNREACHABLE = "missed_in_a_row", "unreachable"
STANDING_KINDS = (MISSED_IN_A_ROW, UNREACHABLE)
REACHABLE_ACTOR, REACHABLE_REASON = "system:reachable", "reachable"
# A run of missed check-ins is counted over at most this many of her latest check-ins.
RUN_LOOKBACK = 100
# Misses that say something about her: silence counts towards a run, a part answer ends it.
RUN_MISSES = (MissedReason.no_answer, MissedReason.closed_partial)


@dataclass(frozen=True)
class Condition:
    """When a rule fires: one of KINDS over one check-in item (see the rules file)."""

    kind: str
    item: str
    value: int = 0
    values: tuple[str, ...] = ()
    delta: int = 0
    hits: int = 0
    of_last: int = 0
    count: int = 0
    days: int = 0


@dataclass(frozen=True)
class OfferSpec:
    """What she is offered when a rule fires: a page, a message, how often, opt-out or not."""

    page: str
    message: str
    repeat_days: int
    can_opt_out: bool


@dataclass(frozen=True)
class AlertSpec:
    """The coordinator alert a rule implies: its kind, and urgent or a digest line.

    `urgent_after`: urgent only when the rule also fired on the check-ins just before this
    one (2: two in a row); before that the alert is a digest line. Against alert fatigue.
    """

    kind: str
    urgent: bool
    urgent_after: int = 1


@dataclass(frozen=True)
class Rule:
    """One rule of the rules file."""

    code: str
    when: Condition
    offer: OfferSpec | None
    alert: AlertSpec | None


@dataclass(frozen=True)
class StandingRule:
    """A rule that follows no check-in: several missed in a row, or she became unreachable."""

    code: str
    kind: str  # one of STANDING_KINDS
    alert: AlertSpec
    count: int = 0  # missed_in_a_row: how many in a row


@dataclass(frozen=True)
class Rulebook:
    """The whole rules file: baseline definition, offer cap, rules in order, standing rules."""

    version: str
    baseline_item: str
    baseline_answers: int
    max_offers_per_checkin: int
    rules: tuple[Rule, ...]
    standing: tuple[StandingRule, ...] = ()

    def rule(self, code: str) -> Rule | None:
        """Returns the rule with this code, if any."""
        return next((r for r in self.rules if r.code == code), None)

    def standing_of(self, kind: str) -> tuple[StandingRule, ...]:
        """Returns the standing rules of one kind (e.g. every unreachable rule)."""
        return tuple(r for r in self.standing if r.kind == kind)


@dataclass(frozen=True)
class Offer:
    """One offer to show after a check-in."""

    code: str
    page_id: str
    message_key: str
    can_opt_out: bool
    checkin_id: int


# ---------------------------------------------------------------- loading the rules file


def _int(raw: Mapping[str, Any], name: str, where: str, *, minimum: int = 0) -> int:
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ContentError(f"{where}: '{name}' must be a whole number >= {minimum}")
    return value


def _condition(raw: Any, q: Questionnaire, where: str) -> Condition:
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise ContentError(f"{where}: 'when.kind' must be one of {KINDS}")
    kind = str(raw["kind"])
    item = q.item(str(raw.get("item", "")))
    if item is None:
        raise ContentError(f"{where}: 'when.item' is not an item of {q.id}")
    if kind in ("at_least", "above_baseline") and item.type != "scale":
        raise ContentError(f"{where}: {kind} needs a scale item")
    values = tuple(str(v) for v in raw.get("values") or ())
    needs_values = kind in ("any_of", "count_within")
    if needs_values and (not values or any(item.option(v) is None for v in values)):
        raise ContentError(f"{where}: 'when.values' must be options of {item.code}")
    if kind == "at_least":
        return Condition(kind=kind, item=item.code, value=_int(raw, "value", where))
    if kind == "any_of":
        return Condition(kind=kind, item=item.code, values=values)
    if kind == "above_baseline":
        of_last = _int(raw, "of_last", where, minimum=1)
        hits = _int(raw, "hits", where, minimum=1)
        if hits > of_last:
            raise ContentError(f"{where}: 'hits' cannot exceed 'of_last'")
        delta = _int(raw, "delta", where, minimum=1)
        return Condition(kind=kind, item=item.code, delta=delta, hits=hits, of_last=of_last)
    count = _int(raw, "count", where, minimum=1)
    days = _int(raw, "days", where, minimum=1)
    return Condition(kind=kind, item=item.code, values=values, count=count, days=days)


def _offer(raw: Any, where: str, offerable: set[str], keys: set[str]) -> OfferSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ContentError(f"{where}: 'offer' must be a mapping or null")
    page_id = str(raw.get("page", ""))
    if page_id not in offerable:
        # The restricted page on stopping lands here too: never offered after an answer.
        raise ContentError(f"{where}: page {page_id!r} may not be offered after a check-in")
    message = str(raw.get("message", ""))
    if message not in keys:
        raise ContentError(f"{where}: message {message!r} is not in content/messages")
    can_opt_out = raw.get("can_opt_out")
    if not isinstance(can_opt_out, bool):
        raise ContentError(f"{where}: 'can_opt_out' must be true or false")
    return OfferSpec(
        page=page_id,
        message=message,
        repeat_days=_int(raw, "repeat_days", where),
        can_opt_out=can_opt_out,
    )


def _alert(raw: Any, where: str) -> AlertSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not CODE_RE.match(str(raw.get("kind", ""))):
        raise ContentError(f"{where}: 'alert.kind' must be a short lowercase code")
    urgent = raw.get("urgent")
    if not isinstance(urgent, bool):
        raise ContentError(f"{where}: 'alert.urgent' must be true or false")
    after = raw.get("urgent_after", 1)
    if not isinstance(after, int) or isinstance(after, bool) or not 1 <= after <= 10:
        raise ContentError(f"{where}: 'alert.urgent_after' must be a whole number from 1 to 10")
    return AlertSpec(kind=str(raw["kind"]), urgent=urgent, urgent_after=after)


def _standing(raw: Any, source: str, taken: set[str]) -> tuple[StandingRule, ...]:
    """Checks and parses the `standing_rules` section (absent: none)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ContentError(f"{source}: 'standing_rules' must be a list")
    found: list[StandingRule] = []
    for n, entry in enumerate(raw):
        where = f"{source} standing rule {n + 1}"
        code = str(entry.get("code", "")) if isinstance(entry, dict) else ""
        if not CODE_RE.match(code):
            raise ContentError(f"{where}: 'code' must be a short lowercase code")
        if code in taken or any(r.code == code for r in found):
            raise ContentError(f"{where}: code {code!r} is used twice")
        where = f"{source} standing rule {code!r}"
        when = entry.get("when")
        if not isinstance(when, dict) or when.get("kind") not in STANDING_KINDS:
            raise ContentError(f"{where}: 'when.kind' must be one of {STANDING_KINDS}")
        kind = str(when["kind"])
        count = 0
        if kind == MISSED_IN_A_ROW:
            # One silence is common; a rule on it would page the team every quiet day.
            count = _int(when, "count", where, minimum=2)
        elif set(when) != {"kind"}:
            raise ContentError(f"{where}: 'when' of {kind} takes no other field")
        spec = entry.get("alert")
        if not isinstance(spec, dict):
            raise ContentError(f"{where}: a standing rule needs an alert")
        if "urgent_after" in spec:
            raise ContentError(f"{where}: 'urgent_after' applies to check-in rules only")
        alert = _alert(spec, where)
        assert alert is not None
        if any(r.alert.kind == alert.kind for r in found):
            raise ContentError(f"{where}: alert kind {alert.kind!r} has a standing rule already")
        found.append(StandingRule(code=code, kind=kind, alert=alert, count=count))
    return tuple(found)


def parse_rules(
    raw: Any,
    *,
    source: str = str(RULES_FILE),
    offerable: Iterable[str] | None = None,
    message_keys: Iterable[str] | None = None,
) -> Rulebook:
    """Checks and parses the rules file; raises ContentError naming what is wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise ContentError(f"{source}: needs a 'rules' list")
    q = questionnaire(checkins.QUESTIONNAIRE_ID)
    allowed = set(
        offerable
        if offerable is not None
        else (p.id for p in pages_offerable_after_checkin(DEFAULT_LOCALE))
    )
    keys = set(message_keys if message_keys is not None else messages(DEFAULT_LOCALE).texts)
    base = raw.get("baseline")
    if not isinstance(base, dict):
        raise ContentError(f"{source}: needs a 'baseline' mapping")
    base_item = q.item(str(base.get("item", "")))
    if base_item is None or base_item.type != "scale":
        raise ContentError(f"{source}: 'baseline.item' must be a scale item of {q.id}")
    rules: list[Rule] = []
    for n, entry in enumerate(raw["rules"]):
        where = f"{source} rule {n + 1}"
        code = str(entry.get("code", "")) if isinstance(entry, dict) else ""
        if not CODE_RE.match(code):
            raise ContentError(f"{where}: 'code' must be a short lowercase code")
        if any(r.code == code for r in rules):
            raise ContentError(f"{where}: code {code!r} is used twice")
        where = f"{source} rule {code!r}"
        rule = Rule(
            code=code,
            when=_condition(entry.get("when"), q, where),
            offer=_offer(entry.get("offer"), where, allowed, keys),
            alert=_alert(entry.get("alert"), where),
        )
        if rule.offer is None and rule.alert is None:
            raise ContentError(f"{where}: a rule needs an offer, an alert or both")
        longest = callback_data(OPT_OUT, 10**12, code)
        if len(longest.encode()) > MAX_CALLBACK_BYTES:
            raise ContentError(f"{where}: code too long for callback data")
        rules.append(rule)
    return Rulebook(
        version=str(raw.get("version", "")),
        baseline_item=base_item.code,
        baseline_answers=_int(base, "answers", source, minimum=1),
        max_offers_per_checkin=_int(raw, "max_offers_per_checkin", source, minimum=1),
        rules=tuple(rules),
        standing=_standing(raw.get("standing_rules"), source, {r.code for r in rules}),
    )


def load_rules(path: Path | None = None) -> Rulebook:
    """Reads and checks `content/rules/offers.yaml` (or another file, for tests)."""
    path = path or content_dir() / RULES_FILE
    if not path.is_file():
        raise ContentError(f"missing rules file {path}")
    return parse_rules(parse_yaml(path.read_text(encoding="utf-8")), source=str(path))


@lru_cache(maxsize=1)
def rules() -> Rulebook:
    """Returns the cached rules of `content/rules/offers.yaml`."""
    return load_rules()


# ---------------------------------------------------------------- callback data


def callback_data(action: str, checkin_id: int, code: str) -> str:
    """Builds 'of:<open|no>:<check-in id>:<offer code>' (at most 64 bytes)."""
    return f"{CALLBACK_PREFIX}{action}:{checkin_id}:{code}"


def parse_callback(data: str) -> tuple[str, int, str] | None:
    """Splits an 'of:' button into (action, check-in id, offer code); None if malformed."""
    match = re.fullmatch(r"of:(open|no):([0-9]{1,12}):([a-z][a-z0-9_]{0,23})", data)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


# ---------------------------------------------------------------- history and baseline


@dataclass(frozen=True)
class Point:
    """One answered item of one check-in, in her history."""

    checkin_id: int
    value: str
    due_at: datetime


async def history(
    *, session: AsyncSession, participant: Participant, item: str, upto: CheckIn | None = None
) -> list[Point]:
    """Returns her final answers to one item, oldest check-in first (up to `upto`, included)."""
    result = await session.exec(
        select(CheckIn, Answer)
        .join(Answer, col(Answer.checkin_id) == col(CheckIn.id))
        .where(CheckIn.participant_id == participant.id, Answer.item_code == item)
        .order_by(col(CheckIn.due_at), col(CheckIn.id))
    )
    points: list[Point] = []
    for checkin, answer in result.all():
        if upto is not None and (checkin.due_at, checkin.id or 0) > (upto.due_at, upto.id or 0):
            break  # later than the check-in being judged
        points.append(Point(checkin_id=checkin.id or 0, value=answer.value, due_at=checkin.due_at))
    return points


def median_baseline(scores: Sequence[int], answers: int) -> float | None:
    """Returns the median of the first `answers` scores, or None while there are fewer."""
    if len(scores) < answers:
        return None
    return float(statistics.median(scores[:answers]))


def _scores(points: Sequence[Point]) -> list[int]:
    return [int(p.value) for p in points if p.value.isdigit()]


async def baseline(
    *,
    session: AsyncSession,
    participant: Participant,
    upto: CheckIn | None = None,
    book: Rulebook | None = None,
) -> float | None:
    """Returns her baseline: the median of her first answered pain scores (None before enough)."""
    book = book or rules()
    points = await history(
        session=session, participant=participant, item=book.baseline_item, upto=upto
    )
    return median_baseline(_scores(points), book.baseline_answers)


# ---------------------------------------------------------------- rule checks


@dataclass(frozen=True)
class Firing:
    """A rule that fired, with the codes and scores that explain it (for the alert detail)."""

    rule: Rule
    detail: str


async def _fires(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    rule: Rule,
    answers: Mapping[str, str],
    book: Rulebook,
) -> Firing | None:
    """Tells whether one rule fires for this check-in, and why (codes and scores only)."""
    when = rule.when
    value = answers.get(when.item)
    if value is None:
        return None
    if when.kind == "at_least":
        if value.isdigit() and int(value) >= when.value:
            return Firing(rule, f"{when.item}={value}")
        return None
    if when.kind == "any_of":
        found = [v for v in checkins.split_values(value) if v in when.values]
        return Firing(rule, f"{when.item}={','.join(found)}") if found else None
    if when.kind == "above_baseline":
        base = await baseline(session=session, participant=participant, upto=checkin, book=book)
        if base is None or not value.isdigit() or int(value) < base + when.delta:
            return None
        points = await history(
            session=session, participant=participant, item=when.item, upto=checkin
        )
        recent = _scores(points)[-when.of_last :]
        if sum(1 for s in recent if s >= base + when.delta) < when.hits:
            return None
        shown = ",".join(str(s) for s in recent)
        return Firing(rule, f"baseline={base:g};{when.item}_recent={shown}")
    # count_within: this check-in and others due in the last `days` days.
    if value not in when.values:
        return None
    since = checkin.due_at - timedelta(days=when.days)
    points = await history(session=session, participant=participant, item=when.item, upto=checkin)
    matching = [p for p in points if p.due_at > since and p.value in when.values]
    if len(matching) < when.count:
        return None
    return Firing(rule, f"{when.item}={value};count_{when.days}d={len(matching)}")


# ---------------------------------------------------------------- suppression and records


async def _events(
    *, session: AsyncSession, participant: Participant, code: str, event: str
) -> list[OfferEvent]:
    result = await session.exec(
        select(OfferEvent).where(
            OfferEvent.participant_id == participant.id,
            OfferEvent.offer_code == code,
            OfferEvent.event == event,
        )
    )
    return list(result.all())


async def opted_out(*, session: AsyncSession, participant: Participant, code: str) -> bool:
    """Tells whether she tapped "Don't show this again" for this offer."""
    return bool(
        await _events(session=session, participant=participant, code=code, event=OPTED_OUT)
    )


async def _may_show(
    *, session: AsyncSession, participant: Participant, checkin: CheckIn, rule: Rule
) -> bool:
    """Tells whether the rule's offer may follow this check-in (opt-out, weekly limit, repeat)."""
    spec = rule.offer
    if spec is None:
        return False
    if spec.can_opt_out and await opted_out(
        session=session, participant=participant, code=rule.code
    ):
        return False
    shown = await _events(session=session, participant=participant, code=rule.code, event=SHOWN)
    if any(e.checkin_id == checkin.id for e in shown):
        return False  # already shown after this very check-in (a repeated evaluation)
    if spec.repeat_days > 0:
        since = now() - timedelta(days=spec.repeat_days)
        if any(e.at > since for e in shown):
            return False
    return True


async def _fired_in_a_row(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    rule: Rule,
    times: int,
    book: Rulebook,
) -> bool:
    """Tells whether the rule also fired on her `times - 1` answered check-ins before this one."""
    if times <= 1:
        return True
    earlier = await session.exec(
        select(CheckIn)
        .where(
            CheckIn.participant_id == participant.id,
            CheckIn.status == CheckInStatus.completed,
            col(CheckIn.due_at) < checkin.due_at,
        )
        .order_by(col(CheckIn.due_at).desc())
        .limit(times - 1)
    )
    before = list(earlier.all())
    if len(before) < times - 1:
        return False
    for previous in before:
        answers = await checkins.answer_values(session=session, checkin=previous)
        fired = await _fires(
            session=session,
            participant=participant,
            checkin=previous,
            rule=rule,
            answers=answers,
            book=book,
        )
        if fired is None:
            return False
    return True


async def _raise_alert(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    firing: Firing,
    book: Rulebook,
) -> Alert | None:
    """Raises (or updates) the alert a rule implies: one active alert per kind (bot.alerts)."""
    spec = firing.rule.alert
    if spec is None:
        return None
    urgent = spec.urgent and await _fired_in_a_row(
        session=session,
        participant=participant,
        checkin=checkin,
        rule=firing.rule,
        times=spec.urgent_after,
        book=book,
    )
    # Codes and scores only: never her note or any other text she typed. Each red-flag
    # symptom is a code of its own, so a new one tells the care team something new.
    codes: list[tuple[str, str]] = [("rule", firing.rule.code)]
    for part in firing.detail.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        if firing.rule.when.kind == "any_of":
            codes += [("sym", v) for v in value.split(",") if v]
        else:
            codes.append((key, value))
    return await alerts.upsert_alert(
        session=session,
        participant=participant,
        kind=spec.kind,
        urgent=urgent,
        source="checkin",
        codes=codes,
        checkin_id=checkin.id,
    )


def _is_red_flag(rule: Rule) -> bool:
    """Tells whether a rule's offer is the red-flag advice (its alert is a red flag)."""
    return rule.alert is not None and rule.alert.kind == RED_FLAG


async def red_flag_advised(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin_id: int | None,
    book: Rulebook | None = None,
) -> bool:
    """Tells whether this check-in already brought her red-flag advice, from the database.

    Either its red-flag offer was shown (an OfferEvent of this check-in), or her words during it
    got the red-flag reply (her red-flag alert carries the check-in's id). One check-in gets
    one red-flag reply; later signals in it only update the alert.
    """
    if checkin_id is None or participant.id is None:
        return False
    codes = [r.code for r in (book or rules()).rules if r.offer is not None and _is_red_flag(r)]
    if codes:
        shown = await session.exec(
            select(OfferEvent.id).where(
                OfferEvent.participant_id == participant.id,
                col(OfferEvent.offer_code).in_(codes),
                OfferEvent.event == SHOWN,
                OfferEvent.checkin_id == checkin_id,
            )
        )
        if shown.first() is not None:
            return True
    details = await session.exec(
        select(Alert.detail).where(
            Alert.participant_id == participant.id,
            Alert.kind == RED_FLAG,
            col(Alert.detail).contains(f"{CHECKIN_CODE}={checkin_id}"),
        )
    )
    wanted = str(checkin_id)
    return any(alerts.parse_detail(d).get(CHECKIN_CODE) == wanted for d in details.all())


async def evaluate(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    book: Rulebook | None = None,
) -> list[Offer]:
    """Decides the offers once every question is answered, records them as shown, raises alerts."""
    if participant.status not in EVALUATED_STATUSES or checkin.participant_id != participant.id:
        return []
    book = book or rules()
    answers = await checkins.answer_values(session=session, checkin=checkin)
    advised = await red_flag_advised(
        session=session, participant=participant, checkin_id=checkin.id, book=book
    )
    offers: list[Offer] = []
    for rule in book.rules:
        firing = await _fires(
            session=session,
            participant=participant,
            checkin=checkin,
            rule=rule,
            answers=answers,
            book=book,
        )
        if firing is None:
            continue
        await _raise_alert(
            session=session, participant=participant, checkin=checkin, firing=firing, book=book
        )
        if len(offers) >= book.max_offers_per_checkin or rule.offer is None:
            continue
        if advised and _is_red_flag(rule):
            continue  # her words already got the red-flag reply in this check-in
        if not await _may_show(
            session=session, participant=participant, checkin=checkin, rule=rule
        ):
            continue
        offers.append(
            Offer(
                code=rule.code,
                page_id=rule.offer.page,
                message_key=rule.offer.message,
                can_opt_out=rule.offer.can_opt_out,
                checkin_id=checkin.id or 0,
            )
        )
        session.add(
            OfferEvent(
                participant_id=participant.id or 0,
                offer_code=rule.code,
                event=SHOWN,
                checkin_id=checkin.id,
            )
        )
    await session.flush()
    return offers


async def record_press(
    *, session: AsyncSession, participant: Participant, checkin: CheckIn, code: str, event: str
) -> bool:
    """Stores that she opened an offer or turned it off; a repeated press stores nothing."""
    found = await _events(session=session, participant=participant, code=code, event=event)
    if event == OPTED_OUT and found:
        return False
    if event == OPENED and any(e.checkin_id == checkin.id for e in found):
        return False
    session.add(
        OfferEvent(
            participant_id=participant.id or 0,
            offer_code=code,
            event=event,
            checkin_id=checkin.id,
        )
    )
    await session.flush()
    return True


# ---------------------------------------------------------------- standing rules


async def silent_run(*, session: AsyncSession, participant_id: int) -> int:
    """Returns how many of her latest check-ins in a row closed unanswered.

    Only silence counts (missed, no answer at all); any answer, even a partial one, ends the
    run; check-ins missed for another reason (an outage, her pause or block, a send whose
    outcome is unknown) say nothing about her and are passed over.
    """
    rows = await session.exec(
        select(CheckIn.status)
        .where(
            CheckIn.participant_id == participant_id,
            (col(CheckIn.status) == CheckInStatus.completed)
            | col(CheckIn.missed_reason).in_(RUN_MISSES),
        )
        .order_by(col(CheckIn.due_at).desc(), col(CheckIn.id).desc())
        .limit(RUN_LOOKBACK)
    )
    run = 0
    for status in rows.all():
        if status != CheckInStatus.missed:
            break
        run += 1
    return run


async def after_missed(
    *, session: AsyncSession, participant: Participant, book: Rulebook | None = None
) -> list[Alert]:
    """Applies the missed-in-a-row rules after one of her check-ins closed unanswered.

    Called once per check-in that closes unanswered (in the transaction that closes it), so the
    first run long enough raises the alert and every further miss updates it (count, in_a_row).
    """
    if participant.status not in EVALUATED_STATUSES or participant.id is None:
        return []
    specs = (book or rules()).standing_of(MISSED_IN_A_ROW)
    if not specs:
        return []
    run = await silent_run(session=session, participant_id=participant.id)
    return [
        await alerts.upsert_alert(
            session=session,
            participant=participant,
            kind=rule.alert.kind,
            urgent=rule.alert.urgent,
            codes=[("rule", rule.code), ("in_a_row", str(run))],
        )
        for rule in specs
        if run >= rule.count
    ]


def newly_unreachable(kinds: Sequence[str]) -> SelectOfScalar[Participant]:
    """Returns the query for participants who became unreachable and have no alert on it yet.

    An alert of these kinds raised (or updated) since she became unreachable means the rule has
    fired for this block: closing it by hand does not bring it back until she blocks us again.
    """
    since = func.coalesce(col(Participant.unreachable_since), col(Participant.created_at))
    raised = (
        select(Alert.id)
        .where(
            col(Alert.participant_id) == col(Participant.id),
            col(Alert.kind).in_(list(kinds)),
            func.coalesce(col(Alert.last_triggered_at), col(Alert.created_at)) >= since,
        )
        .exists()
    )
    return select(Participant).where(
        col(Participant.reachable).is_(False),
        col(Participant.status).in_(EVALUATED_STATUSES),
        ~raised,
    )


async def raise_unreachable(
    *, session: AsyncSession, participant: Participant, book: Rulebook | None = None
) -> list[Alert]:
    """Raises the unreachable rules' alerts for her, once each time she becomes unreachable."""
    if participant.reachable or participant.status not in EVALUATED_STATUSES:
        return []
    since = participant.unreachable_since or participant.created_at
    raised: list[Alert] = []
    for rule in (book or rules()).standing_of(UNREACHABLE):
        done = await session.exec(
            select(Alert.id).where(
                Alert.participant_id == participant.id,
                Alert.kind == rule.alert.kind,
                func.coalesce(col(Alert.last_triggered_at), col(Alert.created_at)) >= since,
            )
        )
        if done.first() is not None:
            continue
        raised.append(
            await alerts.upsert_alert(
                session=session,
                participant=participant,
                kind=rule.alert.kind,
                urgent=rule.alert.urgent,
                codes=[("rule", rule.code)],
            )
        )
    return raised


def unreachable_kinds(book: Rulebook | None = None) -> list[str]:
    """Returns the alert kinds the unreachable rules raise."""
    return [r.alert.kind for r in (book or rules()).standing_of(UNREACHABLE)]


async def close_unreachable(
    *, session: AsyncSession, participant_id: int, book: Rulebook | None = None
) -> int:
    """Closes her unreachable alerts now that she can be reached (by system:reachable)."""
    kinds = unreachable_kinds(book)
    if not kinds:
        return 0
    return await alerts.close_alerts(
        session=session,
        participant_id=participant_id,
        kinds=kinds,
        actor=REACHABLE_ACTOR,
        reason=REACHABLE_REASON,
    )
