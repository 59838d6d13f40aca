"""The doctor-first path: /thinking_of_stopping, `df:` buttons, and safety replies to free text.

Rules live in `bot.doctor_first`; this module parses the update, calls them and renders the
reply. Buttons are compact and self-describing (`df:<step>:<alert id>:<path number>:<value>`),
checked against the person pressing, and a doubled press stores nothing twice: each answered
question loses its buttons, and every stored step is marked done on its alert row.

Callback data:
  df:start                          start the path (the button on the page about stopping)
  df:wk:<participant id>:<y|n>      "Are you thinking about stopping your medicine?"
  df:d:<alert>:<n>:<answer>         "Have you talked with your doctor about this?"
  df:c:<alert>:<n>:<change>         what changed (stopped / switched / finished)
  df:m:<alert>:<n>:<medicine>       which medicine she takes now (after a switch)
  df:w:<alert>:<n>:<change>:<medicine or ->:<when>   roughly when (records the change)
  df:b:<alert>:<n>:<barrier>        what makes it hard (records a barrier)
  df:k:<alert>                      "Ask the care team to contact me"
"""

from __future__ import annotations

import logging
import re

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import checkins, doctor_first, education, intent, lifecycle
from bot.content import Item, Messages
from bot.doctor_first import ADVISED, PRIVATE, SWITCHED
from bot.intent import Detection
from bot.models import Alert, AlertStatus, CheckIn, Participant
from bot.outbox import Buttons
from bot.services import Services
from handlers.common import BotContext, discreet, keyboard, msgs, participant_for
from handlers.lifecycle import CANCEL, LEAVE, PAUSE_MENU, button, emergency_for

log = logging.getLogger(__name__)

PREFIX = "df:"
START = education.DOCTOR_FIRST_CALLBACK
COMMAND = "thinking_of_stopping"
NO_MEDICINE = "-"
_DATA = re.compile(r"^df:([a-z]{1,5})((?::[a-z0-9_-]{1,24}){0,5})$")
# Telegram errors that only mean "already done" or "too late to matter".
_HARMLESS = ("not modified", "query is too old", "query id is invalid", "message to edit not")

# Pages offered with the explanation, and with a red flag.
TALK_PAGE, STOPPING_PAGE, WHEN_TO_CALL_PAGE = (
    "talking-with-doctor",
    "about-stopping",
    "when-to-call",
)
TIPS = ("joint_pain", "forgot", "cost", "worry")  # barriers with a short extra line

# What each trigger says first.
ACK_KEYS = {
    "checkin": "doctor_first.ack_stopped",
    "stop_menu": "doctor_first.ack_thinking",
    "command": "doctor_first.ack_thinking",
    "page": "doctor_first.ack_thinking",
    "free_text": "doctor_first.ack_text",
}
ANSWER_KEYS = {
    ADVISED: "doctor_first.btn_advised",
    doctor_first.NOT_YET: "doctor_first.btn_not_yet",
    PRIVATE: "doctor_first.btn_private",
}


# ---------------------------------------------------------------- views


def _cb(step: str, *parts: object) -> str:
    """Builds `df:` callback data (at most 64 bytes)."""
    data = ":".join([PREFIX + step, *(str(p) for p in parts)])
    if len(data.encode()) > 64:
        raise ValueError("callback data longer than 64 bytes")
    return data


def _unavailable(participant: Participant | None) -> str:
    """Returns why the path cannot record anything for this person."""
    if participant is not None and lifecycle.has_left(participant):
        return msgs(participant).get("doctor_first.left")
    return msgs(participant).get("doctor_first.not_joined")


def step_one(participant: Participant, alert: Alert, source: str) -> tuple[str, Buttons]:
    """Returns the thank-you and "Have you talked with your doctor about this?"."""
    m = msgs(participant)
    n = doctor_first.path_number(alert)
    text = m.get(ACK_KEYS.get(source, "doctor_first.ack_text")) + "\n\n"
    text += m.get("doctor_first.ask_doctor")
    rows: Buttons = [
        [(m.get(key), _cb("d", alert.id, n, answer))] for answer, key in ANSWER_KEYS.items()
    ]
    return text, rows


