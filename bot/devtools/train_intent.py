"""Trains the second-reader intent model and exports it for plain-Python inference.

    python -m bot.devtools.train_intent            # train, evaluate, write the model file
    python -m bot.devtools.train_intent --check    # evaluate only, write nothing

A development tool (scikit-learn is in the `dev` extra, never a runtime dependency). It reads
every section of `tests/data/intent_labelled_en.yaml`, fits TF-IDF features (character n-grams
2-5, `char_wb`, beside word unigrams and bigrams, each block l2-normalised alone as a
`FeatureUnion` does) + multinomial logistic regression, keeps the strongest features, refits
on them, rounds the numbers and writes `content/safety/intent_model_en.json` with the
evaluation in its metadata. The word block was added after round 8: trained on the rounds
before each of rounds 5-8 and tested on it, it raised the model's accuracy from 0.77 to 0.80
(question group right: 0.82 to 0.84).

Thresholds (one per clarifying question: symptom, stop, fewer messages) are chosen on two
kinds of evidence only, never on a round that is reported afterwards as a first score:
- 5-fold cross-validation over the whole labelled file, with the current rules first;
- replays of the earlier blind rounds heldout_2 to heldout_10: the rules as they
  were before each round (read from git history), a model trained only on the sections that
  existed then, and the model's extra calls counted on the messages those rules missed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import yaml
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bot import intent
from bot.devtools.intent_rounds import ROUND_COMMITS, SECTIONS
from bot.intent_model import EMERGENCY_ASK, GROUP_OF, GROUP_ORDER, enough_text, preprocess
from bot.paths import REPO_DIR

LABELLED = REPO_DIR / "tests" / "data" / "intent_labelled_en.yaml"
OUT = REPO_DIR / "content" / "safety" / "intent_model_en.json"
NGRAMS = (2, 5)
WORD_NGRAMS = (1, 2)
WORD_TOKEN = r"(?u)\b\w\w+\b"  # scikit-learn's default, which bot.intent_model reproduces
C = 10.0
KEEP = 2500  # features kept after the first fit, both blocks together (the file stays small)
DECIMALS = 3  # weights and idf are rounded to this many decimals before export
SEED = 13
GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
# Emergency floor: at or above this emergency probability the model asks the symptom
# question, never the stopping one (highest floor first: fewest stop questions lost).
FLOORS = (0.2, 0.15, 0.1, 0.08, 0.05)
# The choice rule: the lowest threshold whose extra calls, pooled over CV and the replays,
# ask at most this share of neutral messages and are right at least this often.
MAX_NEUTRAL_ASK = 0.05
MIN_PRECISION = 0.75
# The whole budget for neutral messages: flagged by the rules (as they were before each round)
# or asked a question by the model, on the replays pooled. A per-question threshold is only
# lowered within it, and when the shared threshold overspends it, thresholds are raised.
MAX_NEUTRAL_TOTAL = 0.10
# Which questions give way first when rules and model together overspend the budget: the
# one whose miss costs least first (fewer messages), the symptom question (emergencies and
# red flags) last (added after round 9, whose neutral messages got 24% questions or paths).
RAISE_ORDER: tuple[str, ...] = ("fewer", "stop", "symptom")


@dataclass
class Model:
    """Fitted vectorizers (character block, word block) and classifier, pruned and rounded."""

    vectorizer: TfidfVectorizer
    words: TfidfVectorizer
    classifier: LogisticRegression

    def features(self, texts: Sequence[str]) -> Any:
        """Returns both blocks side by side, each l2-normalised alone (as FeatureUnion)."""
        return sparse.hstack(
            [self.vectorizer.transform(texts), self.words.transform(texts)], format="csr"
        )

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """Returns scikit-learn's probabilities for texts (columns in `classifier.classes_`)."""
        return self.classifier.predict_proba(self.features(texts))


def vectorizer(vocabulary: Sequence[str] | None = None) -> TfidfVectorizer:
    """Returns the character-block configuration `bot.intent_model` reproduces."""
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAMS,
        preprocessor=preprocess,
        sublinear_tf=True,
        norm="l2",
        vocabulary=vocabulary,
    )


def word_vectorizer(vocabulary: Sequence[str] | None = None) -> TfidfVectorizer:
    """Returns the word-block configuration `bot.intent_model` reproduces."""
    return TfidfVectorizer(
        analyzer="word",
        ngram_range=WORD_NGRAMS,
        token_pattern=WORD_TOKEN,
        preprocessor=preprocess,
        sublinear_tf=True,
        norm="l2",
        vocabulary=vocabulary,
    )


