"""Participants: joining, consent, her set-up answers, and when onboarding is complete.

Onboarding progress is derived from what is stored (never from process memory), so a
replayed update or a second worker continues at the right step.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.config import parse_hhmm
from bot.content import consent_text
from bot.countries import country as find_country
from bot.enrolment_events import Step as EnrolmentStep
from bot.enrolment_events import record_step
from bot.models import (
    CheckIn,
    CheckInStatus,
    Consent,
    Invite,
    Lifecycle,
    Participant,
    Schedule,
)
from bot.pseudonym import pseudonym_for
from bot.scheduling import Planned, active_schedule, save_schedule, set_schedule

MEDICINES = ("anastrozole", "letrozole", "exemestane", "other", "not_sure")
STARTED = ("this_month", "1_6_months", "6_12_months", "over_year", "not_sure")
TIME_PRESETS = ("08:00", "09:00", "12:00", "18:00", "20:00")
EVERY_DAY = "0123456"  # Monday=0, as in Schedule.weekdays
RECONSENT = "reconsent"


class Step(StrEnum):
    """The onboarding questions, in order; `confirm` is the summary, `done` means onboarded."""

    consent = "consent"
    medicine = "medicine"
    started = "started"
    country = "country"
    zone = "zone"
    time = "time"
    days = "days"
    confirm = "confirm"
    done = "done"


# ---------------------------------------------------------------- finding and joining


async def find_by_pseudonym(*, session: AsyncSession, pseudonym: str) -> Participant | None:
    """Returns the participant with this pseudonym (also after her ids were erased)."""
    query = select(Participant).where(Participant.pseudonym == pseudonym)
    return (await session.exec(query)).first()


async def create_invited(
    *,
    session: AsyncSession,
    telegram_user_id: int,
    chat_id: int,
    pseudonym_key: str,
    invite: Invite | None,
    locale: str,
) -> Participant:
    """Stores only what the consent step needs: ids, pseudonym, invite and cohort."""
    participant = Participant(
        telegram_user_id=telegram_user_id,
        chat_id=chat_id,
        pseudonym=pseudonym_for(telegram_user_id, pseudonym_key),
        locale=locale,
        cohort_id=invite.cohort_id if invite else None,
        invite_id=invite.id if invite else None,
        site_study_id=invite.site_study_id if invite else None,
        status=Lifecycle.invited,
        awaiting=f"onb:{Step.consent}",
        created_at=now(),
    )
    session.add(participant)
    await session.flush()
    return participant


def is_onboarded(participant: Participant) -> bool:
    """Tells whether she finished onboarding and is still in the study."""
    return participant.onboarded_at is not None and participant.status in (
        Lifecycle.active,
        Lifecycle.paused,
    )


def needs_consent(participant: Participant) -> bool:
    """Tells whether she has not yet agreed to the current consent version."""
    return participant.consent_version != consent_text(participant.locale).version


# ---------------------------------------------------------------- consent


async def record_consent(
    *, session: AsyncSession, participant: Participant, version: str
) -> Consent:
    """Records her agreement to one consent version (once) and clears a pending re-consent."""
    assert participant.id is not None
    query = select(Consent).where(
        Consent.participant_id == participant.id,
        Consent.version == version,
        col(Consent.withdrawn_at).is_(None),
    )
    consent = (await session.exec(query)).first()
    if consent is None:
        consent = Consent(participant_id=participant.id, version=version, accepted_at=now())
        session.add(consent)
        await record_step(
            session=session,
            step=EnrolmentStep.consented,
            pseudonym=participant.pseudonym,
            cohort_id=participant.cohort_id,
        )
    participant.consent_version = version
    if participant.awaiting == RECONSENT or participant.awaiting == f"onb:{Step.consent}":
        participant.awaiting = None
    session.add(participant)
    await session.flush()
    return consent


# ---------------------------------------------------------------- set-up answers


def set_medicine(*, participant: Participant, value: str) -> None:
    """Stores which medicine she takes (a value from MEDICINES)."""
    if value not in MEDICINES:
        raise ValueError("unknown medicine")
    participant.medicine = value


def set_started(*, participant: Participant, value: str) -> None:
    """Stores roughly when she started (a value from STARTED)."""
    if value not in STARTED:
        raise ValueError("unknown start period")
    participant.therapy_started = value


def set_country(*, participant: Participant, code: str) -> bool:
    """Stores her country; picks the zone when the country has one, else clears it.

    Returns True when the zone was chosen for her.
    """
    found = find_country(code)
    if found is None:
        raise ValueError("unknown country")
    participant.country = found.code
    if len(found.zones) == 1 and not found.is_other:
        participant.timezone = found.zones[0].zone
        return True
    participant.timezone = None
    return False


def set_zone(*, participant: Participant, country_code: str, zone: str) -> None:
    """Stores her country and time zone together."""
    found = find_country(country_code)
    if found is None:
        raise ValueError("unknown country")
    participant.country = found.code
    participant.timezone = zone


# ---------------------------------------------------------------- check-in time and days

_TIME = re.compile(
    r"^(?P<h>\d{1,2})(?:\s*[:.h]\s*(?P<m>\d{2}))?\s*(?P<ap>am|pm|a|p)?$",
)
_COMPACT = re.compile(r"^(?P<h>[01]\d|2[0-3])(?P<m>[0-5]\d)$")


def parse_local_time(text: str) -> str | None:
    """Reads a typed time ('19:30', '19.30', '7pm', '7:30 pm', '1930') as 'HH:MM', or None.

    A bare hour up to 12 without am/pm ("7") is ambiguous and gives None.
    """
    cleaned = text.strip().lower().replace("a.m.", "am").replace("p.m.", "pm")
    cleaned = cleaned.replace("a.m", "am").replace("p.m", "pm").rstrip(".")
    if cleaned in ("noon", "midday"):
        return "12:00"
    compact = _COMPACT.match(cleaned)
    if compact:
        return f"{compact['h']}:{compact['m']}"
    match = _TIME.match(cleaned)
    if not match:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if minute > 59:
        return None
    if match["ap"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ap"].startswith("p") else 0)
    elif match["m"] is None and hour <= 12:
        return None
    if hour > 23:
        return None
    return f"{hour:02d}:{minute:02d}"


def time_presets(default_time: str) -> tuple[str, ...]:
    """Returns the check-in times offered as buttons: the study's default first, then the rest."""
    first = parse_hhmm(default_time).strftime("%H:%M")  # "7:15" in .env is 07:15
    return (first, *(hhmm for hhmm in TIME_PRESETS if hhmm != first))


