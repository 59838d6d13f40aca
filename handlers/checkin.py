"""The check-in flow: /checkin, one-tap answers (`ci:` buttons), typed scores and notes.

Rules live in `bot.checkins`; this module parses the update, calls them and renders the reply.
Every press is checked against the person pressing and derived from stored answers, so a
doubled or late press changes nothing it should not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import CallbackQuery, Update
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import checkins
from bot.checkins import AnswerResult
from bot.content import Item, Messages, consent_text
from bot.db import Database
from bot.models import CheckIn, Lifecycle, OutgoingMessage, Participant
from bot.outbox import Buttons, RenderedMessage
from bot.services import Services
from handlers import doctor_first, offers
from handlers.common import BotContext, discreet, keyboard, msgs, participant_for

log = logging.getLogger(__name__)

CALLBACK_PATTERN = r"^ci:"
STOPPED = ("took_med", "stopped")  # the answer that gets the doctor-first message
NOTE_AWAITING = "note:"
# Telegram errors that only mean "already done" or "too late to matter": count as success.
HARMLESS_ERRORS = (
    "message is not modified",
    "query is too old",
    "query id is invalid",
    "message to edit not found",
    "message can't be edited",
)


# ---------------------------------------------------------------- rendering


def answer_label(item: Item, value: str, m: Messages) -> str:
    """Returns an answer in plain words (option labels, 'n out of 10', note added or not)."""
    if item.type == "scale":
        return m.get("checkin.scale_answer", value=value, max=item.scale_max)
    if item.type == "text":
        return m.get("checkin.note_added") if value else m.get("checkin.note_skipped")
    labels = []
    for v in checkins.split_values(value):
        option = item.option(v)
        labels.append(option.text(m.locale) if option else v)
    return ", ".join(labels)


def question_text(
    item: Item, m: Messages, *, answer: str | None = None, wording: str | None = None
) -> str:
    """Returns the question wording, its scale anchors and, once answered, her answer."""
    parts = [wording or item.text(m.locale)]
    anchors = item.anchors.get(m.locale) or item.anchors.get("en")
    if item.type == "scale" and anchors:
        parts.append(anchors)
    text = "\n".join(parts)
    if answer is not None:
        text += "\n\n" + m.get("checkin.your_answer", answer=answer_label(item, answer, m))
    return text


def item_buttons(checkin_id: int, item: Item, m: Messages, chosen: tuple[str, ...]) -> Buttons:
    """Returns the item's buttons, marking what she chose with a tick."""

    def label(text: str, value: str) -> str:
        """Returns the label, ticked when she chose this value."""
        return m.get("checkin.chosen", label=text) if value in chosen else text

    def data(value: str) -> str:
        """Returns the callback data for one value of this item."""
        return checkins.callback_data(checkin_id, item.code, value)

    if item.type == "scale":
        values = item.values()
        middle = (len(values) + 1) // 2  # 0-5 on the first row, 6-10 on the second
        return [
            [(label(v, v), data(v)) for v in row] for row in (values[:middle], values[middle:])
        ]
    if item.type == "multi":
        rows: Buttons = []
        for option in item.options:
            value = option.value
            if value not in item.exclusive:
                value = (checkins.UNTICK if value in chosen else checkins.TICK) + value
            rows.append([(label(option.text(m.locale), option.value), data(value))])
        rows.append([(m.get("checkin.button_done"), data(checkins.DONE))])
        return rows
    if item.type == "text":
        skipped = chosen == (checkins.SKIPPED_VALUE,)
        text = m.get("checkin.button_skip")
        return [[(m.get("checkin.chosen", label=text) if skipped else text, data(checkins.SKIP))]]
    return [[(label(o.text(m.locale), o.value), data(o.value))] for o in item.options]


