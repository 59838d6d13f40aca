"""Random and forged button data and random text, fed through every handler of the real bot.

Black-box on purpose: updates go in through the PTB Application, and only what the fake Bot API
received and what the database holds is checked. Nothing from `handlers/` is imported, so these
properties keep holding (or keep failing) while the handlers are restructured.

Why a sync test with its own `asyncio.Runner`, not an async test: hypothesis calls the body of a
`@given` function synchronously, once per example, and pytest-asyncio 1.x runs an async test
inside an already running loop, where `loop.run_until_complete` is refused. Building the bot on
a loop this test owns (`asyncio.Runner`) lets a plain sync `@given` body drive it with
`runner.run(...)`: one harness per test (building one is slow), every example on the same loop,
no threads. The `@given` function is defined inside the test, after set-up, so its strategies
can use the real ids read from the database (B's check-in, alert, question).
"""

from __future__ import annotations

import logging
from asyncio import Runner
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, col, select
from telegram import Update

from bot.content import messages, questionnaire
from bot.db import Database
from bot.models import Alert, CheckIn, Participant, SavedQuestion
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

T = TypeVar("T")

A = PATIENT  # the one who presses and types
B = 5_000_000_002  # another participant, whose rows nothing A does may touch
M = messages("en")
ERRORS_LOGGER = "adherence_bot.errors"  # the error handler logs "handler failed ..." here
SENDS = ("sendMessage", "sendPhoto", "sendDocument")
# The generic apology the error handler sends, up to its reference number.
APOLOGY = M.get("common.error", ref="\x00").split("\x00")[0].strip()
CONTENT = Path(__file__).resolve().parent.parent / "content"

# Hypothesis: no example database (a stored example replays badly against a bot whose state
# earlier examples changed); no deadline and no too_slow check (a trend picture or a visit card
# takes matplotlib a while). No function_scoped_fixture check is needed: the `@given` function
# is not the test and takes no fixtures.
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow],
}


# ---------------------------------------------------------------- the world: A and B


class _Collect(logging.Handler):
    """Keeps every error record of the error handler's logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keeps the record."""
        self.records.append(record)


@dataclass
class World:
    """One bot with two participants, driven from sync code through its own event loop."""

    runner: Runner
    h: Harness
    errors: _Collect
    a_id: int = 0
    a_checkin: int = 0
    b_id: int = 0
    b_checkin: int = 0
    b_alert: int = 0
    b_question: int = 0
    real_ids: list[int] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs one coroutine to its end on the bot's loop."""
        return self.runner.run(coro)


async def _press_label(h: Harness, user: int, label: str) -> bool:
    """Taps the newest button with this label, if her chat has one."""
    try:
        await h.press(user, label)
    except AssertionError:
        return False
    return True


async def _populate(w: World) -> None:
    """A: active with an open check-in. B: answers, a doctor-first path, a saved question."""
    h = w.h
    a = await make_active_participant(h.db, telegram_user_id=A)
    b = await make_active_participant(h.db, telegram_user_id=B)
    assert a.id is not None and b.id is not None
    w.a_id, w.b_id = a.id, b.id

    items = questionnaire()
    took = items.item("took_med")
    assert took is not None
    await h.command(B, "checkin")
    await h.press(B, took.options[0].text("en"))  # the first tablet answer
    await h.press(B, "3")  # worst pain
    # Her doctor-first path: an answer, a barrier, then a second start left open.
    await h.command(B, "thinking_of_stopping")
    await h.press(B, M.get("doctor_first.btn_not_yet"))
    await h.press(B, M.get("doctor_first.barrier_forgot"))
    await h.command(B, "thinking_of_stopping")
    await h.command(B, "myquestions")
    await h.press(B, M.get("pictures.btn_add"))
    await h.send(B, "Can I take it with my calcium tablets?")

    await h.command(A, "checkin")

    async with h.db.session() as session:

        async def first_id(query: Any) -> int:
            """Returns the id of the first row the query finds."""
            row = (await session.exec(query)).first()
            assert row is not None and row.id is not None, "set-up left a row missing"
            return int(row.id)

        w.a_checkin = await first_id(select(CheckIn).where(CheckIn.participant_id == w.a_id))
        w.b_checkin = await first_id(select(CheckIn).where(CheckIn.participant_id == w.b_id))
        w.b_alert = await first_id(
            select(Alert).where(Alert.participant_id == w.b_id).order_by(col(Alert.id).desc())
        )
        w.b_question = await first_id(
            select(SavedQuestion).where(SavedQuestion.participant_id == w.b_id)
        )
    w.real_ids = [w.a_id, w.a_checkin, w.b_id, w.b_checkin, w.b_alert, w.b_question]


