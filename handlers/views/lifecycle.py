"""The lifecycle buttons (`lc:`) and menus: /stop, pause lengths, help and privacy texts.

Every choice that changes her lifecycle comes from a button that carries her participant id
and a fingerprint of her state (`lc:<action>:<id>:<stamp>`), so a press by someone else, or
again after her state moved on, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot import lifecycle
from bot.callbacks import Codec, id_part, matching
from bot.config import Settings
from bot.content import Messages
from bot.models import Participant
from bot.outbox import Buttons
from handlers.common import msgs

CODEC = Codec(
    "lc",
    (
        matching("action", r"[a-z0-9]{1,4}"),
        id_part("participant"),
        matching("stamp", r"[0-9a-f]{6}"),
    ),
    optional=2,
)

# Button actions. Those in CHANGES alter her lifecycle and must carry a fresh stamp.
PAUSE_MENU, LEAVE, LEAVE_YES, MEDICINE, CANCEL = "pm", "lv", "lvy", "med", "x"
DELETE_YES, DELETE_NO, HELP, PRIVACY = "dy", "dn", "help", "priv"
PAUSE_ACTIONS = {f"p{choice}": choice for choice in lifecycle.PAUSE_CHOICES}
CHANGES = {LEAVE_YES, DELETE_YES, *PAUSE_ACTIONS}
KNOWN = {PAUSE_MENU, LEAVE, MEDICINE, CANCEL, DELETE_NO, *CHANGES}
OPEN_TO_ALL = {HELP, PRIVACY}  # plain information, for anybody, no participant needed


@dataclass(frozen=True)
class ButtonData:
    """A parsed `lc:` button: the action, and whose state it was made for."""

    action: str
    participant_id: int | None = None
    stamp: str | None = None


def button(action: str, participant: Participant | None = None) -> str:
    """Returns the callback data for an action, bound to her id and current state."""
    if participant is None or participant.id is None:
        return CODEC.build(action)
    return CODEC.build(action, participant.id, lifecycle.lifecycle_stamp(participant))


def parse_button(data: str | None) -> ButtonData | None:
    """Parses `lc:` callback data; returns None for anything malformed or unknown."""
    parsed = CODEC.parse(data)
    if parsed is None:
        return None
    action = parsed[0]
    if action in OPEN_TO_ALL and len(parsed) == 1:
        return ButtonData(action)
    if action in KNOWN and len(parsed) == 3:
        return ButtonData(action, parsed[1], parsed[2])
    return None


def format_date(at: datetime, participant: Participant, settings: Settings, m: Messages) -> str:
    """Formats an instant as a date in her own time zone."""
    zone = ZoneInfo(participant.timezone or settings.default_timezone)
    return at.astimezone(zone).strftime(m.get("lifecycle.date_format"))


def stop_menu(participant: Participant) -> tuple[str, Buttons]:
    """Returns the /stop question and its four choices."""
    m = msgs(participant)
    rows: Buttons = [
        [(m.get("lifecycle.btn_pause"), button(PAUSE_MENU, participant))],
        [(m.get("lifecycle.btn_leave"), button(LEAVE, participant))],
        [(m.get("lifecycle.btn_medicine"), button(MEDICINE, participant))],
        [(m.get("lifecycle.btn_cancel"), button(CANCEL, participant))],
    ]
    return m.get("lifecycle.stop_menu"), rows


def unsubscribe_menu(participant: Participant) -> tuple[str, Buttons]:
    """Returns the answer to "stop sending me messages": pause, leave or cancel."""
    m = msgs(participant)
    rows: Buttons = [
        [(m.get("lifecycle.btn_pause"), button(PAUSE_MENU, participant))],
        [(m.get("lifecycle.btn_leave"), button(LEAVE, participant))],
        [(m.get("lifecycle.btn_cancel"), button(CANCEL, participant))],
    ]
    return m.get("doctor_first.unsubscribe"), rows


def pause_menu(participant: Participant, settings: Settings) -> tuple[str, Buttons]:
    """Returns the pause-length question, saying how long she is paused if she already is."""
    m = msgs(participant)
    text = m.get("lifecycle.pause_menu")
    if lifecycle.is_paused(participant):
        if participant.paused_until is None:
            text = m.get("lifecycle.now_paused_open") + "\n\n" + text
        else:
            date = format_date(participant.paused_until, participant, settings, m)
            text = m.get("lifecycle.now_paused_until", date=date) + "\n\n" + text
    rows: Buttons = [
        [
            (m.get(f"lifecycle.btn_pause_{choice}"), button(action, participant))
            for action, choice in PAUSE_ACTIONS.items()
        ],
        [(m.get("lifecycle.btn_cancel"), button(CANCEL, participant))],
    ]
    return text, rows
