"""/stop, /pause, /resume, leaving, deleting data and blocking, through the real handlers."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bot import clock
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    AnswerHistory,
    AuditEvent,
    BarrierReport,
    CheckIn,
    CheckInStatus,
    Consent,
    Lifecycle,
    OfferEvent,
    OutboxState,
    OutgoingMessage,
    PageView,
    Participant,
    SavedQuestion,
    Schedule,
    TherapyChange,
)
from bot.outbox import enqueue
from tests.conftest import PATIENT, START, Harness, make_harness
from tests.factories import make_active_participant

STOP_CHOICES = [
    "Pause messages",
    "Leave the study",
    "I'm thinking about stopping my medicine",
    "Cancel",
]


async def reload(h: Harness, participant_id: int | None) -> Participant:
    """Returns the participant row as stored now."""
    async with h.db.session() as session:
        found = await session.get(Participant, participant_id)
    assert found is not None
    return found


async def add_checkin(
    h: Harness, participant: Participant, *, status: str, due_in: timedelta
) -> CheckIn:
    """Stores one daily check-in for her, due `due_in` from now."""
    assert participant.id is not None
    async with h.db.session() as session:
        schedule = (
            await session.exec(select(Schedule).where(Schedule.participant_id == participant.id))
        ).first()
        checkin = CheckIn(
            participant_id=participant.id,
            schedule_id=schedule.id if schedule else None,
            questionnaire_id="daily_checkin",
            questionnaire_version="1",
            due_at=clock.now() + due_in,
            window_closes_at=clock.now() + due_in + timedelta(hours=6),
            status=status,
            sent_at=clock.now() if status != CheckInStatus.scheduled else None,
            message_ids="17" if status != CheckInStatus.scheduled else "",
        )
        session.add(checkin)
    return checkin


def assert_all_fit(h: Harness) -> None:
    """Every message the bot sent fits Telegram's 4,096-character limit."""
    assert all(len(m.text) <= 4096 for m in h.fake.messages)


