"""A bot that parses each incoming update on its own, so one malformed update stops nothing.

PTB parses a whole getUpdates batch at once: one update it cannot read makes the batch fail,
the Updater asks for the same batch again at once (forever), and PTB logs the whole batch,
other patients' names and words included, at CRITICAL each time. `SafeBot` parses update by
update; an update it cannot read becomes a bare `Update(update_id=...)` that moves the polling
offset past it and matches no handler, and a WARNING names only its id and exception class.
`parse_update` applies the same rule to one update received by a webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast, overload

from telegram import Update

# PTB's own types for get_updates' signature, so the override matches it exactly (22.8).
from telegram._utils.defaultvalue import DEFAULT_NONE, DefaultValue
from telegram._utils.types import JSONDict, ODVInput, TimePeriod
from telegram.ext import BaseRateLimiter, Defaults, ExtBot
from telegram.request import BaseRequest

log = logging.getLogger(__name__)

RLARGS = TypeVar("RLARGS")  # the rate limiter's per-call arguments, as in ExtBot
# PTB's defaults for the Bot API and file URL prefixes (Telegram's own servers).
TELEGRAM_BOT_URL = "https://api.telegram.org/bot"
TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot"


class SafeBot(ExtBot[RLARGS]):
    """An ExtBot whose get_updates replaces each unreadable update with a bare Update."""

    __slots__ = ("_malformed_updates",)

    # As ExtBot's: without a rate limiter the bot is SafeBot[None], so callers need no annotation.
    @overload
    def __init__(
        self: SafeBot[None],
        token: str,
        base_url: str = TELEGRAM_BOT_URL,
        base_file_url: str = TELEGRAM_FILE_URL,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        private_key: bytes | None = None,
        private_key_password: bytes | None = None,
        defaults: Defaults | None = None,
        arbitrary_callback_data: bool | int = False,
        local_mode: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self: SafeBot[RLARGS],
        token: str,
        base_url: str = TELEGRAM_BOT_URL,
        base_file_url: str = TELEGRAM_FILE_URL,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        private_key: bytes | None = None,
        private_key_password: bytes | None = None,
        defaults: Defaults | None = None,
        arbitrary_callback_data: bool | int = False,
        local_mode: bool = False,
        rate_limiter: BaseRateLimiter[RLARGS] | None = None,
    ) -> None: ...

    def __init__(
        self,
        token: str,
        base_url: str = TELEGRAM_BOT_URL,
        base_file_url: str = TELEGRAM_FILE_URL,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        private_key: bytes | None = None,
        private_key_password: bytes | None = None,
        defaults: Defaults | None = None,
        arbitrary_callback_data: bool | int = False,
        local_mode: bool = False,
        rate_limiter: BaseRateLimiter[RLARGS] | None = None,
    ) -> None:
        super().__init__(
            token=token,
            base_url=base_url,
            base_file_url=base_file_url,
            request=request,
            get_updates_request=get_updates_request,
            private_key=private_key,
            private_key_password=private_key_password,
            defaults=defaults,
            arbitrary_callback_data=arbitrary_callback_data,
            local_mode=local_mode,
            rate_limiter=rate_limiter,
        )
        # Underscored: PTB freezes a bot's public attributes once it is built.
        self._malformed_updates = 0

    @property
    def malformed_updates(self) -> int:
        """Returns how many updates could not be parsed since start (for metrics)."""
        return self._malformed_updates

    def count_malformed(self) -> None:
        """Counts one update that could not be parsed."""
        self._malformed_updates += 1

    async def get_updates(
        self,
        offset: int | None = None,
        limit: int | None = None,
        timeout: TimePeriod | None = None,  # noqa: ASYNC109 (PTB's name for the long poll)
        allowed_updates: Sequence[str] | None = None,
        *,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
        api_kwargs: JSONDict | None = None,
    ) -> tuple[Update, ...]:
        """Fetches updates as `Bot.get_updates` does, then parses each one on its own."""
        data: JSONDict = {
            "timeout": timeout,
            "offset": offset,
            "limit": limit,
            "allowed_updates": allowed_updates,
        }
        # The same read timeout as PTB 22.8: the request's (or the caller's) plus the long poll.
        if isinstance(read_timeout, DefaultValue):
            base_timeout = self._request[0].read_timeout or 0
        else:
            base_timeout = read_timeout or 0
        poll_seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout or 0
        result = await self._post(
            "getUpdates",
            data,
            read_timeout=base_timeout + poll_seconds,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            api_kwargs=api_kwargs,
        )
        updates: list[Update] = []
        for position, raw in enumerate(cast("list[Any]", result or [])):
            update = parse_update(raw, self, position=position)
            if update is not None:
                # What ExtBot.get_updates adds: cached data for arbitrary callback buttons.
                self.insert_callback_data(update)
                updates.append(update)
        return tuple(updates)


def parse_update(data: Any, bot: ExtBot[Any], *, position: int | None = None) -> Update | None:
    """Parses one update; an unreadable one becomes a bare Update, or None without an id.

    The log names only the update id (or its position in the batch) and the exception class:
    the content and the exception's message may quote what a patient wrote.
    """
    update_id = data.get("update_id") if isinstance(data, dict) else None
    # bool is an int in Python, but never an update id.
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        _count(bot)
        where = f"at position {position}" if position is not None else "received"
        log.warning("Skipped an update %s with no readable update_id", where)
        return None
    try:
        update = Update.de_json(data, bot)
    except Exception as exc:  # any parse failure: the update must not stop the others
        _count(bot)
        log.warning(
            "Skipped malformed update %d: %s (content withheld)", update_id, type(exc).__name__
        )
        return Update(update_id=update_id)
    return update


def _count(bot: ExtBot[Any]) -> None:
    """Counts one unreadable update on the bot when it keeps count."""
    if isinstance(bot, SafeBot):
        bot.count_malformed()
