"""Reads the database for an export: one generator of plain tuples per file, streamed.

Everything runs on one synchronous connection inside one read transaction (a consistent
snapshot; REPEATABLE READ on PostgreSQL). Queries select columns, never ORM objects, and
the large ones run with `stream_results` + `yield_per`: a server-side cursor on PostgreSQL,
batched `fetchmany` on SQLite, so memory stays flat however many rows there are.

Who is in an export: everyone who consented at some point and did not ask for deletion
(withdrawn participants who kept their data are in, with their status), in the cohort asked
for. No Telegram id, chat id, name, username or staff code is ever selected.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import col

from bot.checkins import DRAFT_SUFFIX, UNDELIVERED, split_values
from bot.content import Item, Questionnaire, questionnaire
from bot.export.schema import all_text_codes, item_columns, questionnaires
from bot.models import (
    Alert,
    AlertAction,
    Answer,
    AnswerHistory,
    BarrierReport,
    CheckIn,
    CheckInOrigin,
    Cohort,
    Consent,
    EnumText,
    Lifecycle,
    OfferEvent,
    OutgoingMessage,
    PageView,
    Participant,
    SavedQuestion,
    TherapyChange,
    UTCDateTime,
)

# Rows fetched per round trip: big enough to keep the driver busy, small enough to be flat.
YIELD_PER = 5000
EXPORT_PURPOSE = b"research-export:v1:"
SHIFT_PURPOSE = b"research-date-shift:v1:"
FINGERPRINT_PURPOSE = b"key-fingerprint:v1"
MAX_SHIFT_WEEKS = 52

Row = tuple[Any, ...]


def export_pseudonym(stored_pseudonym: str, key: str) -> str:
    """Returns her export code: a keyed hash with a purpose of its own (never the staff code)."""
    digest = hmac.new(key.encode(), EXPORT_PURPOSE + stored_pseudonym.encode(), hashlib.sha256)
    return "r_" + digest.hexdigest()[:16]


def shift_weeks(stored_pseudonym: str, key: str) -> int:
    """Returns how many whole weeks her dates move back (1..52), the same in every export."""
    digest = hmac.new(key.encode(), SHIFT_PURPOSE + stored_pseudonym.encode(), hashlib.sha256)
    return 1 + int.from_bytes(digest.digest()[:8], "big") % MAX_SHIFT_WEEKS


def key_fingerprint(key: str) -> str:
    """Returns a short fingerprint of the pseudonym key (tells two exports' keys apart)."""
    return hmac.new(key.encode(), FINGERPRINT_PURPOSE, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Filters:
    """What an export covers: a half-open UTC range and a cohort (all optional)."""

    since: datetime | None = None
    until: datetime | None = None
    cohort: str | None = None

    @property
    def timed(self) -> bool:
        """Tells whether a time range was asked for."""
        return self.since is not None or self.until is not None


@dataclass(frozen=True)
class Person:
    """What every row of one participant needs: her export code, date shift and zone."""

    code: str
    shift: timedelta
    zone: ZoneInfo | None


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def as_instant(value: datetime | str) -> datetime:
    """Returns an aware UTC datetime for a datetime or for ISO / SQLite stored text."""
    if isinstance(value, datetime):
        return value
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _streamed(conn: Connection, query: Any) -> Iterator[Row]:
    """Runs a query with a server-side cursor (PostgreSQL) / batched fetches (SQLite)."""
    # Per statement: Connection.execution_options() would change the connection itself.
    options = {"stream_results": True, "yield_per": YIELD_PER}
    result = conn.execute(query, execution_options=options)
    return itertools.chain.from_iterable(result.partitions())


# A cell the csv module quotes (QUOTE_MINIMAL): one holding a comma, a quote or a line break.
_NEEDS_QUOTES = '*[,"\n\r]*'


def _csv_quoted(text: Any) -> Any:
    """Returns SQL for a CSV cell quoted as Python's csv module quotes it (QUOTE_MINIMAL)."""
    # One GLOB with a character class: a single function call per cell (four instr() cost
    # four); most cells never need quotes, so the replace() branch rarely runs.
    quoted = sa.literal('"').concat(sa.func.replace(text, '"', '""')).concat('"')
    return sa.case((text.op("GLOB")(sa.literal(_NEEDS_QUOTES)), quoted), else_=text)


def csv_cells(*values: str) -> str:
    """Returns cells as the csv module writes them, each followed by its comma."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([*values, ""])
    return buffer.getvalue()[:-1]  # "a,b,\n" -> "a,b,"


# Lookup tables for the answers file, made per export in the connection's temporary space,
# so the database hands out finished rows (export code, label) and Python only writes them.
_LOOKUPS = sa.MetaData()
EXPORT_PERSON = sa.Table(
    "export_person",
    _LOOKUPS,
    sa.Column("pid", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(32), nullable=False),
    prefixes=["TEMPORARY"],
)
EXPORT_LABEL = sa.Table(
    "export_label",
    _LOOKUPS,
    sa.Column("qid", sa.String(64), primary_key=True),
    sa.Column("item", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(2000), primary_key=True),
    sa.Column("label", sa.String(4000), nullable=False),
    # The CSV path's finished cells, quoted once here instead of once per answer:
    # "item,value,label," and the value alone (the first value is usually the same).
    sa.Column("cells", sa.String(8000), nullable=False),
    sa.Column("value_cell", sa.String(4000), nullable=False),
    prefixes=["TEMPORARY"],
)
# A multi-select's stored value lists its options in questionnaire order; every subset is
# labelled up front while that stays small (2**12 rows); larger items fall back to Python.
MAX_LABELLED_OPTIONS = 12


def stored_values(item: Item) -> Iterator[str]:
    """Yields every value an item can store: each option, each point of a scale, or each
    subset of a multi-select."""
    values = item.values()
    if item.type != "multi":
        yield from values
        return
    for size in range(1, len(values) + 1):
        for chosen in itertools.combinations(values, size):  # keeps questionnaire order
            yield ",".join(chosen)


@dataclass
class Source:
    """The export's view of the database: eligible participants and one generator per file."""

    conn: Connection
    key: str
    filters: Filters
    shift_dates: bool = False
    people: dict[int, Person] = field(default_factory=dict)
    # Participants who appear in a filtered file (the participants file lists them).
    seen: set[int] = field(default_factory=set)
    _labels: dict[tuple[str, str, str], str] = field(default_factory=dict)

    # ------------------------------------------------------------ who is in

    def eligible(self) -> Any:
        """Returns a query for the ids of the participants this export may include."""
        consented = sa.exists().where(col(Consent.participant_id) == col(Participant.id))
        query = sa.select(col(Participant.id)).where(
            col(Participant.status) != Lifecycle.deleted,
            col(Participant.deleted_at).is_(None),
            consented,
        )
        if self.filters.cohort is not None:
            cohort_id = sa.select(col(Cohort.id)).where(col(Cohort.code) == self.filters.cohort)
            query = query.where(col(Participant.cohort_id).in_(cohort_id.scalar_subquery()))
        return query

    def load_people(self) -> None:
        """Reads every eligible participant's code, date shift and zone (small: one per person)."""
        query = sa.select(
            col(Participant.id), col(Participant.pseudonym), col(Participant.timezone)
        ).where(col(Participant.id).in_(self.eligible()))
        for pid, stored, zone in self.conn.execute(query):
            weeks = shift_weeks(stored, self.key) if self.shift_dates else 0
            self.people[int(pid or 0)] = Person(
                code=export_pseudonym(stored, self.key),
                shift=timedelta(weeks=-weeks),
                zone=_zone(zone),
            )

    def _in_range(self, column: Any) -> list[Any]:
        conds = []
        if self.filters.since is not None:
            conds.append(column >= self.filters.since)
        if self.filters.until is not None:
            conds.append(column < self.filters.until)
        return conds

    def _mine(self, participant_column: Any) -> Any:
        return participant_column.in_(self.eligible())

    def _checkin_time(self) -> Any:
        """The instant a check-in's range filter uses: due time, sent time for on-demand ones."""
        return sa.case(
            (
                col(CheckIn.origin) == CheckInOrigin.on_demand,
                sa.func.coalesce(col(CheckIn.sent_at), col(CheckIn.due_at)),
            ),
            else_=col(CheckIn.due_at),
        )

    def _checkin_filter(self) -> list[Any]:
        return [self._mine(col(CheckIn.participant_id)), *self._in_range(self._checkin_time())]

    @property
    def raw_times(self) -> bool:
        """Tells whether times are read as SQLite's stored text (no date shift to apply)."""
        return not self.shift_dates and self.conn.dialect.name == "sqlite"

    def _plain(self, column: Any) -> Any:
        """Reads a column without per-value Python conversion where none is needed: status
        codes as text (not enum members), and on SQLite without a shift the stored UTC
        text made ISO 8601 by SQLite (parsing and formatting cost most of a big export)."""
        kind = getattr(column, "type", None)
        if isinstance(kind, EnumText):
            return sa.type_coerce(column, sa.String)
        if isinstance(kind, UTCDateTime) and self.raw_times:
            # "2026-01-12 20:00:00.000000" -> "2026-01-12T20:00:00.000000+00:00", in SQLite.
            text = sa.func.replace(sa.type_coerce(column, sa.String), " ", "T", type_=sa.String)
            return text.concat("+00:00")
        return column

    def _stream_columns(self, query: Any) -> Any:
        """Returns the query with its columns read the plain way (`_plain`)."""
        return query.with_only_columns(*[self._plain(c) for c in query.selected_columns])

    def _stream(self, query: Any) -> Iterator[Row]:
        """Streams a query's rows, with its columns read the plain way (`_plain`)."""
        return _streamed(self.conn, self._stream_columns(query))

    def _t(self, person: Person, at: datetime | str | None) -> datetime | str | None:
        """Returns an instant as exported: shifted by her weeks, or ISO text from SQLite."""
        if at is None or isinstance(at, str):
            return at  # ISO text already (SQLite, no shift)
        return at + person.shift

    # ------------------------------------------------------------ labels

    def make_lookups(self) -> bool:
        """Fills the temporary lookup tables; False when a label needs Python after all."""
        conn = self.conn
        _LOOKUPS.drop_all(conn, checkfirst=True)
        _LOOKUPS.create_all(conn)
        people = [{"pid": pid, "code": p.code} for pid, p in self.people.items()]
        if people:
            conn.execute(EXPORT_PERSON.insert(), people)
        labels: list[dict[str, str]] = []
        complete = True
        for q in questionnaires():
            for item in q.items:
                if item.type == "multi" and len(item.options) > MAX_LABELLED_OPTIONS:
                    complete = False
                    continue
                for v in stored_values(item):
                    label = self.label(q.id, item.code, v)
                    labels.append(
                        {
                            "qid": q.id,
                            "item": item.code,
                            "value": v,
                            "label": label,
                            "cells": csv_cells(item.code, v, label),
                            "value_cell": csv_cells(v)[:-1],
                        }
                    )
        if labels:
            conn.execute(EXPORT_LABEL.insert(), labels)
        return complete

    def label(self, qid: str, item_code: str, value: str) -> str:
        """Returns the English label of a stored value (joined with '; ' for a multi-select)."""
        key = (qid, item_code, value)
        found = self._labels.get(key)
        if found is None:
            found = ""
            try:
                item = questionnaire(qid).item(item_code)
            except Exception:  # a questionnaire no longer in content: no label, value kept
                item = None
            if item is not None and item.options:
                parts = [item.option(v) for v in split_values(value)]
                found = "; ".join(o.text("en") for o in parts if o is not None)
            self._labels[key] = found
        return found

    # ------------------------------------------------------------ files

    def consents(self) -> Iterator[Row]:
        """Yields every consent and withdrawal with its version and times."""
        query = (
            sa.select(
                col(Consent.participant_id),
                col(Consent.version),
                col(Consent.accepted_at),
                col(Consent.withdrawn_at),
            )
            .where(
                self._mine(col(Consent.participant_id)), *self._in_range(col(Consent.accepted_at))
            )
            .order_by(col(Consent.id))
        )
        for pid, version, accepted, withdrawn in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            yield (p.code, version, self._t(p, accepted), self._t(p, withdrawn))

    def checkins(self) -> Iterator[Row]:
        """Yields one row per check-in in range, with times, latency, outcome and reason."""
        c = CheckIn
        query = (
            sa.select(
                col(c.participant_id),
                col(c.id),
                col(c.origin),
                col(c.questionnaire_id),
                col(c.questionnaire_version),
                col(c.due_at),
                col(c.window_closes_at),
                col(c.queued_at),
                col(c.sent_at),
                col(c.first_answer_at),
                col(c.closed_at),
                col(c.status),
                col(c.missed_reason),
                col(c.reminder_count),
                col(c.message_ids),
            )
            .where(*self._checkin_filter())
            .order_by(col(c.id))
        )
        for row in self._stream(query):
            pid, cid, origin, qid, qv, due, closes, queued, sent, first, closed = row[:11]
            status, reason, reminders, message_ids = row[11:]
            p = self.people[pid]
            self.seen.add(pid)
            due_s = self._t(p, due)
            local = as_instant(due_s).astimezone(p.zone).isoformat() if due_s and p.zone else None
            latency = (
                (as_instant(first) - as_instant(sent)).total_seconds() if first and sent else None
            )
            yield (
                p.code,
                cid,
                str(origin),
                qid,
                qv,
                due_s,
                local,
                self._t(p, closes),
                self._t(p, queued),
                self._t(p, sent),
                self._t(p, first),
                self._t(p, closed),
                latency,
                str(status),
                None if reason is None else str(reason),
                reminders,
                # The "!" mark is bookkeeping inside message_ids; researchers get a flag.
                (message_ids or "").endswith(UNDELIVERED),
            )

    def _answer_query(self, *, text_only: bool, order_by_checkin: bool) -> Any:
        """The answers in range, drafts left out. Who may be exported is checked row by row
        against `people` (a dict lookup): with it in SQL, SQLite would sort every answer
        instead of reading the table in order and looking each check-in up by its key."""
        a, c = Answer, CheckIn
        text_codes = sorted(all_text_codes())
        query = (
            sa.select(
                col(c.participant_id),
                col(a.checkin_id),
                col(c.questionnaire_id),
                col(c.questionnaire_version),
                col(a.item_code),
                col(a.value),
                col(a.answered_at),
                col(a.first_value),
                col(a.first_answered_at),
                col(a.corrections),
            )
            .join(c, col(c.id) == col(a.checkin_id))
            .where(*self._in_range(self._checkin_time()))
            .where(sa.not_(col(a.item_code).endswith(DRAFT_SUFFIX, autoescape=True)))
        )
        if text_only:
            query = query.where(col(a.item_code).in_(text_codes))
        elif text_codes:
            query = query.where(col(a.item_code).not_in(text_codes))
        order = (col(a.checkin_id), col(a.id)) if order_by_checkin else (col(a.id),)
        return query.order_by(*order)

    def _answers_query(self) -> Any:
        """The answers file as one query over the lookup tables (`make_lookups` first)."""
        a, c, person, lab = Answer, CheckIn, EXPORT_PERSON, EXPORT_LABEL
        columns: list[Any] = [
            person.c.code,
            col(a.checkin_id),
            col(c.questionnaire_version),
            col(a.item_code),
            col(a.value),
            sa.func.coalesce(lab.c.label, ""),
            col(a.answered_at),
            sa.func.coalesce(sa.func.nullif(col(a.first_value), ""), col(a.value)),
            col(a.first_answered_at),
            col(a.corrections),
        ]
        if self.shift_dates:
            columns.append(col(c.participant_id))
        text_codes = sorted(all_text_codes())
        # Joins, not correlated subqueries: SQLite reads `answer` in order and looks up the
        # check-in, the person and the label by key (no sort, no second lookup per row).
        return (
            sa.select(*columns)
            .select_from(a)
            .join(c, col(c.id) == col(a.checkin_id))
            .join(person, person.c.pid == col(c.participant_id))
            .outerjoin(
                lab,
                sa.and_(
                    lab.c.qid == col(c.questionnaire_id),
                    lab.c.item == col(a.item_code),
                    lab.c.value == col(a.value),
                ),
            )
            .where(*self._in_range(self._checkin_time()))
            .where(sa.not_(col(a.item_code).endswith(DRAFT_SUFFIX, autoescape=True)))
            .where(col(a.item_code).not_in(text_codes))
            .order_by(col(a.id))
        )

    def answers(self) -> Iterator[Row]:
        """Yields the long answers file: one row per confirmed answer, free text left out.

        The big file of an export (one row per answer), so the database does the work: the
        export code and the label come from the temporary lookup tables, the first value is
        filled in SQL, and on SQLite without a date shift the times arrive as ISO text made
        by SQLite. Rows then go to the writer untouched; only a date shift needs Python.
        """
        if not self.make_lookups():
            return self._answers_in_python()
        if self.raw_times:
            return self._driver_rows(self._stream_columns(self._answers_query()))
        rows = self._stream(self._answers_query())
        if not self.shift_dates:
            return rows
        return self._shifted_answers(rows)

    def answers_csv_chunks(self) -> Iterator[tuple[bytes, int]] | None:
        """Returns the answers file's CSV lines made by SQLite itself, or None elsewhere.

        SQLite without a date shift, CSV only. SQLite makes each line with one printf():
        the "item,value,label," cells come quoted from the lookup table (made once with the
        csv module), the value and first value too when they match it; other cells that may
        hold a comma, a quote or a line break are quoted in SQL exactly as the csv module
        does (QUOTE_MINIMAL); export codes, numbers and ISO times never need it. Lines come
        as UTF-8 bytes (no decoding and re-encoding), `YIELD_PER` at a time, so Python
        joins and writes one string per batch. Yields (bytes, line count). A test checks
        the bytes are those of the row path.
        """
        if not self.raw_times or not self.make_lookups():
            return None
        a, c, person, lab = Answer, CheckIn, EXPORT_PERSON, EXPORT_LABEL

        def text(column: Any) -> Any:
            return sa.type_coerce(column, sa.String)

        def iso(column: Any) -> Any:  # stored "2026-01-12 20:00:00.000000": T, no zone
            return sa.func.replace(text(column), " ", "T", type_=sa.String)

        value = text(col(a.value))
        first = text(col(a.first_value))
        # Not in the lookup table (a value no option has): no label, an empty cell.
        item_cell = _csv_quoted(text(col(a.item_code)))
        missed_cells = item_cell.concat(",").concat(_csv_quoted(value)).concat(",,")
        first_cell = sa.case(
            (
                sa.or_(first == "", first == value),
                sa.func.coalesce(lab.c.value_cell, _csv_quoted(value)),
            ),
            else_=_csv_quoted(first),
        )
        line = sa.func.printf(
            "%s,%d,%s,%s%s+00:00,%s,%s,%d\n",
            person.c.code,
            col(a.checkin_id),
            _csv_quoted(text(col(c.questionnaire_version))),
            sa.func.coalesce(lab.c.cells, missed_cells),
            iso(col(a.answered_at)),
            first_cell,
            sa.func.coalesce(iso(col(a.first_answered_at)).concat("+00:00"), ""),
            col(a.corrections),
            type_=sa.String,
        )
        statement = self._answers_query().with_only_columns(
            sa.cast(line, sa.LargeBinary), maintain_column_froms=True
        )
        return self._driver_chunks(statement)

    def _driver_chunks(self, query: Any) -> Iterator[tuple[bytes, int]]:
        """Yields (the batch's single cells joined, row count), `YIELD_PER` rows at a time."""
        cursor = self._driver_cursor(query)
        cell = operator.itemgetter(0)
        while batch := cursor.fetchmany():
            yield b"".join(map(cell, batch)), len(batch)

    def _driver_rows(self, query: Any) -> Iterator[Row]:
        """Runs a query on SQLite's own cursor, in this transaction, and returns its tuples."""
        return iter(self._driver_cursor(query))

    def _driver_cursor(self, query: Any) -> Any:
        """Runs a query on SQLite's own cursor, in this transaction, and returns the cursor.

        For the answers file only: its rows are final as they come (codes, labels and ISO
        times made in SQL), and SQLAlchemy's row objects would cost more than the rest of
        the export put together. Fetched `YIELD_PER` at a time (flat memory).
        """
        compiled = query.compile(
            dialect=self.conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        params = compiled.construct_params()
        positional = tuple(params[name] for name in compiled.positiontup or ())
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.arraysize = YIELD_PER
        cursor.execute(str(compiled), positional)
        return cursor

    def _shifted_answers(self, rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            shift = self.people[row[-1]].shift
            cells = list(row[:-1])
            cells[6] = cells[6] + shift
            if cells[8] is not None:
                cells[8] = cells[8] + shift
            yield tuple(cells)

    def _answers_in_python(self) -> Iterator[Row]:
        """The answers file with labels made in Python (a multi-select with many options)."""
        people, label = self.people, self.label
        query = self._answer_query(text_only=False, order_by_checkin=False)
        for pid, cid, qid, qv, item, value, at, first, first_at, corrections in self._stream(
            query
        ):
            p = people.get(pid)
            if p is None:
                continue  # not in this export (deleted, never consented, other cohort)
            yield (
                p.code,
                cid,
                qv,
                item,
                value,
                label(qid, item, value),
                self._t(p, at),
                first or value,
                self._t(p, first_at),
                corrections,
            )

    def answers_wide(self, q: Questionnaire) -> Iterator[Row]:
        """Yields one row per check-in of `q`, one cell per item (0/1 per multi-select option).

        Check-ins and their answers are read as two streams ordered by check-in id and merged,
        so no check-in's answers are held longer than its own row.
        """
        columns = [(item, item_columns(item)) for item in q.items if item.type != "text"]
        c = CheckIn
        checkin_query = (
            sa.select(
                col(c.participant_id),
                col(c.id),
                col(c.questionnaire_version),
                col(c.status),
                col(c.due_at),
            )
            .where(*self._checkin_filter(), col(c.questionnaire_id) == q.id)
            .order_by(col(c.id))
        )
        answer_query = (
            self._answer_query(text_only=False, order_by_checkin=True)
            .where(col(c.questionnaire_id) == q.id)
            .with_only_columns(
                col(Answer.checkin_id),
                col(Answer.item_code),
                col(Answer.value),
                maintain_column_froms=True,
            )
        )
        # Plain tuples from the driver on SQLite (no row objects: one per answer adds up).
        answers = self._driver_rows(answer_query) if self.raw_times else self._stream(answer_query)
        pending = next(answers, None)
        for pid, cid, qv, status, due in self._stream(checkin_query):
            values: dict[str, str] = {}
            while pending is not None and pending[0] <= cid:
                if pending[0] == cid:
                    values[pending[1]] = pending[2]
                pending = next(answers, None)
            p = self.people[pid]
            self.seen.add(pid)
            cells: list[Any] = [p.code, cid, q.id, qv, str(status), self._t(p, due)]
            for item, _cols in columns:
                raw = values.get(item.code)
                if item.type == "multi":
                    chosen = set(split_values(raw)) if raw is not None else None
                    cells.extend(
                        None if chosen is None else int(o.value in chosen) for o in item.options
                    )
                elif item.type == "scale":
                    cells.append(int(raw) if raw not in (None, "") else None)
                else:
                    cells.append(raw if raw not in (None, "") else None)
            yield tuple(cells)

    def answer_history(self) -> Iterator[Row]:
        """Yields every earlier value of a corrected answer (free text left out)."""
        h, a, c = AnswerHistory, Answer, CheckIn
        text_codes = sorted(all_text_codes())
        query = (
            sa.select(
                col(c.participant_id),
                col(a.checkin_id),
                col(a.item_code),
                col(h.old_value),
                col(h.old_answered_at),
                col(h.changed_at),
            )
            .join(a, col(a.id) == col(h.answer_id))
            .join(c, col(c.id) == col(a.checkin_id))
            .where(*self._checkin_filter())
            .where(sa.not_(col(a.item_code).endswith(DRAFT_SUFFIX, autoescape=True)))
            .where(col(a.item_code).not_in(text_codes))
            .order_by(col(h.id))
        )
        for pid, cid, item, old, old_at, changed in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            yield (p.code, cid, item, old, self._t(p, old_at), self._t(p, changed))

    def notes(self) -> Iterator[Row]:
        """Yields free text (check-in notes, saved questions): only with --include-notes."""
        query = self._answer_query(text_only=True, order_by_checkin=False)
        for pid, cid, _qid, _qv, _item, value, at, *_rest in self._stream(query):
            p = self.people.get(pid)
            if not value or p is None:
                continue  # she tapped Skip, or she is not in this export
            self.seen.add(pid)
            yield (p.code, "checkin_note", cid, value, self._t(p, at))
        s = SavedQuestion
        saved = (
            sa.select(col(s.participant_id), col(s.text), col(s.created_at))
            .where(self._mine(col(s.participant_id)), col(s.deleted_at).is_(None))
            .where(*self._in_range(col(s.created_at)))
            .order_by(col(s.id))
        )
        for pid, text, at in self._stream(saved):
            p = self.people[pid]
            self.seen.add(pid)
            yield (p.code, "saved_question", None, text, self._t(p, at))

    def _events(
        self, table: Any, time_column: str, columns: Sequence[str], timed: Sequence[str]
    ) -> Iterator[Row]:
        """Yields (code, *columns) for a per-participant event table, filtered by its time."""
        pid_col = table.participant_id
        cols = [getattr(table, name) for name in columns]
        query = (
            sa.select(pid_col, *cols)
            .where(self._mine(pid_col), *self._in_range(getattr(table, time_column)))
            .order_by(table.id)
        )
        shifted = [columns.index(name) for name in timed]
        for pid, *values in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            for i in shifted:
                values[i] = self._t(p, values[i])
            yield (p.code, *values)

    def therapy_changes(self) -> Iterator[Row]:
        """Yields every therapy change she reported (stopped, switched, finished, restarted)."""
        return self._events(
            TherapyChange,
            "recorded_at",
            ["kind", "new_medicine", "changed_on", "recorded_at"],
            ["changed_on", "recorded_at"],
        )

    def barriers(self) -> Iterator[Row]:
        """Yields every barrier code she picked."""
        return self._events(
            BarrierReport, "recorded_at", ["code", "source", "recorded_at"], ["recorded_at"]
        )

    def offer_events(self) -> Iterator[Row]:
        """Yields offers shown, opened and turned off."""
        return self._events(OfferEvent, "at", ["offer_code", "event", "checkin_id", "at"], ["at"])

    def page_views(self) -> Iterator[Row]:
        """Yields every education page she opened, with the page version."""
        return self._events(
            PageView, "viewed_at", ["page_id", "page_version", "viewed_at"], ["viewed_at"]
        )

    def broadcast_deliveries(self) -> Iterator[Row]:
        """Yields each broadcast delivery to her: state and times, never the text or chat."""
        m = OutgoingMessage
        query = (
            sa.select(
                col(m.participant_id),
                col(m.broadcast_id),
                col(m.state),
                col(m.uncertain),
                col(m.attempts),
                col(m.created_at),
                col(m.not_before),
                col(m.sent_at),
            )
            .where(col(m.broadcast_id).is_not(None), self._mine(col(m.participant_id)))
            .where(*self._in_range(col(m.created_at)))
            .order_by(col(m.id))
        )
        for pid, bid, state, uncertain, attempts, queued, not_before, sent in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            t = self._t
            yield (
                p.code,
                bid,
                str(state),
                bool(uncertain),
                attempts,
                t(p, queued),
                t(p, not_before),
                t(p, sent),
            )

    def alerts(self) -> Iterator[Row]:
        """Yields alerts raised about her: kind, urgency, times; never their detail text."""
        al = Alert
        query = (
            sa.select(
                col(al.participant_id),
                col(al.id),
                col(al.kind),
                col(al.urgent),
                col(al.status),
                col(al.checkin_id),
                col(al.contact_requested),
                col(al.created_at),
                col(al.delivered_at),
                col(al.acknowledged_at),
                col(al.closed_at),
                col(al.closed_reason),
                col(al.count),
                col(al.last_triggered_at),
                col(al.due_by),
            )
            .where(self._mine(col(al.participant_id)), *self._in_range(col(al.created_at)))
            .order_by(col(al.id))
        )
        for pid, aid, kind, urgent, status, cid, contact, *rest in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            raised, delivered, acked, closed, reason, count, last, due_by = rest
            t = self._t
            yield (
                p.code,
                aid,
                kind,
                bool(urgent),
                str(status),
                cid,
                bool(contact),
                t(p, raised),
                t(p, delivered),
                t(p, acked),
                t(p, closed),
                reason,
                count,
                t(p, last),
                t(p, due_by),
            )

    def alert_actions(self, roles: dict[str, str]) -> Iterator[Row]:
        """Yields what the care team did on each alert: action, the actor's role, time.

        `roles` maps an actor ("staff:<code>") to her roles; the staff code itself is not
        exported, and system actions are labelled "system".
        """
        act, al = AlertAction, Alert
        query = (
            sa.select(
                col(al.participant_id),
                col(act.alert_id),
                col(act.action),
                col(act.actor),
                col(act.at),
            )
            .join(al, col(al.id) == col(act.alert_id))
            .where(self._mine(col(al.participant_id)), *self._in_range(col(act.at)))
            .order_by(col(act.id))
        )
        for pid, aid, action, actor, at in self._stream(query):
            p = self.people[pid]
            self.seen.add(pid)
            role = "system" if actor.startswith("system:") else roles.get(actor, "staff")
            yield (p.code, aid, action, role, self._t(p, at))

    def participants(self, *, include_site_ids: bool) -> Iterator[Row]:
        """Yields one row per eligible participant (only those seen, when a range is set)."""
        pa = Participant
        first_consent = (
            sa.select(sa.func.min(col(Consent.accepted_at)))
            .where(col(Consent.participant_id) == col(pa.id))
            .scalar_subquery()
        )
        query = (
            sa.select(
                col(pa.id),
                col(Cohort.code),
                col(pa.site_study_id),
                col(pa.medicine),
                col(pa.therapy_status),
                col(pa.therapy_started),
                col(pa.country),
                col(pa.timezone),
                col(pa.locale),
                first_consent,
                col(pa.onboarded_at),
                col(pa.status),
                col(pa.withdrawn_at),
                col(pa.reachable),
                col(pa.unreachable_since),
                col(pa.discreet),
                col(pa.consent_version),
            )
            .outerjoin(Cohort, col(Cohort.id) == col(pa.cohort_id))
            .where(col(pa.id).in_(self.eligible()))
            .order_by(col(pa.pseudonym))
        )
        rows = []
        for (
            pid,
            cohort,
            site,
            med,
            therapy,
            started,
            country,
            zone,
            locale,
            *rest,
        ) in self._stream(query):
            if self.filters.timed and pid not in self.seen:
                continue
            enrolled, onboarded, status, withdrawn, reachable, unreachable, discreet, cv = rest
            p = self.people[int(pid or 0)]
            t = self._t
            row: list[Any] = [
                p.code,
                cohort,
                med,
                None if therapy is None else str(therapy),
                started,
                country,
                zone,
                locale,
                t(p, enrolled),
                t(p, onboarded),
                str(status),
                t(p, withdrawn),
                bool(reachable),
                t(p, unreachable),
                bool(discreet),
                cv,
                self.shift_dates,
            ]
            if include_site_ids:
                row.insert(2, site)
            rows.append(tuple(row))
        # Sorted by export code, so row order says nothing about who joined first.
        rows.sort(key=lambda r: r[0])
        yield from rows
