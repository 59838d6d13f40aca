"""Settings from the environment and `.env` (see `.env.example` for every variable)."""

from __future__ import annotations

import re
from datetime import time
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.paths import data_dir

TOKEN_PATTERN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message says how to fix it."""


def parse_hhmm(value: str) -> time:
    """Parses 'HH:MM' (24 h) into a time, raising ValueError otherwise."""
    match = _HHMM.match(value.strip())
    if not match:
        raise ValueError(f"expected HH:MM, got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def _int_list(value: object) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    return [int(part) for part in str(value).replace(";", ",").split(",") if part.strip()]


class Settings(BaseSettings):
    """All runtime configuration; one instance per process."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    # Telegram
    telegram_bot_token: str | None = None
    telegram_api_base_url: str | None = None
    # Only for `invite create` without a token: the bot's @username, to build t.me links.
    bot_username: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # The path Telegram posts to; by default the path of WEBHOOK_URL (e.g. /telegram).
    webhook_path: str | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443

    # Storage
    database_url: str = Field(default_factory=lambda: f"sqlite:///{data_dir() / 'adherence.db'}")

    # Study
    study_name: str = "Joint Pain Companion study"
    emergency_number: str | None = None
    open_enrollment: bool = False
    default_timezone: str = "Europe/London"
    default_checkin_time: str = "19:00"
    default_locale: str = "en"

    # Roles (comma-separated Telegram user ids)
    admin_ids: Annotated[list[int], NoDecode] = []
    coordinator_ids: Annotated[list[int], NoDecode] = []
    researcher_ids: Annotated[list[int], NoDecode] = []
    coordinator_chat_id: int | None = None
    # A participant who asks the care team to contact her is told to expect it within this
    # many working days (a whole number); her request is due by then and escalated after.
    contact_within_working_days: int = Field(default=2, ge=1, le=20)
    # Replaced by CONTACT_WITHIN_WORKING_DAYS; still read so `run` can say so plainly.
    contact_expectation: str | None = None
    # How she reaches the care team, ending every message the team sends her (a phone number).
    care_team_contact: str | None = None
    # When the team reads alerts: outside these hours urgent alerts wait for the start of the
    # next covered hours. Empty: alerts are delivered at any hour.
    coverage_hours: str = ""
    coverage_days: str = "0123456"  # Monday=0
    coverage_timezone: str | None = None
    # The daily digest of non-urgent alerts, at this local time (COVERAGE_TIMEZONE).
    digest_time: str = "08:30"

    # Privacy
    pseudonym_key: str | None = None
    # /export in Telegram (researchers): off by default, the file would sit on Telegram's
    # servers; the CLI `adherence-bot export` always works.
    telegram_export_enabled: bool = False

    # Check-in timing
    reminder_delay_minutes: int = 120
    checkin_window_hours: int = 6
    quiet_hours: str = "21:00-08:00"

    # Dispatcher and sender
    dispatch_interval_seconds: float = 10.0
    # Telegram allows about 30 a second; 29 runs close to it (1,000 broadcast messages in
    # about 35 s, bench/broadcast_bench.py) with a little room for clock jitter.
    global_rate_per_second: float = 29.0
    # A worker's claim on outbox rows; renewed every few seconds while it is alive, so after a
    # crash the rows it had not sent go out again within seconds.
    send_lease_seconds: int = 10

    # Health and metrics (GET /healthz, GET /metrics); port 0 turns the server off.
    health_listen: str = "127.0.0.1"
    health_port: int = 8090

    @field_validator("admin_ids", "coordinator_ids", "researcher_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> list[int]:
        try:
            return _int_list(value)
        except ValueError as exc:
            raise ValueError("must be comma-separated whole numbers (Telegram user ids)") from exc

    @field_validator("coordinator_chat_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("default_timezone", "coverage_timezone")
    @classmethod
    def _known_zone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and info.field_name == "coverage_timezone":
            return None  # empty: the team works in DEFAULT_TIMEZONE
        try:
            ZoneInfo(value or "")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("default_checkin_time", "digest_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        start, _, end = value.replace("–", "-").partition("-")
        parse_hhmm(start)
        parse_hhmm(end)
        return value.replace("–", "-")

    @field_validator("coverage_hours")
    @classmethod
    def _coverage(cls, value: str) -> str:
        if not value.strip():
            return ""
        start, _, end = value.replace("–", "-").partition("-")
        if parse_hhmm(start) >= parse_hhmm(end):
            raise ValueError("must be HH:MM-HH:MM within one day, e.g. 08:00-18:00")
        return value.replace("–", "-")

    @field_validator("coverage_days")
    @classmethod
    def _days(cls, value: str) -> str:
        digits = value.replace(",", "").replace(" ", "")
        if not digits or any(ch not in "0123456" for ch in digits):
            raise ValueError("must be weekday digits 0-6 (Monday=0), e.g. 01234")
        return digits

    @field_validator("health_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a TCP port from 1 to 65535, or 0 to turn it off")
        return value

    @property
    def quiet_window(self) -> tuple[time, time]:
        """Returns quiet hours as (start, end) local times; may wrap past midnight."""
        start, _, end = self.quiet_hours.partition("-")
        return parse_hhmm(start), parse_hhmm(end)

    @property
    def api_base_url(self) -> str | None:
        """Returns the `.../bot` prefix PTB expects, given either the server root or the prefix."""
        if not self.telegram_api_base_url:
            return None
        base = self.telegram_api_base_url.rstrip("/")
        return base if base.endswith("/bot") else base + "/bot"

    @property
    def api_base_file_url(self) -> str | None:
        """Returns the `.../file/bot` prefix for a self-hosted Bot API server."""
        base = self.api_base_url
        return None if base is None else base[: -len("/bot")] + "/file/bot"

    @property
    def coverage_window(self) -> tuple[time, time] | None:
        """Returns covered hours as (start, end) local times, or None for every hour."""
        if not self.coverage_hours:
            return None
        start, _, end = self.coverage_hours.partition("-")
        return parse_hhmm(start), parse_hhmm(end)

    @property
    def coverage_weekdays(self) -> frozenset[int]:
        """Returns the covered weekdays (Monday=0)."""
        return frozenset(int(ch) for ch in self.coverage_days)

    def receivers_configured(self) -> bool:
        """Tells whether anybody would receive a request for contact."""
        return self.coordinator_chat_id is not None or bool(self.coordinator_ids)

    def problems_for_run(self) -> list[str]:
        """Lists what must be fixed before the real bot may start (empty when all is well)."""
        problems: list[str] = []
        token = self.telegram_bot_token
        if not token:
            problems.append("token_missing")
        elif not TOKEN_PATTERN.match(token):
            problems.append("token_malformed")
        if not self.emergency_number:
            problems.append("emergency_number_missing")
        if not self.pseudonym_key or self.pseudonym_key in {"change-me", "changeme"}:
            problems.append("pseudonym_key_missing")
        if self.contact_expectation:
            problems.append("contact_expectation_replaced")
        return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Returns the process-wide settings, read once."""
    return Settings()