def classifier() -> LogisticRegression:
    """Returns the classifier configuration (balanced classes: stop messages outnumber)."""
    return LogisticRegression(C=C, max_iter=5000, class_weight="balanced")


def fit(texts: Sequence[str], labels: Sequence[str], keep: int = KEEP) -> Model:
    """Fits, keeps the `keep` strongest n-grams of both blocks, refits on them and rounds."""
    chars, words = vectorizer(), word_vectorizer()
    x = sparse.hstack([chars.fit_transform(texts), words.fit_transform(texts)], format="csr")
    clf = classifier().fit(x, labels)
    strength = np.abs(clf.coef_).max(axis=0)
    names = [("c", g) for g in chars.get_feature_names_out()]
    names += [("w", g) for g in words.get_feature_names_out()]
    kept = [names[i] for i in np.argsort(-strength)[:keep]]
    model = Model(
        vectorizer(sorted(g for b, g in kept if b == "c")),
        word_vectorizer(sorted(g for b, g in kept if b == "w")),
        classifier(),
    )
    model.vectorizer.fit(texts)
    model.words.fit(texts)
    # Rounded numbers are what the file holds, so the sklearn form uses them too.
    model.vectorizer.idf_ = np.round(model.vectorizer.idf_, DECIMALS)
    model.words.idf_ = np.round(model.words.idf_, DECIMALS)
    model.classifier.fit(model.features(texts), labels)
    clf = model.classifier
    clf.coef_ = np.round(clf.coef_, DECIMALS)
    clf.intercept_ = np.round(clf.intercept_, DECIMALS)
    return model


def _block(
    vocab: dict[str, int], idf: np.ndarray, coef: np.ndarray, offset: int
) -> dict[str, list[float]]:
    """Returns one block's exported features: gram -> [idf, weight per class]."""
    features: dict[str, list[float]] = {}
    for gram, col in sorted(vocab.items()):
        # A feature that moves no class is kept too (zero weights): it changes the norm.
        features[gram] = [float(idf[col]), *(float(w) for w in coef[:, offset + col])]
    return features


def export(model: Model, thresholds: dict[str, float], meta: dict[str, Any]) -> dict[str, Any]:
    """Returns the JSON form `bot.intent_model.IntentModel.from_json` reads."""
    coef = model.classifier.coef_
    chars = model.vectorizer
    features = _block(chars.vocabulary_, chars.idf_, coef, 0)
    words = _block(model.words.vocabulary_, model.words.idf_, coef, len(chars.vocabulary_))
    body = {
        "locale": "en",
        "analyzer": {
            "kind": "char_wb",
            "ngram_range": list(NGRAMS),
            "sublinear_tf": True,
            "norm": "l2",
            "preprocess": "bot.intent_model.preprocess",
        },
        "word_analyzer": {
            "kind": "word",
            "ngram_range": list(WORD_NGRAMS),
            "token_pattern": WORD_TOKEN,
            "sublinear_tf": True,
            "norm": "l2",
            "preprocess": "bot.intent_model.preprocess",
        },
        "classes": [str(c) for c in model.classifier.classes_],
        "intercepts": [float(b) for b in model.classifier.intercept_],
        "thresholds": thresholds,
        "features": features,
        "word_features": words,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {"version": f"en-{digest}", **body, "meta": meta}


# ---------------------------------------------------------------- data and rules


def load_sections() -> dict[str, list[dict[str, str]]]:
    """Reads the labelled file: section name -> messages."""
    raw = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))
    return {name: list(raw.get(name) or []) for name in SECTIONS}


def old_rules(commit: str) -> Callable[[str], str] | None:
    """Returns the detector as it was at `commit`'s parent (code and rules), or None."""
    try:
        code = subprocess.run(
            ["git", "show", f"{commit}^:bot/intent.py"],
            cwd=REPO_DIR,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rules = subprocess.run(
            ["git", "show", f"{commit}^:content/safety/en.yaml"],
            cwd=REPO_DIR,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="intent-replay-"))
    (folder / "safety").mkdir()
    (folder / "safety" / "en.yaml").write_text(rules, encoding="utf-8")
    spec = importlib.util.spec_from_loader(f"_intent_{commit}", loader=None)
    assert spec is not None
    module = ModuleType(spec.name)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(code, f"{commit}^:bot/intent.py", "exec"), module.__dict__)
    module.content_dir = lambda: folder  # type: ignore[attr-defined]
    return lambda text: str(module.detect(text, "en").kind)


