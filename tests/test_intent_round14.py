"""Issue 13, after blind round 14: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set), in
words other than the round's own.

Kinds: one dose missed, told by a relative, with a day or a lapse of memory, or in another
language with a book (de, tl, es, pt, it, fr, nl, hi, pl); a relative telling that she is not
taking it any more (English, Spanish, Spanglish); tablets left at home for a holiday; fewer
messages asked as what she would rather not get; a new lump along her scar, a new lump in
Portuguese, back pain at night or at rest in German; and false alarms that stay quiet (asking
for more messages, carrying on with a countdown or resolve, a normal reading beside a feverish
feeling, breathless from a climb that was worth it).
"""

from __future__ import annotations

import pytest

from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_no_safety_path,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
)

WEAK = [
    # A relative tells of one missed dose.
    "my wife forgot her pill at breakfast today",
    "Dad says Mum missed her tablet yesterday evening",
    "Nan didn't take her tablet last night, she was at bingo",
    # A day or a lapse of memory.
    "I never took it on Tuesday, completely went out of my head",
    "missed Friday's one, it totally escaped me",
    "forgot to take it on Saturday, my mind was elsewhere",
    "had a busy Monday and it went clean out of my head to take it",
    # Other books.
    "ich habe meine Tablette heute morgen vergessen",
    "habe gestern die Tablette nicht genommen",
    "vergaß meine Tablette am Sonntag",
    "nakalimutan ko ang gamot ko kahapon",
    "hindi ko nainom ang tableta kanina",
    "nakalimutan niyang inumin ang gamot niya kagabi",
    "se me olvidó tomar la pastilla anoche",
    "ayer no me tomé la pastilla",
    "esqueci-me do comprimido ontem à noite",
    "ho dimenticato la pillola ieri sera",
    "ieri sera ho saltato la compressa",
    "j'ai oublié mon comprimé ce matin",
    "hier soir j'ai oublié de prendre le cachet",
    "ik ben mijn pil vergeten gisteren",
    "heb vanochtend mijn tablet niet ingenomen",
    "aaj dawai lena bhool gayi",
    "zapomniałam wziąć tabletkę wczoraj",
]


@pytest.mark.parametrize("text", WEAK)
async def test_one_missed_dose_in_any_words_gets_the_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


STOPPING = [
    # A relative tells that she is not taking it any more.
    "my aunt isn't taking her pills anymore, she's decided",
    "my daughter here, Mum refuses to take the letrozole now",
    "Gran has stopped taking her pills, won't tell us why",
    "mi mamá ya no quiere las pastillas, she's over it",
    "she's done with the medicina, no la toma anymore",
    # Tablets left at home for a holiday.
    "the tablets are staying at home while I'm in Spain for a fortnight",
    "not bringing the letrozole on the cruise, I deserve a break from it",
    "leaving the letrozole at home while we're in Greece",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_a_relatives_report_or_a_holiday_without_them_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


UNSUBSCRIBE = [
    "I'd prefer you didn't send the night-time reminder",
    "I'd sooner you didn't text me the morning one",
    "could you skip the morning message from now on",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_fewer_messages_asked_as_what_she_would_rather_not_get(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


RED_FLAGS = [
    "there's a new firm knobbly area along my scar",
    "found a hard ridge by my mastectomy scar that's new",
    "a new bump has come up next to the scar",
    "just found a firm little lump right on the scar line",
    "encontrei um caroço novo no peito",
    "sinto um nódulo no pescoço desde ontem",
    "mein Rücken tut nachts weh, auch im Liegen",
    "nachts im Bett tut mir der Rücken weh",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_a_new_lump_by_the_scar_or_night_back_pain_in_other_books(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


# Encouraging, carrying on, harmless: no question and no safety path (through the handlers,
# so the second reader is behind the rules).
QUIET = [
    "more check-ins would be lovely",
    "could I get extra reminders please",
    "I'd love a few more messages",
    "please keep sending the texts",
    "keep the reminders coming please",
    "the letrozole is an absolute pain but I'm not giving up on it",
    "these pills are a right nuisance but I'm keeping at it",
    "what a faff the tablets are, still not quitting",
    "two years done, one more to go!",
    "final year on the tablets, nearly there",
    "feel a bit feverish but the thermometer says 36.8",
    "ran a temperature on Tuesday with a head cold, it's gone now",
    "breathless at the summit of Helvellyn but worth every step",
    "completely out of puff at the top of the hill, the view made up for it",
    "the climb up Scafell was hard but the view was worth it",
    "I fell asleep on the couch watching telly",
    "joints always ache in the damp, same every winter",
]


@pytest.mark.parametrize("text", QUIET)
async def test_encouraging_and_harmless_messages_get_no_question(
    harness: Harness, text: str
) -> None:
    seen = await answered_on(harness, text, "neutral")
    assert "clarify" not in seen, seen


NEUTRAL = [
    "my friend forgot her umbrella at our house",
    "Mum missed her bus this morning",
    "I forgot my glasses on Monday",
    "she never forgets her tablet, bless her",
    "packed my tablets for the holiday, all sorted",
    "taking the letrozole with me on the cruise",
    "the scar is healing nicely, no lumps",
    "Mum refuses to take the bus",
    "olvidé el paraguas ayer",
    "ich habe meinen Schirm vergessen",
    "caroço de azeitona",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    assert read_text(text).kind == "none", read_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "my friend forgot her umbrella at our house",
        "packed my tablets for the holiday, all sorted",
        "the scar is healing nicely, no lumps",
    ],
)
async def test_look_alikes_get_no_safety_path_through_the_handlers(
    harness: Harness, text: str
) -> None:
    await gets_no_safety_path(harness, text)


@pytest.mark.parametrize(
    "text",
    [
        # Still signals: a reading of 37.5 or more, shivers, a breathless climb that is still
        # going on or with the chest, fewer messages, annoyance with a wish to stop.
        "my temp is 38.2 but I feel fine",
        "felt hot and shivery but the reading was 36.9",
        "breathless at the top of the hill and my chest still hurts, the view was worth it",
        "no more messages please",
        "I don't want more reminders",
        "the tablets are a pain and I want to stop, not giving up on life though",
        "forgot my tablet last night and I'm not sure I'll bother again",
    ],
)
def test_real_signals_beside_the_new_wordings_still_count(text: str) -> None:
    assert read_text(text).kind != "none", read_text(text)


# Whether she has to reply to the bot is a question about the check-ins: no question back
# (the second reader, retrained with round 14, had read one such wording as a doubt).
REPLY_QUESTIONS = [
    "is it really needed to answer on the weekends?",
    "do I have to tap something every single evening?",
    "was it rude that I didn't respond yesterday?",
]


@pytest.mark.parametrize("text", REPLY_QUESTIONS)
async def test_asking_whether_she_must_reply_gets_no_question_back(
    harness: Harness, text: str
) -> None:
    await gets_no_safety_path(harness, text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("do I have to answer? I've stopped the letrozole", "stop_intent"),
        ("must I reply ever again? leave me alone", "unsubscribe"),
    ],
)
def test_a_reply_question_never_hides_a_signal_beside_it(text: str, kind: str) -> None:
    assert read_text(text).kind == kind


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*WEAK, *STOPPING, *UNSUBSCRIBE, *RED_FLAGS, *QUIET, *NEUTRAL, *REPLY_QUESTIONS]
    assert not in_labelled_set(mine)