async def start_view(
    *,
    session: AsyncSession,
    participant: Participant | None,
    source: str,
    checkin_id: int | None = None,
) -> tuple[str, Buttons | None]:
    """Starts the path (one open alert row, updated on repeats) and returns its first step."""
    if participant is None or not doctor_first.may_record(participant):
        return _unavailable(participant), None
    alert = await doctor_first.start_path(
        session=session, participant=participant, source=source, checkin_id=checkin_id
    )
    log.info("doctor-first path: participant %s, source %s", participant.id, source)
    return step_one(participant, alert, source)


def _page_buttons(m: Messages, *page_ids: str) -> Buttons:
    """Returns one button per page, labelled with the page title."""
    rows: Buttons = []
    for page_id in page_ids:
        page = education.page(page_id, m.locale)
        if page is not None:
            rows.append([(page.title, education.page_callback(page.id))])
    return rows


def _explanation(m: Messages, answer: str) -> list[tuple[str, Buttons | None]]:
    """Returns why the choice belongs with her doctor, what to ask, and the barrier question."""
    text = m.get("doctor_first.why_doctor") + "\n\n" + m.get("doctor_first.ask_about")
    if answer == PRIVATE:
        text = m.get("doctor_first.private_ack") + "\n\n" + text
    return [(text, _page_buttons(m, TALK_PAGE, STOPPING_PAGE))]


def _barrier_question(m: Messages, alert: Alert, n: int) -> tuple[str, Buttons]:
    """Returns "What makes it hardest to keep taking it?" with one button per barrier."""
    rows: Buttons = [
        [(m.get(f"doctor_first.barrier_{code}"), _cb("b", alert.id, n, code))]
        for code in doctor_first.BARRIERS
    ]
    return m.get("doctor_first.ask_barrier"), rows


def _contact_step(m: Messages, alert: Alert, services: Services) -> tuple[str, Buttons | None]:
    """Offers contact when someone would receive the request; otherwise asks her to call."""
    if services.settings.receivers_configured():
        return m.get("doctor_first.contact_offer"), [
            [(m.get("doctor_first.btn_contact"), _cb("k", alert.id))]
        ]
    return m.get("doctor_first.call_team"), None


async def adherence_wording(
    *, session: AsyncSession, checkin: CheckIn, item: Item, m: Messages
) -> str | None:
    """Returns the tablet question's wording after an advised switch (None: the usual one)."""
    if item.code != doctor_first.ADHERENCE_ITEM:
        return None
    mode = await doctor_first.adherence_mode(
        session=session, participant_id=checkin.participant_id
    )
    return m.get("doctor_first.took_med_current") if mode == "current" else None


def emergency_text(participant: Participant | None, services: Services) -> str:
    """Returns the emergency reply with her own emergency number first."""
    m = msgs(participant)
    return m.get("doctor_first.emergency", emergency=emergency_for(participant, services))


# ---------------------------------------------------------------- Telegram calls


def _harmless(exc: BadRequest) -> bool:
    """Tells whether a BadRequest only means the call was already done or is too late."""
    return any(text in str(exc).lower() for text in _HARMLESS)


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """Answers a button press; a press too old to answer counts as answered."""
    try:
        await query.answer(text, show_alert=alert)
    except BadRequest as exc:
        if not _harmless(exc):
            raise


async def _close_question(query: CallbackQuery, m: Messages, label: str | None) -> bool:
    """Shows her answer under the question and removes its buttons.

    Returns False when the message already looked like that: a doubled press, do nothing.
    """
    message = query.message
    if not isinstance(message, Message):
        return True
    if message.reply_markup is None:
        return False  # its buttons are gone: an earlier press already answered it
    text = message.text or ""
    if label is not None:
        text += "\n\n" + m.get("doctor_first.your_answer", answer=label)
    try:
        await query.edit_message_text(text, reply_markup=None)
    except BadRequest as exc:
        if "not modified" in str(exc).lower():
            return False
        if not _harmless(exc):
            raise
    return True


