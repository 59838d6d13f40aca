"""The care team's own views: /alerts, /participant, acting on her behalf, and writing to her."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot import clock, intent
from bot.content import messages, questionnaire
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    AuditEvent,
    CheckIn,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OutgoingMessage,
    Participant,
    SavedQuestion,
    StaffState,
)
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

GROUP = -1001234500000
NURSE = 5_100_000_001
ADMIN = 5_100_000_009
CONTACT = "0800 123 456"
NOTE = "my neighbour Jane drove me to the clinic"
QUESTION = "Could the stiffness be from my knee injury?"


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with a coordinators' group, a coordinator, an admin and a care-team phone number."""
    h = await make_harness(
        f"sqlite:///{tmp_path / 'views.db'}",
        coordinator_chat_id=GROUP,
        coordinator_ids=[NURSE],
        admin_ids=[ADMIN],
        care_team_contact=CONTACT,
    )
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def _participant(h: Harness, user_id: int = PATIENT, site: str | None = None) -> Participant:
    """An active participant, with a site study id when given."""
    made = await make_active_participant(h.db, telegram_user_id=user_id)
    async with h.db.session() as session:
        row = await session.get(Participant, made.id)
        assert row is not None
        row.site_study_id = site
        session.add(row)
    return row


async def _alert(h: Harness, participant: Participant, *, urgent: bool, hours_ago: int) -> None:
    """An open alert raised some hours ago."""
    async with h.db.session() as session:
        session.add(
            Alert(
                participant_id=participant.id or 0,
                kind="severe_pain" if urgent else "missed_checkins",
                urgent=urgent,
                count=2,
                created_at=clock.now() - timedelta(hours=hours_ago),
            )
        )


async def _rows(h: Harness, table: type) -> list:  # type: ignore[type-arg]
    async with h.db.session() as session:
        return list((await session.exec(select(table))).all())


async def _reload(h: Harness, participant_id: int | None) -> Participant:
    async with h.db.session() as session:
        row = await session.get(Participant, participant_id)
        assert row is not None
        return row


def _lines(text: str) -> list[str]:
    """Returns the numbered alert lines of an /alerts page."""
    return [line for line in text.splitlines() if re.match(r"^\d+\. ", line)]


# ---------------------------------------------------------------- /alerts


async def test_alerts_list_urgent_first_then_oldest_five_a_page_with_next_and_back(
    team: Harness,
) -> None:
    h = team
    people = [await _participant(h, 6_000_000_000 + n, site=f"S-{n}") for n in range(7)]
    # Urgent ones first (oldest first), then the others (oldest first).
    plan = [(False, 50), (True, 3), (False, 70), (True, 30), (False, 5), (True, 10), (False, 60)]
    for person, (urgent, hours) in zip(people, plan, strict=True):
        await _alert(h, person, urgent=urgent, hours_ago=hours)
    closed = await _participant(h, 6_100_000_000)
    async with h.db.session() as session:
        session.add(Alert(participant_id=closed.id or 0, kind="red_flag", status="closed"))
    expected = [
        people[i].pseudonym for i in sorted(range(7), key=lambda i: (not plan[i][0], -plan[i][1]))
    ]

    await h.command(NURSE, "alerts")
    page = h.last(NURSE)
    lines = _lines(page.text)
    assert "page 1 of 2" in page.text and len(lines) == 5
    assert [next(p for p in expected if p in line) for line in lines] == expected[:5]
    first = lines[0]  # urgent, 30 hours old
    assert people[3].pseudonym in first and "S-3" in first and "severe pain" in first
    assert "URGENT" in first and "2x" in first and "30 h" in first and "open" in first
    assert closed.pseudonym not in page.text
    opens = [data for _, data in page.buttons() if data.startswith("pt:")]
    assert opens == [f"pt:{people[i].id}" for i in (3, 5, 1, 2, 6)]
    assert ("Next ›", "ax:1") in page.buttons()

    await h.press(NURSE, "ax:1")
    page = h.fake.find(NURSE, page.message_id)  # the same message, now page 2
    assert "page 2 of 2" in page.text
    assert [next(p for p in expected if p in line) for line in _lines(page.text)] == expected[5:]
    assert ("‹ Back", "ax:0") in page.buttons() and "ax:2" not in str(page.buttons())
    assert "2 d" in page.text  # the 50-hour-old one

    await h.press(NURSE, "ax:0")
    assert "page 1 of 2" in h.fake.find(NURSE, page.message_id).text


