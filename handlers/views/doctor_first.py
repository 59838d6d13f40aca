"""The doctor-first path's buttons (`df:`) and first step, shared by every flow that starts it.

The check-in ("I have stopped taking it"), the /stop menu, /thinking_of_stopping, the page
about stopping and free text all start the same path with `start_view`.

Callback data, one codec per step:
  df:start                          start the path (the button on the page about stopping)
  df:wk:<participant id>:<y|n>      "Are you thinking about stopping your medicine?"
  df:d:<alert>:<n>:<answer>         "Have you talked with your doctor about this?"
  df:c:<alert>:<n>:<change>         what changed (stopped / switched / finished)
  df:m:<alert>:<n>:<medicine>       which medicine she takes now (after a switch)
  df:w:<alert>:<n>:<change>:<medicine or ->:<when>   roughly when (records the change)
  df:b:<alert>:<n>:<barrier>        what makes it hard (records a barrier)
  df:k:<alert>                      "Ask the care team to contact me"
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import doctor_first, education
from bot.callbacks import Codec, choice, id_part
from bot.content import Messages
from bot.doctor_first import ADVISED, PRIVATE
from bot.models import Alert, Participant
from bot.outbox import Buttons
from handlers.common import msgs

log = logging.getLogger(__name__)

NO_MEDICINE = "-"
START = Codec("df:start")
WEAK = Codec("df:wk", (id_part("participant"), choice("answer", "y", "n")))
STEPS: dict[str, Codec] = {
    "d": Codec(
        "df:d", (id_part("alert"), id_part("path"), choice("answer", *doctor_first.DOCTOR_ANSWERS))
    ),
    "c": Codec(
        "df:c", (id_part("alert"), id_part("path"), choice("change", *doctor_first.CHANGES))
    ),
    "m": Codec(
        "df:m", (id_part("alert"), id_part("path"), choice("medicine", *doctor_first.MEDICINES))
    ),
    "w": Codec(
        "df:w",
        (
            id_part("alert"),
            id_part("path"),
            choice("change", *doctor_first.CHANGES),
            choice("medicine", NO_MEDICINE, *doctor_first.MEDICINES),
            choice("when", *doctor_first.WHEN),
        ),
    ),
    "b": Codec(
        "df:b", (id_part("alert"), id_part("path"), choice("barrier", *doctor_first.BARRIERS))
    ),
    "k": Codec("df:k", (id_part("alert"),)),
}
PATTERN = r"^df:"

# Pages offered with the explanation, and with a red flag.
TALK_PAGE, STOPPING_PAGE, WHEN_TO_CALL_PAGE = (
    "talking-with-doctor",
    "about-stopping",
    "when-to-call",
)
# What each trigger says first.
ACK_KEYS = {
    "checkin": "doctor_first.ack_stopped",
    "stop_menu": "doctor_first.ack_thinking",
    "command": "doctor_first.ack_thinking",
    "page": "doctor_first.ack_thinking",
    "free_text": "doctor_first.ack_text",
}
# Triggers that mean she has already stopped (the check-in answer "I have stopped taking it"):
# "talk with your doctor before you decide" no longer fits, so later steps ask her to let her
# doctor know soon instead.
STOPPED_SOURCES = frozenset({"checkin"})
ANSWER_KEYS = {
    ADVISED: "doctor_first.btn_advised",
    doctor_first.NOT_YET: "doctor_first.btn_not_yet",
    PRIVATE: "doctor_first.btn_private",
}


def already_stopped(alert: Alert) -> bool:
    """Tells whether she has told us on this path that she has already stopped."""
    return any(src in STOPPED_SOURCES for src in doctor_first.codes_of(alert, "src"))


def why_doctor_key(alert: Alert) -> str:
    """Returns the key of why the choice belongs with her doctor, or why to tell them soon."""
    if already_stopped(alert):
        return "doctor_first.why_doctor_stopped"
    return "doctor_first.why_doctor"


def call_team_key(alert: Alert) -> str:
    """Returns the key of "please call your care team", for stopped or thinking about it."""
    if already_stopped(alert):
        return "doctor_first.call_team_stopped"
    return "doctor_first.call_team"


def unavailable(participant: Participant | None) -> str:
    """Returns why the path cannot record anything for this person."""
    if participant is not None and participant.has_left:
        return msgs(participant).get("doctor_first.left")
    return msgs(participant).get("doctor_first.not_joined")


def step_one(participant: Participant, alert: Alert, source: str) -> tuple[str, Buttons]:
    """Returns the thank-you and "Have you talked with your doctor about this?"."""
    m = msgs(participant)
    n = doctor_first.path_number(alert)
    text = m.get(ACK_KEYS.get(source, "doctor_first.ack_text")) + "\n\n"
    text += m.get("doctor_first.ask_doctor")
    rows: Buttons = [
        [(m.get(key), STEPS["d"].build(alert.id, n, answer))]
        for answer, key in ANSWER_KEYS.items()
    ]
    return text, rows


async def start_view(
    *,
    session: AsyncSession,
    participant: Participant | None,
    source: str,
    checkin_id: int | None = None,
) -> tuple[str, Buttons | None]:
    """Starts the path (one open alert row, updated on repeats) and returns its first step."""
    if participant is None or not doctor_first.may_record(participant):
        return unavailable(participant), None
    alert = await doctor_first.start_path(
        session=session, participant=participant, source=source, checkin_id=checkin_id
    )
    log.info("doctor-first path: participant %s, source %s", participant.id, source)
    return step_one(participant, alert, source)


def page_buttons(m: Messages, *page_ids: str) -> Buttons:
    """Returns one button per page, labelled with the page title."""
    rows: Buttons = []
    for page_id in page_ids:
        page = education.page(page_id, m.locale)
        if page is not None:
            rows.append([(page.title, education.page_callback(page.id))])
    return rows


def weak_question(participant: Participant) -> tuple[str, Buttons]:
    """Returns "Are you thinking about stopping your medicine?" with Yes / No."""
    m = msgs(participant)
    rows: Buttons = [
        [
            (m.get("doctor_first.btn_yes"), WEAK.build(participant.id, "y")),
            (m.get("doctor_first.btn_no"), WEAK.build(participant.id, "n")),
        ]
    ]
    return m.get("doctor_first.weak_ask"), rows
