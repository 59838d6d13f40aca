"""The care team in the loop: alerts reach them, buttons close the loop, roles gate everything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot import clock
from bot.models import Alert, AlertAction, AlertStatus, AuditEvent, OutgoingMessage
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

GROUP = -1001234500000
NURSE_A = 5_100_000_001
NURSE_B = 5_100_000_002
ADMIN = 5_100_000_009
STRANGER = 5_100_000_077


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with a coordinators' group, two coordinators and an admin."""
    h = await make_harness(
        f"sqlite:///{tmp_path / 'team.db'}",
        coordinator_chat_id=GROUP,
        coordinator_ids=[NURSE_A, NURSE_B],
        admin_ids=[ADMIN],
    )
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def _red_flag_checkin(h: Harness) -> None:
    """She answers a check-in with a red-flag symptom (a fall)."""
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "5")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "3")
    await h.press(PATIENT, "I had a fall")
    await h.press(PATIENT, "Done")


async def _alerts(h: Harness) -> list[Alert]:
    async with h.db.session() as session:
        return list((await session.exec(select(Alert))).all())


async def test_a_red_flag_reaches_the_group_within_one_tick_and_the_first_press_wins(
    team: Harness,
) -> None:
    h = team
    await _red_flag_checkin(h)
    [alert] = await _alerts(h)
    assert alert.urgent and alert.notify_pending
    await h.tick()
    [message] = h.fake.chat(GROUP)
    assert "URGENT" in message.text and "red-flag" in message.text
    assert "fall" in message.text and "/participant" in message.text
    [alert] = await _alerts(h)
    assert alert.delivered_at is not None and not alert.notify_pending
    # Nurse A acknowledges; the message shows who.
    await h.process(h.updates.callback(NURSE_A, f"al:ack:{alert.id}", message))
    [alert] = await _alerts(h)
    assert alert.status == AlertStatus.acknowledged
    assert "acknowledged by staff:" in h.fake.chat(GROUP)[0].text
    # Nurse B presses Acknowledge on the same copy a moment later: told who acted, no change.
    await h.process(h.updates.callback(NURSE_B, f"al:ack:{alert.id}", message))
    toast = h.fake.answered_callbacks[-1]
    assert "Already acknowledged by staff:" in toast["text"]
    # Resolved closes it, with every action kept.
    await h.process(h.updates.callback(NURSE_B, f"al:res:{alert.id}", message))
    [alert] = await _alerts(h)
    assert alert.status == AlertStatus.closed and alert.closed_reason == "resolved"
    async with h.db.session() as session:
        actions = [a.action for a in (await session.exec(select(AlertAction))).all()]
    assert actions == ["acknowledge", "resolved"]
    assert not h.fake.chat(GROUP)[0].buttons()  # closed: no more buttons


async def test_without_a_group_each_coordinator_gets_the_alert_and_a_press_updates_both(
    tmp_path: Path,
) -> None:
    h = await make_harness(f"sqlite:///{tmp_path / 'two.db'}", coordinator_ids=[NURSE_A, NURSE_B])
    try:
        await _red_flag_checkin(h)
        await h.tick()
        [to_a] = h.fake.chat(NURSE_A)
        [to_b] = h.fake.chat(NURSE_B)
        [alert] = await _alerts(h)
        await h.process(h.updates.callback(NURSE_A, f"al:con:{alert.id}", to_a))
        await h.tick()  # the other copy is updated through the outbox
        assert "acknowledged by" in h.fake.find(NURSE_B, to_b.message_id).text
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_a_patient_pressing_an_alert_button_or_granting_a_role_changes_nothing(
    team: Harness,
) -> None:
    h = team
    await _red_flag_checkin(h)
    await h.tick()
    [message] = h.fake.chat(GROUP)
    [alert] = await _alerts(h)
    await h.process(h.updates.callback(PATIENT, f"al:res:{alert.id}", message))
    [still] = await _alerts(h)
    assert still.status == AlertStatus.open
    await h.command(PATIENT, "grant", str(PATIENT), "admin")
    granted = h.fake.texts(PATIENT)[-1]
    await h.command(PATIENT, "no_such_command")
    assert granted == h.fake.texts(PATIENT)[-1]  # exactly the unknown-command reply
    async with h.db.session() as session:
        assert (await session.exec(select(AuditEvent))).all() == []


async def test_an_admin_grants_a_coordinator_who_then_acts_on_alerts_and_it_is_audited(
    team: Harness,
) -> None:
    h = team
    await h.command(ADMIN, "grant", str(STRANGER), "coordinator")
    assert "is now coordinator" in h.fake.texts(ADMIN)[-1]
    await _red_flag_checkin(h)
    await h.tick()
    [message] = h.fake.chat(GROUP)
    [alert] = await _alerts(h)
    await h.process(h.updates.callback(STRANGER, f"al:na:{alert.id}", message))
    [closed] = await _alerts(h)
    assert closed.status == AlertStatus.closed and closed.closed_reason == "not_actionable"
    await h.command(ADMIN, "revoke", str(STRANGER), "coordinator")
    assert "no longer coordinator" in h.fake.texts(ADMIN)[-1]
    await h.command(ADMIN, "revoke", str(NURSE_A), "coordinator")
    assert "through the settings" in h.fake.texts(ADMIN)[-1]
    async with h.db.session() as session:
        audit = [(e.action, e.detail) for e in (await session.exec(select(AuditEvent))).all()]
    assert ("role_granted", "role=coordinator") in audit
    assert ("role_revoked", "role=coordinator") in audit


async def test_a_contact_request_reaches_the_team_with_its_due_by_time(team: Harness) -> None:
    h = team
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Joint pain")
    await h.press(PATIENT, "Ask the care team to contact me")
    assert "within 2 working days" in h.fake.texts(PATIENT)[-1]
    await h.tick()
    text = h.fake.chat(GROUP)[-1].text
    assert "please reach her by" in text
    [alert] = [a for a in await _alerts(h) if a.contact_requested]
    assert alert.due_by is not None and alert.due_by > clock.now() + timedelta(days=1)


async def test_when_no_receiver_gets_a_contact_request_she_is_told_to_call(team: Harness) -> None:
    h = team
    h.fake.block(GROUP)  # the bot was removed from the group
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Joint pain")
    await h.press(PATIENT, "Ask the care team to contact me")
    await h.tick()  # the alert fails for good (403)
    await h.tick()  # she is told
    assert "Please call them yourself" in h.fake.texts(PATIENT)[-1]
    assert "999" in h.fake.texts(PATIENT)[-1]
    async with h.db.session() as session:
        rows = (await session.exec(select(OutgoingMessage))).all()
    assert any(r.kind == "alert" and r.state == "failed" for r in rows)