async def question_view(
    *, session: AsyncSession, checkin: CheckIn, item: Item, m: Messages
) -> tuple[str, Buttons]:
    """Returns the question as she should see it now: wording, her answer, ticked buttons."""
    rows = await checkins.load_answers(session=session, checkin=checkin)
    answer = rows.get(item.code)
    if item.type == "multi":
        chosen = await checkins.selection(session=session, checkin=checkin, item=item)
    elif answer is not None:
        chosen = (answer.value,) if item.type == "text" else checkins.split_values(answer.value)
    else:
        chosen = ()
    has_draft = item.code + checkins.DRAFT_SUFFIX in rows
    shown = answer.value if answer is not None and not has_draft else None
    # After a switch her doctor advised, the tablet question is about her current medicine.
    wording = await doctor_first.adherence_wording(
        session=session, checkin=checkin, item=item, m=m
    )
    text = question_text(item, m, answer=shown, wording=wording)
    return text, item_buttons(checkin.id or 0, item, m, chosen)


async def summary_text(*, session: AsyncSession, checkin: CheckIn, m: Messages) -> str:
    """Returns the closing summary: her answers in plain words."""
    lines = await checkins.summary(session=session, checkin=checkin)
    out = [m.get("checkin.summary_title")]
    something_new = False
    for line in lines:
        label = line.item.summary_label.get(m.locale) or line.item.summary_label.get("en")
        answer = answer_label(line.item, line.value, m)
        out.append(m.get("checkin.summary_line", label=label or line.item.code, answer=answer))
        if line.item.type == "multi" and any(v not in line.item.exclusive for v in line.values):
            something_new = True
    out.append("")
    if something_new:
        out.append(m.get("checkin.summary_new"))
    out.append(m.get("checkin.summary_footer"))
    return "\n".join(out)


# ---------------------------------------------------------------- Telegram calls


def _harmless(exc: BadRequest) -> bool:
    """Tells whether a BadRequest only means the call was already done or is too late."""
    message = str(exc).lower()
    return any(text in message for text in HARMLESS_ERRORS)


async def safe_answer(query: CallbackQuery, text: str | None = None) -> None:
    """Answers a button press; a press too old to answer counts as answered."""
    try:
        await query.answer(text)
    except BadRequest as exc:
        if not _harmless(exc):
            raise


async def safe_edit(query: CallbackQuery, text: str, buttons: Buttons | None) -> None:
    """Edits the pressed message; 'not modified' (a repeat) counts as success."""
    try:
        await query.edit_message_text(text, reply_markup=keyboard(buttons))
    except BadRequest as exc:
        if not _harmless(exc):
            raise


@dataclass
class Plan:
    """What to show after a change: an edit of the pressed message and new messages."""

    checkin_id: int | None = None
    toast: str | None = None
    edit: tuple[str, Buttons | None] | None = None
    messages: list[tuple[str, Buttons | None]] = field(default_factory=list)
    # Discreet mode: her answers, summaries and offers cannot be forwarded or saved.
    protect: bool = False


async def _send_plan(context: BotContext, chat_id: int, plan: Plan) -> None:
    """Sends the planned messages and remembers their ids on the check-in."""
    sent: list[int] = []
    for text, buttons in plan.messages:
        message = await context.bot.send_message(
            chat_id, text, reply_markup=keyboard(buttons), protect_content=plan.protect
        )
        sent.append(message.message_id)
    if plan.checkin_id is not None and sent:
        await _remember_messages(context.services.db, plan.checkin_id, sent)


async def _remember_messages(db: Database, checkin_id: int, message_ids: list[int]) -> None:
    """Adds sent message ids to the check-in row."""
    async with db.session() as session:
        checkin = await session.get(CheckIn, checkin_id)
        if checkin is not None:
            for message_id in message_ids:
                checkins.append_message_id(checkin, message_id)
            session.add(checkin)


def _set_note_awaiting(participant: Participant, checkin: CheckIn, item: Item | None) -> None:
    """Marks that her next text is the note, unless another flow is waiting for text."""
    if item is not None and item.type == "text":
        if participant.awaiting is None or participant.awaiting.startswith(NOTE_AWAITING):
            participant.awaiting = f"{NOTE_AWAITING}{checkin.id}"
    elif participant.awaiting == f"{NOTE_AWAITING}{checkin.id}":
        participant.awaiting = None


