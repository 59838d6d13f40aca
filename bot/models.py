"""All tables. Timestamps are timezone-aware UTC (`UTCDateTime`); Telegram ids are 64-bit."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from bot.clock import now

# Named constraints: SQLite batch migrations can only drop or alter what has a name, and the
# names then match on PostgreSQL too. Must be set before the first table class below.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite hands back naive values, so re-attach UTC on load."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EnumText(TypeDecorator[str]):
    """Stores a StrEnum as VARCHAR (no native database enum) and hands back the enum member.

    Writing a value outside the enum fails at flush, so a misspelt status never reaches the
    database; a value the code no longer knows is read back as plain text.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(self.enum(value))

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        try:
            return self.enum(value)
        except ValueError:
            return value


def enum_column(
    enum: type[StrEnum], default: StrEnum | None, *, length: int = 16, index: bool = False
) -> Any:
    """Returns a VARCHAR column typed by a StrEnum (nullable when there is no default)."""
    return Field(
        default=default,
        sa_column=sa.Column(EnumText(enum, length), nullable=default is None, index=index),
    )


def ts(*, nullable: bool = True, index: bool = False) -> Any:
    """Returns a UTC timestamp column definition."""
    return Field(
        default=None,
        sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index),
    )


def created_ts() -> Any:
    """Returns a non-null UTC timestamp column that defaults to the bot clock."""
    return Field(default_factory=now, sa_column=sa.Column(UTCDateTime(), nullable=False))


def big(*, nullable: bool = True, unique: bool = False, index: bool = False) -> Any:
    """Returns a 64-bit integer column (Telegram user and chat ids exceed 32 bits)."""
    return Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger(), nullable=nullable, unique=unique, index=index),
    )


class Lifecycle(StrEnum):
    invited = "invited"
    active = "active"
    paused = "paused"
    withdrawn = "withdrawn"
    deleted = "deleted"


class CheckInStatus(StrEnum):
    scheduled = "scheduled"
    sent = "sent"
    partial = "partial"
    completed = "completed"
    missed = "missed"


class MissedReason(StrEnum):
    """The closed list of reasons a check-in was not completed."""

    not_sent_outage = "not_sent_outage"
    no_answer = "no_answer"
    closed_partial = "closed_partial"
    blocked = "blocked"
    paused = "paused"
    withdrawn = "withdrawn"
    # The check-in message's send ended with its outcome unknown (a time-out, a 5xx, a crash
    # mid-send): it may have reached her, so silence cannot be told from an outage.
    delivery_uncertain = "delivery_uncertain"


class CheckInOrigin(StrEnum):
    scheduled = "scheduled"
    on_demand = "on_demand"


class OutboxState(StrEnum):
    queued = "queued"
    claimed = "claimed"  # taken by a worker (leased), not yet handed to Telegram
    sending = "sending"  # handed to Telegram: after a crash its outcome is unknown
    sent = "sent"
    failed = "failed"
    uncertain = "uncertain"
    cancelled = "cancelled"


class TherapyStatus(StrEnum):
    taking = "taking"  # on the medicine in Participant.medicine
    stopped = "stopped"  # stopped on her doctor's advice
    finished = "finished"  # finished her planned treatment


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    closed = "closed"


