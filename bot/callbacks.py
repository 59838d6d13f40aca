"""Callback data: one typed codec per button family, used both to build and to parse.

Telegram hands back at most 64 bytes of whatever a button carried, and anybody can forge them.
A codec names its prefix and its fields; `parse` returns the typed values or None, never
raises: ids are ASCII digits within the range of a row id (`"²".isdigit()` is true in Python,
and `int("²")` fails), words match a small alphabet, and nothing extra may follow. Data that no
codec reads gets the "this button has expired" toast from the fallback, never silence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_BYTES = 64
# Ids in buttons are row ids: PostgreSQL INTEGER keys, so a forged larger number is refused
# here instead of failing inside the database driver.
MAX_ID = 2**31 - 1

_WORD = re.compile(r"[a-z0-9_]{1,24}")
_TOKEN = re.compile(r"[A-Za-z0-9_.+\-]{0,40}")  # answer values: "5", "+swelling", "done", ""


@dataclass(frozen=True)
class Part:
    """One field of a codec: its name and kind (`id`, `word`, `token` or a fixed choice)."""

    name: str
    kind: str = "word"
    choices: frozenset[str] = frozenset()
    pattern: str = ""  # kind "re": the field must match this whole

    def read(self, raw: str) -> Any:
        """Returns the typed value, or None when the raw text does not fit."""
        if self.kind == "id":
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
                return None
            value = int(raw)
            return value if value <= MAX_ID else None
        if self.kind == "token":
            return raw if _TOKEN.fullmatch(raw) else None
        if self.kind == "re":
            return raw if re.fullmatch(self.pattern, raw, flags=re.ASCII) else None
        if self.choices:
            return raw if raw in self.choices else None
        return raw if _WORD.fullmatch(raw) else None


def id_part(name: str) -> Part:
    """Returns a 64-bit id field."""
    return Part(name, "id")


def matching(name: str, pattern: str) -> Part:
    """Returns a field that must match a regular expression (ASCII only)."""
    return Part(name, "re", pattern=pattern)


def choice(name: str, *values: str) -> Part:
    """Returns a field that takes one of a few fixed words."""
    return Part(name, "choice", frozenset(values))


@dataclass(frozen=True)
class Codec:
    """A button family: `prefix:field:field...` with `optional` trailing fields."""

    prefix: str
    parts: tuple[Part, ...] = ()
    optional: int = 0  # how many trailing parts may be left out

    @property
    def pattern(self) -> str:
        """Returns the regular expression PTB routes this family's presses by."""
        return f"^{re.escape(self.prefix)}(:|$)"

    def build(self, *values: object) -> str:
        """Returns callback data for these values; refuses data Telegram would not carry."""
        data = ":".join([self.prefix, *(str(v) for v in values)])
        if len(data.encode()) > MAX_BYTES:
            raise ValueError(f"callback data longer than {MAX_BYTES} bytes")
        if self.parse(data) is None:
            raise ValueError(f"callback data does not fit its codec {self.prefix!r}")
        return data

    def parse(self, data: str | None) -> tuple[Any, ...] | None:
        """Returns the typed fields, or None for anything malformed, forged or too long."""
        if not data or len(data.encode()) > MAX_BYTES:
            return None
        if data == self.prefix:
            raw: list[str] = []
        elif data.startswith(self.prefix + ":"):
            raw = data[len(self.prefix) + 1 :].split(":")
        else:
            return None
        # A token may itself hold ":"-free text only, so the split is unambiguous.
        if not len(self.parts) - self.optional <= len(raw) <= len(self.parts):
            return None
        values = []
        for part, text in zip(self.parts, raw, strict=False):
            value = part.read(text)
            if value is None:
                return None
            values.append(value)
        return tuple(values)


def read_id(raw: str) -> int | None:
    """Reads a 64-bit id written in ASCII digits; None for anything else."""
    value = Part("id", "id").read(raw)
    return value if isinstance(value, int) else None


def any_codec_reads(codecs: list[Codec], data: str | None) -> bool:
    """Tells whether one of the codecs reads this data (tests and the fallback use it)."""
    return any(codec.parse(data) is not None for codec in codecs)