async def _follow_up(
    *,
    session: AsyncSession,
    checkin: CheckIn,
    participant: Participant,
    result: AnswerResult,
    item: Item,
    m: Messages,
    plan: Plan,
    prefix: str | None = None,
) -> None:
    """Plans what comes after a stored answer: doctor-first note, next question or summary."""
    changed = result.outcome in {"stored", "corrected"} and result.answer is not None
    if changed and result.answer is not None and (item.code, result.answer.value) == STOPPED:
        # The doctor-first path comes first; its last step re-shows the next question.
        plan.messages.append(
            await doctor_first.start_view(
                session=session, participant=participant, source="checkin", checkin_id=checkin.id
            )
        )
        if not result.completed:
            session.add(participant)
            return
    if result.completed:
        text = await summary_text(session=session, checkin=checkin, m=m)
        plan.messages.append(((prefix + "\n\n" + text) if prefix else text, None))
        _set_note_awaiting(participant, checkin, None)
        if not item.optional:
            # Tailored offers (rules in content/rules/offers.yaml) follow the summary, unless
            # they came already, when only the optional note was left (see below).
            plan.messages.extend(
                await offers.offer_messages(
                    session=session, participant=participant, checkin=checkin
                )
            )
    elif result.next_changed and result.next_item is not None:
        nxt = result.next_item
        if nxt.optional and await checkins.only_optional_left(session=session, checkin=checkin):
            # Every question is answered: offers (and the alerts behind a red flag) come now,
            # not after the note, which she may never write.
            plan.messages.extend(
                await offers.offer_messages(
                    session=session, participant=participant, checkin=checkin
                )
            )
        text, buttons = await question_view(session=session, checkin=checkin, item=nxt, m=m)
        plan.messages.append(((prefix + "\n\n" + text) if prefix else text, buttons))
        _set_note_awaiting(participant, checkin, nxt)
    elif prefix:
        plan.messages.append((prefix, None))
    session.add(participant)


# ---------------------------------------------------------------- /checkin


def _cannot_start(participant: Participant | None) -> str | None:
    """Returns the message key that tells her how to go on, or None if she may check in."""
    if participant is None:
        return "checkin.not_joined"
    if participant.status in (Lifecycle.withdrawn, Lifecycle.deleted):
        return "checkin.left"
    if participant.status == Lifecycle.paused:
        return "checkin.paused"
    if participant.status != Lifecycle.active:
        return "checkin.finish_setup"
    if (
        participant.awaiting == "reconsent"
        or participant.consent_version != consent_text(participant.locale).version
    ):
        return "checkin.reconsent_first"
    return None


async def on_checkin_command(update: Update, context: BotContext) -> None:
    """Starts a check-in now (or shows where she left off in her open one)."""
    chat = update.effective_chat
    if chat is None:
        return
    plan = Plan()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        plan.protect = discreet(participant)
        m = msgs(participant)
        key = _cannot_start(participant)
        if key is not None or participant is None:
            plan.messages.append((m.get(key or "checkin.not_joined"), None))
        else:
            existing = await checkins.open_checkin_for(session=session, participant=participant)
            checkin = existing or await checkins.create_on_demand_checkin(
                session=session,
                participant=participant,
                window_hours=context.services.settings.checkin_window_hours,
            )
            item = await checkins.current_item(session=session, checkin=checkin)
            intro = m.get("checkin.resume_open" if existing else "checkin.on_demand_intro")
            if item is None:
                text = await summary_text(session=session, checkin=checkin, m=m)
                plan.messages.append((text, None))
            else:
                text, buttons = await question_view(
                    session=session, checkin=checkin, item=item, m=m
                )
                plan.messages.append((intro + "\n\n" + text, buttons))
                _set_note_awaiting(participant, checkin, item)
                session.add(participant)
            plan.checkin_id = checkin.id
    await _send_plan(context, chat.id, plan)


