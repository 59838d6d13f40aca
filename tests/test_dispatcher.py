"""The dispatcher tick: on-time check-ins, DST days, reminders, windows, restarts, no doubles."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import checkins, clock
from bot import participants as pt
from bot.config import Settings
from bot.models import (
    Answer,
    CheckIn,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OutboxState,
    OutgoingMessage,
    Participant,
)
from bot.outbox import enqueue
from tests.conftest import PATIENT, Harness, make_harness
from tests.dispatch_helpers import (
    add_participant,
    checkins_of,
    move_to,
    outbox,
    prepare,
    reload,
    run_for,
    tick,
)
from tests.onboarding_steps import onboard, participant, pending_checkins

MADRID = "Europe/Madrid"
NEW_YORK = "America/New_York"


@pytest.fixture
async def h(harness: Harness) -> Harness:
    """The harness in virtual time with simple check-in renderers."""
    prepare(harness)
    return harness


async def pending(h: Harness, participant_id: int) -> CheckIn:
    """Returns her one check-in that waits to be sent."""
    waiting = [
        c
        for c in await checkins_of(h.db, participant_id)
        if c.status == CheckInStatus.scheduled and c.queued_at is None
    ]
    assert len(waiting) == 1, waiting
    return waiting[0]


async def jump_to_next(h: Harness, participant_id: int) -> CheckIn:
    """Moves time to a few seconds after her next check-in is due and ticks."""
    due = await pending(h, participant_id)
    move_to(due.due_at + timedelta(seconds=5))
    await tick(h)
    return due


def local(at: datetime, tz: str) -> datetime:
    """Returns the instant as naive local wall time."""
    return at.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


async def sent_checkins(h: Harness) -> list[OutgoingMessage]:
    """Returns every check-in message that went out."""
    return await outbox(h.db, kind="checkin", state=OutboxState.sent)


# ---------------------------------------------------------------- on time, DST, zone change


async def test_checkin_arrives_on_time_at_her_local_time(h: Harness) -> None:
    # 09:00 UTC is 10:00 in Madrid; she chose 10:05 local.
    p = await add_participant(h.db, uid=PATIENT, tz=MADRID, local_time="10:05")
    await run_for(h, timedelta(minutes=10), every=10)
    [row] = await sent_checkins(h)
    [message] = h.fake.chat(PATIENT)
    due = datetime(2026, 1, 12, 9, 5, tzinfo=UTC)
    assert timedelta(0) <= message.sent_at - due <= timedelta(seconds=30)
    assert local(message.sent_at, MADRID).strftime("%H:%M") == "10:05"
    [checkin, _next] = await checkins_of(h.db, p.id or 0)
    assert checkin.status == CheckInStatus.sent
    assert checkin.sent_at == row.sent_at
    assert checkin.message_ids == str(message.message_id)
    assert checkin.next_reminder_at == row.sent_at + timedelta(minutes=120)
    assert _next.due_at == due + timedelta(days=1)


@pytest.mark.parametrize(
    ("tz", "day"), [(MADRID, datetime(2026, 3, 29)), (NEW_YORK, datetime(2026, 3, 8))]
)
async def test_spring_forward_checkin_at_0230_is_sent_once_at_0330(
    h: Harness, tz: str, day: datetime
) -> None:
    move_to(datetime(day.year, day.month, day.day, 12, tzinfo=UTC) - timedelta(days=2))
    p = await add_participant(h.db, uid=PATIENT, tz=tz, local_time="02:30")
    for _ in range(3):
        await jump_to_next(h, p.id or 0)
    sent = [local(row.sent_at, tz) for row in await sent_checkins(h) if row.sent_at]
    on_the_day = [t for t in sent if t.date() == day.date()]
    assert [t.strftime("%H:%M") for t in on_the_day] == ["03:30"]
    assert [t.strftime("%H:%M") for t in sent if t.date() != day.date()] == ["02:30", "02:30"]


@pytest.mark.parametrize(
    ("tz", "day", "hhmm"),
    [(NEW_YORK, datetime(2026, 11, 1), "01:30"), (MADRID, datetime(2026, 10, 25), "02:30")],
)
async def test_autumn_checkin_in_the_repeated_hour_is_sent_once_at_the_first_pass(
    h: Harness, tz: str, day: datetime, hhmm: str
) -> None:
    move_to(datetime(day.year, day.month, day.day, 12, tzinfo=UTC) - timedelta(days=2))
    p = await add_participant(h.db, uid=PATIENT, tz=tz, local_time=hhmm)
    for _ in range(3):
        await jump_to_next(h, p.id or 0)
    # Tick through the repeated hour too: nothing more may go out.
    await run_for(h, timedelta(hours=2), every=60)
    sent = [row.sent_at for row in await sent_checkins(h) if row.sent_at]
    on_the_day = [t for t in sent if local(t, tz).date() == day.date()]
    assert len(on_the_day) == 1
    summer_offset = datetime(day.year, 8, 1, tzinfo=ZoneInfo(tz)).utcoffset()
    assert on_the_day[0].astimezone(ZoneInfo(tz)).utcoffset() == summer_offset
    assert all(local(t, tz).strftime("%H:%M") == hhmm for t in sent)


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (MADRID, datetime(2026, 3, 29)),
        (NEW_YORK, datetime(2026, 3, 8)),
        (MADRID, datetime(2026, 10, 25)),
        (NEW_YORK, datetime(2026, 11, 1)),
    ],
)
async def test_nine_oclock_checkin_arrives_at_nine_local_across_the_change(
    h: Harness, tz: str, day: datetime
) -> None:
    move_to(datetime(day.year, day.month, day.day, 12, tzinfo=UTC) - timedelta(days=2))
    p = await add_participant(h.db, uid=PATIENT, tz=tz, local_time="09:00")
    for _ in range(4):
        await jump_to_next(h, p.id or 0)
    sent = [local(row.sent_at, tz) for row in await sent_checkins(h) if row.sent_at]
    assert len(sent) == 4
    assert {t.strftime("%H:%M") for t in sent} == {"09:00"}
    assert len({t.date() for t in sent}) == 4


async def test_changing_her_zone_moves_the_next_checkin(h: Harness) -> None:
    from bot.scheduling import set_schedule

    p = await add_participant(h.db, uid=PATIENT, tz="Europe/London", local_time="09:00")
    assert (await pending(h, p.id or 0)).due_at == datetime(2026, 1, 13, 9, tzinfo=UTC)
    async with h.db.session() as session:
        participant = await session.get(Participant, p.id)
        assert participant is not None
        await set_schedule(
            session=session,
            participant=participant,
            local_time="09:00",
            weekdays="0123456",
            timezone=NEW_YORK,
        )
    move_to(datetime(2026, 1, 12, 13, 59, 50, tzinfo=UTC))
    await tick(h)
    assert h.fake.chat(PATIENT) == []
    move_to(datetime(2026, 1, 12, 14, 0, 5, tzinfo=UTC))
    await tick(h)
    [message] = h.fake.chat(PATIENT)
    assert local(message.sent_at, NEW_YORK).strftime("%H:%M") == "09:00"
    move_to(datetime(2026, 1, 13, 9, 0, 30, tzinfo=UTC))  # her old London slot
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 1


# ---------------------------------------------------------------- reminders


async def test_one_reminder_after_the_delay_then_none(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:05")
    checkin = await jump_to_next(h, p.id or 0)
    sent_at = clock.now()
    move_to(sent_at + timedelta(minutes=119))
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 1
    move_to(sent_at + timedelta(minutes=121))
    report = await tick(h)
    assert report.reminders_queued == 1 and report.sent == 1
    assert len(h.fake.chat(PATIENT)) == 2
    await run_for(h, timedelta(hours=3), every=300)
    assert len(h.fake.chat(PATIENT)) == 2  # only one automatic reminder
    stored = await reload(h.db, CheckIn, checkin.id)
    assert stored.reminder_count == 1
    assert stored.next_reminder_at is None
    assert len(stored.message_ids.split(",")) == 2


async def test_reminder_waits_for_the_end_of_her_quiet_hours(h: Harness) -> None:
    # A 05:00 check-in goes out at 05:00 (she chose it); its reminder (07:00) waits until 08:00.
    p = await add_participant(h.db, uid=PATIENT, local_time="05:00")
    checkin = await jump_to_next(h, p.id or 0)
    assert local(h.fake.last(PATIENT).sent_at, "Europe/London").hour == 5
    stored = await reload(h.db, CheckIn, checkin.id)
    assert stored.next_reminder_at == datetime(2026, 1, 13, 8, 0, tzinfo=UTC)
    move_to(checkin.due_at + timedelta(hours=2, seconds=10))
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 1
    move_to(datetime(2026, 1, 13, 8, 0, 5, tzinfo=UTC))
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 2


@pytest.mark.parametrize(
    "hhmm", pt.time_presets(Settings.model_fields["default_checkin_time"].default)
)
async def test_every_offered_time_is_reminded_before_her_quiet_hours(
    harness: Harness, hhmm: str
) -> None:
    # Through set-up and the real renderers: the default time (19:00) and 20:00 used to get
    # no reminder at all, since 120 minutes after them falls in her quiet hours (21:00).
    h = harness
    await onboard(h, time_label=hhmm)
    assert not any("no reminders" in text for text in h.texts(PATIENT))
    p = await participant(h.db)
    assert p is not None and p.id is not None
    [checkin] = await pending_checkins(h.db, p.id)
    move_to(checkin.due_at + timedelta(seconds=5))
    await h.tick()
    sent = h.last(PATIENT)
    assert sent.text.startswith("Time for your check-in")
    planned = (await reload(h.db, CheckIn, checkin.id)).next_reminder_at
    assert planned is not None
    move_to(planned - timedelta(minutes=1))
    await h.tick()
    assert h.last(PATIENT) is sent
    move_to(planned + timedelta(seconds=5))
    await h.tick()
    reminder = h.last(PATIENT)
    assert reminder.text.startswith("A gentle reminder")
    assert local(reminder.sent_at, "Europe/London").time() < time(21, 0)
    assert timedelta(minutes=30) <= reminder.sent_at - sent.sent_at <= timedelta(minutes=121)
    move_to(checkin.window_closes_at + timedelta(seconds=5))
    await h.tick()
    stored = await reload(h.db, CheckIn, checkin.id)
    assert (stored.status, stored.reminder_count) == (CheckInStatus.missed, 1)


async def test_checkin_too_close_to_her_quiet_hours_gets_no_reminder(h: Harness) -> None:
    # 20:45: no time is both 30 minutes after it and before quiet hours begin at 21:00.
    p = await add_participant(h.db, uid=PATIENT, local_time="20:45")
    checkin = await jump_to_next(h, p.id or 0)
    assert (await reload(h.db, CheckIn, checkin.id)).next_reminder_at is None
    await run_for(h, timedelta(hours=7), every=1800)
    assert len(h.fake.chat(PATIENT)) == 1
    stored = await reload(h.db, CheckIn, checkin.id)
    assert stored.status == CheckInStatus.missed
    assert stored.missed_reason == MissedReason.no_answer
    assert stored.reminder_count == 0


async def test_remind_me_in_an_hour_sends_another_reminder(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:05")
    checkin = await jump_to_next(h, p.id or 0)
    move_to(clock.now() + timedelta(minutes=121))
    await tick(h)
    async with h.db.session() as session:
        row = await session.get(CheckIn, checkin.id)
        assert row is not None
        assert await checkins.snooze(session=session, checkin=row, minutes=60)
    move_to(clock.now() + timedelta(minutes=61))
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 3
    stored = await reload(h.db, CheckIn, checkin.id)
    assert stored.reminder_count == 2


# ---------------------------------------------------------------- windows


async def test_window_close_records_no_answer_or_closed_partial(h: Harness) -> None:
    silent = await add_participant(h.db, uid=PATIENT, local_time="09:05")
    partly = await add_participant(h.db, uid=PATIENT + 1, local_time="09:05")
    move_to(datetime(2026, 1, 12, 9, 5, 5, tzinfo=UTC))
    await tick(h)
    [c_silent, _] = await checkins_of(h.db, silent.id or 0)
    [c_partly, _] = await checkins_of(h.db, partly.id or 0)
    async with h.db.session() as session:
        session.add(Answer(checkin_id=c_partly.id or 0, item_code="took_med", value="yes"))
        row = await session.get(CheckIn, c_partly.id)
        assert row is not None
        row.status = CheckInStatus.partial
        session.add(row)
        # A reminder still waiting when the window closes is cancelled.
        await enqueue(
            session,
            kind="reminder",
            chat_id=PATIENT,
            participant_id=silent.id,
            checkin_id=c_silent.id,
            not_before=datetime(2026, 1, 13, tzinfo=UTC),
        )
    move_to(datetime(2026, 1, 12, 15, 5, 1, tzinfo=UTC))
    report = await tick(h)
    assert report.windows_closed == 2
    s = await reload(h.db, CheckIn, c_silent.id)
    q = await reload(h.db, CheckIn, c_partly.id)
    assert (s.status, s.missed_reason) == (CheckInStatus.missed, MissedReason.no_answer)
    assert (q.status, q.missed_reason) == (CheckInStatus.missed, MissedReason.closed_partial)
    assert s.closed_at == clock.now()
    [reminder] = await outbox(h.db, kind="reminder")
    assert reminder.state == OutboxState.cancelled


# ---------------------------------------------------------------- restart catch-up


async def test_checkin_due_while_the_bot_was_down_is_sent_if_its_window_is_open(
    h: Harness,
) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    move_to(datetime(2026, 1, 12, 11, 0, tzinfo=UTC))  # down from 09:00 to 11:00
    await tick(h)
    assert len(h.fake.chat(PATIENT)) == 1
    [first, _] = await checkins_of(h.db, p.id or 0)
    assert first.status == CheckInStatus.sent


async def test_checkin_whose_window_passed_during_the_outage_is_missed_not_sent_outage(
    h: Harness,
) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    move_to(datetime(2026, 1, 12, 16, 0, tzinfo=UTC))
    report = await tick(h)
    assert h.fake.chat(PATIENT) == []
    [first, upcoming] = await checkins_of(h.db, p.id or 0)
    assert (first.status, first.missed_reason) == (
        CheckInStatus.missed,
        MissedReason.not_sent_outage,
    )
    assert report.missed == {MissedReason.not_sent_outage: 1}
    assert upcoming.due_at == datetime(2026, 1, 13, 9, 30, tzinfo=UTC)


async def test_several_days_down_records_each_missed_day_and_sends_today(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    move_to(datetime(2026, 1, 15, 10, 0, tzinfo=UTC))
    report = await tick(h)
    rows = await checkins_of(h.db, p.id or 0)
    assert [(c.due_at.day, c.status, c.missed_reason) for c in rows] == [
        (12, CheckInStatus.missed, MissedReason.not_sent_outage),
        (13, CheckInStatus.missed, MissedReason.not_sent_outage),
        (14, CheckInStatus.missed, MissedReason.not_sent_outage),
        (15, CheckInStatus.sent, None),
        (16, CheckInStatus.scheduled, None),
    ]
    assert report.missed == {MissedReason.not_sent_outage: 3}
    assert len(h.fake.chat(PATIENT)) == 1
    # The next ticks change nothing: no doubles of the recorded gap.
    await tick(h)
    assert len(await checkins_of(h.db, p.id or 0)) == 5


# ---------------------------------------------------------------- never twice


async def test_repeated_ticks_send_each_checkin_once(h: Harness) -> None:
    for i in range(5):
        await add_participant(h.db, uid=PATIENT + i, local_time="09:05")
    move_to(datetime(2026, 1, 12, 9, 5, 5, tzinfo=UTC))
    first = await tick(h)
    second = await tick(h)
    assert (first.sent, second.sent) == (5, 0)
    assert all(len(h.fake.chat(PATIENT + i)) == 1 for i in range(5))


async def test_two_ticks_at_once_send_each_checkin_once(h: Harness) -> None:
    for i in range(5):
        await add_participant(h.db, uid=PATIENT + i, local_time="09:05")
    move_to(datetime(2026, 1, 12, 9, 5, 5, tzinfo=UTC))
    reports = await asyncio.gather(tick(h), tick(h))
    assert sum(r.checkins_queued for r in reports) == 5
    assert sum(r.sent for r in reports) == 5
    assert all(len(h.fake.chat(PATIENT + i)) == 1 for i in range(5))


async def test_a_restarted_bot_does_not_send_again(h: Harness, tmp_path: Path) -> None:
    await add_participant(h.db, uid=PATIENT, local_time="09:05")
    move_to(datetime(2026, 1, 12, 9, 5, 5, tzinfo=UTC))
    await tick(h)
    restarted = await make_harness(f"sqlite:///{tmp_path / 'test.db'}")
    try:
        prepare(restarted)
        await tick(restarted)
        move_to(clock.now() + timedelta(minutes=30))
        await tick(restarted)
        assert restarted.fake.chat(PATIENT) == []
    finally:
        await restarted.app.shutdown()
        await restarted.db.dispose()
    assert len(h.fake.chat(PATIENT)) == 1


async def test_after_a_crash_unsent_rows_go_at_once_and_the_one_in_flight_is_uncertain(
    h: Harness,
) -> None:
    async with h.db.session() as session:
        waiting = await enqueue(session, kind="test", chat_id=PATIENT, payload={"text": "hi"})
        waiting.state = OutboxState.claimed
        waiting.attempts = 1
        waiting.lease_until = clock.now() - timedelta(seconds=1)
        in_flight = await enqueue(
            session, kind="test", chat_id=PATIENT + 1, payload={"text": "hi"}
        )
        in_flight.state = OutboxState.sending
        in_flight.attempts = 1
        in_flight.lease_until = clock.now() - timedelta(seconds=1)
        session.add_all([waiting, in_flight])
    report = await tick(h)
    assert report.recovered == 2 and report.uncertain == 1
    sent = await reload(h.db, OutgoingMessage, waiting.id)
    assert (sent.state, sent.uncertain, sent.attempts) == (OutboxState.sent, False, 1)
    given_up = await reload(h.db, OutgoingMessage, in_flight.id)
    assert (given_up.state, given_up.uncertain) == (OutboxState.uncertain, True)
    assert h.fake.chat(PATIENT + 1) == []


async def _uncertain_checkin(h: Harness, *, delivered: bool) -> Participant:
    """Makes her 09:05 check-in's send time out (delivered or not) and returns her."""
    p = await add_participant(h.db, uid=PATIENT, local_time="09:05")
    h.fake.timeout_next("sendMessage", delivered=delivered)
    await run_for(h, timedelta(minutes=6), every=30)
    [row] = await outbox(h.db, kind="checkin")
    assert (row.state, row.uncertain) == (OutboxState.uncertain, True)
    return p


