"""Broadcasts through the real handlers: checked, previewed, counted, sent once each within
Telegram's limits, reported, held for quiet hours, stoppable, and hidden from patients."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot import broadcasts, clock
from bot.broadcasts import Audience, BroadcastError
from bot.models import (
    AuditEvent,
    Broadcast,
    BroadcastStatus,
    Cohort,
    Lifecycle,
    OutboxState,
    OutgoingMessage,
    Participant,
    TherapyStatus,
)
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

NURSE = 5_100_000_001
FIRST = 7_000_000_000  # chat ids of the test participants
TEXT = "News from the study team\nThank you for your answers this month. They help a lot."


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with one coordinator."""
    h = await make_harness(f"sqlite:///{tmp_path / 'bc.db'}", coordinator_ids=[NURSE, NURSE + 1])
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def add_participants(
    h: Harness,
    count: int,
    *,
    first: int = FIRST,
    cohort: str | None = None,
    **fields: object,
) -> list[int]:
    """Puts `count` enrolled participants straight into the database; returns their chat ids."""
    async with h.db.session() as session:
        cohort_id = None
        if cohort is not None:
            found = (await session.exec(select(Cohort).where(Cohort.code == cohort))).first()
            if found is None:
                found = Cohort(code=cohort)
                session.add(found)
                await session.flush()
            cohort_id = found.id
        values: dict[str, object] = {
            "status": Lifecycle.active,
            "timezone": "Europe/London",
            "medicine": "letrozole",
            "onboarded_at": clock.now(),
            "consent_version": "1",
        }
        values.update(fields)
        ids = list(range(first, first + count))
        for chat in ids:
            session.add(
                Participant(
                    telegram_user_id=chat,
                    chat_id=chat,
                    pseudonym=f"p_{chat}",
                    cohort_id=cohort_id,
                    **values,  # type: ignore[arg-type]
                )
            )
    return ids


async def write_and_send(h: Harness, text: str = TEXT) -> Broadcast:
    """The coordinator writes a broadcast and presses Send; returns the queued broadcast."""
    await h.command(NURSE, "broadcast", text)
    await press_send(h)
    async with h.db.session() as session:
        found = (await session.exec(select(Broadcast).order_by(col(Broadcast.id).desc()))).first()
    assert found is not None and found.status == BroadcastStatus.queued
    return found


async def press_send(h: Harness) -> None:
    """Presses Send ("bc:go:...") under the newest draft summary."""
    for message in reversed(h.fake.chat(NURSE)):
        for _, data in message.buttons():
            if data.startswith("bc:go:"):
                await h.press(NURSE, data, message=message)
                return
    raise AssertionError("no Send button")


async def run_until_done(h: Harness, broadcast_id: int, *, ticks: int = 40) -> None:
    """Runs dispatcher ticks (moving the virtual clock) until the broadcast has finished."""
    for _ in range(ticks):
        await h.tick()
        async with h.db.session() as session:
            found = await session.get(Broadcast, broadcast_id)
            assert found is not None
            if found.status != BroadcastStatus.queued:
                return
        clock.advance(timedelta(seconds=5))
    raise AssertionError("the broadcast did not finish")


async def deliveries(h: Harness, broadcast_id: int) -> list[OutgoingMessage]:
    async with h.db.session() as session:
        rows = await session.exec(
            select(OutgoingMessage).where(
                OutgoingMessage.broadcast_id == broadcast_id,
                OutgoingMessage.kind == broadcasts.KIND,
            )
        )
        return list(rows.all())


# ---------------------------------------------------------------- the big one


