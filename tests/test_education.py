"""Education pages: front matter, citations, links, evidence, safety wording and rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import education
from bot.content import ContentError, messages
from bot.education import Page

PAGES = education.load_pages("en")

# One page per topic the issue asks for (ids are what other flows link to).
REQUIRED_TOPICS = {
    "joint-pain-basics",  # what AI joint pain is: drugs, symptoms, joints, when it starts
    "how-common",
    "why-it-happens",
    "what-may-help",  # exercise, acupuncture, duloxetine, pain relievers, yoga, tai chi
    "what-did-not-help",  # omega-3, vitamin D, testosterone
    "staying-on-therapy",
    "talking-with-doctor",
    "when-to-call",  # red flags
    "bone-health",
    "about-stopping",  # restricted
}

GOOD_PAGE = """---
id: sample
title: A <sample> & "test"
locale: en
audience: patient
version: "1.0"
related: []
review_status: draft
sources:
  - key: 1
    cite: "Someone A, Journal 2020"
    doi: "10.1000/xyz"
---
Plain **bold** text with <tags> & ampersands [1].
"""


def write_page(folder: Path, name: str, text: str) -> Path:
    """Writes one page file into a folder and returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sample(text: str = GOOD_PAGE, name: str = "sample.md") -> Page:
    """Parses a page text as if it were a file called `name`."""
    return education.parse_page(text, Path(name))


# ---------------------------------------------------------------- the real pages


def test_every_required_topic_has_a_page() -> None:
    assert set(PAGES) >= REQUIRED_TOPICS


def test_every_page_has_complete_front_matter() -> None:
    for page in PAGES.values():
        assert page.title and page.version
        assert page.locale == "en"
        assert page.audience == "patient"
        assert page.sources, page.id
        assert page.review_status in education.REVIEW_STATUSES


def test_page_ids_are_unique_well_formed_and_match_file_names() -> None:
    files = sorted(education.pages_dir("en").glob("*.md"))
    assert len(files) == len(PAGES)
    problems = [p for page in PAGES.values() for p in education.page_problems(page)]
    assert problems == []


def test_every_citation_marker_resolves_and_every_source_is_cited() -> None:
    for page in PAGES.values():
        cited = education.cited_keys(page.body)
        assert cited == {s.key for s in page.sources}, page.id


def test_related_pages_exist_and_never_lead_to_the_restricted_page() -> None:
    assert education.link_problems(PAGES) == []
    for page in PAGES.values():
        assert page.related, f"{page.id} offers no way on"


def test_every_doi_and_pmid_is_in_the_fact_sheet_or_its_committed_copy() -> None:
    cited = education.source_ids(PAGES.values())
    sheet = education.fact_sheet_path()
    # A CI clone without ../shared falls back to the committed copy.
    known = (
        education.evidence_ids(sheet.read_text(encoding="utf-8"))
        if sheet.is_file()
        else education.read_evidence_index()
    )
    assert sorted(cited - known) == []


def test_committed_evidence_index_lists_exactly_what_the_pages_cite() -> None:
    index = education.read_evidence_index()
    assert index == education.source_ids(PAGES.values())


def test_committed_evidence_index_agrees_with_the_fact_sheet_when_present() -> None:
    index = education.read_evidence_index()
    assert index
    sheet = education.fact_sheet_path()
    if sheet.is_file():
        assert sorted(index - education.evidence_ids(sheet.read_text(encoding="utf-8"))) == []


def test_pages_stay_draft_until_a_named_clinician_signs() -> None:
    for page in PAGES.values():
        if page.review_status == "reviewed":
            assert page.reviewed_by and page.reviewed_on, page.id
        else:
            assert page.is_draft
    assert education.any_draft("en") == any(p.is_draft for p in PAGES.values())


def test_only_the_page_on_stopping_is_restricted() -> None:
    assert {p.id for p in PAGES.values() if p.restricted} == {"about-stopping"}