@contextmanager
def world(tmp_path: Path) -> Iterator[World]:
    """Builds the bot once, on a loop of its own, with A and B set up through real updates."""
    with Runner() as runner:
        h = runner.run(make_harness(f"sqlite:///{tmp_path / 'properties.db'}"))
        collector = _Collect()
        logger = logging.getLogger(ERRORS_LOGGER)
        logger.addHandler(collector)
        try:
            w = World(runner=runner, h=h, errors=collector)
            w.run(_populate(w))
            assert not collector.records, "set-up itself failed: " + _logged(collector.records)
            yield w
        finally:
            logger.removeHandler(collector)
            runner.run(h.app.shutdown())
            runner.run(h.db.dispose())


# ---------------------------------------------------------------- what is checked


async def rows_of(db: Database, participant_id: int) -> dict[str, list[dict[str, Any]]]:
    """Returns every row that belongs to a participant, following foreign keys from her row.

    Generic on purpose: a table added later is covered without touching this test.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    owned: dict[str, set[Any]] = {}
    async with db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == Participant.__tablename__:
                where = table.c.id == participant_id
            else:
                links = [
                    fk.parent.in_(owned[fk.column.table.name])
                    for fk in table.foreign_keys
                    if owned.get(fk.column.table.name)
                ]
                if not links:
                    continue
                where = sa.or_(*links)
            rows = [
                dict(r) for r in (await conn.execute(sa.select(table).where(where))).mappings()
            ]
            found[table.name] = sorted(rows, key=repr)
            if "id" in table.c:
                owned[table.name] = {r["id"] for r in rows}
    return found


def _logged(records: list[logging.LogRecord]) -> str:
    """Returns the error handler's log lines (error type and frames, never patient text)."""
    return "\n".join(r.getMessage() for r in records)


def _changed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    """Returns the tables whose rows differ."""
    return sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))


@dataclass
class Marks:
    """Where the fake server's and the error log's records stood before one update."""

    calls: int
    errors: int
    b_rows: dict[str, list[dict[str, Any]]]


async def _mark(w: World) -> Marks:
    """Notes where things stand before an update, with a copy of B's rows."""
    return Marks(len(w.h.fake.calls), len(w.errors.records), await rows_of(w.h.db, w.b_id))


async def _check_nothing_broke(w: World, marks: Marks, what: str) -> None:
    """Properties (1) and (3): no unhandled error, no apology, nothing of B's touched."""
    logged = w.errors.records[marks.errors :]
    assert not logged, f"{what}: an error reached the error handler:\n{_logged(logged)}"
    apologies = [
        str(p.get("text", ""))[:60]
        for m, p in w.h.fake.calls[marks.calls :]
        if m == "sendMessage" and APOLOGY in str(p.get("text", ""))
    ]
    assert not apologies, f"{what}: she was sent the generic apology {apologies}"
    after = await rows_of(w.h.db, w.b_id)
    assert after == marks.b_rows, f"{what}: B's rows changed in {_changed(marks.b_rows, after)}"
    assert not _sent_to(w, marks.calls, B), f"{what}: a message went to B's chat"


def _sent_to(w: World, since: int, chat_id: int) -> list[str]:
    """Returns the texts (or captions) of messages sent to a chat since a mark."""
    return [
        str(p.get("text") or p.get("caption") or "")
        for m, p in w.h.fake.calls[since:]
        if m in SENDS and int(p["chat_id"]) == chat_id
    ]


