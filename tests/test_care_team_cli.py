"""`adherence-bot alerts`, `grant`, `revoke`, `roles` and `audit`: the care team from a terminal.

Each test calls `bot.cli.main([...])` with the environment pointing DATABASE_URL at a SQLite file
in a fresh folder. Rows come from factories, or from the real bot (the harness and a dispatcher
tick against the fake Bot API) when what matters is what Telegram answered.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlmodel import select

from bot import clock
from bot.cli import main
from bot.config import Settings
from bot.db import Database
from bot.models import Alert, AlertStatus, AuditEvent, Participant, Role, StaffRole
from bot.roles import staff_code
from tests.conftest import PATIENT, START, Harness, make_harness
from tests.factories import make_active_participant

KEY = "test-pseudonym-key"  # the harness's key, so staff codes match the bot's
GROUP = -1001234500000
NURSE_A = 5_100_000_001
NURSE_B = 5_100_000_002  # never pressed Start
NURSE_C = 5_100_000_003  # blocked the bot
ADMIN = 5_100_000_009
_T = TypeVar("_T")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean environment in an empty folder (no .env): a SQLite file and a care team."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'team.db'}",
        "EMERGENCY_NUMBER": "112",
        "PSEUDONYM_KEY": KEY,
        "DEFAULT_TIMEZONE": "Europe/London",
        "ADMIN_IDS": str(ADMIN),
        "COORDINATOR_IDS": f"{NURSE_A},{NURSE_B}",
        "COORDINATOR_CHAT_ID": str(GROUP),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield values


def _run(coro: Awaitable[_T]) -> _T:
    """Runs a set-up step on its own loop (the CLI, called afterwards, runs its own)."""

    async def wrapped() -> _T:
        return await coro

    return asyncio.run(wrapped())


async def _with_bot(url: str, story: Callable[[Harness], Awaitable[None]], **team: Any) -> None:
    """Runs a story through the real bot (handlers, dispatcher, fake Bot API) on this database."""
    h = await make_harness(url, **team)
    try:
        await story(h)
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def _red_flag(h: Harness, telegram_user_id: int = PATIENT) -> None:
    """She answers a check-in with a red-flag symptom (a fall); the alert is raised."""
    await make_active_participant(h.db, telegram_user_id=telegram_user_id)
    await h.command(telegram_user_id, "checkin")
    for label in ("Yes", "5", "Not stiff", "3", "I had a fall", "Done"):
        await h.press(telegram_user_id, label)


async def _rows(url: str, model: Any) -> list[Any]:
    db = Database(url)
    try:
        async with db.session() as session:
            return list((await session.exec(select(model))).all())
    finally:
        await db.dispose()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _line_of(out: str, alert_id: int) -> str:
    """Returns the table line of one alert (the line that starts with its id)."""
    return next(line for line in out.splitlines() if line.split()[:1] == [str(alert_id)])


# ---------------------------------------------------------------- adherence-bot alerts


async def _three_alerts(url: str) -> dict[str, int]:
    """Three participants: a delivered, acknowledged red flag; an undelivered contact request;
    a resolved alert."""
    db = Database(url)
    await db.create_all()
    ids: dict[str, int] = {}
    try:
        async with db.session() as session:
            people = []
            for n, site in ((1, "A-017"), (2, None), (3, None)):
                person = Participant(pseudonym=f"p_person{n}", site_study_id=site, status="active")
                session.add(person)
                people.append(person)
            await session.flush()
            red = Alert(
                participant_id=people[0].id or 0,
                kind="red_flag",
                status=AlertStatus.acknowledged,
                count=2,
                delivered_at=START + timedelta(minutes=1),
                acknowledged_by="staff:s_0123456789",
            )
            contact = Alert(
                participant_id=people[1].id or 0,
                kind="stop_intent",
                contact_requested=True,
                due_by=START + timedelta(days=2, hours=14, minutes=59),
                notify_pending=True,
            )
            closed = Alert(
                participant_id=people[2].id or 0,
                kind="severe_pain",
                status=AlertStatus.closed,
                closed_reason="resolved",
                delivered_at=START,
            )
            for name, alert in (("red", red), ("contact", contact), ("closed", closed)):
                session.add(alert)
                await session.flush()
                ids[name] = alert.id or 0
    finally:
        await db.dispose()
    return ids


def test_alerts_lists_open_ones_with_who_what_when_delivery_status_and_contact_due_by(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _run(_three_alerts(env["DATABASE_URL"]))
    code, out, err = _cli(capsys, "alerts")
    assert code == 0, err
    assert "Open and acknowledged alerts: 2 (times in Europe/London)" in out
    header = out.splitlines()[1].split()
    assert header[:2] == ["ID", "Participant"] and "Delivered" in header and "Status" in header
    red = _line_of(out, ids["red"])
    for cell in ("p_person1", "A-017", "red_flag", "yes", "2026-01-12 09:01", "acknowledged"):
        assert cell in red
    contact = _line_of(out, ids["contact"])
    for cell in ("p_person2", "stop_intent", "NOT DELIVERED", "open", "2026-01-14 23:59"):
        assert cell in contact
    assert "OVERDUE" not in contact
    assert str(ids["closed"]) not in [line.split()[0] for line in out.splitlines()[2:]]

    code, out, _ = _cli(capsys, "alerts", "--all")
    assert code == 0 and "All alerts: 3" in out
    assert "closed" in _line_of(out, ids["closed"]) and "severe_pain" in out

    clock.advance(timedelta(days=3))  # her request is now past its due-by
    code, out, _ = _cli(capsys, "alerts")
    assert "2026-01-14 23:59 OVERDUE" in _line_of(out, ids["contact"])


def test_alerts_in_an_empty_database_says_there_are_none(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, out, _ = _cli(capsys, "alerts")
    assert code == 0 and "No open or acknowledged alerts" in out
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 0 and "Nothing was lost" in out


def test_undelivered_shows_an_alert_the_group_never_got_because_the_bot_was_removed(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    async def story(h: Harness) -> None:
        h.fake.fail_next(
            "sendMessage",
            chat_id=GROUP,
            status=403,
            description="Forbidden: bot was kicked from the supergroup chat",
        )
        await _red_flag(h)
        await h.tick()
        assert not h.fake.chat(GROUP)

    url = env["DATABASE_URL"]
    _run(_with_bot(url, story, coordinator_chat_id=GROUP))
    [alert] = _run(_rows(url, Alert))
    code, out, err = _cli(capsys, "alerts", "--undelivered")
    assert code == 1, err  # something needs a person (a cron job can tell)
    assert "Alerts that did not reach the care team: 1" in out
    assert "NOT DELIVERED" in _line_of(out, alert.id or 0)
    assert f"the alert to chat {GROUP}: NOT DELIVERED. The bot is no longer in that group" in out
    assert "(Telegram said: Forbidden: " in out and "bot was kicked from the supergroup" in out
    assert "call her" in out
    code, out, _ = _cli(capsys, "alerts")
    assert code == 0 and "NOT DELIVERED" in _line_of(out, alert.id or 0)


def test_undelivered_names_a_coordinator_who_never_started_or_blocked_even_when_another_got_it(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COORDINATOR_CHAT_ID")
    monkeypatch.setenv("COORDINATOR_IDS", f"{NURSE_A},{NURSE_B},{NURSE_C}")

    async def story(h: Harness) -> None:
        h.fake.fail_next(
            "sendMessage",
            chat_id=NURSE_B,
            status=403,
            description="Forbidden: bot can't initiate conversation with a user",
        )
        h.fake.block(NURSE_C)
        await _red_flag(h)
        await h.tick()
        assert len(h.fake.chat(NURSE_A)) == 1

    url = env["DATABASE_URL"]
    _run(_with_bot(url, story, coordinator_ids=[NURSE_A, NURSE_B, NURSE_C]))
    [alert] = _run(_rows(url, Alert))
    assert alert.delivered_at is not None  # nurse A has it ...
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 1  # ... but two of the three copies are lost, and that is not silent
    assert "2026-01-12 09:00" in _line_of(out, alert.id or 0)
    assert f"the alert to chat {NURSE_B}: NOT DELIVERED. That person never pressed Start" in out
    assert f"the alert to chat {NURSE_C}: NOT DELIVERED. That person blocked the bot" in out
    assert f"to chat {NURSE_A}" not in out


def test_a_failed_copy_sent_again_successfully_to_the_same_chat_is_no_longer_listed(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    async def story(h: Harness) -> None:
        h.fake.fail_next(
            "sendMessage", chat_id=GROUP, status=400, description="Bad Request: chat not found"
        )
        await _red_flag(h)
        await h.tick()
        assert not h.fake.chat(GROUP)
        clock.advance(timedelta(hours=2, minutes=1))  # nobody acknowledged: it is sent again
        await h.tick()
        assert "Still open" in h.fake.chat(GROUP)[0].text

    _run(_with_bot(env["DATABASE_URL"], story, coordinator_chat_id=GROUP))
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 0 and "Nothing was lost" in out


def test_an_urgent_alert_held_until_covered_hours_shows_when_it_goes_out(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVERAGE_HOURS", "10:00-18:00")  # START is 09:00 in London

    async def story(h: Harness) -> None:
        await _red_flag(h)
        await h.tick()
        assert not h.fake.chat(GROUP)

    _run(
        _with_bot(
            env["DATABASE_URL"], story, coordinator_chat_id=GROUP, coverage_hours="10:00-18:00"
        )
    )
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 1
    assert f"the alert to chat {GROUP}: waiting; it goes out at 2026-01-12 10:00" in out


async def _quiet_alerts(url: str, *kinds: tuple[str, dict[str, Any]]) -> None:
    """Alerts of one participant that no message was recorded for (kind, fields)."""
    db = Database(url)
    await db.create_all()
    try:
        async with db.session() as session:
            person = Participant(pseudonym="p_quiet", status="active")
            session.add(person)
            await session.flush()
            for kind, fields in kinds:
                session.add(Alert(participant_id=person.id or 0, kind=kind, **fields))
    finally:
        await db.dispose()


def test_alerts_never_sent_say_why_waiting_for_the_summary_or_for_the_next_round(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _run(
        _quiet_alerts(
            env["DATABASE_URL"],
            ("therapy_change", {"urgent": False}),
            ("red_flag", {"notify_pending": True}),
        )
    )
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 1 and "Alerts that did not reach the care team: 2" in out
    assert "not urgent: it goes in the next daily summary, at 08:30 (Europe/London)" in out
    assert "not sent yet: the bot sends it at its next round" in out


def test_an_alert_with_nobody_to_send_it_to_is_not_lost_silently(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("COORDINATOR_IDS", "COORDINATOR_CHAT_ID"):
        monkeypatch.delenv(name)
    _run(_quiet_alerts(env["DATABASE_URL"], ("stop_intent", {"last_notified_at": START})))
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 1
    assert "nobody to send it to: there was no coordinators' group (COORDINATOR_CHAT_ID)" in out


async def _digest_line(h: Harness) -> None:
    """A line for the daily summary (not urgent, raised at 07:00), then the dispatcher's rounds
    at 09:00, after DIGEST_TIME (08:30): today's summary is queued and sent."""
    person = await make_active_participant(h.db)
    early = START - timedelta(hours=2)
    async with h.db.session() as session:
        session.add(
            Alert(participant_id=person.id or 0, kind="worsening", urgent=False, created_at=early)
        )
    await h.tick()
    await h.tick()


