"""Her pictures and papers: /mytrend, /doctorcard, /myquestions and /discreet.

`/mytrend` sends a PNG of her last 30 or 90 days with a one-line summary (`tr:30` / `tr:90`
switch); `/doctorcard` (and the `dc:send` button other flows offer) sends her one-page visit
card as a PDF document, so Telegram does not recompress it; `/myquestions` keeps the questions
she wants to ask (`mq:` buttons; typed text while she is adding one, routed here by the
fallback); `/discreet` (`dz:` buttons) makes her sensitive messages protected from forwarding
and saving. Data is loaded in the turn's transaction; drawing happens after commit, in a
worker thread, so neither the event loop nor the database waits for matplotlib.
"""

from __future__ import annotations

import functools

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import checkins
from bot import participants as pt
from bot.awaiting import Awaiting, AwaitKind, awaiting, set_awaiting, stop_awaiting
from bot.callbacks import Codec, choice, id_part
from bot.charts import PERIODS, Trend, load_trend, summary_sentence, tablet_sentence
from bot.clock import now
from bot.content import Messages
from bot.doctor_card import load_card, render_card_pdf, saved_questions
from bot.models import Participant, SavedQuestion
from bot.outbox import Buttons
from handlers.common import BotContext
from handlers.ui import Screen, TextRoute, Turn, turn
from handlers.views.checkin import open_question

TREND = Codec("tr", (choice("days", *(str(p) for p in PERIODS)),))
CARD = Codec(
    "dc:send"
)  # offered by the doctor-first path and the "raise it with your doctor" offer
QUESTIONS = Codec("mq", (choice("op", "add", "done", "cancel", "del"), id_part("question")), 1)
DISCREET = Codec("dz", (choice("op", "on", "off"),))
ADDING = Awaiting(AwaitKind.question, "add")
MAX_QUESTIONS = 20
MAX_QUESTION_CHARS = 500
DELETE_BUTTONS_PER_ROW = 3


# ---------------------------------------------------------------- shared


def blocked_key(participant: Participant | None) -> str | None:
    """Returns the message key that tells her why not yet (or no more), or None if she may."""
    if participant is not None and participant.has_left:
        return "pictures.left"
    if participant is None or not pt.is_onboarded(participant):
        return "pictures.not_ready"
    return None


def _presser(t: Turn) -> Participant | None:
    """Returns the presser's participant if the pressed message is in her own chat."""
    participant = t.participant
    if participant is None or (t.chat_id is not None and t.chat_id != participant.chat_id):
        return None
    return participant


def _press_blocked(t: Turn) -> str | None:
    """Returns why a button does nothing for this presser (a stranger's press: a stale button)."""
    participant = _presser(t)
    return "pictures.stale_button" if participant is None else blocked_key(participant)


# ---------------------------------------------------------------- /mytrend


def _draw_trend(trend: Trend, m: Messages) -> bytes:
    """Draws the trend picture (imports matplotlib on first use, not at start-up)."""
    from bot.images import render_trend_png

    return render_trend_png(trend, m)


def trend_buttons(m: Messages, days: int) -> Buttons:
    """Returns the switch to the other period and the visit-card button."""
    other = next(p for p in PERIODS if p != days)
    return [
        [(m.get(f"pictures.btn_show_{other}"), TREND.build(other))],
        [(m.get("pictures.btn_card"), CARD.build())],
    ]


async def _trend(t: Turn, participant: Participant, days: int) -> Screen:
    """Loads her last `days` days; the picture is drawn after commit."""
    m = t.m
    trend, summary = await load_trend(
        session=t.session,
        participant=participant,
        days=days,
        default_zone=t.settings.default_timezone,
    )
    caption = "\n\n".join(
        line for line in (summary_sentence(summary, m), tablet_sentence(summary, m)) if line
    )
    draw = functools.partial(_draw_trend, trend, m)
    return Screen(caption, trend_buttons(m, days), photo=draw)


@turn
async def on_mytrend(t: Turn) -> None:
    """Sends her 30-day picture with a one-line summary and a switch to 90 days."""
    key = blocked_key(t.participant)
    if key is not None or t.participant is None:
        t.reply.say(t.m.get(key or "pictures.not_ready"))
        return
    t.reply.show(await _trend(t, t.participant, PERIODS[0]))


