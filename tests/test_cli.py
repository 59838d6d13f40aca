"""`adherence-bot`: clear messages instead of tracebacks, migrations, invite links."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.cli import expiry_instant, main
from bot.devtools.bot_api_server import FakeBotApiServer, running_server
from bot.devtools.fake_telegram import FakeTelegram

SETTING_NAMES = [
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE_URL",
    "BOT_USERNAME",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "DATABASE_URL",
    "EMERGENCY_NUMBER",
    "PSEUDONYM_KEY",
    "OPEN_ENROLLMENT",
    "ADMIN_IDS",
    "COORDINATOR_IDS",
    "RESEARCHER_IDS",
    "COORDINATOR_CHAT_ID",
    "DEFAULT_TIMEZONE",
    "DEFAULT_CHECKIN_TIME",
    "QUIET_HOURS",
]
GOOD_TOKEN = "123456:AAE-good_token"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean environment in an empty folder (no .env), with a valid study configuration."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    values = {
        "EMERGENCY_NUMBER": "112",
        "PSEUDONYM_KEY": "a-test-pseudonym-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield values


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API over HTTP that only knows GOOD_TOKEN."""
    with running_server(FakeTelegram(valid_token=GOOD_TOKEN, username="study_test_bot")) as s:
        yield s


