"""The audit log: who did what, when. Actors and subjects are pseudonyms, never patient text."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.models import AuditEvent, Participant


def participant_actor(participant: Participant) -> str:
    """Returns the audit actor name for a participant acting on her own behalf."""
    return f"participant:{participant.pseudonym}"


async def record_audit(
    *,
    session: AsyncSession,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """Adds one audit event in the caller's transaction; `detail` must never hold patient text."""
    event = AuditEvent(at=now(), actor=actor, action=action, subject=subject, detail=detail)
    session.add(event)
    await session.flush()
    return event
