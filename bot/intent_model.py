"""The second reader: a small linear model over character n-grams, run in plain Python.

The rules (`bot.intent`) read every message first. Only when they find nothing is this model
asked, and its call alone never starts an emergency path, a red-flag alert or the doctor-first
path: it only makes the bot ask one short clarifying question (`handlers.clarify`).

The model is trained with scikit-learn as a development tool (`make train-intent`, see
`bot/devtools/train_intent.py`) and exported to `content/safety/intent_model_<locale>.json`:
vocabulary, idf, coefficients and intercepts. Its features are two blocks side by side, as
scikit-learn's `FeatureUnion` puts them: character n-grams
(`TfidfVectorizer(analyzer="char_wb", sublinear_tf=True, norm="l2")`) and, when the file has
them, word unigrams and bigrams (`analyzer="word"`, the default token pattern), each block
normalised on its own. This module reproduces both and the multinomial
`LogisticRegression.predict_proba` exactly, so the bot needs neither numpy nor scikit-learn.
A test checks the probabilities against scikit-learn on every labelled message.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from bot.intent import Detection
from bot.paths import content_dir

Group = Literal["symptom", "stop", "fewer"]

# Which clarifying question each class leads to. Emergencies are asked about as a symptom
# (the question names her emergency number): the model never sends one down the stopping path.
GROUP_OF: dict[str, Group] = {
    "emergency": "symptom",
    "red_flag": "symptom",
    "stop_intent": "stop",
    "stop_intent_weak": "stop",
    "unsubscribe": "fewer",
}
# Asked in this order when several groups pass their threshold (like the rules' precedence).
GROUP_ORDER: tuple[Group, ...] = ("symptom", "stop", "fewer")

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def preprocess(text: str) -> str:
    """Lower-cases, strips accents and folds apostrophes (training uses this same function)."""
    lowered = text.lower().translate(_APOSTROPHES)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Returns the n-grams scikit-learn's `char_wb` analyzer makes (words padded by a space)."""
    grams: list[str] = []
    for word in text.split():
        padded = " " + word + " "
        size = len(padded)
        for n in range(low, high + 1):
            offset = 0
            grams.append(padded[offset : offset + n])
            while offset + n < size:
                offset += 1
                grams.append(padded[offset : offset + n])
            if offset == 0:  # a word shorter than n is counted once, as scikit-learn does
                break
    return grams


# scikit-learn's default token pattern for `analyzer="word"`: runs of two or more word characters.
_WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def word_ngrams(text: str, low: int, high: int) -> list[str]:
    """Returns the word n-grams scikit-learn's `word` analyzer makes (no stop words)."""
    tokens = _WORD_TOKEN.findall(text)
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), high + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


# When the model's emergency probability alone reaches this, it asks the symptom question
# whatever the per-question bars say: a silent miss of an emergency costs far more than one
# question too many. Chosen as "emergency is at least as likely as everything else together",
# not tuned on a blind round.
EMERGENCY_ASK = 0.5


@dataclass(frozen=True)
class Suspicion:
    """What the model alone suspects in a message: codes and a score, never the text."""

    group: Group
    label: str  # the most probable non-neutral class
    score: float  # the group's probability
    model_version: str