def current_rules(text: str) -> str:
    """Returns "none" when the current rules leave a text to the model, else what they found."""
    found = intent.read_text(text, "en")
    return "none" if found.undecided else (found.kind if found.kind != "none" else "handled")


# ---------------------------------------------------------------- evaluation


def group_scores(model: Model, texts: Sequence[str]) -> list[dict[str, float]]:
    """Returns, per text, each question's probability (its classes summed) and "emergency";
    all zero for a text too short for the bot to ask the model (`enough_text`)."""
    probs = model.proba(texts)
    classes = list(model.classifier.classes_)
    out = []
    for text, row in zip(texts, probs, strict=True):
        scores: dict[str, float] = {g: 0.0 for g in GROUP_ORDER}
        if not enough_text(text):
            out.append({**scores, "emergency": 0.0})
            continue
        for c, p in zip(classes, row, strict=True):
            if c in GROUP_OF:
                scores[GROUP_OF[c]] += float(p)
        scores["emergency"] = float(row[classes.index("emergency")])
        out.append(scores)
    return out


Setting = tuple[float, float]  # (threshold, emergency floor)
SETTINGS: tuple[Setting, ...] = tuple((t, f) for t in GRID for f in FLOORS)


def asked(
    scores: dict[str, float], setting: Setting, bars: dict[str, float] | None = None
) -> str | None:
    """Returns the question the model would ask (as `IntentModel.suspect` does), or None.

    `bars` gives each question its own threshold (else the setting's one for all). An
    emergency probability of `EMERGENCY_ASK` or more asks the symptom question whatever the
    bars, as the bot does.
    """
    threshold, floor = setting
    if scores["emergency"] >= EMERGENCY_ASK:
        return "symptom"
    bar = bars or {g: threshold for g in GROUP_ORDER}
    group = next((g for g in GROUP_ORDER if scores[g] >= bar[g]), None)
    if group is not None and scores["emergency"] >= floor:
        return "symptom"
    return group


@dataclass
class Extra:
    """The model's extra calls on messages the rules called neutral."""

    missed: int = 0  # non-neutral messages the rules missed
    caught: int = 0  # ... that got the right question
    asked: int = 0  # questions asked
    right: int = 0  # questions that lead to the right path
    neutral: int = 0  # neutral messages in the set
    neutral_asked: int = 0  # neutral messages that got a question
    emergency_to_stop: int = 0  # emergencies given the stopping question (must stay 0)

    def add(self, label: str, rules_call: str, question: str | None) -> None:
        """Counts one message."""
        if label == "none":
            self.neutral += 1
        if rules_call != "none":
            return
        if label != "none":
            self.missed += 1
        if question is None:
            return
        self.asked += 1
        if label == "none":
            self.neutral_asked += 1
        elif GROUP_OF[label] == question:
            self.right += 1
            self.caught += 1
        if label == "emergency" and question == "stop":
            self.emergency_to_stop += 1

    def figures(self) -> dict[str, Any]:
        """Returns the counts and the two rates the thresholds are chosen on."""
        return {
            **self.__dict__,
            "precision": round(self.right / self.asked, 3) if self.asked else None,
            "neutral_ask_rate": round(self.neutral_asked / self.neutral, 3)
            if self.neutral
            else None,
        }


# One scored message: its label, what the rules called it, and the model's question scores.
Row = tuple[str, str, dict[str, float]]


def cross_validate(messages: list[dict[str, str]], rows: list[Row]) -> dict[Setting, Extra]:
    """5-fold CV over the whole file with the current rules first; one tally per threshold.

    Appends every scored message to `rows` (for the per-question thresholds).
    """
    texts = [m["text"] for m in messages]
    labels = [m["label"] for m in messages]
    calls = [current_rules(t) for t in texts]
    tallies = {t: Extra() for t in SETTINGS}
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    correct = 0
    for train, test in folds.split(texts, labels):
        model = fit([texts[i] for i in train], [labels[i] for i in train])
        scores = group_scores(model, [texts[i] for i in test])
        predicted = model.classifier.classes_[model.proba([texts[i] for i in test]).argmax(1)]
        correct += sum(int(p == labels[i]) for p, i in zip(predicted, test, strict=True))
        for i, s in zip(test, scores, strict=True):
            rows.append((labels[i], calls[i], s))
            for t in SETTINGS:
                tallies[t].add(labels[i], calls[i], asked(s, t))
    print(f"cross-validated accuracy of the model alone: {correct / len(texts):.3f}")
    return tallies


