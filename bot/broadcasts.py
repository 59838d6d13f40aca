"""Broadcasts: one message from the care team to many participants, sent through the outbox.

- **Checked before anything is stored**: the advice scan (`bot.safety_scan`, the same rules as
  for our own content) refuses text that tells patients to stop, pause, switch or change a
  dose, with the sentence that failed; the lock-screen rule refuses a first line that names a
  medicine, cancer or illness (`content/safety/lockscreen_<locale>.yaml`, shared with the
  content tests).
- **Audience**: enrolled participants (active or paused) matching every filter given (cohort,
  medicine, therapy status, language). Paused and unreachable ones get a row that the sender
  skips with its reason, so the final report says who was not reached and why.
- **Deliveries are outbox rows** (kind `broadcast`), one per broadcast and participant (a
  unique key), sent by `bot.sender` within the shared pacing; the text is stored once, on the
  `Broadcast`. A send time is either an absolute instant or "her own local HH:MM"; quiet
  hours always win (the dispatcher holds `broadcast` rows until her morning).
- **Progress**: `follow_up` (run by the dispatcher between send batches) queues an edit of
  the coordinator's progress message at most every `PROGRESS_EVERY`, and the final report
  once every row has ended.
- **Audit**: who, audience, count and the text's sha256 (never the text) on queueing and
  on cancelling.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock, ratelimit, staff
from bot.audit import record_audit
from bot.config import Settings
from bot.content import DEFAULT_LOCALE, messages
from bot.models import (
    Broadcast,
    BroadcastStatus,
    Cohort,
    Lifecycle,
    OutboxState,
    OutgoingMessage,
    Participant,
    TherapyStatus,
)
from bot.outbox import enqueue, payload_of
from bot.participants import MEDICINES
from bot.paths import content_dir
from bot.safety_scan import (
    lock_screen_word,
    scan,
)
from bot.scheduling import in_quiet_hours, participant_zone, quiet_hours_end

KIND = "broadcast"  # outbox kind: one delivery to one participant
PROGRESS_KIND = "broadcast_progress"  # outbox kind: an edit of the coordinator's progress message
REPORT_KIND = "broadcast_report"  # outbox kind: the final report, as a new message
PROGRESS_EVERY = timedelta(seconds=5)  # the progress message is edited at most this often
MAX_TEXT_CHARS = 3500  # leaves room for the line under it (Telegram takes 4096)
SKIPPED_PREFIX = "Skipped: "  # `OutgoingMessage.last_error` of a row the sender skipped
# Who is in a broadcast's audience at all: enrolled, not (yet) gone.
ENROLLED = (Lifecycle.active, Lifecycle.paused)
PENDING = (OutboxState.queued, OutboxState.claimed, OutboxState.sending)
FILTERS = ("cohort", "medicine", "therapy", "locale")


class BroadcastError(ValueError):
    """A broadcast that may not be queued; `code` names why, `detail` what failed."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------- the text


def check_text(text: str, locale: str = DEFAULT_LOCALE) -> str:
    """Returns the text, trimmed, or raises BroadcastError saying what is wrong with it.

    Codes: `empty`, `too_long` (detail: the length), `advice` (detail: the failing
    sentences, one a line), `lock_screen` (detail: the word).
    """
    text = text.strip()
    if not text:
        raise BroadcastError("empty")
    if len(text) > MAX_TEXT_CHARS:
        raise BroadcastError("too_long", str(len(text)))
    findings = scan(text, locale, broadcast=True)
    if findings:
        sentences = dict.fromkeys(f.sentence for f in findings)
        raise BroadcastError("advice", "\n".join(sentences))
    word = lock_screen_word(text, locale)
    if word is not None:
        raise BroadcastError("lock_screen", word)
    return text


def render_for(text: str, locale: str) -> str:
    """Returns a broadcast as she sees it: the text as written, then who sent it (the chat's
    preview and the CLI's --dry-run show exactly this)."""
    return text + "\n\n" + messages(locale).get("team.broadcast_footer")


