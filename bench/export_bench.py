"""Benchmark: the research export on a generated SQLite database of 1,000,000 answers.

Three measurements, each the best of --repeat runs, each run in a child process of its own
(so its peak RSS is its own, read with wait4):

1. `sqlite3 -csv DB 'select * from answer'` into a file: the floor, a C program dumping the
   table as it is (Debian's `sqlite3` package; `apt-get install sqlite3` if it is missing).
2. the long `answers` file as `adherence-bot export` writes it: joined to its check-in,
   filtered (no drafts, no free text, deleted participants out), export pseudonyms, option
   labels, ISO 8601 UTC times; on SQLite each line is made by one printf() in SQL and
   fetched as bytes, 5,000 lines at a time.
3. the whole export (`run_export`, CSV): every file, the dictionaries, codebook and manifest.
4. the same in Parquet (needs pyarrow; the writer keeps pyarrow from importing pandas).

The database: --participants participants, each with daily check-ins, each check-in with
six answers (one of them a free-text note, left out of the export, a few corrected), made
with `executemany` straight into SQLite in the shape the models define.

    .venv/bin/python bench/export_bench.py --json /tmp/export.json   # 1,000,000 answers, ~2 min
    .venv/bin/python bench/export_bench.py --answers 10000000 --participants 5000 --repeat 1
                                                # flat memory check, ~15 min
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY = "bench-pseudonym-key-not-a-secret"
ITEMS_PER_CHECKIN = 6  # took_med, worst_pain, stiffness, interference, new_symptoms, note
ANSWERED_ITEMS = 5
SYMPTOMS = ["none", "swelling", "fever", "numbness", "locking", "selfcare", "bone_pain", "fall"]


def _ts(at: datetime) -> str:
    """Returns a UTC instant as SQLAlchemy stores it in SQLite."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def build_database(path: Path, answers: int, participants: int) -> dict[str, int]:
    """Creates the schema from the models and fills it; returns row counts."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    import bot.models  # noqa: F401  (registers the tables)

    engine = sa.create_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()

    from bot.pseudonym import pseudonym_for

    rng = random.Random(12)
    start = datetime(2025, 1, 6, 19, 0, tzinfo=UTC)
    checkins = -(-answers // ITEMS_PER_CHECKIN)
    per_person = -(-checkins // participants)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    now = _ts(start)
    con.executemany(
        "INSERT INTO participant (id, telegram_user_id, chat_id, pseudonym, locale, country,"
        " timezone, status, reachable, medicine, therapy_status, discreet, consent_version,"
        " onboarded_at, created_at) VALUES (?, ?, ?, ?, 'en', 'GB', 'Europe/London',"
        " 'active', 1, 'letrozole', 'taking', 0, '1.0', ?, ?)",
        [
            (
                i,
                5_000_000_000 + i,
                5_000_000_000 + i,
                pseudonym_for(5_000_000_000 + i, KEY),
                now,
                now,
            )
            for i in range(1, participants + 1)
        ],
    )
    con.executemany(
        "INSERT INTO consent (participant_id, version, accepted_at) VALUES (?, '1.0', ?)",
        [(i, now) for i in range(1, participants + 1)],
    )

    def checkin_rows() -> Any:
        cid = 0
        for day in range(per_person):
            due = start + timedelta(days=day)
            for pid in range(1, participants + 1):
                cid += 1
                if cid > checkins:
                    return
                yield (
                    cid,
                    pid,
                    "scheduled",
                    "daily_checkin",
                    "1.1",
                    _ts(due),
                    _ts(due + timedelta(hours=6)),
                    _ts(due),
                    _ts(due),
                    _ts(due + timedelta(seconds=40 + pid % 300)),
                    _ts(due + timedelta(minutes=5)),
                    "completed",
                    0,
                    "",
                    _ts(due),
                )

    con.executemany(
        "INSERT INTO checkin (id, participant_id, origin, questionnaire_id,"
        " questionnaire_version, due_at, window_closes_at, queued_at, sent_at, first_answer_at,"
        " closed_at, status, reminder_count, message_ids, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        checkin_rows(),
    )

    def answer_rows() -> Any:
        made = 0
        for cid in range(1, checkins + 1):
            at = start + timedelta(minutes=cid % 1000)
            pain = rng.randint(0, 10)
            # Stored in questionnaire order, as the bot stores a multi-select.
            chosen = set(rng.sample(SYMPTOMS[1:], rng.randint(0, 2)))
            picked = [s for s in SYMPTOMS if s in chosen] or ["none"]
            values = [
                ("took_med", rng.choice(["yes", "yes", "yes", "missed"])),
                ("worst_pain", str(pain)),
                ("stiffness", rng.choice(["none", "under_30", "over_30"])),
                ("interference", str(rng.randint(0, 10))),
                ("new_symptoms", ",".join(picked)),
                ("note", "" if rng.random() < 0.9 else "a few words she typed"),
            ]
            for code, value in values:
                made += 1
                if made > answers:
                    return
                corrected = code == "worst_pain" and rng.random() < 0.05
                first = str(max(0, pain - 1)) if corrected else value
                yield (cid, code, value, _ts(at), None, first, _ts(at), int(corrected))

    con.executemany(
        "INSERT INTO answer (checkin_id, item_code, value, answered_at, update_id,"
        " first_value, first_answered_at, corrections) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        answer_rows(),
    )
    con.commit()
    counts = {
        table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("participant", "checkin", "answer")
    }
    con.close()
    return counts


def _settings(db: Path) -> Any:
    from bot.config import Settings

    return Settings(_env_file=None, database_url=f"sqlite:///{db}", pseudonym_key=KEY)  # type: ignore[call-arg]


def child(kind: str, db: Path, out: Path) -> None:
    """Runs one measurement in this (child) process and prints its figures as JSON."""
    if kind == "sqlite3":
        began = time.perf_counter()
        with out.open("wb") as handle:
            subprocess.run(
                ["sqlite3", "-csv", str(db), "select * from answer"], stdout=handle, check=True
            )
        rows = None
    elif kind == "answers":
        import sqlalchemy as sa

        from bot.export.rows import Filters, Source
        from bot.export.schema import ANSWERS
        from bot.export.writers import write_csv, write_csv_chunks

        engine = sa.create_engine(f"sqlite:///{db}")
        began = time.perf_counter()
        with engine.connect() as conn, conn.begin():
            source = Source(conn=conn, key=KEY, filters=Filters())
            source.load_people()
            # As `run_export` writes it: lines made by SQLite where it can, else rows.
            chunks = source.answers_csv_chunks()
            if chunks is not None:
                rows = write_csv_chunks(out, ANSWERS, chunks)
            else:
                rows = write_csv(out, ANSWERS, source.answers())
        engine.dispose()
    else:
        from bot.export.run import ExportOptions, run_export

        fmt = "parquet" if kind == "parquet" else "csv"
        began = time.perf_counter()
        result = run_export(_settings(db), ExportOptions(out=out, format=fmt))
        rows = sum(result.counts.values())
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "rows": rows}))


def run_once(kind: str, db: Path, work: Path, n: int) -> dict[str, Any]:
    """Runs one measurement in a child process; returns its time, rows, bytes and peak RSS."""
    out = work / f"{kind}-{n}" if kind in ("export", "parquet") else work / f"{kind}-{n}.csv"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, "--database", str(db), "--out", str(out)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed ({proc.returncode})")
    figures: dict[str, Any] = json.loads(output)
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    figures["bytes"] = (
        sum(p.stat().st_size for p in out.iterdir()) if out.is_dir() else out.stat().st_size
    )
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink()
    return figures


def measure(kinds: list[str], db: Path, work: Path, repeat: int) -> dict[str, dict[str, Any]]:
    """Runs every measurement `repeat` times in turns (so drift hits all); keeps the best."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for n in range(repeat):
        for kind in kinds:
            runs[kind].append(run_once(kind, db, work, n))
            print(kind, n, round(runs[kind][-1]["seconds"], 2), flush=True)
    best: dict[str, dict[str, Any]] = {}
    for kind, found in runs.items():
        top = dict(min(found, key=lambda r: r["seconds"]))
        top["all_seconds"] = [round(r["seconds"], 2) for r in found]
        top["peak_rss_mb"] = round(max(r["peak_rss_mb"] for r in found), 1)
        best[kind] = top
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default=None, help="reuse (or keep) this SQLite file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.child == "build":
        counts = build_database(Path(args.database), args.answers, args.participants)
        print(json.dumps(counts))
        return
    if args.child:
        child(args.child, Path(args.database), Path(args.out))
        return
    if shutil.which("sqlite3") is None:
        raise SystemExit("the sqlite3 command is missing: apt-get install sqlite3 (Debian)")
    work = Path(tempfile.mkdtemp(prefix="export-bench-"))
    db = Path(args.database) if args.database else work / "bench.db"
    try:
        if not db.exists():
            # In a child too: a child's peak RSS starts from its parent's (Linux keeps the
            # high-water mark through fork and exec), so this process must stay small.
            began = time.perf_counter()
            command = [sys.executable, __file__, "--child", "build", "--database", str(db)]
            command += ["--answers", str(args.answers), "--participants", str(args.participants)]
            built = subprocess.run(command, stdout=subprocess.PIPE, check=True)
            counts = json.loads(built.stdout)
            print(f"built {db} in {time.perf_counter() - began:.0f} s: {counts}", flush=True)
        version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True)
        results = {
            "answers_in_database": args.answers,
            "sqlite3_version": version.stdout.split()[0],
            "python": sys.version.split()[0],
        }
        kinds = ["sqlite3", "answers", "export", "parquet"]
        results.update(measure(kinds, db, work, args.repeat))
        ratio = results["answers"]["seconds"] / results["sqlite3"]["seconds"]
        results["answers_vs_sqlite3"] = round(ratio, 2)
        answered = results["answers"]["rows"]
        results["answers_rows_per_second"] = round(answered / results["answers"]["seconds"])
        print(json.dumps(results, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.database is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for path in work.iterdir():
                if path != db:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
