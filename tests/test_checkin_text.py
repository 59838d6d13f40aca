"""The check-in's words: every key used exists, none is unused, plain and lock-screen safe."""

from __future__ import annotations

import re
from pathlib import Path

import textstat
import yaml

from bot.content import messages, questionnaire
from bot.paths import content_dir
from bot.safety_scan import lock_screen_words

HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
# The check-in flow and the views that draw its questions and summary.
CHECKIN_CODE = (HANDLERS / "checkin.py", HANDLERS / "views" / "checkin.py")
# The shared lock-screen words, and for check-ins also what would tell a passer-by she is on
# a medicine.
LOCK_SCREEN_WORDS = (*lock_screen_words("en"), "tablet", "medicine")


def _defined_keys() -> set[str]:
    """Returns every key in checkin.yaml."""
    raw = yaml.safe_load((content_dir() / "messages" / "en" / "checkin.yaml").read_text())
    return {f"checkin.{key}" for key in raw}


def _used_keys() -> set[str]:
    """Returns every checkin.* key the check-in code names."""
    text = "\n".join(path.read_text() for path in CHECKIN_CODE)
    return set(re.findall(r'"(checkin\.[a-z_]+)"', text))


def test_every_checkin_message_used_in_code_exists() -> None:
    assert _used_keys() - _defined_keys() == set()


def test_no_checkin_message_is_defined_but_unused() -> None:
    assert _defined_keys() - _used_keys() == set()


def test_first_lines_of_messages_the_bot_starts_name_no_drug_or_illness() -> None:
    m = messages("en")
    for key in ("checkin.intro", "checkin.reminder_intro"):
        first_line = m.get(key).splitlines()[0].lower()
        assert not any(word in first_line for word in LOCK_SCREEN_WORDS), key


def test_checkin_sentences_read_at_grade_eight_or_below() -> None:
    m = messages("en")
    texts = [m.get(key) for key in _defined_keys() if not m.fields(key)]
    texts += [item.text("en") for item in questionnaire().items]
    for text in texts:
        if len(text.split()) >= 5:
            assert textstat.flesch_kincaid_grade(text) <= 8, text


def test_doctor_first_messages_never_approve_or_advise_stopping() -> None:
    # "I have stopped taking it" starts the doctor-first path (content doctor_first.yaml).
    m = messages("en")
    texts = [text.lower() for key, text in m.texts.items() if key.startswith("doctor_first.")]
    assert texts
    joined = " ".join(texts)
    assert "doctor" in joined and "care team" in joined
    for text in texts:
        for banned in (
            "that's fine",
            "that is fine",
            "okay to stop",
            "you can stop",
            "we will call",
        ):
            assert banned not in text


def test_questionnaire_items_and_codes_are_the_agreed_ones() -> None:
    q = questionnaire()
    assert [i.code for i in q.items] == [
        "took_med",
        "worst_pain",
        "stiffness",
        "interference",
        "new_symptoms",
        "note",
    ]
    took = q.item("took_med")
    stiffness = q.item("stiffness")
    symptoms = q.item("new_symptoms")
    assert took is not None and stiffness is not None and symptoms is not None
    assert took.values() == ["yes", "missed", "stopped"]
    assert stiffness.values() == ["none", "under_30", "over_30"]
    assert symptoms.values()[0] == "none" and symptoms.exclusive == ("none",)
    pain = q.item("worst_pain")
    assert pain is not None and pain.type == "scale"
    assert pain.anchors["en"] == "0 = no pain, 10 = worst you can imagine"
