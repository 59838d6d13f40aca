"""Invites: deep-link codes that let a person join a cohort, and their checks on use."""

from __future__ import annotations

import re
import secrets
import string
from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.models import Cohort, Invite

CODE_ALPHABET = string.ascii_letters + string.digits + "_-"
CODE_LENGTH = 16  # 96 bits of randomness: not guessable
# What Telegram accepts as a deep-link start parameter.
START_PARAM = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InviteProblem(StrEnum):
    """Why a code cannot be used (each has its own reply)."""

    unknown = "unknown"
    expired = "expired"
    used_up = "used_up"


def new_code() -> str:
    """Returns a fresh random invite code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def cohort_by_code(
    *, session: AsyncSession, code: str, create: bool = False
) -> Cohort | None:
    """Returns the cohort with this code, creating it when asked."""
    found = (await session.exec(select(Cohort).where(Cohort.code == code))).first()
    if found is None and create:
        found = Cohort(code=code, created_at=now())
        session.add(found)
        await session.flush()
    return found


async def create_invite(
    *,
    session: AsyncSession,
    cohort_code: str,
    site_study_id: str | None = None,
    expires_at: datetime | None = None,
    max_uses: int = 1,
) -> Invite:
    """Creates an invite to a cohort (created on first use) with a random 16-character code."""
    if max_uses < 1:
        raise ValueError("an invite needs at least one use")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    cohort = await cohort_by_code(session=session, code=cohort_code, create=True)
    assert cohort is not None and cohort.id is not None
    invite = Invite(
        code=new_code(),
        cohort_id=cohort.id,
        site_study_id=site_study_id,
        expires_at=expires_at,
        max_uses=max_uses,
        uses=0,
        created_at=now(),
    )
    session.add(invite)
    await session.flush()
    return invite


async def find_invite(*, session: AsyncSession, code: str) -> Invite | None:
    """Returns the invite with exactly this code, if the code is well formed and known."""
    if not START_PARAM.match(code):
        return None
    return (await session.exec(select(Invite).where(Invite.code == code))).first()


def invite_problem(invite: Invite | None, *, at: datetime) -> InviteProblem | None:
    """Returns why the invite cannot be used at this instant, or None when it can."""
    if invite is None:
        return InviteProblem.unknown
    # A revoked link reads as an expired one to her (bot/invites.py revokes).
    if invite.revoked_at is not None:
        return InviteProblem.expired
    if invite.expires_at is not None and invite.expires_at <= at:
        return InviteProblem.expired
    if invite.uses >= invite.max_uses:
        return InviteProblem.used_up
    return None


async def redeem(*, session: AsyncSession, invite: Invite) -> InviteProblem | None:
    """Counts one use of the invite, or says why it cannot be used.

    The count is a single conditional UPDATE, so two people racing for the last use of an
    invite (or two workers) can never both get it.
    """
    problem = invite_problem(invite, at=now())
    if problem is not None:
        return problem
    result = await session.exec(
        update(Invite)
        .where(
            col(Invite.id) == invite.id,
            col(Invite.uses) < col(Invite.max_uses),
            col(Invite.revoked_at).is_(None),
        )
        .values(uses=col(Invite.uses) + 1)
    )
    if int(result.rowcount or 0) != 1:
        return InviteProblem.used_up
    await session.refresh(invite)
    return None
