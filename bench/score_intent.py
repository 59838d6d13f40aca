"""Scores a labelled set of free-text messages through the detector AND through the real bot.

For a blind round: run it ONCE on the new file, before any change made because of it.

    .venv/bin/python bench/score_intent.py tests/data/intent_labelled_en.yaml
    .venv/bin/python bench/score_intent.py blind_round5.yaml --misses

The file has the labelled format: top-level lists (`messages:`, and any other section) of
`- text: ... / label: ...`, labels `emergency`, `red_flag`, `stop_intent`, `stop_intent_weak`,
`unsubscribe`, `none`. `--section` limits it to some sections.

1. **Detector**: `bot.intent.read_text` (every rule book, as the bot reads her text). Recall
   and precision per label, and for "stopping" (strong and weak together).
2. **Handlers**: each message is typed by its own onboarded participant (country GB) into
   the real Application over a fresh SQLite file and the fake Bot API (as the tests do), with
   the intent model wired in as the bot has it. The replies she got are sorted into reply
   paths by the sentences of the message catalogue: emergency, red flag, doctor-first,
   unsubscribe, clarifying question, neutral. When the reply is a clarifying question, her
   "Yes" is pressed and the path it leads to is recorded too: a clarifying question that
   leads to the right path counts as a catch.

Catches: emergency -> emergency path; red_flag -> red-flag path; stop_intent and
stop_intent_weak -> doctor-first path (for a weak label the stopping question itself is the
right answer, so it counts too); unsubscribe -> the pause-or-leave menu. For `none`, it
prints the share that got a clarifying question or any safety path (the false-alarm rate).
Nothing here reads or writes the project's database; patient text is printed only with
`--misses` (the file is the user's own test set).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import clock  # noqa: E402
from bot.content import ContentError  # noqa: E402
from bot.intent import read_text  # noqa: E402
from handlers.common import msgs  # noqa: E402

LABELS = ("emergency", "red_flag", "stop_intent", "stop_intent_weak", "unsubscribe", "none")
# Reply paths, most serious first.
PATHS = ("emergency", "red_flag", "doctor_first", "unsubscribe", "clarify", "neutral")
# What counts as a catch for each label.
RIGHT_PATH = {
    "emergency": {"emergency"},
    "red_flag": {"red_flag"},
    "stop_intent": {"doctor_first"},
    "stop_intent_weak": {"doctor_first", "ask_stopping"},
    "unsubscribe": {"unsubscribe"},
}
FIRST_ID = 6_000_000_000


@dataclass(frozen=True)
class Item:
    """One labelled message."""

    section: str
    text: str
    label: str


def load(path: Path, sections: list[str] | None) -> list[Item]:
    """Reads every labelled message of the file (or of the named sections)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    items = []
    for section, rows in data.items():
        if not isinstance(rows, list) or (sections and section not in sections):
            continue
        for row in rows:
            if isinstance(row, dict) and "text" in row and "label" in row:
                label = str(row["label"])
                if label not in LABELS:
                    raise SystemExit(f"{path}: unknown label {label!r}")
                items.append(Item(section, str(row["text"]), label))
    return items


# ---------------------------------------------------------------- sorting replies into paths


def _sentence(key: str, *, skip_thanks: bool = True) -> str | None:
    """Returns the first sentence of a catalogue message that names no placeholder."""
    try:
        text = msgs().get(key, emergency="\x00", crisis="\x00")
    except (ContentError, KeyError):
        return None  # a message another flow owns may not exist in this tree
    for sentence in re.split(r"(?<=[.?!])\s+", text):
        sentence = sentence.strip()
        if not sentence or "\x00" in sentence:
            continue
        if skip_thanks and sentence.startswith("Thank you"):
            continue
        return sentence
    return None


def markers() -> dict[str, list[str]]:
    """Returns, per reply path, sentences that only that path's reply says."""
    wanted = {
        "emergency": ["doctor_first.emergency", "free_text.self_harm"],
        "red_flag": ["doctor_first.red_flag"],
        "doctor_first": ["doctor_first.ask_doctor"],
        "unsubscribe": ["doctor_first.unsubscribe"],
        "ask_stopping": ["doctor_first.weak_ask"],
        "clarify": ["clarify.ask_symptom", "clarify.ask_fewer"],
    }
    found = {
        path: [s for key in keys if (s := _sentence(key)) is not None]
        for path, keys in wanted.items()
    }
    return found


def paths_of(texts: list[str], marks: dict[str, list[str]]) -> set[str]:
    """Returns every reply path the texts show (ask_stopping also counts as clarify)."""
    joined = "\n".join(texts)
    seen = {path for path, sentences in marks.items() if any(s in joined for s in sentences)}
    if "ask_stopping" in seen:
        seen.add("clarify")
    return seen or {"neutral"}


def top_path(seen: set[str]) -> str:
    """Returns the most serious path of a reply."""
    return next((p for p in PATHS if p in seen), "neutral")


# ---------------------------------------------------------------- running the real bot