async def _send(
    context: BotContext,
    chat_id: int,
    participant: Participant | None,
    messages: list[tuple[str, Buttons | None]],
) -> list[int]:
    """Sends messages in order (protected from forwarding in discreet mode); returns their ids."""
    protect = discreet(participant)
    sent = []
    for text, buttons in messages:
        message = await context.bot.send_message(
            chat_id, text, reply_markup=keyboard(buttons), protect_content=protect
        )
        sent.append(message.message_id)
    return sent


def _label_for(query: CallbackQuery) -> str | None:
    """Returns the label of the button she pressed, read from the pressed message."""
    message = query.message
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for key in row:
            if key.callback_data == query.data:
                return key.text
    return None


async def _resume_checkin(context: BotContext, chat_id: int, participant_id: int) -> None:
    """Re-shows the question her open check-in is waiting for, if any."""
    from handlers.checkin import question_view

    async with context.services.db.session() as session:
        participant = await session.get(Participant, participant_id)
        if participant is None or lifecycle.has_left(participant):
            return
        checkin = await checkins.open_checkin_for(session=session, participant=participant)
        item = await checkins.current_item(session=session, checkin=checkin) if checkin else None
        if checkin is None or item is None:
            return
        m = msgs(participant)
        text, buttons = await question_view(session=session, checkin=checkin, item=item, m=m)
        checkin_id = checkin.id
    text = m.get("doctor_first.back_to_checkin") + "\n\n" + text
    sent = await _send(context, chat_id, participant, [(text, buttons)])
    async with context.services.db.session() as session:
        row = await session.get(CheckIn, checkin_id)
        if row is not None:
            for message_id in sent:
                checkins.append_message_id(row, message_id)
            session.add(row)


# ---------------------------------------------------------------- /thinking_of_stopping


async def on_command(update: Update, context: BotContext) -> None:
    """Starts the doctor-first path from the /thinking_of_stopping command."""
    chat = update.effective_chat
    if chat is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        text, buttons = await start_view(
            session=session, participant=participant, source="command"
        )
    await _send(context, chat.id, participant, [(text, buttons)])


# ---------------------------------------------------------------- free text


async def respond_to_text(
    update: Update,
    context: BotContext,
    *,
    participant: Participant | None,
    detection: Detection,
) -> bool:
    """Answers an emergency, red flag, stop intent or unsubscribe request; False for none.

    Emergencies are answered for anybody; the rest only for someone who consented and has not
    left (nothing is stored for anybody else, and the usual reply follows instead).
    """
    chat = update.effective_chat
    if chat is None or detection.kind == "none":
        return False
    services = context.services
    if detection.kind == "emergency":
        await _send(context, chat.id, participant, [(emergency_text(participant, services), None)])
        return True
    if participant is None or not doctor_first.may_record(participant):
        return False
    m = msgs(participant)
    reply: tuple[str, Buttons | None]
    async with services.db.session() as session:
        fresh = await session.get(Participant, participant.id)
        if fresh is None:
            return False
        if detection.kind == "red_flag":
            await doctor_first.record_red_flag(
                session=session, participant=fresh, source="free_text", rules=detection.matched
            )
            text = m.get("doctor_first.red_flag", emergency=emergency_for(fresh, services))
            reply = (text, _page_buttons(m, WHEN_TO_CALL_PAGE))
        elif detection.kind == "stop_intent":
            reply = await start_view(session=session, participant=fresh, source="free_text")
        elif detection.kind == "stop_intent_weak":
            rows: Buttons = [
                [
                    (m.get("doctor_first.btn_yes"), _cb("wk", fresh.id, "y")),
                    (m.get("doctor_first.btn_no"), _cb("wk", fresh.id, "n")),
                ]
            ]
            reply = (m.get("doctor_first.weak_ask"), rows)
        else:  # unsubscribe: pause or leave, never read as stopping her medicine
            rows = [
                [(m.get("lifecycle.btn_pause"), button(PAUSE_MENU, fresh))],
                [(m.get("lifecycle.btn_leave"), button(LEAVE, fresh))],
                [(m.get("lifecycle.btn_cancel"), button(CANCEL, fresh))],
            ]
            reply = (m.get("doctor_first.unsubscribe"), rows)
    await _send(context, chat.id, participant, [reply])
    return True


