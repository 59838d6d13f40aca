"""Steps a new participant takes through /start and set-up, for onboarding and settings tests."""

from __future__ import annotations

from sqlmodel import col, select

from bot.db import Database
from bot.models import CheckIn, CheckInStatus, Consent, Invite, Participant, Schedule
from tests.conftest import PATIENT, Harness


async def reach_time_question(
    h: Harness, uid: int = PATIENT, *, code: str | None = None, country: str = "United Kingdom"
) -> None:
    """Starts, agrees, and answers medicine, start and country (a one-zone country)."""
    if code is None:
        await h.command(uid, "start")
    else:
        await h.command(uid, "start", code)
    await h.press(uid, "I agree")
    await h.press(uid, "Letrozole (Femara)")
    await h.press(uid, "1 to 6 months ago")
    await h.press(uid, country)


async def onboard(
    h: Harness,
    uid: int = PATIENT,
    *,
    code: str | None = None,
    country: str = "United Kingdom",
    time_label: str = "20:00",
) -> None:
    """Completes onboarding with buttons only: a one-zone country, a preset time, every day."""
    await reach_time_question(h, uid, code=code, country=country)
    await h.press(uid, time_label)
    await h.press(uid, "Every day")
    await h.press(uid, "Yes, that's right")


async def participant(db: Database, uid: int = PATIENT) -> Participant | None:
    """Returns the participant with this Telegram id, if stored."""
    async with db.session() as session:
        query = select(Participant).where(Participant.telegram_user_id == uid)
        return (await session.exec(query)).first()


async def all_rows(db: Database, table: type) -> list:  # type: ignore[type-arg]
    """Returns every row of one table."""
    async with db.session() as session:
        return list((await session.exec(select(table))).all())


async def pending_checkins(db: Database, participant_id: int) -> list[CheckIn]:
    """Returns her scheduled check-ins that have not gone out, soonest first."""
    async with db.session() as session:
        query = (
            select(CheckIn)
            .where(
                CheckIn.participant_id == participant_id,
                CheckIn.status == CheckInStatus.scheduled,
            )
            .order_by(col(CheckIn.due_at))
        )
        return list((await session.exec(query)).all())


async def active_schedules(db: Database, participant_id: int) -> list[Schedule]:
    """Returns her active schedules (there must be exactly one once she is onboarded)."""
    async with db.session() as session:
        query = select(Schedule).where(
            Schedule.participant_id == participant_id, col(Schedule.active).is_(True)
        )
        return list((await session.exec(query)).all())


async def consents(db: Database) -> list[Consent]:
    """Returns every consent row."""
    return await all_rows(db, Consent)


async def invite_by_code(db: Database, code: str) -> Invite:
    """Returns one invite, re-read from the database."""
    async with db.session() as session:
        found = (await session.exec(select(Invite).where(Invite.code == code))).first()
    assert found is not None
    return found
