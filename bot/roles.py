"""Who is staff: admins, coordinators and researchers. THE one place roles are checked.

Roles come from two places: the settings (`ADMIN_IDS`, `COORDINATOR_IDS`, `RESEARCHER_IDS`,
which seed them and cannot be revoked by command) and `StaffRole` rows that admins grant and
revoke in the bot or the CLI. Every grant and revocation is audited. Staff are named in the
audit log and on alerts by a staff code (a keyed hash of their Telegram id with a purpose of
its own), never by their Telegram id.

A role adds commands; it takes none away: a coordinator who is also a participant keeps her
patient commands.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import record_audit
from bot.clock import now
from bot.config import Settings
from bot.models import Role, StaffRole

# Who may do what. Admins may do everything staff can.
COORDINATOR_WORK = frozenset({Role.admin, Role.coordinator})
RESEARCH_WORK = frozenset({Role.admin, Role.researcher})
OVERVIEW = frozenset({Role.admin, Role.coordinator, Role.researcher})
ADMIN_WORK = frozenset({Role.admin})
CLI_ACTOR = "cli"


def staff_code(telegram_user_id: int, key: str) -> str:
    """Returns the name staff go by in the audit log and on alerts (never the Telegram id)."""
    digest = hmac.new(
        key.encode(), f"staff:{telegram_user_id}".encode(), hashlib.sha256
    ).hexdigest()
    return "s_" + digest[:10]


def staff_actor(telegram_user_id: int, settings: Settings) -> str:
    """Returns the audit actor for a member of staff."""
    return "staff:" + staff_code(telegram_user_id, settings.pseudonym_key or "")


def seeded_roles(settings: Settings, telegram_user_id: int) -> frozenset[Role]:
    """Returns the roles the settings give this person (they cannot be revoked by command)."""
    roles = set()
    if telegram_user_id in settings.admin_ids:
        roles.add(Role.admin)
    if telegram_user_id in settings.coordinator_ids:
        roles.add(Role.coordinator)
    if telegram_user_id in settings.researcher_ids:
        roles.add(Role.researcher)
    return frozenset(roles)


async def roles_of(
    *, session: AsyncSession, settings: Settings, telegram_user_id: int | None
) -> frozenset[Role]:
    """Returns every role this person holds now (seeded and granted)."""
    if telegram_user_id is None:
        return frozenset()
    granted = await session.exec(
        select(StaffRole.role).where(
            StaffRole.telegram_user_id == telegram_user_id,
            col(StaffRole.revoked_at).is_(None),
        )
    )
    return seeded_roles(settings, telegram_user_id) | {Role(r) for r in granted.all()}


async def may(
    *,
    session: AsyncSession,
    settings: Settings,
    telegram_user_id: int | None,
    work: frozenset[Role],
) -> bool:
    """Tells whether this person holds a role that may do this work."""
    return bool(
        await roles_of(session=session, settings=settings, telegram_user_id=telegram_user_id)
        & work
    )


async def staff_ids(*, session: AsyncSession, settings: Settings) -> dict[int, frozenset[Role]]:
    """Returns every member of staff with their roles (for command menus and alert delivery)."""
    people: dict[int, set[Role]] = {}
    for ids, role in (
        (settings.admin_ids, Role.admin),
        (settings.coordinator_ids, Role.coordinator),
        (settings.researcher_ids, Role.researcher),
    ):
        for user_id in ids:
            people.setdefault(user_id, set()).add(role)
    granted = await session.exec(select(StaffRole).where(col(StaffRole.revoked_at).is_(None)))
    for row in granted.all():
        people.setdefault(row.telegram_user_id, set()).add(Role(row.role))
    return {user_id: frozenset(roles) for user_id, roles in people.items()}


async def coordinators(*, session: AsyncSession, settings: Settings) -> list[int]:
    """Returns the Telegram ids of everyone who receives alerts privately (coordinators)."""
    everyone = await staff_ids(session=session, settings=settings)
    return sorted(uid for uid, roles in everyone.items() if Role.coordinator in roles)


@dataclass(frozen=True)
class Change:
    """What a grant or a revocation did: done, or why not (already, seeded, unknown)."""

    done: bool
    reason: str = ""  # already | seeded | not_held


async def grant(
    *, session: AsyncSession, settings: Settings, actor: str, telegram_user_id: int, role: Role
) -> Change:
    """Grants a role (audited); nothing changes if she already holds it."""
    held = await roles_of(session=session, settings=settings, telegram_user_id=telegram_user_id)
    if role in held:
        return Change(False, "already")
    session.add(StaffRole(telegram_user_id=telegram_user_id, role=role, granted_by=actor))
    await record_audit(
        session=session,
        actor=actor,
        action="role_granted",
        subject="staff:" + staff_code(telegram_user_id, settings.pseudonym_key or ""),
        detail=f"role={role}",
    )
    return Change(True)


async def revoke(
    *, session: AsyncSession, settings: Settings, actor: str, telegram_user_id: int, role: Role
) -> Change:
    """Revokes a granted role (audited); a role from the settings cannot be revoked here."""
    if role in seeded_roles(settings, telegram_user_id):
        return Change(False, "seeded")
    rows = await session.exec(
        select(StaffRole).where(
            StaffRole.telegram_user_id == telegram_user_id,
            StaffRole.role == role,
            col(StaffRole.revoked_at).is_(None),
        )
    )
    found = rows.all()
    if not found:
        return Change(False, "not_held")
    for row in found:
        row.revoked_at = now()
        row.revoked_by = actor
        session.add(row)
    await record_audit(
        session=session,
        actor=actor,
        action="role_revoked",
        subject="staff:" + staff_code(telegram_user_id, settings.pseudonym_key or ""),
        detail=f"role={role}",
    )
    return Change(True)
