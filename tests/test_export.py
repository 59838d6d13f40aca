"""Research exports, tried as a new user would: a study filled through the real handlers.

Onboarding with an invite, a check-in with corrections and a note, a partly answered and an
unanswered check-in, the doctor-first path, a participant who asked for deletion, a refused
invite and a declined consent; then `adherence-bot export` in CSV, JSON Lines and Parquet.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlmodel import select

from bot import clock
from bot.cli import main
from bot.config import Settings
from bot.enrollment import create_invite
from bot.export.rows import export_pseudonym, shift_weeks
from bot.export.run import DICTIONARY, MANIFEST
from bot.models import AuditEvent, CheckIn, EnrolmentEvent
from bot.pseudonym import pseudonym_for
from tests.conftest import PATIENT, START, Harness
from tests.onboarding_steps import onboard

KEY = "test-pseudonym-key"
LEAVER = PATIENT + 1  # joins, answers, then asks for deletion
REFUSED = PATIENT + 2  # a dead invite link, then "Not now" at consent
NOTE = "Olga from my choir drove me to the clinic"
SITE_ID = "SITE-0042"


def question(h: Harness, wording: str, uid: int = PATIENT) -> Any:
    """Returns the newest message that shows a question (found by its wording)."""
    for message in reversed(h.fake.chat(uid)):
        if wording in message.text and message.buttons():
            return message
    raise AssertionError(f"no question {wording!r}")


async def fill_study(h: Harness) -> None:
    """Fills the database through the real handlers (see the module docstring)."""
    async with h.db.session() as session:
        invite = await create_invite(session=session, cohort_code="arm_a", site_study_id=SITE_ID)
        code = invite.code
    await onboard(h, PATIENT, code=code)  # check-ins at 20:00 London, every day

    # Day 1: the 20:00 check-in, answered with a correction, ticks and a note.
    await h.tick()
    clock.advance(timedelta(hours=11))
    await h.tick()
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "3")
    clock.advance(timedelta(minutes=2))
    await h.press(PATIENT, "8", message=question(h, "worst joint pain"))
    await h.press(PATIENT, "Under 30 minutes")
    await h.press(PATIENT, "4", message=question(h, "get in the way"))
    await h.press(PATIENT, "A swollen or red joint")
    await h.press(PATIENT, "I had a fall")
    await h.press(PATIENT, "Done")
    await h.send(PATIENT, NOTE)

    # Day 2: partly answered; a box ticked but never confirmed with Done (a draft).
    clock.advance(timedelta(days=1))
    await h.tick()
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "New bone pain")
    clock.advance(timedelta(hours=7))
    await h.tick()

    # Day 3: not answered at all.
    clock.advance(timedelta(hours=17))
    await h.tick()
    clock.advance(timedelta(hours=7))
    await h.tick()

    # The doctor-first path from the stop menu: an alert for the care team.
    await h.command(PATIENT, "stop")
    await h.press(PATIENT, "I'm thinking about stopping my medicine")
    await h.press(PATIENT, "I'd rather not say")

    # Someone who joins under open enrolment, answers, then asks for deletion.
    await onboard(h, LEAVER)
    await h.command(LEAVER, "checkin")
    await h.press(LEAVER, "Yes")
    await h.command(LEAVER, "delete_my_data")
    await h.press(LEAVER, "Yes, delete my data")

    # A dead invite link, then "Not now" at the consent text.
    await h.command(REFUSED, "start", "nosuchcode123")
    await h.press(REFUSED, "Not now")


@pytest.fixture
def export_env(harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment (no .env) pointing the CLI at the harness database."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("PSEUDONYM_KEY", KEY)
    return tmp_path


async def cli(*argv: str) -> int:
    """Runs `adherence-bot ...` in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


def data_files(folder: Path) -> list[Path]:
    """Returns the export's data files (not the dictionaries, codebook or manifest)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    return [
        folder / name for name in sorted(manifest["files"]) if "rows" in manifest["files"][name]
    ]


def read_csv_typed(folder: Path, path: Path) -> pd.DataFrame:
    """Reads one CSV file with the types the data dictionary documents."""
    dictionary = pd.read_csv(folder / DICTIONARY, dtype=str, keep_default_na=False)
    cols = dictionary[dictionary.file == path.stem]
    times = list(cols[cols.type == "timestamp_utc"].column)
    dtypes = {r.column: r.pandas_dtype for r in cols.itertuples() if r.column not in times}
    df = pd.read_csv(path, dtype=dtypes)
    for c in times:
        df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    return df


def read_rows(path: Path) -> list[dict[str, str]]:
    """Returns a CSV file's rows as dictionaries."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def documented_dtypes(folder: Path, stem: str) -> dict[str, str]:
    """Returns column -> pandas dtype from the data dictionary for one file."""
    with (folder / DICTIONARY).open(encoding="utf-8") as handle:
        return {
            r["column"]: r["pandas_dtype"] for r in csv.DictReader(handle) if r["file"] == stem
        }


