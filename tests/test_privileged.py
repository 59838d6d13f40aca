"""Every privileged command and button, tried by everybody: only the right role gets anywhere.

The commands and button families are discovered from `handlers.care_team.HANDLERS`, so a new
one is tried here the day it is registered (and this test asks who may use it). Each person
(a patient, a stranger who never started, a seeded or granted member of staff of each role,
a coordinator whose role was revoked) sends each command and presses each button with forged
data that names real rows. Without the role, a command gets exactly what `/no_such_command`
gets from the same person, a press is answered like an expired button, and nothing changes in
the database. With the role, the command is not taken for an unknown one.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, select
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import clock, lifecycle, roles
from bot.callbacks import Codec, Part
from bot.models import (
    Alert,
    AlertAction,
    AlertStatus,
    AuditEvent,
    OutgoingMessage,
    Participant,
    Role,
    StaffRole,
    StaffState,
)
from handlers import care_team
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

GROUP = -1001234500000
ADMIN = 5_100_000_009
NURSE = 5_100_000_001
GRANTED_NURSE = 5_100_000_002  # coordinator by /grant, not by the settings
REVOKED_NURSE = 5_100_000_003  # was a coordinator; the role was revoked
RESEARCHER = 5_100_000_004
STRANGER = 5_100_000_077  # never pressed Start
TARGET = 5_100_000_088  # the person privileged commands would give a role to

# Who may use each privileged command and button family. A new one fails the test until it is
# added here: deciding who may use it is part of adding it.
COMMAND_WORK: dict[str, frozenset[Role]] = {
    "grant": roles.ADMIN_WORK,
    "revoke": roles.ADMIN_WORK,
    "alerts": roles.COORDINATOR_WORK,
    "participant": roles.COORDINATOR_WORK,
}
BUTTON_WORK: dict[str, frozenset[Role]] = {
    "al": roles.COORDINATOR_WORK,  # act on an alert
    "ax": roles.COORDINATOR_WORK,  # page through /alerts
    "pt": roles.COORDINATOR_WORK,  # open a participant
    "tm": roles.COORDINATOR_WORK,  # pause or withdraw her on her behalf
    "tx": roles.COORDINATOR_WORK,  # write to her
}
# The tables a privileged action could change.
WATCHED: tuple[type[SQLModel], ...] = (
    Alert,
    AlertAction,
    StaffRole,
    AuditEvent,
    Participant,
    OutgoingMessage,
    StaffState,
)


@dataclass(frozen=True)
class Person:
    """Somebody who tries the privileged commands, and the roles they really hold."""

    name: str
    user_id: int
    roles: frozenset[Role]

    def may(self, work: frozenset[Role]) -> bool:
        """Tells whether this person should get past the role check for this work."""
        return bool(self.roles & work)


PEOPLE = [
    Person("patient", PATIENT, frozenset()),
    Person("stranger", STRANGER, frozenset()),
    Person("revoked coordinator", REVOKED_NURSE, frozenset()),
    Person("researcher", RESEARCHER, frozenset({Role.researcher})),
    Person("coordinator", NURSE, frozenset({Role.coordinator})),
    Person("granted coordinator", GRANTED_NURSE, frozenset({Role.coordinator})),
    Person("admin", ADMIN, frozenset({Role.admin})),
]


# ---------------------------------------------------------------- discovery


def privileged_commands() -> list[str]:
    """Returns every command `handlers.care_team` registers."""
    return sorted(
        {
            command
            for handler in care_team.HANDLERS
            if isinstance(handler, CommandHandler)
            for command in handler.commands
        }
    )


def button_codecs() -> list[Codec]:
    """Returns the codec of every button family `handlers.care_team` routes."""
    codecs = [value for value in vars(care_team).values() if isinstance(value, Codec)]
    routed = []
    for handler in care_team.HANDLERS:
        if not isinstance(handler, CallbackQueryHandler):
            continue
        pattern = getattr(handler.pattern, "pattern", handler.pattern)
        found = [c for c in codecs if c.pattern == pattern]
        assert len(found) == 1, f"a button handler needs exactly one codec beside it: {pattern!r}"
        routed.append(found[0])
    return routed


def test_every_privileged_command_and_button_family_says_who_may_use_it() -> None:
    commands = privileged_commands()
    prefixes = [codec.prefix for codec in button_codecs()]
    assert {"grant", "revoke"} <= set(commands) and "al" in prefixes
    assert not set(commands) - COMMAND_WORK.keys(), "add the new command to COMMAND_WORK"
    assert not set(prefixes) - BUTTON_WORK.keys(), "add the new button family to BUTTON_WORK"
    # Researchers may not act on alerts or give roles; nobody but admins may give roles.
    assert Role.researcher not in BUTTON_WORK["al"] | COMMAND_WORK["grant"]
    assert COMMAND_WORK["grant"] == COMMAND_WORK["revoke"] == {Role.admin}


# ---------------------------------------------------------------- the world they act on


@dataclass
class World:
    """A bot with a care team, her red-flag alert in the coordinators' group, and its ids."""

    h: Harness
    alert_id: int
    participant: Participant
    group_message: Any


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    h = await make_harness(
        f"sqlite:///{tmp_path / 'privileged.db'}",
        coordinator_chat_id=GROUP,
        coordinator_ids=[NURSE],
        admin_ids=[ADMIN],
        researcher_ids=[RESEARCHER],
    )
    try:
        participant = await make_active_participant(h.db)
        async with h.db.session() as session:
            session.add(
                StaffRole(telegram_user_id=GRANTED_NURSE, role=Role.coordinator, granted_by="cli")
            )
            session.add(
                StaffRole(
                    telegram_user_id=REVOKED_NURSE,
                    role=Role.coordinator,
                    granted_by="cli",
                    revoked_at=clock.now(),
                    revoked_by="cli",
                )
            )
        await h.command(PATIENT, "checkin")
        for label in ("Yes", "5", "Not stiff", "3", "I had a fall", "Done"):
            await h.press(PATIENT, label)
        await h.tick()
        [message] = h.fake.chat(GROUP)
        async with h.db.session() as session:
            [alert] = (await session.exec(select(Alert))).all()
        yield World(h, alert.id or 0, participant, message)
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def snapshot(w: World) -> dict[str, list[dict[str, Any]]]:
    """Returns every row of the watched tables."""
    found: dict[str, list[dict[str, Any]]] = {}
    async with w.h.db.session() as session:
        for model in WATCHED:
            rows = (await session.exec(select(model))).all()
            found[model.__name__] = sorted(
                (row.model_dump() for row in rows), key=lambda r: sorted(map(str, r.items()))
            )
    return found