def text_hash(text: str) -> str:
    """Returns the sha256 of the text (the audit log holds this, never the text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the audience


@dataclass(frozen=True)
class Audience:
    """Filters that combine with AND; None means any."""

    cohort: str | None = None
    medicine: str | None = None
    therapy: str | None = None
    locale: str | None = None

    def to_json(self) -> str:
        """Returns the stored spelling (only the filters that are set)."""
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> Audience:
        """Reads a stored audience; unknown keys are ignored."""
        data = json.loads(raw or "{}")
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: str(data[k]) for k in FILTERS if data.get(k) is not None})

    def describe(self) -> str:
        """Returns the filters as codes for logs and the audit ("all" when none)."""
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v is not None]
        return ",".join(parts) or "all"


async def filter_choices(session: AsyncSession, name: str) -> list[str | None]:
    """Returns the values a filter cycles through in the chat (None first: any)."""
    if name == "cohort":
        codes = (await session.exec(select(Cohort.code).order_by(col(Cohort.code)))).all()
        return [None, *codes]
    if name == "medicine":
        return [None, *(m for m in MEDICINES if m not in ("other", "not_sure"))]
    if name == "therapy":
        return [None, *(s.value for s in TherapyStatus)]
    if name == "locale":
        return [None, *sorted(p.name for p in (content_dir() / "messages").iterdir())]
    raise ValueError(f"unknown filter {name!r}")


def audience_query(audience: Audience) -> Any:
    """Returns the select of the participants in the audience (enrolled, every filter met)."""
    query = select(Participant).where(
        col(Participant.status).in_(ENROLLED), col(Participant.chat_id).is_not(None)
    )
    if audience.cohort is not None:
        query = query.join(Cohort, col(Cohort.id) == col(Participant.cohort_id)).where(
            Cohort.code == audience.cohort
        )
    if audience.medicine is not None:
        query = query.where(Participant.medicine == audience.medicine)
    if audience.therapy is not None:
        query = query.where(Participant.therapy_status == audience.therapy)
    if audience.locale is not None:
        query = query.where(Participant.locale == audience.locale)
    return query.order_by(col(Participant.id))


def skip_reason(participant: Participant | None) -> str | None:
    """Returns why a broadcast would not reach her now, or None when it would."""
    if participant is None or participant.status == Lifecycle.deleted:
        return "deleted"
    if participant.status == Lifecycle.withdrawn:
        return "withdrawn"
    if participant.chat_id is None or not participant.reachable:
        return "unreachable"
    if participant.status == Lifecycle.paused:
        return "paused"
    if participant.status != Lifecycle.active:
        return "not_active"
    return None


@dataclass(frozen=True)
class Count:
    """How many a broadcast reaches now, and how many it would skip, by reason."""

    reach: int
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Returns everyone in the audience."""
        return self.reach + sum(self.skipped.values())


async def count_audience(session: AsyncSession, audience: Audience) -> Count:
    """Counts the audience exactly as `queue` would (one row each) and who would be skipped."""
    reasons: Counter[str] = Counter()
    reach = 0
    for participant in (await session.exec(audience_query(audience))).all():
        reason = skip_reason(participant)
        if reason is None:
            reach += 1
        else:
            reasons[reason] += 1
    return Count(reach=reach, skipped=dict(reasons))


# ---------------------------------------------------------------- the send time


@dataclass(frozen=True)
class When:
    """A send time: now, an absolute instant, or her own local HH:MM."""

    send_at: datetime | None = None
    local_time: str | None = None


_HHMM = re.compile(r"([01]?\d|2[0-3])[:.h]([0-5]\d)")