# ---------------------------------------------------------------- callback data strategies


def _fits(data: str) -> bool:
    """Tells whether Telegram would accept this as callback data (1 to 64 bytes)."""
    return 1 <= len(data.encode()) <= 64


# Superscripts and circled digits pass str.isdigit() but int() rejects them; Arabic-Indic and
# mathematical digits pass both and still are not ASCII digits.
ODD_DIGITS = ["²", "³", "①", "٣", "١٢", "𝟙"]
NUMBERS = [str(v) for v in range(11)] + ["-1", "11", "999999999999", "0" * 30]


def _word(max_size: int = 8) -> st.SearchStrategy[str]:
    """Returns short words in the alphabet callback fields use."""
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", max_size=max_size)


def _ids(real: list[int]) -> st.SearchStrategy[str]:
    """Ids as a button may carry them: real ones, small, negative, huge, odd digits, junk."""
    return st.one_of(
        st.sampled_from(real).map(str),
        st.integers(min_value=-(10**6), max_value=10**6).map(str),
        # Beyond 64 bits: up to 23 digits.
        st.integers(min_value=2**63 - 1, max_value=10**23 - 1).map(str),
        st.integers(max_value=-(2**63)).map(str),
        st.sampled_from(ODD_DIGITS),
        st.text(max_size=5),
    )


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Returns the fields joined with colons, as callback data carries them."""
    return st.tuples(*parts).map(":".join)


def _page_ids() -> list[str]:
    """Returns the ids of the education pages (their file names)."""
    return sorted(p.stem for p in (CONTENT / "pages" / "en").glob("*.md"))


def forged_data(real: list[int]) -> st.SearchStrategy[str]:
    """Callback data built from the real prefixes with random fields."""
    ids = _ids(real)
    items = questionnaire().items
    codes = st.one_of(st.sampled_from([i.code for i in items] + ["snooze"]), _word())
    values = st.one_of(
        st.sampled_from(sorted({v for i in items for v in i.values()} | {"done", "skip"})),
        st.sampled_from(["+swelling", "-swelling", "+none", *NUMBERS, *ODD_DIGITS]),
        st.text(max_size=10),
    )
    field_ = st.one_of(ids, values, codes)
    onb_ops = ["agree", "later", "ok", "chg", "edit", "menu", "close"]
    onb_ops += ["med", "st", "cp", "cty", "tz", "tm", "tmx", "dy", "dd"]
    df_steps = st.one_of(st.sampled_from(["start", "wk", "d", "c", "m", "w", "b", "k"]), _word(5))
    lc_actions = ["pm", "lv", "lvy", "med", "x", "dy", "dn", "help", "priv", "p1w", "p1m", "pinf"]
    stamps = st.one_of(st.text(alphabet="0123456789abcdef", min_size=6, max_size=6), _word())
    offer_codes = ["red_flag", "worsening", "stiffness", "pain_help", "severe_pain"]
    return st.one_of(
        _joined(st.just("ci"), ids, codes, values),
        _joined(
            st.sampled_from(["onb", "set"]),
            st.one_of(st.sampled_from(onb_ops), _word(6)),
            st.lists(field_, max_size=3).map(":".join),
        ),
        st.tuples(df_steps, st.lists(field_, max_size=5)).map(
            lambda t: ":".join(["df", t[0], *t[1]])
        ),
        _joined(st.just("lc"), st.one_of(st.sampled_from(lc_actions), _word(4)), ids, stamps),
        _joined(
            st.just("of"),
            st.sampled_from(["open", "no", "x"]),
            ids,
            st.sampled_from(offer_codes) | _word(),
        ),
        _joined(st.just("edu"), st.one_of(st.sampled_from(_page_ids()), _word()), ids),
        st.just("edu:menu"),
        st.one_of(ids, st.sampled_from(["30", "90"])).map(lambda v: "tr:" + v),
        st.one_of(st.just(""), st.text(max_size=8)).map(lambda v: "dc:send" + v),
        st.one_of(
            st.sampled_from(["add", "done", "cancel", "del:"]), ids.map(lambda v: "del:" + v)
        ).map(lambda v: "mq:" + v),
        st.one_of(st.sampled_from(["on", "off"]), st.text(max_size=6)).map(lambda v: "dz:" + v),
    )


# ---------------------------------------------------------------- property: button presses


async def _press_and_check(w: World, data: str) -> None:
    """A presses a button carrying `data` on the newest message in her chat."""
    h = w.h
    marks = await _mark(w)
    update: Update = h.updates.callback(A, data, h.last(A))
    await h.process(update)
    what = f"press {data!r}"
    await _check_nothing_broke(w, marks, what)
    assert update.callback_query is not None
    query_id = update.callback_query.id
    answered = {str(a.get("callback_query_id")) for a in h.fake.answered_callbacks}
    assert query_id in answered, (
        f"{what}: the press was never answered (her button keeps spinning)"
    )


def test_any_button_data_is_answered_and_never_crashes_or_touches_another_participant(
    tmp_path: Path,
) -> None:
    """Random and forged button data: answered, no crash, nothing of B's changes."""
    with world(tmp_path) as w:
        data = st.one_of(st.text(min_size=1, max_size=64), forged_data(w.real_ids)).filter(_fits)

        @settings(max_examples=150, **SETTINGS)
        @given(data=data)
        @example(data="ci:²:took_med:yes")
        @example(data="ci:12345678901234567890123:took_med:yes")
        @example(data=f"ci:{w.a_checkin}:snooze:999999999999")
        @example(data="mq:del:²")
        @example(data="lc:pm:99999999999999999999:abcdef")
        @example(data="df:d:²:1:advised")
        @example(data="edu:what-may-help:²")
        @example(data="tr:²")
        @example(data=f"ci:{w.b_checkin}:took_med:yes")
        @example(data=f"mq:del:{w.b_question}")
        @example(data=f"df:d:{w.b_alert}:1:advised")
        @example(data="zz:" + "x" * 61)
        # Found by generated examples: ids past 64 bits, and known prefixes no pattern takes.
        @example(data="df:d:12345678901234567890123:1:advised")
        @example(data=f"mq:del:{2**63}")
        @example(data="tr:-1")
        @example(data="dc:sendx")
        def press(data: str) -> None:
            """A presses one button."""
            w.run(_press_and_check(w, data))

        press()