# PTB 22 warns, when it builds RetryAfter, that retry_after will become a timedelta.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_broadcast_to_500_arrives_once_each_within_limits_despite_blocks_429_and_5xx(
    team: Harness,
) -> None:
    h = team
    chats = await add_participants(h, 480)
    paused = await add_participants(h, 12, first=FIRST + 1000, status=Lifecycle.paused)
    gone = await add_participants(h, 8, first=FIRST + 2000, reachable=False)
    await add_participants(h, 5, first=FIRST + 3000, status=Lifecycle.withdrawn)  # not in it
    blocked = chats[::25]  # 20 have blocked the bot since we last wrote
    for chat in blocked:
        h.fake.block(chat)
    h.fake.enable_limits(error_rate=0.03, seed=11)  # Telegram's limits, and some 500s

    await h.command(NURSE, "broadcast", TEXT)
    preview, note = h.fake.chat(NURSE)[-2:]
    assert preview.text.startswith(TEXT)  # the exact text she will see, first
    assert "Reaches now: 480" in note.text and "paused 12" in note.text
    assert "unreachable 8" in note.text
    broadcast = await write_and_send_from_preview(h)
    # Two explicit 429s: on the first delivery, and on one chat later on.
    h.fake.fail_next("sendMessage", status=429, description="Too Many Requests", retry_after=3)
    h.fake.fail_next(
        "sendMessage",
        status=429,
        description="Too Many Requests",
        retry_after=2,
        chat_id=chats[301],
    )
    assert broadcast.recipients == 500
    await run_until_done(h, broadcast.id or 0)

    # At most once each, and never to the paused, unreachable or withdrawn.
    received = Counter(m.chat_id for m in h.fake.messages if m.chat_id >= FIRST)
    assert max(received.values()) == 1
    assert not set(received) & (set(paused) | set(gone) | set(blocked))
    # Within the limits: no send inside a retry_after window, no second over 30.
    assert h.fake.requests_inside_retry_window == 0
    assert h.fake.max_accepted_in_any_second() <= 30
    assert h.fake.stats()["rate_limited"] == 0  # our own pacing never hit the buckets

    rows = await deliveries(h, broadcast.id or 0)
    assert len(rows) == 500 and len({r.participant_id for r in rows}) == 500
    states = Counter(r.state for r in rows)
    # Both 429s were answered (the first one hit a chat that had blocked us: 403 after).
    assert not h.fake.faults
    [waited] = [r for r in rows if "RetryAfter" in (r.last_error or "")]
    assert waited.chat_id == chats[301] and waited.state == OutboxState.sent
    assert states[OutboxState.sent] == len(received)
    assert states[OutboxState.uncertain] == h.fake.errors_injected > 0  # 5xx: not re-sent
    counts = await tally(h, broadcast.id or 0)
    assert counts.pending == 0
    assert counts.blocked == 20 and counts.skipped == {"paused": 12, "unreachable": 8}
    assert counts.delivered + counts.uncertain + counts.blocked + counts.failed == 480
    # 403 marks her unreachable.
    async with h.db.session() as session:
        them = await session.exec(
            select(Participant).where(col(Participant.telegram_user_id).in_(blocked))
        )
        assert not any(p.reachable for p in them.all())
    # The final report, as a new message, and the progress message edited into it.
    report = h.last(NURSE).text
    assert f"Delivered: {counts.delivered}" in report
    assert "Skipped: 20 (paused 12, unreachable 8)" in report
    assert "Blocked the bot (now marked unreachable): 20" in report
    assert f"Uncertain (may have arrived; not sent again): {counts.uncertain}" in report
    progress = h.fake.find(NURSE, broadcast.progress_message_id or 0)
    assert progress.text == report and progress.edits >= 2
    # Edited at most every few seconds.
    async with h.db.session() as session:
        edits = await session.exec(
            select(OutgoingMessage)
            .where(OutgoingMessage.kind == broadcasts.PROGRESS_KIND)
            .order_by(col(OutgoingMessage.id))
        )
        times = [r.sent_at for r in edits.all() if r.sent_at is not None]
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert gaps and min(gaps[:-1] or [5.0]) >= 4.9  # the last one is the final report
    # Audited once with the count and the text's hash, never the text.
    async with h.db.session() as session:
        [audit] = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "broadcast_queued"))
        ).all()
    detail = audit.detail or ""
    assert "count=500" in detail and broadcasts.text_hash(TEXT) in detail
    assert "Thank you" not in detail


async def write_and_send_from_preview(h: Harness) -> Broadcast:
    """Presses Send under the newest preview."""
    await press_send(h)
    async with h.db.session() as session:
        found = (await session.exec(select(Broadcast).order_by(col(Broadcast.id).desc()))).first()
    assert found is not None and found.status == BroadcastStatus.queued
    return found


async def tally(h: Harness, broadcast_id: int) -> broadcasts.Tally:
    async with h.db.session() as session:
        return await broadcasts.tally(session, broadcast_id)


