"""Invite rules, shared by `adherence-bot invite ...` and /invite in the chat.

One place decides what a valid invite is (cohort code, site study id, expiry, uses), when a
second invite for the same site study id needs forcing (she already joined, or a live invite
for her is out), and how an invite is listed and revoked. Every creation and revocation is
audited; a forced one says so. Redeeming a code at /start stays in `bot.enrollment`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import staff
from bot.audit import record_audit
from bot.clock import now
from bot.enrollment import create_invite
from bot.models import Cohort, Invite, Lifecycle, Participant, StaffState

COHORT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A site study id is a short code from the site's own records: printable, one line.
SITE_STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,63}$")
MAX_USES = 10_000
EXPIRY_CHOICES = (7, 30, 90)  # days offered as buttons in the chat
USES_CHOICES = (1, 2, 5, 10, 50)


class InviteStatus(StrEnum):
    """Where an invite stands now."""

    live = "live"
    used_up = "used_up"
    expired = "expired"
    revoked = "revoked"


def expiry_instant(day: date, zone: str) -> datetime:
    """Returns the UTC instant an invite valid 'until the end of `day`' in `zone` expires."""
    local_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    return local_midnight.astimezone(UTC)


def expiry_after(days: int, zone: str) -> datetime:
    """Returns the expiry of an invite valid for `days` more days (today is day 0)."""
    today = now().astimezone(ZoneInfo(zone)).date()
    return expiry_instant(today + timedelta(days=days), zone)


def cohort_ok(code: str) -> bool:
    """Tells whether a cohort code fits in a deep link and a column (letters, digits, _ -)."""
    return bool(COHORT.match(code))


def site_study_id_ok(value: str) -> bool:
    """Tells whether a site study id is a short one-line code."""
    return bool(SITE_STUDY_ID.match(value))


def uses_ok(uses: int) -> bool:
    """Tells whether an invite may have this many uses."""
    return 1 <= uses <= MAX_USES


def status_of(invite: Invite, *, at: datetime) -> InviteStatus:
    """Returns whether the invite can still be used, and if not, why."""
    if invite.revoked_at is not None:
        return InviteStatus.revoked
    if invite.expires_at is not None and invite.expires_at <= at:
        return InviteStatus.expired
    if invite.uses >= invite.max_uses:
        return InviteStatus.used_up
    return InviteStatus.live


@dataclass(frozen=True)
class Conflict:
    """What already exists for a site study id: participants who joined, live invites."""

    participants: int
    live_invites: int

    @property
    def any(self) -> bool:
        """Tells whether a new invite for this id needs forcing."""
        return bool(self.participants or self.live_invites)


async def conflict_for(*, session: AsyncSession, site_study_id: str | None) -> Conflict:
    """Counts participants (not deleted) and live invites that already carry this site id."""
    if not site_study_id:
        return Conflict(0, 0)
    key = site_study_id.lower()
    joined = await session.exec(
        select(func.count())
        .select_from(Participant)
        .where(
            func.lower(col(Participant.site_study_id)) == key,
            Participant.status != Lifecycle.deleted,
        )
    )
    rows = await session.exec(
        select(Invite).where(
            func.lower(col(Invite.site_study_id)) == key, col(Invite.revoked_at).is_(None)
        )
    )
    at = now()
    live = sum(1 for i in rows.all() if status_of(i, at=at) == InviteStatus.live)
    return Conflict(int(joined.one()), live)


@dataclass(frozen=True)
class Created:
    """The invite made, or the conflict that stopped it (nothing was stored then)."""

    invite: Invite | None
    conflict: Conflict


async def create(
    *,
    session: AsyncSession,
    actor: str,
    cohort_code: str,
    site_study_id: str | None = None,
    expires_at: datetime | None = None,
    max_uses: int = 1,
    force: bool = False,
) -> Created:
    """Creates an invite (and its cohort if new), audited; refuses a second invite for a site
    study id that has a participant or a live invite, unless forced (audited as forced)."""
    if not cohort_ok(cohort_code):
        raise ValueError("bad cohort code")
    if site_study_id is not None and not site_study_id_ok(site_study_id):
        raise ValueError("bad site study id")
    if not uses_ok(max_uses):
        raise ValueError("bad number of uses")
    conflict = await conflict_for(session=session, site_study_id=site_study_id)
    if conflict.any and not force:
        return Created(None, conflict)
    invite = await create_invite(
        session=session,
        cohort_code=cohort_code,
        site_study_id=site_study_id,
        expires_at=expires_at,
        max_uses=max_uses,
    )
    invite.created_by = actor
    session.add(invite)
    forced = conflict.any
    detail = f"cohort={cohort_code} uses={max_uses}"
    if site_study_id:
        detail += f" site_study_id={site_study_id}"
    if forced:
        detail += f" forced=yes joined={conflict.participants} live={conflict.live_invites}"
    await record_audit(
        session=session,
        actor=actor,
        action="invite_forced" if forced else "invite_created",
        subject=f"invite:{invite.id}",
        detail=detail,
    )
    return Created(invite, conflict)


@dataclass(frozen=True)
class Listed:
    """One invite as listed: the row, its cohort code and its status now."""

    invite: Invite
    cohort: str
    status: InviteStatus


async def list_invites(
    *, session: AsyncSession, include_all: bool = False, limit: int = 200
) -> list[Listed]:
    """Returns invites newest first: live ones only, or every one."""
    rows = await session.exec(
        select(Invite, Cohort)
        .join(Cohort, col(Cohort.id) == col(Invite.cohort_id))
        .order_by(col(Invite.created_at).desc(), col(Invite.id).desc())
    )
    at = now()
    found = [Listed(i, c.code, status_of(i, at=at)) for i, c in rows.all()]
    if not include_all:
        found = [x for x in found if x.status == InviteStatus.live]
    return found[:limit]


class Revoked(StrEnum):
    """What a revocation did."""

    done = "done"
    not_found = "not_found"
    already = "already"


async def revoke(*, session: AsyncSession, actor: str, invite_id: int) -> Revoked:
    """Revokes an invite so that its link no longer lets anyone join (audited). People who
    already joined with it stay in the study."""
    invite = await session.get(Invite, invite_id)
    if invite is None:
        return Revoked.not_found
    if invite.revoked_at is not None:
        return Revoked.already
    invite.revoked_at = now()
    invite.revoked_by = actor
    session.add(invite)
    await record_audit(
        session=session,
        actor=actor,
        action="invite_revoked",
        subject=f"invite:{invite.id}",
        detail=f"uses={invite.uses}/{invite.max_uses}",
    )
    return Revoked.done


# ---------------------------------------------------------------- /invite in the chat
#
# Where a coordinator is in the /invite flow lives in their `StaffState` row (not in process
# memory), so any worker continues it: `awaiting` is "inv:<step>" and `draft` holds what was
# chosen so far as JSON. Care-team messages use the same row; starting one ends the other.

STEP_PREFIX = "inv:"
TEXT_ROUTE = "invite"  # the key of the /invite typed-text route in `services.text_routes`
STEPS = ("cohort", "site", "exp", "uses", "confirm")


@dataclass
class Draft:
    """An invite being put together in the chat, and the question now open."""

    step: str = "cohort"
    cohort: str | None = None
    site_study_id: str | None = None
    expires_at: datetime | None = None
    uses: int = 1

    def dump(self) -> str:
        """Returns the stored spelling of what was chosen."""
        return json.dumps(
            {
                "c": self.cohort,
                "s": self.site_study_id,
                "e": self.expires_at.isoformat() if self.expires_at else None,
                "u": self.uses,
            }
        )

    @classmethod
    def load(cls, step: str, raw: str | None) -> Draft | None:
        """Reads a stored draft; None when it cannot be read (the flow starts again)."""
        try:
            data = json.loads(raw or "{}")
            expires = datetime.fromisoformat(data["e"]) if data.get("e") else None
            return cls(
                step=step,
                cohort=data.get("c"),
                site_study_id=data.get("s"),
                expires_at=expires,
                uses=int(data.get("u") or 1),
            )
        except (ValueError, TypeError, KeyError):
            return None


async def draft_of(*, session: AsyncSession, telegram_user_id: int) -> Draft | None:
    """Returns this coordinator's invite in the making, if the /invite flow is open."""
    state = await session.get(StaffState, telegram_user_id)
    if state is None or not (state.awaiting or "").startswith(STEP_PREFIX):
        return None
    step = (state.awaiting or "").removeprefix(STEP_PREFIX)
    return Draft.load(step, state.draft) if step in STEPS else None


