"""Runs one research export: the data files, the dictionaries, the codebook and the manifest.

`run_export` is synchronous (a CLI command, or a thread under the bot) and reads the
database on its own connection, streaming every large file. The caller records the audit
event (`export_audit_detail`) in its own session, so the CLI and `/export` audit alike.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from bot.clock import now
from bot.config import Settings
from bot.content import consent_text, content_dir, load_yaml
from bot.db import is_sqlite, sync_url
from bot.export.rows import Filters, Source, key_fingerprint
from bot.export.schema import (
    ANSWERS,
    DICTIONARY_HEADER,
    ENROLMENT,
    REDCAP_HEADER,
    FileSpec,
    dictionary_rows,
    file_about,
    file_specs,
    questionnaires,
    redcap_rows,
)
from bot.export.writers import (
    EXTENSIONS,
    WRITERS,
    parquet_available,
    sha256_of,
    write_csv,
    write_csv_chunks,
)
from bot.models import Cohort, Role, StaffRole
from bot.roles import seeded_roles, staff_code

# The audit log's action for an export (CLI and /export alike).
EXPORT_ACTION = "export"

MANIFEST = "manifest.json"
DICTIONARY = "data_dictionary.csv"
README = "README.md"
MANIFEST_VERSION = 1
PLACEHOLDER_KEYS = frozenset({"change-me", "changeme", "changeit", "secret", "placeholder"})


class ExportRefused(Exception):
    """The export may not run; `key` names the content message that says why."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class ExportOptions:
    """What the person asked for on the command line (or in Telegram)."""

    out: Path
    format: str = "csv"
    filters: Filters = field(default_factory=Filters)
    zip: bool = False
    shift_dates: bool = False
    include_notes: bool = False
    include_site_ids: bool = False


@dataclass
class ExportResult:
    """What was written: where, row counts per file, and the manifest's own hash."""

    path: Path
    counts: dict[str, int]
    manifest_sha256: str
    files: list[str]


def usable_key(settings: Settings) -> str:
    """Returns the pseudonym key, or refuses when it is missing or a placeholder."""
    key = (settings.pseudonym_key or "").strip()
    if not key or key.lower() in PLACEHOLDER_KEYS or key.startswith("<"):
        raise ExportRefused("research.key_missing")
    return key


