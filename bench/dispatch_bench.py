"""Benchmark: the dispatcher at study scale on PostgreSQL, against the fake Bot API over HTTP.

Four measurements, each in a database of its own (`adh_bench_<random>`, created beside the
one --database-url names and dropped at the end), with data made by set-based SQL:

1. throughput: --participants participants, each with a daily schedule and one pending
   check-in, --rows of them due at once. The real dispatch worker
   (`python -m bot.devtools.dispatch_worker`, in one and then two processes, through a thin
   wrapper that counts its SQL and CPU) sends them to the fake Bot API server
   (`bot.devtools.bot_api_server`, in a process of its own). In turns with it, in the same
   run, a bare python-telegram-bot script makes the same `send_message` calls to the same
   server, one at a time per process as the worker does. Pacing is set out of reach (--rate),
   so only our own overhead bounds the rate. Each run lasts --seconds, then the worker is
   stopped with SIGINT (as Ctrl+C would); the backlog is --rows throughout.
2. first send: from the start of a tick to the first message the fake accepts, with 1,000
   and 10,000 due, in this process, with the time each step of the tick took.
3. idle tick: a tick with nothing due, on PostgreSQL and SQLite, without history and with
   --history-days of it (one closed check-in per participant per day and its sent outbox row).
4. plans: EXPLAIN (ANALYZE, BUFFERS) of every statement an idle tick sends (captured from a
   real tick, with its parameters) and of the due query with --explain-due due, on
   PostgreSQL with history.

    .venv/bin/python bench/dispatch_bench.py --write-docs --json /tmp/dispatch.json
    .venv/bin/python bench/dispatch_bench.py --parts throughput --participants 20000 --rows 2000
    .venv/bin/python bench/dispatch_bench.py --parts throughput --workers 1 --profile /tmp/w.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import platform
import re
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- dispatch-bench:start -->"
END_MARK = "<!-- dispatch-bench:end -->"
FIRST_CHAT = 6_000_000_000
TOKEN = "123456:BENCH-dispatch"
ZONE = "Europe/London"
GRACE = 120.0  # seconds a stopped worker may take to finish its current send and exit
# The queries the issue names, quoted in full in the docs (the table has every statement).
QUOTED = ("claim_due", "queue_reminders", "close_windows", "claim_outbox", "heal_schedules")


# ---------------------------------------------------------------- small helpers


def git_revision() -> str:
    """Returns the short commit, noting uncommitted changes under bot/."""
    try:
        rev, dirty = (
            subprocess.run(
                ["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=True
            ).stdout.strip()
            for cmd in (["rev-parse", "--short", "HEAD"], ["status", "--short", "--", "bot"])
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev} with uncommitted changes" if dirty else rev


def machine() -> str:
    """Describes the machine the figures come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, Python {platform.python_version()}, {platform.system()}"


def load() -> float:
    """Returns the one-minute load average (other work on a shared machine shows in it)."""
    return round(os.getloadavg()[0], 2)


def median(values: list[float]) -> float:
    """Returns the median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def p90(values: list[float]) -> float:
    """Returns the 90th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else float("nan")


