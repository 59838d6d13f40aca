"""Pseudonyms: a keyed HMAC of the Telegram user id, so exports never carry the id itself."""

from __future__ import annotations

import hashlib
import hmac


def pseudonym_for(telegram_user_id: int, key: str) -> str:
    """Returns a stable 16-hex-character pseudonym for a Telegram user id."""
    digest = hmac.new(key.encode(), str(telegram_user_id).encode(), hashlib.sha256).hexdigest()
    return "p_" + digest[:16]
