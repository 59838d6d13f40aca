"""What an export holds: every file, every column with its type, and the data dictionary.

Column names and types live here, beside the code that fills them; the words that explain
them (description, units) live in `content/export/dictionary.yaml`, and the rows for the
check-in items are generated from `content/questionnaires/`, so the dictionary cannot drift
from the files. A column without a description is an error, not a blank cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from bot.content import Item, Questionnaire, content_dir, load_yaml, questionnaire
from bot.models import (
    AlertStatus,
    CheckInOrigin,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OutboxState,
    TherapyStatus,
)


class ColType(StrEnum):
    """A column's type, with one meaning in CSV, JSON Lines and Parquet."""

    string = "string"
    integer = "integer"
    number = "number"
    boolean = "boolean"
    category = "category"  # a code from a closed list
    timestamp = "timestamp_utc"  # an instant, ISO 8601 in UTC
    local_time = "timestamp_local"  # the same instant on her clock, ISO 8601 with offset


# How pandas should read each type (the codebook and the tests use this mapping).
PANDAS_DTYPE = {
    ColType.string: "string",
    ColType.integer: "Int64",
    ColType.number: "Float64",
    ColType.boolean: "boolean",
    ColType.category: "category",
    ColType.timestamp: "datetime64[us, UTC]",
    ColType.local_time: "string",
}


@dataclass(frozen=True)
class Column:
    """One column of one export file."""

    name: str
    type: ColType
    # Allowed values (code -> label) for a category or an item; empty when open.
    allowed: tuple[tuple[str, str], ...] = ()
    # The dictionary text key (`<file>.<column>` by default; items use their own).
    doc: str | None = None
    label: str | None = None  # item columns: the question wording
    units: str = ""


@dataclass(frozen=True)
class FileSpec:
    """One export file: a name and its columns in order."""

    name: str
    columns: tuple[Column, ...]
    optional: bool = False  # written only when asked (notes)

    @property
    def header(self) -> list[str]:
        """Returns the column names in order."""
        return [c.name for c in self.columns]


def _codes(enum: type[StrEnum]) -> tuple[tuple[str, str], ...]:
    return tuple((str(m), str(m)) for m in enum)


