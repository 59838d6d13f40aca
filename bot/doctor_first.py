"""The doctor-first path: rules for when she has stopped her medicine or thinks about it.

Nothing here knows about Telegram or holds a sentence. It starts the path, records her answers
(what her doctor advised, what changed, what makes it hard), keeps her therapy status, writes
alert rows for the coordinators (delivering them is the coordinator flow's job) and decides
what the check-in's adherence question becomes.

Alert rows carry codes only (`src=checkin;n=2;doctor=not_yet;barrier=cost`), never her text.

One open alert per kind and participant: a new trigger while a `stop_intent` (or `red_flag`)
alert is still open (not yet acknowledged or closed by a coordinator) updates that row (the
trigger count `n`, the sources) instead of adding another, so repeated messages never spam the
care team. Once a coordinator has acknowledged or closed it, the next trigger opens a new row.

The stop_intent row is written when the path starts, as a non-urgent digest line ("started,
no answer yet"), so that a signal is never lost if she does not answer. It becomes urgent when
she says she has not talked with her doctor (or would rather not say). If she says her doctor
advised the change, a still non-urgent row is closed and a non-urgent `therapy_change` digest
line is added; an already urgent row stays open (a coordinator should still look).

The adherence question follows her therapy status: after a switch her doctor advised, the
check-in asks about "your current medicine"; after she stopped or finished on her doctor's
advice, the `took_med` item is skipped. A skipped item is not stored at all (no Answer row):
her TherapyChange rows and `Participant.therapy_status` tell researchers why it is absent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import alerts
from bot.clock import now
from bot.intent import rule_name
from bot.models import (
    Alert,
    AlertStatus,
    BarrierReport,
    Participant,
    TherapyChange,
    TherapyStatus,
)

Source = Literal["checkin", "stop_menu", "command", "free_text", "page"]
SOURCES: tuple[str, ...] = ("checkin", "stop_menu", "command", "free_text", "page")

STOP_INTENT = "stop_intent"
RED_FLAG = "red_flag"
# Red-flag alert code: the check-in whose red-flag reply came from her own words.
CHECKIN_CODE = "checkin"
THERAPY_CHANGE = "therapy_change"
EMERGENCY = "emergency"
SELF_HARM = "self_harm"
# Free-text rule ids (content/safety): emergencies under "emergency.", self-harm among them.
# Ids from another language's rule book carry its code first ("es:emergency.breathing").
EMERGENCY_RULES = "emergency."
SELF_HARM_RULES = "emergency.self_harm"


# Her answer to "Have you talked with your doctor about this?"
ADVISED, NOT_YET, PRIVATE = "advised", "not_yet", "private"
DOCTOR_ANSWERS: tuple[str, ...] = (ADVISED, NOT_YET, PRIVATE)
# What changed, on her doctor's advice.
STOPPED, SWITCHED, FINISHED = "stopped", "switched", "finished"
CHANGES: tuple[str, ...] = (STOPPED, SWITCHED, FINISHED)
# She takes a medicine again after a stop or the end of treatment (picked in /settings).
RESTARTED = "restarted"
MEDICINES: tuple[str, ...] = ("anastrozole", "letrozole", "exemestane", "tamoxifen", "other")
WHEN: tuple[str, ...] = ("today", "this_week", "earlier")
BARRIERS: tuple[str, ...] = (
    "joint_pain",
    "other_side_effect",
    "forgot",
    "cost",
    "worry",
    "other",
)

# The check-in item that asks whether she took her tablet, and what it becomes.
ADHERENCE_ITEM = "took_med"
AdherenceMode = Literal["usual", "current", "none"]


# ---------------------------------------------------------------- alert detail codes


# The detail codes live with the alerts; these names stay for the path's own use.
parse_detail = alerts.parse_detail
format_detail = alerts.format_detail
_add_code = alerts.add_code


def codes_of(alert: Alert, key: str) -> tuple[str, ...]:
    """Returns the values of one `+`-joined code of an alert (e.g. its barriers)."""
    return tuple(v for v in parse_detail(alert.detail).get(key, "").split("+") if v)


# ---------------------------------------------------------------- who may be recorded


def may_record(participant: Participant | None) -> bool:
    """Tells whether alerts and answers may be stored for her (consented, not left)."""
    return (
        participant is not None
        and participant.id is not None
        and bool(participant.consent_version)
        and not participant.has_left
    )


# ---------------------------------------------------------------- alerts


async def open_alert(*, session: AsyncSession, participant_id: int, kind: str) -> Alert | None:
    """Returns her alert of this kind that is still open or acknowledged (not closed)."""
    return await alerts.active_alert(session=session, participant_id=participant_id, kind=kind)


async def _upsert_alert(
    *,
    session: AsyncSession,
    participant: Participant,
    kind: str,
    source: str,
    urgent: bool,
    checkin_id: int | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> Alert:
    """Updates her active alert of this kind (count, sources) or opens a new one."""
    return await alerts.upsert_alert(
        session=session,
        participant=participant,
        kind=kind,
        urgent=urgent,
        source=source,
        codes=extra,
        checkin_id=checkin_id,
    )


async def start_path(
    *,
    session: AsyncSession,
    participant: Participant,
    source: str,
    checkin_id: int | None = None,
) -> Alert:
    """Starts the doctor-first path: a non-urgent stop_intent line until she answers."""
    return await _upsert_alert(
        session=session,
        participant=participant,
        kind=STOP_INTENT,
        source=source,
        urgent=False,
        checkin_id=checkin_id,
    )


async def record_red_flag(
    *,
    session: AsyncSession,
    participant: Participant,
    source: str,
    rules: Iterable[str],
    checkin_id: int | None = None,
) -> Alert:
    """Writes (or updates) her urgent red-flag alert with the rule ids that fired.

    With `checkin_id` (her words came during that check-in) the alert also carries the
    check-in's id (`CHECKIN_CODE`): the record that this check-in had its red-flag reply.
    """
    fired = [("rule", r) for r in rules if rule_name(r).startswith("red_flag.")]
    if checkin_id is not None:
        fired.append((CHECKIN_CODE, str(checkin_id)))
    return await _upsert_alert(
        session=session,
        participant=participant,
        kind=RED_FLAG,
        source=source,
        urgent=True,
        checkin_id=checkin_id,
        extra=fired,
    )


async def record_emergency(
    *, session: AsyncSession, participant: Participant, source: str, rules: Iterable[str]
) -> list[Alert]:
    """Writes (or updates) her urgent emergency alert, and a self-harm alert of its own when
    a self-harm rule fired, with the rule ids only (never her words)."""
    fired = [r for r in rules if rule_name(r).startswith(EMERGENCY_RULES)]
    harm = [r for r in fired if rule_name(r).startswith(SELF_HARM_RULES)]
    other = [r for r in fired if r not in harm]
    raised: list[Alert] = []
    for kind, ids in ((SELF_HARM, harm), (EMERGENCY, other)):
        if ids:
            raised.append(
                await _upsert_alert(
                    session=session,
                    participant=participant,
                    kind=kind,
                    source=source,
                    urgent=True,
                    extra=[("rule", r) for r in ids],
                )
            )
    return raised


async def path_alert(
    *, session: AsyncSession, participant: Participant, alert_id: int
) -> Alert | None:
    """Returns the stop_intent alert a button refers to, if it is hers."""
    alert = await session.get(Alert, alert_id)
    if alert is None or alert.kind != STOP_INTENT or alert.participant_id != participant.id:
        return None
    return alert


async def record_doctor_answer(*, session: AsyncSession, alert: Alert, answer: str) -> Alert:
    """Stores whether she talked with her doctor; 'not yet' or 'rather not say' makes it urgent."""
    if answer not in DOCTOR_ANSWERS:
        raise ValueError(f"unknown doctor answer {answer!r}")
    codes = parse_detail(alert.detail)
    codes["doctor"] = answer
    if answer != ADVISED and not alert.urgent:
        alert.urgent = True
        alerts.mark_new(alert)  # now the care team should hear of it
    alert.detail = format_detail(codes)
    session.add(alert)
    await session.flush()
    return alert


def path_number(alert: Alert) -> int:
    """Returns how many times the path was started on this alert (buttons carry it)."""
    raw = parse_detail(alert.detail).get("n", "1")
    return int(raw) if raw.isdigit() else 1


def _first_time(codes: dict[str, str], step: str, path: int) -> bool:
    """Marks a step of one path as done; False when it was done before (a doubled press)."""
    return _add_code(codes, "done", f"{step}{path}")


def _add_digest_line(
    session: AsyncSession,
    participant: Participant,
    codes: dict[str, str],
    *,
    checkin_id: int | None,
) -> None:
    """Adds a therapy change to the coordinators' digest (a non-urgent alert row, codes only)."""
    session.add(
        Alert(
            participant_id=participant.id or 0,
            kind=THERAPY_CHANGE,
            urgent=False,
            detail=format_detail(codes),
            checkin_id=checkin_id,
        )
    )