async def test_an_uncertain_checkin_is_sent_once_more_if_she_has_not_answered(h: Harness) -> None:
    await _uncertain_checkin(h, delivered=False)
    await run_for(h, timedelta(minutes=12), every=30)
    assert len(h.fake.chat(PATIENT)) == 1  # the second try arrived
    [row] = await outbox(h.db, kind="checkin")
    assert (row.state, row.attempts) == (OutboxState.sent, 2)


async def test_an_uncertain_checkin_she_already_answered_is_not_sent_again(h: Harness) -> None:
    p = await _uncertain_checkin(h, delivered=True)
    [message] = h.fake.chat(PATIENT)
    async with h.db.session() as session:
        [checkin, _] = await checkins_of(h.db, p.id or 0)
        fresh = await session.get(CheckIn, checkin.id)
        assert fresh is not None
        await checkins.record_answer(
            session=session, checkin=fresh, item_code="took_med", value="yes", update_id=1
        )
    await run_for(h, timedelta(minutes=12), every=30)
    assert h.fake.chat(PATIENT) == [message]


async def test_a_checkin_uncertain_twice_is_left_alone_and_missed_as_delivery_uncertain(
    h: Harness,
) -> None:
    p = await _uncertain_checkin(h, delivered=True)
    h.fake.timeout_next("sendMessage", delivered=True)
    # The re-send waits 10 minutes and the window closes at 6 h: a tick every 5 minutes will do.
    await run_for(h, timedelta(hours=7), every=300)
    assert len(h.fake.calls_to("sendMessage")) == 2  # never a third time
    [checkin, *_] = await checkins_of(h.db, p.id or 0)
    assert (checkin.status, checkin.missed_reason) == (
        CheckInStatus.missed,
        MissedReason.delivery_uncertain,
    )


