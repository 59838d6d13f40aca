"""The care team in the loop, beyond one alert: the daily digest, overdue contact requests,
rules that follow no check-in (missed in a row, unreachable) and free-text emergencies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from bot import alerts as alert_core
from bot.content import ContentError
from bot.models import Alert, AlertAction, AlertStatus, OutgoingMessage, Participant
from bot.offers import parse_rules
from bot.outbox import payload_of
from bot.paths import content_dir
from tests.conftest import PATIENT, START, Harness, make_harness
from tests.dispatch_helpers import add_participant, move_to
from tests.factories import make_active_participant

GROUP = -1001234500000
NURSE = 5_100_000_001
NURSE_2 = 5_100_000_002
PATIENT_2 = 5_000_000_002
# START is Monday 12 January 2026, 09:00 UTC (09:00 in London, 04:00 in New York).
DAY = timedelta(days=1)


async def _team(url: str, **overrides: Any) -> Harness:
    """A bot with a coordinators' group and one coordinator."""
    return await make_harness(url, coordinator_chat_id=GROUP, coordinator_ids=[NURSE], **overrides)


async def _close(h: Harness) -> None:
    await h.app.shutdown()
    await h.db.dispose()


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot whose care team works on London time (the default zone); digest at 08:30."""
    h = await _team(f"sqlite:///{tmp_path / 'team.db'}")
    yield h
    await _close(h)


async def _alerts(h: Harness, kind: str | None = None) -> list[Alert]:
    async with h.db.session() as session:
        query = select(Alert).order_by(col(Alert.id))
        if kind is not None:
            query = query.where(Alert.kind == kind)
        return list((await session.exec(query)).all())


async def _outbox(h: Harness, kind: str) -> list[OutgoingMessage]:
    async with h.db.session() as session:
        query = select(OutgoingMessage).where(OutgoingMessage.kind == kind)
        return list((await session.exec(query.order_by(col(OutgoingMessage.id)))).all())


async def _participant(h: Harness, telegram_user_id: int) -> Participant:
    async with h.db.session() as session:
        found = await session.exec(
            select(Participant).where(Participant.telegram_user_id == telegram_user_id)
        )
        return found.one()


def _digests(h: Harness) -> list[str]:
    return [text for text in h.fake.texts(GROUP) if text.startswith("Daily summary")]


async def _ask_to_be_contacted(h: Harness) -> None:
    """She says she is thinking of stopping, has not talked with her doctor, asks for a call."""
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Joint pain")
    await h.press(PATIENT, "Ask the care team to contact me")


# ---------------------------------------------------------------- the digest


async def test_the_digest_arrives_once_a_day_at_digest_time_in_the_team_zone_with_codes_only(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    h = await _team(url, coverage_timezone="America/New_York")
    try:
        # Two participants, three alerts that are not urgent, all in her own words.
        first = await make_active_participant(h.db)
        async with h.db.session() as session:
            row = await session.get(Participant, first.id)
            assert row is not None
            row.site_study_id = "SITE-07"
            session.add(row)
        await h.send(PATIENT, "I stopped taking my Arimidex last week")
        await h.command(PATIENT, "checkin")
        for label in ("Yes", "8", "Not stiff", "3", "None", "Done"):
            await h.press(PATIENT, label)
        await h.send(PATIENT, "Margaret drove me to the garden centre")
        second = await make_active_participant(h.db, telegram_user_id=PATIENT_2)
        await h.send(PATIENT_2, "I don't want to take my hormone therapy anymore")
        assert sorted(a.kind for a in await _alerts(h)) == [
            "severe_pain",
            "stop_intent",
            "stop_intent",
        ]
        assert not any(a.urgent for a in await _alerts(h))

        await h.tick()  # 04:00 in New York
        move_to(START.replace(hour=13, minute=29))  # 08:29 in New York
        await h.tick()
        assert h.fake.chat(GROUP) == []
        move_to(START.replace(hour=13, minute=30))  # 08:30 in New York
        await h.tick()
        [digest] = h.fake.chat(GROUP)
        lines = digest.text.splitlines()
        assert lines[0] == "Daily summary for Mon 12 Jan"
        assert "Open alerts not marked urgent: 3" in lines
        assert "• stopping her medicine: 2" in lines
        assert "• severe pain: 1" in lines
        [line_1] = [line for line in lines if line.startswith(first.pseudonym)]
        assert line_1.startswith(f"{first.pseudonym} (site study id SITE-07): ")
        assert "stopping her medicine, raised 1 time(s) (src free_text)" in line_1
        assert "severe pain, raised 1 time(s) (src checkin, rule severe_pain, worst_pain 8)" in (
            line_1
        )
        line_2 = f"{second.pseudonym}: stopping her medicine, raised 1 time(s) (src free_text)"
        assert line_2 in lines
        assert digest.buttons() == [
            (f"Open {first.pseudonym}", f"pt:{first.id}"),
            (f"Open {second.pseudonym}", f"pt:{second.id}"),
        ]
        for typed in ("Arimidex", "Margaret", "garden", "hormone", "anymore"):
            assert typed not in digest.text

        # Not twice the same day: later ticks, or 23:00 in New York (Tuesday in London).
        move_to(START.replace(hour=13, minute=31))
        await h.tick()
        move_to(START + timedelta(hours=19))  # Tue 04:00 UTC, Mon 23:00 in New York
        await h.tick()
        assert len(_digests(h)) == 1
    finally:
        await _close(h)

    # A restart over the same database does not send it again.
    h = await _team(url, coverage_timezone="America/New_York")
    try:
        await h.tick()
        assert h.fake.chat(GROUP) == []
        assert len(await _outbox(h, "digest")) == 1
        # The next day (still open, nobody acted): the next digest, once.
        move_to(START.replace(hour=13, minute=30) + DAY)
        await h.tick()
        await h.tick()
        [digest] = _digests(h)
        assert digest.startswith("Daily summary for Tue 13 Jan")
        assert len(await _outbox(h, "digest")) == 2
    finally:
        await _close(h)


async def test_no_digest_when_there_is_nothing_to_report_and_a_later_alert_waits_a_day(
    team: Harness,
) -> None:
    h = team
    p = await make_active_participant(h.db)
    await h.tick()  # Monday 09:00 in London, past 08:30: nothing to report
    # An urgent alert goes out on its own, never in the digest.
    await h.send(PATIENT, "my knee is swollen and red")
    # A digest line raised after today's digest time waits for tomorrow's digest.
    await h.send(PATIENT, "I stopped taking my Arimidex last week")
    move_to(START + timedelta(hours=3))
    await h.tick()
    [urgent] = h.fake.texts(GROUP)
    assert urgent.startswith("URGENT alert: red-flag symptom")
    assert await _outbox(h, "digest") == []

    move_to(START.replace(hour=8, minute=30) + DAY)
    await h.tick()
    [digest] = _digests(h)
    assert "Open alerts not marked urgent: 1" in digest
    assert f"{p.pseudonym}: stopping her medicine" in digest
    assert "red-flag" not in digest


# ---------------------------------------------------------------- overdue contact requests


async def test_an_overdue_contact_request_tops_the_digest_and_is_sent_again_once(
    team: Harness,
) -> None:
    h = team
    p = await make_active_participant(h.db)
    await _ask_to_be_contacted(h)
    await h.tick()
    [message] = h.fake.chat(GROUP)
    [alert] = await _alerts(h, "stop_intent")
    assert alert.contact_requested and alert.due_by is not None
    # Acknowledged, but nobody presses Contacted: due by Wednesday evening.
    await h.process(h.updates.callback(NURSE, f"al:ack:{alert.id}", message))
    move_to(START.replace(hour=8, minute=30) + 2 * DAY)  # Wednesday: not overdue yet
    await h.tick()
    assert len(h.fake.chat(GROUP)) == 1

    move_to(START.replace(hour=8, minute=30) + 3 * DAY)  # Thursday 08:30
    await h.tick()
    again, digest = h.fake.texts(GROUP)[1:]
    assert again.startswith("URGENT alert: stopping her medicine")
    assert "Contact request OVERDUE since Wed 14 Jan 23:59" in again
    lines = digest.splitlines()
    assert lines[0] == "Daily summary for Thu 15 Jan"
    assert lines[1].startswith(f"OVERDUE contact request: {p.pseudonym} (stopping her medicine)")
    assert "was to be reached by Wed 14 Jan 23:59" in lines[1]
    assert h.fake.chat(GROUP)[-1].buttons() == [(f"Open {p.pseudonym}", f"pt:{p.id}")]
    async with h.db.session() as session:
        escalations = (
            await session.exec(select(AlertAction).where(AlertAction.action == "escalated"))
        ).all()
    assert [(e.alert_id, e.actor) for e in escalations] == [(alert.id, "system:overdue")]

    # Still overdue the next day: in the digest again, but sent again only the once.
    await h.tick()
    move_to(START.replace(hour=8, minute=30) + 4 * DAY)
    await h.tick()
    assert len(_digests(h)) == 2 and "OVERDUE contact request" in _digests(h)[-1]
    overdue = [r for r in await _outbox(h, "alert") if payload_of(r)["reason"] == "overdue"]
    assert len(overdue) == 1
    # Once she was contacted, the request leaves the digest (and nothing else is to report).
    await h.process(h.updates.callback(NURSE, f"al:con:{alert.id}", message))
    move_to(START.replace(hour=8, minute=30) + 5 * DAY)
    await h.tick()
    assert len(_digests(h)) == 2


@pytest.mark.postgres
async def test_concurrent_ticks_on_postgres_queue_one_digest_per_chat_and_escalate_once(
    pg_url: str,
) -> None:
    # No group: each coordinator gets the digest in her private chat.
    h = await make_harness(pg_url, coordinator_ids=[NURSE, NURSE_2])
    try:
        await make_active_participant(h.db)
        await _ask_to_be_contacted(h)
        await make_active_participant(h.db, telegram_user_id=PATIENT_2)
        await h.send(PATIENT_2, "I stopped taking my Arimidex last week")
        await h.tick()
        [alert] = [a for a in await _alerts(h) if a.contact_requested]
        await h.process(h.updates.callback(NURSE, f"al:ack:{alert.id}", h.fake.chat(NURSE)[0]))
        await h.tick()  # the other copy shows the acknowledgement
        move_to(START.replace(hour=8, minute=30) + 3 * DAY)
        await asyncio.gather(h.tick(), h.tick(), h.tick())
        await h.tick()
        for chat in (NURSE, NURSE_2):
            texts = h.fake.texts(chat)
            assert len([t for t in texts if t.startswith("Daily summary for Thu 15 Jan")]) == 1
            assert len([t for t in texts if "Contact request OVERDUE" in t]) == 1
        again = [r for r in await _outbox(h, "alert") if payload_of(r)["reason"] == "overdue"]
        assert sorted(r.chat_id for r in again) == [NURSE, NURSE_2]
        async with h.db.session() as session:
            escalated = await session.exec(
                select(AlertAction).where(AlertAction.action == "escalated")
            )
            assert len(escalated.all()) == 1
    finally:
        await _close(h)


# ---------------------------------------------------------------- rules that follow no check-in


async def test_three_missed_checkins_in_a_row_raise_one_digest_alert_and_a_fourth_updates_it(
    team: Harness,
) -> None:
    h = team
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    for day in range(4):
        due = START.replace(hour=9, minute=30) + day * DAY
        move_to(due)
        await h.tick()  # the check-in goes out
        move_to(due + timedelta(hours=6, minutes=1))
        await h.tick()  # its window closes: no answer
        found = await _alerts(h, "missed_checkins")
        assert len(found) == (0 if day < 2 else 1)
    [alert] = found
    assert not alert.urgent and alert.count == 2
    codes = alert_core.parse_detail(alert.detail)
    assert (codes["rule"], codes["in_a_row"]) == ("missed_3", "4")
    # A digest line, never an urgent message.
    assert not [t for t in h.fake.texts(GROUP) if t.startswith("URGENT")]
    move_to(START.replace(hour=8, minute=30) + 4 * DAY)
    await h.tick()
    assert (
        f"{p.pseudonym}: check-ins missed in a row, raised 2 time(s) "
        "(rule missed_3, in_a_row 4)" in _digests(h)[-1]
    )


async def test_an_answered_checkin_ends_a_run_of_misses(team: Harness) -> None:
    h = team
    await add_participant(h.db, uid=PATIENT, local_time="09:30")
    for day in range(5):
        due = START.replace(hour=9, minute=30) + day * DAY
        move_to(due)
        await h.tick()
        if day == 2:
            for label in ("Yes", "2", "Not stiff", "1", "None", "Done", "Skip"):
                await h.press(PATIENT, label)
        move_to(due + timedelta(hours=6, minutes=1))
        await h.tick()
    # Missed, missed, answered, missed, missed: never three in a row.
    assert await _alerts(h, "missed_checkins") == []


async def test_a_blocked_participant_raises_an_unreachable_alert_that_closes_when_she_unblocks(
    team: Harness,
) -> None:
    h = team
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    h.fake.block(PATIENT)
    move_to(START.replace(hour=9, minute=30))
    await h.tick()  # the check-in meets a 403: she is unreachable
    assert (await _participant(h, PATIENT)).reachable is False
    await h.tick()
    await h.tick()
    [alert] = await _alerts(h, "unreachable")
    assert not alert.urgent and alert.status == AlertStatus.open and alert.count == 1
    assert alert_core.parse_detail(alert.detail)["rule"] == "unreachable"
    assert h.fake.chat(GROUP) == []  # a digest line, not an urgent message

    unblocked_at = START.replace(hour=12)
    move_to(unblocked_at)
    await h.process(h.updates.my_chat_member(PATIENT, blocked=False))
    [alert] = await _alerts(h, "unreachable")
    assert alert.status == AlertStatus.closed
    assert (alert.closed_by, alert.closed_reason) == ("system:reachable", "reachable")
    assert alert.closed_at == unblocked_at
    await h.tick()
    assert len(await _alerts(h, "unreachable")) == 1

    # Blocked again later: a new alert for the new block.
    move_to(unblocked_at + DAY)
    await h.process(h.updates.my_chat_member(PATIENT, blocked=True))
    await h.tick()
    await h.tick()
    first, again = await _alerts(h, "unreachable")
    assert first.status == AlertStatus.closed
    assert again.status == AlertStatus.open and again.participant_id == p.id


async def test_a_standing_rule_with_a_mistake_is_refused_when_the_rules_file_loads() -> None:
    raw = yaml.safe_load((content_dir() / "rules" / "offers.yaml").read_text(encoding="utf-8"))
    assert [(r.code, r.kind) for r in parse_rules(raw).standing] == [
        ("missed_3", "missed_in_a_row"),
        ("unreachable", "unreachable"),
    ]
    mistakes: list[tuple[dict[str, Any], str]] = [
        ({"code": "m", "when": {"kind": "missed_in_a_row", "count": 1}}, "'count'"),
        ({"code": "m", "when": {"kind": "silent"}}, "'when.kind'"),
        ({"code": "red_flag", "when": {"kind": "unreachable"}}, "used twice"),
        ({"code": "m", "when": {"kind": "unreachable", "count": 3}}, "no other field"),
        ({"code": "m", "when": {"kind": "unreachable"}, "alert": None}, "needs an alert"),
        (
            {
                "code": "m",
                "when": {"kind": "unreachable"},
                "alert": {"kind": "x", "urgent": True, "urgent_after": 2},
            },
            "urgent_after",
        ),
    ]
    for change, message in mistakes:
        entry = {"alert": {"kind": "x", "urgent": False}} | change
        with pytest.raises(ContentError, match=message):
            parse_rules(raw | {"standing_rules": [entry]})


# ---------------------------------------------------------------- free-text emergencies


async def test_a_typed_emergency_raises_an_urgent_alert_with_codes_only_within_one_tick(
    team: Harness,
) -> None:
    h = team
    await make_active_participant(h.db)
    await h.send(PATIENT, "I have crushing chest pain and can't breathe")
    assert h.last(PATIENT).text.startswith("If this is an emergency, call 999 now.")
    [alert] = await _alerts(h)
    assert (alert.kind, alert.urgent) == ("emergency", True)
    codes = alert_core.parse_detail(alert.detail)
    rules = "emergency.breathing+emergency.chest+emergency.signs_cardiac"  # rule ids, never text
    assert codes == {"n": "1", "src": "free_text", "rule": rules}
    await h.tick()
    [message] = h.fake.texts(GROUP)
    assert message.startswith("URGENT alert: emergency described in a message")
    assert "emergency.chest" in message
    for typed in ("crushing", "can't", "breathe "):
        assert typed not in message


async def test_a_typed_thought_of_self_harm_raises_its_own_urgent_alert_within_one_tick(
    team: Harness,
) -> None:
    h = team
    await make_active_participant(h.db)
    await h.send(PATIENT, "some days I think about killing myself")
    assert "call 999 now" in h.last(PATIENT).text
    [alert] = await _alerts(h)
    assert (alert.kind, alert.urgent) == ("self_harm", True)
    assert alert_core.parse_detail(alert.detail)["rule"] == "emergency.self_harm"
    await h.tick()
    [message] = h.fake.texts(GROUP)
    assert message.startswith("URGENT alert: thoughts of self-harm")
    assert "killing" not in message and "some days" not in message


async def test_alerts_of_a_participant_who_deleted_her_data_stay_closed_and_are_never_sent(
    team: Harness,
) -> None:
    h = team
    await make_active_participant(h.db)
    await h.send(PATIENT, "I want to end my life")
    await h.send(PATIENT, "I stopped taking my Arimidex last week")
    await h.command(PATIENT, "delete_my_data")
    await h.press(PATIENT, "Yes, delete my data")
    await h.tick()
    move_to(START.replace(hour=8, minute=30) + DAY)
    await h.tick()
    assert h.fake.chat(GROUP) == []
    found = await _alerts(h)
    assert {a.kind for a in found} == {"self_harm", "stop_intent"}
    for alert in found:
        assert alert.status == AlertStatus.closed and not alert.notify_pending
        assert (alert.closed_by, alert.closed_reason, alert.detail) == (
            "system:deleted",
            "deleted",
            None,
        )


def test_digest_time_is_read_in_the_team_zone() -> None:
    from tests.conftest import make_settings

    settings = make_settings("sqlite://", coverage_timezone="Asia/Tokyo", digest_time="07:45")
    # 22:44 UTC on Sunday is 07:44 on Monday in Tokyo; a minute later the digest is due.
    sunday = datetime(2026, 1, 11, 22, 44, tzinfo=START.tzinfo)
    assert alert_core.digest_cutoff(settings, sunday) is None
    cutoff = alert_core.digest_cutoff(settings, sunday + timedelta(minutes=1))
    assert cutoff == sunday + timedelta(minutes=1)
    assert cutoff is not None and alert_core.digest_day(settings, cutoff).isoformat() == (
        "2026-01-12"
    )
