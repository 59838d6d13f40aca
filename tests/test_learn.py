"""/learn through the real handlers: the menu, the reader, and which page views are stored."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import education
from bot.content import messages
from bot.devtools.fake_telegram import FakeMessage
from bot.models import Lifecycle, PageView, Participant
from bot.paths import content_dir
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

TEXTS = messages("en")


@pytest.fixture
async def h(harness: Harness) -> AsyncIterator[Harness]:
    """The harness; /learn is registered by the routing table, before the free-text catch-all."""
    yield harness


async def views(h: Harness) -> list[PageView]:
    """Returns every stored page view, oldest first."""
    async with h.db.session() as session:
        return list((await session.exec(select(PageView).order_by(PageView.id))).all())  # type: ignore[arg-type]


async def open_page(h: Harness, page_id: str) -> None:
    """She opens /learn and taps a topic."""
    await h.command(PATIENT, "learn")
    await h.press(PATIENT, education.page_callback(page_id))


async def read_to_end(h: Harness, reader: FakeMessage) -> None:
    """She taps Next until the last part of the page."""
    for _ in range(20):
        if (TEXTS.get("learn.next"), "") not in [(lbl, "") for lbl, _ in reader.buttons()]:
            return
        await h.press(PATIENT, TEXTS.get("learn.next"), message=reader)
    raise AssertionError("the page never ended")


async def test_learn_opens_a_menu_of_every_topic_and_says_review_is_pending(h: Harness) -> None:
    await h.command(PATIENT, "learn")
    menu = h.last(PATIENT)
    assert TEXTS.get("learn.menu") in menu.text
    assert TEXTS.get("learn.draft_notice") in menu.text  # every page is still a draft
    labels = [label for label, _ in menu.buttons()]
    assert labels == [p.title for p in education.menu_pages("en")]
    assert "What is known about stopping" in labels  # restricted, but listed in /learn
    assert all(len(d.encode()) <= 64 for _, d in menu.buttons())


async def test_opening_a_topic_shows_its_first_part_and_records_the_view(h: Harness) -> None:
    participant = await make_active_participant(h.db)
    await open_page(h, "what-may-help")
    page = h.last(PATIENT)
    assert page.text.startswith("<b>What may help</b>")
    assert "HOPE trial" in page.text
    assert (TEXTS.get("learn.next"), "edu:what-may-help:2") in page.buttons()
    stored = await views(h)
    assert [(v.participant_id, v.page_id, v.page_version) for v in stored] == [
        (participant.id, "what-may-help", education.pages("en")["what-may-help"].version)
    ]
    assert stored[0].viewed_at is not None


async def test_next_and_back_turn_pages_in_place_without_counting_a_new_view(
    h: Harness,
) -> None:
    await make_active_participant(h.db)
    await open_page(h, "what-may-help")
    reader = h.last(PATIENT)
    count = len(h.fake.chat(PATIENT))
    await h.press(PATIENT, TEXTS.get("learn.next"), message=reader)
    assert len(h.fake.chat(PATIENT)) == count  # edited, not a new message
    assert reader.edits == 1
    assert "(2 of " in reader.text
    await h.press(PATIENT, TEXTS.get("learn.back"), message=reader)
    assert "(1 of " in reader.text
    assert len(await views(h)) == 1


async def test_last_part_lists_sources_and_offers_related_pages(h: Harness) -> None:
    await open_page(h, "bone-health")
    reader = h.last(PATIENT)
    await read_to_end(h, reader)
    assert TEXTS.get("learn.sources_heading") in reader.text
    assert "doi:10.1200/JCO.19.01696" in reader.text
    labels = [label for label, _ in reader.buttons()]
    assert "When to contact your care team" in labels
    assert labels[-1] == TEXTS.get("learn.topics")


async def test_related_page_opens_in_the_reader_and_counts_as_a_view(h: Harness) -> None:
    await make_active_participant(h.db)
    await open_page(h, "talking-with-doctor")
    reader = h.last(PATIENT)
    await h.press(PATIENT, TEXTS.get("learn.next"), message=reader)
    await h.press(PATIENT, education.page_callback("when-to-call"), message=reader)
    assert reader.text.startswith("<b>When to contact your care team</b>")
    assert [v.page_id for v in await views(h)] == ["talking-with-doctor", "when-to-call"]


async def test_all_topics_returns_to_the_menu(h: Harness) -> None:
    await open_page(h, "how-common")
    reader = h.last(PATIENT)
    await h.press(PATIENT, TEXTS.get("learn.topics"), message=reader)
    assert TEXTS.get("learn.menu") in reader.text
    assert ("How common is it?", "edu:how-common:1") in reader.buttons()


async def test_page_on_stopping_ends_with_talk_it_through(h: Harness) -> None:
    await make_active_participant(h.db)
    await open_page(h, "about-stopping")
    reader = h.last(PATIENT)
    await read_to_end(h, reader)
    assert "Why staying on therapy matters" in reader.text
    assert (TEXTS.get("learn.talk_it_through"), "df:start") in reader.buttons()
    assert [v.page_id for v in await views(h)] == ["about-stopping"]


async def test_no_view_is_stored_before_consent(h: Harness) -> None:
    async with h.db.session() as session:
        session.add(Participant(telegram_user_id=PATIENT, chat_id=PATIENT, pseudonym="p-x"))
    await open_page(h, "how-common")
    assert h.last(PATIENT).text.startswith("<b>How common is it?</b>")
    assert await views(h) == []


async def test_a_stranger_can_read_but_nothing_is_stored(h: Harness) -> None:
    await open_page(h, "when-to-call")
    assert h.last(PATIENT).text.startswith("<b>When to contact your care team</b>")
    assert await views(h) == []


async def test_no_view_is_stored_after_she_withdraws(h: Harness) -> None:
    participant = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, participant.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
    await open_page(h, "bone-health")
    assert await views(h) == []


async def test_a_topic_offered_by_another_flow_opens_as_a_new_message(h: Harness) -> None:
    await make_active_participant(h.db)
    offer = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Read", callback_data=education.page_callback("what-may-help"))],
            [InlineKeyboardButton("Not now", callback_data="offer:x")],
        ]
    )
    await h.app.bot.send_message(PATIENT, "An offer from another flow.", reply_markup=offer)
    original = h.last(PATIENT)
    await h.press(PATIENT, "Read", message=original)
    assert original.text == "An offer from another flow."
    assert original.edits == 0
    assert h.last(PATIENT).text.startswith("<b>What may help</b>")
    assert [v.page_id for v in await views(h)] == ["what-may-help"]


async def test_an_unknown_page_button_brings_back_the_menu(h: Harness) -> None:
    await h.command(PATIENT, "learn")
    menu = h.last(PATIENT)
    await h.process(h.updates.callback(PATIENT, "edu:no-such-page:1", menu))
    assert TEXTS.get("learn.not_found") in h.last(PATIENT).text
    assert h.fake.answered_callbacks  # the spinner always stops


async def test_pressing_the_same_part_twice_is_harmless(h: Harness) -> None:
    await open_page(h, "what-may-help")
    reader = h.last(PATIENT)
    await h.press(PATIENT, TEXTS.get("learn.next"), message=reader)
    await h.process(h.updates.callback(PATIENT, "edu:what-may-help:2", reader))
    assert "(2 of " in reader.text


@pytest.fixture
def edited_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of content/ that a test may edit; caches are cleared around it."""
    copy = tmp_path / "content"
    shutil.copytree(content_dir(), copy)
    monkeypatch.setenv("ADHERENCE_CONTENT_DIR", str(copy))
    education.pages.cache_clear()
    yield copy
    education.pages.cache_clear()