async def test_with_a_fifth_of_responses_lost_no_checkin_arrives_more_than_twice(
    h: Harness,
) -> None:
    for i in range(60):
        await add_participant(h.db, uid=PATIENT + i, local_time="09:05")
    from bot import ops

    def uncertain_in_metrics() -> float:
        labels = {"kind": "checkin", "outcome": "uncertain"}
        return ops.OPS.registry.get_sample_value("adherence_sends_total", labels) or 0.0

    counted_before = uncertain_in_metrics()
    h.fake.enable_limits(lost_rate=0.2, seed=3)
    report = await run_for(h, timedelta(minutes=30), every=10)
    assert uncertain_in_metrics() - counted_before == report.uncertain
    copies = [len(h.fake.chat(PATIENT + i)) for i in range(60)]
    assert max(copies) <= 2
    assert min(copies) >= 1 or report.uncertain > 0
    rows = await outbox(h.db, kind="checkin")
    uncertain = [r for r in rows if r.uncertain]
    # A row tried twice may be uncertain twice: the report counts events, rows count once.
    assert uncertain and report.uncertain >= len(uncertain)
    twice = sum(1 for n in copies if n == 2)
    print(f"60 check-ins, 20% responses lost: {twice} arrived twice, {copies.count(0)} never")


# ---------------------------------------------------------------- lifecycle at due time


