"""One check-in, one red-flag reply: a ticked symptom, a note that names one and an overlong
note each update the care team's alert, but she reads the advice once. Other signals keep their
own answer, and an overlong note is answered in one message."""

from __future__ import annotations

from sqlmodel import col, select

from bot import doctor_first
from bot.content import t
from bot.models import Alert, Answer, CheckIn
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant
from tests.test_checkin import question_message

# The reply to a red flag in her words (its first paragraph), and every red-flag advice she can
# get: that reply, the red-flag offer after the check-in, the summary's line on something new.
RED_FLAG_REPLY = t("doctor_first.red_flag", emergency="999").split("\n")[0]
ADVICE = (RED_FLAG_REPLY, t("offers.red_flag"), t("checkin.summary_new"))
TOO_LONG = t("checkin.note_too_long")
ASK_DOCTOR = "Have you talked with your doctor about this?"
LONG_TAIL = " and more" * 300  # well over the 2,000-letter limit of a note


def advice_count(h: Harness) -> int:
    """Returns how many messages in her chat carry red-flag advice."""
    return sum(any(words in text for words in ADVICE) for text in h.texts(PATIENT))


async def red_flag_alert(h: Harness) -> Alert:
    """Returns her one red-flag alert."""
    async with h.db.session() as session:
        rows = (await session.exec(select(Alert).where(Alert.kind == "red_flag"))).all()
    assert len(rows) == 1
    return rows[0]


async def checkin_ids(h: Harness) -> list[int]:
    """Returns every check-in id, oldest first."""
    async with h.db.session() as session:
        rows = await session.exec(select(CheckIn.id).order_by(col(CheckIn.id)))
        return [i for i in rows.all() if i is not None]


async def answer_up_to_symptoms(h: Harness, *symptoms: str) -> None:
    """Starts a check-in and answers it up to the note, ticking these new symptoms."""
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "3")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "2", message=question_message(h, "get in the way"))
    for symptom in symptoms:
        await h.press(PATIENT, symptom)
    await h.press(PATIENT, "Done" if symptoms else "None")
    assert "Anything else you want to note?" in h.last(PATIENT).text


async def test_a_ticked_red_flag_then_a_long_note_and_a_note_naming_one_get_one_reply(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "A swollen or red joint")
    assert advice_count(h) == 1  # the red-flag offer
    sent = len(h.texts(PATIENT))

    await h.send(PATIENT, "my knee is swollen and red" + LONG_TAIL)
    assert len(h.texts(PATIENT)) == sent + 1  # one message: too long, no advice again
    assert TOO_LONG in h.last(PATIENT).text
    assert [label for label, _ in h.last(PATIENT).buttons()] == ["Skip"]

    await h.send(PATIENT, "my knee is swollen and red and I had a fall")
    assert "Here is what you told me" in h.last(PATIENT).text
    assert len(h.texts(PATIENT)) == sent + 2
    assert advice_count(h) == 1
    async with h.db.session() as session:
        note = (await session.exec(select(Answer).where(Answer.item_code == "note"))).one()
    assert note.value == "my knee is swollen and red and I had a fall"

    # The care team's alert still hears of every signal: one row, updated each time.
    alert = await red_flag_alert(h)
    detail = doctor_first.parse_detail(alert.detail)
    assert alert.count == 3 and detail["n"] == "3"
    assert "swelling" in detail["sym"] and "red_flag.fall" in detail["rule"]
    assert detail["checkin"] == str((await checkin_ids(h))[0])