async def test_alerts_work_in_the_coordinators_group_and_say_when_there_are_none(
    team: Harness,
) -> None:
    h = team
    await h.process(h.updates.command(NURSE, "alerts", chat_id=GROUP, chat_type="supergroup"))
    assert h.fake.texts(GROUP) == ["No open alerts."]


# ---------------------------------------------------------------- /participant


async def _history(h: Harness, participant: Participant) -> None:
    """Sixteen days of check-ins (with a note), two saved questions and one deleted, an alert."""
    version = questionnaire().version
    async with h.db.session() as session:
        for day in range(1, 17):
            due = clock.now() - timedelta(days=day)
            missed = day % 4 == 0
            checkin = CheckIn(
                participant_id=participant.id or 0,
                questionnaire_id="daily_checkin",
                questionnaire_version=version,
                due_at=due,
                window_closes_at=due + timedelta(hours=6),
                status=CheckInStatus.missed if missed else CheckInStatus.completed,
                missed_reason=MissedReason.no_answer if missed else None,
            )
            session.add(checkin)
            await session.flush()
            if not missed:
                for item, value in (
                    ("took_med", "yes"),
                    ("worst_pain", str(day % 10)),
                    ("note", NOTE),
                ):
                    session.add(Answer(checkin_id=checkin.id or 0, item_code=item, value=value))
        for text, deleted in (
            (QUESTION, None),
            ("Is walking good for me?", None),
            ("x", clock.now()),
        ):
            session.add(
                SavedQuestion(participant_id=participant.id or 0, text=text, deleted_at=deleted)
            )
        session.add(Alert(participant_id=participant.id or 0, kind="worsening", urgent=False))


async def test_participant_by_code_name_or_site_id_shows_the_table_and_counts_not_her_words(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h, site="SITE-007")
    await _history(h, her)

    await h.command(NURSE, "participant", her.pseudonym)
    record = h.last(NURSE)
    text = record.text
    assert her.pseudonym in text and "SITE-007" in text
    assert "Status: active" in text and "Reachable: yes" in text
    assert "Therapy: taking it; medicine: anastrozole" in text
    table = text.split("<pre>")[1].split("</pre>")[0].splitlines()
    assert table[0].split() == ["date", "status", "tablet", "pain", "why", "missed"]
    assert len(table) == 1 + 14  # the last fourteen, newest first
    assert table[1].split() == ["Sun", "11", "Jan", "completed", "yes", "1"]
    assert table[4].split() == ["Thu", "08", "Jan", "missed", "-", "-", "no_answer"]
    assert "Open alerts: 1" in text and "pain worse than her usual" in text
    assert "Saved questions for her doctor: 2" in text
    assert NOTE not in text and QUESTION not in text and "walking" not in text
    labels = [label for label, _ in record.buttons()]
    assert labels == ["Pause 1 week", "Withdraw", "Message her"]

    await h.command(NURSE, "participant", "site-007")  # the site study id, any case
    assert h.last(NURSE).text == text

    await h.command(NURSE, "participant", "nobody-here")
    assert 'No participant has the code name or site study id "nobody-here"' in h.last(NURSE).text
    await h.command(NURSE, "participant")
    assert "/participant <code name or site study id>" in h.last(NURSE).text


async def test_an_open_button_on_the_alert_list_shows_her_record(team: Harness) -> None:
    h = team
    her = await _participant(h)
    await _alert(h, her, urgent=True, hours_ago=1)
    await h.command(NURSE, "alerts")
    await h.press(NURSE, f"pt:{her.id}")
    assert "Open alerts: 1" in h.last(NURSE).text and "<pre>" not in h.last(NURSE).text