async def test_a_bare_broadcast_asks_for_the_text_and_the_next_message_is_previewed(
    team: Harness,
) -> None:
    """On a phone, /broadcast alone then the message: the typed text is hers, not a patient's,
    so no safety reading answers it; a refused text ends the step (she starts again)."""
    h = team
    await add_participants(h, 3)
    await h.command(NURSE, "broadcast")
    assert "Type the message for participants now" in h.last(NURSE).text
    await h.send(NURSE, "News from the team\nThe clinic is closed on Friday.")
    preview, draft = h.texts(NURSE)[-2:]
    assert preview.startswith("News from the team\nThe clinic is closed on Friday.")
    assert any("Send to 3" in label for label, _ in h.last(NURSE).buttons()), draft
    async with h.db.session() as session:
        assert len((await session.exec(select(Broadcast))).all()) == 1
    # The step is over: her next text is ordinary text again, not a second broadcast.
    await h.send(NURSE, "hello")
    async with h.db.session() as session:
        assert len((await session.exec(select(Broadcast))).all()) == 1
    # A refused text keeps the step open: what she types next is the text written again.
    await h.command(NURSE, "broadcast")
    await h.send(NURSE, "Please stop your tablets for a week.")
    assert "I can't send this" in h.last(NURSE).text
    await h.send(NURSE, "News from the team\nThe clinic opens again on Monday.")
    assert h.texts(NURSE)[-2].startswith("News from the team\nThe clinic opens again")
    async with h.db.session() as session:
        assert len((await session.exec(select(Broadcast))).all()) == 2


async def test_another_coordinators_press_on_a_draft_changes_nothing(team: Harness) -> None:
    h = team
    await add_participants(h, 3)
    await h.command(NURSE, "broadcast", TEXT)
    draft, data = h.find_button(NURSE, "Send to 3")
    other = NURSE + 1
    await h.process(h.updates.callback(other, data, draft))
    assert "expired" in (h.fake.answered_callbacks[-1].get("text") or "")
    async with h.db.session() as session:
        [broadcast] = (await session.exec(select(Broadcast))).all()
    assert broadcast.status == BroadcastStatus.draft


# ---------------------------------------------------------------- refused text


async def test_broadcast_telling_patients_to_stop_their_tablets_is_refused_with_the_sentence(
    team: Harness,
) -> None:
    h = team
    await add_participants(h, 3)
    await h.command(NURSE, "broadcast", "Happy holidays. You can stop your tablets for a week.")
    reply = h.last(NURSE).text
    assert "I can't send this" in reply
    assert '"You can stop your tablets for a week"' in reply
    assert not h.last(NURSE).buttons()
    async with h.db.session() as session:
        assert not (await session.exec(select(Broadcast))).all()


async def test_broadcast_whose_first_line_names_a_drug_is_refused(team: Harness) -> None:
    h = team
    await h.command(NURSE, "broadcast", "Letrozole and joint pain: new page\nHave a look.")
    reply = h.last(NURSE).text
    assert "first line" in reply and '"Letrozole"' in reply
    with pytest.raises(BroadcastError) as caught:
        broadcasts.check_text("A note about breast health\nmore")
    assert caught.value.code == "lock_screen"
    # The same words further down are fine: only the first line shows on a locked phone.
    assert broadcasts.check_text("News from the team\nA new page on letrozole.")


# ---------------------------------------------------------------- the audience


async def test_filters_combine_with_and_and_the_count_is_exact(team: Harness) -> None:
    h = team
    await add_participants(h, 4, cohort="site-a")
    await add_participants(h, 3, first=FIRST + 100, cohort="site-a", medicine="anastrozole")
    await add_participants(h, 2, first=FIRST + 200, cohort="site-b")
    await add_participants(
        h, 1, first=FIRST + 300, cohort="site-a", therapy_status=TherapyStatus.stopped
    )
    await h.command(NURSE, "broadcast", TEXT)
    assert "Reaches now: 10" in h.last(NURSE).text
    await h.press(NURSE, "Cohort: all")  # -> site-a
    assert "Reaches now: 8" in h.last(NURSE).text
    await h.press(NURSE, "Medicine: all")  # -> anastrozole
    assert "Reaches now: 3" in h.last(NURSE).text
    await h.press(NURSE, "Medicine: anastrozole")  # -> letrozole
    await h.press(NURSE, "Therapy: all")  # -> taking
    note = h.last(NURSE)
    assert "Reaches now: 4" in note.text
    assert "cohort=site-a, medicine=letrozole, therapy=taking" in note.text
    broadcast = await write_and_send_from_preview(h)
    assert broadcast.recipients == 4
    assert Audience.from_json(broadcast.audience) == Audience(
        cohort="site-a", medicine="letrozole", therapy="taking"
    )