def same_dtype(actual: Any, documented: str) -> bool:
    """Tells whether pandas' dtype is the documented one (Parquet strings may come as str)."""
    if documented == "string":
        return pd.api.types.is_string_dtype(actual) or str(actual) == "object"
    if documented == "category":
        return isinstance(actual, pd.CategoricalDtype)
    if documented == "Int64":
        return pd.api.types.is_integer_dtype(actual)
    if documented == "Float64":
        return pd.api.types.is_float_dtype(actual)
    if documented == "boolean":
        return pd.api.types.is_bool_dtype(actual)
    return str(actual) == documented


FORBIDDEN = [
    str(PATIENT),
    str(LEAVER),
    str(REFUSED),
    "ana_test",  # the fake Telegram username
    pseudonym_for(PATIENT, KEY),  # the code staff see in the bot
    pseudonym_for(LEAVER, KEY),
    export_pseudonym(pseudonym_for(LEAVER, KEY), KEY),  # the deleted participant
]


async def test_export_of_a_study_filled_through_the_bot_is_clean_typed_and_verifiable(
    harness: Harness, export_env: Path
) -> None:
    h = harness
    await fill_study(h)
    out = export_env

    for fmt in ("csv", "jsonl", "parquet"):
        assert await cli("export", "--format", fmt, "--out", str(out / fmt), "--shift-dates") == 0
        assert await cli("verify-export", str(out / fmt)) == 0
        files = data_files(out / fmt)
        assert {f.stem for f in files} >= {
            "participants",
            "enrolment",
            "consents",
            "checkins",
            "answers",
            "answers_wide",
            "answer_history",
            "therapy_changes",
            "barriers",
            "alerts",
            "alert_actions",
            "offer_events",
            "page_views",
            "broadcast_deliveries",
        }
        # No Telegram id, username, name, staff-visible code, note text or site id anywhere.
        for path in (out / fmt).iterdir():
            raw = path.read_bytes().decode("utf-8", errors="replace")
            for needle in [*FORBIDDEN, NOTE, SITE_ID, "#draft"]:
                assert needle not in raw, (needle, path.name)
            assert not re.search(r"\bAna\b", raw), path.name

    folder = out / "csv"
    # The data dictionary has exactly the columns of every file, in order.
    with (folder / DICTIONARY).open(encoding="utf-8") as handle:
        documented: dict[str, list[str]] = {}
        for row in csv.DictReader(handle):
            documented.setdefault(row["file"], []).append(row["column"])
    for path in data_files(folder):
        with path.open(encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == documented.pop(path.stem), path.name
    assert documented == {}

    # pandas reads every file with the documented types, from CSV and from Parquet.
    for path in data_files(folder):
        df = read_csv_typed(folder, path)
        parquet = pd.read_parquet(out / "parquet" / f"{path.stem}.parquet")
        assert list(parquet.columns) == list(df.columns)
        assert len(parquet) == len(df)
        for column, dtype in documented_dtypes(folder, path.stem).items():
            assert same_dtype(df[column].dtype, dtype), (path.stem, column, df[column].dtype)
            assert same_dtype(parquet[column].dtype, dtype), (path.stem, column, dtype)
        lines = (out / "jsonl" / f"{path.stem}.jsonl").read_text(encoding="utf-8").splitlines()
        jsonl = [json.loads(line) for line in lines]
        assert len(jsonl) == len(df)

    participants = read_csv_typed(folder, folder / "participants.csv")
    me = export_pseudonym(pseudonym_for(PATIENT, KEY), KEY)
    assert list(participants.pseudonym) == [me]  # the deleted participant is absent
    assert participants.cohort[0] == "arm_a" and participants.status[0] == "active"
    assert bool(participants.date_shift_applied[0])

    # Dates moved back by whole weeks: weekday and time of day kept, local time recomputed.
    weeks = shift_weeks(pseudonym_for(PATIENT, KEY), KEY)
    checkins = read_csv_typed(folder, folder / "checkins.csv").sort_values("checkin_id")
    async with h.db.session() as session:
        stored = (await session.exec(select(CheckIn).order_by(CheckIn.id))).all()
    mine = [c for c in stored if c.participant_id == 1]
    assert len(checkins) == len(mine) == 4  # the deleted participant's check-in is absent
    first = checkins.iloc[0]
    assert first.due_at == pd.Timestamp(mine[0].due_at - timedelta(weeks=weeks))
    assert first.due_at.weekday() == mine[0].due_at.weekday()
    # Her clock at the shifted instant (a shift across a DST change moves it by an hour).
    expected_local = (mine[0].due_at - timedelta(weeks=weeks)).astimezone(
        ZoneInfo("Europe/London")
    )
    assert first.due_local == expected_local.isoformat()
    assert first.latency_seconds == (mine[0].first_answer_at - mine[0].sent_at).total_seconds()
    assert list(checkins.status) == ["completed", "missed", "missed", "scheduled"]
    assert list(checkins.missed_reason.astype(object).fillna("")) == [
        "",
        "closed_partial",
        "no_answer",
        "",
    ]

    # Long answers: the corrected pain keeps its first value; the draft tick is not there.
    answers = read_csv_typed(folder, folder / "answers.csv")
    pain = answers[(answers.item_code == "worst_pain") & (answers.checkin_id == mine[0].id)]
    assert (pain.value.iloc[0], pain.first_value.iloc[0], pain.corrections.iloc[0]) == (
        "8",
        "3",
        1,
    )
    symptoms = answers[answers.item_code == "new_symptoms"]
    assert list(symptoms.value) == ["swelling,fall"]
    assert list(symptoms.value_label) == ["A swollen or red joint; I had a fall"]
    assert "note" not in set(answers.item_code)
    history = read_csv_typed(folder, folder / "answer_history.csv")
    assert list(history.old_value) == ["3"]

    # Wide: one row per check-in, REDCap-style 0/1 columns for the multi-select.
    wide = read_csv_typed(folder, folder / "answers_wide.csv").sort_values("checkin_id")
    assert len(wide) == 4
    row = wide.iloc[0]
    assert (row.worst_pain, row.new_symptoms___swelling, row.new_symptoms___fall) == (8, 1, 1)
    assert row.new_symptoms___none == 0 and "note" not in wide.columns
    assert pd.isna(wide.iloc[1].new_symptoms___bone_pain)  # ticked, never confirmed

    # The doctor-first path: an alert with its kind, never its detail.
    alerts = read_csv_typed(folder, folder / "alerts.csv")
    assert "stop_intent" in set(alerts.kind.astype(str))

    # CONSORT counts, each person once per step; the deleted one is counted.
    enrolment = read_csv_typed(folder, folder / "enrolment.csv")
    counts = {(str(r.cohort) if not pd.isna(r.cohort) else ""): r for r in enrolment.itertuples()}
    arm = counts["arm_a"]
    assert (arm.invites_created, arm.invite_uses, arm.started, arm.consented) == (1, 1, 1, 1)
    assert arm.onboarded == 1
    open_ = counts[""]
    assert (open_.started, open_.invite_refused, open_.consent_declined) == (2, 1, 1)
    assert (open_.consented, open_.onboarded, open_.deleted) == (1, 1, 1)

    # The same export again: the same codes and the same shifted dates, file for file.
    assert await cli("export", "--out", str(out / "again"), "--shift-dates") == 0
    for path in data_files(folder):
        assert path.read_bytes() == (out / "again" / path.name).read_bytes(), path.name

    # Every export is audited: who, filters, row counts and the manifest hash.
    async with h.db.session() as session:
        audits = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "export"))
        ).all()
    assert len(audits) == 4
    assert all(a.actor == "cli" and "manifest=" in (a.detail or "") for a in audits)
    assert "rows=" in (audits[0].detail or "") and "shift=1" in (audits[0].detail or "")

    # The enrolment table holds codes and hashes only.
    async with h.db.session() as session:
        events = (await session.exec(select(EnrolmentEvent))).all()
    assert all(str(PATIENT) not in e.person and e.person.startswith("e_") for e in events)
    assert START  # the study began at the harness' fixed instant


async def test_notes_and_site_ids_only_when_asked_and_the_manifest_says_so(
    harness: Harness, export_env: Path
) -> None:
    h = harness
    await fill_study(h)
    out = export_env / "with-notes"
    assert await cli("export", "--out", str(out), "--include-notes", "--include-site-ids") == 0
    notes = read_rows(out / "notes.csv")
    assert [(n["source"], n["text"]) for n in notes] == [("checkin_note", NOTE)]
    participants = read_rows(out / "participants.csv")
    assert participants[0]["site_study_id"] == SITE_ID
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["notes_included"] is True
    assert manifest["options"]["include_site_ids"] is True
    assert "Free text IS included" in (out / "README.md").read_text()