def test_pages_offered_after_a_checkin_never_include_the_restricted_page() -> None:
    offerable = {p.id for p in education.pages_offerable_after_checkin("en")}
    assert "about-stopping" not in offerable
    assert "what-may-help" in offerable
    assert "when-to-call" in offerable
    assert "about-stopping" in {p.id for p in education.menu_pages("en")}


def test_page_on_stopping_ends_with_staying_on_therapy_and_doctor_first_buttons() -> None:
    page = PAGES["about-stopping"]
    headings = re.findall(r"^## (.+)$", page.body, flags=re.MULTILINE)
    assert headings[-1] == "Why staying on therapy matters"
    view = education.page_view(page, 99)  # clamps to the last part
    data = [d for row in view.buttons for _, d in row]
    assert education.DOCTOR_FIRST_CALLBACK in data
    assert education.page_callback("staying-on-therapy") in data


def test_page_on_stopping_reports_the_small_series_honestly() -> None:
    body = PAGES["about-stopping"].body
    assert "small study" in body
    assert "10 of the 17" in body
    assert "still had pain" in body


# Permission or instruction to stop, pause, skip, halve, switch or change a dose.
FORBIDDEN = [
    r"\byou\s+(can|could|should|may|might)\s+(stop|pause|skip|halve|switch|change|lower|reduce)",
    r"\b(it'?s|it\s+is)\s+(ok|okay|fine|safe|alright)\s+to\s+(stop|pause|skip|halve|switch)",
    r"\btry\s+(stopping|pausing|skipping|halving|switching)",
    r"\btake\s+a\s+break\s+from",
    r"\b(half|halve)\s+(a|the|your)\s+(dose|pill|tablet)",
]


def test_pages_never_permit_stopping_switching_or_changing_a_dose() -> None:
    for page in PAGES.values():
        text = page.body.lower()
        for pattern in FORBIDDEN:
            assert not re.search(pattern, text), f"{page.id}: {pattern}"


def test_switching_to_another_ai_appears_only_as_a_question_for_her_doctor() -> None:
    for page in PAGES.values():
        for line in page.body.splitlines():
            if re.search(r"different AI|another AI|switch", line, flags=re.IGNORECASE):
                assert line.rstrip().endswith("?"), f"{page.id}: {line}"


def test_quick_checks_from_the_fact_sheet_hold() -> None:
    help_page = PAGES["what-may-help"].body
    assert "modest" in help_page  # acupuncture and duloxetine are modest, not "clearly works"
    assert "less than 1 point more" in help_page  # duloxetine vs placebo was 0.82, not 2
    assert "only a doctor can prescribe" in help_page
    assert "little proof" in help_page  # pain relievers
    assert "small studies" in help_page  # yoga, tai chi
    did_not = PAGES["what-did-not-help"].body
    for word in ("Omega-3", "Vitamin D", "Testosterone"):
        assert f"## {word}" in did_not
    everything = " ".join(p.body for p in PAGES.values()).lower()
    for claim in ("clearly works", "always goes away", "fixes it", "cure"):
        assert claim not in everything


# ---------------------------------------------------------------- the checks themselves


def test_unresolved_marker_and_uncited_source_are_reported() -> None:
    text = GOOD_PAGE.replace("ampersands [1].", "ampersands [2].")
    problems = education.page_problems(sample(text))
    assert any("marker [2] has no listed source" in p for p in problems)
    assert any("source [1] is never cited" in p for p in problems)


def test_marker_lists_like_1_comma_2_resolve_each_number() -> None:
    assert education.cited_keys("a [1, 2] b [3] c [10]") == {1, 2, 3, 10}


