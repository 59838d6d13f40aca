"""Check-in rules: which question comes next, storing answers and corrections, snoozing.

Nothing here knows about Telegram. A check-in's progress is derived from its stored answers,
so any worker can continue it and a replayed or doubled press changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import doctor_first
from bot.callbacks import Codec, Part, id_part
from bot.clock import now
from bot.content import Item, Questionnaire, questionnaire
from bot.models import (
    Answer,
    AnswerHistory,
    CheckIn,
    CheckInOrigin,
    CheckInStatus,
    Participant,
)

QUESTIONNAIRE_ID = "daily_checkin"
CALLBACK_PREFIX = "ci"
SNOOZE_CODE = "snooze"
SNOOZE_MINUTES = 60
MAX_SNOOZE_MINUTES = 12 * 60  # a forged length never pushes a reminder past the window
DONE = "done"  # multi-select: "I have ticked everything"
SKIP = "skip"  # optional text item: "no note"
# A skipped optional item is stored with an empty value, so typed text can never collide.
SKIPPED_VALUE = ""
# Multi-select toggles carry the state they set ("+x" ticks x, "-x" unticks it), so a
# double tap on the same button before the message is redrawn changes nothing.
TICK, UNTICK = "+", "-"
# While she ticks boxes, the selection lives in a draft row; "Done" turns it into the answer.
DRAFT_SUFFIX = "#draft"

OPEN_STATUSES = (CheckInStatus.scheduled, CheckInStatus.sent, CheckInStatus.partial)
MAX_TEXT = 2000


def too_long(text: str) -> bool:
    """Tells whether typed text is over the length a note may have."""
    return len(text.strip()) > MAX_TEXT


class Outcome(StrEnum):
    """What recording one answer did."""

    stored = "stored"  # a first answer
    corrected = "corrected"  # a different value; the old one is kept in AnswerHistory
    unchanged = "unchanged"  # the same value again (a repeat or a replay)
    toggled = "toggled"  # a box ticked or unticked on a multi-select (a draft)
    closed = "closed"  # the check-in no longer takes answers
    invalid = "invalid"  # a value the item does not take
    empty = "empty"  # "Done" with nothing ticked


@dataclass
class CheckinState:
    """A check-in as one press sees it: its answers (drafts too), left-out items, wording mode.

    Loaded once per press (two queries) and kept up to date by the functions that change it,
    so the rules and the view never read the same rows twice.
    """

    checkin: CheckIn
    rows: dict[str, Answer]
    skip: frozenset[str]
    mode: str  # how the tablet question is asked: usual | current | none

    @property
    def questionnaire(self) -> Questionnaire:
        """Returns the questionnaire the check-in was created with."""
        return questionnaire_for(self.checkin)

    def values(self) -> dict[str, str]:
        """Returns item code -> value for final answers (drafts left out)."""
        return final_values(self.rows)

    def current_item(self) -> Item | None:
        """Returns the question the check-in is waiting for."""
        return next_item(self.questionnaire, self.values(), self.skip)

    def selection(self, item: Item) -> tuple[str, ...]:
        """Returns what is ticked on a multi-select item: the draft if any, else the answer."""
        draft = self.rows.get(item.code + DRAFT_SUFFIX)
        if draft is not None:
            return split_values(draft.value)
        answer = self.rows.get(item.code)
        return split_values(answer.value) if answer is not None else ()

    def only_optional_left(self) -> bool:
        """Tells whether every question that needs an answer has one (the note may wait)."""
        values = self.values()
        return bool(values) and required_answered(self.questionnaire, values, self.skip)


@dataclass(frozen=True)
class AnswerResult:
    """What recording one answer did: the outcome, the answer row, what comes next, the state."""

    outcome: Outcome
    answer: Answer | None = None
    next_item: Item | None = None
    # True when this press changed which question is due, so that question must be shown.
    next_changed: bool = False
    completed: bool = False
    old_value: str | None = None
    reason: str | None = None
    state: CheckinState | None = None

    @property
    def changed(self) -> bool:
        """Tells whether anything was stored."""
        return self.outcome in {Outcome.stored, Outcome.corrected, Outcome.toggled}


@dataclass(frozen=True)
class SummaryLine:
    """One answered item for the closing summary."""

    item: Item
    value: str
    values: tuple[str, ...] = field(default_factory=tuple)


def questionnaire_for(checkin: CheckIn) -> Questionnaire:
    """Returns the questionnaire a check-in was created with."""
    return questionnaire(checkin.questionnaire_id)


def is_open(checkin: CheckIn) -> bool:
    """Tells whether a check-in still takes answers (not closed, window not passed)."""
    return checkin.status in OPEN_STATUSES and now() < checkin.window_closes_at


def split_values(value: str) -> tuple[str, ...]:
    """Returns the values of a multi-select answer (stored comma-separated)."""
    return tuple(v for v in value.split(",") if v)


def is_skipped(item: Item, answers: Mapping[str, str]) -> bool:
    """Tells whether an item is skipped by an earlier answer (e.g. no pain skips interference)."""
    return any(answers.get(code) in values for code, values in item.skip_if.items())


def next_item(
    q: Questionnaire, answers: Mapping[str, str], skip: Collection[str] = ()
) -> Item | None:
    """Returns the first item that applies and has no answer yet (None when all are done).

    `skip` holds items left out for her (no tablet question once she takes none); a skipped
    item is simply not asked, and no answer row is stored for it.
    """
    for item in q.items:
        if item.code in answers or item.code in skip or is_skipped(item, answers):
            continue
        return item
    return None


def required_answered(
    q: Questionnaire, answers: Mapping[str, str], skip: Collection[str] = ()
) -> bool:
    """Tells whether every applicable non-optional item has an answer."""
    return all(
        item.code in answers
        for item in q.items
        if not item.optional and item.code not in skip and not is_skipped(item, answers)
    )


CODEC = Codec(CALLBACK_PREFIX, (id_part("checkin"), Part("item"), Part("value", "token")))


def parse_callback(data: str) -> tuple[int, str, str] | None:
    """Splits `ci:<check-in id>:<item code>:<value>`; None when it is not well formed."""
    parsed = CODEC.parse(data)
    return (parsed[0], parsed[1], parsed[2]) if parsed is not None else None


def callback_data(checkin_id: int, item_code: str, value: str) -> str:
    """Builds the callback data for one check-in button (at most 64 bytes)."""
    return CODEC.build(checkin_id, item_code, value)


def snooze_minutes(value: str) -> int:
    """Reads the snooze length a button carries; anything odd means the usual hour."""
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_SNOOZE_MINUTES:
        return int(value)
    return SNOOZE_MINUTES


def parse_scale_text(text: str, item: Item) -> str | None:
    """Reads a typed score such as '5', ' 7 ' or '5/10'; None when it is not a valid score."""
    cleaned = text.strip().replace(" ", "")
    for suffix in (f"/{item.scale_max}", f"outof{item.scale_max}"):
        cleaned = cleaned.removesuffix(suffix)
    if not (cleaned.isascii() and cleaned.isdigit()):
        return None
    score = int(cleaned)
    if not item.scale_min <= score <= item.scale_max:
        return None
    return str(score)


def valid_value(item: Item, value: str) -> bool:
    """Tells whether a final value fits the item (options, scale range, text length)."""
    if item.type == "scale":
        return value in item.values()
    if item.type == "single":
        return item.option(value) is not None
    if item.type == "multi":
        chosen = split_values(value)
        if not chosen or len(set(chosen)) != len(chosen):
            return False
        if any(item.option(v) is None for v in chosen):
            return False
        return not (len(chosen) > 1 and any(v in item.exclusive for v in chosen))
    if item.type == "text":
        return len(value) <= MAX_TEXT and (bool(value.strip()) or item.optional)
    return False


# ---------------------------------------------------------------- queries


async def load_answers(*, session: AsyncSession, checkin: CheckIn) -> dict[str, Answer]:
    """Returns the check-in's answers (drafts included) keyed by item code."""
    result = await session.exec(select(Answer).where(Answer.checkin_id == checkin.id))
    return {a.item_code: a for a in result.all()}