# ---------------------------------------------------------------- on her behalf


async def _audit(h: Harness) -> list[AuditEvent]:
    return await _rows(h, AuditEvent)


async def test_pausing_her_for_a_week_is_audited_she_is_told_and_resume_works(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await h.command(NURSE, "participant", her.pseudonym)
    await h.press(NURSE, "Pause 1 week")
    assert "Why pause" in h.last(NURSE).text
    await h.press(NURSE, "She asked for it")
    assert "Reason: She asked for it" in h.last(NURSE).text
    assert (await _reload(h, her.id)).status == Lifecycle.active  # nothing yet
    await h.press(NURSE, "Yes, pause for a week")

    paused = await _reload(h, her.id)
    assert paused.status == Lifecycle.paused
    assert paused.paused_until == clock.now() + timedelta(days=7)
    assert h.fake.answered_callbacks[-1]["text"].startswith("Done: paused until")
    [event] = [e for e in await _audit(h) if e.action == "paused_by_team"]
    assert event.actor.startswith("staff:s_") and str(NURSE) not in event.actor
    assert event.subject == her.pseudonym and event.detail == "reason=patient_request"

    await h.tick()
    told = h.texts(PATIENT)[-1]
    assert told.startswith("Your care team has paused your check-ins for a week")
    assert "To start again sooner, send /resume." in told and CONTACT in told

    await h.command(PATIENT, "resume")
    assert "Welcome back" in h.texts(PATIENT)[-1]
    assert (await _reload(h, her.id)).status == Lifecycle.active


async def test_withdrawing_her_is_audited_as_the_team_and_she_is_told_once(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await h.command(NURSE, "participant", her.pseudonym)
    await h.press(NURSE, "Withdraw")
    await h.press(NURSE, "Clinical reason")
    _, again = h.find_button(NURSE, "Yes, withdraw her")
    await h.press(NURSE, "Yes, withdraw her")
    left = await _reload(h, her.id)
    assert left.status == Lifecycle.withdrawn and left.withdrawn_at is not None
    audit = [(e.actor[:8], e.action, e.detail) for e in await _audit(h)]
    assert audit == [("staff:s_", "withdrawn_by_team", "reason=clinical")]
    assert "Status: withdrawn" in h.last(NURSE).text
    assert "Withdraw" not in [label for label, _ in h.last(NURSE).buttons()]

    await h.tick()
    told = h.texts(PATIENT)[-1]
    assert told.startswith("Your care team has taken you out of the study")
    assert "talk to your care team" in told and CONTACT in told
    # The confirmation pressed again (a double tap, a second nurse) changes nothing.
    await h.process(h.updates.callback(NURSE, again, h.last(NURSE)))
    assert h.fake.answered_callbacks[-1]["text"].startswith("She has already left the study")
    assert len([e for e in await _audit(h) if e.action == "withdrawn_by_team"]) == 1
    await h.tick()
    assert sum("taken you out" in text for text in h.texts(PATIENT)) == 1


# ---------------------------------------------------------------- "Message her"


async def _start_message(h: Harness, her: Participant, staff_id: int = NURSE) -> None:
    await h.command(staff_id, "participant", her.pseudonym)
    await h.press(staff_id, "Message her")
    assert "Type your message to" in h.last(staff_id).text


async def test_a_message_from_the_team_reaches_her_marked_as_theirs_and_audited_without_text(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await _start_message(h, her)
    words = "Hello, this is Sam from the clinic. Your next visit is on Tuesday at 10."
    await h.send(NURSE, words)
    preview = h.last(NURSE)
    assert "A message from your care team:" in preview.text and words in preview.text
    assert [label for label, _ in preview.buttons()] == ["Send", "Cancel"]
    assert [r for r in await _rows(h, OutgoingMessage) if r.kind == "care_team_message"] == []

    await h.press(NURSE, "Send")
    assert "on its way" in h.last(NURSE).text
    await h.tick()
    received = h.last(PATIENT).text
    assert received.splitlines()[0] == "A message from your care team:"
    assert words in received and f"To reach them: {CONTACT}" in received
    [event] = [e for e in await _audit(h) if e.action == "message_sent"]
    assert event.detail == f"chars={len(words)}" and event.subject == her.pseudonym
    assert all("Sam" not in (e.detail or "") for e in await _audit(h))
    [state] = await _rows(h, StaffState)
    assert state.awaiting is None and state.draft is None
    # Send pressed again: nothing more is queued.
    await h.press(NURSE, "Send", message=preview)
    assert len([r for r in await _rows(h, OutgoingMessage) if r.kind == "care_team_message"]) == 1


async def test_a_message_telling_her_to_stop_her_tablets_is_refused_and_nothing_is_queued(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await _start_message(h, her)
    await h.send(NURSE, "Hi there. you can stop your tablets for a week. See you soon.")
    refusal = h.last(NURSE).text
    assert "Not sent" in refusal and '"you can stop your tablets for a week"' in refusal
    assert [label for label, _ in h.last(NURSE).buttons()] == ["Cancel"]
    assert [r for r in await _rows(h, OutgoingMessage) if r.kind == "care_team_message"] == []
    assert [e for e in await _audit(h) if e.action == "message_sent"] == []
    # She can write it again, properly; Cancel then ends it without sending anything.
    await h.send(NURSE, "Please talk to your doctor before any change to your tablets.")
    assert "Send this to" in h.last(NURSE).text
    await h.press(NURSE, "Cancel")
    assert h.last(NURSE).text == "Cancelled. Nothing was sent."
    await h.tick()
    assert h.texts(PATIENT) == []


async def test_a_coordinators_text_about_chest_pain_is_not_read_as_a_patients(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await make_active_participant(h.db, telegram_user_id=NURSE)  # the nurse is in the study too
    words = "We heard about your chest pain and that you can't breathe well. Please call us."
    assert intent.detect(words, "en").kind == "emergency"  # a patient saying it would be one
    await _start_message(h, her)
    await h.send(NURSE, words)
    reply = h.last(NURSE).text
    assert reply.startswith("Send this to") and "999" not in reply
    assert await _rows(h, Alert) == []
    # Once the message is cancelled, her own text is hers again and gets the emergency reply.
    await h.press(NURSE, "Cancel")
    await h.send(NURSE, "I have chest pain and can't breathe")
    assert "999" in h.last(NURSE).text


# ---------------------------------------------------------------- without a role


async def test_a_patient_gets_the_unknown_command_reply_and_her_presses_change_nothing(
    team: Harness,
) -> None:
    h = team
    her = await _participant(h)
    await _alert(h, her, urgent=True, hours_ago=1)
    await h.command(PATIENT, "no_such_command")
    unknown = h.last(PATIENT)
    for command, args in (
        ("alerts", ()),
        ("participant", ("x",)),
        ("participant", (her.pseudonym,)),
    ):
        await h.command(PATIENT, command, *args)
        assert (h.last(PATIENT).text, h.last(PATIENT).buttons()) == (
            unknown.text,
            unknown.buttons(),
        )
    sent = len(h.fake.chat(PATIENT))
    for data in (
        f"pt:{her.id}",
        "ax:0",
        "ax:1",
        f"tm:pause:{her.id}",
        f"tm:withdraw:{her.id}:other",
        f"tx:start:{her.id}",
        f"tx:send:{her.id}",
    ):
        await h.process(h.updates.callback(PATIENT, data, unknown))
        assert h.fake.answered_callbacks[-1]["text"] == messages("en").get("common.expired_button")
    assert (
        len(h.fake.chat(PATIENT)) == sent and h.fake.find(PATIENT, unknown.message_id).edits == 0
    )
    assert (await _reload(h, her.id)).status == Lifecycle.active
    assert await _rows(h, StaffState) == [] and await _audit(h) == []
    [alert] = await _rows(h, Alert)
    assert alert.status == AlertStatus.open
