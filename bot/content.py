"""Loads user-facing text from `content/`: messages per locale, questionnaires, countries.

Every sentence a person reads comes from here; Python code refers to messages by key.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.paths import content_dir

DEFAULT_LOCALE = "en"


class ContentError(Exception):
    """The content folder is missing a file or key, or a file is malformed."""


# libyaml's parser when PyYAML was built with it (the PyPI wheels are): the same documents,
# faster than the pure-Python one, which start-up and every test pay for.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """Parses YAML text as `yaml.safe_load` does (plain data only), with libyaml if present."""
    return yaml.load(text, Loader=_SAFE_LOADER)


def _flatten(prefix: str, node: Any, out: dict[str, str], source: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out, source)
    elif isinstance(node, str):
        if prefix in out:
            raise ContentError(f"message key {prefix!r} defined twice ({source})")
        out[prefix] = node.rstrip("\n")
    else:
        raise ContentError(f"message {prefix!r} in {source} must be text")


@dataclass(frozen=True)
class Messages:
    """Messages for one locale, keyed '<file stem>.<key>' (e.g. 'checkin.closed')."""

    locale: str
    texts: dict[str, str]

    def get(self, key: str, **params: object) -> str:
        """Returns the message for `key` with `{name}` fields filled in."""
        try:
            template = self.texts[key]
        except KeyError as exc:
            raise ContentError(f"missing message {key!r} for locale {self.locale!r}") from exc
        if not params:
            return template
        return template.format(**params)

    def has(self, key: str) -> bool:
        """Tells whether a message exists (for keys built from codes, with a fallback)."""
        return key in self.texts

    def fields(self, key: str) -> set[str]:
        """Returns the `{name}` fields a message expects."""
        return {name for _, name, _, _ in string.Formatter().parse(self.texts[key]) if name}


def load_messages(locale: str, root: Path | None = None) -> Messages:
    """Loads every `messages/<locale>/*.yaml`; a missing locale falls back to English."""
    base = (root or content_dir()) / "messages"
    folder = base / locale
    if not folder.is_dir():
        folder = base / DEFAULT_LOCALE
    texts: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
        _flatten(path.stem, data, texts, path)
    if not texts:
        raise ContentError(f"no messages found under {folder}")
    return Messages(locale=folder.name, texts=texts)


@lru_cache(maxsize=8)
def messages(locale: str = DEFAULT_LOCALE) -> Messages:
    """Returns the cached messages for a locale."""
    return load_messages(locale)


def t(key: str, locale: str = DEFAULT_LOCALE, /, **params: object) -> str:
    """Returns one message, in the participant's locale, with parameters filled in."""
    return messages(locale).get(key, **params)


def load_yaml(relative: str) -> Any:
    """Reads one YAML file under `content/`."""
    path = content_dir() / relative
    if not path.is_file():
        raise ContentError(f"missing content file {path}")
    return parse_yaml(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- questionnaires


@dataclass(frozen=True)
class Option:
    """One answer choice of a check-in item."""

    value: str
    label: dict[str, str]

    def text(self, locale: str) -> str:
        """Returns the label in a locale (English when missing)."""
        return self.label.get(locale) or self.label[DEFAULT_LOCALE]


@dataclass(frozen=True)
class Item:
    """One question of a questionnaire."""

    code: str
    type: str  # single | scale | multi | text
    wording: dict[str, str]
    options: tuple[Option, ...] = ()
    scale_min: int = 0
    scale_max: int = 10
    anchors: dict[str, str] = field(default_factory=dict)
    optional: bool = False
    # Skip this item when an earlier item has one of these values: {item_code: [values]}.
    skip_if: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exclusive: tuple[str, ...] = ()  # multi: values that clear the others (e.g. "none")
    summary_label: dict[str, str] = field(default_factory=dict)

    def text(self, locale: str) -> str:
        """Returns the question wording in a locale (English when missing)."""
        return self.wording.get(locale) or self.wording[DEFAULT_LOCALE]

    def values(self) -> list[str]:
        """Returns every value a button may carry for this item."""
        if self.type == "scale":
            return [str(v) for v in range(self.scale_min, self.scale_max + 1)]
        return [o.value for o in self.options]

    def option(self, value: str) -> Option | None:
        """Returns the option with this value, if any."""
        return next((o for o in self.options if o.value == value), None)


@dataclass(frozen=True)
class Questionnaire:
    """A versioned questionnaire from `content/questionnaires/`."""

    id: str
    version: str
    items: tuple[Item, ...]
    title: dict[str, str]

    def item(self, code: str) -> Item | None:
        """Returns the item with this code, if any."""
        return next((i for i in self.items if i.code == code), None)


def _parse_item(raw: dict[str, Any]) -> Item:
    options = tuple(
        Option(value=str(o["value"]), label=dict(o["label"])) for o in raw.get("options", [])
    )
    scale = raw.get("scale", {})
    return Item(
        code=str(raw["code"]),
        type=str(raw["type"]),
        wording=dict(raw["wording"]),
        options=options,
        scale_min=int(scale.get("min", 0)),
        scale_max=int(scale.get("max", 10)),
        anchors=dict(scale.get("anchors", {})),
        optional=bool(raw.get("optional", False)),
        skip_if={k: tuple(str(v) for v in vs) for k, vs in raw.get("skip_if", {}).items()},
        exclusive=tuple(str(v) for v in raw.get("exclusive", [])),
        summary_label=dict(raw.get("summary_label", {})),
    )


@lru_cache(maxsize=8)
def questionnaire(qid: str = "daily_checkin") -> Questionnaire:
    """Loads `content/questionnaires/<qid>.yaml`."""
    raw = load_yaml(f"questionnaires/{qid}.yaml")
    q = Questionnaire(
        id=str(raw["id"]),
        version=str(raw["version"]),
        title=dict(raw.get("title", {})),
        items=tuple(_parse_item(i) for i in raw["items"]),
    )
    if q.id != qid:
        raise ContentError(f"questionnaire file {qid}.yaml declares id {q.id!r}")
    return q


# ---------------------------------------------------------------- consent


@dataclass(frozen=True)
class ConsentText:
    """The consent text shown before anything else is stored."""

    version: str
    text: str


@lru_cache(maxsize=8)
def consent_text(locale: str = DEFAULT_LOCALE) -> ConsentText:
    """Loads `content/consent/<locale>.yaml` (English when missing)."""
    path = content_dir() / "consent" / f"{locale}.yaml"
    if not path.is_file():
        path = content_dir() / "consent" / f"{DEFAULT_LOCALE}.yaml"
    raw = parse_yaml(path.read_text(encoding="utf-8"))
    return ConsentText(version=str(raw["version"]), text=str(raw["text"]).strip())
