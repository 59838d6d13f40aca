"""The one reply path: a handler computes a `Reply` in its transaction; `deliver()` sends it.

Every flow handler is a *turn* (`@turn`): one database session per update, the participant
loaded once, the replay guard in the same transaction, and the reply handed to `deliver()`
after commit. `deliver()` alone talks to Telegram for replies, following the delivery policy
in shared/architecture.md:

- the button press is answered first and never paced, so a button never spins;
- then the edit of the pressed message, then the new messages, each paced through the shared
  limiter (global, and per chat with a short burst) and never inside a `retry_after` window;
- 429: wait `retry_after`, then try again; 5xx, time-outs and lost connections: retried a
  bounded number of times, because a question sent twice is harmless (its buttons carry the
  item and value) and a patient left without her next question is not;
- "message is not modified", "message to edit not found" and "query is too old" are the
  harmless cases they are; an edit that cannot be made becomes a new message;
- discreet mode comes from the participant, for every message, always;
- when it finally gives up it logs the call and the error class with a reference id, never
  text. What she answered is already stored, so her next tap or /checkin continues.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import CallbackQuery, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import checkins, clock, ops, ratelimit
from bot.config import Settings
from bot.content import Messages
from bot.models import CheckIn, Participant, ProcessedUpdate
from bot.outbox import Buttons, keyboard
from bot.sender import retry_after_seconds
from bot.services import Services
from handlers.common import BotContext, msgs, participant_for

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # outcome-unknown failures of one call: the first try and four more
MAX_RATE_LIMITED = 6  # 429s of one call before giving up (each one is waited out)
BACKOFF_SECONDS = 0.5  # doubled after each failed attempt
# Telegram's answers that mean "already done" or "too late to matter".
NOT_MODIFIED = "message is not modified"
HARMLESS = (NOT_MODIFIED, "query is too old", "query id is invalid")
# An edit that cannot be made (the message is gone, has no text, or is too old to edit).
CANNOT_EDIT = (
    "message to edit not found",
    "message can't be edited",
    "there is no text in the message to edit",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Screen:
    """One message as she sees it: text (or a caption), buttons, and an optional file.

    A picture or document is drawn by `render` after commit, in a worker thread, so no
    transaction waits for matplotlib.
    """

    text: str
    buttons: Buttons | None = None
    html: bool = False
    photo: Callable[[], bytes] | None = None
    document: Callable[[], bytes] | None = None
    filename: str | None = None


@dataclass
class Reply:
    """What a handler wants her to see: a toast, an edit of the pressed message, new messages."""

    toast: str | None = None
    alert: bool = False  # show the toast as a pop-up she closes
    edit: Screen | None = None  # replaces the pressed message
    edit_fallback: bool = True  # send the edit as a new message when it cannot be made
    drop_buttons: bool = False  # removes the pressed message's buttons
    chosen: str | None = None  # shown under the pressed question, whose buttons go
    messages: list[Screen] = field(default_factory=list)
    # The check-in this reply moves on; if a message of it never reaches her, the check-in
    # is marked so that her next tap on it shows the question again.
    checkin_id: int | None = None
    protect: bool = False  # set by the turn from her discreet mode, or by the handler
    slots: list[Any] = field(default_factory=list)  # send instants reserved in the turn

    def say(self, text: str, buttons: Buttons | None = None, *, html: bool = False) -> Reply:
        """Adds one text message."""
        self.messages.append(Screen(text, buttons, html=html))
        return self

    def show(self, screen: Screen) -> Reply:
        """Adds one prepared message."""
        self.messages.append(screen)
        return self

    def replace(self, text: str, buttons: Buttons | None = None, *, html: bool = False) -> Reply:
        """Rewrites the pressed message (a new message if it cannot be edited)."""
        self.edit = Screen(text, buttons, html=html)
        return self

    @property
    def paced_calls(self) -> int:
        """Returns how many calls count against Telegram's limits."""
        return int(self.edit is not None or self.drop_buttons) + len(self.messages)