def final_values(rows: Mapping[str, Answer]) -> dict[str, str]:
    """Returns item code -> value for final answers, leaving out drafts."""
    return {code: a.value for code, a in rows.items() if not code.endswith(DRAFT_SUFFIX)}


async def answer_values(*, session: AsyncSession, checkin: CheckIn) -> dict[str, str]:
    """Returns item code -> value for the check-in's final answers."""
    return final_values(await load_answers(session=session, checkin=checkin))


async def load_state(*, session: AsyncSession, checkin: CheckIn) -> CheckinState:
    """Loads what one press needs to know about a check-in, once."""
    rows = await load_answers(session=session, checkin=checkin)
    mode = await doctor_first.adherence_mode(
        session=session, participant_id=checkin.participant_id
    )
    skip = frozenset({doctor_first.ADHERENCE_ITEM}) if mode == "none" else frozenset()
    return CheckinState(checkin=checkin, rows=rows, skip=skip, mode=mode)


async def current_item(*, session: AsyncSession, checkin: CheckIn) -> Item | None:
    """Returns the question the check-in is waiting for."""
    return (await load_state(session=session, checkin=checkin)).current_item()


async def open_checkin_for(*, session: AsyncSession, participant: Participant) -> CheckIn | None:
    """Returns her newest check-in that was sent and still takes answers, if any."""
    result = await session.exec(
        select(CheckIn)
        .where(
            CheckIn.participant_id == participant.id,
            col(CheckIn.status).in_([CheckInStatus.sent, CheckInStatus.partial]),
            CheckIn.window_closes_at > now(),
        )
        .order_by(col(CheckIn.due_at).desc(), col(CheckIn.id).desc())
    )
    return result.first()


