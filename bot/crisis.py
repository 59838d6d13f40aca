"""Crisis lines for thoughts of self-harm, by country (`crisis_lines` in emergency_numbers.yaml).

Shown together with her emergency number, never instead of it. Lines tagged [U] in the
evidence are marked `confirm_before_release` in the content file until someone checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from bot.content import ContentError, load_yaml


@dataclass(frozen=True)
class CrisisLine:
    """One country's crisis line: how the bot names it, and where the number comes from."""

    country: str
    says: str
    tag: str
    source: str
    confirm_before_release: bool


@lru_cache(maxsize=1)
def crisis_lines() -> dict[str, CrisisLine]:
    """Loads every crisis line, keyed by ISO country code."""
    raw = (load_yaml("emergency_numbers.yaml") or {}).get("crisis_lines") or {}
    lines = {}
    for code, spec in raw.items():
        if str(spec.get("tag")) not in ("V", "P", "U"):
            raise ContentError(f"crisis line {code}: tag must be V, P or U")
        if not spec.get("source"):
            raise ContentError(f"crisis line {code}: a source is required")
        lines[str(code)] = CrisisLine(
            country=str(code),
            says=str(spec["says"]),
            tag=str(spec["tag"]),
            source=str(spec["source"]),
            confirm_before_release=bool(spec.get("confirm_before_release", False)),
        )
    return lines


def crisis_line(country_code: str | None) -> CrisisLine | None:
    """Returns her country's crisis line, if one is listed."""
    return crisis_lines().get(country_code or "")


def unconfirmed() -> list[str]:
    """Returns the countries whose crisis line must still be confirmed before release."""
    return sorted(c for c, line in crisis_lines().items() if line.confirm_before_release)