async def record_change(
    *,
    session: AsyncSession,
    participant: Participant,
    alert: Alert,
    path: int,
    kind: str,
    medicine: str | None,
    when: str,
) -> TherapyChange | None:
    """Records a change her doctor advised, her new therapy status and a digest line.

    Returns None when this path already recorded one (a doubled press).
    """
    if kind not in CHANGES or when not in WHEN:
        raise ValueError("unknown change or time")
    if kind == SWITCHED and medicine not in MEDICINES:
        raise ValueError("a switch needs one of the known medicines")
    codes = parse_detail(alert.detail)
    if not _first_time(codes, "c", path):
        return None
    at = now()
    new_medicine = medicine if kind == SWITCHED else None
    change = TherapyChange(
        participant_id=participant.id or 0,
        kind=kind,
        new_medicine=new_medicine,
        # Only "today" is a date; "this week" / "earlier" are kept as codes on the digest line.
        changed_on=at if when == "today" else None,
        recorded_at=at,
    )
    session.add(change)
    if kind == SWITCHED:
        participant.therapy_status = TherapyStatus.taking
        participant.medicine = new_medicine
    elif kind == STOPPED:
        participant.therapy_status = TherapyStatus.stopped
    else:
        participant.therapy_status = TherapyStatus.finished
    session.add(participant)

    _add_code(codes, "change", kind)
    alert.detail = format_detail(codes)
    if not alert.urgent:
        # She has her doctor's advice and nothing urgent was said: the digest line suffices.
        alert.status = AlertStatus.closed
        alert.closed_at = at
        alert.closed_by = "participant"
    session.add(alert)

    digest = {"change": kind, "medicine": new_medicine or "", "when": when}
    digest["src"] = codes.get("src", "")
    _add_digest_line(session, participant, digest, checkin_id=alert.checkin_id)
    await session.flush()
    return change