def test_a_line_of_the_daily_summary_that_reached_the_group_is_not_listed(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    async def story(h: Harness) -> None:
        await _digest_line(h)
        assert len(h.fake.chat(GROUP)) == 1

    _run(_with_bot(env["DATABASE_URL"], story, coordinator_chat_id=GROUP))
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 0 and "Nothing was lost" in out
    code, out, _ = _cli(capsys, "alerts")
    [line] = [x for x in out.splitlines() if "worsening" in x]
    created, delivered = "2026-01-12 07:00", "2026-01-12 09:00"  # raised, then in the summary
    assert f"{created}  {delivered}" in line and "NOT DELIVERED" not in line


def test_a_daily_summary_the_group_never_got_lists_its_lines_with_the_reason(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    async def story(h: Harness) -> None:
        h.fake.fail_next(
            "sendMessage",
            chat_id=GROUP,
            status=403,
            description="Forbidden: bot is not a member of the supergroup chat",
        )
        await _digest_line(h)
        assert not h.fake.chat(GROUP)

    _run(_with_bot(env["DATABASE_URL"], story, coordinator_chat_id=GROUP))
    code, out, _ = _cli(capsys, "alerts", "--undelivered")
    assert code == 1
    assert f"the daily summary to chat {GROUP}: NOT DELIVERED. The bot is no longer" in out


# ---------------------------------------------------------------- grant, revoke, roles


def _staff(url: str) -> tuple[list[StaffRole], list[AuditEvent]]:
    return _run(_rows(url, StaffRole)), _run(_rows(url, AuditEvent))


def test_grant_and_revoke_change_roles_in_the_database_and_are_audited_as_cli(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = env["DATABASE_URL"]
    assert main(["db", "upgrade"]) == 0
    new = 5_100_000_050
    code_name = staff_code(new, KEY)
    capsys.readouterr()

    code, out, err = _cli(capsys, "grant", str(new), "coordinator")
    assert code == 0, err
    assert f"{new} (staff code {code_name}) is now coordinator" in out
    [row], [event] = _staff(url)
    assert (row.telegram_user_id, row.role, row.granted_by) == (new, Role.coordinator, "cli")
    assert (event.actor, event.action) == ("cli", "role_granted")
    assert (event.subject, event.detail) == (f"staff:{code_name}", "role=coordinator")
    assert str(new) not in f"{event.subject} {event.detail}"  # never a Telegram id

    code, out, _ = _cli(capsys, "grant", str(new), "coordinator")
    assert code == 0 and "already coordinator. Nothing was changed." in out
    assert len(_staff(url)[1]) == 1

    code, out, _ = _cli(capsys, "revoke", str(new), "coordinator")
    assert code == 0 and "is no longer coordinator" in out
    [row], events = _staff(url)
    assert row.revoked_at is not None and row.revoked_by == "cli"
    assert [e.action for e in events] == ["role_granted", "role_revoked"]

    code, out, _ = _cli(capsys, "revoke", str(new), "coordinator")
    assert code == 0 and "is not coordinator" in out
    assert len(_staff(url)[1]) == 2


def test_a_role_from_the_settings_cannot_be_revoked_by_command(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = env["DATABASE_URL"]
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, _, err = _cli(capsys, "revoke", str(NURSE_A), "coordinator")
    assert code == 2
    assert "through the settings (COORDINATOR_IDS in .env)" in err
    assert _staff(url) == ([], [])


@pytest.mark.parametrize(
    ("telegram_id", "role", "says"),
    [
        ("abc", "coordinator", "is not a Telegram user id"),
        ("-1001234500000", "coordinator", "is not a Telegram user id"),  # a group, not a person
        ("0", "coordinator", "is not a Telegram user id"),
        ("٣٣٣", "coordinator", "is not a Telegram user id"),  # digits, but not ASCII ones
        ("99999999999999999999", "coordinator", "is not a Telegram user id"),
        ("333", "nurse", "is not a role"),
        ("333", "Admin", "is not a role"),
    ],
)
def test_grant_refuses_bad_input_with_exit_code_2_and_changes_nothing(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    telegram_id: str,
    role: str,
    says: str,
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    for command in ("grant", "revoke"):
        code, _, err = _cli(capsys, command, telegram_id, role)
        assert code == 2 and says in err and "Traceback" not in err
    assert _staff(env["DATABASE_URL"]) == ([], [])


def test_roles_lists_each_member_of_staff_with_id_code_role_and_where_it_comes_from(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    researcher, gone = 5_100_000_060, 5_100_000_061
    assert main(["grant", str(researcher), "researcher"]) == 0
    assert main(["grant", str(gone), "coordinator"]) == 0
    assert main(["revoke", str(gone), "coordinator"]) == 0
    capsys.readouterr()

    code, out, err = _cli(capsys, "roles")
    assert code == 0, err
    assert "The care team: 4 people" in out
    lines = out.splitlines()
    assert lines[1].split() == ["Telegram", "id", "Staff", "code", "Role", "From"]
    expected = [
        (ADMIN, "admin", "the settings (ADMIN_IDS)"),
        (NURSE_A, "coordinator", "the settings (COORDINATOR_IDS)"),
        (NURSE_B, "coordinator", "the settings (COORDINATOR_IDS)"),
        (researcher, "researcher", "granted 2026-01-12 09:00 by cli"),
    ]
    for user, role, source in expected:
        [line] = [x for x in lines if x.startswith(str(user))]
        assert staff_code(user, KEY) in line and role in line and line.endswith(source)
    assert str(gone) not in out  # a revoked role is not a role
    assert f"Alerts go to the care team's group (COORDINATOR_CHAT_ID {GROUP})" in out


def test_roles_warns_when_nobody_would_receive_alerts(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("COORDINATOR_IDS", "COORDINATOR_CHAT_ID", "ADMIN_IDS"):
        monkeypatch.delenv(name)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, out, err = _cli(capsys, "roles")
    assert code == 0
    assert "Nobody has a role yet" in out
    assert "Nobody receives alerts" in err


def test_grant_and_roles_need_the_pseudonym_key_that_names_staff(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PSEUDONYM_KEY")
    for argv in (["grant", "333", "coordinator"], ["revoke", "333", "admin"], ["roles"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "PSEUDONYM_KEY is not set" in err


# ---------------------------------------------------------------- audit


async def _audit_trail(url: str) -> None:
    db = Database(url)
    await db.create_all()
    try:
        async with db.session() as session:
            for minutes, action in ((0, "export"), (5, "role_granted"), (10, "data_deleted")):
                session.add(
                    AuditEvent(
                        at=START + timedelta(minutes=minutes),
                        actor="staff:s_0123456789",
                        action=action,
                        subject="p_0011223344556677",
                        detail=f"n={minutes}",
                    )
                )
    finally:
        await db.dispose()


def test_audit_lists_the_newest_events_first_and_honours_limit(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_audit_trail(env["DATABASE_URL"]))
    code, out, _ = _cli(capsys, "audit")
    assert code == 0
    assert "the newest 3 of 3 events, newest first (times in Europe/London)" in out
    lines = out.splitlines()
    assert lines[1].split() == ["Time", "Actor", "Action", "Subject", "Detail"]
    assert [line.split()[3] for line in lines[2:]] == ["data_deleted", "role_granted", "export"]
    assert lines[2].split() == [
        "2026-01-12",
        "09:10",
        "staff:s_0123456789",
        "data_deleted",
        "p_0011223344556677",
        "n=10",
    ]
    code, out, _ = _cli(capsys, "audit", "--limit", "1")
    assert code == 0 and "the newest 1 of 3" in out and len(out.splitlines()) == 3
    code, _, err = _cli(capsys, "audit", "--limit", "0")
    assert code == 2 and "--limit must be 1 or more" in err


def test_audit_of_an_empty_log_says_so(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, out, _ = _cli(capsys, "audit")
    assert code == 0 and "The audit log is empty." in out


# ---------------------------------------------------------------- no database yet

TEAM_COMMANDS = [
    ["alerts"],
    ["alerts", "--undelivered"],
    ["roles"],
    ["audit"],
    ["grant", "333", "admin"],
    ["revoke", "333", "admin"],
]


@pytest.mark.parametrize("argv", TEAM_COMMANDS)
def test_a_mistyped_database_path_is_explained_and_never_created(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, _, err = _cli(capsys, *argv)
    assert code == 2
    assert "There is no database at" in err and "DATABASE_URL" in err
    assert not Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("argv", TEAM_COMMANDS)
def test_a_database_without_tables_is_explained_not_a_traceback(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")).close()  # an empty file
    code, _, err = _cli(capsys, *argv)
    assert code == 1
    assert "Could not read the database" in err and "adherence-bot db upgrade" in err
    assert "Traceback" not in err
