"""The exported intent model: the same probabilities as scikit-learn, small, fast, and only a
second reader (asked when the rules found nothing; never the stopping question for an
emergency)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot import intent, intent_model
from bot.devtools.intent_rounds import ROUND_COMMITS
from bot.intent_model import IntentModel, char_wb_ngrams, preprocess, word_ngrams
from tests.intent_steps import labelled_sections

if TYPE_CHECKING:
    # Imported where used: scikit-learn takes over a second to import, and every test
    # worker imports every test module.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = ROOT / "content" / "safety" / "intent_model_en.json"


def _all_labelled() -> list[dict[str, str]]:
    raw = labelled_sections()
    return [m for section in raw.values() if isinstance(section, list) for m in section]


@pytest.fixture(scope="module")
def model() -> IntentModel:
    loaded = intent_model.load("en")
    assert loaded is not None
    return loaded


def _sklearn_form(
    model: IntentModel,
) -> tuple[TfidfVectorizer, TfidfVectorizer, LogisticRegression]:
    """Rebuilds the exported (pruned, rounded) model as scikit-learn objects."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    chars, words = sorted(model.features), sorted(model.word_features)
    char_block = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=model.ngram_range,
        preprocessor=preprocess,
        sublinear_tf=True,
        norm="l2",
        vocabulary=chars,
    )
    char_block.idf_ = np.array([model.features[g][0] for g in chars])
    word_block = TfidfVectorizer(
        analyzer="word",
        ngram_range=model.word_ngram_range,
        preprocessor=preprocess,
        sublinear_tf=True,
        norm="l2",
        vocabulary=words,
    )
    word_block.idf_ = np.array([model.word_features[g][0] for g in words])
    classifier = LogisticRegression()
    classifier.classes_ = np.array(model.classes)
    classifier.coef_ = np.array(
        [
            [model.features[g][1][i] for g in chars]
            + [model.word_features[g][1][i] for g in words]
            for i in range(len(model.classes))
        ]
    )
    classifier.intercept_ = np.array(model.intercepts)
    return char_block, word_block, classifier


def test_exported_model_gives_scikit_learns_probabilities_on_every_labelled_message(
    model: IntentModel,
) -> None:
    from scipy import sparse

    char_block, word_block, classifier = _sklearn_form(model)
    assert model.word_features, "the model has a word block"
    texts = [m["text"] for m in _all_labelled()]
    # Side by side, each block normalised alone: what scikit-learn's FeatureUnion does.
    x = sparse.hstack([char_block.transform(texts), word_block.transform(texts)], format="csr")
    expected = classifier.predict_proba(x)
    for text, row in zip(texts, expected, strict=True):
        got = model.probabilities(text)
        assert [got[c] for c in model.classes] == pytest.approx(list(row), abs=1e-9), text


@pytest.mark.parametrize(
    "text", ["Can't  STOP\tthinking", "Café — naïve’s", "a", "", "I  x", "don't\nknow"]
)
def test_char_ngrams_match_scikit_learns_analyzer(text: str) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), preprocessor=preprocess
    ).build_analyzer()
    assert char_wb_ngrams(preprocess(text), 2, 5) == analyzer(text)


@pytest.mark.parametrize(
    "text", ["Can't  STOP\tthinking", "Café — naïve’s", "a", "", "I  x", "don't stop, 2 x 38.5"]
)
@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2), (2, 3)])
def test_word_ngrams_match_scikit_learns_analyzer(text: str, ngrams: tuple[int, int]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer = TfidfVectorizer(
        analyzer="word", ngram_range=ngrams, preprocessor=preprocess
    ).build_analyzer()
    assert word_ngrams(preprocess(text), *ngrams) == analyzer(text)


def test_model_file_is_small_and_its_version_names_its_content() -> None:
    assert MODEL_FILE.stat().st_size < 150_000
    raw = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    assert raw["version"].startswith("en-")
    meta = raw["meta"]
    # The chosen thresholds and the replay figures they were chosen on travel with the model.
    assert set(raw["thresholds"]) == {"symptom", "stop", "fewer", "emergency_floor"}
    # Trained with every replay the training script now names (the file is not stale).
    assert set(meta["replays"]) == set(ROUND_COMMITS)
    assert meta["replays_pooled"]["emergency_to_stop"] == 0
    docs = (ROOT / "docs" / "intent.md").read_text(encoding="utf-8")
    assert str(raw["thresholds"]["stop"]) in docs


def test_inference_takes_under_a_millisecond_per_message(model: IntentModel) -> None:
    texts = [m["text"] for m in _all_labelled()]
    best = float("inf")
    for _ in range(3):  # the best of three: the machine is shared
        started = time.perf_counter()
        for text in texts:
            model.suspect(text)
        best = min(best, (time.perf_counter() - started) / len(texts))
    assert best < 0.001


def test_an_emergency_is_never_asked_about_stopping(model: IntentModel) -> None:
    for m in _all_labelled():
        if m["label"] != "emergency":
            continue
        found = model.suspect(m["text"])
        assert found is None or found.group == "symptom", m["text"]


def test_model_is_only_asked_when_the_rules_found_nothing() -> None:
    text = "I want to stop taking my letrozole"
    assert intent.read_text(text).kind == "stop_intent"
    assert intent_model.second_reading(text, intent.read_text(text), "en") is None
    undecided = intent.Detection(kind="none", signals=frozenset(), matched=())
    assert intent_model.second_reading("   ", undecided, "en") is None


def test_a_locale_without_a_model_gets_no_second_reading() -> None:
    undecided = intent.Detection(kind="none", signals=frozenset(), matched=())
    assert intent_model.second_reading("ready to bin these pills", undecided, "xx") is None
