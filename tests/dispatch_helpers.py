"""Helpers for the scheduling, dispatcher and sender tests: participants, renderers, time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock
from bot.content import consent_text, questionnaire
from bot.db import Database
from bot.dispatcher import TickReport, run_tick
from bot.models import CheckIn, Lifecycle, OutgoingMessage, Participant
from bot.outbox import RenderedMessage, payload_of
from bot.scheduling import set_schedule
from tests.conftest import Harness


async def plain_checkin(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders a check-in as its first question with one button (tests only)."""
    item = questionnaire("daily_checkin").items[0]
    data = f"ci:{row.checkin_id}:{item.code}:{item.values()[0]}"
    return RenderedMessage(text=item.text("en"), buttons=[[("1", data)]])


async def plain_reminder(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders a reminder as the question again (tests only)."""
    return await plain_checkin(session, row, participant)


async def plain_text(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders the payload's 'text' (tests only), or skips when the payload says so."""
    payload = payload_of(row)
    return RenderedMessage(text=str(payload.get("text", "hello")), skip=bool(payload.get("skip")))


def prepare(h: Harness) -> None:
    """Runs the harness in virtual time with simple renderers for check-ins and test rows."""
    services = h.app.bot_data
    services.sleep = clock.virtual_sleep
    services.renderers["checkin"] = plain_checkin
    services.renderers["reminder"] = plain_reminder
    services.renderers["test"] = plain_text
    h.fake.time_source = lambda: clock.now().timestamp()


async def add_participant(
    db: Database,
    *,
    uid: int,
    tz: str = "Europe/London",
    local_time: str = "09:30",
    weekdays: str = "0123456",
    status: str = Lifecycle.active,
    window_hours: int = 6,
) -> Participant:
    """Creates a consented participant and sets her schedule (her next check-in is planned)."""
    async with db.session() as session:
        participant = Participant(
            telegram_user_id=uid,
            chat_id=uid,
            pseudonym=f"p{uid}",
            timezone=tz,
            status=status,
            consent_version=consent_text("en").version,
        )
        session.add(participant)
        await session.flush()
        await set_schedule(
            session=session,
            participant=participant,
            local_time=local_time,
            weekdays=weekdays,
            timezone=tz,
            window_hours=window_hours,
        )
    return participant


def move_to(at: datetime) -> None:
    """Moves the clock forward to `at`, as time passing would."""
    delta = at - clock.now()
    assert delta >= timedelta(0), "tests only move time forward"
    clock.advance(delta)


async def tick(h: Harness) -> TickReport:
    """Runs one dispatcher tick."""
    return await run_tick(h.app.bot_data, h.app.bot)


async def run_for(h: Harness, duration: timedelta, *, every: float = 10.0) -> TickReport:
    """Ticks every `every` seconds for `duration`, as the JobQueue would; sums the reports."""
    total = TickReport()
    end = clock.now() + duration
    while clock.now() < end:
        clock.advance(timedelta(seconds=every))
        report = await tick(h)
        for name, value in vars(report).items():
            if isinstance(value, int):
                setattr(total, name, getattr(total, name) + value)
        for reason, n in report.missed.items():
            total.missed[reason] = total.missed.get(reason, 0) + n
    return total


async def checkins_of(db: Database, participant_id: int) -> list[CheckIn]:
    """Returns all her check-ins, oldest due first."""
    async with db.session() as session:
        result = await session.exec(
            select(CheckIn)
            .where(CheckIn.participant_id == participant_id)
            .order_by(col(CheckIn.due_at), col(CheckIn.id))
        )
        return list(result.all())


async def outbox(db: Database, **where: Any) -> list[OutgoingMessage]:
    """Returns outbox rows matching simple equality filters, oldest first."""
    async with db.session() as session:
        query = select(OutgoingMessage).order_by(col(OutgoingMessage.id))
        for name, value in where.items():
            query = query.where(getattr(OutgoingMessage, name) == value)
        return list((await session.exec(query)).all())


async def reload(db: Database, model: Any, row_id: int | None) -> Any:
    """Returns a fresh copy of one row."""
    async with db.session() as session:
        return await session.get(model, row_id)
