"""Benchmark: how long the rules take to read one long message, with and without windows.

A message with no full stops (dictated, or typed in one breath) is one sentence to the rules,
and their cost grows faster than its length. `bot.intent` reads such a sentence in windows of
WINDOW_WORDS words; the baseline, in the same run and process, is the same reading with the
window raised above any message's length (the reading before windows). Each text is read
`--repeats` times per side, in turns; the figures are the median and the slowest, in seconds
of one `read_text` call (every rule book, as the bot reads a message). The texts are
everyday chatter with no signal, run on with "and" (no clause breaks) or with commas.

    .venv/bin/python bench/long_text_bench.py
    .venv/bin/python bench/long_text_bench.py --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pytest_workers_bench import git_revision  # noqa: E402
from bot import intent  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- long-text-bench:start -->"
END_MARK = "<!-- long-text-bench:end -->"
CHATTER = (
    "my knees have been sore this week and I walked the dog and the weather was cold and my "
    "daughter came round with the kids and we had tea "
)
LENGTHS = (500, 1000, 2000, 4000)


def texts() -> dict[str, str]:
    """The messages read: run on with "and", and with commas, at each length."""
    found = {}
    for length in LENGTHS:
        found[f"{length} characters, run on with 'and'"] = (CHATTER * 40)[:length]
        found[f"{length} characters, with commas"] = (CHATTER.replace(" and", ",") * 40)[:length]
    return found


def read_once(text: str, window: int) -> float:
    """Seconds of one read with the given window."""
    intent.WINDOW_WORDS = window  # read at call time by bot.intent._windows
    started = time.perf_counter()
    intent.read_text(text)
    return time.perf_counter() - started


def run(repeats: int) -> dict[str, dict[str, list[float]]]:
    """Reads every text `repeats` times per side, in turns."""
    windowed = intent.WINDOW_WORDS
    sides = {"windows": windowed, "one sentence (before)": 10**9}
    intent.read_text("warm up: rule books compiled before timing")
    found: dict[str, dict[str, list[float]]] = {}
    for name, text in texts().items():
        found[name] = {side: [] for side in sides}
        for _ in range(repeats):
            for side, window in sides.items():
                found[name][side].append(read_once(text, window))
        print(
            f"  {name}: "
            + ", ".join(f"{s} {statistics.median(v):.3f} s" for s, v in found[name].items()),
            flush=True,
        )
    intent.WINDOW_WORDS = windowed
    return found


def docs_section(found: dict[str, dict[str, list[float]]], command: str) -> str:
    """Renders the figures as Markdown."""
    lines = [
        f"Run on {datetime.now(UTC).date()} at commit {git_revision()}"
        f"; {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}; "
        f"load average {os.getloadavg()[0]:.2f}.",
        "",
        f"    {command}",
        "",
        "| message | windows: median | slowest | one sentence (before): median | slowest |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, sides in found.items():
        w, b = sides["windows"], sides["one sentence (before)"]
        lines.append(
            f"| {name} | {statistics.median(w):.3f} s | {max(w):.3f} s | "
            f"{statistics.median(b):.3f} s | {max(b):.3f} s |"
        )
    lines += [
        "",
        f"Windows of {intent.WINDOW_WORDS} words overlapping by {intent.WINDOW_OVERLAP}. "
        "The reading runs on the event loop, so every other chat waits behind it.",
    ]
    return "\n".join(lines)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replaces the text between the markers (appending the markers the first time)."""
    text = path.read_text()
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    block = f"{START_MARK}\n{section}\n{END_MARK}"
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = (
            text.rstrip("\n")
            + "\n\n## Reading a long message\n\n"
            + __doc__.split("\n\n")[1].replace("\n", " ")
            + "\n\n"
            + block
            + "\n"
        )
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs, prints (and optionally records) the figures."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bench/long_text_bench.py")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    found = run(args.repeats)
    if args.write_docs:
        write_docs(
            docs_section(found, ".venv/bin/python bench/long_text_bench.py " + " ".join(argv))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
