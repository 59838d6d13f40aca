"""A fake Telegram Bot API at the transport layer.

`FakeTelegram` holds the state (chats, messages, injected faults); `FakeRequest` is a PTB
`BaseRequest` that hands every call to it, so real PTB handlers and the real sender run
unchanged. The offline demo and the tests both use it.

Telegram's limits and faults are opt-in (`fake.limits = Limits(...)` or
`fake.enable_limits(...)`); with `limits` None nothing below applies. When set, every
`send*` call (except sendChatAction) and every `editMessage*` call is "counted" and goes
through, in this order, on the virtual clock (`bot.clock.now()`):

1. retry window: a counted call that arrives while a retry_after window announced earlier
   still applies to it (a window for its chat, or the bot-wide window) is answered 429
   again with the remaining whole seconds; it counts in `inside_retry_window`.
2. token buckets (GCRA): bot-wide, per private chat (id > 0) and per group (id < 0). A call
   that does not fit is answered 429 with `retry_after` = ceil(seconds until every bucket
   has room), at least 1, and opens a window of that length for the scope(s) that refused
   it; it counts in `rate_limited`. Refused calls take no tokens.
3. `error_rate`: answered 500 without being applied; counts in `errors_injected`.
4. the call is applied (message stored, edit made).
5. `lost_rate`: the transport raises `TimedOut` although the call was applied; counts in
   `lost_injected`.

Explicit faults (`fail_next`, `timeout_next`, `block`) are checked before all of this and
win; an explicit 429 with `retry_after` also opens a window (for its chat, or bot-wide) when
limits are set. Uncounted calls (answerCallbackQuery, getMe, setMyCommands, getUpdates, ...)
are never limited or faulted. `stats()` returns the four counters; the counter
`inside_retry_window` is also readable as `requests_inside_retry_window`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from telegram.error import TimedOut
from telegram.request import BaseRequest, RequestData

from bot import clock

BOT_ID = 7000000001
BOT_USERNAME = "adherence_demo_bot"

_EDITS = frozenset({"editMessageText", "editMessageReplyMarkup", "editMessageCaption"})
# Buckets count in exact fractions of the clock's whole microseconds, so a call exactly at a
# bucket's boundary (say a group message 3.0 s after the last) is accepted, never rounded off.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass
class FakeMessage:
    """A message as the fake server holds it (edits update it in place)."""

    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    method: str
    sent_at: datetime
    protect_content: bool = False
    edits: int = 0
    document_name: str | None = None
    photo: bool = False
    # The picture or document itself (the demo saves it to disk); kept out of repr: it is big.
    file: bytes | None = field(default=None, repr=False)
    parse_mode: str | None = None  # "HTML" when the text carries Telegram HTML tags

    def buttons(self) -> list[tuple[str, str]]:
        """Returns (label, callback data) for every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]

    def button_rows(self) -> list[list[tuple[str, str]]]:
        """Returns the inline buttons as rows of (label, callback data)."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [[(b["text"], b.get("callback_data", "")) for b in row] for row in rows]


@dataclass
class Fault:
    """One injected failure, matched by method and optionally chat."""

    method: str
    chat_id: int | None
    status: int
    description: str
    retry_after: int | None = None
    timeout: bool = False
    delivered: bool = False  # a timeout after the server accepted the message
    times: int = 1


@dataclass(frozen=True)
class Limits:
    """Telegram's rate limits and random faults, as the fake enforces them when set."""

    global_per_second: float = 30.0  # all counted calls of the bot together
    global_burst: int = 30  # about one second's worth at once
    chat_per_second: float = 1.0  # per private chat, sustained
    chat_burst: int = 3  # a short burst allowed per private chat
    group_per_minute: float = 20.0  # per group chat (negative chat id)
    group_burst: int = 20  # Telegram states "20 per minute", so a minute's worth at once
    error_rate: float = 0.0  # fraction of counted calls that pass the buckets answered 500
    lost_rate: float = 0.0  # fraction applied whose response is then lost (TimedOut)
    seed: int = 0  # one random.Random(seed) for every decision: runs are repeatable

    def __post_init__(self) -> None:
        """Rejects settings that would make the buckets or the dice meaningless."""
        for name in ("global_per_second", "chat_per_second", "group_per_minute"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("global_burst", "chat_burst", "group_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("error_rate", "lost_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass
class _Bucket:
    """A token bucket in GCRA form: one theoretical arrival time instead of a token count."""

    interval: Fraction  # seconds per call at the sustained rate
    burst: int
    tat: Fraction | None = None  # when the bucket would be empty again; None = full

    @classmethod
    def per(cls, calls: float, seconds: int, burst: int) -> _Bucket:
        """Returns a bucket allowing `calls` per `seconds` sustained and `burst` at once."""
        return cls(interval=Fraction(seconds) / Fraction(calls), burst=burst)

    def wait(self, now: Fraction) -> Fraction:
        """Returns the seconds until one more call fits (0 if it fits now)."""
        if self.tat is None:
            return Fraction(0)
        return max(Fraction(0), self.tat - (self.burst - 1) * self.interval - now)

    def take(self, now: Fraction) -> None:
        """Spends one call."""
        self.tat = max(self.tat if self.tat is not None else now, now) + self.interval


class _Limiter:
    """Buckets, announced windows and the dice for one `Limits` object."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.rng = random.Random(limits.seed)
        self.global_bucket = _Bucket.per(limits.global_per_second, 1, limits.global_burst)
        self.chat_buckets: dict[int, _Bucket] = {}
        self.global_until: datetime | None = None
        self.chat_until: dict[int, datetime] = {}

    def bucket(self, chat_id: int) -> _Bucket:
        """Returns the bucket of one chat: per second for private chats, per minute for groups."""
        found = self.chat_buckets.get(chat_id)
        if found is None:
            lim = self.limits
            found = (
                _Bucket.per(lim.chat_per_second, 1, lim.chat_burst)
                if chat_id > 0
                else _Bucket.per(lim.group_per_minute, 60, lim.group_burst)
            )
            self.chat_buckets[chat_id] = found
        return found

    def window_end(self, chat_id: int | None, at: datetime) -> datetime | None:
        """Returns when the latest window applying to a call to this chat ends, if still open."""
        ends = [self.global_until]
        if chat_id is not None:
            ends.append(self.chat_until.get(chat_id))
        open_ends = [end for end in ends if end is not None and end > at]
        return max(open_ends) if open_ends else None

    def announce(self, chat_id: int | None, until: datetime) -> None:
        """Records a retry_after window told to the bot: for one chat, or bot-wide."""
        if chat_id is None:
            self.global_until = max(until, self.global_until or until)
        else:
            self.chat_until[chat_id] = max(until, self.chat_until.get(chat_id, until))


@dataclass
class _Verdict:
    """What the limiter decided for one counted call."""

    refusal: tuple[int, dict[str, Any]] | None = None
    lost: bool = False


def _is_counted(method: str) -> bool:
    """Tells whether a method counts against Telegram's message limits."""
    # sendChatAction delivers no message; Telegram does not count "typing…" against them.
    return (method.startswith("send") and method != "sendChatAction") or method in _EDITS


def _seconds(at: datetime) -> Fraction:
    return Fraction((at - _EPOCH) // _MICROSECOND, 1_000_000)


def _too_many(retry_after: int) -> tuple[int, dict[str, Any]]:
    return 429, {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


@dataclass
class FakeTelegram:
    """The state of a fake Bot API server."""

    bot_id: int = BOT_ID
    username: str = BOT_USERNAME
    valid_token: str | None = None
    messages: list[FakeMessage] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answered_callbacks: list[dict[str, Any]] = field(default_factory=list)
    blocked_chats: set[int] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    send_delay: float = 0.0
    accept_times: list[float] = field(default_factory=list)
    time_source: Callable[[], float] | None = None
    limits: Limits | None = None  # None: no limits and no random faults (the default)
    rate_limited: int = 0  # 429s answered because a bucket was empty
    inside_retry_window: int = 0  # counted calls that arrived inside an announced window
    errors_injected: int = 0  # 500s from error_rate
    lost_injected: int = 0  # applied calls answered with TimedOut from lost_rate
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _limiter: _Limiter | None = None

    # ------------------------------------------------------------ limits

    def enable_limits(self, **settings: Any) -> Limits:
        """Turns on Telegram's limits and random faults (keywords of `Limits`); returns them."""
        self.limits = Limits(**settings)
        return self.limits

    def disable_limits(self) -> None:
        """Turns limits and random faults off again; counters are kept."""
        self.limits = None

    def stats(self) -> dict[str, int]:
        """Returns the limit and fault counters."""
        return {
            "rate_limited": self.rate_limited,
            "inside_retry_window": self.inside_retry_window,
            "errors_injected": self.errors_injected,
            "lost_injected": self.lost_injected,
        }

    @property
    def requests_inside_retry_window(self) -> int:
        """Returns `inside_retry_window` (an alias with a self-explaining name)."""
        return self.inside_retry_window

    def retry_until(self, chat_id: int | None = None) -> datetime | None:
        """Returns when the announced window applying to calls to this chat ends, if open."""
        with self._lock:
            limiter = self._current_limiter()
            return None if limiter is None else limiter.window_end(chat_id, clock.now())

    def _current_limiter(self) -> _Limiter | None:
        # Built lazily so that assigning `fake.limits` directly works too; a new Limits
        # object starts afresh (full buckets, no windows, the seed's first number).
        if self.limits is None:
            return None
        if self._limiter is None or self._limiter.limits is not self.limits:
            self._limiter = _Limiter(self.limits)
        return self._limiter

    def _admit(self, chat_id: int | None) -> _Verdict:
        """Runs a counted call through window, buckets and dice (not the apply step)."""
        with self._lock:
            limiter = self._current_limiter()
            if limiter is None:
                return _Verdict()
            at = clock.now()
            window_end = limiter.window_end(chat_id, at)
            if window_end is not None:
                self.inside_retry_window += 1
                return _Verdict(refusal=_too_many(_whole_seconds(window_end - at)))
            now = _seconds(at)
            chat_bucket = limiter.bucket(chat_id) if chat_id is not None else None
            global_wait = limiter.global_bucket.wait(now)
            chat_wait = chat_bucket.wait(now) if chat_bucket is not None else Fraction(0)
            if global_wait or chat_wait:
                retry_after = max(1, math.ceil(max(global_wait, chat_wait)))
                until = at + timedelta(seconds=retry_after)
                if global_wait:
                    limiter.announce(None, until)
                if chat_wait:
                    limiter.announce(chat_id, until)
                self.rate_limited += 1
                return _Verdict(refusal=_too_many(retry_after))
            limiter.global_bucket.take(now)
            if chat_bucket is not None:
                chat_bucket.take(now)
            # Both numbers are drawn for every call past the buckets, so call k meets the
            # same dice whatever the other rate is set to.
            error_draw, lost_draw = limiter.rng.random(), limiter.rng.random()
            if error_draw < limiter.limits.error_rate:
                self.errors_injected += 1
                return _Verdict(
                    refusal=(
                        500,
                        {"ok": False, "error_code": 500, "description": "Internal Server Error"},
                    )
                )
            return _Verdict(lost=lost_draw < limiter.limits.lost_rate)

    def _announce_explicit(self, fault: Fault, chat_id: int | None) -> None:
        """Opens the window an explicit 429 fault told the bot about (only with limits)."""
        if fault.retry_after is None or not _is_counted(fault.method):
            return
        with self._lock:
            limiter = self._current_limiter()
            if limiter is not None:
                until = clock.now() + timedelta(seconds=max(1, fault.retry_after))
                limiter.announce(chat_id if fault.chat_id is not None else None, until)

    # ------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int,
        description: str,
        chat_id: int | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Makes the next matching call fail with this HTTP status."""
        self.faults.append(
            Fault(method, chat_id, status, description, retry_after=retry_after, times=times)
        )

    def timeout_next(
        self, method: str, *, chat_id: int | None = None, delivered: bool = True
    ) -> None:
        """Makes the next matching call time out; `delivered` means the server kept it."""
        self.faults.append(
            Fault(method, chat_id, 0, "timed out", timeout=True, delivered=delivered)
        )

    def block(self, chat_id: int) -> None:
        """Makes the chat answer 403 as if she blocked the bot."""
        self.blocked_chats.add(chat_id)

    # ------------------------------------------------------------ views for tests and the demo

    def chat(self, chat_id: int) -> list[FakeMessage]:
        """Returns every message sent to a chat, oldest first."""
        return [m for m in self.messages if m.chat_id == chat_id]

    def last(self, chat_id: int) -> FakeMessage:
        """Returns the newest message in a chat."""
        found = self.chat(chat_id)
        if not found:
            raise AssertionError(f"no message was sent to chat {chat_id}")
        return found[-1]

    def texts(self, chat_id: int) -> list[str]:
        """Returns the text of every message in a chat."""
        return [m.text for m in self.chat(chat_id)]

    def find(self, chat_id: int, message_id: int) -> FakeMessage:
        """Returns one message by id."""
        for m in self.messages:
            if m.chat_id == chat_id and m.message_id == message_id:
                return m
        raise AssertionError(f"no message {message_id} in chat {chat_id}")

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """Returns the parameters of every call to one method."""
        return [p for m, p in self.calls if m == method]

    def max_accepted_in_any_second(self) -> int:
        """Returns the most sends accepted within any sliding one-second window."""
        times = sorted(self.accept_times)
        best, start = 0, 0
        for end, t_end in enumerate(times):
            while t_end - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    # ------------------------------------------------------------ the API

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        # Locked: the HTTP server answers calls from several threads.
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.chat_id in (None, chat_id):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _new_message(self, method: str, params: dict[str, Any]) -> FakeMessage:
        with self._lock:
            message_id = self._next_id
            self._next_id += 1
        text = str(params.get("text") or params.get("caption") or "")
        msg = FakeMessage(
            chat_id=int(params["chat_id"]),
            message_id=message_id,
            text=text,
            reply_markup=_markup(params.get("reply_markup")),
            method=method,
            sent_at=clock.now(),
            protect_content=bool(params.get("protect_content", False)),
            document_name=_file_name(params.get("document")),
            photo=method == "sendPhoto",
            file=_file_bytes(
                params.get("photo") if method == "sendPhoto" else params.get("document")
            ),
            parse_mode=_parse_mode(params),
        )
        self.messages.append(msg)
        return msg

    def _message_json(self, msg: FakeMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": msg.message_id,
            "date": int(msg.sent_at.timestamp()),
            "chat": {"id": msg.chat_id, "type": "private" if msg.chat_id > 0 else "group"},
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "Companion"},
        }
        if msg.method in {"sendDocument", "sendPhoto"}:
            data["caption"] = msg.text
        else:
            data["text"] = msg.text
        if msg.reply_markup:
            data["reply_markup"] = msg.reply_markup
        return data

    def handle(
        self, method: str, params: dict[str, Any], token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Answers one Bot API call as (HTTP status, JSON body)."""
        self.calls.append((method, params))
        if self.valid_token is not None and token != self.valid_token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        chat_id = params.get("chat_id")
        chat = int(chat_id) if chat_id is not None else None
        fault = self._take_fault(method, chat)
        if fault is not None and not fault.timeout:
            body: dict[str, Any] = {
                "ok": False,
                "error_code": fault.status,
                "description": fault.description,
            }
            if fault.retry_after is not None:
                body["parameters"] = {"retry_after": fault.retry_after}
                self._announce_explicit(fault, chat)
            return fault.status, body
        if fault is not None and fault.timeout:
            if fault.delivered and method.startswith("send"):
                self._new_message(method, params)
            raise TimedOut("fake server timed out")
        if chat is not None and chat in self.blocked_chats and method.startswith("send"):
            return 403, {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            }
        if self.limits is not None and _is_counted(method):
            verdict = self._admit(chat)
            if verdict.refusal is not None:
                return verdict.refusal
            result = self._result(method, params)
            if verdict.lost:
                with self._lock:
                    self.lost_injected += 1
                raise TimedOut("fake server applied the call but its response was lost")
            return 200, {"ok": True, "result": result}
        return 200, {"ok": True, "result": self._result(method, params)}

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "Companion",
                "username": self.username,
                "can_join_groups": False,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if method in {"sendMessage", "sendDocument", "sendPhoto"}:
            if self.time_source is not None:
                self.accept_times.append(self.time_source())
            return self._message_json(self._new_message(method, params))
        if method in _EDITS:
            msg = self.find(int(params["chat_id"]), int(params["message_id"]))
            new_text = str(params.get("text", params.get("caption", msg.text)))
            new_markup = _markup(params.get("reply_markup"))
            if method == "editMessageReplyMarkup":
                new_text = msg.text
            if new_text == msg.text and new_markup == msg.reply_markup:
                raise _NotModified
            msg.text, msg.reply_markup = new_text, new_markup
            if method != "editMessageReplyMarkup":
                msg.parse_mode = _parse_mode(params)
            msg.edits += 1
            return self._message_json(msg)
        if method == "answerCallbackQuery":
            self.answered_callbacks.append(params)
            return True
        if method == "setMyCommands":
            scope = json.dumps(params.get("scope", {"type": "default"}), sort_keys=True)
            self.commands[scope] = list(params.get("commands", []))
            return True
        if method in {"deleteWebhook", "setWebhook", "deleteMessage", "sendChatAction"}:
            return True
        if method == "getUpdates":
            return []
        return True


class _NotModified(Exception):
    """Raised inside `_result` to answer Telegram's 'message is not modified' 400."""


def _whole_seconds(span: timedelta) -> int:
    """Returns a span rounded up to whole seconds, at least 1 (Telegram's retry_after)."""
    return max(1, -(-(span // _MICROSECOND) // 1_000_000))


def _markup(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value)


def _file_name(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "filename", None)
    return str(name) if name else "attachment"


def _file_bytes(value: Any) -> bytes | None:
    """Returns the content of an uploaded file (a PTB InputFile), if it carries one."""
    content = getattr(value, "input_file_content", None)
    return content if isinstance(content, bytes) else None


def _parse_mode(params: dict[str, Any]) -> str | None:
    mode = params.get("parse_mode")
    return str(mode) if mode else None


class FakeRequest(BaseRequest):
    """A PTB transport that answers from a `FakeTelegram` instead of the network."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        token = url.rsplit("/", 2)[-2].removeprefix("bot")
        params: dict[str, Any] = dict(request_data.parameters) if request_data else {}
        if request_data is not None:
            for param in request_data._parameters:
                if param.input_files:
                    params[param.name] = param.input_files[0]
        if self.fake.send_delay and api_method.startswith("send"):
            await asyncio.sleep(self.fake.send_delay)
        try:
            status, body = self.fake.handle(api_method, params, token)
        except _NotModified:
            status, body = (
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message is not modified: specified new message "
                    "content and reply markup are exactly the same",
                },
            )
        return status, json.dumps(body).encode()