# ---------------------------------------------------------------- mutations


async def create_on_demand_checkin(
    *, session: AsyncSession, participant: Participant, window_hours: int = 6
) -> CheckIn:
    """Starts a check-in she asked for; returns her open one instead if she has one."""
    existing = await open_checkin_for(session=session, participant=participant)
    if existing is not None:
        return existing
    q = questionnaire(QUESTIONNAIRE_ID)
    at = now()
    checkin = CheckIn(
        participant_id=participant.id or 0,
        origin=CheckInOrigin.on_demand,
        questionnaire_id=q.id,
        questionnaire_version=q.version,
        due_at=at,
        window_closes_at=at + timedelta(hours=window_hours),
        queued_at=at,
        # She asked and gets the question at once, as a reply; no reminder is planned.
        sent_at=at,
        status=CheckInStatus.sent,
    )
    session.add(checkin)
    await session.flush()
    return checkin


# Appended to `CheckIn.message_ids` when a reply that moves the check-in on never reached her.
UNDELIVERED = "!"


def mark_undelivered(checkin: CheckIn) -> None:
    """Notes that the question after her last answer never reached her."""
    if not checkin.message_ids.endswith(UNDELIVERED):
        append_message_id(checkin, UNDELIVERED)


def take_undelivered(checkin: CheckIn) -> bool:
    """Tells whether a reply of this check-in went missing, and clears the note."""
    if not checkin.message_ids.endswith(UNDELIVERED):
        return False
    checkin.message_ids = checkin.message_ids.removesuffix(UNDELIVERED).rstrip(",")
    return True


def append_message_id(checkin: CheckIn, message_id: int | str) -> None:
    """Adds a Telegram message id to the check-in's comma-separated list."""
    ids = [i for i in checkin.message_ids.split(",") if i]
    if str(message_id) in ids:
        return
    ids.append(str(message_id))
    while len(",".join(ids)) > 500:  # the column holds 512; the oldest ids go first
        ids.pop(0)
    checkin.message_ids = ",".join(ids)


async def _write(
    *,
    session: AsyncSession,
    checkin: CheckIn,
    rows: dict[str, Answer],
    item_code: str,
    value: str,
    update_id: int | None,
) -> tuple[str, Answer, str | None]:
    """Inserts or corrects one answer row; returns (outcome, row, old value)."""
    at = now()
    existing = rows.get(item_code)
    if existing is None:
        row = Answer(
            checkin_id=checkin.id or 0,
            item_code=item_code,
            value=value,
            answered_at=at,
            update_id=update_id,
            first_value=value,
            first_answered_at=at,
        )
        try:
            # A savepoint: a second worker storing the same item at the same moment loses
            # the race on the unique constraint and then treats its press as a correction.
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:
            refreshed = await load_answers(session=session, checkin=checkin)
            rows.clear()
            rows.update(refreshed)
            existing = rows[item_code]
        else:
            rows[item_code] = row
            return "stored", row, None
    if existing.value == value:
        return "unchanged", existing, None
    old_value = existing.value
    session.add(
        AnswerHistory(
            answer_id=existing.id or 0,
            old_value=existing.value,
            old_answered_at=existing.answered_at,
            changed_at=at,
            update_id=update_id,
        )
    )
    existing.value = value
    existing.answered_at = at
    existing.update_id = update_id
    existing.corrections += 1
    session.add(existing)
    return "corrected", existing, old_value