# ---------------------------------------------------------------- property: typed text

EMOJI_AND_RTL = list("😀🙏🏽💊❤️🔥👩‍⚕️") + list("שלום مرحبا") + ["\u200f", "\u202e", "\u200d"]
SAFETY_TEXTS = [
    "I stopped taking my letrozole",
    "I have chest pain and can't breathe",
    "please stop sending me messages",
    "my joint is swollen and red",
    "maybe I should stop the pills?",
]


def typed_texts(commands: list[str]) -> st.SearchStrategy[str]:
    """What she might type: anything, emoji and RTL, very long, numbers, commands, alarms."""
    slash = st.one_of(
        st.sampled_from([*commands, "start", "unknown", "checkin@other_bot"]),
        st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
    )
    return st.one_of(
        st.text(min_size=1, max_size=300),
        st.text(alphabet=st.sampled_from([*EMOJI_AND_RTL, *"0123456789 /"]), max_size=80),
        # Very long: a short random text repeated up to 5000 characters.
        st.tuples(st.text(min_size=1, max_size=30), st.integers(1000, 5000)).map(
            lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
        ),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.sampled_from([*NUMBERS, *ODD_DIGITS, "7.5", "seven", "10/10", " 5 "]),
        st.tuples(slash, st.text(max_size=30)).map(
            lambda t: "/" + t[0] + (" " + t[1] if t[1] else "")
        ),
        st.sampled_from(SAFETY_TEXTS),
    ).filter(lambda s: bool(s.strip()))