async def test_a_stale_count_is_shown_again_instead_of_sent(team: Harness) -> None:
    h = team
    await add_participants(h, 3)
    await h.command(NURSE, "broadcast", TEXT)
    await add_participants(h, 1, first=FIRST + 50)  # she joins while the nurse reads
    await press_send(h)
    assert "Reaches now: 4" in h.last(NURSE).text
    async with h.db.session() as session:
        [draft] = (await session.exec(select(Broadcast))).all()
    assert draft.status == BroadcastStatus.draft


# ---------------------------------------------------------------- delivery rules


async def test_discreet_participants_get_it_protected_and_the_footer_under_the_text(
    team: Harness,
) -> None:
    h = team
    [plain] = await add_participants(h, 1)
    [discreet] = await add_participants(h, 1, first=FIRST + 1, discreet=True)
    broadcast = await write_and_send(h)
    await run_until_done(h, broadcast.id or 0)
    for chat, protected in ((plain, False), (discreet, True)):
        message = h.last(chat)
        assert message.text.startswith(TEXT) and "From your study team" in message.text
        assert message.protect_content is protected


async def test_broadcast_waits_for_her_morning_outside_quiet_hours(team: Harness) -> None:
    h = team
    clock.freeze(datetime(2026, 1, 12, 22, 0, tzinfo=clock.now().tzinfo))  # 22:00 in London
    [london] = await add_participants(h, 1)
    [tokyo] = await add_participants(h, 1, first=FIRST + 1, timezone="Asia/Tokyo")  # 07:00
    broadcast = await write_and_send(h)
    await h.tick()
    assert not h.fake.chat(london) and not h.fake.chat(tokyo)  # both inside quiet hours
    clock.advance(timedelta(hours=1))  # 08:00 in Tokyo
    await h.tick()
    assert h.fake.chat(tokyo) and not h.fake.chat(london)
    clock.freeze(datetime(2026, 1, 13, 8, 0, 1, tzinfo=clock.now().tzinfo))
    await run_until_done(h, broadcast.id or 0)
    assert len(h.fake.chat(london)) == 1 and len(h.fake.chat(tokyo)) == 1


async def test_her_own_local_time_inside_quiet_hours_waits_for_her_morning(
    team: Harness,
) -> None:
    h = team
    [london] = await add_participants(h, 1)
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "22:30")
    assert "22:30 in each participant's own time" in h.last(NURSE).text
    broadcast = await write_and_send_from_preview(h)
    [row] = await deliveries(h, broadcast.id or 0)
    # 22:30 falls in her quiet hours (21:00-08:00): it waits for 08:00 the next morning.
    assert row.not_before == datetime(2026, 1, 13, 8, 0, tzinfo=row.not_before.tzinfo)
    clock.freeze(datetime(2026, 1, 12, 22, 31, tzinfo=row.not_before.tzinfo))
    await h.tick()
    assert not h.fake.chat(london)
    clock.freeze(datetime(2026, 1, 13, 8, 0, 1, tzinfo=row.not_before.tzinfo))
    await run_until_done(h, broadcast.id or 0)
    assert len(h.fake.chat(london)) == 1


async def test_an_absolute_time_with_its_zone_is_kept(team: Harness) -> None:
    h = team
    [chat] = await add_participants(h, 1)
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "2026-01-12 18:00 Europe/Paris")  # 17:00 UTC
    broadcast = await write_and_send_from_preview(h)
    assert broadcast.send_at == datetime(2026, 1, 12, 17, 0, tzinfo=broadcast.send_at.tzinfo)
    clock.advance(timedelta(hours=7, minutes=59))
    await h.tick()
    assert not h.fake.chat(chat)
    clock.advance(timedelta(minutes=1))
    await run_until_done(h, broadcast.id or 0)
    assert len(h.fake.chat(chat)) == 1
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "2026-01-12T08:00+00:00")
    assert "already passed" in h.last(NURSE).text
    await h.command(NURSE, "broadcastat", "2026-01-20 18:00")
    assert "time zone" in h.last(NURSE).text


