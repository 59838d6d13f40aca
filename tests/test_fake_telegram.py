"""The fake Bot API's opt-in Telegram limits and faults, driven through a real PTB `Bot`."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from bot import clock
from bot.devtools.bot_api_server import running_server
from bot.devtools.fake_telegram import FakeRequest, FakeTelegram, Limits

# PTB 22 warns inside RetryAfter's constructor that retry_after will become a timedelta.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ANA = 5_000_000_001
GROUP = -1001234567890


@pytest.fixture
def fake() -> FakeTelegram:
    """A fresh fake server (limits off, as everywhere else)."""
    return FakeTelegram()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    """A real PTB bot whose every request is answered by the fake."""
    tg = Bot(token="123:abc", request=FakeRequest(fake), get_updates_request=FakeRequest(fake))
    await tg.initialize()
    yield tg
    await tg.shutdown()


def tick(seconds: float) -> None:
    """Moves the frozen clock."""
    clock.advance(timedelta(seconds=seconds))


def seconds_of(exc: RetryAfter) -> float:
    """Returns retry_after in seconds whichever type PTB hands back (int or timedelta)."""
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def refused_for(bot: Bot, chat_id: int, text: str = "hi") -> float:
    """Sends and expects a 429; returns its retry_after in seconds."""
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat_id, text)
    return seconds_of(caught.value)


# ---------------------------------------------------------------- off by default


async def test_without_limits_any_burst_is_accepted_and_nothing_is_counted(
    fake: FakeTelegram, bot: Bot
) -> None:
    for i in range(100):
        await bot.send_message(ANA, f"m{i}")
    assert len(fake.chat(ANA)) == 100
    assert fake.limits is None
    assert fake.stats() == {
        "rate_limited": 0,
        "inside_retry_window": 0,
        "errors_injected": 0,
        "lost_injected": 0,
    }


# ---------------------------------------------------------------- buckets


async def test_thirty_sends_in_one_virtual_second_pass_and_the_next_waits_a_second(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits()
    for i in range(30):
        await bot.send_message(ANA + i, "hi")  # distinct chats: only the global bucket binds
    assert await refused_for(bot, ANA + 30) == 1
    assert fake.rate_limited == 1 and not fake.chat(ANA + 30)
    assert fake.retry_until() == clock.now() + timedelta(seconds=1)
    tick(1)
    await bot.send_message(ANA + 30, "hi")
    assert len(fake.chat(ANA + 30)) == 1


async def test_a_private_chat_gets_a_burst_of_three_then_one_per_second(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits()
    for _ in range(3):
        await bot.send_message(ANA, "hi")
    assert await refused_for(bot, ANA) == 1
    await bot.send_message(ANA + 1, "hi")  # another chat is untouched by her window
    tick(1)
    await bot.send_message(ANA, "hi")
    assert await refused_for(bot, ANA) == 1
    tick(1)
    await bot.send_message(ANA, "hi")
    assert len(fake.chat(ANA)) == 5
    assert fake.rate_limited == 2 and fake.inside_retry_window == 0


async def test_a_group_is_limited_per_minute(fake: FakeTelegram, bot: Bot) -> None:
    fake.enable_limits(group_burst=1)
    await bot.send_message(GROUP, "hi")
    assert await refused_for(bot, GROUP) == 3  # 20 a minute: one every 3 s
    tick(3)
    await bot.send_message(GROUP, "hi")
    assert len(fake.chat(GROUP)) == 2


async def test_a_sender_pacing_exactly_at_the_group_rate_is_never_refused(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(group_burst=1)
    for _ in range(50):  # a gap of exactly 3.0 s is always enough, never rounded short
        await bot.send_message(GROUP, "hi")
        tick(3)
    assert fake.rate_limited == 0


async def test_edits_count_against_the_chat_bucket(fake: FakeTelegram, bot: Bot) -> None:
    fake.enable_limits(chat_burst=1)
    sent = await bot.send_message(ANA, "v0")
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("v1", chat_id=ANA, message_id=sent.message_id)
    assert fake.last(ANA).text == "v0"
    tick(1)
    await bot.edit_message_text("v1", chat_id=ANA, message_id=sent.message_id)
    assert fake.last(ANA).text == "v1"


# ---------------------------------------------------------------- retry windows


async def test_a_call_inside_a_chat_window_is_counted_and_told_the_remaining_time(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(group_burst=1)
    await bot.send_message(GROUP, "hi")
    assert await refused_for(bot, GROUP) == 3
    tick(0.5)
    assert await refused_for(bot, GROUP) == 3  # 2.5 s left: ceil
    tick(1)
    assert await refused_for(bot, GROUP) == 2  # 1.5 s left
    await bot.send_message(ANA, "hi")  # her window is the group's only
    tick(1.5)
    await bot.send_message(GROUP, "hi")
    assert fake.rate_limited == 1
    assert fake.inside_retry_window == 2 == fake.requests_inside_retry_window
    assert len(fake.chat(GROUP)) == 2


async def test_a_global_window_holds_every_chat_until_it_ends(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(global_burst=2, global_per_second=2)
    await bot.send_message(ANA, "a")
    await bot.send_message(ANA + 1, "b")
    assert await refused_for(bot, ANA + 2) == 1  # the bucket has room in 0.5 s
    tick(0.6)
    assert await refused_for(bot, ANA + 3) == 1  # but the announced second still holds
    tick(0.4)
    await bot.send_message(ANA + 3, "c")
    assert fake.stats()["rate_limited"] == 1 and fake.stats()["inside_retry_window"] == 1


async def test_an_explicit_429_opens_a_window_when_limits_are_on(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits()
    fake.fail_next(
        "sendMessage", status=429, description="Too Many Requests", retry_after=10, chat_id=ANA
    )
    assert await refused_for(bot, ANA) == 10
    tick(4)
    assert await refused_for(bot, ANA) == 6
    assert fake.inside_retry_window == 1 and fake.rate_limited == 0


# ---------------------------------------------------------------- random faults


async def test_error_rate_one_answers_500_as_a_network_error_and_delivers_nothing(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(error_rate=1.0)
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(ANA, "hi")
    assert not isinstance(caught.value, TimedOut)
    assert "Internal Server Error" in str(caught.value)
    assert fake.chat(ANA) == [] and fake.errors_injected == 1


async def test_lost_rate_one_stores_the_message_but_the_bot_sees_a_timeout(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.time_source = lambda: clock.now().timestamp()
    fake.enable_limits(lost_rate=1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(ANA, "hi")
    assert fake.texts(ANA) == ["hi"] and fake.lost_injected == 1
    assert len(fake.accept_times) == 1  # the server did accept it


async def test_a_lost_edit_is_still_applied(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ANA, "v0")
    fake.enable_limits(lost_rate=1.0)
    with pytest.raises(TimedOut):
        await bot.edit_message_text("v1", chat_id=ANA, message_id=sent.message_id)
    assert fake.last(ANA).text == "v1" and fake.last(ANA).edits == 1


def test_the_same_seed_gives_the_same_faults() -> None:
    def outcomes(seed: int) -> list[str]:
        fake = FakeTelegram(limits=Limits(error_rate=0.3, lost_rate=0.3, seed=seed))
        seen = []
        for i in range(40):
            try:
                status, _ = fake.handle("sendMessage", {"chat_id": ANA + i, "text": "x"})
                seen.append(str(status))
            except TimedOut:
                seen.append("lost")
        return seen

    first = outcomes(7)
    assert first == outcomes(7)
    assert {"200", "500", "lost"} <= set(first)
    assert first != outcomes(8)


# ---------------------------------------------------------------- what is never limited


async def test_callback_answers_and_housekeeping_are_never_limited_or_faulted(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(global_burst=1, chat_burst=1, error_rate=1.0, lost_rate=1.0)
    for i in range(50):
        assert await bot.answer_callback_query(str(i))
    await bot.get_me()
    await bot.set_my_commands([("help", "Help")])
    await bot.get_updates()
    assert len(fake.answered_callbacks) == 50
    assert fake.stats() == dict.fromkeys(fake.stats(), 0)


async def test_explicit_faults_win_over_limits_and_random_faults(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.enable_limits(error_rate=1.0)
    fake.block(ANA)
    with pytest.raises(Forbidden):
        await bot.send_message(ANA, "hi")
    fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    with pytest.raises(BadRequest):
        await bot.send_message(ANA + 1, "hi")
    fake.timeout_next("sendMessage", delivered=True)
    with pytest.raises(TimedOut):
        await bot.send_message(ANA + 2, "hi")
    assert fake.texts(ANA + 2) == ["hi"]
    assert fake.errors_injected == 0 and fake.lost_injected == 0


async def test_not_modified_edits_still_answer_400_under_limits(
    fake: FakeTelegram, bot: Bot
) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="y")]])
    sent = await bot.send_message(ANA, "v0", reply_markup=markup)
    fake.enable_limits()
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text(
            "v0", chat_id=ANA, message_id=sent.message_id, reply_markup=markup
        )


async def test_turning_limits_off_restores_the_old_behaviour(fake: FakeTelegram, bot: Bot) -> None:
    fake.enable_limits(chat_burst=1)
    await bot.send_message(ANA, "a")
    await refused_for(bot, ANA)
    fake.disable_limits()
    await bot.send_message(ANA, "b")
    assert fake.texts(ANA) == ["a", "b"]
    assert fake.retry_until(ANA) is None


def test_limits_reject_meaningless_settings() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Limits(error_rate=1.5)
    with pytest.raises(ValueError, match="chat_burst"):
        Limits(chat_burst=0)


def test_concurrent_callers_never_get_more_than_the_burst_through() -> None:
    fake = FakeTelegram(limits=Limits())
    accepted: list[int] = []

    def caller(offset: int) -> None:
        for i in range(50):
            status, _ = fake.handle("sendMessage", {"chat_id": ANA + offset * 100 + i})
            if status == 200:
                accepted.append(1)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 30 == len(fake.messages)
    assert fake.rate_limited == 1 and fake.inside_retry_window == 8 * 50 - 31


# ---------------------------------------------------------------- over HTTP


async def test_the_http_fake_server_enforces_the_same_limits() -> None:
    fake = FakeTelegram(limits=Limits(chat_burst=1))
    with running_server(fake) as server:
        request = HTTPXRequest()
        tg = Bot(
            token="123:abc",
            base_url=f"{server.root_url}/bot",
            request=request,
            get_updates_request=HTTPXRequest(),
        )
        await tg.initialize()
        try:
            await tg.send_message(ANA, "hi")
            with pytest.raises(RetryAfter):
                await tg.send_message(ANA, "again")
        finally:
            await tg.shutdown()
    assert fake.texts(ANA) == ["hi"] and fake.rate_limited == 1