@dataclass
class Turn:
    """One update being handled: its session, the person behind it, and the reply in the making."""

    update: Update
    context: BotContext
    session: AsyncSession
    participant: Participant | None
    reply: Reply

    @property
    def services(self) -> Services:
        """Returns settings, database and renderers."""
        return self.context.services

    @property
    def settings(self) -> Settings:
        """Returns the settings."""
        return self.context.services.settings

    @property
    def m(self) -> Messages:
        """Returns the messages in her locale."""
        return msgs(self.participant)

    @property
    def query(self) -> CallbackQuery | None:
        """Returns the button press, if this update is one."""
        return self.update.callback_query

    @property
    def data(self) -> str:
        """Returns the pressed button's callback data ('' for other updates)."""
        query = self.update.callback_query
        return (query.data or "") if query is not None else ""

    @property
    def text(self) -> str:
        """Returns what she typed (or a caption); '' when there is none."""
        message = self.update.effective_message
        if message is None:
            return ""
        return message.text or message.caption or ""

    @property
    def pressed(self) -> Message | None:
        """Returns the message whose button she pressed, if Telegram sent it."""
        query = self.update.callback_query
        return query.message if query is not None and isinstance(query.message, Message) else None

    @property
    def chat_id(self) -> int | None:
        """Returns the chat the update came from."""
        chat = self.update.effective_chat
        return chat.id if chat is not None else None

    @property
    def user_id(self) -> int | None:
        """Returns the Telegram id of the person behind the update."""
        user = self.update.effective_user
        return user.id if user is not None else None


FlowHandler = Callable[[Turn], Awaitable[None]]
# A flow's taker of typed text; False when the text was not for it after all.
TextRoute = Callable[[Turn], Awaitable[bool]]
PtbCallback = Callable[[Update, BotContext], Coroutine[Any, Any, None]]


class _Replay(Exception):
    """Raised inside a turn's transaction when its update was handled before."""


async def _claim(session: AsyncSession, update_id: int) -> None:
    """Records the update id in the turn's transaction; a replay rolls the whole turn back."""
    # No savepoint: a replay rolls back the whole transaction anyway.
    session.add(ProcessedUpdate(update_id=update_id, processed_at=clock.now()))
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _Replay from exc


def _mark_chosen(t: Turn) -> None:
    """Turns `reply.chosen` into an edit: her choice under the question, its buttons gone."""
    pressed = t.pressed
    if t.reply.chosen is None or t.reply.edit is not None or pressed is None or not pressed.text:
        return
    line = msgs().get("common.chosen", choice=t.reply.chosen)
    t.reply.edit = Screen(f"{pressed.text}\n\n{line}")
    t.reply.edit_fallback = False


def turn(handler: FlowHandler) -> PtbCallback:
    """Wraps a flow handler: one session, the participant, the replay guard, then `deliver`."""

    @functools.wraps(handler)
    async def run(update: Update, context: BotContext) -> None:
        started = time.perf_counter()
        try:
            handled = await _run_turn(handler, update, context)
        except Exception:
            ops.observe_update(time.perf_counter() - started, "error")
            raise
        ops.observe_update(time.perf_counter() - started, "handled" if handled else "replay")

    return run


async def _run_turn(handler: FlowHandler, update: Update, context: BotContext) -> bool:
    """Runs one turn; False when the update was a replay (nothing changed, nothing sent)."""
    services = context.services
    reply = Reply()
    try:
        async with services.db.session() as session:
            participant = await participant_for(session, update)
            current = Turn(update, context, session, participant, reply)
            await handler(current)
            _mark_chosen(current)
            # The guard goes last: two workers handed the same update both compute, and
            # the second one's whole transaction rolls back here.
            await _claim(session, update.update_id)
            # Her discreet mode protects the reply; a handler may also ask for it (/export).
            reply.protect = reply.protect or (
                current.participant is not None and current.participant.discreet
            )
            chat = update.effective_chat
            if chat is not None and reply.paced_calls:
                reply.slots = await ratelimit.reserve_in(
                    session,
                    db=services.db,
                    chat_id=chat.id,
                    per_second=services.settings.global_rate_per_second,
                    count=reply.paced_calls,
                    burst=True,
                )
    except _Replay:
        log.info("replayed update %s ignored", update.update_id)
        return False
    await deliver(update, context, reply)
    return True