def is_weekday_mask(mask: str) -> bool:
    """Tells whether a mask is weekday digits 0-6, sorted and unique (as buttons carry them)."""
    return all(ch in EVERY_DAY for ch in mask) and mask == "".join(sorted(set(mask)))


def toggle_weekday(mask: str, day: int) -> str:
    """Returns the weekday mask with one day switched on or off."""
    digit = str(day)
    days = set(mask) ^ {digit}
    return "".join(sorted(days))


async def draft_schedule(*, session: AsyncSession, participant: Participant) -> Schedule | None:
    """Returns the inactive schedule that holds her time and days until she confirms."""
    assert participant.id is not None
    query = select(Schedule).where(
        Schedule.participant_id == participant.id, col(Schedule.active).is_(False)
    )
    return (await session.exec(query.order_by(col(Schedule.id).desc()))).first()


async def _draft(*, session: AsyncSession, participant: Participant) -> Schedule:
    draft = await draft_schedule(session=session, participant=participant)
    if draft is None:
        assert participant.id is not None
        # Inactive, and with no time yet: the dispatcher never plans check-ins from it.
        draft = Schedule(
            participant_id=participant.id,
            local_time="",
            weekdays="",
            timezone=participant.timezone or "UTC",
            active=False,
            created_at=now(),
        )
        session.add(draft)
    return draft