def cpu_seconds(who: int) -> float:
    """Returns user+system CPU seconds of RUSAGE_SELF or RUSAGE_CHILDREN (ended children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ratio(a: float, b: float) -> float:
    """Returns a / b, or NaN when b is zero."""
    return a / b if b else float("nan")


class SqlCounter:
    """Counts statements, transactions, savepoints and pool checkouts with SQLAlchemy events.

    Listens on the Engine and Pool classes, so it also sees engines made by the code under test.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        # While set: every statement, with the dispatcher function that sent it.
        self.capture: list[tuple[str, str, Any]] | None = None
        self.step = "?"

    def attach_everywhere(self) -> None:
        """Listens on every engine and pool this process will create."""
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        event.listen(Engine, "before_cursor_execute", self._on_statement)
        for name in ("begin", "commit", "rollback", "savepoint"):
            event.listen(Engine, name, self._bumper(name))
        # Checkouts: with pool_pre_ping (on until the sender was batched) each was a round
        # trip that no statement event shows.
        event.listen(Pool, "checkout", self._bumper("checkout"))

    def _bumper(self, name: str) -> Callable[..., None]:
        def bump(*_args: Any) -> None:
            self.counts[name] += 1

        return bump

    def _on_statement(self, _conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        self.counts["statement"] += 1
        if self.capture is not None:
            self.capture.append((self.step, statement, params))

    def snapshot(self) -> dict[str, int]:
        """Returns the counts so far."""
        return dict(self.counts)


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Returns after - before for every counter."""
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


# ---------------------------------------------------------------- child processes


def role_fake(args: argparse.Namespace) -> int:
    """Serves the fake Bot API, plus two bench-only methods, until stdin closes."""
    from bot.devtools.bot_api_server import FakeBotApiServer
    from bot.devtools.fake_telegram import FakeTelegram

    class BenchServer(FakeBotApiServer):
        """The fake server, plus `benchStats` and `benchReset` for the bench's own use."""

        def answer(self, method: str, params: dict[str, Any], token: str) -> tuple[int, Any]:
            """Answers the two bench methods here and everything else as the fake does."""
            fake = self.fake
            if method == "benchStats":
                times = list(fake.accept_times)
                stats = {
                    "accepted": len(times),
                    "distinct_chats": len({m.chat_id for m in list(fake.messages)}),
                    "first": min(times) if times else None,
                    "last": max(times) if times else None,
                    "cpu": cpu_seconds(resource.RUSAGE_SELF),
                    "calls": Counter(name for name, _ in list(fake.calls)),
                }
                return 200, {"ok": True, "result": stats}
            if method == "benchReset":
                for held in (fake.accept_times, fake.messages, fake.calls):
                    held.clear()
                return 200, {"ok": True, "result": True}
            return super().answer(method, params, token)

    server = BenchServer(FakeTelegram(time_source=time.time), port=0)
    server.start()
    print(server.root_url, flush=True)
    sys.stdin.read()  # the bench closes our stdin when it is done
    server.stop()
    return 0


def role_worker(worker_argv: list[str]) -> int:
    """Runs the real dispatch worker, then prints what it cost (CPU, statements, transactions).

    SIGINT (the bench's stop at the end of a timed run) ends it as Ctrl+C would.
    """
    counter = SqlCounter()
    counter.attach_everywhere()
    from bot.devtools import dispatch_worker

    started, cpu0, stopped = time.time(), cpu_seconds(resource.RUSAGE_SELF), False
    try:
        dispatch_worker.main(worker_argv)
    except KeyboardInterrupt:
        stopped = True
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu0
    summary = {"started": started, "cpu": cpu, "sql": counter.snapshot(), "stopped": stopped}
    print(json.dumps({"bench": summary}), flush=True)
    return 0


async def _bare_sends(
    base_url: str, first_chat: int, count: int, seconds: float, sent: list[int]
) -> None:
    """Sends up to `count` messages one at a time for at most `seconds`, counting in `sent`."""
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.content import questionnaire

    text = questionnaire("daily_checkin").items[0].text("en")  # what the worker renders
    deadline = time.monotonic() + seconds
    # Built as bot.devtools.dispatch_worker builds its Bot.
    bot = Bot(TOKEN, base_url=base_url + "/bot", request=HTTPXRequest(connection_pool_size=2))
    await bot.initialize()
    try:
        while sent[0] < count and time.monotonic() < deadline:
            # The arguments bot.sender passes for a check-in.
            await bot.send_message(
                chat_id=first_chat + sent[0],
                text=text,
                reply_markup=None,
                protect_content=False,
                parse_mode=None,
            )
            sent[0] += 1
    finally:
        await bot.shutdown()


def role_bare(args: argparse.Namespace) -> int:
    """Runs the bare PTB baseline and prints its figures."""
    started, cpu0, sent = time.time(), cpu_seconds(resource.RUSAGE_SELF), [0]
    # It stops itself after --seconds; SIGINT (the bench's stop, should the machine be so
    # slow that start-up ate into the run) ends it as for the worker.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_bare_sends(args.base_url, args.first_chat, args.count, args.seconds, sent))
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu0
    print(json.dumps({"bench": {"started": started, "cpu": cpu, "sent": sent[0]}}), flush=True)
    return 0


def child(role: str, *extra: str) -> list[str]:
    """Returns the command line that runs this script in one of its child roles."""
    return [sys.executable, __file__, "--role", role, *extra]


class FakeServer:
    """The fake Bot API in a process of its own, so its CPU is neither ours nor shared."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            child("fake"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the fake Bot API server did not start")

    def call(self, method: str) -> Any:
        """Calls one of the bench methods and returns its result."""
        request = urllib.request.Request(f"{self.url}/bot{TOKEN}/{method}", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["result"]

    def stop(self) -> None:
        """Closes the server's stdin and waits for it to end."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_children(commands: list[list[str]], seconds: float) -> list[dict[str, Any]]:
    """Runs child processes at once; after `seconds` sends SIGINT to any still running.

    Returns each child's JSON output lines merged into one dict.
    """
    # Each child leads a process group of its own, so the stop reaches what it runs (py-spy's
    # worker) and nothing else.
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, text=True, start_new_session=True)
        for c in commands
    ]
    deadline = time.monotonic() + seconds
    try:
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=GRACE)
            if proc.returncode != 0:
                raise RuntimeError(f"child {proc.args!r} exited with {proc.returncode}")
            merged: dict[str, Any] = {}
            for line in out.splitlines():
                if line.startswith("{"):
                    data = json.loads(line)
                    merged.update(data.pop("bench", {}), **data)
            results.append(merged)
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def machine_ticks() -> tuple[int, int, int]:
    """Returns the whole machine's (busy, all, steal) CPU ticks so far, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values), values[7]


class RunSampler:
    """Samples what a run costs beyond the processes it starts, every `every` seconds.

    - the CPU time of the PostgreSQL backends serving one database, from /proc (approximate:
      a backend's last fraction of an interval before it exits is not seen); other people's
      backends are left out by the database name in each backend's process title;
    - what those backends are doing, from pg_stat_activity (running a statement, waiting for
      a lock, or idle inside a transaction while the worker does its own work);
    - the whole machine's CPU: busy and stolen shares of all cores.
    """

    def __init__(self, db: BenchDb, every: float = 0.1) -> None:
        self.db = db
        self.marker = f" {db.name} ".encode()
        self.every = every
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.states: Counter[str] = Counter()
        self.queries = 0  # the sampler's own transactions, left out of PostgreSQL's count
        self._machine = (0, 0, 0)
        self.machine_busy = self.machine_steal = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> dict[int, int]:
        found: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    title = fh.read().replace(b"\0", b" ")
                if not title.startswith(b"postgres: ") or self.marker not in title:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                found[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                continue
        return found

    def _run(self) -> None:
        from sqlalchemy import text

        query = text(
            "SELECT state, wait_event_type FROM pg_stat_activity WHERE datname = :n "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self._stop.wait(self.every):
                self.last.update(self._scan())
                self.queries += 1
                for state, waiting in conn.execute(query, {"n": self.db.name}):
                    if state == "active":
                        self.states["lock wait" if waiting == "Lock" else "running"] += 1
                    elif state == "idle in transaction":
                        self.states["in a transaction, waiting for the worker"] += 1

    def __enter__(self) -> RunSampler:
        self.first = self._scan()
        self.last = dict(self.first)
        self._machine = machine_ticks()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(self._scan())
        busy, total, steal = (b - a for a, b in zip(self._machine, machine_ticks(), strict=True))
        self.machine_busy, self.machine_steal = ratio(busy, total), ratio(steal, total)

    @property
    def pg_seconds(self) -> float:
        """Returns the CPU seconds the backends used while sampled."""
        ticks = sum(used - self.first.get(pid, 0) for pid, used in self.last.items())
        return ticks / os.sysconf("SC_CLK_TCK")

    def state_shares(self) -> dict[str, float]:
        """Returns how the backends' samples split between running, lock waits and open
        transactions waiting for the worker (shares of the samples that were not idle)."""
        total = sum(self.states.values())
        return {k: round(v / total, 3) for k, v in self.states.most_common()} if total else {}


# ---------------------------------------------------------------- databases and data


@dataclass
class Plan:
    """The instants the data is built around."""

    due: datetime  # when the due check-ins were due: a whole minute, a minute ago
    next: datetime  # the schedule's next occurrence after `due` (tomorrow)
    local_time: str  # the schedule's HH:MM in ZONE
    window: timedelta

    @classmethod
    def now(cls) -> Plan:
        """Plans around the current minute, with the default answer window."""
        from bot.config import Settings
        from bot.scheduling import next_due

        hours = Settings(_env_file=None).checkin_window_hours  # type: ignore[call-arg]
        due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        local_time = due.astimezone(ZoneInfo(ZONE)).strftime("%H:%M")
        nxt = next_due(local_time=local_time, weekdays="0123456", tz=ZONE, after=due)
        return cls(due, nxt, local_time, timedelta(hours=hours))


@dataclass
class BenchDb:
    """One bench database: its URL and the id ranges a reset relies on."""

    url: str
    name: str
    plan: Plan = field(default_factory=Plan.now)
    participants: int = 0
    history_days: int = 0
    pending: tuple[int, int] = (0, 0)  # ids of the one pending check-in per schedule
    checkin_mark: int = 0  # check-ins above this id were made by a run; a reset deletes them
    outbox_mark: int = 0
    load_steps: dict[str, float] = field(default_factory=dict)  # of the last history load
    _engine: Any = None

    @property
    def dialect(self) -> str:
        """Returns 'postgresql' or 'sqlite'."""
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    @property
    def engine(self) -> Any:
        """Returns a synchronous engine for making data, resets and EXPLAIN."""
        if self._engine is None:
            from sqlalchemy import create_engine

            from bot.db import sync_url

            self._engine = create_engine(sync_url(self.url))
        return self._engine

    def stamp(self, at: datetime) -> Any:
        """Returns a timestamp as this dialect stores it (SQLite: naive UTC text)."""
        if self.dialect == "sqlite":
            return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return at

    def scalar(self, sql: str, **params: Any) -> Any:
        """Runs one query and returns its single value."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def dispose(self) -> None:
        """Closes the synchronous engine."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@contextlib.contextmanager
def bench_database(server_url: str | None) -> Iterator[BenchDb]:
    """Yields a new, migrated database: PostgreSQL beside `server_url`, else a SQLite file."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bot.db import sync_url
    from bot.migrate import upgrade_to_head

    if server_url is None:
        with tempfile.TemporaryDirectory(prefix="adh_bench_") as folder:
            db = BenchDb(f"sqlite:///{Path(folder) / 'bench.db'}", "bench.db")
            upgrade_to_head(db.url)
            try:
                yield db
            finally:
                db.dispose()
        return
    name = f"adh_bench_{secrets.token_hex(4)}"
    admin = create_engine(sync_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = BenchDb(make_url(server_url).set(database=name).render_as_string(False), name)
    try:
        upgrade_to_head(db.url)  # the schema `adherence-bot run` would make
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _prepare_bulk(conn: Any, db: BenchDb, numbers: int) -> None:
    """Makes the temporary numbers table 1..n, and skips foreign-key triggers on PostgreSQL
    (the keys are right by construction, and checking 9 million of them takes minutes)."""
    from sqlalchemy import text

    conn.execute(text("DROP TABLE IF EXISTS bench_n"))
    if db.dialect == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        # Index builds sort in memory instead of spilling 9 million rows to disk.
        conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        conn.execute(
            text("CREATE TEMP TABLE bench_n AS SELECT generate_series(1, :n) AS i"), {"n": numbers}
        )
        return
    conn.execute(text("CREATE TEMP TABLE bench_n (i INTEGER PRIMARY KEY)"))
    conn.execute(
        text(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n) "
            "INSERT INTO bench_n SELECT i FROM c"
        ),
        {"n": numbers},
    )


def seed(db: BenchDb, participants: int) -> float:
    """Adds participants 1..N (active, consented), each with a daily schedule and one pending
    check-in due tomorrow; returns the seconds it took."""
    from sqlalchemy import text

    from bot.content import consent_text, questionnaire

    started = time.perf_counter()
    q = questionnaire("daily_checkin")
    joined = db.stamp(db.plan.due - timedelta(days=400))
    params = {
        "chat0": FIRST_CHAT,
        "tz": ZONE,
        "consent": consent_text("en").version,
        "joined": joined,
        "local_time": db.plan.local_time,
        "qid": q.id,
        "qver": q.version,
        "next": db.stamp(db.plan.next),
        "closes": db.stamp(db.plan.next + db.plan.window),
    }
    with db.engine.begin() as conn:
        _prepare_bulk(conn, db, participants)
        for sql in (
            "INSERT INTO participant (id, telegram_user_id, chat_id, pseudonym, locale, timezone, "
            "status, reachable, therapy_status, discreet, consent_version, onboarded_at, "
            "created_at) SELECT i, :chat0 + i, :chat0 + i, 'bench' || i, 'en', :tz, 'active', "
            "TRUE, 'taking', FALSE, :consent, :joined, :joined FROM bench_n",
            "INSERT INTO schedule (id, participant_id, local_time, weekdays, timezone, active, "
            "created_at) SELECT i, i, :local_time, '0123456', :tz, TRUE, :joined FROM bench_n",
            "INSERT INTO checkin (participant_id, schedule_id, origin, questionnaire_id, "
            "questionnaire_version, due_at, window_closes_at, status, reminder_count, "
            "message_ids, created_at) SELECT i, i, 'scheduled', :qid, :qver, :next, :closes, "
            "'scheduled', 0, '', :joined FROM bench_n",
        ):
            conn.execute(text(sql), params)
        if db.dialect == "postgresql":
            for table in ("participant", "schedule"):
                conn.execute(
                    text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
                )
        low, high = conn.execute(text("SELECT min(id), max(id) FROM checkin")).one()
    db.participants, db.pending = participants, (int(low), int(high))
    _after_load(db)
    return time.perf_counter() - started


def _droppable(conn: Any, db: BenchDb, table: str) -> list[tuple[str, str]]:
    """Returns (drop, create) statements for the table's indexes and unique constraints (not
    its primary key), made from the catalogue, so they come back exactly as they were."""
    from sqlalchemy import text

    if db.dialect == "sqlite":  # unique constraints live inside CREATE TABLE and stay
        sql = (
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
        )
        rows = conn.execute(text(sql), {"t": table})
        return [(f'DROP INDEX "{name}"', str(ddl)) for name, ddl in rows]
    indexes = conn.execute(
        text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = :t "
            "AND i.schemaname = current_schema() "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ),
        {"t": table},
    )
    uniques = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"
        ),
        {"t": table},
    )
    return [(f'DROP INDEX "{name}"', str(ddl)) for name, ddl in indexes] + [
        (
            f'ALTER TABLE {table} DROP CONSTRAINT "{name}"',
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {ddl}',
        )
        for name, ddl in uniques
    ]