async def _participant(w: World) -> Participant:
    async with w.h.db.session() as session:
        found = await session.get(Participant, w.participant.id)
        assert found is not None
        return found


def _command_args(command: str, w: World) -> list[list[str]]:
    """Returns the argument lists to try: none, and real ones where the command takes some."""
    real = {
        "grant": [str(TARGET), "coordinator"],
        "revoke": [str(GRANTED_NURSE), "coordinator"],
        "participant": [w.participant.pseudonym],
    }
    return [[], real[command]] if command in real else [[]]


def _values(part: Part, w: World, her: Participant) -> list[str]:
    """Returns forged values for one field of a button: every choice, or real ids."""
    if part.choices:
        return sorted(part.choices)
    ids = {"alert": w.alert_id, "participant": her.id, "page": 0}
    if part.kind == "id":
        assert part.name in ids, f"teach this test a real id for button field {part.name!r}"
        return [str(ids[part.name])]
    assert part.name == "stamp", f"teach this test a value for button field {part.name!r}"
    return [lifecycle.lifecycle_stamp(her)]  # the real one: a stale stamp would prove nothing


def forged_data(codec: Codec, w: World, her: Participant) -> Iterator[str]:
    """Yields callback data for every combination of real values, short forms included."""
    for length in range(len(codec.parts) - codec.optional, len(codec.parts) + 1):
        fields = [_values(part, w, her) for part in codec.parts[:length]]
        for values in itertools.product(*fields):
            data = ":".join([codec.prefix, *values])
            assert codec.parse(data) is not None, data
            yield data


# ---------------------------------------------------------------- the matrix


def _seen(h: Harness, chat_id: int) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(m.text, m.buttons()) for m in h.fake.chat(chat_id)]


async def _reply_to(
    h: Harness, person: Person, command: str, args: list[str], *, group: int | None = None
) -> list[Any]:
    """Sends a command (in her private chat, or in a group) and returns what came back there."""
    chat = person.user_id if group is None else group
    before = len(h.fake.chat(chat))
    if group is None:
        await h.command(person.user_id, command, *args)
    else:
        await h.process(
            h.updates.command(
                person.user_id, command, *args, chat_id=group, chat_type="supergroup"
            )
        )
    return _seen(h, chat)[before:]


