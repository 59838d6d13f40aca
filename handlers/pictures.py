"""Her pictures and papers: /mytrend, /doctorcard, /myquestions and /discreet.

`/mytrend` sends a PNG of her last 30 or 90 days with a one-line summary (`tr:30` / `tr:90`
switch); `/doctorcard` (and the `dc:send` button other flows offer) sends her one-page visit
card as a PDF document, so Telegram does not recompress it; `/myquestions` keeps the questions
she wants to ask (`mq:` buttons; typed text while `Participant.awaiting == "q:add"`, routed
here by handlers/fallback.py); `/discreet` (`dz:` buttons) makes her sensitive messages
protected from forwarding and saving. Drawing runs in a worker thread: the event loop never
waits for matplotlib.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import CallbackQuery, Update
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import checkins
from bot import participants as pt
from bot.charts import PERIODS, load_trend, summary_sentence, tablet_sentence
from bot.clock import now
from bot.content import Messages
from bot.doctor_card import load_card, render_card_pdf, saved_questions
from bot.images import render_trend_png
from bot.models import Participant, SavedQuestion
from bot.outbox import Buttons
from handlers.checkin import safe_answer, safe_edit
from handlers.common import BotContext, discreet, keyboard, msgs, participant_for

log = logging.getLogger(__name__)

TREND_PREFIX = "tr:"
CARD_SEND = "dc:send"  # offered by the doctor-first path and the "raise it with your doctor" offer
QUESTIONS_PREFIX = "mq:"
DISCREET_PREFIX = "dz:"
AWAITING_PREFIX = "q:"
AWAITING_ADD = "q:add"
MAX_QUESTIONS = 20
MAX_QUESTION_CHARS = 500
DELETE_BUTTONS_PER_ROW = 3


# ---------------------------------------------------------------- shared


def blocked_key(participant: Participant | None) -> str | None:
    """Returns the message key that tells her why not yet (or no more), or None if she may."""
    if participant is not None and pt.has_left(participant):
        return "pictures.left"
    if participant is None or not pt.is_onboarded(participant):
        return "pictures.not_ready"
    return None


def press_blocked_key(participant: Participant | None) -> str | None:
    """Returns why a button does nothing for this presser (a stranger's press: a stale button)."""
    return "pictures.stale_button" if participant is None else blocked_key(participant)


async def say(
    context: BotContext,
    chat_id: int,
    text: str,
    buttons: Buttons | None = None,
    *,
    protect: bool = False,
) -> None:
    """Sends one text message, protected from forwarding when she chose discreet mode."""
    await context.bot.send_message(
        chat_id, text, reply_markup=keyboard(buttons), protect_content=protect
    )


async def drop_buttons(query: CallbackQuery) -> None:
    """Removes the buttons from the pressed message; a repeat or an old message is harmless."""
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except BadRequest as exc:
        log.info("could not remove buttons: %s", type(exc).__name__)


async def _presser(
    session: AsyncSession, update: Update, query: CallbackQuery
) -> Participant | None:
    """Returns the presser's participant if the pressed message is in her own chat."""
    participant = await participant_for(session, update)
    chat = update.effective_chat
    if participant is None or (chat is not None and chat.id != participant.chat_id):
        return None
    return participant


# ---------------------------------------------------------------- /mytrend


def trend_buttons(m: Messages, days: int) -> Buttons:
    """Returns the switch to the other period and the visit-card button."""
    other = next(p for p in PERIODS if p != days)
    return [
        [(m.get(f"pictures.btn_show_{other}"), f"{TREND_PREFIX}{other}")],
        [(m.get("pictures.btn_card"), CARD_SEND)],
    ]


async def send_trend(
    context: BotContext, chat_id: int, participant: Participant, days: int
) -> None:
    """Draws her last `days` days and sends the picture with its summary as the caption."""
    m = msgs(participant)
    async with context.services.db.session() as session:
        trend, summary = await load_trend(
            session=session,
            participant=participant,
            days=days,
            default_zone=context.services.settings.default_timezone,
        )
    png = await asyncio.to_thread(render_trend_png, trend, m)
    caption = "\n\n".join(
        line for line in (summary_sentence(summary, m), tablet_sentence(summary, m)) if line
    )
    await context.bot.send_photo(
        chat_id,
        photo=png,
        caption=caption,
        reply_markup=keyboard(trend_buttons(m, days)),
        protect_content=participant.discreet,
    )


async def on_mytrend(update: Update, context: BotContext) -> None:
    """Sends her 30-day picture with a one-line summary and a switch to 90 days."""
    chat = update.effective_chat
    if chat is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    key = blocked_key(participant)
    if key is not None or participant is None:
        await say(context, chat.id, msgs(participant).get(key or "pictures.not_ready"))
        return
    await send_trend(context, chat.id, participant, PERIODS[0])


async def on_trend_press(update: Update, context: BotContext) -> None:
    """Sends the picture for the period she switched to and takes the switch off the old one."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or chat is None:
        return
    raw = (query.data or "").removeprefix(TREND_PREFIX)
    days = int(raw) if raw.isdigit() else 0
    async with context.services.db.session() as session:
        participant = await _presser(session, update, query)
    key = press_blocked_key(participant)
    if days not in PERIODS or participant is None or key is not None:
        await safe_answer(query, msgs(participant).get(key or "pictures.stale_button"))
        return
    await safe_answer(query)
    await drop_buttons(query)
    await send_trend(context, chat.id, participant, days)


# ---------------------------------------------------------------- /doctorcard


async def send_card(context: BotContext, chat_id: int, participant: Participant) -> None:
    """Builds her one-page visit card and sends it as a PDF document."""
    m = msgs(participant)
    async with context.services.db.session() as session:
        data = await load_card(
            session=session,
            participant=participant,
            default_zone=context.services.settings.default_timezone,
        )
    pdf = await asyncio.to_thread(render_card_pdf, data, m)
    await context.bot.send_document(
        chat_id,
        document=pdf,
        filename=m.get("pictures.card_file_name"),
        caption=m.get("pictures.card_caption"),
        protect_content=participant.discreet,
    )


async def on_doctorcard(update: Update, context: BotContext) -> None:
    """Sends her visit card as a PDF."""
    chat = update.effective_chat
    if chat is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    key = blocked_key(participant)
    if key is not None or participant is None:
        await say(context, chat.id, msgs(participant).get(key or "pictures.not_ready"))
        return
    await send_card(context, chat.id, participant)


async def on_card_press(update: Update, context: BotContext) -> None:
    """Sends her visit card when she taps a 'page for my doctor' button in any flow."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or chat is None:
        return
    async with context.services.db.session() as session:
        participant = await _presser(session, update, query)
    key = press_blocked_key(participant)
    if participant is None or key is not None:
        await safe_answer(query, msgs(participant).get(key or "pictures.stale_button"))
        return
    await safe_answer(query)
    await send_card(context, chat.id, participant)


# ---------------------------------------------------------------- /myquestions


def questions_view(m: Messages, questions: list[SavedQuestion]) -> tuple[str, Buttons]:
    """Returns her numbered questions with Add, one Delete per question, and Done."""
    lines = [m.get("pictures.questions_intro"), ""]
    if questions:
        lines += [
            m.get("pictures.questions_line", number=n, text=q.text)
            for n, q in enumerate(questions, start=1)
        ]
    else:
        lines.append(m.get("pictures.questions_empty"))
    rows: Buttons = []
    if len(questions) < MAX_QUESTIONS:
        rows.append([(m.get("pictures.btn_add"), f"{QUESTIONS_PREFIX}add")])
    deletes = [
        (m.get("pictures.btn_delete", number=n), f"{QUESTIONS_PREFIX}del:{q.id}")
        for n, q in enumerate(questions, start=1)
    ]
    for start in range(0, len(deletes), DELETE_BUTTONS_PER_ROW):
        rows.append(deletes[start : start + DELETE_BUTTONS_PER_ROW])
    rows.append([(m.get("pictures.btn_done"), f"{QUESTIONS_PREFIX}done")])
    return "\n".join(lines), rows


def _stop_typing(participant: Participant) -> None:
    """Forgets that her next text would be a question."""
    if (participant.awaiting or "").startswith(AWAITING_PREFIX):
        participant.awaiting = None


async def on_myquestions(update: Update, context: BotContext) -> None:
    """Lists her saved questions with buttons to add and delete."""
    chat = update.effective_chat
    if chat is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        key = blocked_key(participant)
        if participant is None or key is not None:
            view: tuple[str, Buttons | None] = (
                msgs(participant).get(key or "pictures.not_ready"),
                None,
            )
        else:
            _stop_typing(participant)
            session.add(participant)
            view = questions_view(
                msgs(participant), await saved_questions(session=session, participant=participant)
            )
    await say(context, chat.id, *view, protect=discreet(participant))


async def _count_questions(session: AsyncSession, participant: Participant) -> int:
    """Returns how many questions she has saved and not deleted."""
    result = await session.exec(
        select(func.count())
        .select_from(SavedQuestion)
        .where(
            SavedQuestion.participant_id == participant.id,
            col(SavedQuestion.deleted_at).is_(None),
        )
    )
    return int(result.one())


async def on_questions_press(update: Update, context: BotContext) -> None:
    """Handles Add, Delete <n>, Done and Cancel on her question list."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or chat is None:
        return
    op = (query.data or "").removeprefix(QUESTIONS_PREFIX)
    toast: str | None = None
    edit: tuple[str, Buttons | None] | None = None
    send: tuple[str, Buttons | None] | None = None
    async with context.services.db.session() as session:
        participant = await _presser(session, update, query)
        key = press_blocked_key(participant)
        m = msgs(participant)
        if participant is None or key is not None:
            toast = m.get(key or "pictures.stale_button")
        elif op == "add":
            if await _count_questions(session, participant) >= MAX_QUESTIONS:
                send = (m.get("pictures.questions_full", max=MAX_QUESTIONS), None)
            else:
                participant.awaiting = AWAITING_ADD
                session.add(participant)
                cancel = [[(m.get("pictures.btn_cancel"), f"{QUESTIONS_PREFIX}cancel")]]
                send = (m.get("pictures.questions_prompt"), cancel)
        elif op in ("done", "cancel"):
            _stop_typing(participant)
            session.add(participant)
            closing = (
                "pictures.questions_closed" if op == "done" else "pictures.questions_cancelled"
            )
            edit = (m.get(closing), None)
        elif op.startswith("del:") and op[4:].isdigit():
            question = await session.get(SavedQuestion, int(op[4:]))
            if question is None or question.participant_id != participant.id:
                # Neutral on purpose: say nothing about whose question it is.
                toast = m.get("pictures.stale_button")
            else:
                if question.deleted_at is not None:
                    toast = m.get("pictures.questions_gone")
                else:
                    # Her words go at once; the row only keeps that a question was deleted.
                    question.deleted_at = now()
                    question.text = ""
                    session.add(question)
                    toast = m.get("pictures.questions_deleted")
                await session.flush()
                edit = questions_view(
                    m, await saved_questions(session=session, participant=participant)
                )
        else:
            toast = m.get("pictures.stale_button")
    await safe_answer(query, toast)
    if edit is not None:
        await safe_edit(query, *edit)
    if send is not None and participant is not None:
        await say(context, chat.id, *send, protect=participant.discreet)


async def _typed_checkin_score(session: AsyncSession, participant: Participant, text: str) -> bool:
    """Tells whether the text is a score for the scale question of her open check-in."""
    checkin = await checkins.open_checkin_for(session=session, participant=participant)
    if checkin is None:
        return False
    item = await checkins.current_item(session=session, checkin=checkin)
    return (
        item is not None
        and item.type == "scale"
        and checkins.parse_scale_text(text, item) is not None
    )


async def on_question_text(update: Update, context: BotContext) -> None:
    """Saves the question she typed after tapping Add, then shows her list."""
    message = update.effective_message
    chat = update.effective_chat
    if message is None or chat is None:
        return
    text = " ".join((message.text or "").split())
    replies: list[tuple[str, Buttons | None]] = []
    to_checkin = False
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None:
            return
        m = msgs(participant)
        key = blocked_key(participant)
        if key is not None or participant.awaiting != AWAITING_ADD:
            _stop_typing(participant)
            replies.append((m.get(key or "pictures.questions_cancelled"), None))
        elif await _typed_checkin_score(session, participant, text):
            # A check-in arrived while she was adding a question and she typed its score:
            # that number is an answer, not a question.
            _stop_typing(participant)
            to_checkin = True
        elif not text:
            replies.append((m.get("pictures.questions_prompt"), None))
        elif len(text) > MAX_QUESTION_CHARS:
            replies.append((m.get("pictures.questions_too_long", max=MAX_QUESTION_CHARS), None))
        elif await _count_questions(session, participant) >= MAX_QUESTIONS:
            _stop_typing(participant)
            replies.append((m.get("pictures.questions_full", max=MAX_QUESTIONS), None))
        else:
            _stop_typing(participant)
            session.add(SavedQuestion(participant_id=participant.id or 0, text=text))
            await session.flush()
            # A worrying symptom typed here still gets its safety reply: handlers/fallback.py
            # checks every text first and answers red flags after the question is saved.
            replies.append((m.get("pictures.questions_saved"), None))
            replies.append(
                questions_view(m, await saved_questions(session=session, participant=participant))
            )
        session.add(participant)
    if to_checkin:
        from handlers import checkin

        await checkin.on_text_during_checkin(update, context)
        return
    for reply_text, buttons in replies:
        await say(context, chat.id, reply_text, buttons, protect=participant.discreet)


# ---------------------------------------------------------------- /discreet


def discreet_view(m: Messages, on: bool) -> tuple[str, Buttons]:
    """Returns whether discreet mode is on, with the button that flips it."""
    if on:
        return m.get("pictures.discreet_is_on"), [
            [(m.get("pictures.btn_discreet_off"), f"{DISCREET_PREFIX}off")]
        ]
    return m.get("pictures.discreet_is_off"), [
        [(m.get("pictures.btn_discreet_on"), f"{DISCREET_PREFIX}on")]
    ]


async def on_discreet(update: Update, context: BotContext) -> None:
    """Says whether discreet mode is on and offers to switch it."""
    chat = update.effective_chat
    if chat is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    key = blocked_key(participant)
    if key is not None or participant is None:
        await say(context, chat.id, msgs(participant).get(key or "pictures.not_ready"))
        return
    await say(context, chat.id, *discreet_view(msgs(participant), participant.discreet))


async def on_discreet_press(update: Update, context: BotContext) -> None:
    """Turns discreet mode on or off (the button says which, so a repeat changes nothing)."""
    query = update.callback_query
    if query is None:
        return
    op = (query.data or "").removeprefix(DISCREET_PREFIX)
    async with context.services.db.session() as session:
        participant = await _presser(session, update, query)
        key = press_blocked_key(participant)
        m = msgs(participant)
        if participant is None or key is not None or op not in ("on", "off"):
            await safe_answer(query, m.get(key or "pictures.stale_button"))
            return
        participant.discreet = op == "on"
        session.add(participant)
    done = m.get("pictures.discreet_now_on" if op == "on" else "pictures.discreet_now_off")
    text, buttons = discreet_view(m, op == "on")
    await safe_answer(query, done)
    await safe_edit(query, done + "\n\n" + text, buttons)


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("mytrend", on_mytrend, filters=filters.ChatType.PRIVATE),
    CommandHandler("doctorcard", on_doctorcard, filters=filters.ChatType.PRIVATE),
    CommandHandler("myquestions", on_myquestions, filters=filters.ChatType.PRIVATE),
    CommandHandler("discreet", on_discreet, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_trend_press, pattern=r"^tr:\d+$"),
    CallbackQueryHandler(on_card_press, pattern=r"^dc:send$"),
    CallbackQueryHandler(on_questions_press, pattern=r"^mq:"),
    CallbackQueryHandler(on_discreet_press, pattern=r"^dz:"),
]