def detect(text: str | None, participant: Participant | None) -> Detection:
    """Classifies her text in her locale and logs only the kind and the rule ids."""
    locale = participant.locale if participant else "en"
    detection = intent.detect(text or "", locale)
    if detection.kind != "none":
        log.info("free text signal %s (%s)", detection.kind, ",".join(detection.matched))
    return detection


# ---------------------------------------------------------------- buttons


async def on_button(update: Update, context: BotContext) -> None:
    """Acts on a `df:` button after checking who pressed it and whether it still applies."""
    query = update.callback_query
    chat = update.effective_chat
    if query is None or chat is None:
        return
    match = _DATA.match(query.data or "")
    step = match.group(1) if match else ""
    parts = match.group(2).split(":")[1:] if match else []
    services = context.services
    out: list[tuple[str, Buttons | None]] = []
    resume: int | None = None
    async with services.db.session() as session:
        participant = await participant_for(session, update)
        m = msgs(participant)
        if match is None:
            await _answer(query, m.get("doctor_first.stale"), alert=True)
            return
        if participant is None or not doctor_first.may_record(participant):
            await _answer(query)
            await _send(context, chat.id, participant, [(_unavailable(participant), None)])
            return
        if step == "start":
            await _answer(query)
            out.append(await start_view(session=session, participant=participant, source="page"))
        elif step == "wk":
            if len(parts) != 2 or parts[0] != str(participant.id):
                await _answer(query, m.get("doctor_first.not_yours"), alert=True)
                return
            await _answer(query)
            if not await _close_question(query, m, _label_for(query)):
                return
            if parts[1] == "y":
                out.append(
                    await start_view(session=session, participant=participant, source="free_text")
                )
            else:
                out.append((m.get("doctor_first.weak_no"), None))
                resume = participant.id
        else:
            alert = await _alert_for_press(session, query, participant, parts, m)
            if alert is None:
                return
            resume = await _path_step(
                session=session,
                query=query,
                participant=participant,
                alert=alert,
                step=step,
                parts=parts,
                m=m,
                services=services,
                out=out,
            )
    await _send(context, chat.id, participant, out)
    if resume is not None:
        await _resume_checkin(context, chat.id, resume)


async def _alert_for_press(
    session: AsyncSession,
    query: CallbackQuery,
    participant: Participant,
    parts: list[str],
    m: Messages,
) -> Alert | None:
    """Returns the alert a path button belongs to, answering the press when it does not fit."""
    alert_id = int(parts[0]) if parts and parts[0].isdigit() else None
    alert = await session.get(Alert, alert_id) if alert_id is not None else None
    if alert is not None and alert.participant_id != participant.id:
        await _answer(query, m.get("doctor_first.not_yours"), alert=True)
        return None
    mine = await doctor_first.path_alert(
        session=session, participant=participant, alert_id=alert_id or 0
    )
    if mine is None or mine.status == AlertStatus.closed:
        await _answer(query, m.get("doctor_first.stale"), alert=True)
        return None
    return mine


