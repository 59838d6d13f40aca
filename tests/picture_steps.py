"""Two weeks of check-ins answered through the real handlers, for the picture tests.

Each evening at 19:00 London time the dispatcher sends her check-in (`h.tick()`); she answers
it with button presses, or on purpose leaves it unanswered so it closes as missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select

from bot import clock
from bot.models import CheckIn, CheckInStatus, Participant
from tests.conftest import PATIENT, START, Harness
from tests.factories import make_active_participant

FIRST_EVENING = START.replace(hour=19)  # London is on UTC in January


@dataclass(frozen=True)
class Evening:
    """What she answers one evening; None means she does not answer at all."""

    pain: int
    took: str = "yes"
    interference: int | None = None  # defaults to pain - 1 (skipped when pain is 0)
    symptoms: tuple[str, ...] = ()


# 14 evenings from Monday 12 January; None = a missed check-in (days 4, 8, 9 and 12).
TWO_WEEKS: list[Evening | None] = [
    Evening(pain=2),
    Evening(pain=3),
    Evening(pain=4),
    None,
    Evening(pain=5, took="missed"),
    Evening(pain=6, symptoms=("swelling",)),
    Evening(pain=0),
    None,
    None,
    Evening(pain=7, took="missed"),
    Evening(pain=6, symptoms=("numbness", "fall")),
    None,
    Evening(pain=5),
    Evening(pain=4),
]
ANSWERED = [e for e in TWO_WEEKS if e is not None]


async def open_checkin(h: Harness, participant_id: int) -> CheckIn:
    """Returns her newest check-in that was sent and is still open."""
    async with h.db.session() as session:
        result = await session.exec(
            select(CheckIn)
            .where(
                CheckIn.participant_id == participant_id,
                col(CheckIn.status).in_([CheckInStatus.sent, CheckInStatus.partial]),
            )
            .order_by(col(CheckIn.due_at).desc())
        )
        checkin = result.first()
    assert checkin is not None, "no check-in was sent"
    return checkin


async def answer(h: Harness, participant_id: int, evening: Evening, uid: int = PATIENT) -> None:
    """Answers her open check-in with one-tap presses, as she would."""
    checkin = await open_checkin(h, participant_id)

    def data(item: str, value: str) -> str:
        """Returns the callback data of one answer button."""
        return f"ci:{checkin.id}:{item}:{value}"

    await h.press(uid, data("took_med", evening.took))
    await h.press(uid, data("worst_pain", str(evening.pain)))
    await h.press(uid, data("stiffness", "none"))
    if evening.pain > 0:
        interference = evening.interference
        value = evening.pain - 1 if interference is None else interference
        await h.press(uid, data("interference", str(value)))
    if evening.symptoms:
        for symptom in evening.symptoms:
            await h.press(uid, data("new_symptoms", "+" + symptom))
        await h.press(uid, data("new_symptoms", "done"))
    else:
        await h.press(uid, data("new_symptoms", "none"))
    await h.press(uid, data("note", "skip"))


async def live_two_weeks(
    h: Harness, evenings: list[Evening | None] | None = None, uid: int = PATIENT
) -> Participant:
    """Makes her an active participant and lives through the evenings, one check-in each."""
    participant = await make_active_participant(h.db, telegram_user_id=uid)
    assert participant.id is not None
    await h.tick()  # plans the first check-in
    for day, evening in enumerate(evenings if evenings is not None else TWO_WEEKS):
        clock.advance(FIRST_EVENING + timedelta(days=day) - clock.now())
        await h.tick()  # sends tonight's check-in (and closes last night's if unanswered)
        if evening is not None:
            await answer(h, participant.id, evening, uid)
    clock.advance(timedelta(hours=1))
    return participant
