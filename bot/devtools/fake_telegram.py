"""A fake Telegram Bot API at the transport layer.

`FakeTelegram` holds the state (chats, messages, injected faults); `FakeRequest` is a PTB
`BaseRequest` that hands every call to it, so real PTB handlers and the real sender run
unchanged. The offline demo and the tests both use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telegram.error import TimedOut
from telegram.request import BaseRequest, RequestData

from bot import clock

BOT_ID = 7000000001
BOT_USERNAME = "adherence_demo_bot"


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
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        if method in {"editMessageText", "editMessageReplyMarkup", "editMessageCaption"}:
            msg = self.find(int(params["chat_id"]), int(params["message_id"]))
            new_text = str(params.get("text", params.get("caption", msg.text)))
            new_markup = _markup(params.get("reply_markup"))
            if method == "editMessageReplyMarkup":
                new_text = msg.text
            if new_text == msg.text and new_markup == msg.reply_markup:
                raise _NotModified
            msg.text, msg.reply_markup = new_text, new_markup
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