# ---------------------------------------------------------------- delivery


def new_ref() -> str:
    """Returns a short reference id that ties a log line to what the person was told."""
    return uuid.uuid4().hex[:8]


def _is(exc: BadRequest, texts: tuple[str, ...]) -> bool:
    """Tells whether Telegram's description contains one of the texts."""
    message = exc.message.lower()
    return any(text in message for text in texts)


@dataclass
class _Outcome:
    """What one call came to: done (with a result), harmless, or failed (given up)."""

    done: bool
    result: Any = None
    cannot_edit: bool = False


class Courier:
    """Makes one reply's Telegram calls under the delivery policy (pacing, 429, retries)."""

    def __init__(self, services: Services, chat_id: int | None, slots: list[Any]) -> None:
        self.services = services
        self.chat_id = chat_id
        self.slots = list(slots)
        self.sleep = services.reply_sleep or services.sleep or clock.real_sleep

    async def _wait_for_slot(self) -> None:
        """Waits for a reserved send instant and for any 429 pause this process knows of."""
        assert self.chat_id is not None
        if self.slots:
            at = self.slots.pop(0)
        else:
            at = await ratelimit.reserve(
                db=self.services.db,
                chat_id=self.chat_id,
                per_second=self.services.settings.global_rate_per_second,
                burst=True,
            )
        held = self.services.held_until
        if held is not None and held > at:
            at = held
        await ratelimit.wait_until(at, self.sleep)

    async def _honour_retry_after(self, exc: RetryAfter) -> None:
        """Holds every send (here and in other processes) until Telegram's window has passed."""
        until = clock.now() + timedelta(seconds=retry_after_seconds(exc))
        if self.services.held_until is None or self.services.held_until < until:
            self.services.held_until = until
        await ratelimit.pause_all(db=self.services.db, until=until)

    async def call(self, what: str, make: Callable[[], Awaitable[T]], *, paced: bool) -> _Outcome:
        """Makes one call, retrying what the policy retries; never raises."""
        failures = rate_limited = 0
        while True:
            if paced:
                await self._wait_for_slot()
            try:
                result = await make()
            except RetryAfter as exc:
                rate_limited += 1
                ops.record_429()
                await self._honour_retry_after(exc)
                if rate_limited >= MAX_RATE_LIMITED:
                    return self._give_up(what, exc)
                if not paced:
                    await ratelimit.wait_until(self.services.held_until or clock.now(), self.sleep)
            except BadRequest as exc:
                if _is(exc, HARMLESS):
                    return _Outcome(True)
                return self._give_up(what, exc, cannot_edit=True)
            except Forbidden as exc:
                # She blocked the bot: the my_chat_member update marks her unreachable.
                return self._give_up(what, exc)
            except (NetworkError, TelegramError) as exc:
                # Time-outs, lost connections and 5xx: the outcome is unknown; try again.
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    return self._give_up(what, exc)
                await self.sleep(BACKOFF_SECONDS * 2 ** (failures - 1))
            except Exception as exc:  # a bug or an unknown library failure: never raise here
                return self._give_up(what, exc)
            else:
                ops.record_reply("delivered")
                return _Outcome(True, result)

    def _give_up(self, what: str, exc: BaseException, *, cannot_edit: bool = False) -> _Outcome:
        """Logs a call that will not be made, by class and reference only (never text)."""
        ops.record_reply("given_up")
        if not (cannot_edit and isinstance(exc, BadRequest) and _is(exc, CANNOT_EDIT)):
            log.warning(
                "reply call %s not delivered ref=%s error=%s", what, new_ref(), type(exc).__name__
            )
        return _Outcome(False, cannot_edit=cannot_edit)