def git_commit() -> str | None:
    """Returns the commit the code runs from, when known (GIT_COMMIT, else git itself)."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def software_version() -> str:
    """Returns the installed package version."""
    try:
        return metadata.version("adherence-bot")
    except metadata.PackageNotFoundError:
        return "unknown"


def _content_versions() -> dict[str, Any]:
    from bot.education import pages

    return {
        "consent": consent_text().version,
        "pages": {pid: page.version for pid, page in sorted(pages().items())},
    }


def _staff_roles(conn: sa.Connection, settings: Settings, key: str) -> dict[str, str]:
    """Maps each staff actor ("staff:<code>") to her roles, so actions carry a role only."""
    ids: set[int] = set(settings.admin_ids) | set(settings.coordinator_ids)
    ids |= set(settings.researcher_ids)
    granted: dict[int, set[Role]] = {}
    query = sa.select(col(StaffRole.telegram_user_id), col(StaffRole.role))
    for uid, role in conn.execute(query):
        granted.setdefault(int(uid), set()).add(Role(role))
        ids.add(int(uid))
    out: dict[str, str] = {}
    for uid in ids:
        roles = set(seeded_roles(settings, uid)) | granted.get(uid, set())
        out["staff:" + staff_code(uid, key)] = "+".join(sorted(str(r) for r in roles))
    return out


def _engine(settings: Settings) -> sa.Engine:
    """Returns a synchronous engine whose transactions see one snapshot of the database."""
    url = sync_url(settings.database_url)
    if not is_sqlite(settings.database_url):
        return sa.create_engine(url, isolation_level="REPEATABLE READ")
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    # pysqlite would only start a transaction before a write: every read of the export
    # must come from one snapshot (WAL), so the transaction begins explicitly.
    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _prepare_folder(options: ExportOptions) -> Path:
    if options.zip:
        return Path(tempfile.mkdtemp(prefix="export-"))
    folder = options.out
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportRefused("research.out_not_empty", path=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _require_cohort(settings: Settings, code: str) -> None:
    """Refuses a cohort filter that names no cohort (a typo would export nothing)."""
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.select(col(Cohort.id)).where(col(Cohort.code) == code))
            if found.first() is None:
                raise ExportRefused("research.unknown_cohort", cohort=code)
    finally:
        engine.dispose()


def zip_path(out: Path) -> Path:
    """Returns where --zip writes (PATH, with .zip added when missing)."""
    return out if out.suffix == ".zip" else out.with_name(out.name + ".zip")


def run_export(settings: Settings, options: ExportOptions) -> ExportResult:
    """Writes every export file, the dictionaries, the codebook and the manifest."""
    key = usable_key(settings)
    if options.format not in WRITERS:
        raise ExportRefused("research.bad_format", format=options.format)
    if options.format == "parquet" and not parquet_available():
        raise ExportRefused("research.parquet_missing")
    if options.zip and zip_path(options.out).exists():
        raise ExportRefused("research.out_not_empty", path=str(zip_path(options.out)))
    if options.filters.cohort is not None:
        _require_cohort(settings, options.filters.cohort)
    folder = _prepare_folder(options)
    try:
        result = _write_all(settings, options, key, folder)
    except BaseException:
        if options.zip:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if not options.zip:
        return result
    target = zip_path(options.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(p.name for p in folder.iterdir()):
            archive.write(folder / name, arcname=name)
    shutil.rmtree(folder, ignore_errors=True)
    result.path = target
    return result


def _write_all(settings: Settings, options: ExportOptions, key: str, folder: Path) -> ExportResult:
    specs = file_specs(
        include_site_ids=options.include_site_ids, include_notes=options.include_notes
    )
    by_name = {s.name: s for s in specs}
    ext = EXTENSIONS[options.format]
    write = WRITERS[options.format]
    counts: dict[str, int] = {}
    files: dict[str, str] = {}
    engine = _engine(settings)
    try:
        with engine.connect() as conn, conn.begin():
            source = Source(
                conn=conn, key=key, filters=options.filters, shift_dates=options.shift_dates
            )
            source.load_people()
            if options.format == "csv" and source.raw_times:
                write = functools.partial(write_csv, times_are_text=True)
            roles = _staff_roles(conn, settings, key)
            producers: list[tuple[FileSpec, Callable[[], Iterator[tuple[Any, ...]]]]] = [
                (by_name["consents"], source.consents),
                (by_name["checkins"], source.checkins),
                (by_name["answers"], source.answers),
            ]
            for q in questionnaires():
                spec = next(
                    s
                    for s in specs
                    if s.name.startswith("answers_wide")
                    and (
                        s.name == "answers_wide"
                        if q.id == "daily_checkin"
                        else s.name.endswith(q.id)
                    )
                )
                producers.append((spec, lambda q=q: source.answers_wide(q)))  # type: ignore[misc]
            producers += [
                (by_name["answer_history"], source.answer_history),
                (by_name["therapy_changes"], source.therapy_changes),
                (by_name["barriers"], source.barriers),
                (by_name["alerts"], source.alerts),
                (by_name["alert_actions"], lambda: source.alert_actions(roles)),
                (by_name["offer_events"], source.offer_events),
                (by_name["page_views"], source.page_views),
                (by_name["broadcast_deliveries"], source.broadcast_deliveries),
            ]
            if options.include_notes:
                producers.append((by_name["notes"], source.notes))
            for spec, produce in producers:
                name = f"{spec.name}.{ext}"
                chunks = None
                if spec.name == ANSWERS.name and options.format == "csv":
                    chunks = source.answers_csv_chunks()  # SQLite: lines made in SQL
                if chunks is not None:
                    counts[spec.name] = write_csv_chunks(folder / name, spec, chunks)
                else:
                    counts[spec.name] = write(folder / name, spec, produce())
                files[spec.name] = name
            # Last: the participants file lists who appeared in the files above.
            spec = by_name["participants"]
            name = f"{spec.name}.{ext}"
            counts[spec.name] = write(
                folder / name,
                spec,
                source.participants(include_site_ids=options.include_site_ids),
            )
            files[spec.name] = name
            from bot.enrolment_events import enrolment_rows

            name = f"{ENROLMENT.name}.{ext}"
            counts[ENROLMENT.name] = write(folder / name, ENROLMENT, enrolment_rows(conn, source))
            files[ENROLMENT.name] = name
    finally:
        engine.dispose()

    ordered = [s for s in specs if s.name in files]
    _write_dictionary(folder / DICTIONARY, ordered)
    redcap_names = []
    for q in questionnaires():
        redcap = f"redcap_dictionary_{q.id}.csv"
        _write_csv(folder / redcap, REDCAP_HEADER, redcap_rows(q))
        redcap_names.append(redcap)
    _write_readme(folder / README, options, ordered, files)
    manifest = _manifest(options, key, folder, files, counts, [DICTIONARY, *redcap_names, README])
    (folder / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return ExportResult(
        path=folder,
        counts=counts,
        manifest_sha256=sha256_of(folder / MANIFEST),
        files=sorted(p.name for p in folder.iterdir()),
    )


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_dictionary(path: Path, specs: list[FileSpec]) -> None:
    _write_csv(path, DICTIONARY_HEADER, dictionary_rows(specs))


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _manifest(
    options: ExportOptions,
    key: str,
    folder: Path,
    files: dict[str, str],
    counts: dict[str, int],
    extra: list[str],
) -> dict[str, Any]:
    hashed = {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
        for name in [*files.values(), *extra]
    }
    for table, name in files.items():
        hashed[name]["rows"] = counts[table]
    return {
        "manifest_version": MANIFEST_VERSION,
        "software": {"name": "adherence-bot", "version": software_version()},
        "git_commit": git_commit(),
        "created_at": _iso(now()),
        "format": options.format,
        "filters": {
            "since": _iso(options.filters.since),
            "until": _iso(options.filters.until),
            "cohort": options.filters.cohort,
            "range_applies_to": "check-in due time (sent time for on-demand); events: own time",
        },
        "options": {
            "shift_dates": options.shift_dates,
            "include_notes": options.include_notes,
            "include_site_ids": options.include_site_ids,
        },
        "notes_included": options.include_notes,
        "questionnaires": {q.id: q.version for q in questionnaires()},
        "content": _content_versions(),
        "pseudonym": {
            "method": "HMAC-SHA-256, research-export purpose",
            "key_fingerprint": key_fingerprint(key),
        },
        "files": hashed,
    }


def _write_readme(
    path: Path, options: ExportOptions, specs: list[FileSpec], files: dict[str, str]
) -> None:
    template = (content_dir() / "export" / "codebook.md").read_text(encoding="utf-8")
    texts = load_yaml("export/dictionary.yaml")["codebook"]
    listing = "\n".join(f"- `{files[s.name]}`: {file_about(s.name)}" for s in specs)
    shift = texts["shift_on"] if options.shift_dates else texts["shift_off"]
    notes = texts["notes_on"] if options.include_notes else texts["notes_off"]
    path.write_text(
        template.replace("{files}", listing)
        .replace("{dates}", str(shift).strip())
        .replace("{notes}", str(notes).strip())
        .replace("{format}", options.format),
        encoding="utf-8",
    )


def export_audit_detail(options: ExportOptions, result: ExportResult) -> str:
    """Returns the audit detail of one export: filters, options, row counts, manifest hash."""
    f = options.filters
    parts = [
        f"format={options.format}",
        f"since={_iso(f.since) or '-'}",
        f"until={_iso(f.until) or '-'}",
        f"cohort={f.cohort or '-'}",
        f"shift={int(options.shift_dates)}",
        f"notes={int(options.include_notes)}",
        f"site_ids={int(options.include_site_ids)}",
        "rows=" + ",".join(f"{k}:{v}" for k, v in sorted(result.counts.items())),
        f"manifest={result.manifest_sha256[:16]}",
    ]
    return " ".join(parts)[:500]


# ---------------------------------------------------------------- verify


@dataclass
class Verification:
    """What `verify-export` found: files that match, differ or are missing."""

    ok: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Tells whether every file matches its hash and nothing is missing or added."""
        return not (self.bad or self.missing or self.extra)


def verify_export(path: Path) -> Verification:
    """Checks every file named in the manifest against its SHA-256 (a folder or a zip)."""
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
            return verify_export(Path(tmp))
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ExportRefused("research.no_manifest", path=str(path))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    found = Verification()
    listed = manifest.get("files", {})
    for name, info in sorted(listed.items()):
        target = path / name
        if not target.is_file():
            found.missing.append(name)
        elif sha256_of(target) != info.get("sha256"):
            found.bad.append(name)
        else:
            found.ok.append(name)
    present = {p.name for p in path.iterdir() if p.is_file()} - {MANIFEST}
    found.extra = sorted(present - set(listed))
    return found