@turn
async def on_trend_press(t: Turn) -> None:
    """Sends the picture for the period she switched to and takes the switch off the old one."""
    parsed = TREND.parse(t.data)
    key = _press_blocked(t)
    participant = _presser(t)
    if parsed is None or participant is None or key is not None:
        t.reply.toast = t.m.get(key or "pictures.stale_button")
        return
    t.reply.drop_buttons = True
    t.reply.show(await _trend(t, participant, int(parsed[0])))


# ---------------------------------------------------------------- /doctorcard


async def _card(t: Turn, participant: Participant) -> Screen:
    """Loads her one-page visit card; the PDF is drawn after commit."""
    m = t.m
    data = await load_card(
        session=t.session, participant=participant, default_zone=t.settings.default_timezone
    )
    return Screen(
        m.get("pictures.card_caption"),
        document=functools.partial(render_card_pdf, data, m),
        filename=m.get("pictures.card_file_name"),
    )


@turn
async def on_doctorcard(t: Turn) -> None:
    """Sends her visit card as a PDF."""
    key = blocked_key(t.participant)
    if key is not None or t.participant is None:
        t.reply.say(t.m.get(key or "pictures.not_ready"))
        return
    t.reply.show(await _card(t, t.participant))


@turn
async def on_card_press(t: Turn) -> None:
    """Sends her visit card when she taps a 'page for my doctor' button in any flow."""
    key = _press_blocked(t)
    participant = _presser(t)
    if participant is None or key is not None:
        t.reply.toast = t.m.get(key or "pictures.stale_button")
        return
    t.reply.show(await _card(t, participant))


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
        rows.append([(m.get("pictures.btn_add"), QUESTIONS.build("add"))])
    deletes = [
        (m.get("pictures.btn_delete", number=n), QUESTIONS.build("del", q.id))
        for n, q in enumerate(questions, start=1)
    ]
    for start in range(0, len(deletes), DELETE_BUTTONS_PER_ROW):
        rows.append(deletes[start : start + DELETE_BUTTONS_PER_ROW])
    rows.append([(m.get("pictures.btn_done"), QUESTIONS.build("done"))])
    return "\n".join(lines), rows


@turn
async def on_myquestions(t: Turn) -> None:
    """Lists her saved questions with buttons to add and delete."""
    participant = t.participant
    key = blocked_key(participant)
    if participant is None or key is not None:
        t.reply.say(t.m.get(key or "pictures.not_ready"))
        return
    stop_awaiting(participant, AwaitKind.question)
    questions = await saved_questions(session=t.session, participant=participant)
    t.reply.say(*questions_view(t.m, questions))


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


@turn
async def on_questions_press(t: Turn) -> None:
    """Handles Add, Delete <n>, Done and Cancel on her question list."""
    reply, m = t.reply, t.m
    parsed = QUESTIONS.parse(t.data)
    key = _press_blocked(t)
    participant = _presser(t)
    if participant is None or key is not None or parsed is None:
        reply.toast = m.get(key or "pictures.stale_button")
        return
    op = parsed[0]
    if op == "add" and len(parsed) == 1:
        if await _count_questions(t.session, participant) >= MAX_QUESTIONS:
            reply.say(m.get("pictures.questions_full", max=MAX_QUESTIONS))
            return
        set_awaiting(participant, ADDING)
        cancel = [[(m.get("pictures.btn_cancel"), QUESTIONS.build("cancel"))]]
        reply.say(m.get("pictures.questions_prompt"), cancel)
    elif op in ("done", "cancel") and len(parsed) == 1:
        stop_awaiting(participant, AwaitKind.question)
        closing = "pictures.questions_closed" if op == "done" else "pictures.questions_cancelled"
        reply.replace(m.get(closing))
    elif op == "del" and len(parsed) == 2:
        question = await t.session.get(SavedQuestion, parsed[1])
        if question is None or question.participant_id != participant.id:
            # Neutral on purpose: say nothing about whose question it is.
            reply.toast = m.get("pictures.stale_button")
            return
        if question.deleted_at is not None:
            reply.toast = m.get("pictures.questions_gone")
        else:
            # Her words go at once; the row only keeps that a question was deleted.
            question.deleted_at = now()
            question.text = ""
            t.session.add(question)
            reply.toast = m.get("pictures.questions_deleted")
        await t.session.flush()
        questions = await saved_questions(session=t.session, participant=participant)
        reply.replace(*questions_view(m, questions))
    else:
        reply.toast = m.get("pictures.stale_button")