def add_history(db: BenchDb, days: int) -> float:
    """Adds `days` days of closed check-ins per participant (4 in 5 completed, the others missed
    without an answer), each with its sent outbox row; returns the seconds it took.

    The two tables' indexes and unique constraints are dropped for the load and made again
    from their own definitions afterwards, several times faster than keeping them up to date.
    """
    from sqlalchemy import text

    from bot.content import questionnaire

    started, steps = time.perf_counter(), {}
    q = questionnaire("daily_checkin")
    kind = "timestamptz" if db.dialect == "postgresql" else "TEXT"
    days_rows = [
        {
            "n": n,
            "due": db.stamp(db.plan.due - timedelta(days=n)),
            "closes": db.stamp(db.plan.due - timedelta(days=n) + db.plan.window),
            "answered": db.stamp(db.plan.due - timedelta(days=n, minutes=-10)),
            "done": db.stamp(db.plan.due - timedelta(days=n, minutes=-12)),
        }
        for n in range(1, days + 1)
    ]
    done = "(p.i + d.n) % 5 <> 0"  # four days in five she answered
    with db.engine.begin() as conn:
        _prepare_bulk(conn, db, db.participants)
        conn.execute(text("DROP TABLE IF EXISTS bench_day"))
        conn.execute(
            text(
                f"CREATE TEMP TABLE bench_day (n INTEGER, due {kind}, closes {kind}, "
                f"answered {kind}, done {kind})"
            )
        )
        conn.execute(
            text("INSERT INTO bench_day VALUES (:n, :due, :closes, :answered, :done)"), days_rows
        )
        dropped = _droppable(conn, db, "checkin") + _droppable(conn, db, "outgoingmessage")
        for drop, _create in dropped:
            conn.execute(text(drop))
        steps["drop indexes"] = time.perf_counter() - started
        conn.execute(
            text(
                "INSERT INTO checkin (participant_id, schedule_id, origin, questionnaire_id, "
                "questionnaire_version, due_at, window_closes_at, queued_at, sent_at, "
                "first_answer_at, closed_at, status, missed_reason, reminder_count, "
                "message_ids, created_at) SELECT p.i, p.i, 'scheduled', :qid, :qver, d.due, "
                f"d.closes, d.due, d.due, CASE WHEN {done} THEN d.answered END, "
                f"CASE WHEN {done} THEN d.done ELSE d.closes END, "
                f"CASE WHEN {done} THEN 'completed' ELSE 'missed' END, "
                f"CASE WHEN {done} THEN NULL ELSE 'no_answer' END, "
                f"CASE WHEN {done} THEN 0 ELSE 1 END, '1', d.due "
                "FROM bench_n p CROSS JOIN bench_day d"
            ),
            {"qid": q.id, "qver": q.version},
        )
        conn.execute(
            text(
                "INSERT INTO outgoingmessage (kind, participant_id, chat_id, checkin_id, payload, "
                "state, not_before, attempts, uncertain, telegram_message_id, sent_at, "
                "created_at) SELECT 'checkin', c.participant_id, :chat0 + c.participant_id, "
                "c.id, '{}', 'sent', c.due_at, 1, FALSE, 1, c.due_at, c.due_at FROM checkin c "
                "WHERE c.id > :mark"
            ),
            {"chat0": FIRST_CHAT, "mark": db.checkin_mark},
        )
        steps["insert rows"] = time.perf_counter() - started - sum(steps.values())
        for _drop, create in dropped:
            conn.execute(text(create))
        steps["make indexes"] = time.perf_counter() - started - sum(steps.values())
    db.history_days = days
    _after_load(db)
    steps["vacuum and analyze"] = time.perf_counter() - started - sum(steps.values())
    db.load_steps = steps
    return time.perf_counter() - started