@pytest.mark.parametrize("field", education.REQUIRED_FIELDS)
def test_page_missing_a_front_matter_field_is_rejected(field: str) -> None:
    kept: list[str] = []
    dropping = False
    for line in GOOD_PAGE.splitlines():
        if line.startswith(f"{field}:"):
            dropping = True  # the field and its indented value lines
            continue
        if dropping and line.startswith(" "):
            continue
        dropping = False
        kept.append(line)
    with pytest.raises(ContentError, match=field):
        sample("\n".join(kept))


def test_malformed_front_matter_names_the_file() -> None:
    with pytest.raises(ContentError, match=r"broken\.md"):
        sample(GOOD_PAGE.replace("related: []", "related: [unclosed"), name="broken.md")


def test_source_without_doi_or_pmid_is_rejected() -> None:
    with pytest.raises(ContentError, match="doi"):
        sample(GOOD_PAGE.replace('    doi: "10.1000/xyz"\n', ""))


def test_source_named_by_a_fact_sheet_number_is_checked_and_cited_without_an_identifier() -> None:
    page = sample(GOOD_PAGE.replace('    doi: "10.1000/xyz"\n', "    fact: 117\n"))
    assert page.sources[0].fact == 117 and page.sources[0].identifier() == ""
    assert education.source_ids([page]) == {"fact:117"}
    sheet = "117. **A hot, swollen joint with fever is urgent.** Same day. **[V]** A health page."
    assert education.evidence_ids(sheet) == {"fact:117"}
    last = education.render_parts(page, messages("en"))[-1]
    assert last.endswith("[1] Someone A, Journal 2020.")  # no identifier after the citation
    with pytest.raises(ContentError, match="fact"):
        sample(GOOD_PAGE.replace('    doi: "10.1000/xyz"\n', '    fact: "septic"\n'))


def test_reviewed_page_without_a_named_clinician_is_reported() -> None:
    page = sample(GOOD_PAGE.replace("review_status: draft", "review_status: reviewed"))
    assert page.is_draft
    assert any("reviewed_by" in p for p in education.page_problems(page))
    signed = sample(
        GOOD_PAGE.replace(
            "review_status: draft",
            "review_status: reviewed\nreviewed_by: Dr A Example\nreviewed_on: 2026-02-01",
        )
    )
    assert not signed.is_draft
    assert signed.reviewed_on == "2026-02-01"


def test_duplicate_page_ids_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "pages" / "en"
    write_page(folder, "sample.md", GOOD_PAGE)
    write_page(folder, "copy.md", GOOD_PAGE)
    with pytest.raises(ContentError, match="sample"):
        education.load_pages("en", root=tmp_path)


def test_link_to_a_missing_or_restricted_page_is_reported() -> None:
    restricted = sample(GOOD_PAGE.replace("id: sample", "id: secret\nrestricted: true"))
    linking = sample(
        GOOD_PAGE.replace("id: sample", "id: open").replace(
            "related: []", "related: [secret, nowhere]"
        )
    )
    problems = education.link_problems({"secret": restricted, "open": linking})
    assert any("restricted page 'secret'" in p for p in problems)
    assert any("'nowhere' does not exist" in p for p in problems)


def test_evidence_ids_read_dois_with_brackets_and_pmids() -> None:
    text = (
        "EBCTCG, Lancet 2011. doi:10.1016/S0140-6736(11)60993-8\n"
        "(doi:10.1155/2010/654348), and PMID 22331951; (PMID 33842832)."
    )
    assert education.evidence_ids(text) == {
        "doi:10.1016/s0140-6736(11)60993-8",
        "doi:10.1155/2010/654348",
        "pmid:22331951",
        "pmid:33842832",
    }


def test_a_doi_missing_from_the_fact_sheet_is_caught() -> None:
    page = sample()
    sheet = "Only this one: doi:10.1200/JCO.2014.57.1547."
    assert education.source_ids([page]) - education.evidence_ids(sheet) == {"doi:10.1000/xyz"}


# ---------------------------------------------------------------- rendering


