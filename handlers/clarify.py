"""Her answer to a clarifying question (`cq:` buttons) leads to the path her words needed.

Yes to "Is this a new symptom?" gets the red-flag advice and the care team's alert; yes to
"Are you thinking about stopping your medicine?" starts the doctor-first path; yes to "Would
you like fewer messages?" opens pause or leave. No is thanked and she goes on where she was.
The choice is stored on the question's row (codes only, `bot.clarify`).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot import clarify, doctor_first
from handlers.common import BotContext
from handlers.ui import Turn, turn
from handlers.views.checkin import open_question, question_view
from handlers.views.clarify import CHOICES, CODEC
from handlers.views.common import emergency_for
from handlers.views.doctor_first import (
    WHEN_TO_CALL_PAGE,
    page_buttons,
    start_view,
    unavailable,
)
from handlers.views.lifecycle import unsubscribe_menu
from handlers.views.safety import emergency_screen


@turn
async def on_button(t: Turn) -> None:
    """Stores her Yes or No to a clarifying question and answers with the path it leads to."""
    reply, m, participant = t.reply, t.m, t.participant
    parsed = CODEC.parse(t.data)
    if parsed is None:
        reply.toast, reply.alert = m.get("clarify.stale"), True
        return
    if participant is None or not doctor_first.may_record(participant):
        reply.say(unavailable(participant))
        return
    question_id, key = parsed
    if (
        await clarify.question_of(
            session=t.session, participant=participant, question_id=question_id
        )
        is None
    ):
        reply.toast, reply.alert = m.get("doctor_first.not_yours"), True
        return
    row = await clarify.answer(
        session=t.session, participant=participant, question_id=question_id, choice=CHOICES[key]
    )
    if row is None:
        reply.toast, reply.alert = m.get("clarify.stale"), True
        return
    reply.chosen = m.get("doctor_first.btn_yes" if key == "y" else "doctor_first.btn_no")
    emergency = emergency_for(participant, t.settings)
    if key == "y":
        if row.question == "symptom" and row.suspected == "emergency":
            # Asked because her words read like an emergency: her yes gets the emergency
            # reply first and an urgent alert, not next-day advice (codes only).
            await doctor_first.record_emergency(
                session=t.session,
                participant=participant,
                source="clarify",
                rules=(doctor_first.EMERGENCY_RULES + "clarify",),
            )
            reply.show(emergency_screen(participant, t.settings))
            reply.say(
                m.get("doctor_first.red_flag", emergency=emergency),
                page_buttons(m, WHEN_TO_CALL_PAGE),
            )
        elif row.question == "symptom":
            # Her yes, not the model, raises the alert (codes only: the source is "clarify").
            await doctor_first.record_red_flag(
                session=t.session, participant=participant, source="clarify", rules=()
            )
            reply.say(
                m.get("doctor_first.red_flag", emergency=emergency),
                page_buttons(m, WHEN_TO_CALL_PAGE),
            )
        elif row.question == "stop":
            reply.say(
                *await start_view(session=t.session, participant=participant, source="free_text")
            )
        else:
            reply.say(*unsubscribe_menu(participant))
        return
    if row.question == "symptom":
        reply.say(m.get("clarify.symptom_no", emergency=emergency))
    elif row.question == "stop":
        reply.say(m.get("doctor_first.weak_no"))
    else:
        reply.say(m.get("clarify.fewer_no"))
    await _resume_checkin(t)


async def _resume_checkin(t: Turn) -> None:
    """Re-shows the question her open check-in is waiting for, if any."""
    found = await open_question(t.session, t.participant)
    if found is None:
        return
    state, item = found
    text, buttons = question_view(state, item, t.m)
    t.reply.say(t.m.get("doctor_first.back_to_checkin") + "\n\n" + text, buttons)
    t.reply.checkin_id = state.checkin.id


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CallbackQueryHandler(on_button, pattern=CODEC.pattern),
]