# ---------------------------------------------------------------- button presses


async def _plan_press(
    *, session: AsyncSession, query: CallbackQuery, update_id: int, plan: Plan
) -> None:
    """Checks the press against the presser, stores it and plans the reply."""
    parsed = checkins.parse_callback(query.data or "")
    m = msgs()
    if parsed is None:
        plan.toast = m.get("checkin.stale_button")
        return
    checkin_id, code, value = parsed
    checkin = await session.get(CheckIn, checkin_id)
    participant = await session.get(Participant, checkin.participant_id) if checkin else None
    plan.protect = discreet(participant)
    if (
        checkin is None
        or participant is None
        or participant.telegram_user_id != query.from_user.id
    ):
        # Neutral on purpose: say nothing about whose check-in it is.
        plan.toast = m.get("checkin.not_yours")
        return
    m = msgs(participant)
    plan.checkin_id = checkin.id
    left = participant.status in (Lifecycle.withdrawn, Lifecycle.deleted)
    if left or not checkins.is_open(checkin):
        plan.messages.append((m.get("checkin.closed"), None))
        return
    if code == checkins.SNOOZE_CODE:
        minutes = int(value) if value.isdigit() else checkins.SNOOZE_MINUTES
        await checkins.snooze(session=session, checkin=checkin, minutes=minutes)
        plan.toast = m.get("checkin.snoozed_toast")
        plan.messages.append((m.get("checkin.snoozed"), None))
        return
    item = checkins.questionnaire_for(checkin).item(code)
    if item is None:
        plan.toast = m.get("checkin.stale_button")
        return
    if item.type == "multi":
        result = await checkins.press_multi(
            session=session, checkin=checkin, item_code=code, value=value, update_id=update_id
        )
    elif item.type == "text" and value == checkins.SKIP:
        result = await checkins.skip_item(
            session=session, checkin=checkin, item_code=code, update_id=update_id
        )
    else:
        result = await checkins.record_answer(
            session=session, checkin=checkin, item_code=code, value=value, update_id=update_id
        )
    if result.outcome == "closed":
        plan.messages.append((m.get("checkin.closed"), None))
        return
    if result.outcome == "invalid":
        plan.toast = m.get("checkin.stale_button")
        return
    if result.outcome == "empty":
        plan.toast = m.get("checkin.nothing_ticked")
    # Redraw the pressed question (a repeat is harmless: Telegram says "not modified").
    plan.edit = await question_view(session=session, checkin=checkin, item=item, m=m)
    await _follow_up(
        session=session,
        checkin=checkin,
        participant=participant,
        result=result,
        item=item,
        m=m,
        plan=plan,
    )


async def on_press(update: Update, context: BotContext) -> None:
    """Stores a one-tap answer, ticks it on the message and sends the next question."""
    query = update.callback_query
    if query is None:
        return
    plan = Plan()
    answered = False
    try:
        async with context.services.db.session() as session:
            await _plan_press(session=session, query=query, update_id=update.update_id, plan=plan)
        # Answer first, so her button stops spinning even if a later call fails.
        await safe_answer(query, plan.toast)
        answered = True
        if plan.edit is not None:
            await safe_edit(query, *plan.edit)
        chat = update.effective_chat
        if chat is not None:
            await _send_plan(context, chat.id, plan)
    finally:
        if not answered:
            await safe_answer(query)


# ---------------------------------------------------------------- typed text


async def _store_typed(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    item: Item,
    value: str,
    update_id: int,
    m: Messages,
    plan: Plan,
    ack: str | None,
) -> AnswerResult:
    """Stores a typed answer (a score or the note) and plans what comes next."""
    result = await checkins.record_answer(
        session=session, checkin=checkin, item_code=item.code, value=value, update_id=update_id
    )
    if result.outcome in {"stored", "corrected", "unchanged"}:
        await _follow_up(
            session=session,
            checkin=checkin,
            participant=participant,
            result=result,
            item=item,
            m=m,
            plan=plan,
            prefix=ack,
        )
    return result


