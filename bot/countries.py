"""Countries (content/countries.yaml) and emergency numbers (content/emergency_numbers.yaml)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.content import ContentError, load_yaml

OTHER_CODE = "ZZ"  # ISO 3166 user-assigned code: "another country"
MAX_ZONES = 8  # zone buttons per country (one per row); more would not fit one phone screen
_CODE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class ZoneChoice:
    """One time zone button: an IANA zone and the label she sees."""

    zone: str
    label: str


@dataclass(frozen=True)
class Country:
    """A country she can pick, with its zone choices and emergency number (None: default)."""

    code: str
    name: str
    emergency: str | None
    zones: tuple[ZoneChoice, ...]

    @property
    def is_other(self) -> bool:
        """Tells whether this is the "another country" entry."""
        return self.code == OTHER_CODE


def _zones(raw: list[dict[str, Any]], where: str) -> tuple[ZoneChoice, ...]:
    zones = tuple(ZoneChoice(zone=str(z["zone"]), label=str(z["label"])) for z in raw)
    for choice in zones:
        try:
            ZoneInfo(choice.zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ContentError(f"unknown time zone {choice.zone!r} in {where}") from exc
    return zones


@lru_cache(maxsize=1)
def emergency_numbers() -> dict[str, str]:
    """Loads `content/emergency_numbers.yaml`: ISO country code -> number to call."""
    raw = load_yaml("emergency_numbers.yaml") or {}
    # `crisis_lines` (thoughts of self-harm) is read by bot/crisis.py, not a country.
    numbers = {str(code): str(number) for code, number in raw.items() if code != "crisis_lines"}
    bad = [code for code in numbers if not _CODE.match(code)]
    if bad:
        raise ContentError(f"emergency_numbers.yaml: bad country codes {bad}")
    return numbers


@lru_cache(maxsize=1)
def all_countries() -> tuple[Country, ...]:
    """Loads every listed country (in button order); the "another country" entry is not in it."""
    raw = load_yaml("countries.yaml")
    numbers = emergency_numbers()
    found: list[Country] = []
    for entry in raw["countries"]:
        code = str(entry["code"])  # quote codes in YAML: a bare NO (Norway) reads as false
        zones = _zones(entry["zones"], f"countries.yaml ({code})")
        if not _CODE.match(code) or code == OTHER_CODE:
            raise ContentError(f"countries.yaml: bad country code {code!r}")
        if not 1 <= len(zones) <= MAX_ZONES:
            raise ContentError(f"countries.yaml: {code} needs 1 to {MAX_ZONES} zones")
        emergency = numbers.get(code)
        found.append(
            Country(
                code=code,
                name=str(entry["name"]),
                emergency=str(emergency) if emergency else None,
                zones=zones,
            )
        )
    codes = [c.code for c in found]
    if len(codes) != len(set(codes)):
        raise ContentError("countries.yaml: a country code is listed twice")
    return tuple(found)


@lru_cache(maxsize=1)
def other_country() -> Country:
    """Returns the "another country" entry: common zones by UTC offset, the study's number."""
    raw = load_yaml("countries.yaml")["other"]
    return Country(
        code=OTHER_CODE,
        name="",
        emergency=None,
        zones=_zones(raw["zones"], "countries.yaml (other)"),
    )


def country(code: str | None) -> Country | None:
    """Returns the country with this code (or the "another country" entry), if any."""
    if code == OTHER_CODE:
        return other_country()
    return next((c for c in all_countries() if c.code == code), None)


def emergency_number(*, country_code: str | None, default: str | None) -> str | None:
    """Returns her emergency number: her country's, else the study default."""
    found = country(country_code)
    if found is not None and found.emergency:
        return found.emergency
    return default


def utc_offset(zone: str, *, at: datetime) -> str:
    """Formats a zone's UTC offset at an instant as '+1', '-3' or '+5:30' ('' for UTC)."""
    offset = at.astimezone(ZoneInfo(zone)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return ""
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}" + (f":{rest:02d}" if rest else "")