def replay(
    sections: dict[str, list[dict[str, str]]], rows: list[Row]
) -> dict[str, dict[Setting, Extra]]:
    """Replays each earlier blind round with the rules and data that existed before it.

    Appends every scored message to `rows` (for the per-question thresholds).
    """
    out: dict[str, dict[Setting, Extra]] = {}
    for round_name, commit in ROUND_COMMITS.items():
        rules = old_rules(commit)
        if rules is None:
            print(f"{round_name}: no git history here, replay skipped")
            continue
        before = SECTIONS[: SECTIONS.index(round_name)]
        train = [m for name in before for m in sections[name]]
        model = fit([m["text"] for m in train], [m["label"] for m in train])
        test = sections[round_name]
        scores = group_scores(model, [m["text"] for m in test])
        tallies = {t: Extra() for t in SETTINGS}
        for m, s in zip(test, scores, strict=True):
            call = rules(m["text"])
            rows.append((m["label"], call, s))
            for t in SETTINGS:
                tallies[t].add(m["label"], call, asked(s, t))
        out[round_name] = tallies
    return out


def choose(pooled: dict[Setting, Extra], replayed: dict[Setting, Extra]) -> Setting:
    """Returns the lowest threshold (then highest floor) meeting every limit.

    The neutral-ask rate and the emergency check use CV and replays together; precision uses
    the replays only (in CV the current rules have seen every message, so what they miss
    there is almost all neutral, which says little about the model's extra calls).
    """
    for setting in SETTINGS:
        f = pooled[setting].figures()
        precision = replayed[setting].figures()["precision"] or 0
        if (
            f["neutral_ask_rate"] is not None
            and f["neutral_ask_rate"] <= MAX_NEUTRAL_ASK
            and precision >= MIN_PRECISION
            and f["emergency_to_stop"] == 0
        ):
            return setting
    return SETTINGS[-1]


def tally(rows: Sequence[Row], setting: Setting, bars: dict[str, float]) -> Extra:
    """Counts the model's extra calls on `rows` with one threshold per question."""
    out = Extra()
    for label, call, scores in rows:
        out.add(label, call, asked(scores, setting, bars))
    return out


def question_precision(
    rows: Sequence[Row], setting: Setting, bars: dict[str, float], q: str
) -> float:
    """Returns how often question `q`, asked on messages the rules missed, was the right one."""
    right = total = 0
    for label, call, scores in rows:
        if call != "none" or asked(scores, setting, bars) != q:
            continue
        total += 1
        right += int(label != "none" and GROUP_OF[label] == q)
    return right / total if total else 1.0


def neutral_flagged(rows: Sequence[Row], setting: Setting, bars: dict[str, float]) -> float:
    """Returns the share of neutral messages the rules flagged or the model asked about."""
    neutral = [(call, scores) for label, call, scores in rows if label == "none"]
    flagged = sum(
        1
        for call, scores in neutral
        if call not in ("none", "handled") or (call == "none" and asked(scores, setting, bars))
    )
    return flagged / len(neutral) if neutral else 0.0


def per_question(
    setting: Setting, every: Sequence[Row], replayed: Sequence[Row]
) -> dict[str, float]:
    """Lowers each question's threshold on its own, in question order, as far as the limits hold.

    The limits are the shared ones (pooled neutral-ask rate, replay precision, no emergency
    asked about stopping) plus the question's own replay precision: a question that is
    lowered must still be right at least `MIN_PRECISION` of the time.
    """
    threshold, _ = setting
    bars: dict[str, float] = {g: threshold for g in GROUP_ORDER}
    for group in GROUP_ORDER:
        for candidate in (x for x in GRID if x < threshold):
            trial: dict[str, float] = {**bars, group: candidate}
            pooled = tally(every, setting, trial).figures()
            replay_figures = tally(replayed, setting, trial).figures()
            if (
                pooled["neutral_ask_rate"] is not None
                and pooled["neutral_ask_rate"] <= MAX_NEUTRAL_ASK
                and (replay_figures["precision"] or 0) >= MIN_PRECISION
                and pooled["emergency_to_stop"] == 0
                and question_precision(replayed, setting, trial, group) >= MIN_PRECISION
                and neutral_flagged(replayed, setting, trial) <= MAX_NEUTRAL_TOTAL
            ):
                bars[group] = candidate
                break
    return bars


def within_budget(
    setting: Setting, bars: dict[str, float], replayed: Sequence[Row]
) -> dict[str, float]:
    """Raises question thresholds, in `RAISE_ORDER`, one grid step at a time, until the rules
    and the model together flag at most `MAX_NEUTRAL_TOTAL` of the replays' neutral messages
    (or every question is at the top of the grid)."""
    bars = dict(bars)
    for group in RAISE_ORDER:
        while neutral_flagged(replayed, setting, bars) > MAX_NEUTRAL_TOTAL:
            higher = [x for x in GRID if x > bars[group]]
            if not higher:
                break
            bars[group] = higher[0]
    return bars