@pytest.mark.parametrize("person", PEOPLE, ids=[p.name for p in PEOPLE])
async def test_privileged_commands_answer_like_an_unknown_command_without_the_role(
    world: World, person: Person
) -> None:
    h = world.h
    unknown = await _reply_to(h, person, "no_such_command", [])
    assert unknown, "an unknown command always gets a reply"
    problems = []
    for command in privileged_commands():
        for args in _command_args(command, world):
            shown = " ".join(["/" + command, *args])
            before = await snapshot(world)
            got = await _reply_to(h, person, command, args)
            if person.may(COMMAND_WORK[command]):
                if got == unknown:
                    problems.append(f"{shown}: the {person.name} got the unknown-command reply")
                continue
            if got != unknown:
                problems.append(f"{shown}: the {person.name} got {got!r}, not {unknown!r}")
            if await snapshot(world) != before:
                problems.append(f"{shown} by the {person.name} changed the database")
    assert not problems, "\n".join(problems)


OTHER_GROUP = -1009876500000  # a group the bot is in that is not the coordinators' group


@pytest.mark.parametrize(
    ("person", "group"),
    [
        pytest.param(person, group, id=f"{person.name} in {place}")
        for person in PEOPLE
        if not person.may(roles.ADMIN_WORK)
        for group, place in ((OTHER_GROUP, "another group"), (GROUP, "the coordinators' group"))
    ],
)
async def test_privileged_commands_in_a_group_answer_like_an_unknown_command_without_the_role(
    world: World, person: Person, group: int
) -> None:
    h = world.h
    unknown = await _reply_to(h, person, "no_such_command", [], group=group)
    problems = []
    for command in privileged_commands():
        if person.may(COMMAND_WORK[command]):
            continue
        for args in _command_args(command, world):
            shown = " ".join(["/" + command, *args])
            before = await snapshot(world)
            got = await _reply_to(h, person, command, args, group=group)
            if got != unknown:
                problems.append(f"{shown}: the {person.name} got {got!r}, not {unknown!r}")
            if await snapshot(world) != before:
                problems.append(f"{shown} by the {person.name} changed the database")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("person", PEOPLE, ids=[p.name for p in PEOPLE])
async def test_privileged_buttons_change_nothing_without_the_role_and_are_answered(
    world: World, person: Person
) -> None:
    h, message = world.h, world.group_message
    await h.process(h.updates.callback(person.user_id, "zz:0", message))
    expired = h.fake.answered_callbacks[-1].get("text")
    assert expired, "a press nobody reads is answered with a toast"
    problems = []
    for codec in button_codecs():
        if person.may(BUTTON_WORK[codec.prefix]):
            continue
        her = await _participant(world)
        for data in forged_data(codec, world, her):
            before = await snapshot(world)
            answered = len(h.fake.answered_callbacks)
            group, own = _seen(h, GROUP), _seen(h, person.user_id)
            await h.process(h.updates.callback(person.user_id, data, message))
            if len(h.fake.answered_callbacks) != answered + 1:
                problems.append(f"{data}: the {person.name}'s press was not answered")
            elif h.fake.answered_callbacks[-1].get("text") != expired:
                toast = h.fake.answered_callbacks[-1].get("text")
                problems.append(f"{data}: the {person.name} was told {toast!r}")
            if (_seen(h, GROUP), _seen(h, person.user_id)) != (group, own):
                problems.append(f"{data}: the {person.name}'s press changed a message")
            if await snapshot(world) != before:
                problems.append(f"{data}: the {person.name}'s press changed the database")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "person", [p for p in PEOPLE if p.may(BUTTON_WORK["al"])], ids=lambda p: p.name
)
async def test_with_the_role_a_press_acts_on_the_alert(world: World, person: Person) -> None:
    h = world.h
    await h.process(
        h.updates.callback(person.user_id, f"al:ack:{world.alert_id}", world.group_message)
    )
    async with h.db.session() as session:
        alert = await session.get(Alert, world.alert_id)
    assert alert is not None and alert.status == AlertStatus.acknowledged
    assert alert.acknowledged_by == roles.staff_actor(person.user_id, h.settings)
    assert "acknowledged by staff:" in h.fake.chat(GROUP)[0].text
