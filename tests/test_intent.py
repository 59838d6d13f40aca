"""The free-text detector meets its precision and recall targets on the labelled set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.devtools.intent_rounds import SECTIONS as ALL_SECTIONS
from bot.intent import PRECEDENCE, Detection, detect, normalise, read_text, rulebook
from tests.intent_steps import labelled_sections

# The rounds the rules' accuracy targets hold on (later rounds are checked kind by kind in
# tests/test_intent_round*.py, and all of them train the second reader).
SECTIONS = ALL_SECTIONS[: ALL_SECTIONS.index("heldout_6") + 1]
CLASSES = (*PRECEDENCE, "none")


def _labelled() -> list[dict[str, Any]]:
    """Returns every labelled message: the main set and the held-out rounds."""
    data = labelled_sections()
    return [m for section in SECTIONS for m in data[section]]


def _scores(label: str, rows: list[tuple[str, str]]) -> tuple[int, int, int]:
    """Returns true positives, false positives and false negatives of one class."""
    tp = sum(1 for want, got in rows if want == label and got == label)
    fp = sum(1 for want, got in rows if want != label and got == label)
    fn = sum(1 for want, got in rows if want == label and got != label)
    return tp, fp, fn


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


@pytest.fixture(scope="module")
def readings() -> list[tuple[dict[str, Any], Detection]]:
    # Read as the handlers read (every rule book): round 5 mixes Spanish, German and French in.
    return [(m, read_text(m["text"])) for m in _labelled()]


@pytest.fixture(scope="module")
def results(readings: list[tuple[dict[str, Any], Detection]]) -> list[tuple[str, str]]:
    return [(m["label"], found.kind) for m, found in readings]


def test_labelled_set_is_large_and_uses_known_labels() -> None:
    messages = _labelled()
    assert len(messages) >= 300
    assert {m["label"] for m in messages} == set(CLASSES)
    for m in messages:
        assert set(m.get("also", [])) <= set(PRECEDENCE), m["text"]


def test_precision_and_recall_per_class_meet_targets(results: list[tuple[str, str]]) -> None:
    print("\nclass              n   tp  fp  fn  precision  recall")
    table = {}
    for label in CLASSES:
        tp, fp, fn = _scores(label, results)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        table[label] = (precision, recall)
        n = tp + fn
        print(f"{label:<17}{n:>4}{tp:>5}{fp:>4}{fn:>4}{precision:>11.2f}{recall:>8.2f}")
    # A weak-labelled message detected as strong counts as a false positive for strong.
    assert table["stop_intent"][1] >= 0.95
    assert table["stop_intent"][0] >= 0.90
    assert table["red_flag"][1] >= 0.95
    assert table["emergency"][1] == 1.0


def test_every_labelled_message_is_classified_as_labelled(results: list[tuple[str, str]]) -> None:
    misses = [
        f"{m['text']!r}: want {want}, got {got}"
        for m, (want, got) in zip(_labelled(), results, strict=True)
        if want != got
    ]
    print("\n" + "\n".join(misses))
    # The targets above are the contract; this keeps the known misses few (under 2%) and
    # visible.
    assert len(misses) <= len(results) // 50, misses


def test_lower_signals_of_mixed_messages_are_also_seen(
    readings: list[tuple[dict[str, Any], Detection]],
) -> None:
    for m, found in readings:
        for extra in m.get("also", []):
            assert extra in found.signals, (m["text"], extra, found)


def test_unsubscribe_messages_never_count_as_stop_intent() -> None:
    for m in _labelled():
        if m["label"] == "unsubscribe":
            found = detect(m["text"])
            assert "stop_intent" not in found.signals, (m["text"], found)
            assert "stop_intent_weak" not in found.signals, (m["text"], found)


def test_emergency_outranks_stop_and_unsubscribe() -> None:
    found = detect("stop the messages, I stopped my letrozole and I have chest pain")
    assert found.kind == "emergency"
    assert {"stop_intent", "unsubscribe"} <= found.signals


def test_detection_reports_rule_ids_not_the_text() -> None:
    found = detect("I want to stop taking my Arimidex")
    assert found.kind == "stop_intent"
    assert found.matched and all("arimidex" not in rid for rid in found.matched)
    assert all(rid.split(".")[0] in {"stop", "weak"} for rid in found.matched)


def test_someone_elses_advice_to_stop_is_asked_about_gently() -> None:
    assert detect("my neighbour thinks I should quit the letrozole").kind == "stop_intent_weak"
    assert detect("my doctor thinks I should stop the letrozole").kind == "stop_intent"


def test_misspelt_drug_names_and_shouting_are_understood() -> None:
    for text in ("I STOPED MY ARIMEDEX", "quitting anastrozol", "stopppping letrozle now"):
        assert detect(text).kind == "stop_intent", text


def test_unknown_locale_falls_back_to_english_rules() -> None:
    assert detect("can i stop my femara", locale="xx").kind == "stop_intent"


def _rule_phrases() -> Iterator[str]:
    raw = rulebook("en").raw
    for entries in raw["groups"].values():
        for entry in entries:
            yield str(entry).removeprefix("re:")
    for rule in raw["rules"]:
        yield str(rule["pattern"])
    for profile in raw["negation"].values():
        yield from (str(c) for c in (*profile.get("before", []), *profile.get("after", [])))


def test_no_rule_phrase_equals_a_labelled_message() -> None:
    # One word is a vocabulary entry, not a copied message (a blind round holds a bare "STOP").
    messages = {normalise(m["text"]) for m in _labelled() if len(m["text"].split()) > 1}
    copies = sorted({p for p in _rule_phrases() if normalise(p) in messages})
    assert copies == [], f"rules copy labelled messages verbatim: {copies}"


# ---------------------------------------------------------------- issue 13: scope and signs
# The phrasings below are ours (not from a blind round): they test the method.


def test_a_negation_reaches_only_a_few_words_and_not_past_a_terminator() -> None:
    assert detect("I don't have chest pain").kind == "none"
    assert detect("no chest pain at all, just my knees").kind == "none"
    assert detect("I'm not sure but I think it's chest pain").kind == "emergency"
    assert detect("not only my knees, I have chest pain now").kind == "emergency"
    assert detect("I do not think I can stop it, although I want to stop my letrozole").is_stop


def test_a_clearly_past_symptom_or_stop_is_switched_off_but_not_a_current_one() -> None:
    assert detect("I had a fall in 2019").kind == "none"
    assert detect("I broke my wrist years ago, no problems since").kind == "none"
    assert detect("swollen knee last summer, all fine now").kind == "none"
    assert detect("I stopped letrozole for a month last year but I'm back on it").kind == "none"
    # Something current keeps it alive.
    assert detect("I fell in 2019 and I fell again today").kind == "red_flag"
    assert detect("I stopped my pills two weeks ago").kind == "stop_intent"
    # A year that has not gone by yet is not "past".
    from bot.clock import now

    assert detect(f"I had a fall in {now().year}").kind == "red_flag"


def test_someone_elses_fall_is_not_hers() -> None:
    assert detect("my sister fell down the stairs").kind == "none"
    assert detect("I fell down the stairs").kind == "red_flag"


def test_emergency_signs_without_the_key_words_outrank_everything() -> None:
    found = detect("I stopped my tablets and there is a crushing weight on my chest")
    assert found.kind == "emergency" and "stop_intent" in found.signals
    assert detect("I took a full strip of tablets by accident").kind == "emergency"
    assert detect("I fell, I can't get up off the floor").kind == "emergency"


def test_an_accidental_overdose_is_not_read_as_self_harm() -> None:
    found = detect("I took the whole packet of my pills by mistake")
    assert found.kind == "emergency"
    assert not any(r.startswith("emergency.self_harm") for r in found.matched)


def test_questions_about_taking_it_correctly_are_neutral_with_a_topic() -> None:
    for text, topic in [
        ("is it better to take letrozole in the morning or at night?", "usage.time"),
        ("what if I miss one dose?", "usage.missed_dose"),
        ("I forgot yesterday's tablet, should I take two today?", "usage.missed_dose"),
        ("how long will I need to take anastrozole?", "usage.duration"),
    ]:
        found = detect(text)
        assert (found.kind, found.topic) == ("none", topic), text
        assert not found.undecided  # the rules decided: no second reader
    for text in ("how long can I go without my pills?", "can I skip my tablets this week?"):
        assert detect(text).is_stop, text


def test_the_detector_says_when_it_found_nothing_so_a_second_reader_may_look() -> None:
    assert read_text("the weather is lovely today").undecided
    assert not read_text("I don't have chest pain").undecided  # negated: decided
    assert not read_text("Ich habe heute starke Schmerzen in den Knien").undecided  # German
    assert not read_text("I stopped my pills").undecided


def test_spanish_german_and_french_rules_run_on_every_message() -> None:
    assert read_text("no puedo respirar").kind == "emergency"
    assert read_text("he dejado de tomar el letrozol").kind == "stop_intent"
    assert read_text("I'm going to dejar las pastillas").kind == "stop_intent"
    assert read_text("ich will die Tabletten absetzen").kind == "stop_intent"
    assert read_text("j'ai arrêté le traitement").kind == "stop_intent"
    assert read_text("arrêtez les messages").kind == "unsubscribe"
    assert read_text("por favor, no más mensajes").kind == "unsubscribe"
    # Plain English never trips the other rule books.
    for m in _labelled():
        if m["label"] == "none":
            assert read_text(m["text"]).kind == detect(m["text"]).kind, m["text"]


def test_the_language_identifier_tells_english_from_its_neighbours() -> None:
    from bot.langid import identify

    assert identify("my knees are sore again today") == "en"
    assert identify("me duelen mucho las rodillas hoy") == "es"
    assert identify("ich habe seit gestern Schmerzen in der Hand") == "de"
    assert identify("j'ai mal aux genoux depuis ce matin") == "fr"
    assert identify("oggi ho molto dolore alle mani") == "it"
    assert identify("estou com muita dor nas mãos hoje") == "pt"
    assert identify("I want to dejar las pastillas") == "en"  # mixed: English leads
    assert identify("👍") == ""


def test_every_english_labelled_message_reads_as_english() -> None:
    from bot.langid import identify

    # Not rounds 5 and 6: they mix other languages in on purpose (and thanks in Spanish or
    # French rightly gets the "I read English" reply).
    data = labelled_sections()
    mixed = ("heldout_5", "heldout_6")
    english = [m for section in SECTIONS if section not in mixed for m in data[section]]
    odd = [m["text"] for m in english if identify(m["text"]) not in ("en", "")]
    assert len(odd) <= len(english) // 100, odd