async def on_note_text(update: Update, context: BotContext) -> None:
    """Saves the note she typed (database only, never the logs) and closes with a summary."""
    message = update.effective_message
    chat = update.effective_chat
    if message is None or chat is None:
        return
    text = message.text or ""
    plan = Plan()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        plan.protect = discreet(participant)
        if participant is None:
            return
        m = msgs(participant)
        awaiting = participant.awaiting or ""
        raw_id = awaiting.removeprefix(NOTE_AWAITING)
        checkin = await session.get(CheckIn, int(raw_id)) if raw_id.isdigit() else None
        note = checkins.questionnaire_for(checkin).item("note") if checkin else None
        mine = checkin is not None and checkin.participant_id == participant.id
        if not mine or checkin is None or note is None or not checkins.is_open(checkin):
            participant.awaiting = None
            session.add(participant)
            plan.messages.append((m.get("checkin.note_closed"), None))
        else:
            plan.checkin_id = checkin.id
            await _store_note(
                session=session,
                participant=participant,
                checkin=checkin,
                item=note,
                text=text,
                update_id=update.update_id,
                m=m,
                plan=plan,
            )
    await _send_plan(context, chat.id, plan)


async def _store_note(
    *,
    session: AsyncSession,
    participant: Participant,
    checkin: CheckIn,
    item: Item,
    text: str,
    update_id: int,
    m: Messages,
    plan: Plan,
) -> None:
    """Stores her note, or asks for a shorter one."""
    if len(text.strip()) > checkins.MAX_TEXT or not text.strip():
        view = await question_view(session=session, checkin=checkin, item=item, m=m)
        plan.messages.append((m.get("checkin.note_too_long"), view[1]))
        return
    result = await _store_typed(
        session=session,
        participant=participant,
        checkin=checkin,
        item=item,
        value=text,
        update_id=update_id,
        m=m,
        plan=plan,
        ack=None,
    )
    if not result.completed and not plan.messages:
        # The note came in while another question is still open: confirm and re-show it.
        plan.messages.append((m.get("checkin.note_saved"), None))
    participant.awaiting = None
    session.add(participant)


async def on_text_during_checkin(update: Update, context: BotContext) -> bool:
    """Takes a typed score or note for her open check-in, else re-shows the buttons."""
    message = update.effective_message
    chat = update.effective_chat
    if message is None or chat is None:
        return False
    text = message.text or ""
    plan = Plan()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        plan.protect = discreet(participant)
        if participant is None:
            return False
        checkin = await checkins.open_checkin_for(session=session, participant=participant)
        if checkin is None:
            return False
        item = await checkins.current_item(session=session, checkin=checkin)
        if item is None:
            return False
        m = msgs(participant)
        plan.checkin_id = checkin.id
        score = checkins.parse_scale_text(text, item) if item.type == "scale" else None
        if item.type == "text":
            await _store_note(
                session=session,
                participant=participant,
                checkin=checkin,
                item=item,
                text=text,
                update_id=update.update_id,
                m=m,
                plan=plan,
            )
        elif score is not None:
            ack = m.get("checkin.number_noted", answer=answer_label(item, score, m))
            await _store_typed(
                session=session,
                participant=participant,
                checkin=checkin,
                item=item,
                value=score,
                update_id=update.update_id,
                m=m,
                plan=plan,
                ack=ack,
            )
        else:
            view_text, buttons = await question_view(
                session=session, checkin=checkin, item=item, m=m
            )
            plan.messages.append((m.get("checkin.use_buttons") + "\n\n" + view_text, buttons))
    await _send_plan(context, chat.id, plan)
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
    item = await checkins.current_item(session=session, checkin=checkin)
    if item is None:
        return RenderedMessage(text="", skip=True)
    m = msgs(participant)
    text, buttons = await question_view(session=session, checkin=checkin, item=item, m=m)
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


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("checkin", on_checkin_command, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=CALLBACK_PATTERN),
]