@dataclass(frozen=True)
class IntentModel:
    """An exported model: n-gram features with idf and one weight per class."""

    version: str
    locale: str
    classes: tuple[str, ...]
    intercepts: tuple[float, ...]
    features: dict[str, tuple[float, tuple[float, ...]]]  # n-gram -> (idf, weights)
    ngram_range: tuple[int, int]
    thresholds: dict[str, float]
    meta: dict[str, Any]
    # The word block (empty in a file without one): word n-gram -> (idf, weights).
    word_features: dict[str, tuple[float, tuple[float, ...]]] = field(default_factory=dict)
    word_ngram_range: tuple[int, int] = (1, 1)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> IntentModel:
        """Builds the model from its exported JSON form."""
        analyzer = raw["analyzer"]
        expected = {"kind": "char_wb", "sublinear_tf": True, "norm": "l2"}
        if any(analyzer.get(k) != v for k, v in expected.items()):
            raise ValueError("intent model: only char_wb, sublinear tf and l2 norm are supported")
        low, high = analyzer["ngram_range"]
        word = raw.get("word_analyzer")
        if word is not None:
            wanted = {"kind": "word", "sublinear_tf": True, "norm": "l2"}
            if any(word.get(k) != v for k, v in wanted.items()):
                raise ValueError("intent model: the word block must be sublinear tf, l2 norm")
            if word.get("token_pattern") != _WORD_TOKEN.pattern:
                raise ValueError("intent model: the word block's token pattern is not ours")
        return cls(
            version=str(raw["version"]),
            locale=str(raw["locale"]),
            classes=tuple(raw["classes"]),
            intercepts=tuple(float(b) for b in raw["intercepts"]),
            features=_weights(raw["features"]),
            ngram_range=(int(low), int(high)),
            thresholds={str(k): float(v) for k, v in raw["thresholds"].items()},
            meta=raw.get("meta", {}),
            word_features=_weights(raw.get("word_features", {})),
            word_ngram_range=(
                (int(word["ngram_range"][0]), int(word["ngram_range"][1])) if word else (1, 1)
            ),
        )

    def probabilities(self, text: str) -> dict[str, float]:
        """Returns each class's probability, as scikit-learn's `predict_proba` would."""
        clean = preprocess(text)
        scores = list(self.intercepts)
        _add_block(scores, char_wb_ngrams(clean, *self.ngram_range), self.features)
        if self.word_features:
            _add_block(scores, word_ngrams(clean, *self.word_ngram_range), self.word_features)
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        whole = sum(exps)
        return {c: e / whole for c, e in zip(self.classes, exps, strict=True)}

    def suspect(self, text: str) -> Suspicion | None:
        """Returns the first question (symptom, stop, fewer) whose probability passes its bar."""
        probs = self.probabilities(text)
        emergency = probs.get("emergency", 0.0)
        if emergency >= self.thresholds.get("emergency_ask", EMERGENCY_ASK):
            # An emergency is the model's likeliest reading: ask about a symptom (the question
            # names her emergency number) even when no question's own bar is passed.
            symptom = sum(p for c, p in probs.items() if GROUP_OF.get(c) == "symptom")
            return Suspicion("symptom", "emergency", round(symptom, 3), self.version)
        for group in GROUP_ORDER:
            members = [c for c in self.classes if GROUP_OF.get(c) == group]
            score = sum(probs[c] for c in members)
            if members and score >= self.thresholds[group]:
                # Any real chance of an emergency: ask about a symptom (the question names
                # her emergency number), never about stopping or fewer messages.
                if probs.get("emergency", 0.0) >= self.thresholds["emergency_floor"]:
                    symptom = sum(p for c, p in probs.items() if GROUP_OF.get(c) == "symptom")
                    return Suspicion("symptom", "emergency", round(symptom, 3), self.version)
                label = max(members, key=lambda c: probs[c])
                return Suspicion(group, label, round(score, 3), self.version)
        return None


def _weights(raw: dict[str, list[float]]) -> dict[str, tuple[float, tuple[float, ...]]]:
    """Reads a block of exported features: gram -> [idf, weight per class]."""
    return {gram: (float(row[0]), tuple(float(w) for w in row[1:])) for gram, row in raw.items()}


def _add_block(
    scores: list[float],
    grams: list[str],
    features: dict[str, tuple[float, tuple[float, ...]]],
) -> None:
    """Adds one block's contribution: sublinear tf-idf of its grams, l2-normalised alone."""
    counts = Counter(g for g in grams if g in features)
    values: list[tuple[float, tuple[float, ...]]] = []
    total = 0.0
    for gram, count in counts.items():
        idf, weights = features[gram]
        value = (1.0 + math.log(count)) * idf
        values.append((value, weights))
        total += value * value
    norm = math.sqrt(total)
    if norm > 0.0:
        for value, weights in values:
            share = value / norm
            for i, w in enumerate(weights):
                scores[i] += share * w


def model_path(locale: str) -> Path:
    """Returns where the exported model of a locale lives."""
    return content_dir() / "safety" / f"intent_model_{locale}.json"


@lru_cache(maxsize=4)
def load(locale: str) -> IntentModel | None:
    """Loads the exported model of a locale; None when that locale has none (no guessing)."""
    path = model_path(locale)
    if not path.is_file():
        return None
    return IntentModel.from_json(json.loads(path.read_text(encoding="utf-8")))


# Fewer words than this and the model is not asked: one or two words give it too little to
# judge ("Late words" once read as an emergency because "words" is a stroke sign elsewhere),
# and every short message of the labelled file that is not neutral is one the rules catch.
MIN_WORDS = 3


def enough_text(text: str) -> bool:
    """Tells whether a message has enough words for the model to read (`MIN_WORDS`)."""
    return len(_WORD_TOKEN.findall(preprocess(text))) >= MIN_WORDS


def second_reading(text: str, detection: Detection, locale: str) -> Suspicion | None:
    """Asks the model only when the rules found nothing; its call only earns a question.

    "Nothing" is `Detection.undecided`: no signal, no neutral question the rules recognised,
    and not a message in another language (those get their own replies). A message of fewer
    than `MIN_WORDS` words is not read either.
    """
    if not detection.undecided or not enough_text(text):
        return None
    model = load(locale)
    return model.suspect(text) if model is not None else None
