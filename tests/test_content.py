"""Content lint: every message key used exists and is used, fits Telegram, and keeps the lock
screen neutral; every questionnaire and consent file loads."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot import clock
from bot.content import consent_text, load_messages, questionnaire
from bot.models import CheckIn, CheckInStatus, Lifecycle, OutgoingMessage, Participant
from bot.paths import REPO_DIR, content_dir
from bot.safety_scan import lock_screen_pattern
from tests.conftest import PATIENT, Harness

TELEGRAM_LIMIT = 4096
SCANNED = [REPO_DIR / "bot", REPO_DIR / "handlers"]
DYNAMIC_KEYS_FILE = content_dir() / "messages" / "dynamic_keys.yaml"
# Words that must never be on a lock screen: what the bot starts shows before she unlocks.
# The list lives in content/safety/lockscreen_en.yaml, shared with the broadcast check.
_LOCK_WORD = lock_screen_pattern("en")


def _python_files() -> Iterator[Path]:
    for root in SCANNED:
        for path in sorted(root.rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _stems() -> set[str]:
    return {p.stem for p in (content_dir() / "messages" / "en").glob("*.yaml")}


def _key_like(stems: set[str]) -> re.Pattern[str]:
    return re.compile(r"^(" + "|".join(sorted(stems)) + r")(\.[a-z0-9_]+)+$")


def _not_message_literals(tree: ast.AST) -> set[int]:
    """Returns ids of string nodes that only look like keys: f-string pieces, 'table.column'."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        elif isinstance(node, ast.keyword) and node.arg == "foreign_key":
            skip.add(id(node.value))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ForeignKey":
            skip.update(id(a) for a in node.args)
    return skip


def _scan() -> tuple[dict[str, list[str]], list[re.Pattern[str]]]:
    """Returns literal keys (with where they appear) and patterns of keys built at run time."""
    stems = _stems()
    key_like = _key_like(stems)
    literals: dict[str, list[str]] = {}
    dynamic: list[re.Pattern[str]] = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = str(path.relative_to(REPO_DIR))
        not_keys = _not_message_literals(tree)
        for node in ast.walk(tree):
            if id(node) in not_keys:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if key_like.match(node.value):
                    literals.setdefault(node.value, []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.JoinedStr):
                # f"commands.{name}" uses every key of the form commands.<something>.
                parts = [
                    re.escape(v.value) if isinstance(v, ast.Constant) else r"[a-z0-9_.]+"
                    for v in node.values
                ]
                pattern = "".join(parts)
                head = node.values[0] if node.values else None
                if isinstance(head, ast.Constant) and str(head.value).split(".")[0] in stems:
                    dynamic.append(re.compile(f"^{pattern}$"))
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
                and node.left.value.split(".")[0] in stems
                and "." in node.left.value
            ):
                dynamic.append(re.compile("^" + re.escape(node.left.value) + r"[a-z0-9_.]+$"))
    return literals, dynamic


def _allowlisted() -> set[str]:
    if not DYNAMIC_KEYS_FILE.is_file():
        return set()
    data = yaml.safe_load(DYNAMIC_KEYS_FILE.read_text(encoding="utf-8")) or {}
    return {str(k) for k in data.get("keys", [])}