def pool(*tallies: dict[Setting, Extra]) -> dict[Setting, Extra]:
    """Adds several tallies threshold by threshold."""
    out = {t: Extra() for t in SETTINGS}
    for tally in tallies:
        for t, extra in tally.items():
            for key, value in extra.__dict__.items():
                setattr(out[t], key, getattr(out[t], key) + value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Trains, evaluates, chooses thresholds and writes the model file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="evaluate only; write nothing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    sections = load_sections()
    everything = [m for name in SECTIONS for m in sections[name]]
    cv_rows: list[Row] = []
    replay_rows: list[Row] = []
    cv = cross_validate(everything, cv_rows)
    replays = replay(sections, replay_rows)
    pooled = pool(cv, *replays.values())
    replayed = pool(*replays.values())
    print("threshold floor  asked right neutral_asked/neutral caught/missed emergency->stop")
    for setting in SETTINGS:
        f = pooled[setting].figures()
        r = replayed[setting].figures()
        print(
            f"  {setting[0]:.2f}  {setting[1]:.2f}  {f['asked']:4d} {f['right']:4d}"
            f"   {f['neutral_asked']:3d}/{f['neutral']}        {f['caught']:3d}/{f['missed']}"
            f"      {f['emergency_to_stop']}   replays: precision {r['precision']}"
        )
    setting = choose(pooled, replayed)
    threshold, floor = setting
    print(f"chosen: threshold {threshold}, emergency floor {floor}")
    shared: dict[str, float] = {g: threshold for g in GROUP_ORDER}
    lowered = per_question(setting, cv_rows + replay_rows, replay_rows)
    bars = within_budget(setting, lowered, replay_rows)
    print(f"per question: {lowered}; within the neutral budget: {bars}")
    thresholds: dict[str, float] = dict(bars)
    thresholds["emergency_floor"] = floor
    model = fit([m["text"] for m in everything], [m["label"] for m in everything])
    meta = {
        "trained_on": dict(Counter(m["label"] for m in everything)),
        "sections": list(SECTIONS),
        "config": {
            "C": C,
            "keep": KEEP,
            "decimals": DECIMALS,
            "class_weight": "balanced",
            "blocks": {"char_wb": list(NGRAMS), "word": list(WORD_NGRAMS)},
        },
        "threshold_rule": (
            f"lowest threshold of {GRID[0]}..{GRID[-1]} (then highest emergency floor of "
            f"{FLOORS}) where, pooled over 5-fold CV (current rules first) and the replays "
            f"(rules as before each round), the model's extra questions reach at most "
            f"{MAX_NEUTRAL_ASK:.0%} of neutral messages, lead to the right path at least "
            f"{MIN_PRECISION:.0%} of the time on the replays, and never ask an emergency "
            "about stopping"
        ),
        "cross_validation": cv[setting].figures(),
        "replays": {name: tally[setting].figures() for name, tally in replays.items()},
        "pooled": pooled[setting].figures(),
        "replays_pooled": replayed[setting].figures(),
        "per_question": {
            "rule": (
                "then each question's threshold lowered on its own, in the order "
                f"{GROUP_ORDER}, while the same limits hold and that question is right at "
                f"least {MIN_PRECISION:.0%} of the time on the replays, and the rules and "
                f"model together flag at most {MAX_NEUTRAL_TOTAL:.0%} of the replays' "
                "neutral messages; then, while rules and model together flag more than that, "
                f"thresholds raised a step at a time in the order {RAISE_ORDER} (the question "
                "whose miss costs least first)"
            ),
            "lowered": lowered,
            "neutral_flagged_on_replays": {
                "shared": round(neutral_flagged(replay_rows, setting, shared), 3),
                "per_question": round(neutral_flagged(replay_rows, setting, lowered), 3),
                "within_budget": round(neutral_flagged(replay_rows, setting, bars), 3),
            },
            "pooled": tally(cv_rows + replay_rows, setting, bars).figures(),
            "replays_pooled": tally(replay_rows, setting, bars).figures(),
        },
    }
    data = export(model, thresholds, meta)
    print(json.dumps(meta["replays"], indent=1))
    print(
        f"features: {len(data['features'])} character, {len(data['word_features'])} word, "
        f"version {data['version']}"
    )
    if args.check:
        return 0
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
