"""Invites from the chat and the CLI: /invite, list, revoke, refusing a second invite for a site
study id unless forced (audited), and open enrollment when a link did not work."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot import clock
from bot.cli import main
from bot.models import AuditEvent, Cohort, Invite, Participant, StaffState
from tests.conftest import PATIENT, Harness, make_harness

NURSE = 5_100_000_001
RESEARCHER = 5_100_000_003
SECOND = PATIENT + 1
THIRD = PATIENT + 2
LINK = re.compile(r"https://t\.me/[A-Za-z0-9_]+\?start=([A-Za-z0-9_-]{16})")


@pytest.fixture
async def closed(tmp_path: Path) -> AsyncIterator[Harness]:
    """A study open only through invite links, with a coordinator and a researcher."""
    h = await make_harness(
        f"sqlite:///{tmp_path / 'inv.db'}",
        open_enrollment=False,
        coordinator_ids=[NURSE],
        researcher_ids=[RESEARCHER],
    )
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def _rows(h: Harness, table: type) -> list:  # type: ignore[type-arg]
    async with h.db.session() as session:
        return list((await session.exec(select(table))).all())


async def _audit(h: Harness) -> list[AuditEvent]:
    async with h.db.session() as session:
        rows = await session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))
        return list(rows.all())


def _code(text: str) -> str:
    found = LINK.search(text)
    assert found is not None, text
    return found.group(1)


async def _make_invite_in_chat(
    h: Harness, *, cohort: str, site: str | None, uses: str, days: str = "30 days"
) -> str:
    """Walks the /invite flow as a coordinator and returns the last message's text."""
    await h.command(NURSE, "invite")
    if any(label == cohort for label, _ in h.last(NURSE).buttons()):
        await h.press(NURSE, cohort)
    else:
        await h.send(NURSE, cohort)
    if site is None:
        await h.press(NURSE, "Skip")
    else:
        await h.send(NURSE, site)
    await h.press(NURSE, days)
    await h.press(NURSE, uses)
    return h.last(NURSE).text


async def test_a_coordinator_makes_an_invite_in_the_chat_and_two_patients_join_with_it(
    closed: Harness,
) -> None:
    h = closed
    await h.command(NURSE, "invite")
    assert "Type a cohort code" in h.last(NURSE).text  # no cohort yet: type a new one
    await h.send(NURSE, "site a")  # a space is not allowed in a cohort code
    assert "no spaces" in h.texts(NURSE)[-2]
    await h.send(NURSE, "site-a")
    assert "Cohort site-a. Type the site study id" in h.last(NURSE).text
    await h.press(NURSE, "Skip")
    assert "Until when" in h.last(NURSE).text
    await h.press(NURSE, "30 days")
    await h.press(NURSE, "2")
    text = h.last(NURSE).text
    assert "Invite created" in text and "Uses: 2" in text and "Cohort: site-a" in text
    assert "Last valid day: 11 Feb 2026" in text  # 30 days after 12 Jan
    code = _code(text)
    [invite] = await _rows(h, Invite)
    assert (invite.code, invite.max_uses, invite.uses) == (code, 2, 0)
    assert invite.created_by is not None and invite.created_by.startswith("staff:s_")
    # Nothing is left waiting: her next typed text is hers again.
    [state] = await _rows(h, StaffState)
    assert state.awaiting is None and state.draft is None

    for user in (PATIENT, SECOND):
        await h.command(user, "start", code)
        assert "consent" in h.last(user).text.lower() or h.last(user).buttons()
    await h.command(THIRD, "start", code)
    assert "already been used" in h.last(THIRD).text
    people = await _rows(h, Participant)
    [cohort] = await _rows(h, Cohort)
    assert sorted(p.telegram_user_id for p in people) == [PATIENT, SECOND]
    assert {p.cohort_id for p in people} == {cohort.id}
    assert [e.action for e in await _audit(h)] == ["invite_created"]


async def test_the_cohort_can_be_picked_from_buttons_and_typed_answers_are_checked(
    closed: Harness,
) -> None:
    h = closed
    await _make_invite_in_chat(h, cohort="site-a", site=None, uses="1")
    await h.command(NURSE, "invite")
    assert [label for label, _ in h.last(NURSE).buttons()] == ["site-a", "Cancel"]
    await h.press(NURSE, "site-a")
    await h.send(NURSE, "B-001")
    await h.send(NURSE, "2020-01-01")  # a day that has passed
    assert "has not passed yet" in h.texts(NURSE)[-2]
    await h.send(NURSE, "2026-03-31")
    await h.send(NURSE, "0")
    assert "from 1 to" in h.texts(NURSE)[-2]
    await h.send(NURSE, "12")
    text = h.last(NURSE).text
    assert "Site study id: B-001" in text and "Uses: 12" in text
    assert "Last valid day: 31 Mar 2026" in text
    invites = await _rows(h, Invite)
    assert len(invites) == 2 and invites[1].site_study_id == "B-001"
    # An old question's button does nothing now.
    [old] = [m for m in h.fake.chat(NURSE) if any(lbl == "Skip" for lbl, _ in m.buttons())][:1]
    await h.press(NURSE, "Skip", message=old)
    assert len(await _rows(h, Invite)) == 2


