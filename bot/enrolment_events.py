"""Enrolment events: the steps towards joining (or leaving) the study, for CONSORT counts.

Several of these steps store nothing else (a `/start` with an unusable code, "Not now" at
consent), so each is one row here: an event code, a cohort, a time and a `person` hash to
count someone once. The hash is a SHA-256 of her pseudonym (itself a keyed HMAC of the
Telegram id), so it can only be made with the key, is never the Telegram id, and can be
computed both before a participant row exists and after her ids were erased. Recorded in
the caller's transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.models import Cohort, EnrolmentEvent, Invite

if TYPE_CHECKING:
    from bot.export.rows import Source

PURPOSE = b"enrolment-count:v1:"


class Step(StrEnum):
    """The enrolment steps the `enrolment` export counts, in CONSORT order."""

    started = "started"  # /start with a usable invite (or open enrolment)
    invite_refused = "invite_refused"  # /start with an unknown, expired or used-up code
    consent_declined = "consent_declined"  # "Not now" at the consent text
    consented = "consented"
    onboarded = "onboarded"
    withdrawn = "withdrawn"
    deleted = "deleted"


def person_hash(pseudonym: str) -> str:
    """Returns the hash that counts one person once (made from her keyed pseudonym)."""
    return "e_" + hashlib.sha256(PURPOSE + pseudonym.encode()).hexdigest()[:24]


async def record_step(
    *,
    session: AsyncSession,
    step: Step,
    pseudonym: str,
    cohort_id: int | None,
    reason: str | None = None,
) -> None:
    """Adds one enrolment event in the caller's transaction: codes and a time only."""
    session.add(
        EnrolmentEvent(
            event=str(step),
            cohort_id=cohort_id,
            person=person_hash(pseudonym),
            reason=reason,
            at=now(),
        )
    )
    await session.flush()


# ---------------------------------------------------------------- the export file


def enrolment_rows(conn: sa.Connection, source: Source) -> Iterator[tuple[Any, ...]]:
    """Yields one row per cohort: invites created and used, then people counted once per step.

    Counts only (no pseudonyms), so people who were later deleted are still counted. The
    time range applies to each event's own time and to the invites' creation time.
    """
    f = source.filters
    step_counts: dict[str | None, dict[str, int]] = {}
    query = (
        sa.select(
            col(Cohort.code),
            col(EnrolmentEvent.event),
            sa.func.count(sa.distinct(col(EnrolmentEvent.person))),
        )
        .select_from(EnrolmentEvent)
        .outerjoin(Cohort, col(Cohort.id) == col(EnrolmentEvent.cohort_id))
        .group_by(col(Cohort.code), col(EnrolmentEvent.event))
    )
    if f.since is not None:
        query = query.where(col(EnrolmentEvent.at) >= f.since)
    if f.until is not None:
        query = query.where(col(EnrolmentEvent.at) < f.until)
    if f.cohort is not None:
        query = query.where(col(Cohort.code) == f.cohort)
    for cohort, event, n in conn.execute(query):
        step_counts.setdefault(cohort, {})[event] = int(n)

    invites = (
        sa.select(col(Cohort.code), sa.func.count(col(Invite.id)), sa.func.sum(col(Invite.uses)))
        .join(Cohort, col(Cohort.id) == col(Invite.cohort_id))
        .group_by(col(Cohort.code))
    )
    if f.since is not None:
        invites = invites.where(col(Invite.created_at) >= f.since)
    if f.until is not None:
        invites = invites.where(col(Invite.created_at) < f.until)
    if f.cohort is not None:
        invites = invites.where(col(Cohort.code) == f.cohort)
    invite_counts: dict[str | None, tuple[int, int]] = {
        code: (int(n), int(u or 0)) for code, n, u in conn.execute(invites)
    }

    cohorts: list[str | None] = sorted(
        set(step_counts) | set(invite_counts), key=lambda c: (c is None, c or "")
    )
    for code in cohorts:
        created, used = invite_counts.get(code, (0, 0))
        steps = step_counts.get(code, {})
        yield (code, created, used, *(steps.get(str(s), 0) for s in Step))