async def record_restart(
    *, session: AsyncSession, participant: Participant
) -> TherapyChange | None:
    """Records that she takes a medicine again after telling us it had stopped or finished.

    Called when she picks her medicine in /settings; the check-in asks about it again from
    then on, and the coordinators get a digest line (nothing urgent). None while she is
    already taking one, so a plain correction of the medicine name changes nothing here.
    """
    if participant.therapy_status == TherapyStatus.taking:
        return None
    at = now()
    change = TherapyChange(
        participant_id=participant.id or 0,
        kind=RESTARTED,
        new_medicine=participant.medicine,
        changed_on=None,
        recorded_at=at,
    )
    session.add(change)
    participant.therapy_status = TherapyStatus.taking
    session.add(participant)
    digest = {"change": RESTARTED, "medicine": participant.medicine or "", "src": "settings"}
    _add_digest_line(session, participant, digest, checkin_id=None)
    await session.flush()
    return change


async def record_barrier(
    *, session: AsyncSession, participant: Participant, alert: Alert, path: int, code: str
) -> BarrierReport | None:
    """Stores what makes taking it hard, once per path and code; the alert notes it too."""
    if code not in BARRIERS:
        raise ValueError(f"unknown barrier {code!r}")
    codes = parse_detail(alert.detail)
    if not _first_time(codes, f"b{code}.", path):
        return None
    _add_code(codes, "barrier", code)
    alert.detail = format_detail(codes)
    alert.urgent = True
    session.add(alert)
    source = codes.get("src", "").split("+")[0] or "free_text"
    report = BarrierReport(
        participant_id=participant.id or 0, code=code, source=source, recorded_at=now()
    )
    session.add(report)
    await session.flush()
    return report


async def request_contact(*, session: AsyncSession, alert: Alert, due_by: datetime) -> bool:
    """Marks that she asked the care team to contact her, by when; False when already asked."""
    if alert.contact_requested:
        return False
    alert.contact_requested = True
    alert.urgent = True
    alert.due_by = due_by
    alerts.mark_new(alert)
    session.add(alert)
    await session.flush()
    return True


# ---------------------------------------------------------------- the adherence question


async def adherence_mode(*, session: AsyncSession, participant_id: int) -> AdherenceMode:
    """Tells how the check-in asks about her medicine: as usual, her current one, or not at all."""
    participant = await session.get(Participant, participant_id)
    if participant is None:
        return "usual"
    if participant.therapy_status in (TherapyStatus.stopped, TherapyStatus.finished):
        return "none"
    result = await session.exec(
        select(TherapyChange)
        .where(TherapyChange.participant_id == participant_id)
        .order_by(col(TherapyChange.recorded_at).desc(), col(TherapyChange.id).desc())
    )
    latest = result.first()
    return "current" if latest is not None and latest.kind == SWITCHED else "usual"


async def skipped_items(*, session: AsyncSession, participant_id: int) -> frozenset[str]:
    """Returns the check-in items her therapy status leaves out (none while she takes one)."""
    mode = await adherence_mode(session=session, participant_id=participant_id)
    return frozenset({ADHERENCE_ITEM}) if mode == "none" else frozenset()