def test_rendering_escapes_html_and_turns_bold_into_b_tags() -> None:
    parts = education.render_parts(sample(), messages("en"))
    assert len(parts) == 1
    text = parts[0]
    assert '<b>A &lt;sample&gt; &amp; "test"</b>' in text
    assert "Plain <b>bold</b> text with &lt;tags&gt; &amp; ampersands [1]." in text
    assert "<tags>" not in text


def test_every_part_of_every_page_fits_telegram_and_a_phone_screen() -> None:
    for page in PAGES.values():
        parts = education.render_parts(page)
        for n, part in enumerate(parts, start=1):
            assert len(part) <= education.MAX_MESSAGE_CHARS
            assert len(part) <= 1300, f"{page.id} part {n} is long for a phone"
            view = education.page_view(page, n)
            for row in view.buttons:
                for label, data in row:
                    assert label
                    assert len(data.encode()) <= education.MAX_CALLBACK_BYTES


def test_sources_are_listed_on_the_last_part_only() -> None:
    heading = messages("en").get("learn.sources_heading")
    for page in PAGES.values():
        parts = education.render_parts(page)
        assert f"<b>{heading}</b>" in parts[-1], page.id
        assert all(f"<b>{heading}</b>" not in p for p in parts[:-1]), page.id
        for source in page.sources:
            assert source.identifier() in parts[-1]


def test_long_page_is_split_into_parts_with_next_and_back() -> None:
    page = PAGES["what-may-help"]
    parts = education.render_parts(page)
    assert len(parts) >= 3
    texts = messages("en")
    first = education.page_view(page, 1).buttons
    assert first[0] == [(texts.get("learn.next"), "edu:what-may-help:2")]
    middle = education.page_view(page, 2).buttons
    assert middle[0] == [
        (texts.get("learn.back"), "edu:what-may-help:1"),
        (texts.get("learn.next"), "edu:what-may-help:3"),
    ]
    last = education.page_view(page, len(parts)).buttons
    assert last[0] == [(texts.get("learn.back"), f"edu:what-may-help:{len(parts) - 1}")]
    assert last[-1] == [(texts.get("learn.topics"), education.MENU_CALLBACK)]


def test_draft_pages_say_review_is_pending_on_their_last_part() -> None:
    note = messages("en").get("learn.page_draft_notice")
    for page in PAGES.values():
        assert (note in education.render_parts(page)[-1]) == page.is_draft


def test_callback_data_parses_menu_and_parts_and_rejects_the_rest() -> None:
    assert education.parse_callback("edu:menu") == education.PageRequest(page_id=None)
    assert education.parse_callback("edu:bone-health:2") == education.PageRequest("bone-health", 2)
    assert education.parse_callback("edu:Bone:1") is None
    assert education.parse_callback("edu:bone-health") is None
    assert education.parse_callback("ci:1:pain:3") is None


def test_only_back_or_next_within_the_same_page_is_not_a_new_view() -> None:
    texts = messages("en")
    back = (texts.get("learn.back"), "edu:what-may-help:1")
    related = ("What may help", "edu:what-may-help:1")
    assert education.turned_within([back], "what-may-help", "en")
    assert not education.turned_within([related], "what-may-help", "en")  # an offer or link
    assert not education.turned_within([back], "what-may", "en")  # a page id prefix is not it
    assert not education.turned_within([], "what-may-help", "en")


def test_rendered_html_uses_only_balanced_tags_telegram_accepts() -> None:
    from html.parser import HTMLParser

    class TagCheck(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=False)
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            assert tag in {"b", "i"}, tag
            self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open and self.open.pop() == tag, tag

    for page in PAGES.values():
        for part in education.render_parts(page):
            checker = TagCheck()
            checker.feed(part)
            checker.close()
            assert checker.open == [], page.id
            assert re.search(r"&(?!amp;|lt;|gt;|quot;)", part) is None, page.id
    menu = education.menu_view("en")
    assert "<" not in menu.text.replace("<i>", "").replace("</i>", "")