def _keys_named_in_content(keys: set[str]) -> set[str]:
    """Returns message keys that content files (other than messages) refer to by name."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node in keys:
            found.add(node)

    for path in content_dir().rglob("*.yaml"):
        if "messages" not in path.relative_to(content_dir()).parts:
            walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return found


def test_every_message_key_used_in_code_exists() -> None:
    texts = load_messages("en").texts
    literals, _ = _scan()
    missing = {key: where for key, where in literals.items() if key not in texts}
    assert not missing, f"keys used in code but missing from content/messages/en: {missing}"


def test_every_defined_message_key_is_used_somewhere() -> None:
    texts = load_messages("en").texts
    literals, dynamic = _scan()
    used = set(literals) | _allowlisted() | _keys_named_in_content(set(texts))
    unused = sorted(
        key for key in texts if key not in used and not any(p.match(key) for p in dynamic)
    )
    assert not unused, (
        "message keys defined in content/messages/en but used nowhere in bot/ or handlers/ "
        f"(delete them, or list keys built at run time in {DYNAMIC_KEYS_FILE.name}): {unused}"
    )


def test_every_message_fits_in_one_telegram_message() -> None:
    messages = load_messages("en")
    too_long = {}
    for key, template in messages.texts.items():
        # Parameters are short values (a number, a time, a label); allow 100 characters each.
        filled = template.format(**{f: "x" * 100 for f in messages.fields(key)})
        if len(filled) > TELEGRAM_LIMIT:
            too_long[key] = len(filled)
    assert not too_long, f"messages longer than {TELEGRAM_LIMIT} characters: {too_long}"


def test_every_message_template_is_well_formed() -> None:
    messages = load_messages("en")
    for key in messages.texts:
        messages.fields(key)  # raises on a stray '{' or '}'


def test_other_locales_define_only_keys_english_has_with_the_same_fields() -> None:
    english = load_messages("en")
    for folder in (content_dir() / "messages").iterdir():
        if not folder.is_dir() or folder.name == "en":
            continue
        other = load_messages(folder.name)
        extra = set(other.texts) - set(english.texts)
        assert not extra, f"{folder.name} has keys English lacks: {sorted(extra)}"
        for key in other.texts:
            assert other.fields(key) == english.fields(key), f"{folder.name}:{key} fields differ"


def test_every_questionnaire_loads_with_unique_item_codes() -> None:
    files = sorted((content_dir() / "questionnaires").glob("*.yaml"))
    assert files
    for path in files:
        q = questionnaire(path.stem)
        codes = [item.code for item in q.items]
        assert len(codes) == len(set(codes)), f"{path.name}: duplicate item codes"
        assert q.version
        for item in q.items:
            assert item.text("en").strip()
            assert len(item.text("en")) < TELEGRAM_LIMIT
            if item.type in {"single", "multi"}:
                assert item.options, f"{path.name}:{item.code} has no options"
            for code in item.skip_if:
                assert code in codes, f"{path.name}:{item.code} skips on unknown item {code}"


def test_every_consent_file_loads_and_fits_in_one_message() -> None:
    files = sorted((content_dir() / "consent").glob("*.yaml"))
    assert files
    for path in files:
        consent = consent_text(path.stem)
        assert consent.version and consent.text
        assert len(consent.text) <= TELEGRAM_LIMIT - 500, f"{path.name} leaves no room"


def test_check_in_reminder_and_reconsent_message_texts_open_without_lock_screen_words() -> None:
    texts = load_messages("en").texts
    starters = {
        key: text
        for key, text in texts.items()
        if re.search(
            r"(^|\.)(checkin\.(intro|on_demand_intro)|[a-z_]*reminder[a-z_]*|reconsent)$", key
        )
        or key.split(".")[0] in {"reminder", "reminders", "reconsent"}
    }
    assert starters, "found no check-in / reminder / re-consent messages to check"
    flagged = {
        k: v.splitlines()[0]
        for k, v in starters.items()
        if _LOCK_WORD.search(v.splitlines()[0] if v else "")
    }
    assert not flagged, f"first lines that would show on a lock screen: {flagged}"


async def test_rendered_check_in_reminder_and_reconsent_open_without_lock_screen_words(
    harness: Harness,
) -> None:
    renderers = harness.app.bot_data.renderers
    assert {"checkin", "reminder", "reconsent"} <= set(renderers)
    q = questionnaire("daily_checkin")
    async with harness.db.session() as session:
        participant = Participant(
            telegram_user_id=PATIENT,
            chat_id=PATIENT,
            pseudonym="p_lockscreen",
            status=Lifecycle.active,
            timezone="Europe/London",
            consent_version="0.0-old",  # an older version, so a re-consent is due
            medicine="letrozole",
        )
        session.add(participant)
        await session.flush()
        assert participant.id is not None
        checkin = CheckIn(
            participant_id=participant.id,
            questionnaire_id=q.id,
            questionnaire_version=q.version,
            due_at=clock.now(),
            window_closes_at=clock.now() + timedelta(hours=6),
            sent_at=clock.now(),
            status=CheckInStatus.sent,
        )
        session.add(checkin)
        await session.flush()
        for kind in ("checkin", "reminder", "reconsent"):
            row = OutgoingMessage(
                kind=kind, chat_id=PATIENT, participant_id=participant.id, checkin_id=checkin.id
            )
            rendered = await renderers[kind](session, row, participant)
            assert not rendered.skip, f"{kind} was not rendered"
            first_line = rendered.text.strip().splitlines()[0]
            assert first_line.strip()
            assert not _LOCK_WORD.search(first_line), f"{kind} opens with {first_line!r}"
            assert len(rendered.text) <= TELEGRAM_LIMIT


@pytest.mark.parametrize("word", ["Letrozole", "breast", "hormones"])
def test_lock_screen_word_list_catches_what_it_should(word: str) -> None:
    assert _LOCK_WORD.search(f"About your {word} today")
