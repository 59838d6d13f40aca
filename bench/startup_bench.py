"""Benchmark: from launching `adherence-bot run` to its first getUpdates, against a bare PTB bot.

All are started as subprocesses, in turns (bot, stack, bare, bare, stack, bot, ...), against
the same fake Bot API server (`bot.devtools.bot_api_server`, in this process, on 127.0.0.1).
The clock runs from just before the process is launched to the moment the fake receives the
process's first getUpdates, stamped in the server thread with the same monotonic clock. The bot
gets a fresh copy of an already migrated SQLite file each time, HEALTH_PORT=0, and a working
folder with no .env; the bare bot builds an Application with one handler and calls
run_polling(); the "stack" bot is the same after importing SQLModel, SQLAlchemy's asyncio
engine, aiosqlite and the bot's table models (what the fixed stack costs any bot). All are
stopped with SIGTERM once they poll. getMe calls are counted per start, and so is everything
else the process asked for before its first getUpdates. One more start of the bot, under
py-spy when it is installed, shows where its start-up goes. Modules are compiled to bytecode
first, as `pip install .` does (`--bytecode off` starts with PYTHONDONTWRITEBYTECODE=1).

    .venv/bin/python bench/startup_bench.py
    .venv/bin/python bench/startup_bench.py --runs 9 --write-docs --json /tmp/startup.json
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.devtools.bot_api_server import FakeBotApiServer
from bot.migrate import upgrade_to_head

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- startup-bench:start -->"
END_MARK = "<!-- startup-bench:end -->"
TOKEN = "123456:BENCH-startup"
TARGET_SECONDS = 0.8
BARE_BOT = '''\
"""A bare python-telegram-bot polling bot: the start-up baseline."""

import os

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answers any message with its own text."""
    if update.effective_message and update.effective_message.text:
        await update.effective_message.reply_text(update.effective_message.text)


