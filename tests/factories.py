"""Small factories that put rows straight into the database, skipping the chat flows."""

from __future__ import annotations

from bot.clock import now
from bot.content import consent_text
from bot.db import Database
from bot.models import Consent, Lifecycle, Participant, Schedule
from bot.pseudonym import pseudonym_for
from tests.conftest import PATIENT


async def make_active_participant(
    db: Database,
    *,
    telegram_user_id: int = PATIENT,
    timezone: str = "Europe/London",
    checkin_time: str = "19:00",
    weekdays: str = "0123456",
    locale: str = "en",
    country: str = "GB",
) -> Participant:
    """Creates a consented, onboarded, active participant with one active schedule."""
    version = consent_text(locale).version
    async with db.session() as session:
        participant = Participant(
            telegram_user_id=telegram_user_id,
            chat_id=telegram_user_id,
            pseudonym=pseudonym_for(telegram_user_id, "test-pseudonym-key"),
            locale=locale,
            country=country,
            timezone=timezone,
            status=Lifecycle.active,
            medicine="anastrozole",
            consent_version=version,
            onboarded_at=now(),
        )
        session.add(participant)
        await session.flush()
        assert participant.id is not None
        session.add(Consent(participant_id=participant.id, version=version, accepted_at=now()))
        session.add(
            Schedule(
                participant_id=participant.id,
                local_time=checkin_time,
                weekdays=weekdays,
                timezone=timezone,
            )
        )
    return participant