async def test_a_red_flag_typed_first_holds_back_the_offer_and_the_summary_line(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes")
    await h.send(PATIENT, "I had a fall yesterday")
    assert RED_FLAG_REPLY in h.last(PATIENT).text
    assert advice_count(h) == 1

    # Another red flag while a button question waits: the question again, no advice.
    await h.send(PATIENT, "my fingers are numb and tingling")
    assert "worst joint pain" in h.last(PATIENT).text
    assert advice_count(h) == 1

    await h.press(PATIENT, "3")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "2", message=question_message(h, "get in the way"))
    await h.press(PATIENT, "I had a fall")
    await h.press(PATIENT, "Done")
    await h.press(PATIENT, "Skip")
    assert "New since last time: I had a fall" in h.last(PATIENT).text
    assert advice_count(h) == 1
    detail = doctor_first.parse_detail((await red_flag_alert(h)).detail)
    assert detail["sym"] == "fall" and "red_flag.numbness" in detail["rule"]


async def test_an_overlong_note_gets_one_message_with_the_safety_answer_it_needs(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h)
    sent = len(h.texts(PATIENT))

    await h.send(PATIENT, "my knee is swollen and red" + LONG_TAIL)
    assert len(h.texts(PATIENT)) == sent + 1
    reply = h.last(PATIENT)
    assert TOO_LONG in reply.text and RED_FLAG_REPLY in reply.text
    assert [label for label, _ in reply.buttons()] == ["Skip", "When to contact your care team"]
    assert doctor_first.parse_detail((await red_flag_alert(h)).detail)["checkin"] == str(
        (await checkin_ids(h))[0]
    )

    # Her shorter note is saved; the advice she just read is not repeated.
    await h.send(PATIENT, "my knee is swollen and red")
    assert "Here is what you told me" in h.last(PATIENT).text
    assert advice_count(h) == 1


async def test_an_emergency_in_an_overlong_note_comes_first_in_one_message(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "A swollen or red joint")
    sent = len(h.texts(PATIENT))
    await h.send(PATIENT, "I can't breathe" + LONG_TAIL)
    assert len(h.texts(PATIENT)) == sent + 1
    text = h.last(PATIENT).text
    emergency = t("doctor_first.emergency", emergency="999").split("\n")[0]
    assert text.startswith(emergency) and TOO_LONG in text


async def test_stopping_in_a_note_still_starts_the_path_after_the_red_flag_reply(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "Numbness or tingling in my hand")
    await h.send(PATIENT, "my fingers are numb and tingling so I stopped my pills")
    assert ASK_DOCTOR in h.last(PATIENT).text
    assert advice_count(h) == 1
    async with h.db.session() as session:
        kinds = (await session.exec(select(Alert.kind).order_by(col(Alert.id)))).all()
    assert list(kinds) == ["red_flag", "stop_intent"]
    assert (await red_flag_alert(h)).count == 2


async def test_the_next_checkin_gets_its_own_red_flag_reply(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "I had a fall")
    await h.press(PATIENT, "Skip")
    assert advice_count(h) == 1
    await h.command(PATIENT, "checkin")
    await h.send(PATIENT, "my knee is swollen and red")
    assert RED_FLAG_REPLY in h.last(PATIENT).text
    assert advice_count(h) == 2
    second = (await checkin_ids(h))[-1]
    assert doctor_first.parse_detail((await red_flag_alert(h)).detail)["checkin"] == str(second)


async def test_a_photo_caption_naming_a_red_flag_later_in_the_checkin_updates_only_the_alert(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "A swollen or red joint")
    await h.process(h.updates.photo(PATIENT, caption="look how swollen my knee is"))
    assert "can't open photos" in h.last(PATIENT).text
    assert advice_count(h) == 1
    assert (await red_flag_alert(h)).count == 2


async def test_stop_the_messages_after_an_advised_red_flag_shows_the_menu_once(
    harness: Harness,
) -> None:
    """The red flag already advised in this check-in falls through to the pause-or-leave
    menu; "stop the messages" said beside it must not add the same menu a second time."""
    h = harness
    await make_active_participant(h.db)
    await answer_up_to_symptoms(h, "I had a fall")
    before = len(h.texts(PATIENT))
    await h.send(PATIENT, "my knee is swollen and red. please stop sending me messages")
    new = h.texts(PATIENT)[before:]
    assert advice_count(h) == 1
    assert len(new) == len(set(new)), new
