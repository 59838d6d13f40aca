"""A fake Bot API reachable over HTTP, for trying `adherence-bot run` with no Telegram account.

It wraps `FakeTelegram` in a small threaded HTTP server that speaks the Bot API's URL scheme
(`/bot<token>/<method>`), and adds a queue of updates that `getUpdates` hands out once each.
Run it with `python -m bot.devtools.bot_api_server --port 8081`, then start the bot with
TELEGRAM_API_BASE_URL=http://127.0.0.1:8081 and any well-formed token. It only speaks the Bot
API, so nobody can chat through it: to be the patient yourself, run `python -m
bot.devtools.chat --port 8081` instead, which serves the same fake and reads what you type.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from telegram import InputFile

from bot import clock
from bot.devtools.fake_telegram import BOT_ID, FakeMessage, FakeTelegram, _NotModified

# Parameters PTB sends as JSON text inside a form field.
_JSON_FIELDS = {"reply_markup", "commands", "scope", "allowed_updates", "entities", "media"}
_LONG_POLL_CAP = 1.0  # seconds: keeps shutdown quick while still blocking like Telegram
_query_ids = itertools.count(1)


class UpdateQueue:
    """Updates waiting for `getUpdates`, each handed out until confirmed by a later offset."""

    def __init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def put(self, payload: dict[str, Any]) -> int:
        """Queues one update (without update_id) and returns the id it was given."""
        with self._cond:
            update_id = next(self._ids)
            self._updates.append({"update_id": update_id, **payload})
            self._cond.notify_all()
            return update_id

    def take(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        """Drops updates below `offset` (confirmed) and returns the rest, waiting a little."""
        deadline = time.monotonic() + min(timeout, _LONG_POLL_CAP)
        with self._cond:
            while True:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates:
                    return list(self._updates)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)


def command_update(user_id: int, text: str, *, first_name: str = "Ana") -> dict[str, Any]:
    """Returns the payload of a private message (a /command when the text starts with '/')."""
    message: dict[str, Any] = {
        "message_id": int(time.time() * 1000) % 2_000_000_000,
        "date": int(clock.now().timestamp()),
        "chat": {"id": user_id, "type": "private", "first_name": first_name},
        "from": {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"},
        "text": text,
    }
    if text.startswith("/"):
        length = len(text.split()[0])
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"message": message}


def callback_update(
    user_id: int, data: str, message: FakeMessage, *, first_name: str = "Ana"
) -> dict[str, Any]:
    """Returns the payload of a button press on a message the fake server holds.

    A message in a group (a negative chat id, e.g. the coordinators' group) is pressed there,
    by whichever member `user_id` is.
    """
    chat: dict[str, Any] = {"id": message.chat_id, "type": "private", "first_name": first_name}
    if message.chat_id < 0:
        chat = {"id": message.chat_id, "type": "supergroup", "title": "Care team"}
    pressed: dict[str, Any] = {
        "message_id": message.message_id,
        "date": int(message.sent_at.timestamp()),
        "chat": chat,
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Companion"},
        "text": message.text,
    }
    if message.reply_markup:
        pressed["reply_markup"] = message.reply_markup
    query = {
        "id": str(next(_query_ids)),
        "from": {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"},
        "chat_instance": str(message.chat_id),
        "message": pressed,
        "data": data,
    }
    return {"callback_query": query}


def _decode(params: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_FIELDS & params.keys():
        if isinstance(params[name], str):
            with suppress(ValueError):
                params[name] = json.loads(params[name])
    return params


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        return dict(json.loads(body))
    if content_type.startswith("multipart/form-data"):
        header = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + body)
        params: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True)
            raw = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            # An uploaded picture or document keeps its bytes, as over the in-process transport.
            params[str(name)] = (
                InputFile(raw, filename=filename) if filename else raw.decode("utf-8", "replace")
            )
        return params
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


class FakeBotApiServer:
    """Serves a `FakeTelegram` over HTTP on 127.0.0.1 in a background thread."""

    def __init__(self, fake: FakeTelegram | None = None, *, port: int = 0) -> None:
        self.fake = fake or FakeTelegram()
        self.updates = UpdateQueue()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        """Returns the server root, the value for TELEGRAM_API_BASE_URL."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Starts serving in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def send_text(self, user_id: int, text: str) -> int:
        """Queues a message (or /command) she types; returns its update id."""
        return self.updates.put(command_update(user_id, text))

    def press(self, user_id: int, data: str, message: FakeMessage) -> int:
        """Queues her tap on one button of a message the bot sent; returns its update id."""
        return self.updates.put(callback_update(user_id, data, message))

    def answer(self, method: str, params: dict[str, Any], token: str) -> tuple[int, Any]:
        """Answers one call: getUpdates from the queue, everything else from the fake."""
        if method == "getUpdates":
            self.fake.calls.append((method, params))
            if self.fake.valid_token is not None and token != self.fake.valid_token:
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            offset = int(params.get("offset") or 0)
            timeout = float(params.get("timeout") or 0)
            return 200, {"ok": True, "result": self.updates.take(offset, timeout)}
        try:
            return self.fake.handle(method, params, token)
        except _NotModified:
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message is not modified",
            }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 2 or not parts[0].startswith("bot"):
                    self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                token, method = parts[0].removeprefix("bot"), parts[1]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                params = _decode(_parse_body(self.headers.get("Content-Type", ""), body))
                if "?" in self.path:
                    params.update(parse_qsl(self.path.split("?", 1)[1]))
                status, answer = server.answer(method, params, token)
                self._reply(status, answer)

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The bot may hang up mid long-poll when it shuts down; that is not an error.
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines carry the token: never print them

        return Handler


@contextmanager
def running_server(fake: FakeTelegram | None = None) -> Iterator[FakeBotApiServer]:
    """Runs a fake Bot API server for the duration of a `with` block."""
    server = FakeBotApiServer(fake)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Serves a fake Bot API until interrupted, printing what the bot sends."""
    parser = argparse.ArgumentParser(prog="python -m bot.devtools.bot_api_server")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    server = FakeBotApiServer(port=args.port)
    server.start()
    print(f"fake Bot API at {server.root_url}  (TELEGRAM_API_BASE_URL={server.root_url})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