async def through_handlers(items: list[Item]) -> list[tuple[set[str], set[str]]]:
    """Types each message as its own participant; returns (paths, paths after "Yes")."""
    from tests.conftest import START, make_harness
    from tests.factories import make_active_participant

    clock.freeze(START)
    marks = markers()
    yes = msgs().get("doctor_first.btn_yes")
    results: list[tuple[set[str], set[str]]] = []
    with tempfile.TemporaryDirectory(prefix="score-intent-") as tmp:
        h = await make_harness(f"sqlite:///{Path(tmp) / 'score.db'}")
        try:
            for n, item in enumerate(items):
                user = FIRST_ID + n
                await make_active_participant(h.db, telegram_user_id=user)
                await h.send(user, item.text)
                seen = paths_of(h.texts(user), marks)
                after: set[str] = set()
                if "clarify" in seen and any(
                    label == yes for m in h.fake.chat(user) for label, _ in m.buttons()
                ):
                    before = len(h.texts(user))
                    await h.press(user, yes)
                    after = paths_of(h.texts(user)[before:], marks) - {"neutral"}
                results.append((seen, after))
        finally:
            await h.app.shutdown()
            await h.db.dispose()
            clock.reset()
    return results


# ---------------------------------------------------------------- reporting


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.2f}" if den else "  - "


def detector_table(items: list[Item]) -> list[str]:
    """Returns the detector's recall and precision per label (and for stopping together)."""
    got = [read_text(i.text).kind for i in items]
    lines = ["Detector (bot.intent.read_text)", f"{'label':<18}{'n':>5}{'recall':>8}{'prec':>7}"]
    for label in LABELS:
        n = sum(1 for i in items if i.label == label)
        tp = sum(1 for i, g in zip(items, got, strict=True) if i.label == label and g == label)
        fp = sum(1 for i, g in zip(items, got, strict=True) if i.label != label and g == label)
        lines.append(f"{label:<18}{n:>5}{_ratio(tp, n):>8}{_ratio(tp, tp + fp):>7}")
    stop = {"stop_intent", "stop_intent_weak"}
    n = sum(1 for i in items if i.label in stop)
    tp = sum(1 for i, g in zip(items, got, strict=True) if i.label in stop and g in stop)
    lines.append(f"{'stopping (both)':<18}{n:>5}{_ratio(tp, n):>8}")
    none = [g for i, g in zip(items, got, strict=True) if i.label == "none"]
    flagged = sum(1 for g in none if g != "none")
    lines.append(
        f"neutral flagged by the rules: {flagged}/{len(none)} ({_ratio(flagged, len(none))})"
    )
    return lines


def handler_table(
    items: list[Item], results: list[tuple[set[str], set[str]]], show: bool
) -> list[str]:
    """Returns recall per label through the real handlers, and the neutral false-alarm share."""
    caught: Counter[str] = Counter()
    via_question: Counter[str] = Counter()
    totals: Counter[str] = Counter(i.label for i in items)
    paths: dict[str, Counter[str]] = defaultdict(Counter)
    misses: list[str] = []
    for item, (seen, after) in zip(items, results, strict=True):
        paths[item.label][top_path(seen)] += 1
        if item.label == "none":
            if top_path(seen) != "neutral":
                caught["none"] += 1
                misses.append(f"  none -> {top_path(seen)}: {item.text}")
            continue
        right = RIGHT_PATH[item.label]
        if seen & right:
            caught[item.label] += 1
        elif after & right:
            caught[item.label] += 1
            via_question[item.label] += 1
        else:
            misses.append(
                f"  {item.label} -> {top_path(seen)}"
                + (f" (Yes -> {top_path(after)})" if after else "")
                + f": {item.text}"
            )
    lines = [
        "",
        "Through the handlers (reply path; a clarifying question that leads there counts)",
    ]
    lines.append(f"{'label':<18}{'n':>5}{'recall':>8}{'via Q':>7}   top reply paths")
    for label in LABELS[:-1]:
        spread = ", ".join(f"{p} {c}" for p, c in paths[label].most_common())
        lines.append(
            f"{label:<18}{totals[label]:>5}{_ratio(caught[label], totals[label]):>8}"
            f"{via_question[label]:>7}   {spread}"
        )
    stop = ("stop_intent", "stop_intent_weak")
    n = sum(totals[s] for s in stop)
    lines.append(f"{'stopping (both)':<18}{n:>5}{_ratio(sum(caught[s] for s in stop), n):>8}")
    spread = ", ".join(f"{p} {c}" for p, c in paths["none"].most_common())
    lines.append(
        f"neutral with a clarifying question or safety path: {caught['none']}/{totals['none']}"
        f" ({_ratio(caught['none'], totals['none'])}); {spread}"
    )
    if show and misses:
        lines += ["", "Misses and false alarms:", *misses]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="YAML file in the labelled format")
    parser.add_argument("--section", action="append", help="only these sections (repeatable)")
    parser.add_argument("--detector-only", action="store_true", help="skip the handler run")
    parser.add_argument("--misses", action="store_true", help="list misses and false alarms")
    args = parser.parse_args(argv)
    items = load(args.file, args.section)
    if not items:
        raise SystemExit(f"{args.file}: no labelled messages")
    print(f"{args.file}: {len(items)} messages")
    print("\n".join(detector_table(items)))
    if not args.detector_only:
        results = asyncio.run(through_handlers(items))
        print("\n".join(handler_table(items, results, args.misses)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
