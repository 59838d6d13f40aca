"""Small pieces every flow shows: her emergency number, and the way on from a dead end."""

from __future__ import annotations

from bot.config import Settings
from bot.countries import emergency_number
from bot.models import Participant
from bot.outbox import Buttons
from handlers.common import msgs
from handlers.views.lifecycle import HELP, PRIVACY, button


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
    """Returns the /help text with her emergency number."""
    return msgs(participant).get("help.text", emergency=emergency_for(participant, settings))


def privacy_text(participant: Participant | None, settings: Settings) -> str:
    """Returns the /privacy text."""
    return msgs(participant).get("help.privacy", study=settings.study_name)