def _codes_of(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


S, INT, N, B, C, T, L = (
    ColType.string,
    ColType.integer,
    ColType.number,
    ColType.boolean,
    ColType.category,
    ColType.timestamp,
    ColType.local_time,
)

PSEUDONYM = Column("pseudonym", S)
CHECKIN_ID = Column("checkin_id", INT)


def _col(name: str, kind: ColType, allowed: tuple[tuple[str, str], ...] = (), **kw: Any) -> Column:
    return Column(name, kind, allowed, **kw)


PARTICIPANTS_BASE: tuple[Column, ...] = (
    PSEUDONYM,
    _col("cohort", C),
    _col("medicine", C),
    _col("therapy_status", C, _codes(TherapyStatus)),
    _col("therapy_started", C),
    _col("country", C),
    _col("timezone", C),
    _col("locale", C),
    _col("enrolled_at", T),
    _col("onboarded_at", T),
    _col("status", C, _codes(Lifecycle)),
    _col("withdrawn_at", T),
    _col("reachable", B),
    _col("unreachable_since", T),
    _col("discreet", B),
    _col("consent_version", C),
    _col("date_shift_applied", B),
)
SITE_ID = _col("site_study_id", S)

CONSENTS = FileSpec(
    "consents",
    (PSEUDONYM, _col("version", C), _col("accepted_at", T), _col("withdrawn_at", T)),
)

CHECKINS = FileSpec(
    "checkins",
    (
        PSEUDONYM,
        CHECKIN_ID,
        _col("origin", C, _codes(CheckInOrigin)),
        _col("questionnaire_id", C),
        _col("questionnaire_version", C),
        _col("due_at", T),
        _col("due_local", L),
        _col("window_closes_at", T),
        _col("queued_at", T),
        _col("sent_at", T),
        _col("first_answer_at", T),
        _col("closed_at", T),
        _col("latency_seconds", N, units="seconds"),
        _col("status", C, _codes(CheckInStatus)),
        _col("missed_reason", C, _codes(MissedReason)),
        _col("reminder_count", INT),
        _col("reply_undelivered", B),
    ),
)

ANSWERS = FileSpec(
    "answers",
    (
        PSEUDONYM,
        CHECKIN_ID,
        _col("questionnaire_version", C),
        _col("item_code", C),
        _col("value", S),
        _col("value_label", S),
        _col("answered_at", T),
        _col("first_value", S),
        _col("first_answered_at", T),
        _col("corrections", INT),
    ),
)

ANSWER_HISTORY = FileSpec(
    "answer_history",
    (
        PSEUDONYM,
        CHECKIN_ID,
        _col("item_code", C),
        _col("old_value", S),
        _col("old_answered_at", T),
        _col("changed_at", T),
    ),
)

THERAPY_CHANGES = FileSpec(
    "therapy_changes",
    (
        PSEUDONYM,
        _col("kind", C),
        _col("new_medicine", C),
        _col("changed_on", T),
        _col("recorded_at", T),
    ),
)

BARRIERS = FileSpec(
    "barriers", (PSEUDONYM, _col("code", C), _col("source", C), _col("recorded_at", T))
)

ALERTS = FileSpec(
    "alerts",
    (
        PSEUDONYM,
        _col("alert_id", INT),
        _col("kind", C),
        _col("urgent", B),
        _col("status", C, _codes(AlertStatus)),
        CHECKIN_ID,
        _col("contact_requested", B),
        _col("raised_at", T),
        _col("delivered_at", T),
        _col("acknowledged_at", T),
        _col("closed_at", T),
        _col("closed_reason", C),
        _col("trigger_count", INT),
        _col("last_triggered_at", T),
        _col("due_by", T),
    ),
)

ALERT_ACTIONS = FileSpec(
    "alert_actions",
    (
        PSEUDONYM,
        _col("alert_id", INT),
        _col("action", C),
        _col("actor_role", C),
        _col("at", T),
    ),
)

OFFER_EVENTS = FileSpec(
    "offer_events",
    (PSEUDONYM, _col("offer_code", C), _col("event", C), CHECKIN_ID, _col("at", T)),
)

PAGE_VIEWS = FileSpec(
    "page_views",
    (PSEUDONYM, _col("page_id", C), _col("page_version", C), _col("viewed_at", T)),
)

BROADCAST_DELIVERIES = FileSpec(
    "broadcast_deliveries",
    (
        PSEUDONYM,
        _col("broadcast_id", INT),
        _col("state", C, _codes(OutboxState)),
        _col("uncertain", B),
        _col("attempts", INT),
        _col("queued_at", T),
        _col("not_before", T),
        _col("sent_at", T),
    ),
)

NOTES = FileSpec(
    "notes",
    (
        PSEUDONYM,
        _col("source", C, _codes_of(("checkin_note", "saved_question"))),
        CHECKIN_ID,
        _col("text", S),
        _col("written_at", T),
    ),
    optional=True,
)

ENROLMENT = FileSpec(
    "enrolment",
    (
        _col("cohort", C),
        _col("invites_created", INT),
        _col("invite_uses", INT),
        _col("started", INT),
        _col("invite_refused", INT),
        _col("consent_declined", INT),
        _col("consented", INT),
        _col("onboarded", INT),
        _col("withdrawn", INT),
        _col("deleted", INT),
    ),
)


# ---------------------------------------------------------------- questionnaire items


def text_item_codes(q: Questionnaire) -> frozenset[str]:
    """Returns the codes of free-text items (never in the answer files by default)."""
    return frozenset(i.code for i in q.items if i.type == "text")


def item_columns(item: Item) -> list[Column]:
    """Returns the wide-file columns of one item (REDCap style for a multi-select)."""
    label = item.text("en")
    if item.type == "scale":
        return [Column(item.code, INT, doc=f"item:{item.code}", label=label)]
    if item.type == "single":
        allowed = tuple((o.value, o.text("en")) for o in item.options)
        return [Column(item.code, C, allowed, doc=f"item:{item.code}", label=label)]
    if item.type == "multi":
        return [
            Column(
                f"{item.code}___{o.value}",
                INT,
                (("0", "Unchecked"), ("1", "Checked")),
                doc=f"item:{item.code}",
                label=f"{label} [{o.text('en')}]",
            )
            for o in item.options
        ]
    return []  # free text is never a wide column


def answers_wide(q: Questionnaire) -> FileSpec:
    """Returns the wide file: one row per check-in, one column per item (or option)."""
    head = (
        PSEUDONYM,
        CHECKIN_ID,
        _col("questionnaire_id", C),
        _col("questionnaire_version", C),
        _col("status", C, _codes(CheckInStatus)),
        _col("due_at", T),
    )
    items = tuple(c for item in q.items for c in item_columns(item))
    return FileSpec(
        f"answers_wide_{q.id}" if q.id != "daily_checkin" else "answers_wide", head + items
    )


def questionnaires() -> list[Questionnaire]:
    """Returns every questionnaire in content (their files name them)."""
    folder = content_dir() / "questionnaires"
    return [questionnaire(p.stem) for p in sorted(folder.glob("*.yaml"))]


def all_text_codes() -> frozenset[str]:
    """Returns the free-text item codes of every questionnaire."""
    out: set[str] = set()
    for q in questionnaires():
        out |= text_item_codes(q)
    return frozenset(out)


def participants_spec(*, include_site_ids: bool) -> FileSpec:
    """Returns the participants file, with the site's study id only when asked."""
    cols = list(PARTICIPANTS_BASE)
    if include_site_ids:
        cols.insert(2, SITE_ID)
    return FileSpec("participants", tuple(cols))


def file_specs(*, include_site_ids: bool, include_notes: bool) -> list[FileSpec]:
    """Returns every file an export with these options writes, in writing order."""
    specs = [
        participants_spec(include_site_ids=include_site_ids),
        ENROLMENT,
        CONSENTS,
        CHECKINS,
        ANSWERS,
        *[answers_wide(q) for q in questionnaires()],
        ANSWER_HISTORY,
        THERAPY_CHANGES,
        BARRIERS,
        ALERTS,
        ALERT_ACTIONS,
        OFFER_EVENTS,
        PAGE_VIEWS,
        BROADCAST_DELIVERIES,
    ]
    if include_notes:
        specs.append(NOTES)
    return specs


# ---------------------------------------------------------------- the data dictionary


@lru_cache(maxsize=1)
def _texts() -> dict[str, Any]:
    raw = load_yaml("export/dictionary.yaml")
    return dict(raw)


def file_about(name: str) -> str:
    """Returns what one file holds (for the codebook)."""
    files = _texts()["files"]
    key = "answers_wide" if name.startswith("answers_wide") else name
    return str(files[key]["about"])


def _describe(spec: FileSpec, column: Column) -> tuple[str, str]:
    """Returns (description, units) for a column; a missing description is an error."""
    texts = _texts()
    if column.doc and column.doc.startswith("item:"):
        return str(texts["item_column"]), column.units
    key = "answers_wide" if spec.name.startswith("answers_wide") else spec.name
    file_cols = texts["files"][key].get("columns", {})
    common = texts["common"]
    raw = file_cols.get(column.name) or common.get(column.name)
    if raw is None:
        raise KeyError(f"no dictionary text for {spec.name}.{column.name}")
    if isinstance(raw, dict):
        return str(raw["description"]), str(raw.get("units", column.units))
    return str(raw), column.units


DICTIONARY_HEADER = [
    "file",
    "column",
    "type",
    "pandas_dtype",
    "units",
    "time_zone",
    "allowed_values",
    "description",
]


def _time_zone(column: Column) -> str:
    if column.type == ColType.timestamp:
        return "UTC"
    if column.type == ColType.local_time:
        return "participant's zone (see participants.timezone)"
    return ""


def dictionary_rows(specs: Sequence[FileSpec]) -> list[list[str]]:
    """Returns one dictionary row per column of every file, in file and column order."""
    rows: list[list[str]] = []
    for spec in specs:
        for column in spec.columns:
            description, units = _describe(spec, column)
            if column.label:
                description = f"{description} Question: {column.label}"
            allowed = " | ".join(f"{v}={lbl}" for v, lbl in column.allowed)
            rows.append(
                [
                    spec.name,
                    column.name,
                    str(column.type),
                    PANDAS_DTYPE[column.type],
                    units,
                    _time_zone(column),
                    allowed,
                    description,
                ]
            )
    return rows


# REDCap's data dictionary header, column for column (Data Dictionary CSV upload).
REDCAP_HEADER = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]