async def test_a_broadcast_can_be_stopped_while_it_is_sending(team: Harness) -> None:
    h = team
    chats = await add_participants(h, 120)
    broadcast = await write_and_send(h)
    from bot.dispatcher import TickReport, send_due

    await send_due(services=h.app.bot_data, bot=h.app.bot, report=TickReport(), batches=1)
    sent_before = sum(1 for c in chats if h.fake.chat(c))
    assert 0 < sent_before < 120
    await h.command(NURSE, "broadcasts")
    assert f"#{broadcast.id} by" in h.last(NURSE).text
    await h.press(NURSE, f"Stop #{broadcast.id}")
    await h.press(NURSE, "Yes, stop it")
    assert "stopped" in h.last(NURSE).text
    for _ in range(3):
        await h.tick()
        clock.advance(timedelta(seconds=10))
    assert sum(1 for c in chats if h.fake.chat(c)) == sent_before
    counts = await tally(h, broadcast.id or 0)
    assert counts.delivered == sent_before and counts.skipped == {"cancelled": 120 - sent_before}
    await h.command(NURSE, "broadcasts")
    assert "No broadcast is waiting" in h.last(NURSE).text


async def test_a_scheduled_broadcast_can_be_stopped_before_it_starts(team: Harness) -> None:
    h = team
    [chat] = await add_participants(h, 1)
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "18:00")
    broadcast = await write_and_send_from_preview(h)
    await h.command(NURSE, "broadcasts")
    await h.press(NURSE, f"Stop #{broadcast.id}")
    await h.press(NURSE, "Yes, stop it")
    clock.advance(timedelta(hours=10))
    await h.tick()
    assert not h.fake.chat(chat)
    async with h.db.session() as session:
        stopped = await session.get(Broadcast, broadcast.id)
        assert stopped is not None and stopped.status == BroadcastStatus.cancelled
        audit = await session.exec(
            select(AuditEvent).where(AuditEvent.action == "broadcast_cancelled")
        )
        assert audit.first() is not None


async def test_who_withdrew_or_paused_after_it_was_queued_is_skipped_with_the_reason(
    team: Harness,
) -> None:
    h = team
    chats = await add_participants(h, 4)
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "18:00")
    broadcast = await write_and_send_from_preview(h)
    async with h.db.session() as session:
        people = (await session.exec(select(Participant).order_by(col(Participant.id)))).all()
        people[0].status = Lifecycle.withdrawn
        people[1].status = Lifecycle.paused
        people[2].status = Lifecycle.deleted
        for p in people[:3]:
            session.add(p)
    clock.advance(timedelta(hours=9))  # 18:00 in London
    await run_until_done(h, broadcast.id or 0)
    assert [bool(h.fake.chat(c)) for c in chats] == [False, False, False, True]
    counts = await tally(h, broadcast.id or 0)
    assert counts.skipped == {"withdrawn": 1, "paused": 1, "deleted": 1}
    assert counts.delivered == 1
    assert "Skipped: 3 (deleted 1, paused 1, withdrawn 1)" in h.last(NURSE).text


async def test_a_busy_chat_is_put_back_and_the_others_go_on(team: Harness) -> None:
    h = team
    chats = await add_participants(h, 5)
    from bot import ratelimit

    # She is tapping through a check-in: her chat's pacing is taken for the next 3 seconds.
    for _ in range(3):
        await ratelimit.reserve(db=h.db, chat_id=chats[0], per_second=29, burst=True)
    broadcast = await write_and_send(h)
    await run_until_done(h, broadcast.id or 0)
    first = h.fake.chat(chats[0])[0].sent_at
    others = [h.fake.chat(c)[0].sent_at for c in chats[1:]]
    assert max(others) < first  # nobody waited for her chat
    assert len(h.fake.chat(chats[0])) == 1


async def test_broadcastat_without_a_draft_says_how_to_start(team: Harness) -> None:
    h = team
    await h.command(NURSE, "broadcastat", "18:00")
    assert "/broadcast" in h.last(NURSE).text
    await h.command(NURSE, "broadcast")
    assert "Type the message for participants now" in h.last(NURSE).text