def parse_when(raw: str, *, default_zone: str, at: datetime | None = None) -> When:
    """Reads a send time: "18:00" (her own local time), "2026-12-01T18:00+01:00", or
    "2026-12-01 18:00 Europe/Paris". An absolute time must lie in the future and carry a zone
    (an offset or an IANA name); raises BroadcastError("bad_time") otherwise."""
    at = at or clock.now()
    text = raw.strip()
    hhmm = _HHMM.fullmatch(text)
    if hhmm:
        return When(local_time=f"{int(hhmm.group(1)):02d}:{hhmm.group(2)}")
    zone_name: str | None = None
    parts = text.rsplit(" ", 1)
    if len(parts) == 2 and ("/" in parts[1] or parts[1] == "UTC"):
        text, zone_name = parts[0].strip(), parts[1]
    try:
        instant = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError as exc:
        raise BroadcastError("bad_time", raw[:64]) from exc
    if zone_name is not None:
        if instant.tzinfo is not None:
            raise BroadcastError("bad_time", raw[:64])
        try:
            instant = instant.replace(tzinfo=ZoneInfo(zone_name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise BroadcastError("bad_time", raw[:64]) from exc
    if instant.tzinfo is None:
        raise BroadcastError("no_zone", raw[:64])
    if instant <= at:
        raise BroadcastError("past", raw[:64])
    return When(send_at=instant.astimezone(UTC))


def next_local(local_time: str, *, tz: str, after: datetime) -> datetime:
    """Returns the next instant (UTC) her clock shows `local_time`, strictly after `after`."""
    zone = ZoneInfo(tz)
    hour, minute = (int(p) for p in local_time.split(":"))
    day = after.astimezone(zone).date()
    for offset in range(3):
        candidate = datetime.combine(day + timedelta(days=offset), time(hour, minute), zone)
        instant = candidate.astimezone(UTC)
        if instant > after:
            return instant
    raise AssertionError("no local time within three days")  # pragma: no cover


def delivery_time(
    broadcast: Broadcast, participant: Participant, settings: Settings, at: datetime
) -> datetime:
    """Returns when her delivery is due: the absolute time, her own local time, or now;
    never inside her quiet hours (then: when they end, her morning)."""
    tz = participant_zone(participant, default=settings.default_timezone)
    if broadcast.local_time:
        due = next_local(broadcast.local_time, tz=tz, after=at)
    else:
        due = max(broadcast.send_at or at, at)
    if in_quiet_hours(at=due, tz=tz, quiet=settings.quiet_window):
        due = quiet_hours_end(at=due, tz=tz, quiet=settings.quiet_window)
    return due


def describe_when(broadcast: Broadcast) -> str:
    """Returns the send time as codes for the audit log."""
    if broadcast.local_time:
        return f"local {broadcast.local_time}"
    if broadcast.send_at:
        return broadcast.send_at.isoformat(timespec="minutes")
    return "now"


# ---------------------------------------------------------------- writing and queueing


async def create_draft(
    *,
    session: AsyncSession,
    text: str,
    actor: str,
    user_id: int | None = None,
    chat_id: int | None = None,
    audience: Audience | None = None,
    when: When | None = None,
) -> Broadcast:
    """Stores a checked text as a draft (refused text raises BroadcastError, stores nothing)."""
    text = check_text(text)
    when = when or When()
    broadcast = Broadcast(
        created_by=actor,
        creator_user_id=user_id,
        creator_chat_id=chat_id,
        text=text,
        text_hash=text_hash(text),
        audience=(audience or Audience()).to_json(),
        send_at=when.send_at,
        local_time=when.local_time,
        status=BroadcastStatus.draft,
    )
    session.add(broadcast)
    await session.flush()
    return broadcast


# `/broadcast` alone asks for the text in her next message. That step lives in her
# `StaffState` row (any worker continues it); care-team messages and /invite use the same
# row, so starting one ends the others.
TEXT_STEP = "bc:text"
TEXT_ROUTE = "broadcast"  # the key of the typed-text route in `services.text_routes`


async def await_text(*, session: AsyncSession, user_id: int) -> None:
    """Records that this coordinator's next typed message is a broadcast text."""
    await staff.set_step(session=session, telegram_user_id=user_id, step=TEXT_STEP)


async def take_awaited_text(*, session: AsyncSession, user_id: int | None) -> bool:
    """Tells whether this person's typed message is the awaited broadcast text, and ends
    the step (a refused text is written again with /broadcast)."""
    return await staff.end_step(session=session, telegram_user_id=user_id, prefix=TEXT_STEP)


async def latest_draft(*, session: AsyncSession, user_id: int) -> Broadcast | None:
    """Returns this coordinator's newest draft, if any."""
    result = await session.exec(
        select(Broadcast)
        .where(Broadcast.creator_user_id == user_id, Broadcast.status == BroadcastStatus.draft)
        .order_by(col(Broadcast.id).desc())
        .limit(1)
    )
    return result.first()


async def queue(
    *, session: AsyncSession, broadcast: Broadcast, settings: Settings, actor: str
) -> int:
    """Confirms a draft: one outbox row per participant in the audience, audited; returns
    how many rows were queued. The unique key (broadcast, participant) keeps it to one each."""
    if broadcast.status != BroadcastStatus.draft:
        raise BroadcastError("not_draft", str(broadcast.status))
    check_text(broadcast.text)  # the scan rules may have changed since the draft was written
    at = clock.now()
    audience = Audience.from_json(broadcast.audience)
    # Compare-and-set: two presses of Send (or two workers) queue it once.
    taken = await session.exec(
        sa.update(Broadcast)
        .where(col(Broadcast.id) == broadcast.id, col(Broadcast.status) == BroadcastStatus.draft)
        .values(status=BroadcastStatus.queued, queued_at=at)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise BroadcastError("not_draft", "taken")
    await session.refresh(broadcast)
    participants = (await session.exec(audience_query(audience))).all()
    for participant in participants:
        assert participant.chat_id is not None
        row = await enqueue(
            session,
            kind=KIND,
            chat_id=participant.chat_id,
            participant_id=participant.id,
            not_before=delivery_time(broadcast, participant, settings, at),
        )
        row.broadcast_id = broadcast.id
        session.add(row)
    broadcast.recipients = len(participants)
    session.add(broadcast)
    await session.flush()
    detail = (
        f"audience={audience.describe()};count={len(participants)};"
        f"when={describe_when(broadcast)};sha256={broadcast.text_hash}"
    )
    await record_audit(
        session=session,
        actor=actor,
        action="broadcast_queued",
        subject=f"broadcast:{broadcast.id}",
        detail=detail[:500],
    )
    return len(participants)


async def cancel(*, session: AsyncSession, broadcast: Broadcast, actor: str) -> int:
    """Stops a broadcast: rows not yet handed to Telegram are cancelled (a claimed one is
    skipped by its renderer); audited. Returns how many rows were stopped."""
    if broadcast.status not in (BroadcastStatus.draft, BroadcastStatus.queued):
        raise BroadcastError("not_live", str(broadcast.status))
    at = clock.now()
    broadcast.status = BroadcastStatus.cancelled
    broadcast.cancelled_at = at
    broadcast.cancelled_by = actor
    session.add(broadcast)
    result = await session.exec(
        sa.update(OutgoingMessage)
        .where(
            col(OutgoingMessage.broadcast_id) == broadcast.id,
            col(OutgoingMessage.kind) == KIND,
            col(OutgoingMessage.state) == OutboxState.queued,
        )
        .values(state=OutboxState.cancelled, last_error=SKIPPED_PREFIX + "cancelled")
        .execution_options(synchronize_session=False)
    )
    stopped = int(result.rowcount or 0)
    await record_audit(
        session=session,
        actor=actor,
        action="broadcast_cancelled",
        subject=f"broadcast:{broadcast.id}",
        detail=f"stopped={stopped};sha256={broadcast.text_hash}",
    )
    return stopped


# ---------------------------------------------------------------- progress and the report


@dataclass
class Tally:
    """Where a broadcast's deliveries stand."""

    recipients: int = 0
    delivered: int = 0
    blocked: int = 0  # 403: she blocked the bot (now marked unreachable)
    failed: int = 0
    uncertain: int = 0  # outcome unknown: not re-sent
    pending: int = 0  # queued, claimed or in flight
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> int:
        """Returns how many deliveries ended, one way or another."""
        return self.recipients - self.pending

    @property
    def skipped_total(self) -> int:
        """Returns how many were skipped, whatever the reason."""
        return sum(self.skipped.values())


def _skip_code(error: str | None) -> str:
    """Returns a skipped row's reason code from its stored error."""
    if error and error.startswith(SKIPPED_PREFIX):
        return error[len(SKIPPED_PREFIX) :].strip() or "other"
    if error and error.startswith("Forbidden"):
        return "unreachable"  # she blocked the bot through another message first
    return "other"


async def tally(session: AsyncSession, broadcast_id: int) -> Tally:
    """Counts a broadcast's deliveries by outcome (one grouped query)."""
    result = await session.exec(
        select(OutgoingMessage.state, OutgoingMessage.last_error, func.count())
        .where(OutgoingMessage.broadcast_id == broadcast_id, OutgoingMessage.kind == KIND)
        .group_by(col(OutgoingMessage.state), col(OutgoingMessage.last_error))
    )
    out = Tally()
    skipped: Counter[str] = Counter()
    for state, error, n in result.all():
        out.recipients += n
        if state == OutboxState.sent:
            out.delivered += n
        elif state == OutboxState.uncertain:
            out.uncertain += n
        elif state == OutboxState.failed:
            if error and error.startswith("Forbidden"):
                out.blocked += n
            else:
                out.failed += n
        elif state == OutboxState.cancelled:
            skipped[_skip_code(error)] += n
        else:
            out.pending += n
    out.skipped = dict(skipped)
    return out


async def follow_up(*, session_factory: Any, at: datetime | None = None) -> int:
    """Queues progress edits (at most every PROGRESS_EVERY, only when something moved) and,
    once every row of a broadcast has ended, marks it done and queues the final report.

    `session_factory` is `Database.session`. Returns how many outbox rows it queued.
    """
    at = at or clock.now()
    queued = 0
    async with session_factory() as session:
        live = (
            await session.exec(select(Broadcast).where(Broadcast.status == BroadcastStatus.queued))
        ).all()
        for broadcast in live:
            assert broadcast.id is not None
            counts = await tally(session, broadcast.id)
            if counts.pending == 0:
                done = await session.exec(
                    sa.update(Broadcast)
                    .where(
                        col(Broadcast.id) == broadcast.id,
                        col(Broadcast.status) == BroadcastStatus.queued,
                    )
                    .values(status=BroadcastStatus.done, finished_at=at)
                    .execution_options(synchronize_session=False)
                )
                if done.rowcount == 1 and broadcast.creator_chat_id is not None:
                    queued += await _queue_progress(session, broadcast, counts, at, final=True)
                continue
            if broadcast.creator_chat_id is None or broadcast.progress_message_id is None:
                continue
            if counts.settled == 0 or not await _edit_due(session, broadcast.id, counts, at):
                continue
            # Her chat's pacing (after her own taps) must allow it now, or the edit would
            # wait in the queue behind every delivery already due.
            ready = await ratelimit.chat_ready_at(session, chat_id=broadcast.creator_chat_id)
            if ready is not None and ready > at:
                continue
            queued += await _queue_progress(session, broadcast, counts, at, final=False)
    return queued


async def _edit_due(session: AsyncSession, broadcast_id: int, counts: Tally, at: datetime) -> bool:
    """Tells whether the progress message should be edited now: something moved since the
    last edit, that edit went out at least PROGRESS_EVERY ago, and none is waiting."""
    result = await session.exec(
        select(OutgoingMessage)
        .where(OutgoingMessage.broadcast_id == broadcast_id, OutgoingMessage.kind == PROGRESS_KIND)
        .order_by(col(OutgoingMessage.id).desc())
        .limit(1)
    )
    last = result.first()
    if last is None:
        return True
    if last.state in PENDING:
        return False
    if last.sent_at is not None and at - last.sent_at < PROGRESS_EVERY:
        return False
    return payload_of(last).get("settled") != counts.settled


async def _queue_progress(
    session: AsyncSession, broadcast: Broadcast, counts: Tally, at: datetime, *, final: bool
) -> int:
    """Queues an edit of the progress message (and, when final, the report as a new message).

    The edit is due just before the earliest waiting delivery, so the claim (oldest first,
    then by id) takes it in the next batch instead of after every delivery already due.
    """
    assert broadcast.creator_chat_id is not None
    earliest = (
        await session.exec(
            select(func.min(OutgoingMessage.not_before)).where(
                OutgoingMessage.broadcast_id == broadcast.id,
                OutgoingMessage.state == OutboxState.queued,
            )
        )
    ).one()
    due = min(earliest, at) if isinstance(earliest, datetime) else at
    if due.tzinfo is None:  # SQLite hands back naive values from an aggregate
        due = due.replace(tzinfo=UTC)
    due -= timedelta(microseconds=1)
    queued = 0
    if broadcast.progress_message_id is not None:
        row = await enqueue(
            session,
            kind=PROGRESS_KIND,
            chat_id=broadcast.creator_chat_id,
            payload={"settled": counts.settled, "final": final},
            not_before=due,
        )
        row.broadcast_id = broadcast.id
        session.add(row)
        queued += 1
    if final:
        row = await enqueue(session, kind=REPORT_KIND, chat_id=broadcast.creator_chat_id)
        row.broadcast_id = broadcast.id
        session.add(row)
        queued += 1
    broadcast.progress_at = at
    session.add(broadcast)
    await session.flush()
    return queued


async def live_broadcasts(*, session: AsyncSession) -> list[Broadcast]:
    """Returns the broadcasts waiting or being sent, oldest first (for /broadcasts)."""
    result = await session.exec(
        select(Broadcast)
        .where(Broadcast.status == BroadcastStatus.queued)
        .order_by(col(Broadcast.id))
    )
    return list(result.all())


async def recent_broadcasts(*, session: AsyncSession, limit: int = 10) -> list[Broadcast]:
    """Returns the newest queued, done or cancelled broadcasts (for the CLI's status)."""
    result = await session.exec(
        select(Broadcast)
        .where(Broadcast.status != BroadcastStatus.draft)
        .order_by(col(Broadcast.id).desc())
        .limit(limit)
    )
    return list(result.all())


async def next_due(session: AsyncSession, broadcast_id: int) -> datetime | None:
    """Returns when the next waiting delivery of a broadcast is due, if any waits."""
    value = (
        await session.exec(
            select(func.min(OutgoingMessage.not_before)).where(
                OutgoingMessage.broadcast_id == broadcast_id,
                OutgoingMessage.kind == KIND,
                OutgoingMessage.state == OutboxState.queued,
            )
        )
    ).one()
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def count_sent(session: AsyncSession, since: datetime | None) -> int:
    """Returns how many broadcasts had at least one delivery sent (since `since`, if given)."""
    query = select(func.count(sa.distinct(col(OutgoingMessage.broadcast_id)))).where(
        OutgoingMessage.kind == KIND,
        OutgoingMessage.state == OutboxState.sent,
        col(OutgoingMessage.broadcast_id).is_not(None),
    )
    if since is not None:
        query = query.where(col(OutgoingMessage.sent_at) >= since)
    return int((await session.exec(query)).one())
