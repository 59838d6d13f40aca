"""Writes one export file from a stream of tuples: CSV, JSON Lines or Parquet.

The same types everywhere: instants are ISO 8601 UTC text in CSV/JSON Lines and
`timestamp[us, UTC]` in Parquet; integers are integers; codes are categories in Parquet;
booleans are `true`/`false`. A missing value is an empty CSV cell, JSON `null`, Parquet null.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot.export.schema import ColType, FileSpec

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
PARQUET_BATCH = 10_000


class ParquetMissing(Exception):
    """pyarrow is not installed (the optional `parquet` extra)."""


def _instant(value: datetime | str) -> str:
    # Already text when read straight from SQLite's stored form (bot.export.rows.sqlite_iso).
    return value if isinstance(value, str) else value.isoformat(timespec="microseconds")


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _text_converters(spec: FileSpec) -> list[tuple[int, Callable[[Any], Any]]]:
    """Returns (column index, converter) for the columns that need more than str()."""
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, column in enumerate(spec.columns):
        if column.type == ColType.timestamp:
            out.append((i, _instant))
        elif column.type == ColType.boolean:
            out.append((i, _boolean))
    return out


def write_csv(
    path: Path, spec: FileSpec, rows: Iterable[tuple[Any, ...]], *, times_are_text: bool = False
) -> int:
    """Writes a CSV file (UTF-8, header row, `\n` line ends); returns the row count.

    `times_are_text`: the rows' instants are ISO text already, so a file without booleans
    goes to the csv module's C loop untouched (the long answers file of a big export).
    """
    converters = _text_converters(spec)
    if times_are_text:
        converters = [(i, c) for i, c in converters if c is not _instant]
    counter = itertools.count()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(spec.header)
        if not converters:
            # Counted in C too: zip pairs each row with the next count, itemgetter drops it.
            writer.writerows(map(operator.itemgetter(0), zip(rows, counter, strict=False)))
            return next(counter)
        write = writer.writerow
        for row in rows:
            cells = list(row)
            for i, convert in converters:
                if cells[i] is not None:
                    cells[i] = convert(cells[i])
            write(cells)
            next(counter)
    return next(counter)


def write_csv_lines(path: Path, spec: FileSpec, lines: Iterable[str]) -> int:
    """Writes a CSV file whose lines are made already (`Source.answers_csv_lines`)."""
    counter = itertools.count()
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow(spec.header)
        handle.writelines(map(operator.itemgetter(0), zip(lines, counter, strict=False)))
    return next(counter)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return _instant(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_jsonl(path: Path, spec: FileSpec, rows: Iterable[tuple[Any, ...]]) -> int:
    """Writes JSON Lines: one object per row with every column (null when missing)."""
    header = spec.header
    encode = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        out: TextIO = handle
        for row in rows:
            out.write(encode(dict(zip(header, row, strict=True))))
            out.write("\n")
            count += 1
    return count


def _arrow_type(kind: ColType) -> Any:
    import pyarrow as pa

    return {
        ColType.string: pa.string(),
        ColType.integer: pa.int64(),
        ColType.number: pa.float64(),
        ColType.boolean: pa.bool_(),
        ColType.category: pa.dictionary(pa.int32(), pa.string()),
        ColType.timestamp: pa.timestamp("us", tz="UTC"),
        ColType.local_time: pa.string(),
    }[kind]


# pandas' nullable dtypes for columns whose plain numpy dtype would lose something (an
# integer column with a gap would turn into floats); written as pandas metadata, which
# `pandas.read_parquet` honours, so R and other readers just see the Parquet types.
_PANDAS_NULLABLE = {
    ColType.integer: ("int64", "Int64"),
    ColType.number: ("float64", "Float64"),
    ColType.boolean: ("bool", "boolean"),
    ColType.string: ("unicode", "string"),
    ColType.local_time: ("unicode", "string"),
}


def _pandas_metadata(spec: FileSpec) -> bytes:
    columns = [
        {
            "name": c.name,
            "field_name": c.name,
            "pandas_type": _PANDAS_NULLABLE[c.type][0],
            "numpy_type": _PANDAS_NULLABLE[c.type][1],
            "metadata": None,
        }
        for c in spec.columns
        if c.type in _PANDAS_NULLABLE
    ]
    meta = {
        "index_columns": [],
        "column_indexes": [],
        "columns": columns,
        "creator": {"library": "adherence-bot", "version": "1"},
        "pandas_version": "2.0.0",
    }
    return json.dumps(meta).encode()


def arrow_schema(spec: FileSpec) -> Any:
    """Returns the Parquet schema of one file (with pandas' nullable dtypes noted)."""
    import pyarrow as pa

    fields = [pa.field(c.name, _arrow_type(c.type)) for c in spec.columns]
    return pa.schema(fields).with_metadata({b"pandas": _pandas_metadata(spec)})


def _batch(spec: FileSpec, schema: Any, rows: list[tuple[Any, ...]]) -> Any:
    import pyarrow as pa

    arrays = []
    for i, column in enumerate(spec.columns):
        values = [r[i] for r in rows]
        if column.type == ColType.category:
            arrays.append(pa.array(values, type=pa.string()).dictionary_encode())
        elif column.type == ColType.timestamp and any(isinstance(v, str) for v in values):
            # ISO 8601 text read straight from SQLite: Arrow parses it in C.
            arrays.append(pa.array(values, type=pa.string()).cast(schema.field(i).type))
        else:
            arrays.append(pa.array(values, type=schema.field(i).type))
    return pa.record_batch(arrays, schema=schema)


def write_parquet(path: Path, spec: FileSpec, rows: Iterable[tuple[Any, ...]]) -> int:
    """Writes Parquet in batches (flat memory), with real types; needs pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ParquetMissing from exc
    schema = arrow_schema(spec)
    count = 0
    buffer: list[tuple[Any, ...]] = []
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for row in rows:
            buffer.append(row)
            if len(buffer) >= PARQUET_BATCH:
                writer.write_batch(_batch(spec, schema, buffer))
                count += len(buffer)
                buffer = []
        if buffer or count == 0:
            writer.write_batch(_batch(spec, schema, buffer))
            count += len(buffer)
    return count


def parquet_available() -> bool:
    """Tells whether pyarrow can be imported."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


WRITERS: dict[str, Callable[[Path, FileSpec, Iterable[tuple[Any, ...]]], int]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "parquet": write_parquet,
}


def sha256_of(path: Path) -> str:
    """Returns the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
