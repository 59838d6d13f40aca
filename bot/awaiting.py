"""What her next typed message answers: one typed value, parsed and formatted in one place.

Stored in `Participant.awaiting` as text (a VARCHAR column): `onb:<step>`, `set:<step>`,
`reconsent`, `note:<check-in id>` or `q:add`. Every flow reads and writes it through here, so
the spelling lives in one module and the fallback routes typed text by `Awaiting.kind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.models import Participant


class AwaitKind(StrEnum):
    """Which flow asked for her next typed message."""

    onboarding = "onb"  # a set-up question (arg: the step)
    settings = "set"  # a /settings question (arg: the step)
    reconsent = "reconsent"  # the new consent text waits for a tap
    note = "note"  # the check-in note (arg: the check-in id)
    question = "q"  # a question for her doctor (arg: "add")


@dataclass(frozen=True)
class Awaiting:
    """A parsed `Participant.awaiting` value."""

    kind: AwaitKind
    arg: str = ""

    @classmethod
    def parse(cls, raw: str | None) -> Awaiting | None:
        """Reads a stored value; None when nothing (or nothing readable) is awaited."""
        if not raw:
            return None
        head, _, arg = raw.partition(":")
        try:
            return cls(AwaitKind(head), arg)
        except ValueError:
            return None

    def format(self) -> str:
        """Returns the stored spelling."""
        return f"{self.kind}:{self.arg}" if self.arg else str(self.kind)

    @property
    def checkin_id(self) -> int | None:
        """Returns the check-in a note belongs to (ASCII digits only), else None."""
        if self.kind != AwaitKind.note or not (self.arg.isascii() and self.arg.isdigit()):
            return None
        return int(self.arg)


def awaiting(participant: Participant | None) -> Awaiting | None:
    """Returns what her next typed message answers, if anything."""
    return Awaiting.parse(participant.awaiting) if participant is not None else None


def set_awaiting(participant: Participant, value: Awaiting | None) -> None:
    """Records what her next typed message answers (None: nothing)."""
    participant.awaiting = value.format() if value is not None else None


def stop_awaiting(participant: Participant, kind: AwaitKind) -> None:
    """Forgets an awaited answer of this kind; another flow's stays as it is."""
    current = awaiting(participant)
    if current is not None and current.kind == kind:
        participant.awaiting = None