async def test_a_patient_pressing_a_broadcast_button_changes_nothing(team: Harness) -> None:
    h = team
    await add_participants(h, 2)
    await make_active_participant(h.db)
    await h.command(NURSE, "broadcast", TEXT)
    message, data = h.find_button(NURSE, "Cancel")
    await h.process(h.updates.callback(PATIENT, data, message))
    assert h.fake.answered_callbacks[-1].get("text")  # the expired-button toast
    async with h.db.session() as session:
        [draft] = (await session.exec(select(Broadcast))).all()
    assert draft.status == BroadcastStatus.draft


# ---------------------------------------------------------------- nobody else


@pytest.mark.parametrize("command", ["broadcast", "broadcasts", "broadcastat"])
async def test_a_patient_gets_the_unknown_command_reply(team: Harness, command: str) -> None:
    h = team
    await make_active_participant(h.db)
    await h.command(PATIENT, "nosuchcommand")
    unknown = h.last(PATIENT).text
    await h.command(PATIENT, command, "Hello everyone")
    assert h.last(PATIENT).text == unknown
    async with h.db.session() as session:
        assert not (await session.exec(select(Broadcast))).all()


async def test_count_sent_counts_broadcasts_with_at_least_one_delivery(team: Harness) -> None:
    h = team
    await add_participants(h, 2)
    first = await write_and_send(h)
    await run_until_done(h, first.id or 0)
    await h.command(NURSE, "broadcast", TEXT)
    await h.command(NURSE, "broadcastat", "18:00")
    await write_and_send_from_preview(h)  # queued, nothing sent yet
    async with h.db.session() as session:
        assert await broadcasts.count_sent(session, None) == 1
        assert await broadcasts.count_sent(session, clock.now() + timedelta(hours=1)) == 0


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
async def test_broadcast_on_postgres_reaches_each_once_and_two_ticks_never_double_send(
    pg_url: str,
) -> None:
    h = await make_harness(pg_url, coordinator_ids=[NURSE])
    try:
        chats = await add_participants(h, 60)
        h.fake.block(chats[7])
        broadcast = await write_and_send(h)
        import asyncio

        # Two dispatchers at once (the claim takes rows with FOR UPDATE SKIP LOCKED).
        await asyncio.gather(h.tick(), h.tick())
        await run_until_done(h, broadcast.id or 0)
        received = Counter(m.chat_id for m in h.fake.messages if m.chat_id >= FIRST)
        assert len(received) == 59 and max(received.values()) == 1
        counts = await tally(h, broadcast.id or 0)
        assert (counts.delivered, counts.blocked, counts.pending) == (59, 1, 0)
        assert "Delivered: 59" in h.last(NURSE).text
        async with h.db.session() as session:
            assert await broadcasts.count_sent(session, None) == 1
    finally:
        await h.app.shutdown()
        await h.db.dispose()


# Sent to everyone at once, an action with no object or "it" can only mean her medicine.
IMPLIED_ADVICE = [
    "It is OK to stop for a few days if you feel unwell.",
    "If the joint pain is bad, it is OK to stop for a week.",
    "You can stop before the holidays.",
    "Pausing for a week before your dental work is fine.",
    "A week without your tablets is fine.",
    "Take two tablets if you forgot yesterday.",
    "Take one tablet every two days when the pain is bad.",
    "Your medicine can wait a few days.",
    "Give the tablets a rest over Christmas.",
    "Come off it for a while.",
]
ORDINARY = [
    "You can stop the messages any time with /stop.",
    "If you are thinking about stopping your tablets, talk to your doctor first.",
    "Please keep taking your tablets as your doctor prescribed.",
    "You can pause the reminders in /settings.",
    "The clinic is closed on Friday. You can stop by on Monday.",
    "Never stop your tablets without talking to your doctor.",
    "Ask your doctor whether a break could help.",
]


@pytest.mark.parametrize("sentence", IMPLIED_ADVICE)
def test_implied_advice_to_stop_or_change_a_dose_is_refused(sentence: str) -> None:
    with pytest.raises(BroadcastError) as caught:
        broadcasts.check_text(f"News from the study team\n{sentence}")
    assert caught.value.code == "advice" and sentence.rstrip(".") in caught.value.detail


@pytest.mark.parametrize("sentence", ORDINARY)
def test_ordinary_broadcasts_about_messages_or_the_doctor_pass(sentence: str) -> None:
    assert broadcasts.check_text(f"News from the study team\n{sentence}")