async def save_draft(*, session: AsyncSession, telegram_user_id: int, draft: Draft) -> None:
    """Stores the invite in the making and the question now open."""
    await staff.set_step(
        session=session,
        telegram_user_id=telegram_user_id,
        step=STEP_PREFIX + draft.step,
        draft=draft.dump(),
    )


async def end_draft(*, session: AsyncSession, telegram_user_id: int) -> None:
    """Ends the /invite flow (done or cancelled); leaves any other staff state alone."""
    await staff.end_step(session=session, telegram_user_id=telegram_user_id, prefix=STEP_PREFIX)


def parse_day(raw: str) -> date | None:
    """Reads a typed last valid day (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


async def create_from_draft(
    *, session: AsyncSession, actor: str, draft: Draft, force: bool = False
) -> Created:
    """Creates the invite the coordinator put together (same rules as the CLI)."""
    if draft.cohort is None:
        raise ValueError("no cohort chosen")
    return await create(
        session=session,
        actor=actor,
        cohort_code=draft.cohort,
        site_study_id=draft.site_study_id,
        expires_at=draft.expires_at,
        max_uses=draft.uses,
        force=force,
    )


async def cohort_by_id(*, session: AsyncSession, cohort_id: int) -> str | None:
    """Returns a cohort's code from its id (the /invite buttons carry ids)."""
    cohort = await session.get(Cohort, cohort_id)
    return cohort.code if cohort is not None else None


async def cohort_ids(*, session: AsyncSession, limit: int = 8) -> list[tuple[int, str]]:
    """Returns (id, code) of cohorts, the most recently created first."""
    rows = await session.exec(
        select(Cohort).order_by(col(Cohort.created_at).desc(), col(Cohort.id).desc())
    )
    return [(c.id or 0, c.code) for c in rows.all()][:limit]
