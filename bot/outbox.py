"""The outbox: every message the bot starts is a row here before it is sent.

Handlers and the dispatcher *enqueue*; only `bot.sender` sends. A renderer, registered per
kind by the composition root, turns a row into text and buttons at send time, so the text
reflects the latest state (e.g. the first unanswered check-in question).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.clock import now
from bot.models import OutboxState, OutgoingMessage, Participant

Buttons = list[list[tuple[str, str]]]  # rows of (label, callback data)


def keyboard(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    """Turns rows of (label, callback data) into an inline keyboard (None for no buttons)."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(label, callback_data=data) for label, data in row]
            for row in buttons
        ]
    )


@dataclass(frozen=True)
class RenderedMessage:
    """What the sender puts on the wire for one outbox row."""

    text: str
    buttons: Buttons | None = None
    protect_content: bool = False
    # Set by a renderer to cancel the send (e.g. the check-in was answered meanwhile).
    skip: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Renderer = Callable[
    [AsyncSession, OutgoingMessage, Participant | None], Awaitable[RenderedMessage]
]
# Called after a successful send, in the same transaction that records it.
AfterSend = Callable[[AsyncSession, OutgoingMessage, int], Awaitable[None]]


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    chat_id: int,
    participant_id: int | None = None,
    checkin_id: int | None = None,
    payload: dict[str, Any] | None = None,
    not_before: datetime | None = None,
) -> OutgoingMessage:
    """Adds one message to the outbox; the dispatcher sends it when due."""
    row = OutgoingMessage(
        kind=kind,
        chat_id=chat_id,
        participant_id=participant_id,
        checkin_id=checkin_id,
        payload=json.dumps(payload or {}),
        state=OutboxState.queued,
        not_before=not_before or now(),
    )
    session.add(row)
    await session.flush()
    return row


def payload_of(row: OutgoingMessage) -> dict[str, Any]:
    """Returns the decoded JSON payload of an outbox row."""
    data = json.loads(row.payload or "{}")
    return data if isinstance(data, dict) else {}
