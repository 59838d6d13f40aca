"""Education pages: Markdown with front matter under `content/pages/<locale>/`.

Loads and checks the pages (citations, sources, links, review status), turns them into short
Telegram HTML parts with Next / Back buttons, and records which page version she opened.
The wording lives in the pages and in `content/messages/<locale>/learn.yaml`, never here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.content import DEFAULT_LOCALE, ContentError, Messages, messages, parse_yaml
from bot.models import PageView, Participant
from bot.outbox import Buttons
from bot.paths import REPO_DIR, content_dir

CALLBACK_PREFIX = "edu:"
MENU_CALLBACK = "edu:menu"
# Handled by the doctor-first flow; the page on stopping always ends with this button.
DOCTOR_FIRST_CALLBACK = "df:start"
MAX_CALLBACK_BYTES = 64
MAX_MESSAGE_CHARS = 4096
# A phone screen holds about this much; parts aim for it and only one long block exceeds it.
TARGET_PART_CHARS = 700
# A section (heading and its paragraphs) up to this long stays on one screen.
SECTION_MAX_CHARS = 950
# Sources join the last part unless that makes it much longer than a screen.
MAX_LAST_PART_CHARS = 1200

REQUIRED_FIELDS = (
    "id",
    "title",
    "locale",
    "audience",
    "version",
    "related",
    "sources",
    "review_status",
)
REVIEW_STATUSES = ("draft", "reviewed")
PAGE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
DOI_RE = re.compile(r"10\.\d{4,9}/\S+")
PMID_RE = re.compile(r"PMID:?\s*(\d{5,9})", re.IGNORECASE)
# A numbered fact of the fact sheet: "117. **A hot, swollen joint ...".
FACT_RE = re.compile(r"^(\d{1,3})\.\s+\*\*", re.MULTILINE)
BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
HEADING_RE = re.compile(r"^\s*#{1,6}\s+")


@dataclass(frozen=True)
class Source:
    """One cited work: its marker number, a short citation and a DOI, a PMID or a fact number.

    `fact` is the number of a fact in ../shared/evidence.md, for a source that the fact sheet
    names without a DOI or PMID (a guideline summary, a consumer health page).
    """

    key: int
    cite: str
    doi: str | None = None
    pmid: str | None = None
    fact: int | None = None

    def identifier(self) -> str:
        """Returns 'doi:…' or 'PMID …' for the sources list ('' for a fact-sheet source)."""
        if self.doi:
            return f"doi:{self.doi}"
        return f"PMID {self.pmid}" if self.pmid else ""


@dataclass(frozen=True)
class Page:
    """One education page as written in `content/pages/<locale>/<id>.md`."""

    id: str
    title: str
    locale: str
    audience: str
    version: str
    related: tuple[str, ...]
    sources: tuple[Source, ...]
    review_status: str
    body: str
    path: Path
    reviewed_by: str | None = None
    reviewed_on: str | None = None
    # A restricted page (what is known about stopping) is reached only from /learn or the
    # doctor-first path: never offered after a check-in answer, never linked from other pages.
    restricted: bool = False
    order: int = 100

    @property
    def is_draft(self) -> bool:
        """Tells whether the page still waits for a named clinician's sign-off."""
        return not (self.review_status == "reviewed" and self.reviewed_by and self.reviewed_on)

    def source(self, key: int) -> Source | None:
        """Returns the source with this marker number, if listed."""
        return next((s for s in self.sources if s.key == key), None)