MOMENTS = [
    "as she is",
    "during a check-in",
    "at a pain score question",
    "adding a question",
    "typing a check-in time",
    "on the doctor-first path",
    "in the stop menu",
    "after tapping a button she was shown",
    "after resuming",
]
# Taps that would end her participation: the rest of the examples would only test a stranger.
FINAL_TAPS = {M.get("lifecycle.btn_delete_yes"), M.get("lifecycle.btn_leave_yes")}


async def _reach_a_scale(h: Harness) -> None:
    """Taps through her check-in (first button each time) until a 0-10 question waits."""
    for _ in range(12):
        await h.command(A, "checkin")
        newest = h.last(A)
        labels = [label for label, _ in newest.buttons()]
        if "0" in labels and "10" in labels:
            return
        if newest.buttons():
            await h.process(h.updates.callback(A, newest.buttons()[0][1], newest))
        else:  # paused by an earlier example: no check-in until she resumes
            await h.command(A, "resume")
    raise AssertionError("her check-in never reached a 0-10 question")


async def _reach(w: World, moment: str, pick: int) -> None:
    """Brings A to a moment of her conversation with real commands and taps."""
    h = w.h
    if moment == "during a check-in":
        await h.command(A, "checkin")
    elif moment == "at a pain score question":
        await _reach_a_scale(h)
    elif moment == "adding a question":
        await h.command(A, "myquestions")
        await _press_label(h, A, M.get("pictures.btn_add"))
    elif moment == "typing a check-in time":
        await h.command(A, "settings")
        if await _press_label(h, A, M.get("onboarding.item.tm")):
            await _press_label(h, A, M.get("onboarding.another_time"))
    elif moment == "on the doctor-first path":
        await h.command(A, "thinking_of_stopping")
    elif moment == "in the stop menu":
        await h.command(A, "stop")
    elif moment == "after tapping a button she was shown":
        shown = [
            (message, data)
            for message in h.fake.chat(A)
            for label, data in message.buttons()
            if label not in FINAL_TAPS and data
        ]
        if shown:
            message, data = shown[-1 - pick % len(shown)]
            await h.process(h.updates.callback(A, data, message))
    elif moment == "after resuming":
        await h.command(A, "resume")


async def _type_and_check(w: World, moment: str, pick: int, text: str) -> None:
    """A reaches a moment, then types `text`; she gets an answer and nothing breaks."""
    h = w.h
    marks = await _mark(w)
    await _reach(w, moment, pick)
    typed_at = len(h.fake.calls)
    await h.send(A, text)
    what = f"{moment}, then typing {text[:80]!r} ({len(text)} chars)"
    await _check_nothing_broke(w, marks, what)
    assert _sent_to(w, typed_at, A), f"{what}: she got no answer at all"


def test_any_typed_text_gets_an_answer_and_never_crashes_or_touches_another_participant(
    tmp_path: Path,
) -> None:
    """Random text at random moments: a reply every time, no crash, nothing of B's changes."""
    with world(tmp_path) as w:
        menu = [c["command"] for cmds in w.h.fake.commands.values() for c in cmds]
        assert menu, "the bot published no command menu"

        @settings(max_examples=60, **SETTINGS)
        @given(
            moment=st.sampled_from(MOMENTS),
            pick=st.integers(min_value=0, max_value=40),
            text=typed_texts(menu),
        )
        @example(moment="at a pain score question", pick=0, text="②")
        @example(moment="at a pain score question", pick=0, text="²/10")
        @example(moment="as she is", pick=0, text="x" * 5000)
        @example(moment="during a check-in", pick=0, text="١٠")
        @example(moment="adding a question", pick=0, text="😀" * 600)
        @example(moment="typing a check-in time", pick=0, text="25:99")
        @example(moment="on the doctor-first path", pick=0, text="/nonsense")
        def type_text(moment: str, pick: int, text: str) -> None:
            """A reaches a moment and types."""
            w.run(_type_and_check(w, moment, pick, text))

        type_text()