async def test_a_second_invite_for_a_site_id_is_refused_until_confirmed_and_audited(
    closed: Harness,
) -> None:
    h = closed
    first = await _make_invite_in_chat(h, cohort="site-a", site="A-017", uses="1")
    await h.command(PATIENT, "start", _code(first))  # she joins: A-017 has a participant
    text = await _make_invite_in_chat(h, cohort="site-a", site="a-017", uses="1")
    assert "already has 1 participant(s) and 0 live invite(s)" in text
    assert len(await _rows(h, Invite)) == 1
    await h.press(NURSE, "Create anyway")
    text = h.last(NURSE).text
    assert "forced" in text and _code(text)
    assert len(await _rows(h, Invite)) == 2
    actions = [(e.action, e.detail or "") for e in await _audit(h)]
    assert actions[0][0] == "invite_created"
    assert actions[-1][0] == "invite_forced" and "joined=1" in actions[-1][1]
    # Cancel at the confirmation makes nothing.
    await _make_invite_in_chat(h, cohort="site-a", site="A-017", uses="1")
    await h.press(NURSE, "Cancel")
    assert "No invite was made" in h.last(NURSE).text
    assert len(await _rows(h, Invite)) == 2


async def test_invite_list_and_revoke_in_the_chat_then_her_link_no_longer_works(
    closed: Harness,
) -> None:
    h = closed
    code = _code(await _make_invite_in_chat(h, cohort="site-a", site="C-9", uses="1"))
    [invite] = await _rows(h, Invite)
    await h.command(NURSE, "invite", "list")
    listing = h.last(NURSE)
    assert f"#{invite.id} site-a, site id C-9, used 0/1" in listing.text
    assert code in listing.text
    await h.press(NURSE, f"Revoke #{invite.id}")
    assert "Its link stops working" in h.last(NURSE).text
    await h.press(NURSE, "Yes, revoke")
    assert f"Invite #{invite.id} is revoked" in h.last(NURSE).text
    [invite] = await _rows(h, Invite)
    assert invite.revoked_at is not None and invite.revoked_by == invite.created_by
    assert (await _audit(h))[-1].action == "invite_revoked"
    await h.command(PATIENT, "start", code)
    assert "expired" in h.last(PATIENT).text
    assert await _rows(h, Participant) == []
    await h.command(NURSE, "invite", "list")
    assert "No live invites" in h.last(NURSE).text
    await h.command(NURSE, "invite", "revoke", str(invite.id))
    assert "already revoked" in h.last(NURSE).text
    # A revoked site id no longer blocks a new invite for it.
    text = await _make_invite_in_chat(h, cohort="site-a", site="C-9", uses="1")
    assert "Invite created" in text


async def test_patients_and_researchers_asking_for_invite_get_the_unknown_command_reply(
    closed: Harness,
) -> None:
    h = closed
    code = _code(await _make_invite_in_chat(h, cohort="site-a", site=None, uses="5"))
    await h.command(PATIENT, "start", code)
    await h.command(PATIENT, "no_such_command")
    unknown = h.last(PATIENT).text
    for args in ((), ("list",), ("revoke", "1")):
        await h.command(PATIENT, "invite", *args)
        assert h.last(PATIENT).text == unknown
    await h.command(RESEARCHER, "invite")
    assert "/start" in h.last(RESEARCHER).text  # never joined: the not-started reply
    # A forged press on the flow's buttons changes nothing.
    await h.process(h.updates.callback(PATIENT, "iv:rev:1", h.last(PATIENT)))
    await h.process(h.updates.callback(PATIENT, "iv:revy:1", h.last(PATIENT)))
    [invite] = await _rows(h, Invite)
    assert invite.revoked_at is None
    assert h.fake.answered_callbacks[-1]["text"]  # the expired-button toast


async def test_a_patient_typing_while_a_coordinator_is_mid_invite_is_read_as_hers(
    closed: Harness,
) -> None:
    h = closed
    code = _code(await _make_invite_in_chat(h, cohort="site-a", site=None, uses="5"))
    await h.command(PATIENT, "start", code)
    await h.command(NURSE, "invite")  # the nurse leaves the flow open
    await h.send(PATIENT, "site-b")
    assert "site-b" not in [c.code for c in await _rows(h, Cohort)]
    await h.send(NURSE, "site-b")
    assert "Cohort site-b." in h.last(NURSE).text