async def test_stop_asks_with_four_choices_and_changes_nothing(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    menu = harness.last(PATIENT)
    assert [label for label, _ in menu.buttons()] == STOP_CHOICES
    assert all(len(data.encode()) <= 64 and data.startswith("lc:") for _, data in menu.buttons())
    assert (await reload(harness, p.id)).status == Lifecycle.active


async def test_stop_pause_one_week_pauses_for_seven_days(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Pause messages")
    assert [label for label, _ in harness.last(PATIENT).buttons()] == [
        "1 week",
        "1 month",
        "Until I resume",
        "Cancel",
    ]
    await harness.press(PATIENT, "1 week")
    stored = await reload(harness, p.id)
    assert stored.status == Lifecycle.paused
    assert stored.paused_until == START + timedelta(days=7)
    shown = harness.last(PATIENT)
    assert "paused until Monday 19 January" in shown.text
    assert shown.buttons() == []  # the choice replaced the menu
    assert_all_fit(harness)


async def test_pause_for_a_month_and_until_resumed(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "pause")
    await harness.press(PATIENT, "1 month")
    assert (await reload(harness, p.id)).paused_until == START.replace(month=2)

    await harness.command(PATIENT, "pause")
    assert "paused until Thursday 12 February" in harness.last(PATIENT).text
    await harness.press(PATIENT, "Until I resume")
    stored = await reload(harness, p.id)
    assert stored.status == Lifecycle.paused
    assert stored.paused_until is None
    assert "until you send /resume" in harness.last(PATIENT).text


async def test_a_checkin_queued_before_a_pause_is_not_sent_and_recorded_as_paused(
    harness: Harness,
) -> None:
    p = await make_active_participant(harness.db)
    checkin = await add_checkin(harness, p, status=CheckInStatus.scheduled, due_in=timedelta(0))
    async with harness.db.session() as session:
        row = await session.get(CheckIn, checkin.id)
        assert row is not None
        row.queued_at = clock.now()
        session.add(row)
        await enqueue(
            session, kind="checkin", chat_id=PATIENT, participant_id=p.id, checkin_id=checkin.id
        )
    await harness.command(PATIENT, "pause")
    await harness.press(PATIENT, "1 week")
    sent = len(harness.texts(PATIENT))
    await harness.tick()
    assert len(harness.texts(PATIENT)) == sent
    async with harness.db.session() as session:
        rows = (await session.exec(select(OutgoingMessage))).all()
        closed = await session.get(CheckIn, checkin.id)
    assert [r.state for r in rows] == [OutboxState.cancelled]
    assert closed is not None
    assert (closed.status, closed.missed_reason) == (CheckInStatus.missed, "paused")


async def test_while_paused_checkins_are_recorded_as_missed_and_the_pause_ends_by_itself(
    harness: Harness,
) -> None:
    p = await make_active_participant(harness.db, checkin_time="19:00")
    await harness.command(PATIENT, "pause")
    await harness.press(PATIENT, "1 week")
    sent = len(harness.texts(PATIENT))
    await harness.tick()  # plans today's 19:00 check-in
    clock.advance(timedelta(hours=10, minutes=1))
    await harness.tick()
    assert len(harness.texts(PATIENT)) == sent
    async with harness.db.session() as session:
        checkins = (await session.exec(select(CheckIn).order_by(col(CheckIn.due_at)))).all()
    assert (checkins[0].status, checkins[0].missed_reason) == (CheckInStatus.missed, "paused")

    clock.advance(timedelta(days=7))
    await harness.tick()
    stored = await reload(harness, p.id)
    assert (stored.status, stored.paused_until) == (Lifecycle.active, None)


async def test_resume_ends_a_pause(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "pause")
    await harness.press(PATIENT, "1 week")
    await harness.command(PATIENT, "resume")
    stored = await reload(harness, p.id)
    assert stored.status == Lifecycle.active
    assert stored.paused_until is None
    assert harness.last(PATIENT).text.startswith("Welcome back")


async def test_resume_when_not_paused_says_so(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "resume")
    assert "not paused" in harness.last(PATIENT).text
    assert (await reload(harness, p.id)).status == Lifecycle.active


async def test_stop_cancel_changes_nothing(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Cancel")
    stored = await reload(harness, p.id)
    assert (stored.status, stored.paused_until, stored.withdrawn_at) == (
        Lifecycle.active,
        None,
        None,
    )
    assert harness.last(PATIENT).text == "Okay, nothing has changed."


async def test_stop_medicine_gets_a_doctor_first_message(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "I'm thinking about stopping my medicine")
    text = harness.last(PATIENT).text
    # The doctor-first path starts (the whole path: tests/test_doctor_first.py).
    assert "Have you talked with your doctor about this?" in text
    lowered = text.lower()
    for forbidden in ("that's fine", "that is fine", "you can stop", "stop taking", "skip"):
        assert forbidden not in lowered
    assert (await reload(harness, p.id)).status == Lifecycle.active


async def test_leaving_asks_first_then_stops_every_message(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    later = await add_checkin(
        harness, p, status=CheckInStatus.scheduled, due_in=timedelta(hours=10)
    )
    async with harness.db.session() as session:
        await enqueue(session, kind="broadcast", chat_id=PATIENT, participant_id=p.id)

    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    assert "/delete_my_data" in harness.last(PATIENT).text
    assert (await reload(harness, p.id)).status == Lifecycle.active  # asked, not acted
    await harness.press(PATIENT, "Yes, leave the study")

    stored = await reload(harness, p.id)
    assert stored.status == Lifecycle.withdrawn
    assert stored.withdrawn_at == START
    assert stored.telegram_user_id == PATIENT  # her data stays until she asks for deletion
    async with harness.db.session() as session:
        consent = (await session.exec(select(Consent))).one()
        checkin = await session.get(CheckIn, later.id)
        outbox = (await session.exec(select(OutgoingMessage))).all()
        schedule = (await session.exec(select(Schedule))).one()
        audit = (await session.exec(select(AuditEvent))).all()
    assert consent.withdrawn_at == START
    assert checkin is not None
    assert (checkin.status, checkin.missed_reason) == (CheckInStatus.missed, "withdrawn")
    assert [r.state for r in outbox] == [OutboxState.cancelled]
    assert schedule.active is False
    assert [(a.action, a.subject, a.actor) for a in audit] == [
        ("withdraw", p.pseudonym, f"participant:{p.pseudonym}")
    ]
    assert "left the study" in harness.last(PATIENT).text

    if importlib.util.find_spec("bot.dispatcher") is not None:
        sent_before = len(harness.texts(PATIENT))
        clock.advance(timedelta(hours=11))
        await harness.tick()
        clock.advance(timedelta(days=1))
        await harness.tick()
        assert len(harness.texts(PATIENT)) == sent_before


async def test_leave_then_no_stay_keeps_her_in(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    await harness.press(PATIENT, "No, stay")
    assert (await reload(harness, p.id)).status == Lifecycle.active
    assert harness.last(PATIENT).text == "Okay, nothing has changed."


async def test_after_leaving_pause_and_resume_say_she_has_left(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    await harness.press(PATIENT, "Yes, leave the study")
    for command in ("pause", "resume", "stop"):
        await harness.command(PATIENT, command)
        assert "left the study" in harness.last(PATIENT).text
    assert (await reload(harness, p.id)).status == Lifecycle.withdrawn


async def test_pause_before_setup_is_finished_explains_there_is_nothing_to_pause(
    harness: Harness,
) -> None:
    p = await make_active_participant(harness.db)
    async with harness.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.status = Lifecycle.invited
        session.add(row)
    await harness.command(PATIENT, "pause")
    assert "/start" in harness.last(PATIENT).text
    assert (await reload(harness, p.id)).status == Lifecycle.invited


async def test_a_second_tap_on_a_used_pause_button_changes_nothing(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "pause")
    menu = harness.last(PATIENT)
    week = next(data for label, data in menu.buttons() if label == "1 week")
    month = next(data for label, data in menu.buttons() if label == "1 month")
    await harness.press(PATIENT, week, message=menu)
    first_until = (await reload(harness, p.id)).paused_until

    clock.advance(timedelta(days=2))
    await harness.press(PATIENT, week, message=menu)  # a late second tap
    await harness.press(PATIENT, month, message=menu)  # another choice on the old menu
    stored = await reload(harness, p.id)
    assert stored.paused_until == first_until == START + timedelta(days=7)
    assert "out of date" in harness.fake.answered_callbacks[-1]["text"]


async def test_a_replayed_button_update_changes_nothing(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "pause")
    menu = harness.last(PATIENT)
    week = next(data for label, data in menu.buttons() if label == "1 week")
    update = harness.updates.callback(PATIENT, week, menu, update_id=777)
    await harness.process(update)
    await harness.command(PATIENT, "resume")
    sent = len(harness.fake.messages)
    replay = harness.updates.callback(PATIENT, week, menu, update_id=777)
    await harness.process(replay)
    assert (await reload(harness, p.id)).status == Lifecycle.active
    assert len(harness.fake.messages) == sent


async def test_a_button_pressed_by_someone_else_changes_nothing(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    other = await make_active_participant(harness.db, telegram_user_id=PATIENT + 1)
    await harness.command(PATIENT, "delete_my_data")
    menu = harness.last(PATIENT)
    delete = next(data for label, data in menu.buttons() if label.startswith("Yes"))
    await harness.process(harness.updates.callback(PATIENT + 1, delete, menu))
    assert (await reload(harness, p.id)).status == Lifecycle.active
    assert (await reload(harness, other.id)).status == Lifecycle.active
    assert harness.fake.answered_callbacks[-1]["text"] == "This button is not for you."


async def test_malformed_lifecycle_buttons_are_ignored(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    menu = harness.last(PATIENT)
    for data in ("lc:", "lc:dy", f"lc:dy:{p.id}", f"lc:zz:{p.id}:abcdef", "lc:dy:x:abcdef"):
        await harness.process(harness.updates.callback(PATIENT, data, menu))
    assert (await reload(harness, p.id)).status == Lifecycle.active
    assert len(harness.fake.answered_callbacks) == 5


async def test_delete_my_data_cancel_keeps_everything(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "delete_my_data")
    assert [label for label, _ in harness.last(PATIENT).buttons()] == [
        "Yes, delete my data",
        "No, keep it",
    ]
    await harness.press(PATIENT, "No, keep it")
    stored = await reload(harness, p.id)
    assert (stored.status, stored.telegram_user_id) == (Lifecycle.active, PATIENT)
    assert harness.last(PATIENT).text == "Okay, your data has not been deleted."


async def test_delete_my_data_erases_personal_data_and_audit_keeps_only_the_pseudonym(
    harness: Harness,
) -> None:
    p = await make_active_participant(harness.db)
    done = await add_checkin(harness, p, status=CheckInStatus.sent, due_in=-timedelta(hours=1))
    upcoming = await add_checkin(
        harness, p, status=CheckInStatus.scheduled, due_in=timedelta(hours=10)
    )
    async with harness.db.session() as session:
        assert done.id is not None
        pain = Answer(checkin_id=done.id, item_code="pain_worst", value="6", first_value="4")
        note = Answer(checkin_id=done.id, item_code="note", value="my secret note")
        session.add_all([pain, note])
        await session.flush()
        assert pain.id is not None
        session.add(AnswerHistory(answer_id=pain.id, old_value="4", old_answered_at=START))
        sent = await enqueue(session, kind="checkin", chat_id=PATIENT, participant_id=p.id)
        sent.state = OutboxState.sent
        await enqueue(session, kind="reminder", chat_id=PATIENT, participant_id=p.id)

    await harness.command(PATIENT, "delete_my_data")
    await harness.press(PATIENT, "Yes, delete my data")

    stored = await reload(harness, p.id)
    assert stored.telegram_user_id is None and stored.chat_id is None
    assert stored.status == Lifecycle.deleted and stored.deleted_at == START
    assert stored.medicine is None and stored.country is None and stored.timezone is None
    assert stored.pseudonym != p.pseudonym  # nothing left on the row links to her account
    async with harness.db.session() as session:
        assert (await session.exec(select(Answer))).all() == []
        assert (await session.exec(select(AnswerHistory))).all() == []
        assert (await session.exec(select(Schedule))).all() == []
        consents = (await session.exec(select(Consent))).all()
        checkins = (await session.exec(select(CheckIn).order_by(col(CheckIn.id)))).all()
        outbox = await session.exec(select(OutgoingMessage).order_by(col(OutgoingMessage.id)))
        rows = outbox.all()
        audit = (await session.exec(select(AuditEvent))).all()
    # Consent kept as version and times only: the record of what the study held, and when.
    assert [(c.version, c.withdrawn_at) for c in consents] == [(p.consent_version, START)]
    assert [(c.id, c.status, c.missed_reason, c.message_ids) for c in checkins] == [
        (done.id, CheckInStatus.missed, "withdrawn", ""),
        (upcoming.id, CheckInStatus.missed, "withdrawn", ""),
    ]
    assert [(r.state, r.chat_id) for r in rows] == [
        (OutboxState.sent, 0),
        (OutboxState.cancelled, 0),
    ]
    assert len(audit) == 1
    event = audit[0]
    assert (event.actor, event.action, event.subject, event.detail, event.at) == (
        f"participant:{p.pseudonym}",
        "delete_my_data",
        p.pseudonym,
        None,
        START,
    )
    reply = harness.last(PATIENT).text
    assert "deleted" in reply and "stay on your phone" in reply
    assert_all_fit(harness)

    # She is a stranger now: the bot holds nothing that knows her.
    await harness.command(PATIENT, "stop")
    assert "/start" in harness.last(PATIENT).text
    await harness.command(PATIENT, "delete_my_data")
    assert "nothing to delete" in harness.last(PATIENT).text


async def test_deleting_after_leaving_still_erases(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    await harness.press(PATIENT, "Yes, leave the study")
    await harness.command(PATIENT, "delete_my_data")
    await harness.press(PATIENT, "Yes, delete my data")
    stored = await reload(harness, p.id)
    assert (stored.status, stored.telegram_user_id) == (Lifecycle.deleted, None)
    async with harness.db.session() as session:
        actions = [a.action for a in (await session.exec(select(AuditEvent))).all()]
    assert actions == ["withdraw", "delete_my_data"]


async def test_blocking_and_unblocking_keeps_a_pause(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "pause")
    await harness.press(PATIENT, "1 week")

    clock.advance(timedelta(hours=1))
    await harness.process(harness.updates.my_chat_member(PATIENT, blocked=True))
    blocked = await reload(harness, p.id)
    assert blocked.reachable is False
    assert blocked.unreachable_since == START + timedelta(hours=1)
    assert blocked.status == Lifecycle.paused

    clock.advance(timedelta(hours=1))
    await harness.process(harness.updates.my_chat_member(PATIENT, blocked=False))
    unblocked = await reload(harness, p.id)
    assert (unblocked.reachable, unblocked.unreachable_since) == (True, None)
    assert unblocked.status == Lifecycle.paused
    assert unblocked.paused_until == START + timedelta(days=7)


async def test_unblocking_does_not_undo_leaving(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    await harness.press(PATIENT, "Yes, leave the study")
    await harness.process(harness.updates.my_chat_member(PATIENT, blocked=True))
    await harness.process(harness.updates.my_chat_member(PATIENT, blocked=False))
    stored = await reload(harness, p.id)
    assert (stored.status, stored.reachable) == (Lifecycle.withdrawn, True)


async def test_block_update_from_a_stranger_is_ignored(harness: Harness) -> None:
    await harness.process(harness.updates.my_chat_member(PATIENT, blocked=True))
    async with harness.db.session() as session:
        assert (await session.exec(select(Participant))).all() == []
    assert harness.fake.messages == []


async def test_help_says_what_the_bot_does_and_gives_her_emergency_number(
    harness: Harness,
) -> None:
    await make_active_participant(harness.db, telegram_user_id=PATIENT, country="US")
    await harness.command(PATIENT, "help")
    text = harness.last(PATIENT).text
    for expected in ("/checkin", "/stop", "/delete_my_data", "not a doctor", "around the clock"):
        assert expected in text
    assert "call 911" in text


async def test_help_lists_every_command_of_the_menu(harness: Harness) -> None:
    from bot.app import PATIENT_COMMANDS

    await make_active_participant(harness.db)
    await harness.command(PATIENT, "help")
    text = harness.last(PATIENT).text
    assert [name for name in PATIENT_COMMANDS if f"/{name} " not in text] in ([], ["help"])


async def test_help_without_joining_uses_the_study_emergency_number(harness: Harness) -> None:
    await harness.command(PATIENT, "help")
    assert "call 999" in harness.last(PATIENT).text


async def test_help_before_start_says_what_the_bot_is_and_how_to_join(harness: Harness) -> None:
    from bot.app import PATIENT_COMMANDS

    await harness.command(PATIENT, "help")
    text = harness.last(PATIENT).text
    assert harness.settings.study_name in text and "joint pain" in text
    assert "/start" in text and "not a doctor" in text
    # Nothing she cannot use yet: no patient command but /start.
    assert [name for name in PATIENT_COMMANDS if f"/{name}" in text and name != "start"] == []


async def test_privacy_says_what_is_stored_and_how_to_leave(harness: Harness) -> None:
    await make_active_participant(harness.db)
    await harness.command(PATIENT, "privacy")
    text = harness.last(PATIENT).text
    for expected in ("code name", "/stop", "/delete_my_data", harness.settings.study_name):
        assert expected in text


@pytest.mark.postgres
async def test_leaving_and_deleting_work_on_postgresql(pg_url: str) -> None:
    h = await make_harness(pg_url)
    try:
        p = await make_active_participant(h.db)
        done = await add_checkin(h, p, status=CheckInStatus.partial, due_in=-timedelta(hours=1))
        async with h.db.session() as session:
            assert done.id is not None
            session.add(Answer(checkin_id=done.id, item_code="note", value="a note"))
            await enqueue(session, kind="reminder", chat_id=PATIENT, participant_id=p.id)
        await h.command(PATIENT, "stop")
        await h.press(PATIENT, "Leave the study")
        await h.press(PATIENT, "Yes, leave the study")
        assert (await reload(h, p.id)).status == Lifecycle.withdrawn
        await h.command(PATIENT, "delete_my_data")
        await h.press(PATIENT, "Yes, delete my data")
        stored = await reload(h, p.id)
        assert (stored.status, stored.telegram_user_id) == (Lifecycle.deleted, None)
        async with h.db.session() as session:
            assert (await session.exec(select(Answer))).all() == []
            rows = (await session.exec(select(OutgoingMessage))).all()
        assert [(r.state, r.chat_id) for r in rows] == [(OutboxState.cancelled, 0)]
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_delete_my_data_erases_her_questions_reports_and_alert_codes_only(
    harness: Harness,
) -> None:
    her = await make_active_participant(harness.db)
    other = await make_active_participant(harness.db, telegram_user_id=PATIENT + 50)
    async with harness.db.session() as session:
        for person in (her, other):
            assert person.id is not None
            session.add_all(
                [
                    SavedQuestion(participant_id=person.id, text="Could I try a different pill?"),
                    BarrierReport(participant_id=person.id, code="joint_pain", source="command"),
                    TherapyChange(participant_id=person.id, kind="switched", new_medicine="x"),
                    PageView(participant_id=person.id, page_id="what_may_help", page_version="1"),
                    OfferEvent(participant_id=person.id, offer_code="pain_help", event="shown"),
                    Alert(participant_id=person.id, kind="stop_intent", detail="barrier=cost"),
                    Alert(
                        participant_id=person.id,
                        kind="red_flag",
                        detail="new_symptoms=fall",
                        status=AlertStatus.closed,
                        closed_at=START,
                        closed_by="coordinator:1",
                    ),
                ]
            )

    await harness.command(PATIENT, "delete_my_data")
    await harness.press(PATIENT, "Yes, delete my data")

    async with harness.db.session() as session:
        for table in (SavedQuestion, BarrierReport, TherapyChange, PageView, OfferEvent):
            owners = [row.participant_id for row in (await session.exec(select(table))).all()]
            assert owners == [other.id], table.__name__
        alerts = (await session.exec(select(Alert).order_by(col(Alert.id)))).all()
    # Her alerts stay as the care team's record of what it was told, closed and without codes.
    assert [(a.participant_id, a.kind, a.status, a.detail, a.closed_by) for a in alerts] == [
        (her.id, "stop_intent", AlertStatus.closed, None, "system:deleted"),
        (her.id, "red_flag", AlertStatus.closed, None, "coordinator:1"),
        (other.id, "stop_intent", AlertStatus.open, "barrier=cost", None),
        (other.id, "red_flag", AlertStatus.closed, "new_symptoms=fall", "coordinator:1"),
    ]
    stored = await reload(harness, her.id)
    assert (stored.therapy_status, stored.discreet) == ("taking", False)