# ---------------------------------------------------------------- loading


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        raise ContentError(f"{path}: a page must start with '---' front matter")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ContentError(f"{path}: front matter is not closed with '---'")
    try:
        meta = parse_yaml(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: front matter is not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise ContentError(f"{path}: front matter must be a mapping")
    return meta, text[end + 5 :].strip("\n")


def _parse_source(raw: Any, path: Path) -> Source:
    if not isinstance(raw, dict) or "key" not in raw or "cite" not in raw:
        raise ContentError(f"{path}: every source needs 'key' and 'cite'")
    doi = str(raw["doi"]).strip() if raw.get("doi") else None
    pmid = str(raw["pmid"]).strip() if raw.get("pmid") else None
    fact = raw.get("fact")
    if fact is not None and (isinstance(fact, bool) or not isinstance(fact, int) or fact < 1):
        raise ContentError(f"{path}: source [{raw['key']}] 'fact' must be a fact number")
    if not doi and not pmid and fact is None:
        raise ContentError(f"{path}: source [{raw['key']}] needs a 'doi', a 'pmid' or a 'fact'")
    return Source(
        key=int(raw["key"]), cite=str(raw["cite"]).strip(), doi=doi, pmid=pmid, fact=fact
    )


def _optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def parse_page(text: str, path: Path) -> Page:
    """Parses one page file; raises ContentError naming the file when a field is missing."""
    meta, body = _split_front_matter(text, path)
    missing = [name for name in REQUIRED_FIELDS if name not in meta]
    if missing:
        raise ContentError(f"{path}: front matter lacks {', '.join(missing)}")
    if not body.strip():
        raise ContentError(f"{path}: the page has no text")
    return Page(
        id=str(meta["id"]),
        title=str(meta["title"]),
        locale=str(meta["locale"]),
        audience=str(meta["audience"]),
        version=str(meta["version"]),
        related=tuple(str(r) for r in meta["related"] or ()),
        sources=tuple(_parse_source(s, path) for s in meta["sources"] or ()),
        review_status=str(meta["review_status"]),
        reviewed_by=_optional_text(meta.get("reviewed_by")),
        reviewed_on=_optional_text(meta.get("reviewed_on")),
        restricted=bool(meta.get("restricted", False)),
        order=int(meta.get("order", 100)),
        body=body,
        path=path,
    )


def pages_dir(locale: str = DEFAULT_LOCALE, root: Path | None = None) -> Path:
    """Returns the page folder for a locale (English when the locale has none)."""
    base = (root or content_dir()) / "pages"
    folder = base / locale
    return folder if folder.is_dir() else base / DEFAULT_LOCALE


def load_pages(locale: str = DEFAULT_LOCALE, root: Path | None = None) -> dict[str, Page]:
    """Loads every page of a locale, in menu order; a duplicate id is an error."""
    found: dict[str, Page] = {}
    for path in sorted(pages_dir(locale, root).glob("*.md")):
        page = parse_page(path.read_text(encoding="utf-8"), path)
        if page.id in found:
            raise ContentError(f"page id {page.id!r} used by {found[page.id].path} and {path}")
        found[page.id] = page
    if not found:
        raise ContentError(f"no education pages under {pages_dir(locale, root)}")
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


@lru_cache(maxsize=8)
def pages(locale: str = DEFAULT_LOCALE) -> dict[str, Page]:
    """Returns the cached pages of a locale."""
    return load_pages(locale)


def page(page_id: str, locale: str = DEFAULT_LOCALE) -> Page | None:
    """Returns one page by id, if it exists."""
    return pages(locale).get(page_id)


def menu_pages(locale: str = DEFAULT_LOCALE) -> list[Page]:
    """Returns every page for the /learn menu, restricted ones included."""
    return list(pages(locale).values())


def pages_offerable_after_checkin(locale: str = DEFAULT_LOCALE) -> list[Page]:
    """Returns the pages a check-in may offer: never the restricted page on stopping."""
    return [p for p in pages(locale).values() if not p.restricted]


def any_draft(locale: str = DEFAULT_LOCALE) -> bool:
    """Tells whether any page still waits for clinical review."""
    return any(p.is_draft for p in pages(locale).values())


# ---------------------------------------------------------------- checks


def cited_keys(body: str) -> set[int]:
    """Returns every source number cited inline as [n] or [n, m]."""
    keys: set[int] = set()
    for match in MARKER_RE.finditer(body):
        keys.update(int(k) for k in match.group(1).split(","))
    return keys


def page_problems(page: Page) -> list[str]:
    """Returns what is wrong with one page on its own (fields, ids, citations)."""
    problems: list[str] = []
    where = page.path.name
    if not PAGE_ID_RE.match(page.id) or page.id == "menu":
        problems.append(f"{where}: id {page.id!r} must be short lowercase-with-dashes")
    if page.path.stem != page.id:
        problems.append(f"{where}: file name should be {page.id}.md")
    if page.audience != "patient":
        problems.append(f"{where}: audience must be 'patient'")
    if page.review_status not in REVIEW_STATUSES:
        problems.append(f"{where}: review_status must be one of {REVIEW_STATUSES}")
    if page.review_status == "reviewed" and not (page.reviewed_by and page.reviewed_on):
        problems.append(f"{where}: a reviewed page needs reviewed_by and reviewed_on")
    keys = [s.key for s in page.sources]
    if len(keys) != len(set(keys)):
        problems.append(f"{where}: a source number is listed twice")
    cited = cited_keys(page.body)
    for key in sorted(cited - set(keys)):
        problems.append(f"{where}: marker [{key}] has no listed source")
    for key in sorted(set(keys) - cited):
        problems.append(f"{where}: source [{key}] is never cited")
    longest = len(page_callback(page.id, 99).encode())
    if longest > MAX_CALLBACK_BYTES:
        problems.append(f"{where}: id too long for callback data")
    return problems


def link_problems(all_pages: Mapping[str, Page]) -> list[str]:
    """Returns related links that point nowhere, to the page itself, or to a restricted page."""
    problems: list[str] = []
    for p in all_pages.values():
        for target in p.related:
            other = all_pages.get(target)
            if other is None:
                problems.append(f"{p.path.name}: related page {target!r} does not exist")
            elif other.id == p.id:
                problems.append(f"{p.path.name}: a page cannot relate to itself")
            elif other.restricted:
                problems.append(f"{p.path.name}: links to restricted page {target!r}")
    return problems


def _clean_doi(raw: str) -> str:
    doi = raw.rstrip(".,;:*")
    while doi.endswith(")") and doi.count("(") < doi.count(")"):
        doi = doi[:-1].rstrip(".,;:*")
    return doi.lower()


def evidence_ids(text: str) -> set[str]:
    """Returns every DOI ('doi:…', lowercase), PMID ('pmid:…') and numbered fact ('fact:…')."""
    ids = {f"doi:{_clean_doi(m.group(0))}" for m in DOI_RE.finditer(text)}
    ids.update(f"pmid:{m.group(1)}" for m in PMID_RE.finditer(text))
    ids.update(f"fact:{m.group(1)}" for m in FACT_RE.finditer(text))
    return ids


def source_ids(all_pages: Iterable[Page]) -> set[str]:
    """Returns the DOIs, PMIDs and fact numbers the pages cite, in the form `evidence_ids` uses."""
    ids: set[str] = set()
    for p in all_pages:
        for s in p.sources:
            if s.doi:
                ids.add(f"doi:{s.doi.lower()}")
            if s.pmid:
                ids.add(f"pmid:{s.pmid}")
            if s.fact is not None:
                ids.add(f"fact:{s.fact}")
    return ids


def fact_sheet_path() -> Path:
    """Returns where the shared medical fact sheet lives, beside the repository."""
    return REPO_DIR.parent / "shared" / "evidence.md"


def evidence_index_path() -> Path:
    """Returns the committed copy of the identifiers the pages may cite (for CI clones)."""
    return content_dir() / "evidence_index.txt"


def read_evidence_index(path: Path | None = None) -> set[str]:
    """Reads the committed identifier list: one 'doi:…', 'pmid:…' or 'fact:…' a line."""
    text = (path or evidence_index_path()).read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return {line.lower() for line in lines if line}


# ---------------------------------------------------------------- plain text (readability)


def _plain_line(line: str) -> str:
    line = HEADING_RE.sub("", BULLET_RE.sub("", line))
    line = MARKER_RE.sub("", line).replace("**", "")
    line = re.sub(r"\s+([.,;:!?])", r"\1", line).strip()
    if not line:
        return ""
    # A heading or a bullet is read as one unit, so it counts as one sentence.
    if line.endswith(":"):
        line = line[:-1] + "."
    elif line[-1] not in ".!?":
        line += "."
    return line


def plain_paragraphs(body: str) -> list[str]:
    """Returns the body as plain-text paragraphs: no markup, no citation markers."""
    out: list[str] = []
    heading = ""
    for block in re.split(r"\n\s*\n", body):
        text = " ".join(filter(None, (_plain_line(line) for line in block.splitlines())))
        if not text:
            continue
        if _is_heading_only(block):
            heading = f"{heading} {text}".strip()  # a heading is read with what follows it
            continue
        out.append(f"{heading} {text}".strip())
        heading = ""
    if heading:
        out.append(heading)
    return out


def plain_text(body: str) -> str:
    """Returns the whole body as plain text for a reading-grade check."""
    return "\n\n".join(plain_paragraphs(body))


# ---------------------------------------------------------------- rendering


def _inline_html(text: str) -> str:
    return BOLD_RE.sub(r"<b>\1</b>", html.escape(text, quote=False))


def _block_html(block: str) -> str:
    lines: list[str] = []
    for raw in block.splitlines():
        line = raw.strip()
        if not line:
            continue
        if HEADING_RE.match(line):
            lines.append(f"<b>{html.escape(HEADING_RE.sub('', line), quote=False)}</b>")
        elif BULLET_RE.match(line):
            lines.append("• " + _inline_html(BULLET_RE.sub("", line)))
        elif lines and not lines[-1].startswith(("•", "<b>")):
            lines[-1] += " " + _inline_html(line)  # a wrapped line continues its paragraph
        else:
            lines.append(_inline_html(line))
    return "\n".join(lines)


def _is_heading_only(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    return len(lines) == 1 and (
        bool(HEADING_RE.match(lines[0])) or bool(re.fullmatch(r"\*\*[^*]+\*\*", lines[0].strip()))
    )


def _sections(body: str) -> list[list[str]]:
    """Splits the body into sections (a heading and its paragraphs) of rendered blocks."""
    sections: list[list[str]] = [[]]
    carry = ""
    for block in (b for b in re.split(r"\n\s*\n", body.strip()) if b.strip()):
        if _is_heading_only(block):
            if sections[-1]:
                sections.append([])
            carry = f"{carry}\n{block}" if carry else block
            continue
        sections[-1].append(_block_html(f"{carry}\n{block}" if carry else block))
        carry = ""
    if carry:
        sections[-1].append(_block_html(carry))
    return [s for s in sections if s]


def _chunks(body: str) -> list[str]:
    """Packs the body into phone-sized chunks, keeping a section whole when it fits a screen."""
    units: list[str] = []
    for section in _sections(body):
        whole = "\n\n".join(section)
        if len(whole) <= SECTION_MAX_CHARS:
            units.append(whole)
        else:
            units.extend(section)
    chunks: list[str] = []
    current = ""
    for unit in units:
        combined = f"{current}\n\n{unit}" if current else unit
        # A short part takes the next unit even past the target, so no screen is nearly empty.
        fits = len(combined) <= TARGET_PART_CHARS or (
            len(current) < TARGET_PART_CHARS // 2 and len(combined) <= SECTION_MAX_CHARS
        )
        if current and not fits:
            chunks.append(current)
            current = unit
        else:
            current = combined
    if current:
        chunks.append(current)
    return chunks


def _sources_html(page: Page, texts: Messages) -> str:
    lines = [f"<b>{html.escape(texts.get('learn.sources_heading'), quote=False)}</b>"]
    for s in sorted(page.sources, key=lambda s: s.key):
        line = f"[{s.key}] {s.cite}. {s.identifier()}".rstrip()
        lines.append(html.escape(line, quote=False))
    return "\n".join(lines)


def render_parts(page: Page, texts: Messages | None = None) -> list[str]:
    """Renders a page as Telegram HTML parts; the sources (and review note) end the last part."""
    texts = texts or messages(page.locale)
    chunks = _chunks(page.body)
    tail = _sources_html(page, texts)
    if page.is_draft:
        note = html.escape(texts.get("learn.page_draft_notice"), quote=False)
        tail = f"<i>{note}</i>\n\n{tail}"
    if len(chunks[-1]) + 2 + len(tail) <= MAX_LAST_PART_CHARS:
        chunks[-1] = f"{chunks[-1]}\n\n{tail}"
    else:
        chunks.append(tail)
    total = len(chunks)
    title = html.escape(page.title, quote=False)
    parts: list[str] = []
    for n, chunk in enumerate(chunks, start=1):
        header = f"<b>{title}</b>"
        if total > 1:
            label = texts.get("learn.part_label", n=n, total=total)
            header += " " + html.escape(label, quote=False)
        part = f"{header}\n\n{chunk}"
        if len(part) > MAX_MESSAGE_CHARS:
            raise ContentError(f"{page.path.name}: part {n} is longer than Telegram allows")
        parts.append(part)
    return parts


def page_callback(page_id: str, part: int = 1) -> str:
    """Returns the button data that opens a page at a part ('edu:<id>:<n>')."""
    return f"{CALLBACK_PREFIX}{page_id}:{part}"


@dataclass(frozen=True)
class PageRequest:
    """A parsed 'edu:' button: the menu (page_id None) or one part of one page."""

    page_id: str | None
    part: int = 1


def parse_callback(data: str) -> PageRequest | None:
    """Parses 'edu:menu' or 'edu:<id>:<n>'; returns None for anything else."""
    if data == MENU_CALLBACK:
        return PageRequest(page_id=None)
    match = re.fullmatch(r"edu:([a-z0-9-]{1,40}):([0-9]{1,3})", data)
    if not match:
        return None
    return PageRequest(page_id=match.group(1), part=int(match.group(2)))


def part_buttons(page: Page, part: int, total: int, texts: Messages) -> Buttons:
    """Returns Back / Next, then (on the last part) related pages and the way back to topics."""
    rows: Buttons = []
    nav: list[tuple[str, str]] = []
    if part > 1:
        nav.append((texts.get("learn.back"), page_callback(page.id, part - 1)))
    if part < total:
        nav.append((texts.get("learn.next"), page_callback(page.id, part + 1)))
    if nav:
        rows.append(nav)
    if part == total:
        if page.restricted:
            rows.append([(texts.get("learn.talk_it_through"), DOCTOR_FIRST_CALLBACK)])
        others = pages(page.locale)
        for target in page.related:
            other = others.get(target)
            if other is not None and not other.restricted:
                rows.append([(other.title, page_callback(other.id))])
    rows.append([(texts.get("learn.topics"), MENU_CALLBACK)])
    return rows


@dataclass(frozen=True)
class View:
    """What to show: HTML text and its buttons."""

    text: str
    buttons: Buttons


def page_view(page: Page, part: int) -> View:
    """Returns one part of a page (clamped to the parts that exist) with its buttons."""
    texts = messages(page.locale)
    parts = render_parts(page, texts)
    part = min(max(part, 1), len(parts))
    return View(text=parts[part - 1], buttons=part_buttons(page, part, len(parts), texts))


def menu_view(locale: str = DEFAULT_LOCALE, *, lead_key: str = "learn.menu") -> View:
    """Returns the topic menu; while any page is a draft it says so in one plain line."""
    texts = messages(locale)
    text = html.escape(texts.get(lead_key), quote=False)
    if any_draft(locale):
        text += "\n\n<i>" + html.escape(texts.get("learn.draft_notice"), quote=False) + "</i>"
    buttons: Buttons = [[(p.title, page_callback(p.id))] for p in menu_pages(locale)]
    return View(text=text, buttons=buttons)


# ---------------------------------------------------------------- views


def turned_within(pressed_buttons: Iterable[tuple[str, str]], page_id: str, locale: str) -> bool:
    """Tells whether a press came from Back / Next of this same page (so it is no new view)."""
    texts = messages(locale)
    nav_labels = {texts.get("learn.back"), texts.get("learn.next")}
    prefix = f"{CALLBACK_PREFIX}{page_id}:"
    return any(label in nav_labels and data.startswith(prefix) for label, data in pressed_buttons)


async def view_for_press(
    *,
    session: AsyncSession,
    participant: Participant | None,
    data: str,
    pressed_buttons: Iterable[tuple[str, str]] = (),
) -> View:
    """Returns what an 'edu:' press shows, recording a view when she opens a page."""
    locale = participant.locale if participant else DEFAULT_LOCALE
    request = parse_callback(data)
    if request is not None and request.page_id is None:
        return menu_view(locale)
    target = page(request.page_id, locale) if request and request.page_id else None
    if request is None or target is None:
        return menu_view(locale, lead_key="learn.not_found")
    if request.part == 1 and not turned_within(pressed_buttons, target.id, locale):
        await record_page_view(session=session, participant=participant, page=target)
    return page_view(target, request.part)


async def record_page_view(
    *, session: AsyncSession, participant: Participant | None, page: Page
) -> PageView | None:
    """Stores that she opened a page version; nothing is stored before she has consented."""
    if participant is None or participant.id is None or not participant.consent_version:
        return None
    if participant.has_left:
        return None
    view = PageView(participant_id=participant.id, page_id=page.id, page_version=page.version)
    session.add(view)
    await session.flush()
    return view
