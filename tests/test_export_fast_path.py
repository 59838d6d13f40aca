"""The SQLite fast path of the long answers file (lines made by SQLite's printf from the
lookup tables) writes the bytes of the row path, for the cells that need CSV quoting too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.export.rows import Source, csv_cells
from bot.export.run import ExportOptions, run_export
from bot.models import Answer, CheckIn, CheckInStatus
from tests.conftest import START, Harness, make_settings
from tests.factories import make_active_participant


def test_csv_cells_quote_as_the_csv_module_does() -> None:
    assert csv_cells("a", "b,c", 'say "hi"', "") == 'a,"b,c","say ""hi""",,'
    assert csv_cells("line\nbreak") == '"line\nbreak",'


async def test_fast_path_bytes_equal_the_row_path_for_odd_values(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = await make_active_participant(harness.db)
    odd = 'she said "a lot",\nreally'
    answers = [
        # (item, value, first value, first answered): hits and misses of the lookup table
        ("took_med", "missed", "yes", START),  # corrected: first value differs
        ("worst_pain", "4", "", START),  # first value empty: the value itself
        ("new_symptoms", "fever,fall", "fever,fall", None),  # quoted label and value
        ("stiffness", odd, "none", START),  # not an option: quoted in SQL
        ("odd,code", "x", odd, START),  # unknown item with a comma, odd first value
        ("interference", "11", "11", START),  # outside the scale: no label
    ]
    async with harness.db.session() as session:
        checkin = CheckIn(
            participant_id=p.id or 0,
            questionnaire_id="daily_checkin",
            questionnaire_version='1,"1"',
            due_at=START,
            window_closes_at=START + timedelta(hours=6),
            sent_at=START,
            status=CheckInStatus.completed,
        )
        session.add(checkin)
        await session.flush()
        for item, value, first, first_at in answers:
            session.add(
                Answer(
                    checkin_id=checkin.id or 0,
                    item_code=item,
                    value=value,
                    answered_at=START + timedelta(microseconds=7),
                    first_value=first,
                    first_answered_at=first_at,
                    corrections=int(first not in ("", value)),
                )
            )
    settings = make_settings(harness.settings.database_url)
    fast = run_export(settings, ExportOptions(out=tmp_path / "fast"))
    with monkeypatch.context() as m:
        m.setattr(Source, "raw_times", property(lambda self: False))
        run_export(settings, ExportOptions(out=tmp_path / "slow"))
    assert fast.counts["answers"] == len(answers)
    made = (tmp_path / "fast" / "answers.csv").read_bytes()
    assert made == (tmp_path / "slow" / "answers.csv").read_bytes()
    assert b'"she said ""a lot"",\nreally"' in made


def test_parquet_writer_does_not_import_pandas_and_reads_back_typed(tmp_path: Path) -> None:
    """pyarrow would import pandas (~50 MB of the export's peak) for its first array."""
    import subprocess
    import sys

    import pandas as pd

    from bot.export.schema import ANSWERS

    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from pathlib import Path\n"
        "from bot.export.schema import ANSWERS\n"
        "from bot.export.writers import write_parquet\n"
        "at = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)\n"
        "rows = [('r_1', 1, '1.1', 'worst_pain', '4', '', at, '3', None, 1)] * 12001\n"
        "print(write_parquet(Path(sys.argv[1]), ANSWERS, rows), 'pandas' in sys.modules)\n"
    )
    out = tmp_path / "answers.parquet"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.stdout.split() == ["12001", "False"]
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ANSWERS.header
    assert str(frame.corrections.dtype) == "Int64" and str(frame.item_code.dtype) == "category"
    assert frame.first_answered_at.isna().all() and len(frame) == 12001