async def test_a_view_after_a_page_is_edited_records_the_new_version(
    h: Harness, edited_content: Path
) -> None:
    await make_active_participant(h.db)
    await open_page(h, "how-common")
    path = edited_content / "pages" / "en" / "how-common.md"
    before = education.pages("en")["how-common"].version
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            f'version: "{before}"', 'version: "9.9-edited"', 1
        ),
        encoding="utf-8",
    )
    education.pages.cache_clear()
    await open_page(h, "how-common")
    assert [(v.page_id, v.page_version) for v in await views(h)] == [
        ("how-common", before),
        ("how-common", "9.9-edited"),
    ]


async def test_signed_pages_drop_the_review_pending_line(h: Harness, edited_content: Path) -> None:
    for path in (edited_content / "pages" / "en").glob("*.md"):
        text = path.read_text(encoding="utf-8").replace(
            "review_status: draft\nreviewed_by: null\nreviewed_on: null",
            "review_status: reviewed\nreviewed_by: Dr A Example\nreviewed_on: 2026-02-01",
        )
        path.write_text(text, encoding="utf-8")
    education.pages.cache_clear()
    await h.command(PATIENT, "learn")
    assert TEXTS.get("learn.draft_notice") not in h.last(PATIENT).text
    await h.press(PATIENT, education.page_callback("joint-pain-basics"))
    reader = h.last(PATIENT)
    await read_to_end(h, reader)
    assert TEXTS.get("learn.page_draft_notice") not in reader.text