def _after_load(db: BenchDb) -> None:
    """Remembers the highest ids (a reset deletes anything above) and refreshes statistics.

    PostgreSQL is vacuumed and analysed as autovacuum would in time; SQLite is left without
    statistics, as the bot never runs ANALYZE there.
    """
    from sqlalchemy import text

    db.checkin_mark = int(db.scalar("SELECT coalesce(max(id), 0) FROM checkin"))
    db.outbox_mark = int(db.scalar("SELECT coalesce(max(id), 0) FROM outgoingmessage"))
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) participant, schedule, checkin, outgoingmessage"))


def reset_due(db: BenchDb, due_count: int) -> None:
    """Undoes any run (deletes the rows it added) and makes the first `due_count` participants'
    pending check-ins due a minute ago, the others tomorrow."""
    from sqlalchemy import text

    params = {
        "d": due_count,
        "due": db.stamp(db.plan.due),
        "due_closes": db.stamp(db.plan.due + db.plan.window),
        "next": db.stamp(db.plan.next),
        "next_closes": db.stamp(db.plan.next + db.plan.window),
        "lo": db.pending[0],
        "hi": db.pending[1],
        "outbox_mark": db.outbox_mark,
        "checkin_mark": db.checkin_mark,
    }
    target = "CASE WHEN participant_id <= :d THEN :due ELSE :next END"
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM outgoingmessage WHERE id > :outbox_mark"), params)
        conn.execute(text("DELETE FROM checkin WHERE id > :checkin_mark"), params)
        conn.execute(
            text(
                f"UPDATE checkin SET due_at = {target}, window_closes_at = CASE WHEN "
                "participant_id <= :d THEN :due_closes ELSE :next_closes END, "
                "status = 'scheduled', queued_at = NULL, sent_at = NULL, first_answer_at = NULL, "
                "closed_at = NULL, missed_reason = NULL, reminder_count = 0, "
                "next_reminder_at = NULL, message_ids = '' WHERE id BETWEEN :lo AND :hi "
                f"AND (status <> 'scheduled' OR queued_at IS NOT NULL OR due_at <> {target})"
            ),
            params,
        )
        conn.execute(text("DELETE FROM rateslot"))
    _after_load(db)


def pg_transactions(db: BenchDb) -> int:
    """Returns the transactions PostgreSQL counted for this database (commits + rollbacks)."""
    sql = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :n"
    return int(db.scalar(sql, n=db.name) or 0)


# ---------------------------------------------------------------- in-process ticks


def bench_services(url: str, api_root: str | None, rate: float) -> Any:
    """Returns Services built as the dispatch worker builds them (no .env, a fake token)."""
    from bot.config import Settings
    from bot.db import Database
    from bot.devtools.dispatch_worker import render_first_question
    from bot.services import Services

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=TOKEN,
        database_url=url,
        telegram_api_base_url=api_root,
        global_rate_per_second=rate,
    )
    services = Services()
    services.configure(settings, Database(url))
    services.renderers["checkin"] = render_first_question
    return services


