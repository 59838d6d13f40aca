"""Writes one export file from a stream of tuples: CSV, JSON Lines or Parquet.

The same types everywhere: instants are ISO 8601 UTC text in CSV/JSON Lines and
`timestamp[us, UTC]` in Parquet; integers are integers; codes are categories in Parquet;
booleans are `true`/`false`. A missing value is an empty CSV cell, JSON `null`, Parquet null.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.abc
import io
import itertools
import json
import operator
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot.export.schema import ColType, FileSpec

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
# Rows held in Python at a time (bounds the peak, see docs/benchmarks.md), and rows per
# Parquet row group (a multiple of it: Arrow's columns are far more compact than rows).
PARQUET_BATCH = 5_000
PARQUET_ROW_GROUP = 20_000


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


def write_csv_chunks(path: Path, spec: FileSpec, chunks: Iterable[tuple[bytes, int]]) -> int:
    """Writes a CSV file from UTF-8 lines made already, a batch at a time
    (`Source.answers_csv_chunks`: (bytes, line count)); returns the row count."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(spec.header)
    count = 0
    with path.open("wb") as handle:
        handle.write(header.getvalue().encode("utf-8"))
        for chunk, lines in chunks:
            handle.write(chunk)
            count += lines
    return count


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
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(spec.columns)
    for i, column in enumerate(spec.columns):
        values = columns[i]
        if column.type == ColType.category:
            arrays.append(pa.array(values, type=pa.string()).dictionary_encode())
        elif column.type == ColType.timestamp and isinstance(
            next((v for v in values if v is not None), None), str
        ):
            # ISO 8601 text read straight from SQLite: Arrow parses it in C.
            arrays.append(pa.array(values, type=pa.string()).cast(schema.field(i).type))
        else:
            arrays.append(pa.array(values, type=schema.field(i).type))
    return pa.record_batch(arrays, schema=schema)


class _RefusePandas(importlib.abc.MetaPathFinder):
    """Makes `import pandas` fail (see `_without_pandas`)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("pandas is not needed to write Parquet")
        return None


@contextmanager
def _without_pandas() -> Iterator[None]:
    """Keeps pyarrow from importing pandas while it builds arrays from Python lists.

    pyarrow's first `pa.array(list)` imports pandas (about 50 MB) only to ask whether the
    list is a pandas object; the export never hands it one, and its pandas metadata is
    written by hand (`_pandas_metadata`). When the import fails, pyarrow notes "no pandas"
    for that question and imports pandas later as soon as something really needs it
    (`to_pandas`, `pandas.read_parquet`), so nothing else in the process changes.
    """
    if "pandas" in sys.modules:
        yield
        return
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def write_parquet(path: Path, spec: FileSpec, rows: Iterable[tuple[Any, ...]]) -> int:
    """Writes Parquet in batches (flat memory), with real types; needs pyarrow.

    Rows become Arrow columns `PARQUET_BATCH` at a time (Python holds no more rows than
    that); the compact Arrow batches are written together, one row group per
    `PARQUET_ROW_GROUP` rows, so the file compresses as well as with bigger batches.
    Values, types and pandas dtypes are those of one row group per batch.
    """
    if not parquet_available():
        raise ParquetMissing
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(spec)
    count = 0
    stream = iter(rows)
    pending: list[Any] = []
    with _without_pandas(), pq.ParquetWriter(path, schema, compression="zstd") as writer:

        def flush() -> None:
            table = pa.Table.from_batches(pending, schema=schema).unify_dictionaries()
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            pending.clear()

        while batch := list(itertools.islice(stream, PARQUET_BATCH)):
            pending.append(_batch(spec, schema, batch))
            count += len(batch)
            if count % PARQUET_ROW_GROUP == 0:
                flush()
        if count == 0:
            pending.append(_batch(spec, schema, []))  # an empty file still has its schema
        if pending:
            flush()
    return count


def parquet_available() -> bool:
    """Tells whether pyarrow can be imported (and imports it, with the C allocator)."""
    # Arrow's default allocator (mimalloc) keeps ~18 MB of arenas for the life of the
    # process; the C library's gives freed batches back. Read once, when Arrow first
    # allocates: the export imports pyarrow here first. An operator's own choice wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
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
