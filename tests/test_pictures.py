"""/mytrend, /doctorcard, /myquestions and /discreet, driven through the real handlers."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import numpy as np
from matplotlib.image import imread
from matplotlib.text import Text
from sqlmodel import col, select

from bot import clock
from bot.charts import load_trend
from bot.content import messages
from bot.doctor_card import (
    GID_QUESTION,
    card_figure,
    load_card,
    render_card_pdf,
)
from bot.images import GID_PAIN, render_trend_png, trend_figure
from bot.models import BarrierReport, Lifecycle, Participant, SavedQuestion, TherapyChange
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant
from tests.picture_steps import ANSWERED, live_two_weeks, open_checkin
from tests.test_charts import LOCK_WORD, PNG_SIGNATURE, line, ys

OTHER = 5_000_000_002
M = messages("en")


# ---------------------------------------------------------------- helpers


def sent_file(h: Harness, method: str, field: str) -> tuple[bytes, dict[str, Any]]:
    """Returns the bytes and parameters of the newest photo or document sent."""
    calls = h.fake.calls_to(method)
    assert calls, f"nothing was sent with {method}"
    params = calls[-1]
    return bytes(params[field].input_file_content), params


async def participant_row(h: Harness, uid: int = PATIENT) -> Participant:
    """Returns her participant row as stored now."""
    async with h.db.session() as session:
        result = await session.exec(select(Participant).where(Participant.telegram_user_id == uid))
        participant = result.first()
    assert participant is not None
    return participant


async def questions_in_db(h: Harness) -> list[SavedQuestion]:
    """Returns every saved-question row, oldest first."""
    async with h.db.session() as session:
        rows = await session.exec(select(SavedQuestion).order_by(col(SavedQuestion.id)))
        return list(rows.all())


async def add_question(h: Harness, text: str, uid: int = PATIENT) -> None:
    """Opens /myquestions, taps Add and types the question."""
    await h.command(uid, "myquestions")
    await h.press(uid, M.get("pictures.btn_add"))
    await h.send(uid, text)


def card_texts(fig: Any) -> list[str]:
    """Returns the text lines written on the card figure."""
    return [t.get_text() for t in fig.findobj(Text) if isinstance(t, Text) and t.get_text()]


# ---------------------------------------------------------------- /mytrend


async def test_mytrend_sends_a_picture_of_her_two_weeks_with_a_matching_summary(
    harness: Harness,
) -> None:
    h = harness
    participant = await live_two_weeks(h)
    await h.command(PATIENT, "mytrend")

    photo = h.last(PATIENT)
    assert photo.photo
    assert photo.text == (
        "Your worst pain averaged 4 in the last 30 days.\n\n"
        "Tablet answers: 8 taken, 2 missed, 0 stopped."
    )
    assert photo.buttons() == [("Show 90 days", "tr:90"), ("A page for my doctor", "dc:send")]
    assert not photo.protect_content  # discreet mode is off by default

    png, _ = sent_file(h, "sendPhoto", "photo")
    assert png.startswith(PNG_SIGNATURE)
    assert imread(io.BytesIO(png)).shape[:2] == (1292, 1088)
    # The photo is exactly the figure built from her stored answers, which we can inspect.
    async with h.db.session() as session:
        trend, _ = await load_trend(
            session=session, participant=participant, days=30, default_zone="Europe/London"
        )
    assert png == render_trend_png(trend, M)
    pain = ys(line(trend_figure(trend, M), GID_PAIN))
    assert int(np.isfinite(pain).sum()) == len(ANSWERED)


async def test_switching_to_90_days_sends_that_picture_and_a_replay_changes_nothing(
    harness: Harness,
) -> None:
    h = harness
    await live_two_weeks(h)
    await h.command(PATIENT, "mytrend")
    first = h.last(PATIENT)

    press = h.updates.callback(PATIENT, "tr:90", first)
    await h.process(press)
    ninety = h.last(PATIENT)
    assert ninety.photo and ninety is not first
    assert ninety.text.startswith("Your worst pain averaged 4 in the last 90 days.")
    assert ninety.buttons()[0] == ("Show 30 days", "tr:30")
    assert first.buttons() == []  # the switch moved to the new picture
    photos = len(h.fake.calls_to("sendPhoto"))

    await h.process(press)  # Telegram delivers the same press again
    assert len(h.fake.calls_to("sendPhoto")) == photos

    await h.press(PATIENT, "tr:30")
    assert h.last(PATIENT).text.startswith("Your worst pain averaged 4 in the last 30 days.")


async def test_a_new_participant_sees_too_little_data_instead_of_an_average(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "mytrend")
    assert h.last(PATIENT).photo
    assert h.last(PATIENT).text == M.get("pictures.summary_too_little", answered=0, days=30)


async def test_pictures_need_setup_first_and_say_so(harness: Harness) -> None:
    h = harness
    for command in ("mytrend", "doctorcard", "myquestions", "discreet"):
        await h.command(PATIENT, command)
        assert h.last(PATIENT).text == M.get("pictures.not_ready")
    assert not h.fake.calls_to("sendPhoto") and not h.fake.calls_to("sendDocument")


async def test_someone_elses_trend_button_shows_her_nothing(harness: Harness) -> None:
    h = harness
    await live_two_weeks(h)
    await make_active_participant(h.db, telegram_user_id=OTHER)
    await h.command(PATIENT, "mytrend")
    photos = len(h.fake.calls_to("sendPhoto"))
    await h.process(h.updates.callback(OTHER, "tr:90", h.last(PATIENT)))
    assert len(h.fake.calls_to("sendPhoto")) == photos
    assert h.fake.answered_callbacks[-1].get("text") == M.get("pictures.stale_button")


# ---------------------------------------------------------------- /doctorcard


async def test_doctorcard_sends_a_pdf_with_her_numbers_and_her_questions(
    harness: Harness,
) -> None:
    h = harness
    participant = await live_two_weeks(h)
    await add_question(h, "Could the stiffness in my hands be from the tablet?")
    await add_question(h, "Would a $20 exercise class help more than painkillers?")
    async with h.db.session() as session:
        assert participant.id is not None
        session.add(BarrierReport(participant_id=participant.id, code="forgot", source="test"))
        session.add(
            TherapyChange(
                participant_id=participant.id,
                kind="switched",
                new_medicine="letrozole",
                changed_on=clock.now(),
            )
        )
    await h.command(PATIENT, "doctorcard")

    document = h.last(PATIENT)
    assert document.method == "sendDocument"
    assert document.document_name == "visit-summary.pdf"
    assert document.text == M.get("pictures.card_caption")
    pdf, _ = sent_file(h, "sendDocument", "document")
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b(?!s)", pdf)) == 1  # one page
    # TrueType fonts with a Unicode map: the text can be searched and copied in a reader.
    assert b"/FontFile2" in pdf and b"/ToUnicode" in pdf

    async with h.db.session() as session:
        participant = await participant_row(h)
        data = await load_card(session=session, participant=participant, default_zone="UTC")
    # The sent PDF is exactly this card (no timestamp inside), so its words are these.
    assert pdf == render_card_pdf(data, M)
    fig = card_figure(data, M)
    texts = card_texts(fig)
    questions = [t.get_text() for t in fig.texts if t.get_gid() == GID_QUESTION]
    assert questions == [
        "1. Could the stiffness in my hands be from the tablet?",
        "2. Would a $20 exercise class help more than painkillers?",
    ]
    assert fig.texts[0].get_text() == "For my next visit"
    assert "Worst pain: average 4 out of 10 (lowest 0, highest 7), on 10 of 30 days." in texts
    assert "Pain got in the way: average 3 out of 10." in texts
    assert "Taken: 8    Missed: 2    Stopped: 0    No answer: 20" in texts
    assert "22 Jan 2026: Numbness or tingling in my hand, I had a fall" in texts
    assert "17 Jan 2026: A swollen or red joint" in texts
    assert "Forgetting: last on 25 Jan 2026 (in all: 1)" in texts
    assert "25 Jan 2026: Switched to Letrozole (Femara), on my doctor's advice" in texts
    assert "Made on 25 Jan 2026. Pain and tablet answers from 27 Dec 2025 to 25 Jan 2026." in texts
    # Hers alone: no pseudonym, no Telegram id anywhere on the page.
    assert not [t for t in texts if participant.pseudonym in t or str(PATIENT) in t]
    assert int(np.isfinite(ys(line(fig, GID_PAIN))).sum()) == len(ANSWERED)


async def test_the_card_is_dated_in_her_time_zone(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db, timezone="Pacific/Auckland")
    clock.advance(timedelta(hours=14))  # 23:00 UTC Monday 12 January = Tuesday noon there
    await h.command(PATIENT, "doctorcard")
    async with h.db.session() as session:
        data = await load_card(
            session=session, participant=await participant_row(h), default_zone="UTC"
        )
    texts = card_texts(card_figure(data, M))
    assert any(t.startswith("Made on 13 Jan 2026.") for t in texts)


async def test_dc_send_button_from_any_flow_sends_her_card(harness: Harness) -> None:
    h = harness
    await live_two_weeks(h)
    await h.command(PATIENT, "mytrend")
    await h.press(PATIENT, "dc:send")
    assert h.last(PATIENT).method == "sendDocument"
    assert h.fake.answered_callbacks[-1].get("text") is None


async def test_many_long_questions_still_fit_on_one_page(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    async with h.db.session() as session:
        for n in range(20):
            session.add(
                SavedQuestion(
                    participant_id=participant.id or 0, text=f"Question {n} " + "why " * 60
                )
            )
    async with h.db.session() as session:
        data = await load_card(session=session, participant=participant, default_zone="UTC")
    fig = card_figure(data, M)
    lowest = min(t.get_position()[1] for t in fig.texts if t.get_gid() == GID_QUESTION)
    assert lowest > 0.06  # above the footer, on the page
    assert (
        fig.texts[[t.get_gid() for t in fig.texts].index(GID_QUESTION)]
        .get_text()
        .startswith("1. Question 0 why")
    )
    assert any(t.get_text().startswith("... and ") for t in fig.texts)


# ---------------------------------------------------------------- /myquestions


async def test_myquestions_add_list_and_delete(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "myquestions")
    assert M.get("pictures.questions_empty") in h.last(PATIENT).text

    await add_question(h, "  Can I do yoga?  ")
    assert (await participant_row(h)).awaiting is None
    listing = h.last(PATIENT)
    assert "1. Can I do yoga?" in listing.text
    await add_question(h, "Is swimming good for my joints?")
    listing = h.last(PATIENT)
    assert "1. Can I do yoga?\n2. Is swimming good for my joints?" in listing.text
    rows = await questions_in_db(h)
    assert [q.text for q in rows] == ["Can I do yoga?", "Is swimming good for my joints?"]
    assert ("Delete 1", f"mq:del:{rows[0].id}") in listing.buttons()

    await h.press(PATIENT, "Delete 1", message=listing)
    assert h.fake.answered_callbacks[-1]["text"] == M.get("pictures.questions_deleted")
    assert "1. Is swimming good for my joints?" in listing.text  # edited in place
    assert "Can I do yoga?" not in listing.text
    gone = (await questions_in_db(h))[0]
    assert gone.deleted_at is not None and gone.text == ""  # her words are not kept

    await h.press(PATIENT, "Done", message=listing)
    assert listing.text == M.get("pictures.questions_closed")


async def test_a_replayed_or_repeated_delete_changes_nothing(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await add_question(h, "First question?")
    await add_question(h, "Second question?")
    listing = h.last(PATIENT)
    first = (await questions_in_db(h))[0]
    press = h.updates.callback(PATIENT, f"mq:del:{first.id}", listing)
    await h.process(press)
    await h.process(press)  # the same update again: dropped before any flow
    await h.process(h.updates.callback(PATIENT, f"mq:del:{first.id}", listing))  # a double tap
    assert h.fake.answered_callbacks[-1]["text"] == M.get("pictures.questions_gone")
    assert [q.deleted_at is not None for q in await questions_in_db(h)] == [True, False]


async def test_deleting_someone_elses_question_is_refused(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await make_active_participant(h.db, telegram_user_id=OTHER)
    await add_question(h, "Her private question?")
    hers = (await questions_in_db(h))[0]
    # The other person forges the button in her own chat.
    await h.command(OTHER, "myquestions")
    await h.process(h.updates.callback(OTHER, f"mq:del:{hers.id}", h.last(OTHER)))
    assert h.fake.answered_callbacks[-1]["text"] == M.get("pictures.stale_button")
    # ... or presses the real button on her message.
    await h.process(h.updates.callback(OTHER, f"mq:del:{hers.id}", h.last(PATIENT)))
    assert h.fake.answered_callbacks[-1]["text"] == M.get("pictures.stale_button")
    rows = await questions_in_db(h)
    assert rows[0].deleted_at is None and rows[0].text == "Her private question?"
    assert "Her private question?" not in "\n".join(h.texts(OTHER))


async def test_cancel_add_and_too_long_questions(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "myquestions")
    await h.press(PATIENT, M.get("pictures.btn_add"))
    await h.send(PATIENT, "x" * 501)
    assert h.last(PATIENT).text == M.get("pictures.questions_too_long", max=500)
    assert (await participant_row(h)).awaiting == "q:add"
    await h.press(PATIENT, M.get("pictures.btn_cancel"))
    assert (await participant_row(h)).awaiting is None
    await h.send(PATIENT, "Just chatting")
    assert await questions_in_db(h) == []


async def test_a_worrying_symptom_saved_as_a_question_gets_advice_not_to_wait(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await add_question(h, "Is the swelling in my knuckles something to worry about?")
    texts = h.texts(PATIENT)
    saved = texts.index(M.get("pictures.questions_saved"))
    # The free-text safety net still answers: after the question is saved, not instead of it.
    advice = M.get("doctor_first.red_flag", emergency="999")
    assert advice in texts[saved:]
    assert texts.count(advice) == 1
    assert len(await questions_in_db(h)) == 1


async def test_a_score_typed_for_her_open_checkin_is_not_saved_as_a_question(
    harness: Harness,
) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    await h.command(PATIENT, "myquestions")
    await h.press(PATIENT, M.get("pictures.btn_add"))
    await h.command(PATIENT, "checkin")
    checkin = await open_checkin(h, participant.id or 0)
    await h.press(PATIENT, f"ci:{checkin.id}:took_med:yes")
    await h.send(PATIENT, "6")  # the worst-pain question is open
    assert await questions_in_db(h) == []
    assert (await participant_row(h)).awaiting is None
    assert any("6 out of 10" in t for t in h.texts(PATIENT))


# ---------------------------------------------------------------- discreet mode


async def test_discreet_mode_protects_her_picture_card_questions_and_checkins(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db, checkin_time="19:00")
    await h.command(PATIENT, "discreet")
    assert h.last(PATIENT).text == M.get("pictures.discreet_is_off")
    await h.press(PATIENT, "dz:on")
    assert (await participant_row(h)).discreet
    assert h.last(PATIENT).text.startswith(M.get("pictures.discreet_now_on"))

    await h.command(PATIENT, "mytrend")
    assert h.last(PATIENT).photo and h.last(PATIENT).protect_content
    await h.command(PATIENT, "doctorcard")
    assert h.last(PATIENT).method == "sendDocument" and h.last(PATIENT).protect_content
    await h.command(PATIENT, "myquestions")
    assert h.last(PATIENT).protect_content

    await h.tick()  # plans tonight's check-in
    clock.advance(timedelta(hours=10))  # 19:00
    await h.tick()
    checkin_message = h.last(PATIENT)
    assert checkin_message.buttons() and checkin_message.protect_content
    assert not LOCK_WORD.search(checkin_message.text.splitlines()[0])
    # The next question, sent after her tap, is protected too.
    first_button = checkin_message.buttons()[0][1]
    await h.press(PATIENT, first_button, message=checkin_message)
    following = h.last(PATIENT)
    assert following is not checkin_message and following.protect_content
    # So is an education page she opens from /learn.
    await h.command(PATIENT, "learn")
    menu = h.last(PATIENT)
    assert menu.protect_content
    await h.press(PATIENT, menu.buttons()[0][1], message=menu)
    page = h.last(PATIENT)
    assert page is not menu and page.protect_content
    # And the /stop menu, which names her choices about her medicine.
    await h.command(PATIENT, "stop")
    assert h.last(PATIENT).buttons() and h.last(PATIENT).protect_content

    await h.press(PATIENT, "dz:off")
    assert not (await participant_row(h)).discreet
    await h.command(PATIENT, "mytrend")
    assert not h.last(PATIENT).protect_content


async def test_pressing_turn_on_twice_keeps_it_on(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "discreet")
    message = h.last(PATIENT)
    await h.press(PATIENT, "dz:on", message=message)
    await h.process(h.updates.callback(PATIENT, "dz:on", message))
    assert (await participant_row(h)).discreet


async def test_after_leaving_she_is_told_there_is_nothing_new(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, participant.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    await h.command(PATIENT, "mytrend")
    assert h.last(PATIENT).text == M.get("pictures.left")
    assert not h.fake.calls_to("sendPhoto")


async def test_emoji_the_card_font_cannot_draw_are_left_out_not_boxed(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await add_question(h, "Is the stiffness normal? 🙂🫶 Ça va?")
    async with h.db.session() as session:
        data = await load_card(
            session=session, participant=await participant_row(h), default_zone="UTC"
        )
    fig = card_figure(data, M)
    [question] = [t.get_text() for t in fig.texts if t.get_gid() == GID_QUESTION]
    assert question == "1. Is the stiffness normal? Ça va?"
    # Her saved words stay as she typed them; only the picture leaves the glyphs out.
    assert [q.text for q in await questions_in_db(h)] == ["Is the stiffness normal? 🙂🫶 Ça va?"]