async def _mark_completed(
    *, session: AsyncSession, checkin: CheckIn, rows: dict[str, Answer], at: datetime
) -> None:
    """Closes the check-in as completed; a draft left on an item is no answer and goes too."""
    checkin.status = CheckInStatus.completed
    checkin.closed_at = at
    checkin.next_reminder_at = None
    for code in [c for c in rows if c.endswith(DRAFT_SUFFIX)]:
        await session.delete(rows.pop(code))


async def _finish(
    *,
    session: AsyncSession,
    state: CheckinState,
    before: Item | None,
    outcome: Outcome,
    answer: Answer | None,
    old_value: str | None = None,
) -> AnswerResult:
    """Updates the check-in's status after a change and says what comes next."""
    checkin = state.checkin
    values = state.values()
    after = state.current_item()
    if values and checkin.first_answer_at is None:
        checkin.first_answer_at = now()
    if values and checkin.status in (CheckInStatus.scheduled, CheckInStatus.sent):
        checkin.status = CheckInStatus.partial
    completed = after is None and outcome in {Outcome.stored, Outcome.corrected}
    if completed:
        await _mark_completed(session=session, checkin=checkin, rows=state.rows, at=now())
    session.add(checkin)
    await session.flush()
    before_code = before.code if before else None
    after_code = after.code if after else None
    return AnswerResult(
        outcome=outcome,
        answer=answer,
        next_item=after,
        next_changed=before_code != after_code,
        completed=completed,
        old_value=old_value,
        state=state,
    )


async def only_optional_left(*, session: AsyncSession, checkin: CheckIn) -> bool:
    """Tells whether she answered every question that needs an answer (the note may wait)."""
    return (await load_state(session=session, checkin=checkin)).only_optional_left()


async def complete_at_close(*, session: AsyncSession, checkin: CheckIn, at: datetime) -> bool:
    """Closes an open check-in as completed if only optional items (the note) are unanswered.

    She answered every question; leaving the note untouched is not a missed check-in.
    """
    if checkin.status not in OPEN_STATUSES:
        return False
    if not await only_optional_left(session=session, checkin=checkin):
        return False
    rows = await load_answers(session=session, checkin=checkin)
    await _mark_completed(session=session, checkin=checkin, rows=rows, at=at)
    session.add(checkin)
    await session.flush()
    return True


async def record_answer(
    *,
    session: AsyncSession,
    checkin: CheckIn,
    item_code: str,
    value: str,
    update_id: int | None,
    state: CheckinState | None = None,
) -> AnswerResult:
    """Stores one answer (or a correction with its history); refuses closed check-ins."""
    if not is_open(checkin):
        return AnswerResult(outcome=Outcome.closed, reason="closed")
    q = questionnaire_for(checkin)
    item = q.item(item_code)
    if item is None:
        return AnswerResult(outcome=Outcome.invalid, reason="invalid")
    if item.type == "text":
        value = value.strip()
    if not valid_value(item, value):
        return AnswerResult(outcome=Outcome.invalid, reason="invalid")
    state = state or await load_state(session=session, checkin=checkin)
    if is_skipped(item, state.values()):
        return AnswerResult(outcome=Outcome.invalid, reason="not_applicable", state=state)
    before = state.current_item()
    written, row, old_value = await _write(
        session=session,
        checkin=checkin,
        rows=state.rows,
        item_code=item_code,
        value=value,
        update_id=update_id,
    )
    outcome = Outcome(written)
    draft = state.rows.pop(item_code + DRAFT_SUFFIX, None)
    if draft is not None:
        await session.delete(draft)
    if outcome == Outcome.unchanged:
        # Tapping the stored choice again while boxes were ticked only discards the draft.
        kind = Outcome.toggled if draft is not None else Outcome.unchanged
        return AnswerResult(outcome=kind, answer=row, next_item=before, state=state)
    return await _finish(
        session=session,
        state=state,
        before=before,
        outcome=outcome,
        answer=row,
        old_value=old_value,
    )