async def idle_ticks(db: BenchDb, ticks: int, counter: SqlCounter, capture: bool) -> Any:
    """Times `ticks` ticks with nothing due (after two untimed ones); with `capture`, returns
    the statements of one tick instead."""
    from telegram import Bot

    from bot.devtools.fake_telegram import FakeRequest, FakeTelegram
    from bot.dispatcher import TickReport, heal_schedules, run_tick

    services = bench_services(db.url, None, 100_000.0)
    bot = Bot(TOKEN, request=FakeRequest(FakeTelegram()))
    await bot.initialize()
    times: list[float] = []
    try:
        for _ in range(2):
            await run_tick(services, bot)
        if capture:
            counter.capture = []
            services.heal_after = None  # a tick that also looks for unplanned schedules
            with StepClock(counter).installed(every_public=True):
                await run_tick(services, bot)
            return counter.capture
        before = counter.snapshot()
        for _ in range(ticks):
            started = time.perf_counter()
            report = await run_tick(services, bot)
            times.append((time.perf_counter() - started) * 1000)
            if report.sent or report.checkins_queued or report.planned:
                raise RuntimeError(f"the idle tick did work: {report}")
        used = diff(counter.snapshot(), before)
        # The safety net runs once a minute (every sixth tick or so), so the ticks above are
        # nearly all without it: its own cost is timed apart.
        looks: list[float] = []
        for _ in range(max(3, ticks // 2)):
            services.heal_after = None
            started = time.perf_counter()
            await heal_schedules(services=services, report=TickReport())
            looks.append((time.perf_counter() - started) * 1000)
    finally:
        counter.capture = None
        await bot.shutdown()
        await services.db.dispose()
    return {
        "heal_ms": median(looks),
        "median_ms": median(times),
        "p90_ms": p90(times),
        "statements_per_tick": used.get("statement", 0) / ticks,
        "transactions_per_tick": used.get("begin", 0) / ticks,
    }


@dataclass
class StepClock:
    """Times the dispatcher's steps by wrapping bot.dispatcher's functions (in the bench only),
    and tells a SqlCounter which step is sending its statements."""

    counter: SqlCounter | None = None
    origin: float = 0.0
    steps: list[list[Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def installed(self, *, every_public: bool = False) -> Iterator[None]:
        """Wraps the coroutine functions run_tick calls by name (or, with `every_public`, every
        public coroutine function of bot.dispatcher, so the innermost names the statement)."""
        from bot import dispatcher

        names = (
            [n for n in vars(dispatcher) if not n.startswith("_")]
            if every_public
            else dispatcher.run_tick.__code__.co_names
        )
        originals = {
            n: getattr(dispatcher, n)
            for n in names
            if inspect.iscoroutinefunction(getattr(dispatcher, n, None))
            and getattr(dispatcher, n).__module__ == dispatcher.__name__
        }

        def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            async def timed(*args: Any, **kwargs: Any) -> Any:
                step = [name, time.time() - self.origin, None]
                self.steps.append(step)
                outer = self.counter.step if self.counter else ""
                if self.counter:
                    self.counter.step = name
                try:
                    return await fn(*args, **kwargs)
                finally:
                    step[2] = time.time() - self.origin
                    if self.counter:
                        self.counter.step = outer

            return timed

        for name, fn in originals.items():
            setattr(dispatcher, name, wrap(name, fn))
        try:
            yield
        finally:
            for name, fn in originals.items():
                setattr(dispatcher, name, fn)


async def first_send(db: BenchDb, fake: FakeServer, due_count: int) -> dict[str, Any]:
    """Times a tick from its start to the first message the fake accepts, then cancels it.

    The bot has ticked once before (a running bot has), over HTTP as the worker does.
    """
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.dispatcher import run_tick

    services = bench_services(db.url, fake.url, 100_000.0)
    sent = asyncio.Event()

    class Noticing(HTTPXRequest):
        """The worker's transport, which notices the first message accepted."""

        async def do_request(self, url: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
            """Makes the call; sets `sent` on the first sendMessage answered 200."""
            answer = await super().do_request(url, *args, **kwargs)
            if url.endswith("/sendMessage") and answer[0] == 200:
                sent.set()
            return answer

    bot = Bot(TOKEN, base_url=fake.url + "/bot", request=Noticing(connection_pool_size=2))
    await bot.initialize()
    clock = StepClock()
    try:
        reset_due(db, 0)
        await run_tick(services, bot)
        reset_due(db, due_count)
        fake.call("benchReset")
        with clock.installed():
            clock.origin = started = time.time()
            tick = asyncio.create_task(run_tick(services, bot))
            watch = asyncio.create_task(sent.wait())
            await asyncio.wait({tick, watch}, return_when=asyncio.FIRST_COMPLETED, timeout=300)
            for task in (tick, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        await bot.shutdown()
        await services.db.dispose()
    accepted = fake.call("benchStats")["first"]
    seconds = accepted - started if accepted else None
    steps = [
        {"step": s[0], "start": round(s[1], 3), "end": None if s[2] is None else round(s[2], 3)}
        for s in clock.steps
        if seconds is None or s[1] <= seconds
    ]
    return {"due": due_count, "seconds": seconds, "steps": steps}


# ---------------------------------------------------------------- EXPLAIN


_KEY_LINE = re.compile(r"Scan|Join|Nested Loop|Rows Removed|Execution Time|Sort Method|Limit")
_SCAN = re.compile(
    r"((?:Seq|Index|Index Only|Bitmap Heap|Bitmap Index) Scan(?: using \S+)?(?: on \S+)?)"
)


def explain_all(db: BenchDb, captured: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS)s each distinct captured statement and summarises its plan.

    Each is named after the dispatcher function that sent it and the first table it reads.
    """
    results: list[dict[str, Any]] = []
    labels: Counter[str] = Counter()
    for step, statement, params in captured:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb not in {"SELECT", "WITH", "UPDATE"} or any(
            r["statement"] == statement for r in results
        ):
            continue
        table = re.search(r"\bFROM (\w+)", statement, re.IGNORECASE)
        label = f"{step} ({table.group(1) if table else verb.lower()})"
        labels[label] += 1
        label += f" #{labels[label]}" if labels[label] > 1 else ""
        plan = explain(db, statement, params)
        results.append(
            {"label": label, "step": step, "statement": statement, "plan": plan, **summarise(plan)}
        )
    return results


def explain(db: BenchDb, statement: str, params: Any) -> list[str]:
    """Returns the text plan of one statement, from its second run (warm), each run in a
    transaction that is rolled back, so FOR UPDATE and writes leave nothing behind."""
    lines: list[str] = []
    for _ in range(2):
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params or None)
            lines = [str(r[0]) for r in rows]
            conn.rollback()
    return lines


def summarise(plan: list[str]) -> dict[str, Any]:
    """Pulls the figures out of a text plan: time, buffers, rows removed, scan nodes."""
    whole = "\n".join(plan)
    removed = re.findall(r"Rows Removed by (?:Join )?Filter: (\d+)", whole)
    execution = re.search(r"Execution Time: ([\d.]+)", whole)
    buffers = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", whole)
    return {
        "execution_ms": float(execution.group(1)) if execution else float("nan"),
        "rows_removed": sum(int(n) for n in removed),
        "buffers": sum(int(n or 0) for n in buffers.groups()) if buffers else 0,
        "scans": [m.group(1) for line in plan if (m := _SCAN.search(line))],
        "key_lines": [
            re.sub(r"\s*\(cost=[^)]*\)", "", line.rstrip())
            for line in plan
            if _KEY_LINE.search(line)
        ],
    }


# ---------------------------------------------------------------- the measurements


def throughput(db: BenchDb, fake: FakeServer, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs the bare baseline and the workers in turns; returns one record per run."""
    turns: list[tuple[str, int]] = []
    for count in args.workers:
        turns += [("bare", count), ("worker", count)]
    turns.append(("bare", args.workers[0]))  # a last baseline shows drift over the run
    records = []
    for kind, procs in turns:
        fake.call("benchReset")
        if kind == "worker":
            reset_due(db, args.rows)
            worker_args = [
                "--database-url",
                db.url,
                "--base-url",
                fake.url,
                "--rate",
                str(args.rate),
            ]
            # The worker stops after --max-seconds once its tick ends; SIGINT stops it sooner.
            worker_args += ["--max-seconds", str(args.seconds + GRACE)]
            commands = [child("worker", "--", *worker_args) for _ in range(procs)]
        else:
            share = -(-args.rows // procs)
            commands = [
                child(
                    "bare",
                    *("--base-url", fake.url, "--count", str(share)),
                    *("--first-chat", str(FIRST_CHAT + 1 + i * share)),
                    *("--seconds", str(args.seconds)),
                )
                for i in range(procs)
            ]
        before = (load(), cpu_seconds(resource.RUSAGE_CHILDREN), fake.call("benchStats")["cpu"])
        xacts = pg_transactions(db)
        # The bare script stops itself after --seconds of sending; the margin covers start-up.
        limit = args.seconds + (0 if kind == "worker" else 15)
        with RunSampler(db) as sampler:
            children = run_children(commands, limit)
        stats = fake.call("benchStats")
        sends, started = stats["accepted"], min(c["started"] for c in children)
        record: dict[str, Any] = {
            "kind": kind,
            "processes": procs,
            "sends": sends,
            "distinct_chats": stats["distinct_chats"],
            "per_second": sends / (stats["last"] - started),
            "per_second_steady": (sends - 1) / max(stats["last"] - stats["first"], 1e-9),
            "first_send_after_s": stats["first"] - started,
            "process_cpu_ms": (cpu_seconds(resource.RUSAGE_CHILDREN) - before[1]) * 1000 / sends,
            "loop_cpu_ms": sum(c["cpu"] for c in children) * 1000 / sends,
            "fake_cpu_ms": (stats["cpu"] - before[2]) * 1000 / sends,
            "get_me": stats["calls"].get("getMe", 0),
            "load_before": before[0],
            "load_after": load(),
            "machine_busy": sampler.machine_busy,
            "machine_steal": sampler.machine_steal,
        }
        if kind == "worker":
            time.sleep(0.6)  # PostgreSQL folds an ended backend's counters in within a second
            sql: Counter[str] = Counter()
            for c in children:
                sql.update(c["sql"])
            stored = "SELECT count(*) FROM outgoingmessage WHERE id > :m AND state = 'sent'"
            record |= {
                "stored_sent": int(db.scalar(stored, m=db.outbox_mark)),
                "stopped": sum(bool(c.get("stopped")) for c in children),
                "pg_cpu_ms": sampler.pg_seconds * 1000 / sends,
                "pg_states": sampler.state_shares(),
                # Less the sampler's queries and the reading of the count itself.
                "server_transactions": (pg_transactions(db) - xacts - sampler.queries - 1) / sends,
                **{f"{k}s": v / sends for k, v in sorted(sql.items())},
            }
        records.append(record)
        print(f"  {describe_run(record)}", flush=True)
    reset_due(db, 0)
    return records


def run_name(r: dict[str, Any]) -> str:
    """Names a throughput run."""
    plural = "es" if r["processes"] > 1 else ""
    if r["kind"] == "worker":
        return f"{r['processes']} dispatch worker{'s' if r['processes'] > 1 else ''}"
    return f"bare PTB send_message, {r['processes']} process{plural}"


def describe_run(r: dict[str, Any]) -> str:
    """Returns one line about a throughput run."""
    line = (
        f"{run_name(r)}: {r['sends']} sends, {r['per_second']:.0f}/s from start "
        f"({r['per_second_steady']:.0f}/s first to last), {r['process_cpu_ms']:.2f} ms CPU/send"
    )
    if r["kind"] == "worker":
        line += (
            f", PostgreSQL {r['pg_cpu_ms']:.2f} ms/send, {r.get('statements', 0):.1f} "
            f"statements and {r.get('begins', 0):.2f} transactions per send"
        )
    return line


def profile_worker(db: BenchDb, fake: FakeServer, args: argparse.Namespace) -> dict[str, Any]:
    """Runs the worker once more (uncounted) under py-spy; summarises where its CPU goes."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        return {"error": "py-spy is not installed in the venv"}
    reset_due(db, args.rows)
    fake.call("benchReset")
    worker = [
        *(str(py_spy), "record", "--format", "raw", "--rate", "200", "--gil"),
        *("--output", args.profile, "--", *child("worker", "--")),
        *("--database-url", db.url, "--base-url", fake.url, "--rate", str(args.rate)),
    ]
    # The SIGINT at the end goes to py-spy's process group, so it reaches the worker too.
    run_children([worker], args.seconds)
    reset_due(db, 0)
    return summarise_profile(Path(args.profile), fake.call("benchStats")["accepted"])


def summarise_profile(path: Path, sends: int) -> dict[str, Any]:
    """Returns self time by package and inclusive time by bot/ function from py-spy's raw
    (collapsed) stacks, as shares of the samples taken inside dispatcher.run_tick."""
    frame = re.compile(r"^(.*) \(([^:()]*):\d+\)$")
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ticking = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [m.groups() for f in stack.split(";") if (m := frame.match(f))]
        if not count_text.isdigit() or not any(fn == "run_tick" for fn, _ in frames):
            continue  # start-up and shutdown samples
        count = int(count_text)
        ticking += count
        by_package[frames[-1][1].split("/")[0]] += count
        seen = {f"{Path(p).stem}.{fn}" for fn, p in frames if p.startswith("bot/")}
        for name in seen:
            inclusive[name] += count
    share = {"samples_in_ticks": ticking, "sends": sends}
    share["self_by_package"] = {
        k: round(100 * v / ticking, 1) for k, v in by_package.most_common(12)
    }
    share["inclusive_bot"] = {k: round(100 * v / ticking, 1) for k, v in inclusive.most_common(20)}
    return share


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the chosen parts and returns every figure."""
    counter = SqlCounter()
    counter.attach_everywhere()
    result: dict[str, Any] = {
        "commit": git_revision(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "load_start": load(),
        "args": {k: v for k, v in vars(args).items() if k not in {"write_docs", "json"}},
        "idle": [],
        "plans": [],
        "first_send": [],
        "seeding": [],
    }
    parts = set(args.parts)

    def note(db: BenchDb, what: str, seconds: float) -> None:
        result["seeding"].append(
            {
                "dialect": db.dialect,
                "participants": db.participants,
                "what": what,
                "seconds": seconds,
                "steps": dict(db.load_steps) if "history" in what else {},
            }
        )
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in result["seeding"][-1]["steps"].items())
        print(f"  {what}: {db.dialect}, {db.participants} participants, {seconds:.1f} s {steps}")

    def idle(db: BenchDb) -> None:
        if "idle" in parts:
            record = asyncio.run(idle_ticks(db, args.idle_ticks, counter, capture=False))
            record |= {"dialect": db.dialect, "participants": db.participants}
            record["history_days"] = db.history_days
            result["idle"].append(record)
            print(
                f"  idle tick: {db.dialect}, {db.participants} participants, {db.history_days} "
                f"days of history: {record['median_ms']:.1f} ms, "
                f"{record['statements_per_tick']:.0f} statements",
                flush=True,
            )

    def history_and_plans(db: BenchDb) -> None:
        note(db, f"{args.history_days} days of history", add_history(db, args.history_days))
        idle(db)
        if "plans" not in parts or db.dialect != "postgresql":
            return
        captured = asyncio.run(idle_ticks(db, 0, counter, capture=True))
        plans = explain_all(db, captured)
        reset_due(db, args.explain_due)
        plans += [
            {**p, "label": f"{p['label']}, {args.explain_due:,} due"}
            for p in explain_all(db, [c for c in captured if c[0] == "claim_due_checkins"])
        ]
        reset_due(db, 0)
        for p in plans:
            p |= {"participants": db.participants, "history_days": db.history_days}
            print(
                f"  plan {p['label']}: {p['execution_ms']:.2f} ms, {' / '.join(p['scans'])}, "
                f"{p['rows_removed']} rows removed by filter",
                flush=True,
            )
        result["plans"] += plans

    fake = FakeServer() if parts & {"throughput", "first-send"} else None
    try:
        for size in dict.fromkeys([args.participants, *args.sizes]):
            on_history = size in args.sizes and bool(parts & {"idle", "plans"})
            sending = size == args.participants and fake is not None
            if not (on_history or sending):
                continue
            with bench_database(args.database_url) as db:
                result["postgres"] = db.scalar("SHOW server_version").split()[0]
                note(db, "participants and schedules", seed(db, size))
                idle(db)
                if sending and fake is not None and "throughput" in parts:
                    print(f"throughput: {size} participants, {args.rows} due", flush=True)
                    result["throughput"] = throughput(db, fake, args)
                    if args.profile:
                        result["profile"] = profile_worker(db, fake, args)
                if sending and fake is not None and "first-send" in parts:
                    for due in args.first_send_due:
                        for _ in range(args.first_send_repeats):
                            one = asyncio.run(first_send(db, fake, due))
                            print(f"  first send with {due} due: {one['seconds']:.3f} s")
                            result["first_send"].append(one)
                    reset_due(db, 0)
                if on_history:
                    history_and_plans(db)
        for size in args.sqlite_sizes if "idle" in parts else []:
            with bench_database(None) as db:
                note(db, "participants and schedules", seed(db, size))
                idle(db)
                if size in args.sqlite_history_sizes:
                    history_and_plans(db)
    finally:
        if fake is not None:
            fake.stop()
    result["load_end"] = load()
    return result


# ---------------------------------------------------------------- reporting


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """Works out the issue's figures (rates, ratios, first-send medians) from the records."""
    runs = result.get("throughput", [])

    def rate(kind: str, procs: int) -> float:
        return median(
            [r["per_second"] for r in runs if (r["kind"], r["processes"]) == (kind, procs)]
        )

    first: defaultdict[int, list[float]] = defaultdict(list)
    for record in result.get("first_send", []):
        if record["seconds"] is not None:
            first[record["due"]].append(record["seconds"])
    figures = {"bare_1": rate("bare", 1), "bare_2": rate("bare", 2)}
    figures |= {"worker_1": rate("worker", 1), "worker_2": rate("worker", 2)}
    figures |= {
        "one_over_bare": ratio(figures["worker_1"], figures["bare_1"]),
        "two_over_one": ratio(figures["worker_2"], figures["worker_1"]),
        "bare_two_over_one": ratio(figures["bare_2"], figures["bare_1"]),
        "first_send": {due: median(v) for due, v in sorted(first.items())},
    }
    return figures


def verdict(ok: bool) -> str:
    """Returns 'met' or 'not met' (bold)."""
    return "met" if ok else "**not met**"


def docs_section(result: dict[str, Any], command: str) -> str:
    """Renders the figures as the Markdown between the dispatch-bench markers."""
    h, a = headline(result), result["args"]
    lines = [
        f"Run on {result['date']} at commit {result['commit']}; {result['machine']}, "
        f"PostgreSQL {result.get('postgres', '?')}; load average {result['load_start']} at "
        f"the start and {result['load_end']} at the end (on 2 cores, above 2 means the run "
        f"shared the CPU with other work); {result['total_seconds'] / 60:.1f} minutes in all.",
        "",
        f"    {command}",
        "",
    ]
    runs = result.get("throughput", [])
    if runs:
        lines += throughput_table(result, h)
    if result["first_send"]:
        lines += first_send_table(result, h)
    if result["idle"]:
        lines += [
            f"**Idle tick** (nothing due; median of {a['idle_ticks']} ticks after two untimed). "
            "The look for schedules with no check-in waiting (`heal_schedules`, a safety net "
            "that reads every schedule) runs once a minute, about one tick in six, and is "
            "timed apart:",
            "",
            "| database | participants | history | median | p90 | statements/tick "
            "| once a minute: heal_schedules |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in sorted(
            result["idle"], key=lambda r: (r["dialect"], r["participants"], r["history_days"])
        ):
            history = f"{r['history_days']} days" if r["history_days"] else "none"
            lines.append(
                f"| {r['dialect']} | {r['participants']:,} | {history} | {r['median_ms']:.1f} ms "
                f"| {r['p90_ms']:.1f} ms | {r['statements_per_tick']:.0f} "
                f"| {r.get('heal_ms', float('nan')):.1f} ms |"
            )
        lines.append("")
    if result["plans"]:
        lines += plans_section(result["plans"])
    if result["seeding"]:
        made = "; ".join(
            f"{s['dialect']} {s['participants']:,} {s['what']} {s['seconds']:.0f} s"
            for s in result["seeding"]
        )
        lines.append(f"Making the data took: {made}.")
    return "\n".join(lines).rstrip()


def throughput_table(result: dict[str, Any], h: dict[str, Any]) -> list[str]:
    """Renders the throughput runs and the two ratios."""
    a, runs = result["args"], result["throughput"]
    lines = [
        f"**Throughput**: {a['participants']:,} participants, {a['rows']:,} check-ins due at "
        f"once, each run {a['seconds']:.0f} s; GLOBAL_RATE_PER_SECOND={a['rate']:,.0f}, so the "
        "bot's pacing never waits; fake Bot API over HTTP in a process of its own. CPU is per "
        "send: the sending process (start-up included), the PostgreSQL backends serving it "
        "(sampled from /proc) and the fake server. Statements, transactions (BEGIN), "
        "savepoints and pool checkouts (no pre-ping: a checkout costs no round trip) are "
        "counted with SQLAlchemy events inside the worker.",
        "",
        "| run | sends | sends/s from start | sends/s first to last | CPU ms | PostgreSQL "
        "CPU ms | fake CPU ms | statements | transactions | savepoints | checkouts | machine "
        "busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        worker = r["kind"] == "worker"
        per = [r.get(k, 0.0) for k in ("statements", "begins", "savepoints", "checkouts")]
        cells = [
            run_name(r),
            f"{r['sends']:,}",
            f"{r['per_second']:.0f}",
            f"{r['per_second_steady']:.0f}",
            f"{r['process_cpu_ms']:.2f}",
            f"{r['pg_cpu_ms']:.2f}" if worker else "",
            f"{r['fake_cpu_ms']:.2f}",
            *(f"{v:.1f}" if worker else "0" for v in per),
            f"{r['machine_busy']:.0%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    workers = [r for r in runs if r["kind"] == "worker"]
    clear = ratio(a["rows"], h["worker_1"]) / 60
    lines += [
        "",
        f"- one worker / bare PTB in one process: **{h['one_over_bare']:.2f}** (target at "
        f"least 0.8: {verdict(h['one_over_bare'] >= 0.8)}); at {h['worker_1']:.0f} sends/s one "
        f"worker takes {clear:.0f} minutes to send {a['rows']:,} due check-ins.",
        f"- two workers / one worker: **{h['two_over_one']:.2f}** (target at least 1.76: "
        f"{verdict(h['two_over_one'] >= 1.76)}). The same ratio for the bare script, two "
        f"processes against one, is {h['bare_two_over_one']:.2f}: what this machine, with "
        "everything else running on it, gives a second process.",
        "- every send is stored once: "
        + ", ".join(
            f"{run_name(r)} {r['stored_sent']:,} rows sent to {r['distinct_chats']:,} chats"
            for r in workers
        )
        + "; PostgreSQL's own count of transactions per send (pg_stat_database): "
        + ", ".join(f"{r['server_transactions']:.2f}" for r in workers)
        + ".",
        "- what the PostgreSQL backends serving the workers were doing when sampled (not idle): "
        + "; ".join(
            f"{run_name(r)}: " + ", ".join(f"{k} {v:.0%}" for k, v in r["pg_states"].items())
            for r in workers
        )
        + ".",
        "",
    ]
    profile = result.get("profile")
    if profile and "self_by_package" in profile:
        own = ", ".join(f"{k} {v}%" for k, v in profile["self_by_package"].items())
        inner = ", ".join(
            f"{k} {v}%"
            for k, v in profile["inclusive_bot"].items()
            if v < 99.5 and "<locals>" not in k  # run_tick and its callers are all of it
        )
        lines += [
            f"Where one worker's time goes (py-spy --gil, a separate single-worker run: "
            f"{profile['samples_in_ticks']:,} samples inside run_tick, taken while it ran Python "
            "code; libpq and system calls, which release the GIL, are not in it). By package "
            f"of the function running: {own}. Inclusive, by bot/ function: {inner}.",
            "",
        ]
    return lines


def first_send_table(result: dict[str, Any], h: dict[str, Any]) -> list[str]:
    """Renders the first-send medians and where the slowest tick spent its time."""
    a, runs = result["args"], result["first_send"]
    lines = [
        "**From the start of a tick to the first message accepted by the fake** (target at most "
        f"0.5 s whatever the backlog); {a['participants']:,} participants, "
        f"{a['first_send_repeats']} ticks each, over HTTP:",
        "",
        "| due at once | median | every tick | target |",
        "|---:|---:|---|---|",
    ]
    for due, value in h["first_send"].items():
        each = ", ".join(f"{r['seconds']:.2f} s" for r in runs if r["due"] == due and r["seconds"])
        lines.append(f"| {due:,} | {value:.2f} s | {each} | {verdict(value <= 0.5)} |")
    slowest = max(runs, key=lambda r: (r["due"], r["seconds"] or 0))
    steps = ", ".join(
        f"{s['step']} {s['start']:.2f}–{s['end']:.2f} s"
        if s["end"] is not None and s["end"] <= (slowest["seconds"] or 0)
        else f"{s['step']} from {s['start']:.2f} s"
        for s in slowest["steps"]
    )
    lines += ["", f"The slowest tick with {slowest['due']:,} due, step by step: {steps}.", ""]
    return lines


def plans_section(plans: list[dict[str, Any]]) -> list[str]:
    """Renders the EXPLAIN summary table and the key lines of the queries the issue names."""
    sizes = sorted({p["participants"] for p in plans})
    lines = [
        f"**Query plans**, PostgreSQL with {plans[0]['history_days']} days of history: every "
        "statement an idle tick sends, captured from a real tick with its parameters and named "
        "after the dispatcher function that sent it, under EXPLAIN (ANALYZE, BUFFERS) (second "
        "run, so the cache is warm; buffers are the top node's shared hits and reads; "
        "'removed' sums Rows Removed by Filter):",
        "",
        "| statement | " + " | ".join(f"{s:,} participants" for s in sizes) + " | plan |",
        "|---|" + "---:|" * len(sizes) + "---|",
    ]
    for label in dict.fromkeys(p["label"] for p in plans):
        found = {p["participants"]: p for p in plans if p["label"] == label}
        cells = [
            f"{found[s]['execution_ms']:.2f} ms, {found[s]['buffers']:,} buffers, "
            f"{found[s]['rows_removed']:,} removed"
            if s in found
            else ""
            for s in sizes
        ]
        scans = ", ".join(dict.fromkeys(found[max(found)]["scans"])) or "no table read"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {scans} |")
    lines += [
        "",
        f"Key lines at {sizes[-1]:,} participants, of the queries the issue names and of any "
        "that removes a thousand rows or more by filter:",
        "",
    ]
    for p in plans:
        # The queries the issue names, and any that reads much more than it returns.
        named = any(p["step"].startswith(q) for q in QUOTED)
        if p["participants"] == sizes[-1] and (named or p["rows_removed"] >= 1000):
            lines += [f"- {p['label']}:", ""]
            lines += [f"      {k.strip()}" for k in p["key_lines"][:10]]
            lines.append("")
    return lines


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replaces the text between the dispatch-bench markers, and nothing else."""
    text = path.read_text()
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path}: the {START_MARK} ... {END_MARK} markers are missing")
    path.write_text(pattern.sub(lambda _m: f"{START_MARK}\n{section}\n{END_MARK}", text, count=1))


def print_summary(result: dict[str, Any]) -> None:
    """Prints the headline figures."""
    h = headline(result)
    print(
        f"\ncommit {result['commit']}; {result['machine']}; load {result['load_start']} -> "
        f"{result['load_end']}; {result['total_seconds']} s"
    )
    if result.get("throughput"):
        print(
            f"sends/s: bare {h['bare_1']:.0f}, one worker {h['worker_1']:.0f}, two workers "
            f"{h['worker_2']:.0f}, bare x2 {h['bare_2']:.0f}; one/bare {h['one_over_bare']:.2f} "
            f"(target >= 0.8), two/one {h['two_over_one']:.2f} (target >= 1.76)"
        )
    for due, value in h["first_send"].items():
        print(f"first send with {due} due: {value:.2f} s (target <= 0.5 s)")
    if result.get("profile"):
        print("profile, self time by package (%):", result["profile"].get("self_by_package"))
        print("profile, inclusive by bot/ function (%):", result["profile"].get("inclusive_bot"))


# ---------------------------------------------------------------- command line


def int_list(value: str) -> list[int]:
    """Parses '1000,10000' into [1000, 10000] ('' gives [])."""
    return [int(v) for v in value.split(",") if v.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses the bench's options (and the hidden ones its child processes get)."""
    p = argparse.ArgumentParser(prog="bench/dispatch_bench.py", description=__doc__.split("\n")[0])
    add = p.add_argument
    add(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server: bench databases are made beside this database and dropped",
    )
    add("--participants", type=int, default=100_000, help="for throughput and first send")
    add("--rows", type=int, default=10_000, help="check-ins due at once for throughput")
    add("--workers", type=int_list, default=[1, 2], help="worker process counts, e.g. 1,2")
    add("--seconds", type=float, default=45.0, help="length of each throughput run")
    add(
        "--rate",
        type=float,
        default=100_000.0,
        help="GLOBAL_RATE_PER_SECOND for the workers: high, so pacing never waits",
    )
    add(
        "--parts",
        type=lambda v: v.split(","),
        default=["throughput", "first-send", "idle", "plans"],
    )
    add("--first-send-due", type=int_list, default=[1000, 10_000])
    add("--first-send-repeats", type=int, default=3)
    add(
        "--sizes",
        type=int_list,
        default=[10_000, 100_000],
        help="participants for the PostgreSQL idle ticks and plans with history",
    )
    add("--sqlite-sizes", type=int_list, default=[10_000, 100_000])
    add(
        "--sqlite-history-sizes",
        type=int_list,
        default=[10_000],
        help="SQLite sizes that also get the history (100,000 takes several minutes)",
    )
    add("--history-days", type=int, default=90)
    add("--explain-due", type=int, default=1000)
    add("--idle-ticks", type=int, default=10)
    add("--profile", default=None, metavar="PATH", help="also profile one worker with py-spy")
    add("--json", type=Path, default=None, help="also write every figure here")
    add("--write-docs", action="store_true", help=f"update the figures in docs/{DOCS.name}")
    add("--role", choices=["fake", "worker", "bare"], help=argparse.SUPPRESS)
    add("--base-url", help=argparse.SUPPRESS)
    add("--count", type=int, default=0, help=argparse.SUPPRESS)
    add("--first-chat", type=int, default=FIRST_CHAT, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the bench, or one of its child roles."""
    argv = sys.argv[1:] if argv is None else argv
    # The worker role hands everything after "--" to the real dispatch worker.
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parse_args(argv[:cut])
    if args.role == "fake":
        return role_fake(args)
    if args.role == "worker":
        return role_worker(argv[cut + 1 :])
    if args.role == "bare":
        return role_bare(args)
    started = time.perf_counter()
    result = measure(args)
    result["total_seconds"] = round(time.perf_counter() - started)
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.write_docs:
        write_docs(
            docs_section(result, ".venv/bin/python bench/dispatch_bench.py " + " ".join(argv))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