def _branching(item: Item, q: Questionnaire) -> str:
    """Returns REDCap branching logic for `skip_if` (show unless an earlier value says skip)."""
    parts: list[str] = []
    for code, values in item.skip_if.items():
        parts.extend(f"[{code}] <> '{v}'" for v in values)
    return " and ".join(parts)


def redcap_rows(q: Questionnaire) -> list[list[str]]:
    """Returns REDCap data dictionary rows that build the same instrument."""
    form = q.id
    rows: list[list[str]] = [
        [
            "record_id",
            form,
            "",
            "text",
            "Pseudonym",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
    ]
    for item in q.items:
        choices, field_type, validation, vmin, vmax, note = "", "", "", "", "", ""
        if item.type == "single":
            field_type = "radio"
            choices = " | ".join(f"{o.value}, {o.text('en')}" for o in item.options)
        elif item.type == "multi":
            field_type = "checkbox"
            choices = " | ".join(f"{o.value}, {o.text('en')}" for o in item.options)
        elif item.type == "scale":
            field_type = "text"
            validation, vmin, vmax = "integer", str(item.scale_min), str(item.scale_max)
            note = item.anchors.get("en", "")
        else:
            field_type = "notes"
        rows.append(
            [
                item.code,
                form,
                "",
                field_type,
                item.text("en"),
                choices,
                note,
                validation,
                vmin,
                vmax,
                "y" if item.type == "text" else "",
                _branching(item, q),
                "" if item.optional else "y",
                "",
                "",
                "",
                "",
                f"questionnaire {q.id} version {q.version}",
            ]
        )
    return rows