def test_run_without_token_says_where_to_get_and_put_one(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "@BotFather" in err and "/newbot" in err
    assert ".env.example" in err and "TELEGRAM_BOT_TOKEN=" in err
    assert "make demo" in err
    assert "Traceback" not in err


def test_run_with_malformed_token_is_refused_before_any_request(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "not a token")
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not look like a bot token" in err
    assert "@BotFather" in err and "make demo" in err


def test_run_with_token_rejected_at_getme_explains_and_exits(
    env: dict[str, str],
    server: FakeBotApiServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:AAE-revoked")
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", server.root_url)
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "rejected TELEGRAM_BOT_TOKEN" in err
    assert "@BotFather" in err and "make demo" in err
    assert [m for m, _ in server.fake.calls] == ["getMe"]
    assert not Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_run_against_unreachable_server_explains_without_the_token(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://127.0.0.1:9/bot")  # discard port
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Could not reach the Telegram Bot API at http://127.0.0.1:9" in err
    assert GOOD_TOKEN not in err


def test_run_explains_missing_emergency_number_and_pseudonym_key(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.delenv("EMERGENCY_NUMBER")
    monkeypatch.setenv("PSEUDONYM_KEY", "change-me")
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "EMERGENCY_NUMBER is not set" in err
    assert "PSEUDONYM_KEY is not set" in err and "secrets.token_urlsafe" in err


def test_invalid_setting_names_the_variable_without_a_traceback(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPEN_ENROLLMENT", "maybe")
    monkeypatch.setenv("ADMIN_IDS", "12,abc")
    monkeypatch.setenv("DEFAULT_TIMEZONE", "Mars/Olympus")
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Setting OPEN_ENROLLMENT is not valid" in err
    assert "Setting ADMIN_IDS is not valid: must be comma-separated whole numbers" in err
    assert "Setting DEFAULT_TIMEZONE is not valid: unknown IANA time zone" in err
    assert ".env.example" in err


def test_webhook_mode_needs_a_secret(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.org/telegram")
    code = main(["run"])
    assert code == 2
    assert "WEBHOOK_SECRET is not" in capsys.readouterr().err


def test_console_script_without_token_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    script = Path(sys.executable).parent / "adherence-bot"
    done = subprocess.run(
        [str(script), "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "@BotFather" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_db_check_reports_an_empty_database_as_different(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "check"]) == 1
    err = capsys.readouterr().err
    assert "differs from the models" in err and "add_table" in err


def test_db_upgrade_brings_the_database_to_head(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.migrate import current_revision, head_revision

    assert main(["db", "upgrade"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert current_revision(env["DATABASE_URL"]) == head_revision()


def _invites(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = text(
                "SELECT invite.code, invite.site_study_id, invite.max_uses, invite.uses, "
                "invite.expires_at, cohort.code AS cohort FROM invite "
                "JOIN cohort ON cohort.id = invite.cohort_id"
            )
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        engine.dispose()


def test_invite_create_prints_a_deep_link_and_stores_the_invite(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_USERNAME", "@study_test_bot")
    args = ["invite", "create", "--cohort", "site-a", "--study-id", "A-017", "--uses", "3"]
    assert main([*args, "--expires", "2026-03-20"]) == 0
    out = capsys.readouterr().out
    link = re.search(r"https://t\.me/study_test_bot\?start=([A-Za-z0-9_-]+)", out)
    assert link is not None
    assert 12 <= len(link.group(1)) <= 64
    [invite] = _invites(env["DATABASE_URL"])
    assert invite["code"] == link.group(1)
    assert invite["cohort"] == "site-a"
    assert invite["site_study_id"] == "A-017"
    assert (invite["max_uses"], invite["uses"]) == (3, 0)
    assert str(invite["expires_at"]).startswith("2026-03-21 00:00")  # London in March: UTC+0


def test_second_invite_reuses_the_cohort(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["invite", "create", "--cohort", "site-a"]) == 0
    assert main(["invite", "create", "--cohort", "site-a"]) == 0
    invites = _invites(env["DATABASE_URL"])
    assert [i["cohort"] for i in invites] == ["site-a", "site-a"]
    assert invites[0]["code"] != invites[1]["code"]


def test_invite_without_token_or_username_shows_a_placeholder_and_a_note(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["invite", "create", "--cohort", "site-b"]) == 0
    out = capsys.readouterr().out
    assert "https://t.me/<your_bot_username>?start=" in out
    assert "BOT_USERNAME" in out


def test_invite_with_token_takes_the_username_from_getme(
    env: dict[str, str],
    server: FakeBotApiServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", server.root_url + "/bot")
    assert main(["invite", "create", "--cohort", "site-c"]) == 0
    assert "https://t.me/study_test_bot?start=" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires", "31/03/2026"], "must be a date like"),
        (["--expires", "2025-12-31"], "already in the past"),
        (["--uses", "0"], "--uses must be 1 or more"),
    ],
)
def test_invite_refuses_bad_options_without_creating_anything(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["invite", "create", "--cohort", "site-a", *args]) == 2
    assert message in capsys.readouterr().err
    assert not Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_expiry_is_the_end_of_the_day_in_the_study_zone() -> None:
    from datetime import UTC, date, datetime

    summer = expiry_instant(date(2026, 7, 1), "Europe/Madrid")
    assert summer == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)


def test_env_example_documents_every_setting_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import Settings
    from bot.paths import REPO_DIR

    example = REPO_DIR / ".env.example"
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example.read_text(), flags=re.M))
    # Replaced settings are read only to say what replaced them; they are not documented.
    replaced = {"CONTACT_EXPECTATION"}
    fields = {name.upper() for name in Settings.model_fields} - replaced
    for name in fields | replaced:
        monkeypatch.delenv(name, raising=False)
    assert fields - names == set(), "settings missing from .env.example"
    assert names - fields == set(), ".env.example names unknown settings"
    loaded = Settings(_env_file=example)  # type: ignore[call-arg]
    assert loaded.problems_for_run() == [
        "token_missing",
        "emergency_number_missing",
        "pseudonym_key_missing",
    ]


def test_run_with_the_replaced_contact_expectation_says_what_replaced_it(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTACT_EXPECTATION", "within 2 working days")
    code = main(["run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "CONTACT_WITHIN_WORKING_DAYS" in err and "no longer exists" in err


def test_console_script_builds_with_the_collector_paused_and_serves_with_it_on(
    env: dict[str, str], server: FakeBotApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bot.startup`: no collections while start-up builds its objects; on for serving."""
    from bot import app as app_module
    from bot import cli, runtime
    from bot.__main__ import main as console_script

    seen: dict[str, object] = {}
    build = app_module.build_application

    def watched_build(*args: Any, **kwargs: Any) -> Any:
        seen["while_building"] = gc.isenabled()
        return build(*args, **kwargs)

    async def serving(*_args: object) -> None:  # where polling would start
        seen["while_serving"] = gc.isenabled()
        seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(app_module, "build_application", watched_build)
    monkeypatch.setattr(runtime, "run", serving)
    # `run` configures the root logger for the process; here that would outlive the test.
    monkeypatch.setattr(cli, "_configure_logging", lambda *_args: None)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", server.root_url)
    monkeypatch.setattr(sys, "argv", ["adherence-bot", "run"])
    try:
        assert console_script() == 0
    finally:
        gc.unfreeze()
    assert seen["while_building"] is False
    assert seen["while_serving"] is True and int(str(seen["frozen"])) > 10_000
    assert gc.isenabled()


def test_console_script_runs_other_commands_with_the_collector_on(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import cli
    from bot.__main__ import main as console_script

    seen: list[bool] = []
    monkeypatch.setattr(cli, "cmd_audit", lambda _args: seen.append(gc.isenabled()) or 0)
    monkeypatch.setattr(sys, "argv", ["adherence-bot", "audit"])
    try:
        assert console_script() == 0
    finally:
        gc.unfreeze()
    assert seen == [True] and gc.isenabled()
