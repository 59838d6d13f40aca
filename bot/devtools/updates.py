"""Builds Telegram updates the way the real server would send them (tests and the demo)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Update

from bot import clock
from bot.devtools.fake_telegram import FakeMessage


@dataclass
class UpdateFactory:
    """Makes updates for one bot, numbering them like Telegram does."""

    bot: Bot
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100_000))

    def continue_after(self, last_id: int) -> None:
        """Numbers the next updates after `last_id`, as Telegram does for a bot it knows: a
        number the bot has processed before would be dropped as a replay."""
        self._ids = itertools.count(max(last_id + 1, next(self._ids)))

    def _user(self, user_id: int, first_name: str, username: str | None) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": "en",
        }
        if username:
            user["username"] = username
        return user

    def _wrap(self, payload: dict[str, Any], update_id: int | None) -> Update:
        data = {"update_id": next(self._ids) if update_id is None else update_id, **payload}
        update = Update.de_json(data, self.bot)
        assert update is not None
        return update

    def message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        first_name: str = "Ana",
        username: str | None = "ana_test",
        chat_id: int | None = None,
        chat_type: str = "private",
        update_id: int | None = None,
        extra: dict[str, Any] | None = None,
        edited: bool = False,
    ) -> Update:
        """Returns a message update; a text starting with '/' carries a command entity."""
        chat = chat_id if chat_id is not None else user_id
        msg: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(clock.now().timestamp()),
            "chat": {"id": chat, "type": chat_type, "first_name": first_name},
            "from": self._user(user_id, first_name, username),
        }
        if text is not None:
            msg["text"] = text
            if text.startswith("/"):
                length = len(text.split()[0])
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if extra:
            msg.update(extra)
        if edited:
            msg["edit_date"] = int(clock.now().timestamp())
        return self._wrap({"edited_message" if edited else "message": msg}, update_id)

    def command(self, user_id: int, command: str, *args: str, **kwargs: Any) -> Update:
        """Returns a '/command arg ...' message update."""
        text = "/" + command + ("" if not args else " " + " ".join(args))
        return self.message(user_id, text, **kwargs)

    def photo(self, user_id: int, caption: str | None = None, **kwargs: Any) -> Update:
        """Returns a photo message update."""
        extra: dict[str, Any] = {
            "photo": [{"file_id": "ph1", "file_unique_id": "u1", "width": 90, "height": 90}]
        }
        if caption:
            extra["caption"] = caption
        return self.message(user_id, None, extra=extra, **kwargs)

    def voice(self, user_id: int, **kwargs: Any) -> Update:
        """Returns a voice-note update."""
        extra = {"voice": {"file_id": "v1", "file_unique_id": "uv1", "duration": 3}}
        return self.message(user_id, None, extra=extra, **kwargs)

    def sticker(self, user_id: int, **kwargs: Any) -> Update:
        """Returns a sticker update."""
        extra = {
            "sticker": {
                "file_id": "s1",
                "file_unique_id": "us1",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        }
        return self.message(user_id, None, extra=extra, **kwargs)

    def callback(
        self,
        user_id: int,
        data: str,
        message: FakeMessage,
        *,
        first_name: str = "Ana",
        update_id: int | None = None,
    ) -> Update:
        """Returns a button press on a message the fake server holds."""
        msg: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(message.sent_at.timestamp()),
            "chat": {"id": message.chat_id, "type": "private"},
            "from": {"id": 7000000001, "is_bot": True, "first_name": "Companion"},
            "text": message.text,
        }
        if message.reply_markup:
            msg["reply_markup"] = message.reply_markup
        query = {
            "id": str(next(self._ids)),
            "from": self._user(user_id, first_name, None),
            "chat_instance": str(message.chat_id),
            "message": msg,
            "data": data,
        }
        return self._wrap({"callback_query": query}, update_id)

    def my_chat_member(
        self, user_id: int, *, blocked: bool, update_id: int | None = None
    ) -> Update:
        """Returns the update Telegram sends when she blocks or unblocks the bot."""
        bot_user = {"id": 7000000001, "is_bot": True, "first_name": "Companion"}
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        payload = {
            "my_chat_member": {
                "chat": {"id": user_id, "type": "private"},
                "from": self._user(user_id, "Ana", None),
                "date": int(clock.now().timestamp()),
                # A "kicked" member needs until_date (0 = forever) or PTB cannot parse it.
                "old_chat_member": {"status": old, "user": bot_user, "until_date": 0}
                if old == "kicked"
                else {"status": old, "user": bot_user},
                "new_chat_member": {"status": new, "user": bot_user, "until_date": 0}
                if new == "kicked"
                else {"status": new, "user": bot_user},
            }
        }
        return self._wrap(payload, update_id)
