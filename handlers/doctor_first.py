"""The doctor-first path: /thinking_of_stopping and its `df:` buttons.

Rules live in `bot.doctor_first`; the buttons and the first step are shared views
(`handlers.views.doctor_first`), because several flows start the path. Each press is checked
against the person pressing, and a doubled press stores nothing twice: each answered question
loses its buttons, and every stored step is marked done on its alert row.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import alerts, doctor_first
from bot.clock import now
from bot.content import Messages
from bot.doctor_first import ADVISED, PRIVATE, SWITCHED
from bot.models import Alert, AlertStatus
from bot.outbox import Buttons
from handlers.common import BotContext
from handlers.ui import Screen, Turn, turn
from handlers.views.checkin import open_question, question_view
from handlers.views.common import emergency_for
from handlers.views.doctor_first import (
    NO_MEDICINE,
    PATTERN,
    START,
    STEPS,
    STOPPING_PAGE,
    TALK_PAGE,
    WEAK,
    call_team_key,
    page_buttons,
    start_view,
    unavailable,
    why_doctor_key,
)

COMMAND = "thinking_of_stopping"
TIPS = ("joint_pain", "forgot", "cost", "worry")  # barriers with a short extra line


# ---------------------------------------------------------------- views of the later steps


def _explanation(m: Messages, alert: Alert, answer: str) -> Screen:
    """Returns why the choice belongs with her doctor (or why to tell them) and what to ask."""
    text = m.get(why_doctor_key(alert)) + "\n\n" + m.get("doctor_first.ask_about")
    if answer == PRIVATE:
        text = m.get("doctor_first.private_ack") + "\n\n" + text
    return Screen(text, page_buttons(m, TALK_PAGE, STOPPING_PAGE))


def _barrier_question(m: Messages, alert: Alert, n: int) -> Screen:
    """Returns "What makes it hardest to keep taking it?" with one button per barrier."""
    rows: Buttons = [
        [(m.get(f"doctor_first.barrier_{code}"), STEPS["b"].build(alert.id, n, code))]
        for code in doctor_first.BARRIERS
    ]
    return Screen(m.get("doctor_first.ask_barrier"), rows)


async def _contact_step(t: Turn, alert: Alert) -> tuple[str, Buttons | None]:
    """Offers contact when someone would receive the request; otherwise asks her to call."""
    m = t.m
    if await alerts.receivers(session=t.session, settings=t.settings):
        return m.get("doctor_first.contact_offer"), [
            [(m.get("doctor_first.btn_contact"), STEPS["k"].build(alert.id))]
        ]
    return m.get(call_team_key(alert)), None


def _when_question(m: Messages, alert: Alert, n: int, change: str, medicine: str) -> Screen:
    """Returns "Roughly when did this change?" carrying what changed in its buttons."""
    rows: Buttons = [
        [(m.get(f"doctor_first.when_{w}"), STEPS["w"].build(alert.id, n, change, medicine, w))]
        for w in doctor_first.WHEN
    ]
    return Screen(m.get("doctor_first.ask_when"), rows)


def _close_question(t: Turn) -> bool:
    """Shows her answer under the pressed question and removes its buttons.

    Returns False when its buttons are already gone: an earlier press answered it.
    """
    pressed = t.pressed
    if pressed is None:
        return True
    if pressed.reply_markup is None:
        return False
    label = next(
        (
            key.text
            for row in pressed.reply_markup.inline_keyboard
            for key in row
            if key.callback_data == t.data
        ),
        None,
    )
    text = pressed.text or ""
    if label is not None:
        text += "\n\n" + t.m.get("doctor_first.your_answer", answer=label)
    t.reply.replace(text)
    return True


async def _resume_checkin(t: Turn) -> None:
    """Re-shows the question her open check-in is waiting for, if any."""
    found = await open_question(t.session, t.participant)
    if found is None:
        return
    state, item = found
    text, buttons = question_view(state, item, t.m)
    t.reply.say(t.m.get("doctor_first.back_to_checkin") + "\n\n" + text, buttons)
    t.reply.checkin_id = state.checkin.id


# ---------------------------------------------------------------- /thinking_of_stopping


@turn
async def on_command(t: Turn) -> None:
    """Starts the doctor-first path from the /thinking_of_stopping command."""
    t.reply.say(*await start_view(session=t.session, participant=t.participant, source="command"))


# ---------------------------------------------------------------- buttons


def _parse(data: str) -> tuple[str, tuple[Any, ...]] | None:
    """Returns the step and its typed fields, or None for data no `df:` codec reads."""
    if START.parse(data) is not None:
        return "start", ()
    parsed = WEAK.parse(data)
    if parsed is not None:
        return "wk", parsed
    for step, codec in STEPS.items():
        parsed = codec.parse(data)
        if parsed is not None:
            return step, parsed
    return None


@turn
async def on_button(t: Turn) -> None:
    """Acts on a `df:` button after checking who pressed it and whether it still applies."""
    reply, m, participant = t.reply, t.m, t.participant
    parsed = _parse(t.data)
    if parsed is None:
        reply.toast, reply.alert = m.get("doctor_first.stale"), True
        return
    step, fields = parsed
    if participant is None or not doctor_first.may_record(participant):
        reply.say(unavailable(participant))
        return
    if step == "start":
        reply.say(*await start_view(session=t.session, participant=participant, source="page"))
        return
    if step == "wk":
        if fields[0] != participant.id:
            reply.toast, reply.alert = m.get("doctor_first.not_yours"), True
            return
        if not _close_question(t):
            return
        if fields[1] == "y":
            reply.say(
                *await start_view(session=t.session, participant=participant, source="free_text")
            )
        else:
            reply.say(m.get("doctor_first.weak_no"))
            await _resume_checkin(t)
        return
    alert = await t.session.get(Alert, fields[0])
    if alert is not None and alert.participant_id != participant.id:
        reply.toast, reply.alert = m.get("doctor_first.not_yours"), True
        return
    mine = await doctor_first.path_alert(
        session=t.session, participant=participant, alert_id=fields[0]
    )
    if mine is None or mine.status == AlertStatus.closed:
        reply.toast, reply.alert = m.get("doctor_first.stale"), True
        return
    await _path_step(t, mine, step, fields)


async def _path_step(t: Turn, alert: Alert, step: str, fields: tuple[Any, ...]) -> None:
    """Records one answer of the path and plans what comes next."""
    reply, m, participant = t.reply, t.m, t.participant
    assert participant is not None
    if step == "k":
        if not _close_question(t):
            return
        if not await alerts.receivers(session=t.session, settings=t.settings):
            reply.say(m.get(call_team_key(alert)))
            return
        await doctor_first.request_contact(
            session=t.session, alert=alert, due_by=alerts.due_by(t.settings, now())
        )
        emergency = emergency_for(participant, t.settings)
        days = t.settings.contact_within_working_days
        when = m.get(
            "doctor_first.within_day" if days == 1 else "doctor_first.within_days", n=days
        )
        reply.say(m.get("doctor_first.contact_requested", when=when, emergency=emergency))
        return
    n, value = fields[1], fields[2]
    if n < 1:
        reply.toast, reply.alert = m.get("doctor_first.stale"), True
        return
    if not _close_question(t):
        return  # a doubled press: the first one already went on
    if step == "d":
        await doctor_first.record_doctor_answer(session=t.session, alert=alert, answer=value)
        if value == ADVISED:
            rows: Buttons = [
                [(m.get(f"doctor_first.btn_change_{c}"), STEPS["c"].build(alert.id, n, c))]
                for c in doctor_first.CHANGES
            ]
            reply.say(m.get("doctor_first.ask_change"), rows)
        else:
            reply.show(_explanation(m, alert, value))
            reply.show(_barrier_question(m, alert, n))
        return
    if step == "c":
        if value == SWITCHED:
            rows = [
                [(m.get(f"doctor_first.medicine_{med}"), STEPS["m"].build(alert.id, n, med))]
                for med in doctor_first.MEDICINES
            ]
            reply.say(m.get("doctor_first.ask_medicine"), rows)
        else:
            reply.show(_when_question(m, alert, n, value, NO_MEDICINE))
        return
    if step == "m":
        reply.show(_when_question(m, alert, n, SWITCHED, value))
        return
    if step == "w":
        change, medicine, when = fields[2], fields[3], fields[4]
        if change == SWITCHED and medicine == NO_MEDICINE:
            return
        recorded = await doctor_first.record_change(
            session=t.session,
            participant=participant,
            alert=alert,
            path=n,
            kind=change,
            medicine=medicine if change == SWITCHED else None,
            when=when,
        )
        if recorded is None:
            return
        follow = "doctor_first.next_current" if change == SWITCHED else "doctor_first.next_none"
        reply.say(m.get("doctor_first.change_noted") + "\n\n" + m.get(follow))
        await _resume_checkin(t)
        return
    report = await doctor_first.record_barrier(
        session=t.session, participant=participant, alert=alert, path=n, code=value
    )
    if report is None:
        return
    text = m.get("doctor_first.barrier_noted")
    if value in TIPS:
        text += " " + m.get(f"doctor_first.tip_{value}")
    contact, buttons = await _contact_step(t, alert)
    reply.say(text + "\n\n" + contact, buttons)
    await _resume_checkin(t)


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler(COMMAND, on_command, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_button, pattern=PATTERN),
]
