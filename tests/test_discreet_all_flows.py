"""Discreet mode, end to end: every message any flow sends her is protected from forwarding.

Black-box: she turns the mode on with /discreet and its button, then goes through every command
of the published menu, the buttons they offer, the check-in, the doctor-first path, free text,
media and an unknown command; the test reads only what the fake Bot API received.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot import clock
from bot.content import messages, questionnaire
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

A = PATIENT
M = messages("en")
SENDS = ("sendMessage", "sendPhoto", "sendDocument")
# Never tapped: they end her participation or turn discreet mode off.
NOT_TAPPED = {
    M.get("lifecycle.btn_delete_yes"),
    M.get("lifecycle.btn_leave_yes"),
    M.get("pictures.btn_discreet_off"),
}
# Walked step by step below, not one tap each from a fresh menu: the check-in and the
# doctor-first path, whose buttons only make sense in order.
WALKED = ("ci:", "df:", "cq:")
FREE_TEXT = [
    "I stopped taking my letrozole",  # stop intent: the doctor-first path
    "I have chest pain and can't breathe",  # emergency
    "please stop sending me messages",  # unsubscribe: pause or leave
    "my knee is swollen and red",  # red flag
    "my friend says I should stop my letrozole",  # weak stop intent: asked first
    "what is the weather like tomorrow",  # nothing the bot knows
]


def sends_to(h: Harness, chat_id: int, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """Returns every message-sending call to a chat since a mark in the call log."""
    return [
        (method, params)
        for method, params in h.fake.calls[since:]
        if method in SENDS and int(params["chat_id"]) == chat_id
    ]


def unprotected(h: Harness, chat_id: int, since: int) -> list[str]:
    """Describes each message sent to the chat without protect_content (first 60 characters)."""
    return [
        f"{method}: {str(params.get('text') or params.get('caption') or '')[:60]!r}"
        for method, params in sends_to(h, chat_id, since)
        if params.get("protect_content") is not True
    ]


def labels_since(h: Harness, start: int) -> list[str]:
    """Returns the labels of the buttons on her messages from index `start` on, in order."""
    return [
        label
        for message in h.fake.messages[start:]
        if message.chat_id == A
        for label, data in message.buttons()
        if label not in NOT_TAPPED and data and not data.startswith(WALKED)
    ]


async def tap(h: Harness, label: str, since: int = 0) -> None:
    """Taps the newest button with this label, preferring messages from index `since` on."""
    for message in reversed(h.fake.messages[since:]):
        if message.chat_id == A and any(lbl == label for lbl, _ in message.buttons()):
            await h.press(A, label, message=message)
            return
    await h.press(A, label)


async def each_button_of(h: Harness, command: str) -> None:
    """Sends a command, then taps each button it offers, one level deep, on a fresh menu."""
    start = len(h.fake.messages)
    await h.command(A, command)
    for label in labels_since(h, start):
        fresh = len(h.fake.messages)
        await h.command(A, command)  # an earlier tap may have changed or closed the menu
        await tap(h, label, since=fresh)


def option(code: str, value: str) -> str:
    """Returns the button label of one check-in answer."""
    item = questionnaire().item(code)
    assert item is not None
    found = item.option(value)
    assert found is not None
    return found.text("en")


async def walk_checkin(h: Harness) -> None:
    """Answers a check-in through to its summary and offers, then opens each offer."""
    start = len(h.fake.messages)
    await h.command(A, "checkin")
    await tap(h, option("took_med", "yes"))
    await tap(h, "8")  # worst pain: brings the offer of what may help
    await tap(h, option("stiffness", "over_30"))
    await tap(h, "7")  # pain got in the way
    await tap(h, option("new_symptoms", "swelling"))  # a red flag: its offer comes too
    await tap(h, M.get("checkin.button_done"))
    await h.send(A, "Tired in the evenings.")  # the optional note, then the summary
    for message in [m for m in h.fake.messages[start:] if m.chat_id == A]:
        for label, data in message.buttons():
            if data.startswith("of:"):
                await h.press(A, label, message=message)


async def walk_doctor_first(h: Harness) -> None:
    """Goes down each branch of the doctor-first path."""
    await h.command(A, "thinking_of_stopping")
    await tap(h, M.get("doctor_first.btn_not_yet"))
    await tap(h, M.get("doctor_first.barrier_forgot"))
    await tap(h, "Talking with your doctor")  # the page offered with the explanation
    await h.command(A, "thinking_of_stopping")
    await tap(h, M.get("doctor_first.btn_private"))
    await h.command(A, "thinking_of_stopping")
    await tap(h, M.get("doctor_first.btn_advised"))
    await tap(h, M.get("doctor_first.btn_change_switched"))
    await tap(h, M.get("doctor_first.medicine_letrozole"))
    await tap(h, M.get("doctor_first.when_this_week"))


async def walk_free_text(h: Harness) -> None:
    """Types what brings the safety replies, and taps what they offer."""
    for text in FREE_TEXT:
        start = len(h.fake.messages)
        await h.send(A, text)
        for label in labels_since(h, start):
            await tap(h, label, since=start)
    await h.send(A, "my friend says I should stop my letrozole")
    await tap(h, M.get("doctor_first.btn_no"))
    await h.process(h.updates.photo(A))
    await h.process(h.updates.photo(A, caption="my knee is swollen"))
    await h.process(h.updates.voice(A))
    await h.process(h.updates.sticker(A))
    await each_button_of(h, "frobnicate")  # an unknown command, and the help it offers


async def turn_discreet_on(h: Harness) -> None:
    """She turns discreet mode on the way she would: /discreet, then its button."""
    await h.command(A, "discreet")
    await h.press(A, M.get("pictures.btn_discreet_on"))


async def test_with_discreet_mode_on_every_message_of_every_flow_is_protected(
    harness: Harness,
) -> None:
    """Every command, its buttons, the check-in, the path, free text: all protected."""
    h = harness
    await make_active_participant(h.db, checkin_time="12:00")
    await turn_discreet_on(h)
    since = len(h.fake.calls)

    menu = [c["command"] for cmds in h.fake.commands.values() for c in cmds]
    assert "checkin" in menu and "discreet" in menu, "the bot published no command menu"
    await walk_checkin(h)
    await walk_doctor_first(h)
    await h.command(A, "myquestions")
    await tap(h, M.get("pictures.btn_add"))
    await h.send(A, "Should I take calcium with it?")
    await tap(h, M.get("pictures.btn_delete", number=1))
    for command in ["start", *menu]:
        await each_button_of(h, command)
    await walk_free_text(h)
    # Her scheduled check-in and its reminder come from the dispatcher, not from a handler.
    await h.command(A, "resume")
    await h.tick()
    clock.advance(timedelta(hours=3))  # 12:00 in London
    await h.tick()
    clock.advance(timedelta(hours=2))
    await h.tick()
    await tap(h, M.get("checkin.button_snooze"))

    sent = sends_to(h, A, since)
    assert len(sent) > 50, f"only {len(sent)} messages went out: the walk stopped early"
    bare = unprotected(h, A, since)
    assert not bare, f"{len(bare)} of {len(sent)} messages went out unprotected:\n" + "\n".join(
        bare
    )


async def test_with_discreet_mode_off_the_checkin_question_is_not_protected(
    harness: Harness,
) -> None:
    """Without discreet mode her check-in can be forwarded: protection is her choice."""
    h = harness
    await make_active_participant(h.db)
    since = len(h.fake.calls)
    await h.command(A, "checkin")
    [(method, params)] = sends_to(h, A, since)
    assert method == "sendMessage" and params.get("reply_markup")
    assert not params.get("protect_content")
