"""The offline demo: a person chats with the real bot in a terminal, no token needed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.config import Settings
from bot.content import t
from bot.demo import (
    BOLD,
    DEMO_USER_ID,
    Demo,
    choice_keys,
    demo_settings,
    fresh_database,
    run_demo,
    terminal_text,
)
from bot.migrate import upgrade_to_head
from bot.models import Answer, CheckIn, CheckInStatus, Lifecycle, Participant
from tests.conftest import make_settings
from tests.factories import make_active_participant


class Screen:
    """Collects what the demo prints."""

    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, text: str) -> None:
        """Records one printed block."""
        self.chunks.append(text)

    @property
    def text(self) -> str:
        """Returns everything printed so far."""
        return "\n".join(self.chunks)

    def since(self, mark: int) -> str:
        """Returns what was printed after `mark` blocks."""
        return "\n".join(self.chunks[mark:])


def _settings(tmp_path: Path) -> Settings:
    url = fresh_database(tmp_path / "demo.db", keep=False)
    upgrade_to_head(url)  # the demo runs on migrations, like `make demo`
    return demo_settings(make_settings(url), url)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[Demo, Screen]]:
    """A started demo session over a fresh, migrated SQLite file."""
    screen = Screen()
    session = Demo(_settings(tmp_path), screen.write)
    await session.start()
    yield session, screen
    await session.stop()


def button(demo: Demo, label: str, *, exact: bool = False) -> str:
    """Returns the number to type to press the button with this label (as a person would)."""
    message = demo.newest_with_buttons()
    assert message is not None, "no message with buttons"
    for key, text, _data in choice_keys(message):
        if (text.strip() == label) if exact else (label.lower() in text.lower()):
            return key
    raise AssertionError(f"no button {label!r} in {[b for b, _ in message.buttons()]}")


async def test_demo_walks_through_onboarding_and_a_check_in(demo: tuple[Demo, Screen]) -> None:
    session, screen = demo
    assert "/start" in screen.text  # the welcome says how to begin

    await session.handle("/start")
    await session.handle(button(session, t("onboarding.agree")))
    await session.handle(button(session, "Letrozole"))
    await session.handle("1")  # roughly when she started: the first choice
    await session.handle(button(session, "United Kingdom"))
    await session.handle(button(session, "08:00"))
    await session.handle("1")  # every day
    await session.handle("1")  # yes, that's right
    async with session.db.session() as s:
        her = (
            await s.exec(select(Participant).where(Participant.telegram_user_id == DEMO_USER_ID))
        ).one()
    assert her.status == Lifecycle.active
    assert (her.medicine, her.timezone) == ("letrozole", "Europe/London")

    mark = len(screen.chunks)
    await session.handle(":next")
    # Monday 09:00 UTC -> Tuesday 08:00 London (UTC+0 in January): 23 hours on.
    assert "1380 minutes" in screen.since(mark)
    assert t("checkin.intro") in screen.since(mark)

    await session.handle(button(session, "Yes", exact=True))
    assert "bot (updated)" in screen.text  # the answered question is shown again, edited
    await session.handle(button(session, "4", exact=True))
    await session.handle("1")  # stiffness: the first choice
    await session.handle(button(session, "0", exact=True))
    await session.handle(button(session, "None", exact=True))
    newest = session.newest_with_buttons()
    if newest is not None and "Done" in [label for label, _ in newest.buttons()]:
        await session.handle(button(session, "Done", exact=True))
    await session.handle("My knees were sore on the stairs")
    assert t("checkin.summary_title") in screen.text

    async with session.db.session() as s:
        query = select(CheckIn).where(CheckIn.participant_id == her.id).order_by(CheckIn.due_at)
        checkin = (await s.exec(query)).first()
        assert checkin is not None
        rows = (await s.exec(select(Answer).where(Answer.checkin_id == checkin.id))).all()
    answers = {a.item_code: a.value for a in rows}
    assert checkin.status == CheckInStatus.completed
    assert answers["took_med"] == "yes"
    assert answers["worst_pain"] == "4"
    assert answers["interference"] == "0"
    assert answers["new_symptoms"] == "none"
    assert answers["note"] == "My knees were sore on the stairs"


async def test_demo_commands_explain_themselves(demo: tuple[Demo, Screen]) -> None:
    session, screen = demo
    await session.handle(":help")
    assert ":next" in screen.text and ":quit" in screen.text
    await session.handle("3")
    assert t("cli.demo.no_buttons") in screen.text
    await session.handle(":next")
    assert t("cli.demo.nothing_planned") in screen.text
    await session.handle(":wait soon")
    assert t("cli.demo.bad_minutes") in screen.text
    await session.handle(":dance")
    assert t("cli.demo.unknown_command", command=":dance") in screen.text
    assert await session.handle(":quit") is False


async def test_demo_loop_reads_lines_until_quit_and_echoes_piped_input(tmp_path: Path) -> None:
    screen = Screen()
    lines = iter(["/start", ":quit", "/help"])
    await run_demo(lines, screen.write, settings=_settings(tmp_path), echo=True)
    assert f"{t('cli.demo.prompt')}/start" in screen.text
    assert "bot: " in screen.text  # the welcome from /start
    assert "/help" not in screen.text.split(":quit", 1)[1]  # nothing read after :quit
    assert screen.chunks[-1] == t("cli.demo.bye")


def test_make_demo_works_from_a_pipe_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    database = tmp_path / "piped-demo.db"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--database", str(database)],
        input="/start\n:quit\n",
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Offline demo" in done.stdout
    assert "you> /start" in done.stdout
    assert "Traceback" not in done.stderr
    assert database.exists()


async def test_demo_saves_the_trend_picture_and_the_visit_card_and_prints_their_paths(
    tmp_path: Path,
) -> None:
    screen = Screen()
    files = tmp_path / "data" / "demo"
    session = Demo(_settings(tmp_path), screen.write, files_dir=files)
    await session.start()
    try:
        await make_active_participant(session.db, telegram_user_id=DEMO_USER_ID)
        mark = len(screen.chunks)
        await session.handle("/mytrend")
        [png] = files.glob("*.png")
        assert png.read_bytes().startswith(b"\x89PNG")
        assert t("cli.demo.file_saved", path=str(png)) in screen.since(mark)

        mark = len(screen.chunks)
        await session.handle("/doctorcard")
        [pdf] = files.glob("*.pdf")
        assert pdf.read_bytes().startswith(b"%PDF")
        printed = screen.since(mark)
        assert t("pictures.card_caption") in printed
        assert t("cli.demo.file_saved", path=str(pdf)) in printed
    finally:
        await session.stop()


async def test_demo_shows_learn_pages_without_html_tags(tmp_path: Path) -> None:
    for ansi in (False, True):
        screen = Screen()
        session = Demo(_settings(tmp_path / str(ansi)), screen.write, ansi=ansi)
        await session.start()
        try:
            await make_active_participant(session.db, telegram_user_id=DEMO_USER_ID)
            await session.handle("/learn")
            await session.handle("1")  # the first topic
            page = screen.chunks[-1]
            assert "<b>" not in page and "</b>" not in page and "&amp;" not in page
            assert (BOLD in page) is ansi  # bold only for a terminal
        finally:
            await session.stop()


def test_terminal_text_keeps_words_and_link_targets() -> None:
    html = '<b>Joint pain</b> &amp; you: <a href="https://example.org/x">read more</a>'
    assert terminal_text(html) == "Joint pain & you: read more (https://example.org/x)"
    assert terminal_text(html, ansi=True).startswith(BOLD + "Joint pain")
    assert terminal_text('<a href="https://a.b">https://a.b</a>') == "https://a.b"


def test_demo_database_is_fresh_unless_kept(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    path.write_text("old")
    fresh_database(path, keep=True)
    assert path.exists()
    fresh_database(path, keep=False)
    assert not path.exists()


async def test_a_kept_demo_answers_what_she_types_next_time(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = Demo(settings, Screen().write)
    await first.start()
    await first.handle("/start")
    await first.stop()
    # `make demo` again with the database kept: the bot has processed updates before, and a
    # line typed now must not be taken for one of them (a replay gets no reply).
    screen = Screen()
    again = Demo(settings, screen.write)
    await again.start()
    mark = len(screen.chunks)
    await again.handle("/help")
    await again.stop()
    assert "(no reply)" not in screen.since(mark)
    assert "bot:" in screen.since(mark)