async def _send(
    courier: Courier, bot: Any, chat_id: int, screen: Screen, protect: bool
) -> _Outcome:
    """Sends one screen as a text message, a photo or a document."""
    markup = keyboard(screen.buttons)
    parse_mode = ParseMode.HTML if screen.html else None
    if screen.photo is not None:
        photo = await asyncio.to_thread(screen.photo)
        return await courier.call(
            "sendPhoto",
            lambda: bot.send_photo(
                chat_id,
                photo=photo,
                caption=screen.text,
                reply_markup=markup,
                protect_content=protect,
            ),
            paced=True,
        )
    if screen.document is not None:
        document = await asyncio.to_thread(screen.document)
        return await courier.call(
            "sendDocument",
            lambda: bot.send_document(
                chat_id,
                document=document,
                filename=screen.filename,
                caption=screen.text,
                protect_content=protect,
            ),
            paced=True,
        )
    return await courier.call(
        "sendMessage",
        lambda: bot.send_message(
            chat_id,
            screen.text,
            reply_markup=markup,
            protect_content=protect,
            parse_mode=parse_mode,
        ),
        paced=True,
    )


async def deliver(update: Update, context: BotContext, reply: Reply) -> None:
    """Answers the press, edits the pressed message, then sends the new messages, in order."""
    services = context.services
    query = update.callback_query
    chat = update.effective_chat
    chat_id = chat.id if chat is not None else (query.from_user.id if query else None)
    courier = Courier(services, chat_id, reply.slots)
    if query is not None:
        await courier.call(
            "answerCallbackQuery",
            lambda: query.answer(reply.toast, show_alert=reply.alert),
            paced=False,
        )
    if chat_id is None:
        return
    queue = list(reply.messages)
    if query is not None and (reply.edit is not None or reply.drop_buttons):
        edited = await _edit(courier, query, reply)
        if not edited and reply.edit is not None and reply.edit_fallback:
            queue.insert(0, reply.edit)
    for screen in queue:
        outcome = await _send(courier, context.bot, chat_id, screen, reply.protect)
        if not outcome.done:
            # Later messages would make no sense without this one. Nothing is written when
            # all goes well; a message that never left marks the check-in instead.
            if reply.checkin_id is not None:
                await _mark_undelivered(services, reply.checkin_id)
            break


async def _edit(courier: Courier, query: CallbackQuery, reply: Reply) -> bool:
    """Edits (or strips the buttons of) the pressed message; False when it cannot be done."""
    if reply.edit is None:
        outcome = await courier.call(
            "editMessageReplyMarkup",
            lambda: query.edit_message_reply_markup(reply_markup=None),
            paced=True,
        )
        return outcome.done
    screen = reply.edit
    pressed = query.message
    if not isinstance(pressed, Message) or pressed.text is None:
        return False  # a photo, a document or an inaccessible message: send it anew
    outcome = await courier.call(
        "editMessageText",
        lambda: query.edit_message_text(
            screen.text,
            reply_markup=keyboard(screen.buttons),
            parse_mode=ParseMode.HTML if screen.html else None,
        ),
        paced=True,
    )
    return outcome.done


async def _mark_undelivered(services: Services, checkin_id: int) -> None:
    """Records on the check-in that a reply to her never arrived (`checkins.UNDELIVERED`)."""
    try:
        async with services.db.session() as session:
            checkin = await session.get(CheckIn, checkin_id)
            if checkin is not None:
                checkins.mark_undelivered(checkin)
                session.add(checkin)
    except Exception as exc:  # the database is down too: her /checkin still shows the question
        log.warning("could not mark check-in %s: %s", checkin_id, type(exc).__name__)