app = Application.builder().token(os.environ["BENCH_TOKEN"]).base_url(os.environ["BENCH_API"])
app = app.build()
app.add_handler(MessageHandler(filters.ALL, echo))
app.run_polling()
'''

# The same bare bot, first importing what the design card fixes beside PTB (SQLModel and
# SQLAlchemy's asyncio engine with its SQLite driver) and the bot's table models: what any bot
# on this stack pays before it can poll, so the rest of the difference is the bot's own.
STACK_BOT = BARE_BOT.replace(
    "import os\n",
    "import os\n\nimport aiosqlite, sqlalchemy.ext.asyncio, sqlmodel  # noqa\n"
    "import bot.models  # noqa\n",
    1,
)
SIDES = {
    "bot": "`adherence-bot run`",
    "stack": "bare PTB + SQLModel stack + models",
    "bare": "bare PTB run_polling()",
}


@dataclass
class Start:
    """What the fake saw of one start."""

    launched: float
    first_poll: threading.Event = field(default_factory=threading.Event)
    first_poll_at: float | None = None
    first_get_me_at: float | None = None
    calls: list[str] = field(default_factory=list)  # methods before the first getUpdates
    get_me: int = 0


class WatchingServer(FakeBotApiServer):
    """The fake Bot API, noting when the current start first polled and what it asked before."""

    def __init__(self) -> None:
        super().__init__()
        self.start_: Start | None = None
        self._lock = threading.Lock()

    def answer(self, method: str, params: dict[str, Any], token: str) -> tuple[int, Any]:
        """Stamps the call for the current start, then answers as the fake does."""
        now = time.monotonic()
        with self._lock:
            start = self.start_
            if start is not None:
                if method == "getMe":
                    start.get_me += 1
                    start.first_get_me_at = start.first_get_me_at or now
                if method == "getUpdates" and start.first_poll_at is None:
                    start.first_poll_at = now
                    start.first_poll.set()
                elif start.first_poll_at is None:
                    start.calls.append(method)
        return super().answer(method, params, token)


# Set by --bytecode: whether the started processes may read and write __pycache__.
BYTECODE = {"on": True}


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """Returns this environment without any of the bot's settings, plus `extra`.

    PYTHONDONTWRITEBYTECODE is dropped unless `--bytecode off`: an installed bot (`pip install
    .`, the container image) has its modules compiled at install time, as the bare bot's
    python-telegram-bot has; with the variable set (some shells and CI images set it) an
    editable checkout would compile every one of its modules at every start.
    """
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    if BYTECODE["on"]:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env | extra


def launch(
    kind: str, server: WatchingServer, template: Path, folder: Path, index: int, timeout: float
) -> dict[str, Any]:
    """Starts one process, waits for its first getUpdates, stops it; returns what happened."""
    if kind == "bot":
        database = folder / f"run{index}.db"
        shutil.copyfile(template, database)
        command = [str(Path(sys.executable).with_name("adherence-bot")), "run"]
        env = bot_env(server, database)
    else:
        command = [sys.executable, str(folder / f"{kind}_bot.py")]
        env = clean_env({"BENCH_TOKEN": TOKEN, "BENCH_API": server.root_url + "/bot"})
    start = Start(launched=time.monotonic())
    server.start_ = start
    proc = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        polled = start.first_poll.wait(timeout)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        server.start_ = None
    if not polled or start.first_poll_at is None:
        raise RuntimeError(f"{kind} did not poll within {timeout} s: {stderr[-2000:]}")
    return {
        "kind": kind,
        "seconds": start.first_poll_at - start.launched,
        "to_get_me": (start.first_get_me_at or start.first_poll_at) - start.launched,
        "get_me": start.get_me,
        "before_first_poll": dict(Counter(start.calls)),
    }


def profile_start(template: Path, folder: Path, server: WatchingServer) -> dict[str, Any]:
    """Starts the bot once more under py-spy until its first getUpdates; returns the share of
    samples spent importing and inside each bot/ and handlers/ function (inclusive)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        return {"error": "py-spy is not installed in the venv"}
    database = folder / "profile.db"
    shutil.copyfile(template, database)
    raw = folder / "profile.txt"
    start = Start(launched=time.monotonic())
    server.start_ = start
    command = [str(py_spy), "record", "--format", "raw", "--rate", "500", "--output", str(raw)]
    command += ["--", str(py_spy.with_name("adherence-bot")), "run"]
    proc = subprocess.Popen(
        command,
        cwd=folder,
        env=bot_env(server, database),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    start.first_poll.wait(60)
    os.killpg(proc.pid, signal.SIGINT)  # py-spy writes its samples and stops the bot
    proc.wait(timeout=30)
    server.start_ = None
    frame = re.compile(r"^(.*) \(([^:()]*):\d+\)$")
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        total += int(count_text)
        names = set()
        for fn, path in (m.groups() for f in stack.split(";") if (m := frame.match(f))):
            if fn == "_find_and_load":
                names.add("(importing modules)")
            elif path.startswith(("bot/", "handlers/")):
                names.add(f"{path.removesuffix('.py').replace('/', '.')}.{fn}")
        inclusive.update(dict.fromkeys(names, int(count_text)))
    return {
        "seconds": (start.first_poll_at or time.monotonic()) - start.launched,
        "samples": total,
        "shares": {k: round(100 * v / total, 1) for k, v in inclusive.most_common(16)},
    }


def bot_env(server: WatchingServer, database: Path) -> dict[str, str]:
    """Returns the environment `adherence-bot run` gets: the fake server, the copied file."""
    return clean_env(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "DATABASE_URL": f"sqlite:///{database}",
            "HEALTH_PORT": "0",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "bench-startup-key-0123456789",
        }
    )


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


def summarise(runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Returns medians and extremes of one side's starts."""
    mine = [r for r in runs if r["kind"] == kind]
    seconds = [r["seconds"] for r in mine]
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "to_get_me": statistics.median(r["to_get_me"] for r in mine),
        "after_get_me": statistics.median(r["seconds"] - r["to_get_me"] for r in mine),
        "get_me": sorted({r["get_me"] for r in mine}),
        "before_first_poll": mine[-1]["before_first_poll"],
        "runs": len(mine),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the starts in turns and returns every figure."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result: dict[str, Any] = {
        "commit": git_revision(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{cores} cores, Python {platform.python_version()}, {platform.system()}",
        "load_start": round(os.getloadavg()[0], 2),
        "runs": [],
    }
    server = WatchingServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="adh_startup_") as tmp:
            folder = Path(tmp)
            template = folder / "template.db"
            upgrade_to_head(f"sqlite:///{template}")
            (folder / "bare_bot.py").write_text(BARE_BOT)
            (folder / "stack_bot.py").write_text(STACK_BOT)
            if BYTECODE["on"]:
                # What `pip install .` does for an installed bot: compile its modules once.
                compileall.compile_dir(ROOT / "bot", quiet=1)
                compileall.compile_dir(ROOT / "handlers", quiet=1)
            result["bytecode"] = BYTECODE["on"]
            # Untimed first starts of each, so neither pays for cold disk caches alone.
            for kind in SIDES:
                launch(kind, server, template, folder, 0, args.timeout)
            order = ["bot", "stack", "bare", "bare", "stack", "bot"] * ((args.runs + 1) // 2)
            for index, kind in enumerate(order, start=1):
                if sum(r["kind"] == kind for r in result["runs"]) >= args.runs:
                    continue
                run = launch(kind, server, template, folder, index, args.timeout)
                result["runs"].append(run)
                print(f"  {kind}: {run['seconds']:.3f} s, getMe x{run['get_me']}", flush=True)
            if args.profile:
                result["profile"] = profile_start(template, folder, server)
    finally:
        server.stop()
    result["bot"] = summarise(result["runs"], "bot")
    result["bare"] = summarise(result["runs"], "bare")
    result["stack"] = summarise(result["runs"], "stack")
    result["load_end"] = round(os.getloadavg()[0], 2)
    return result


def docs_section(result: dict[str, Any], command: str) -> str:
    """Renders the figures as the Markdown between the startup-bench markers."""
    bot, bare = result["bot"], result["bare"]
    met = "met" if bot["median"] < TARGET_SECONDS else "**not met**"
    lines = [
        f"Run on {result['date']} at commit {result['commit']}; {result['machine']}; load "
        f"average {result['load_start']} at the start and {result['load_end']} at the end.",
        "",
        f"    {command}",
        "",
        "| launch to first getUpdates | median | fastest | slowest | launch to getMe "
        "| getMe to first getUpdates | getMe per start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, name in SIDES.items():
        side = result[kind]
        get_me = ", ".join(str(n) for n in side["get_me"])
        lines.append(
            f"| {name} | {side['median']:.2f} s | {side['min']:.2f} s | {side['max']:.2f} s | "
            f"{side['to_get_me']:.2f} s | {side['after_get_me']:.2f} s | {get_me} |"
        )
    asked = ", ".join(f"{k} x{v}" for k, v in bot["before_first_poll"].items())
    lines += [
        "",
        f"{bot['runs']} starts of each, in turns. Target: the bot polls within "
        f"{TARGET_SECONDS} s of launch ({met}; {bot['median'] / bare['median']:.1f}x the bare "
        f"bot; the bare bot with the SQLModel stack and the models: "
        f"{result['stack']['median']:.2f} s). Before its first getUpdates the bot asked the "
        f"fake for: {asked}. "
        + (
            "Modules compiled to bytecode beforehand, as an installed bot has them."
            if result.get("bytecode", True)
            else "With PYTHONDONTWRITEBYTECODE=1: every module of the checkout compiled at "
            "every start."
        ),
    ]
    profile = result.get("profile", {})
    if "shares" in profile:
        shares = ", ".join(
            f"{k} {v}%" for k, v in list(profile["shares"].items())[:10] if v < 99.5
        )
        lines += [
            "",
            "Where the bot's start-up goes: one more start under py-spy (500 samples a second, "
            f"which slows it to {profile['seconds']:.1f} s), share of the samples before its "
            f"first getUpdates spent inside each function, inclusive: {shares}.",
        ]
    return "\n".join(lines)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replaces the text between the startup-bench markers, and nothing else."""
    text = path.read_text()
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path}: the {START_MARK} ... {END_MARK} markers are missing")
    path.write_text(pattern.sub(lambda _m: f"{START_MARK}\n{section}\n{END_MARK}", text, count=1))


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the starts, prints (and optionally records) the figures."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="bench/startup_bench.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=7, help="timed starts of each")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a poll")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the extra start under py-spy (.venv/bin/pip install py-spy)",
    )
    parser.add_argument(
        "--bytecode",
        choices=("on", "off"),
        default="on",
        help="off: start with PYTHONDONTWRITEBYTECODE=1 (the checkout compiled at every start)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS.name}")
    args = parser.parse_args(argv)
    BYTECODE["on"] = args.bytecode == "on"
    result = measure(args)
    bot, bare = result["bot"], result["bare"]
    print(
        f"\nlaunch to first getUpdates, median of {bot['runs']}: bot {bot['median']:.3f} s "
        f"(getMe per start {bot['get_me']}), bare PTB {bare['median']:.3f} s, bare PTB with "
        f"the SQLModel stack and models {result['stack']['median']:.3f} s; target < "
        f"{TARGET_SECONDS} s; load {result['load_start']} -> {result['load_end']}"
    )
    print("before the first getUpdates the bot asked for:", bot["before_first_poll"])
    if result.get("profile"):
        print("profile of one start (% of samples, inclusive):", result["profile"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(
            docs_section(result, ".venv/bin/python bench/startup_bench.py " + " ".join(argv))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
