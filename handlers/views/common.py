"""Small pieces every flow shows: her emergency number, and the way on from a dead end."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import roles
from bot.config import Settings
from bot.content import messages
from bot.countries import emergency_number
from bot.models import Participant
from bot.outbox import Buttons
from handlers.common import msgs
from handlers.ui import Screen
from handlers.views.lifecycle import HELP, PRIVACY, button

# Commands shown in Telegram's menu for private chats, in this order; labels come from content.
# Staff get these too, plus their own (handlers/care_team.py).
PATIENT_COMMANDS = [
    "checkin",
    "learn",
    "settings",
    "mytrend",
    "doctorcard",
    "myquestions",
    "discreet",
    "pause",
    "resume",
    "stop",
    "thinking_of_stopping",
    "help",
    "privacy",
    "delete_my_data",
]


def emergency_for(participant: Participant | None, settings: Settings) -> str:
    """Returns the emergency number to show her: her country's, else the study's."""
    number = emergency_number(
        country_code=participant.country if participant else None,
        default=settings.emergency_number,
    )
    return number or msgs(participant).get("help.emergency_unknown")


def way_on(participant: Participant | None) -> Buttons:
    """Returns the buttons every dead end offers: what the bot can do, and privacy."""
    m = msgs(participant)
    return [
        [
            (m.get("fallback.btn_help"), button(HELP)),
            (m.get("fallback.btn_privacy"), button(PRIVACY)),
        ]
    ]


def help_text(participant: Participant | None, settings: Settings) -> str:
    """Returns the /help text with her emergency number.

    Someone who never started gets what the bot is and how to begin, not commands that
    would only tell them to send /start.
    """
    emergency = emergency_for(participant, settings)
    if participant is None:
        return msgs().get("help.not_joined", study=settings.study_name, emergency=emergency)
    return msgs(participant).get("help.text", emergency=emergency)


def privacy_text(participant: Participant | None, settings: Settings) -> str:
    """Returns the /privacy text."""
    return msgs(participant).get("help.privacy", study=settings.study_name)


def unknown_command(participant: Participant | None) -> Screen:
    """Returns the reply to a command nobody knows (also what a privileged command gets from
    someone without the role: it must not tell anyone that the command exists)."""
    if participant is None:
        return Screen(msgs().get("fallback.not_started"))
    return Screen(msgs(participant).get("fallback.unknown_command"), way_on(participant))


async def staff_help(
    *, session: AsyncSession, settings: Settings, user_id: int | None
) -> Screen | None:
    """Returns the care team's own /help, or None for someone without a care-team role."""
    if not await roles.may(
        session=session, settings=settings, telegram_user_id=user_id, work=roles.COORDINATOR_WORK
    ):
        return None
    return Screen(messages("en").get("care_team.staff_help"))
