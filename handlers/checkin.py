"""The check-in flow: /checkin, one-tap answers (`ci:` buttons), typed scores and notes.

Rules live in `bot.checkins`; this module parses the update, calls them and renders the reply.
Every press is checked against the person pressing and derived from stored answers, so a
doubled or late press changes nothing it should not. One press loads the check-in's state
once (`checkins.load_state`) and the view draws from that same snapshot.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import checkins, offers
from bot.awaiting import Awaiting, AwaitKind, awaiting, set_awaiting
from bot.checkins import AnswerResult, CheckinState, Outcome
from bot.content import Item, consent_text
from bot.models import CheckIn, Lifecycle, OutgoingMessage, Participant
from bot.outbox import RenderedMessage
from bot.services import Services
from handlers.common import BotContext, msgs
from handlers.ui import Screen, TextRoute, Turn, turn
from handlers.views.checkin import answer_label, open_question, question_view, summary_text
from handlers.views.doctor_first import start_view
from handlers.views.offers import offer_screens

STOPPED = ("took_med", "stopped")  # the answer that gets the doctor-first message


def _set_note_awaiting(participant: Participant, checkin: CheckIn, item: Item | None) -> None:
    """Marks that her next text is the note, unless another flow is waiting for text."""
    note = Awaiting(AwaitKind.note, str(checkin.id))
    current = awaiting(participant)
    if item is not None and item.type == "text":
        if current is None or current.kind == AwaitKind.note:
            set_awaiting(participant, note)
    elif current == note:
        set_awaiting(participant, None)


async def _follow_up(
    t: Turn, state: CheckinState, result: AnswerResult, item: Item, prefix: str | None = None
) -> None:
    """Plans what comes after a stored answer: doctor-first note, next question or summary."""
    participant = t.participant
    assert participant is not None
    checkin, m, reply = state.checkin, t.m, t.reply

    def with_prefix(text: str) -> str:
        return prefix + "\n\n" + text if prefix else text

    changed = result.outcome in {Outcome.stored, Outcome.corrected}
    if changed and result.answer is not None and (item.code, result.answer.value) == STOPPED:
        # The doctor-first path comes first; its last step re-shows the next question.
        reply.say(
            *await start_view(
                session=t.session, participant=participant, source="checkin", checkin_id=checkin.id
            )
        )
        if not result.completed:
            return
    if result.completed:
        # Tailored offers (rules in content/rules/offers.yaml) follow the summary, unless
        # they came already, when only the optional note was left (see below). They are
        # decided first: a red-flag offer means the summary need not repeat its advice.
        after = (
            []
            if item.optional
            else await offer_screens(session=t.session, participant=participant, checkin=checkin)
        )
        reply.say(with_prefix(await _summary(t, state)))
        _set_note_awaiting(participant, checkin, None)
        reply.messages.extend(after)
    elif result.next_changed and result.next_item is not None:
        nxt = result.next_item
        if nxt.optional and state.only_optional_left():
            # Every question is answered: offers (and the alerts behind a red flag) come now,
            # not after the note, which she may never write.
            reply.messages.extend(
                await offer_screens(session=t.session, participant=participant, checkin=checkin)
            )
        text, buttons = question_view(state, nxt, m)
        reply.say(with_prefix(text), buttons)
        _set_note_awaiting(participant, checkin, nxt)
    elif prefix:
        reply.say(prefix)


async def _summary(t: Turn, state: CheckinState) -> str:
    """Returns the closing summary, without red-flag advice she already had in this check-in."""
    assert t.participant is not None
    advised = await offers.red_flag_advised(
        session=t.session, participant=t.participant, checkin_id=state.checkin.id
    )
    return summary_text(state, t.m, advised=advised)


# ---------------------------------------------------------------- /checkin


def _cannot_start(participant: Participant | None) -> str | None:
    """Returns the message key that tells her how to go on, or None if she may check in."""
    if participant is None:
        return "checkin.not_joined"
    if participant.has_left:
        return "checkin.left"
    if participant.status == Lifecycle.paused:
        return "checkin.paused"
    if participant.status != Lifecycle.active:
        return "checkin.finish_setup"
    if (
        awaiting(participant) == Awaiting(AwaitKind.reconsent)
        or participant.consent_version != consent_text(participant.locale).version
    ):
        return "checkin.reconsent_first"
    return None


@turn
async def on_checkin_command(t: Turn) -> None:
    """Starts a check-in now (or shows where she left off in her open one)."""
    participant, m = t.participant, t.m
    key = _cannot_start(participant)
    if key is not None or participant is None:
        t.reply.say(m.get(key or "checkin.not_joined"))
        return
    existing = await checkins.open_checkin_for(session=t.session, participant=participant)
    checkin = existing or await checkins.create_on_demand_checkin(
        session=t.session,
        participant=participant,
        window_hours=t.settings.checkin_window_hours,
    )
    t.reply.checkin_id = checkin.id
    state = await checkins.load_state(session=t.session, checkin=checkin)
    item = state.current_item()
    if item is None:
        t.reply.say(await _summary(t, state))
        return
    intro = m.get("checkin.resume_open" if existing else "checkin.on_demand_intro")
    text, buttons = question_view(state, item, m)
    t.reply.say(intro + "\n\n" + text, buttons)
    _set_note_awaiting(participant, checkin, item)


# ---------------------------------------------------------------- button presses


@turn
async def on_press(t: Turn) -> None:
    """Stores a one-tap answer, ticks it on the message and sends the next question."""
    reply, m, participant = t.reply, t.m, t.participant
    parsed = checkins.parse_callback(t.data)
    if parsed is None:
        reply.toast = m.get("checkin.stale_button")
        return
    checkin_id, code, value = parsed
    checkin = await t.session.get(CheckIn, checkin_id)
    if checkin is None or participant is None or checkin.participant_id != participant.id:
        # Neutral on purpose: say nothing about whose check-in it is.
        reply.toast = m.get("checkin.not_yours")
        return
    reply.checkin_id = checkin.id
    if participant.has_left or not checkins.is_open(checkin):
        reply.say(m.get("checkin.closed"))
        return
    if code == checkins.SNOOZE_CODE:
        minutes = checkins.snooze_minutes(value)
        await checkins.snooze(session=t.session, checkin=checkin, minutes=minutes)
        reply.toast = m.get("checkin.snoozed_toast")
        reply.say(m.get("checkin.snoozed"))
        return
    item = checkins.questionnaire_for(checkin).item(code)
    if item is None:
        reply.toast = m.get("checkin.stale_button")
        return
    state = await checkins.load_state(session=t.session, checkin=checkin)
    session, update_id = t.session, t.update.update_id
    if item.type == "multi":
        result = await checkins.press_multi(
            session=session,
            checkin=checkin,
            item_code=code,
            value=value,
            update_id=update_id,
            state=state,
        )
    elif item.type == "text" and value == checkins.SKIP:
        result = await checkins.skip_item(
            session=session, checkin=checkin, item_code=code, update_id=update_id, state=state
        )
    else:
        result = await checkins.record_answer(
            session=session,
            checkin=checkin,
            item_code=code,
            value=value,
            update_id=update_id,
            state=state,
        )
    if result.outcome == Outcome.closed:
        reply.say(m.get("checkin.closed"))
        return
    if result.outcome == Outcome.invalid:
        reply.toast = m.get("checkin.stale_button")
        return
    if result.outcome == Outcome.empty:
        reply.toast = m.get("checkin.nothing_ticked")
    # Redraw the pressed question (a repeat is harmless: Telegram says "not modified").
    reply.edit = Screen(*question_view(state, item, m))
    reply.edit_fallback = False  # the next question (or the summary) follows anyway
    current = state.current_item()
    if (
        result.outcome == Outcome.unchanged
        and current is not None
        and current.code != item.code
        and checkins.take_undelivered(checkin)
    ):
        # The question after this one never reached her (Telegram failed for good): show it.
        reply.say(*question_view(state, current, m))
        _set_note_awaiting(participant, checkin, current)
        return
    await _follow_up(t, state, result, item)


# ---------------------------------------------------------------- typed text (routed here)


async def _store_typed(
    t: Turn, state: CheckinState, item: Item, value: str, ack: str | None
) -> AnswerResult:
    """Stores a typed answer (a score or the note) and plans what comes next."""
    result = await checkins.record_answer(
        session=t.session,
        checkin=state.checkin,
        item_code=item.code,
        value=value,
        update_id=t.update.update_id,
        state=state,
    )
    if result.outcome in {Outcome.stored, Outcome.corrected, Outcome.unchanged}:
        await _follow_up(t, state, result, item, prefix=ack)
    return result


async def _store_note(t: Turn, state: CheckinState, item: Item) -> None:
    """Stores her note, or asks for a shorter one."""
    participant = t.participant
    assert participant is not None
    text = t.text
    # An overlong note gets one message: this one, with any safety answer her words need
    # joined to it by the fallback.
    if checkins.too_long(text) or not text.strip():
        _, buttons = question_view(state, item, t.m)
        t.reply.say(t.m.get("checkin.note_too_long"), buttons)
        return
    result = await _store_typed(t, state, item, text, ack=None)
    if not result.completed and not t.reply.messages:
        # The note came in while another question is still open: confirm it.
        t.reply.say(t.m.get("checkin.note_saved"))
    set_awaiting(participant, None)


async def on_note_text(t: Turn) -> bool:
    """Saves the note she typed (database only, never the logs) and closes with a summary."""
    participant = t.participant
    if participant is None:
        return False
    wanted = awaiting(participant)
    checkin_id = wanted.checkin_id if wanted is not None else None
    checkin = await t.session.get(CheckIn, checkin_id) if checkin_id is not None else None
    note = checkins.questionnaire_for(checkin).item("note") if checkin else None
    mine = checkin is not None and checkin.participant_id == participant.id
    if not mine or checkin is None or note is None or not checkins.is_open(checkin):
        set_awaiting(participant, None)
        t.reply.say(t.m.get("checkin.note_closed"))
        return True
    t.reply.checkin_id = checkin.id
    await _store_note(t, await checkins.load_state(session=t.session, checkin=checkin), note)
    return True


async def on_text_during_checkin(t: Turn) -> bool:
    """Takes a typed score or note for her open check-in, else re-shows the buttons."""
    found = await open_question(t.session, t.participant)
    if found is None:
        return False
    state, item = found
    m = t.m
    t.reply.checkin_id = state.checkin.id
    if item.type == "text":
        await _store_note(t, state, item)
        return True
    score = checkins.parse_scale_text(t.text, item) if item.type == "scale" else None
    if score is not None:
        ack = m.get("checkin.number_noted", answer=answer_label(item, score, m))
        await _store_typed(t, state, item, score, ack)
        return True
    text, buttons = question_view(state, item, m)
    t.reply.say(m.get("checkin.use_buttons") + "\n\n" + text, buttons)
    return True


# ---------------------------------------------------------------- outbox renderers


async def _render(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None, *, reminder: bool
) -> RenderedMessage:
    """Renders the current question of the row's check-in behind a neutral first line."""
    checkin = await session.get(CheckIn, row.checkin_id) if row.checkin_id else None
    if checkin is None or participant is None or participant.status != Lifecycle.active:
        return RenderedMessage(text="", skip=True)
    if not checkins.is_open(checkin):
        return RenderedMessage(text="", skip=True)
    state = await checkins.load_state(session=session, checkin=checkin)
    item = state.current_item()
    if item is None:
        return RenderedMessage(text="", skip=True)
    m = msgs(participant)
    text, buttons = question_view(state, item, m)
    first = m.get("checkin.reminder_intro" if reminder else "checkin.intro")
    if reminder:
        snooze = checkins.callback_data(
            checkin.id or 0, checkins.SNOOZE_CODE, str(checkins.SNOOZE_MINUTES)
        )
        buttons = [*buttons, [(m.get("checkin.button_snooze"), snooze)]]
    # Discreet mode: the check-in cannot be forwarded or saved from her chat.
    return RenderedMessage(
        text=first + "\n\n" + text, buttons=buttons, protect_content=participant.discreet
    )


async def render_checkin(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders a due check-in: a neutral first line, then its first unanswered question."""
    return await _render(session, row, participant, reminder=False)


async def render_reminder(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders a reminder: a neutral first line, the open question and 'Remind me in 1 hour'."""
    return await _render(session, row, participant, reminder=True)


def register_outbox(services: Services) -> None:
    """Registers the check-in and reminder renderers with the outbox."""
    services.renderers["checkin"] = render_checkin
    services.renderers["reminder"] = render_reminder


# Typed text the fallback hands here: the note she was asked for, or an answer to the open
# question of her check-in (registered by the routing table in bot/app.py).
TEXT_ROUTES: dict[str, TextRoute] = {
    AwaitKind.note: on_note_text,
    "open_checkin": on_text_during_checkin,
}

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("checkin", on_checkin_command, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=checkins.CODEC.pattern),
]
