"""Benchmark: the whole test suite with different numbers of pytest-xdist workers, in turns.

`make test` runs pytest with PYTEST_WORKERS workers. Some tests wait on a real bot process or a
real clock minute (tests/conftest.py, WAITING_FILES) and leave a core idle while they wait; a
worker more than there are cores keeps it busy. This runs the suite as `make pytest` does
(bytecode caching on, TEST_POSTGRES_URL from the environment or the local default) once per
worker count per round, in turns, and reports wall time and the CPU of pytest and everything
it started (bot processes, dispatcher workers; PostgreSQL's own backends are not counted).

    .venv/bin/python bench/pytest_workers_bench.py                  # 2 and 3 workers, 1 round
    .venv/bin/python bench/pytest_workers_bench.py --workers 2 3 4 --rounds 2 --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- pytest-bench:start -->", "<!-- pytest-bench:end -->"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def run_suite(workers: int) -> dict[str, float | int | str]:
    """Runs the suite once with `workers` workers; returns wall, CPU and the outcome line."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    env.setdefault("TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", str(workers), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {
        "workers": workers,
        "wall": round(wall, 1),
        "cpu": round(cpu, 1),
        "returncode": done.returncode,
        "outcome": lines[-1].strip("= ") if lines else "no summary",
    }


def git_revision() -> str:
    """Returns the short commit, marked when the tree has uncommitted changes."""
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"{rev} with uncommitted changes" if dirty else rev


def docs_section(runs: list[dict[str, float | int | str]], command: str, load: str) -> str:
    """Renders the runs as the Markdown between the pytest-bench markers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"Run on {datetime.now(UTC):%Y-%m-%d} at commit {git_revision()}; {cores} cores, "
        f"Python {platform.python_version()}, {platform.system()}; load average {load}.",
        "",
        f"    {command}",
        "",
        "| workers | wall | CPU (pytest and its children) | outcome |",
        "|---:|---:|---:|---|",
    ]
    for run in runs:
        lines.append(f"| {run['workers']} | {run['wall']} s | {run['cpu']} s | {run['outcome']} |")
    best = min(runs, key=lambda r: float(r["wall"]))
    lines += [
        "",
        f"Fastest: {best['workers']} workers, {best['wall']} s (target: under 120 s). With "
        f"{cores} cores the CPU time alone sets a floor of about CPU / {cores}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the suite in turns per worker count and prints (or records) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS.name}")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    runs = []
    for round_number in range(args.rounds):
        order = args.workers if round_number % 2 == 0 else list(reversed(args.workers))
        for workers in order:
            run = run_suite(workers)
            runs.append(run)
            print(
                f"{workers} workers: {run['wall']} s wall, {run['cpu']} s CPU, {run['outcome']}",
                flush=True,
            )
    load = f"{load_start:.2f} at the start and {os.getloadavg()[0]:.2f} at the end"
    if args.write_docs:
        command = ".venv/bin/python bench/pytest_workers_bench.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        text = DOCS.read_text(encoding="utf-8")
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        DOCS.write_text(
            f"{head}{START}\n{docs_section(runs, command, load)}\n{END}{tail}", encoding="utf-8"
        )
    return 0 if all(run["returncode"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