async def test_paused_checkins_are_missed_paused_and_resume_by_themselves(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.status = Lifecycle.paused
        row.paused_until = datetime(2026, 1, 13, 12, tzinfo=UTC)
        session.add(row)
    await jump_to_next(h, p.id or 0)  # Jan 12
    await jump_to_next(h, p.id or 0)  # Jan 13, still paused
    report = await run_for(h, timedelta(hours=3), every=600)  # the pause ends at 12:00
    assert report.resumed == 1
    await jump_to_next(h, p.id or 0)  # Jan 14
    rows = await checkins_of(h.db, p.id or 0)
    assert [(c.status, c.missed_reason) for c in rows[:3]] == [
        (CheckInStatus.missed, MissedReason.paused),
        (CheckInStatus.missed, MissedReason.paused),
        (CheckInStatus.sent, None),
    ]
    assert len(h.fake.chat(PATIENT)) == 1


async def test_withdrawn_participant_gets_nothing_and_no_new_checkins(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    move_to(datetime(2026, 1, 12, 9, 30, 5, tzinfo=UTC))
    await tick(h)
    await run_for(h, timedelta(days=2), every=3600)
    [only] = await checkins_of(h.db, p.id or 0)
    assert (only.status, only.missed_reason) == (CheckInStatus.missed, MissedReason.withdrawn)
    assert h.fake.chat(PATIENT) == []


async def test_unreachable_participant_checkin_is_missed_blocked(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.reachable = False
        session.add(row)
    await jump_to_next(h, p.id or 0)
    [first, upcoming] = await checkins_of(h.db, p.id or 0)
    assert (first.status, first.missed_reason) == (CheckInStatus.missed, MissedReason.blocked)
    assert upcoming.status == CheckInStatus.scheduled
    assert h.fake.calls_to("sendMessage") == []


async def test_new_consent_version_holds_the_checkin_and_asks_once(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.consent_version = "0.1"
        session.add(row)
    checkin = await jump_to_next(h, p.id or 0)
    await run_for(h, timedelta(minutes=5), every=10)
    asks = await outbox(h.db, kind="reconsent")
    assert len(asks) == 1
    assert (await reload(h.db, Participant, p.id)).awaiting == "reconsent"
    assert await sent_checkins(h) == []
    held = await reload(h.db, CheckIn, checkin.id)
    assert held.status == CheckInStatus.scheduled and held.queued_at is None
    # She agrees to the new version: the held check-in goes out on the next tick.
    from bot.content import consent_text

    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.consent_version = consent_text("en").version
        row.awaiting = None
        session.add(row)
    await tick(h)
    assert len(await sent_checkins(h)) == 1
    assert (await reload(h.db, CheckIn, checkin.id)).status == CheckInStatus.sent


async def test_checkin_held_for_consent_all_window_is_missed_no_answer(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.consent_version = "0.1"
        session.add(row)
    checkin = await jump_to_next(h, p.id or 0)
    move_to(checkin.window_closes_at + timedelta(seconds=5))
    await tick(h)
    closed = await reload(h.db, CheckIn, checkin.id)
    assert (closed.status, closed.missed_reason) == (CheckInStatus.missed, MissedReason.no_answer)
    assert len(await outbox(h.db, kind="reconsent")) == 1


async def test_schedule_without_a_pending_checkin_is_planned(h: Harness) -> None:
    from tests.factories import make_active_participant

    p = await make_active_participant(h.db, checkin_time="09:30")
    await tick(h)
    upcoming = await pending(h, p.id or 0)
    assert upcoming.due_at == datetime(2026, 1, 12, 9, 30, tzinfo=UTC)


async def test_the_safety_net_looks_for_unplanned_schedules_once_a_minute(h: Harness) -> None:
    """heal_schedules reads every schedule, so it runs on the first tick and then once a
    minute; a schedule left without a check-in in between waits for the next look."""
    from tests.factories import make_active_participant

    await tick(h)  # the first look, with nobody enrolled
    p = await make_active_participant(h.db, checkin_time="09:30")
    for _ in range(5):  # 50 s of ticks: no look yet
        clock.advance(timedelta(seconds=10))
        assert (await tick(h)).planned == 0
    assert await pending_checkins(h.db, p.id or 0) == []
    clock.advance(timedelta(seconds=10))
    assert (await tick(h)).planned == 1
    upcoming = await pending(h, p.id or 0)
    assert upcoming.due_at == datetime(2026, 1, 12, 9, 30, tzinfo=UTC)


# ---------------------------------------------------------------- the job


async def test_one_dispatcher_job_runs_at_least_every_fifteen_seconds(h: Harness) -> None:
    assert h.app.job_queue is not None
    [job] = h.app.job_queue.get_jobs_by_name("dispatcher")
    scheduled = job.job
    assert scheduled.max_instances == 1
    assert scheduled.coalesce is True
    assert scheduled.misfire_grace_time is not None and scheduled.misfire_grace_time >= 30
    assert scheduled.trigger.interval <= timedelta(seconds=15)


async def test_one_broken_row_does_not_stop_the_others(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.models import Schedule

    broken = await add_participant(h.db, uid=PATIENT, local_time="09:05")
    fine = await add_participant(h.db, uid=PATIENT + 1, local_time="09:05")
    async with h.db.session() as session:
        # A zone the tz database no longer knows (schedules are validated when set).
        from sqlmodel import select

        schedule = (
            await session.exec(select(Schedule).where(Schedule.participant_id == broken.id))
        ).one()
        schedule.timezone = "Atlantis/Lost_City"
        session.add(schedule)
    move_to(datetime(2026, 1, 12, 9, 5, 5, tzinfo=UTC))
    report = await tick(h)
    assert report.sent == 1
    assert len(h.fake.chat(PATIENT + 1)) == 1
    assert (await pending(h, fine.id or 0)).due_at == datetime(2026, 1, 13, 9, 5, tzinfo=UTC)
    assert "due check-in" in caplog.text and "ZoneInfoNotFoundError" in caplog.text


# ---------------------------------------------------------------- housekeeping


async def test_housekeeping_runs_hourly_as_one_job(h: Harness) -> None:
    assert h.app.job_queue is not None
    [job] = h.app.job_queue.get_jobs_by_name("housekeeping")
    assert job.job.max_instances == 1 and job.job.coalesce is True
    assert job.job.trigger.interval == timedelta(hours=1)


async def test_an_update_id_is_a_replay_for_a_week_then_forgotten(h: Harness) -> None:
    """Telegram may start update ids afresh after a quiet week; an old id must not block them."""
    from bot.dispatcher import housekeeping

    await h.process(h.updates.command(PATIENT, "help", update_id=31337))
    await h.process(h.updates.command(PATIENT, "help", update_id=31337))
    assert len(h.texts(PATIENT)) == 1  # the replay was dropped

    clock.advance(timedelta(days=6))
    assert (await housekeeping(h.app.bot_data))[0] == 0  # still remembered
    await h.process(h.updates.command(PATIENT, "help", update_id=31337))
    assert len(h.texts(PATIENT)) == 1

    clock.advance(timedelta(days=1, minutes=1))
    assert (await housekeeping(h.app.bot_data))[0] == 1
    await h.process(h.updates.command(PATIENT, "help", update_id=31337))
    assert len(h.texts(PATIENT)) == 2  # a new update that happens to reuse the id is answered


async def test_housekeeping_drops_idle_pacing_rows_but_keeps_the_global_one(h: Harness) -> None:
    from sqlmodel import select

    from bot import ratelimit
    from bot.dispatcher import housekeeping
    from bot.models import RateSlot

    await ratelimit.reserve(db=h.db, chat_id=PATIENT, per_second=25)
    await ratelimit.reserve(db=h.db, chat_id=PATIENT + 1, per_second=25)
    clock.advance(timedelta(minutes=30))
    await ratelimit.reserve(db=h.db, chat_id=PATIENT + 1, per_second=25)
    assert (await housekeeping(h.app.bot_data))[1] == 0  # nothing idle for an hour yet

    clock.advance(timedelta(minutes=31))
    assert (await housekeeping(h.app.bot_data))[1] == 1
    async with h.db.session() as session:
        keys = sorted(slot.key for slot in (await session.exec(select(RateSlot))).all())
    assert keys == [f"chat:{PATIENT + 1}", "global"]