async def on_question_text(t: Turn) -> bool:
    """Saves the question she typed after tapping Add, then shows her list.

    Returns False when the text is really a score for her open check-in's question (a
    check-in arrived while she was adding a question), so the fallback hands it on.
    """
    participant = t.participant
    if participant is None:
        return False
    m, reply = t.m, t.reply
    text = " ".join(t.text.split())
    key = blocked_key(participant)
    if key is not None or awaiting(participant) != ADDING:
        stop_awaiting(participant, AwaitKind.question)
        reply.say(m.get(key or "pictures.questions_cancelled"))
        return True
    found = await open_question(t.session, participant)
    if found is not None:
        _, item = found
        if item.type == "scale" and checkins.parse_scale_text(text, item) is not None:
            stop_awaiting(participant, AwaitKind.question)
            return False
    if not text:
        reply.say(m.get("pictures.questions_prompt"))
    elif len(text) > MAX_QUESTION_CHARS:
        reply.say(m.get("pictures.questions_too_long", max=MAX_QUESTION_CHARS))
    elif await _count_questions(t.session, participant) >= MAX_QUESTIONS:
        stop_awaiting(participant, AwaitKind.question)
        reply.say(m.get("pictures.questions_full", max=MAX_QUESTIONS))
    else:
        stop_awaiting(participant, AwaitKind.question)
        t.session.add(SavedQuestion(participant_id=participant.id or 0, text=text))
        await t.session.flush()
        # A worrying symptom typed here still gets its safety reply: the fallback checks
        # every text first and answers red flags after the question is saved.
        reply.say(m.get("pictures.questions_saved"))
        reply.say(
            *questions_view(m, await saved_questions(session=t.session, participant=participant))
        )
    return True


# ---------------------------------------------------------------- /discreet


def discreet_view(m: Messages, on: bool) -> tuple[str, Buttons]:
    """Returns whether discreet mode is on, with the button that flips it."""
    if on:
        return m.get("pictures.discreet_is_on"), [
            [(m.get("pictures.btn_discreet_off"), DISCREET.build("off"))]
        ]
    return m.get("pictures.discreet_is_off"), [
        [(m.get("pictures.btn_discreet_on"), DISCREET.build("on"))]
    ]


@turn
async def on_discreet(t: Turn) -> None:
    """Says whether discreet mode is on and offers to switch it."""
    key = blocked_key(t.participant)
    if key is not None or t.participant is None:
        t.reply.say(t.m.get(key or "pictures.not_ready"))
        return
    t.reply.say(*discreet_view(t.m, t.participant.discreet))


@turn
async def on_discreet_press(t: Turn) -> None:
    """Turns discreet mode on or off (the button says which, so a repeat changes nothing)."""
    parsed = DISCREET.parse(t.data)
    key = _press_blocked(t)
    participant = _presser(t)
    m = t.m
    if participant is None or key is not None or parsed is None:
        t.reply.toast = m.get(key or "pictures.stale_button")
        return
    on = parsed[0] == "on"
    participant.discreet = on
    t.session.add(participant)
    done = m.get("pictures.discreet_now_on" if on else "pictures.discreet_now_off")
    text, buttons = discreet_view(m, on)
    t.reply.toast = done
    t.reply.replace(done + "\n\n" + text, buttons)


# Typed text the fallback hands here while she is adding a question.
TEXT_ROUTES: dict[str, TextRoute] = {AwaitKind.question: on_question_text}

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("mytrend", on_mytrend, filters=filters.ChatType.PRIVATE),
    CommandHandler("doctorcard", on_doctorcard, filters=filters.ChatType.PRIVATE),
    CommandHandler("myquestions", on_myquestions, filters=filters.ChatType.PRIVATE),
    CommandHandler("discreet", on_discreet, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_trend_press, pattern=TREND.pattern),
    CallbackQueryHandler(on_card_press, pattern=CARD.pattern),
    CallbackQueryHandler(on_questions_press, pattern=QUESTIONS.pattern),
    CallbackQueryHandler(on_discreet_press, pattern=DISCREET.pattern),
]