async def _path_step(
    *,
    session: AsyncSession,
    query: CallbackQuery,
    participant: Participant,
    alert: Alert,
    step: str,
    parts: list[str],
    m: Messages,
    services: Services,
    out: list[tuple[str, Buttons | None]],
) -> int | None:
    """Records one answer of the path and plans what comes next; returns whom to resume."""
    n = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    value = parts[2] if len(parts) > 2 else ""
    if step == "k":
        await _answer(query)
        if not await _close_question(query, m, None):
            return None
        if not services.settings.receivers_configured():
            out.append((m.get("doctor_first.call_team"), None))
            return None
        await doctor_first.request_contact(session=session, alert=alert)
        emergency = emergency_for(participant, services)
        when = services.settings.contact_expectation
        out.append((m.get("doctor_first.contact_requested", when=when, emergency=emergency), None))
        return None
    valid = {
        "d": doctor_first.DOCTOR_ANSWERS,
        "c": doctor_first.CHANGES,
        "m": doctor_first.MEDICINES,
        "w": doctor_first.WHEN,
        "b": doctor_first.BARRIERS,
    }
    if n < 1 or step not in valid or (value not in valid[step] and step != "w"):
        await _answer(query, m.get("doctor_first.stale"), alert=True)
        return None
    await _answer(query)
    if not await _close_question(query, m, _label_for(query)):
        return None  # a doubled press: the first one already went on
    if step == "d":
        await doctor_first.record_doctor_answer(session=session, alert=alert, answer=value)
        if value == ADVISED:
            rows: Buttons = [
                [(m.get(f"doctor_first.btn_change_{c}"), _cb("c", alert.id, n, c))]
                for c in doctor_first.CHANGES
            ]
            out.append((m.get("doctor_first.ask_change"), rows))
        else:
            out.extend(_explanation(m, value))
            out.append(_barrier_question(m, alert, n))
        return None
    if step == "c":
        if value == SWITCHED:
            rows = [
                [(m.get(f"doctor_first.medicine_{med}"), _cb("m", alert.id, n, med))]
                for med in doctor_first.MEDICINES
            ]
            out.append((m.get("doctor_first.ask_medicine"), rows))
        else:
            out.append(_when_question(m, alert, n, value, NO_MEDICINE))
        return None
    if step == "m":
        out.append(_when_question(m, alert, n, SWITCHED, value))
        return None
    if step == "w":
        return await _record_change(
            session=session, participant=participant, alert=alert, n=n, parts=parts, m=m, out=out
        )
    report = await doctor_first.record_barrier(
        session=session, participant=participant, alert=alert, path=n, code=value
    )
    if report is None:
        return None
    text = m.get("doctor_first.barrier_noted")
    if value in TIPS:
        text += " " + m.get(f"doctor_first.tip_{value}")
    contact, buttons = _contact_step(m, alert, services)
    out.append((text + "\n\n" + contact, buttons))
    return participant.id


def _when_question(
    m: Messages, alert: Alert, n: int, change: str, medicine: str
) -> tuple[str, Buttons]:
    """Returns "Roughly when did this change?" carrying what changed in its buttons."""
    rows: Buttons = [
        [(m.get(f"doctor_first.when_{w}"), _cb("w", alert.id, n, change, medicine, w))]
        for w in doctor_first.WHEN
    ]
    return m.get("doctor_first.ask_when"), rows


async def _record_change(
    *,
    session: AsyncSession,
    participant: Participant,
    alert: Alert,
    n: int,
    parts: list[str],
    m: Messages,
    out: list[tuple[str, Buttons | None]],
) -> int | None:
    """Records the change her doctor advised and says what her check-in asks from now on."""
    if len(parts) != 5:
        return None
    change, medicine, when = parts[2], parts[3], parts[4]
    if change not in doctor_first.CHANGES or when not in doctor_first.WHEN:
        return None
    if change == SWITCHED and medicine not in doctor_first.MEDICINES:
        return None
    recorded = await doctor_first.record_change(
        session=session,
        participant=participant,
        alert=alert,
        path=n,
        kind=change,
        medicine=medicine if change == SWITCHED else None,
        when=when,
    )
    if recorded is None:
        return None
    follow = "doctor_first.next_current" if change == SWITCHED else "doctor_first.next_none"
    out.append((m.get("doctor_first.change_noted") + "\n\n" + m.get(follow), None))
    return participant.id


PRIVATE_CHAT = filters.ChatType.PRIVATE

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler(COMMAND, on_command, filters=PRIVATE_CHAT),
    CallbackQueryHandler(on_button, pattern=f"^{PREFIX}"),
]
