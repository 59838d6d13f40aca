"""The content safety scan flags advice to change a medicine and passes doctor-first text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.safety_scan import scan, scan_all_content

CASES = yaml.safe_load(
    (Path(__file__).parent / "data" / "safety_scan_cases_en.yaml").read_text(encoding="utf-8")
)


def test_case_lists_hold_at_least_twenty_sentences_each() -> None:
    assert len(CASES["bad"]) >= 20
    assert len(CASES["good"]) >= 20


@pytest.mark.parametrize("sentence", CASES["bad"])
def test_known_bad_sentence_is_flagged(sentence: str) -> None:
    assert scan(sentence), sentence


@pytest.mark.parametrize("sentence", CASES["good"])
def test_known_good_sentence_passes(sentence: str) -> None:
    assert scan(sentence) == [], [str(f) for f in scan(sentence)]


def test_only_the_offending_sentence_of_a_text_is_reported() -> None:
    text = "Joint pain is common. You can stop your tablets for a week. Talk with your doctor."
    findings = scan(text)
    assert [f.sentence for f in findings] == ["You can stop your tablets for a week"]
    assert findings[0].rule == "scan.permission_you"


def test_markup_does_not_hide_advice() -> None:
    assert scan("<b>Halve your dose</b> on bad days [3].")
    assert scan("- **Take a break** from your tablets.")


def test_no_text_in_content_gives_forbidden_advice() -> None:
    findings = scan_all_content()
    assert findings == [], "\n".join(str(f) for f in findings)


def test_content_findings_name_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "messages" / "en").mkdir(parents=True)
    (tmp_path / "messages" / "en" / "offers.yaml").write_text(
        'pain:\n  high: "Sorry it hurts. It is OK to skip a dose."\n', encoding="utf-8"
    )
    (tmp_path / "pages" / "en").mkdir(parents=True)
    (tmp_path / "pages" / "en" / "tips.md").write_text(
        "---\nid: tips\ntitle: Tips\n---\n\nWalk a little.\n\nSwitch to exemestane.\n",
        encoding="utf-8",
    )
    (tmp_path / "safety").mkdir()
    (tmp_path / "safety" / "en.yaml").write_text('x: "you can stop your tablets"\n', "utf-8")
    found = {(f.source, f.key) for f in scan_all_content(tmp_path)}
    assert found == {("messages/en/offers.yaml", "pain.high"), ("pages/en/tips.md", "line 8")}