async def skip_item(
    *,
    session: AsyncSession,
    checkin: CheckIn,
    item_code: str,
    update_id: int | None,
    state: CheckinState | None = None,
) -> AnswerResult:
    """Records that she chose not to answer an optional item (e.g. no note)."""
    item = questionnaire_for(checkin).item(item_code)
    if item is None or not item.optional:
        return AnswerResult(outcome=Outcome.invalid, reason="invalid", state=state)
    return await record_answer(
        session=session,
        checkin=checkin,
        item_code=item_code,
        value=SKIPPED_VALUE,
        update_id=update_id,
        state=state,
    )


async def press_multi(
    *,
    session: AsyncSession,
    checkin: CheckIn,
    item_code: str,
    value: str,
    update_id: int | None,
    state: CheckinState | None = None,
) -> AnswerResult:
    """Handles a multi-select press: tick/untick a box, an exclusive choice, or Done."""
    if not is_open(checkin):
        return AnswerResult(outcome=Outcome.closed, reason="closed", state=state)
    q = questionnaire_for(checkin)
    item = q.item(item_code)
    if item is None or item.type != "multi":
        return AnswerResult(outcome=Outcome.invalid, reason="invalid", state=state)
    state = state or await load_state(session=session, checkin=checkin)
    if value in item.exclusive:
        # "None" is a whole answer in one tap and clears anything ticked.
        return await record_answer(
            session=session,
            checkin=checkin,
            item_code=item_code,
            value=value,
            update_id=update_id,
            state=state,
        )
    rows = state.rows
    ticked = list(state.selection(item))
    if value == DONE:
        chosen = [v for v in ticked if v not in item.exclusive]
        if not chosen:
            if item.code in rows and item.code + DRAFT_SUFFIX not in rows:
                return AnswerResult(outcome=Outcome.unchanged, answer=rows[item.code], state=state)
            return AnswerResult(outcome=Outcome.empty, reason="nothing_ticked", state=state)
        ordered = [o.value for o in item.options if o.value in chosen]
        return await record_answer(
            session=session,
            checkin=checkin,
            item_code=item_code,
            value=",".join(ordered),
            update_id=update_id,
            state=state,
        )
    sign, option = value[:1], value[1:]
    if sign not in (TICK, UNTICK) or item.option(option) is None or option in item.exclusive:
        return AnswerResult(outcome=Outcome.invalid, reason="invalid", state=state)
    if is_skipped(item, state.values()):
        return AnswerResult(outcome=Outcome.invalid, reason="not_applicable", state=state)
    wanted = [v for v in ticked if v not in item.exclusive and v != option]
    if sign == TICK:
        wanted.append(option)
    ordered = [o.value for o in item.options if o.value in wanted]
    if tuple(ordered) == tuple(ticked):
        return AnswerResult(outcome=Outcome.unchanged, answer=rows.get(item_code), state=state)
    draft_code = item_code + DRAFT_SUFFIX
    draft = rows.get(draft_code)
    if draft is None:
        draft = Answer(
            checkin_id=checkin.id or 0,
            item_code=draft_code,
            value="",
            answered_at=now(),
            first_answered_at=now(),
        )
        rows[draft_code] = draft
    draft.value = ",".join(ordered)
    draft.answered_at = now()
    draft.update_id = update_id
    session.add(draft)
    await session.flush()
    return AnswerResult(
        outcome=Outcome.toggled, answer=draft, next_item=state.current_item(), state=state
    )


async def snooze(
    *, session: AsyncSession, checkin: CheckIn, minutes: int = SNOOZE_MINUTES
) -> bool:
    """Asks for a reminder in `minutes`; the dispatcher sends it (held in quiet hours)."""
    if not is_open(checkin):
        return False
    checkin.next_reminder_at = now() + timedelta(minutes=minutes)
    session.add(checkin)
    await session.flush()
    return True


def summary(state: CheckinState) -> list[SummaryLine]:
    """Returns her answers in questionnaire order, for the closing summary."""
    values = state.values()
    lines: list[SummaryLine] = []
    for item in state.questionnaire.items:
        if item.code in values:
            value = values[item.code]
            lines.append(SummaryLine(item=item, value=value, values=split_values(value)))
    return lines