async def set_draft_time(
    *, session: AsyncSession, participant: Participant, local_time: str
) -> None:
    """Keeps her chosen check-in time until she confirms the summary."""
    draft = await _draft(session=session, participant=participant)
    draft.local_time = local_time
    session.add(draft)
    await session.flush()


async def set_draft_days(
    *, session: AsyncSession, participant: Participant, weekdays: str
) -> None:
    """Keeps her chosen weekdays until she confirms the summary."""
    if not weekdays or not is_weekday_mask(weekdays):
        raise ValueError("weekdays must be sorted digits 0-6")
    draft = await _draft(session=session, participant=participant)
    draft.weekdays = weekdays
    session.add(draft)
    await session.flush()


def next_step(participant: Participant, draft: Schedule | None) -> Step:
    """Returns the first onboarding question she has not answered yet."""
    if is_onboarded(participant):
        return Step.done
    if needs_consent(participant):
        return Step.consent
    if participant.medicine is None:
        return Step.medicine
    if participant.therapy_started is None:
        return Step.started
    if participant.country is None:
        return Step.country
    if participant.timezone is None:
        return Step.zone
    if draft is None or not draft.local_time:
        return Step.time
    if not draft.weekdays:
        return Step.days
    return Step.confirm


async def complete_onboarding(*, session: AsyncSession, participant: Participant) -> Schedule:
    """Makes her active and plans her first check-in at the next occurrence of her time."""
    draft = await draft_schedule(session=session, participant=participant)
    if next_step(participant, draft) != Step.confirm or draft is None:
        raise ValueError("onboarding is not ready to confirm")
    assert participant.timezone is not None
    local_time, weekdays = draft.local_time, draft.weekdays
    # The draft only held her answers; the real schedule is made by the scheduler.
    await session.delete(draft)
    await session.flush()
    participant.status = Lifecycle.active
    participant.onboarded_at = now()
    participant.awaiting = None
    session.add(participant)
    await record_step(
        session=session,
        step=EnrolmentStep.onboarded,
        pseudonym=participant.pseudonym,
        cohort_id=participant.cohort_id,
    )
    schedule = await set_schedule(
        session=session,
        participant=participant,
        local_time=local_time,
        weekdays=weekdays,
        timezone=participant.timezone,
    )
    await session.flush()
    return schedule


async def change_schedule(
    *,
    session: AsyncSession,
    participant: Participant,
    default_time: str,
    local_time: str | None = None,
    weekdays: str | None = None,
    timezone: str | None = None,
) -> Planned:
    """Changes one part of her active schedule, so her next check-in moves (at most one a day)."""
    current = await active_schedule(session=session, participant_id=participant.id or 0)
    zone = timezone or participant.timezone or (current.timezone if current else None)
    if zone is None:
        raise ValueError("she has no time zone yet")
    planned = await save_schedule(
        session=session,
        participant=participant,
        local_time=local_time or (current.local_time if current else default_time),
        weekdays=weekdays or (current.weekdays if current else EVERY_DAY),
        timezone=zone,
    )
    await session.flush()
    return planned


async def next_checkin(*, session: AsyncSession, participant: Participant) -> CheckIn | None:
    """Returns her next scheduled check-in that has not gone out yet."""
    assert participant.id is not None
    query = (
        select(CheckIn)
        .where(
            CheckIn.participant_id == participant.id,
            CheckIn.status == CheckInStatus.scheduled,
            col(CheckIn.due_at) >= now(),
        )
        .order_by(col(CheckIn.due_at))
    )
    return (await session.exec(query)).first()


def local_due(due_at: datetime, zone: str) -> datetime:
    """Returns a UTC instant in her local time."""
    return due_at.astimezone(ZoneInfo(zone))
