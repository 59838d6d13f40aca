"""The application starts over a fresh database and publishes its command menu."""

from __future__ import annotations

from tests.conftest import Harness


async def test_command_menu_is_published_for_private_chats(harness: Harness) -> None:
    menus = harness.fake.calls_to("setMyCommands")
    assert len(menus) == 1
    names = [c["command"] for c in menus[0]["commands"]]
    assert names[:3] == ["checkin", "learn", "settings"]
    assert "delete_my_data" in names


async def test_replayed_update_is_dropped(harness: Harness) -> None:
    update = harness.updates.command(5_000_000_001, "help", update_id=42)
    await harness.process(update)
    await harness.process(update)  # Telegram delivered it again
    assert len(harness.fake.chat(5_000_000_001)) == 1