# A study arm or site group that invites point to.
class Cohort(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = created_ts()


# A deep-link code that lets a person join a cohort.
class Invite(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=64)
    cohort_id: int = Field(foreign_key="cohort.id")
    site_study_id: str | None = Field(default=None, max_length=64)
    expires_at: datetime | None = ts()
    max_uses: int = 1
    uses: int = 0
    created_at: datetime = created_ts()
    # Who made it and who took it back ("cli" or "staff:<code>"): bot/invites.py, audited.
    created_by: str | None = Field(default=None, max_length=64)
    revoked_at: datetime | None = ts()
    revoked_by: str | None = Field(default=None, max_length=64)


# One person in the study. Lifecycle (status) and reachability are separate facts.
class Participant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_user_id: int | None = big(unique=True, index=True)
    chat_id: int | None = big()
    pseudonym: str = Field(unique=True, index=True, max_length=64)
    locale: str = Field(default="en", max_length=16)
    country: str | None = Field(default=None, max_length=2)
    timezone: str | None = Field(default=None, max_length=64)
    cohort_id: int | None = Field(default=None, foreign_key="cohort.id")
    invite_id: int | None = Field(default=None, foreign_key="invite.id")
    site_study_id: str | None = Field(default=None, max_length=64)
    status: Lifecycle = enum_column(Lifecycle, Lifecycle.invited, index=True)
    # Indexed for the dispatcher's standing rules, which look for the unreachable few each tick.
    reachable: bool = Field(default=True, index=True)
    unreachable_since: datetime | None = ts()
    paused_until: datetime | None = ts()
    medicine: str | None = Field(default=None, max_length=32)
    therapy_started: str | None = Field(default=None, max_length=32)
    # What she takes now, as she told us after a change her doctor advised (TherapyStatus).
    therapy_status: TherapyStatus = enum_column(TherapyStatus, TherapyStatus.taking)
    # Sensitive messages and documents go out with protect_content (no forwarding or saving).
    discreet: bool = False
    consent_version: str | None = Field(default=None, max_length=32)
    onboarded_at: datetime | None = ts()
    # What the next free-text message means (e.g. "onb:time", "note:<checkin id>"); kept here,
    # not in process memory, so any worker can continue the conversation.
    awaiting: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_ts()
    withdrawn_at: datetime | None = ts()
    deleted_at: datetime | None = ts()

    @property
    def has_left(self) -> bool:
        """Tells whether she withdrew or had her data deleted (nothing more is sent or stored)."""
        return self.status in (Lifecycle.withdrawn, Lifecycle.deleted)


# Consent given (and possibly withdrawn) to one version of the consent text.
class Consent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    version: str = Field(max_length=32)
    accepted_at: datetime = created_ts()
    withdrawn_at: datetime | None = ts()


# When she wants her check-ins: a local time on some weekdays, in an IANA zone.
class Schedule(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    local_time: str = Field(max_length=5)  # "HH:MM"
    weekdays: str = Field(default="0123456", max_length=7)  # Monday=0
    timezone: str = Field(max_length=64)
    active: bool = True
    created_at: datetime = created_ts()


# One check-in: a questionnaire sent (or due) at one instant, with its outcome.
class CheckIn(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "due_at", name="uq_checkin_slot"),
        # The dispatcher's questions, each answered from an index, so a tick costs what is due
        # (not what exists): due and not yet queued; open windows; a schedule's pending one.
        sa.Index("ix_checkin_due", "status", "queued_at", "due_at"),
        sa.Index("ix_checkin_window", "status", "window_closes_at"),
        sa.Index("ix_checkin_pending", "schedule_id", "status", "queued_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    schedule_id: int | None = Field(default=None, foreign_key="schedule.id")
    origin: CheckInOrigin = enum_column(CheckInOrigin, CheckInOrigin.scheduled)
    questionnaire_id: str = Field(max_length=64)
    questionnaire_version: str = Field(max_length=16)
    due_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    window_closes_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    queued_at: datetime | None = ts()
    sent_at: datetime | None = ts()
    first_answer_at: datetime | None = ts()
    closed_at: datetime | None = ts()
    status: CheckInStatus = enum_column(CheckInStatus, CheckInStatus.scheduled, index=True)
    missed_reason: MissedReason | None = enum_column(MissedReason, None, length=32)
    reminder_count: int = 0
    next_reminder_at: datetime | None = ts(index=True)
    message_ids: str = Field(default="", max_length=512)  # comma-separated Telegram message ids
    created_at: datetime = created_ts()


# One answer per check-in and item; the latest value while the check-in is open.
class Answer(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("checkin_id", "item_code", name="uq_answer_item"),)

    id: int | None = Field(default=None, primary_key=True)
    checkin_id: int = Field(foreign_key="checkin.id", index=True)
    item_code: str = Field(max_length=32)
    value: str = Field(max_length=2000)
    answered_at: datetime = created_ts()
    update_id: int | None = big()
    first_value: str = Field(default="", max_length=2000)
    first_answered_at: datetime | None = ts()
    corrections: int = 0


# The value an answer had before a correction, for researchers.
class AnswerHistory(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    answer_id: int = Field(foreign_key="answer.id", index=True)
    old_value: str = Field(max_length=2000)
    old_answered_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    changed_at: datetime = created_ts()
    update_id: int | None = big()


# Every message the bot starts (check-ins, reminders, broadcasts, alerts) goes through here.
class OutgoingMessage(SQLModel, table=True):
    # The sender's question: which rows are queued and due (by state, then time).
    __table_args__ = (
        sa.Index("ix_outgoingmessage_due", "state", "not_before"),
        # A broadcast reaches each participant through one row at most (bot.broadcasts).
        sa.UniqueConstraint("broadcast_id", "participant_id", name="uq_outgoingmessage_broadcast"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)  # checkin, reminder, broadcast, alert, ...
    participant_id: int | None = Field(default=None, foreign_key="participant.id", index=True)
    chat_id: int = big(nullable=False)
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id", index=True)
    payload: str = Field(default="{}", max_length=8000)  # JSON: message key and parameters
    state: OutboxState = enum_column(OutboxState, OutboxState.queued, index=True)
    not_before: datetime = created_ts()
    lease_until: datetime | None = ts()
    attempts: int = 0
    uncertain: bool = False
    last_error: str | None = Field(default=None, max_length=200)
    telegram_message_id: int | None = big()
    sent_at: datetime | None = ts()
    created_at: datetime = created_ts()
    # The broadcast this row delivers (its text is stored once, on the Broadcast).
    broadcast_id: int | None = Field(default=None, foreign_key="broadcast.id", index=True)


# Shared send pacing across processes: the earliest instant the next send under a key may go.
class RateSlot(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=64)
    next_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


# Update ids already handled (a set kept ~7 days; Telegram may restart ids after a quiet week).
class ProcessedUpdate(SQLModel, table=True):
    update_id: int = Field(
        sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False)
    )
    processed_at: datetime = created_ts()


# Who did what, when: exports, role changes, deletions. Never patient text.
class AuditEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = created_ts()
    actor: str = Field(max_length=64)  # "participant:<pseudonym>", "cli", "admin:<pseudonym>"
    action: str = Field(max_length=64)
    subject: str | None = Field(default=None, max_length=64)  # a pseudonym, never a Telegram id
    detail: str | None = Field(default=None, max_length=500)


# One time she opened an education page, with the page version she read (consented only).
class PageView(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    page_id: str = Field(max_length=64, index=True)
    page_version: str = Field(max_length=16)
    viewed_at: datetime = created_ts()


# A change to her treatment that she says her doctor advised (stopped, switched, finished).
class TherapyChange(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    kind: str = Field(max_length=16)  # stopped | switched | finished
    new_medicine: str | None = Field(default=None, max_length=32)
    changed_on: datetime | None = ts()
    recorded_at: datetime = created_ts()


# Why taking the medicine is hard for her, as a code she picked with a button.
class BarrierReport(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    code: str = Field(
        max_length=32
    )  # joint_pain | other_side_effect | forgot | cost | worry | other
    source: str = Field(max_length=32)  # checkin | stop_menu | command | free_text | page
    recorded_at: datetime = created_ts()


# Something the care team should see: urgent alerts and digest lines. Codes only, no free text.
class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    kind: str = Field(max_length=32, index=True)  # stop_intent | red_flag | therapy_change | ...
    urgent: bool = True  # False: a line in the coordinators' digest
    status: AlertStatus = enum_column(AlertStatus, AlertStatus.open, index=True)
    detail: str | None = Field(default=None, max_length=500)  # codes, never patient text
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id")
    contact_requested: bool = False
    created_at: datetime = created_ts()
    delivered_at: datetime | None = ts()
    acknowledged_at: datetime | None = ts()
    acknowledged_by: str | None = Field(default=None, max_length=64)
    closed_at: datetime | None = ts()
    closed_by: str | None = Field(default=None, max_length=64)
    # Why it closed: resolved | not_actionable | system codes (deleted, reachable, advised).
    closed_reason: str | None = Field(default=None, max_length=32)
    # How many triggers it gathered while open, and the latest one (one row per kind).
    count: int = 1
    last_triggered_at: datetime | None = ts()
    # A contact request: the team should reach her by then (working days from the request).
    due_by: datetime | None = ts()
    # Something new to tell the care team (a new alert, a new red flag, a contact request):
    # the dispatcher delivers it within one tick and clears this.
    notify_pending: bool = False
    # Urgent alerts nobody acknowledged are sent again, at most twice, within coverage.
    resent: int = 0
    last_notified_at: datetime | None = ts()


# A tailored offer shown after a check-in (at most once a week each), or turned off by her.
class OfferEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    offer_code: str = Field(max_length=32)
    event: str = Field(max_length=16)  # shown | opened | opted_out
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id")
    at: datetime = created_ts()


# A question she wants to ask at her next visit (/myquestions); shown on her doctor card.
class SavedQuestion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    text: str = Field(max_length=1000)
    created_at: datetime = created_ts()
    deleted_at: datetime | None = ts()


__all__ = [
    "Alert",
    "AlertStatus",
    "Answer",
    "AnswerHistory",
    "AuditEvent",
    "BarrierReport",
    "CheckIn",
    "CheckInOrigin",
    "CheckInStatus",
    "Cohort",
    "Consent",
    "Invite",
    "Lifecycle",
    "MissedReason",
    "OfferEvent",
    "OutboxState",
    "OutgoingMessage",
    "PageView",
    "Participant",
    "ProcessedUpdate",
    "RateSlot",
    "SavedQuestion",
    "Schedule",
    "TherapyChange",
    "TherapyStatus",
]


class Role(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    researcher = "researcher"


# A role granted in the bot or the CLI; roles seeded by ADMIN_IDS, COORDINATOR_IDS and
# RESEARCHER_IDS are not stored and cannot be revoked by command. Revoked rows stay (audit).
class StaffRole(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_user_id: int = big(nullable=False, index=True)
    role: Role = enum_column(Role, None)
    granted_by: str = Field(max_length=64)
    granted_at: datetime = created_ts()
    revoked_at: datetime | None = ts()
    revoked_by: str | None = Field(default=None, max_length=64)


# One action a member of the care team took on an alert: its history, kept for exports.
class AlertAction(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    actor: str = Field(max_length=64)  # "staff:<code>" or "system:<why>"
    action: str = Field(max_length=32)  # acknowledge | contacted | resolved | not_actionable
    at: datetime = created_ts()


# A Telegram message that shows an alert to the care team, so a press updates every copy.
class AlertMessage(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    chat_id: int = big(nullable=False)
    message_id: int = big(nullable=False)
    sent_at: datetime = created_ts()


# What a member of staff's next typed message answers (a message to a participant, ...),
# kept apart from Participant.awaiting so staff text is never read as a patient's.
class StaffState(SQLModel, table=True):
    telegram_user_id: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True))
    awaiting: str | None = Field(default=None, max_length=64)
    # A message typed for a participant, waiting for Send or Cancel (staff text, cleared then).
    draft: str | None = Field(default=None, max_length=4000)
    updated_at: datetime = created_ts()


# ---------------------------------------------------------------- broadcasts (bot.broadcasts)


class BroadcastStatus(StrEnum):
    draft = "draft"  # being written in the chat: audience and time not confirmed yet
    queued = "queued"  # confirmed: one outbox row per recipient, waiting or being sent
    done = "done"  # every row ended (sent, skipped, blocked, failed or uncertain)
    cancelled = "cancelled"  # stopped by a coordinator; rows not yet sent were cancelled


# One message from the care team to many participants. The text is stored here once; each
# recipient's delivery is an OutgoingMessage row with this broadcast_id.
class Broadcast(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_by: str = Field(max_length=64)  # "staff:<code>", "admin:<code>" or "cli"
    creator_user_id: int | None = big()  # the coordinator writing it (drafts are hers)
    creator_chat_id: int | None = big()  # where progress and the final report go
    text: str = Field(max_length=4096)
    text_hash: str = Field(max_length=64)  # sha256 of the text, for the audit log
    audience: str = Field(default="{}", max_length=500)  # JSON: cohort, medicine, therapy, locale
    send_at: datetime | None = ts()  # an absolute send time (None: now)
    local_time: str | None = Field(default=None, max_length=5)  # "HH:MM" in her own zone
    status: BroadcastStatus = enum_column(BroadcastStatus, BroadcastStatus.draft, index=True)
    recipients: int = 0  # rows queued at confirmation
    progress_message_id: int | None = big()
    progress_at: datetime | None = ts()  # the last progress edit queued
    created_at: datetime = created_ts()
    queued_at: datetime | None = ts()
    finished_at: datetime | None = ts()
    cancelled_at: datetime | None = ts()
    cancelled_by: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------- research exports (issue 12)


# One step someone took towards joining or leaving the study, for the CONSORT counts of the
# `enrolment` export: codes and times only. `person` is a hash of her keyed pseudonym with a
# purpose of its own (enough to count someone once; made only with the key), never an id.
class EnrolmentEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # started | invite_refused | consent_declined | consented | onboarded | withdrawn | deleted
    event: str = Field(max_length=32, index=True)
    cohort_id: int | None = Field(default=None, foreign_key="cohort.id")
    person: str = Field(max_length=64, index=True)
    reason: str | None = Field(default=None, max_length=32)  # an invite problem code
    at: datetime = created_ts()


# ---------------------------------------------------------------- clarifying questions (issue 13)


# A clarifying question about her free text (a weak doubt the rules read, or a signal only the
# intent model suspected) and the button she chose: codes and versions, never her words.
class ClarifyingQuestion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    question: str = Field(max_length=16)  # symptom | stop | fewer
    source: str = Field(max_length=16)  # rules | model: who read the doubt
    suspected: str = Field(max_length=32)  # the class read, e.g. red_flag, stop_intent_weak
    score: int | None = None  # the model's probability for the question, in percent
    rules_version: str = Field(max_length=32)
    model_version: str | None = Field(default=None, max_length=32)
    choice: str | None = Field(default=None, max_length=8)  # yes | no; None until she taps
    asked_at: datetime = created_ts()
    answered_at: datetime | None = ts()