@pytest.mark.parametrize("problem", ["unknown", "expired", "used_up", "revoked"])
async def test_with_open_enrollment_a_link_that_did_not_work_lets_her_join_the_open_study(
    tmp_path: Path, problem: str
) -> None:
    h = await make_harness(
        f"sqlite:///{tmp_path / 'open.db'}", open_enrollment=True, coordinator_ids=[NURSE]
    )
    try:
        code = "NoSuchCode123456"
        if problem != "unknown":
            days = "7 days"
            code = _code(
                await _make_invite_in_chat(h, cohort="site-a", site=None, uses="1", days=days)
            )
            if problem == "expired":
                clock.advance(timedelta(days=9))
            elif problem == "used_up":
                await h.command(SECOND, "start", code)
            else:
                [invite] = await _rows(h, Invite)
                await h.command(NURSE, "invite", "revoke", str(invite.id))
        await h.command(PATIENT, "start", code)
        texts = h.texts(PATIENT)
        assert "this link did not work. You can still join the study here." in texts[0]
        assert "welcome to the" in texts[1] and h.last(PATIENT).buttons()  # consent follows
        joined = [p for p in await _rows(h, Participant) if p.telegram_user_id == PATIENT]
        assert len(joined) == 1 and joined[0].cohort_id is None and joined[0].invite_id is None
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_without_open_enrollment_an_unknown_link_still_keeps_her_out(
    closed: Harness,
) -> None:
    h = closed
    await h.command(PATIENT, "start", "NoSuchCode123456")
    assert "this link does not work" in h.last(PATIENT).text
    assert await _rows(h, Participant) == []


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A clean environment for `adherence-bot` over a new SQLite file; returns its URL."""
    for name in ("TELEGRAM_BOT_TOKEN", "BOT_USERNAME", "COORDINATOR_IDS", "ADMIN_IDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("EMERGENCY_NUMBER", "112")
    monkeypatch.setenv("PSEUDONYM_KEY", "a-test-pseudonym-key")
    monkeypatch.setenv("BOT_USERNAME", "study_test_bot")
    return url


def test_cli_refuses_a_second_invite_for_a_site_id_unless_forced_then_lists_and_revokes(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create = ["invite", "create", "--cohort", "site-a", "--study-id", "A-017"]
    assert main(create) == 0
    first = _code(capsys.readouterr().out)
    assert main(create) == 1
    err = capsys.readouterr().err
    assert "already has 0 participant(s) and 1 live invite(s)" in err and "--force" in err
    assert main([*create, "--force"]) == 0
    out = capsys.readouterr().out
    assert "Forced: recorded in the audit log." in out
    assert main(["invite", "create", "--cohort", "site-a", "--study-id", "bad\nid"]) == 2
    capsys.readouterr()
    assert main(["invite", "list"]) == 0
    out = capsys.readouterr().out
    header = ["ID", "COHORT", "SITE", "ID", "USED", "EXPIRES", "STATUS", "CODE"]
    assert out.splitlines()[0].split() == header
    assert first in out and out.count("A-017") == 2
    assert main(["invite", "revoke", "1"]) == 0
    assert "Invite #1 is revoked" in capsys.readouterr().out
    assert main(["invite", "revoke", "99"]) == 1
    assert "There is no invite #99" in capsys.readouterr().err
    assert main(["invite", "list"]) == 0
    assert first not in capsys.readouterr().out
    assert main(["invite", "list", "--all"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["audit"]) == 0
    audit = capsys.readouterr().out
    for action in ("invite_created", "invite_forced", "invite_revoked"):
        assert action in audit
    # The bot over the same database: the revoked link keeps her out, the forced one lets her in.
    asyncio.run(_join_after_cli(cli_env, first))


async def _join_after_cli(url: str, revoked: str) -> None:
    """Starts the bot over the CLI's database and tries both links."""
    h = await make_harness(url, open_enrollment=False)
    try:
        await h.command(PATIENT, "start", revoked)
        assert "expired" in h.last(PATIENT).text
        async with h.db.session() as session:
            live = (await session.exec(select(Invite).where(Invite.id == 2))).one()
        await h.command(PATIENT, "start", live.code)
        joined = await _rows(h, Participant)
        assert [p.site_study_id for p in joined] == ["A-017"]
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_staff_menus_show_invite_to_coordinators_and_stats_to_researchers_too(
    closed: Harness,
) -> None:
    menus: dict[int, list[str]] = {}
    for call in closed.fake.calls_to("setMyCommands"):
        scope = call.get("scope") or {}
        if scope.get("type") == "chat":
            menus[int(scope["chat_id"])] = [c["command"] for c in call["commands"]]
    assert {"invite", "stats", "alerts"} <= set(menus[NURSE])
    assert "stats" in menus[RESEARCHER] and "invite" not in menus[RESEARCHER]


async def test_researchers_see_export_in_their_menu_only_when_telegram_exports_are_on(
    closed: Harness, tmp_path: Path
) -> None:
    """A menu entry that only answers "turned off" would be a dead end."""

    def menus(h: Harness) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for call in h.fake.calls_to("setMyCommands"):
            scope = call.get("scope") or {}
            if scope.get("type") == "chat":
                found[int(scope["chat_id"])] = [c["command"] for c in call["commands"]]
        return found

    assert "export" not in menus(closed)[RESEARCHER]
    h = await make_harness(
        f"sqlite:///{tmp_path / 'on.db'}",
        researcher_ids=[RESEARCHER],
        coordinator_ids=[NURSE],
        telegram_export_enabled=True,
    )
    try:
        assert "export" in menus(h)[RESEARCHER]
        assert "export" not in menus(h)[NURSE]
    finally:
        await h.app.shutdown()
        await h.db.dispose()
