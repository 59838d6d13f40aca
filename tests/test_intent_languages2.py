"""Issue 13, three more languages mixed into English (after blind round 10): Dutch, Tagalog or
Taglish, and Hindi or Urdu written in Latin letters (content/safety/nl.yaml, tl.yaml, hi.yaml).
Each book reads stopping, doubts about going on, stop-the-messages and the clearest
emergencies and red flags; denials, another medicine, someone else's symptom and the everyday
senses of the same words ("stoppen met roken", "walang tigil", "hindi ko pa iniinom",
"bukhar nahi hai") raise nothing. A message wholly in one of them, with no sign, gets the "I
only read English" reply.

The wordings are ours, written for these tests (none of them is in the labelled set).
"""

from __future__ import annotations

import pytest

from bench.score_intent import top_path
from bot.intent import read_text
from bot.langid import identify
from tests.conftest import Harness
from tests.intent_steps import (
    alerts,
    answered_on,
    gets_no_safety_path,
    in_labelled_set,
    reply_paths,
)

# (kind, text) for each language, kind by kind.
DUTCH = [
    # Stopped, will stop, no longer taking, thrown away.
    ("stop_intent", "ik ben vorige week gestopt met mijn letrozol, too many side effects"),
    ("stop_intent", "Ik stop met de pillen, my hands are wrecked"),
    ("stop_intent", "ik neem ze niet meer since Easter"),
    ("stop_intent", "heb de tabletjes gewoon weggegooid lol"),
    ("stop_intent", "ik ga stoppen met de hormoontherapie, decided"),
    # Doubts: thinking of stopping, should I stop, fed up.
    ("stop_intent_weak", "ik denk erover om te stoppen met de tabletten"),
    ("stop_intent_weak", "moet ik stoppen met de anastrozol? the pain is bad"),
    ("stop_intent_weak", "ik ben die pillen zo beu, honestly"),
    # Stop the messages.
    ("unsubscribe", "geen berichten meer alsjeblieft"),
    ("unsubscribe", "stop met het sturen van die vragen please"),
    ("unsubscribe", "graag afmelden, thanks for everything"),
    # Emergencies: breathing, chest, fainted or unconscious, self-harm.
    ("emergency", "mijn moeder krijgt geen lucht, what do I do"),
    ("emergency", "ik heb pijn op de borst and my arm feels heavy"),
    ("emergency", "mama is flauwgevallen in de keuken"),
    ("emergency", "hij is bewusteloos, please help"),
    ("emergency", "ik wil niet meer leven"),
    # Red flags: fever with a hot joint, cannot walk.
    ("red_flag", "ik heb koorts en mijn knie is heet en rood"),
    ("red_flag", "ik kan niet meer lopen since yesterday, my hip"),
]

TAGALOG = [
    ("stop_intent", "tinigil ko na po yung letrozole last month"),
    ("stop_intent", "hindi na ako umiinom ng gamot since January"),
    ("stop_intent", "nag stop na ako sa meds ko, sobrang sakit ng joints"),
    ("stop_intent", "tinapon ko na lahat ng tableta"),
    ("stop_intent_weak", "pwede ko bang itigil muna yung anastrozole?"),
    ("stop_intent_weak", "sawang sawa na ako sa gamot na ito"),
    ("unsubscribe", "tama na po ang mga messages, salamat"),
    ("unsubscribe", "wag niyo na po akong i text"),
    ("unsubscribe", "pakistop na po, thank you"),
    ("unsubscribe", "tanggalin niyo na ako dito please"),
    ("emergency", "si mama hindi makahinga, help"),
    ("emergency", "naninikip ang dibdib ko since this morning"),
    ("emergency", "nahimatay si lola sa banyo"),
    ("emergency", "gusto ko nang mamatay, pagod na ako"),
    ("red_flag", "may lagnat ako at namamaga ang tuhod ko"),
    ("red_flag", "hindi ako makalakad since kahapon, masakit ang balakang"),
]

HINDI = [
    ("stop_intent", "maine letrozole lena band kar diya last week"),
    ("stop_intent", "dawai chhod di maine, side effects too much"),
    ("stop_intent", "ab ye goliyan nahi lungi, final"),
    ("stop_intent", "saari goliyan dustbin mein daal di"),
    ("stop_intent_weak", "soch rahi hoon ki dawai band kar doon"),
    ("stop_intent_weak", "kya main ye goli chhod sakti hoon?"),
    ("stop_intent_weak", "dawai se bahut tang aa gayi hoon"),
    ("unsubscribe", "please mujhe messages mat bhejo"),
    ("unsubscribe", "reminders bhejna band karo please"),
    ("unsubscribe", "ab koi message nahi chahiye, thank you"),
    ("emergency", "mummy ki saans phool rahi hai, help"),
    ("emergency", "seene mein bahut dabav hai and I'm sweating"),
    ("emergency", "papa behosh ho gaye, what to do"),
    ("emergency", "ab jeena nahi chahti"),
    ("red_flag", "bukhar hai aur ghutna sooj gaya hai"),
    ("red_flag", "chal nahi pa rahi since morning, hip is bad"),
]

SIGNS = [*DUTCH, *TAGALOG, *HINDI]


@pytest.mark.parametrize(("kind", "text"), SIGNS)
def test_a_sign_in_dutch_tagalog_or_hindi_is_read_as_in_english(kind: str, text: str) -> None:
    assert read_text(text).kind == kind


# Thinking of stopping is a stopping signal either way (the English book reads some doubts
# as stopping too); here the doubt must at least be read as stopping.
DOUBTS = [
    "iniisip ko na itigil yung gamot, is that bad?",
    "mag stop na kaya ako sa meds?",
    "dawai chhodne ka soch rahi hoon",
]


@pytest.mark.parametrize("text", DOUBTS)
def test_a_doubt_about_going_on_is_read_as_stopping(text: str) -> None:
    assert read_text(text).is_stop


# Denials, another medicine, someone else's symptom, other senses of the same words.
HARMLESS = [
    "ik ben gestopt met roken, 3 weeks now!",
    "de stekker zit niet goed in het stopcontact",
    "geen koorts, alleen moe vandaag",
    "ik heb geen pijn op de borst, just the knees",
    "ik heb geen vragen meer, bedankt",
    "ik neem de pillen niet meer 's ochtends maar 's avonds",
    "het is zo benauwd weer vandaag",
    "mijn man heeft koorts, should I worry?",
    "de dokter reageert niet op mijn mail, ik ben duizelig",
    "ik ben niet gestopt met de tabletten hoor",
    "ik krijg geen berichten meer, is the bot broken?",
    "hindi ko pa iniinom yung gamot today, later na lang",
    "walang tigil ang ulan dito sa Manila",
    "tumigil na ako sa paninigarilyo, 2 months na",
    "walang lagnat, medyo pagod lang",
    "hindi ko alam kung anong oras dapat inumin",
    "hindi ko na iniinom yung ibuprofen, paracetamol na lang",
    "hindi sumasagot yung doctor, nahihilo ako",
    "hindi naman ako nahihirapang huminga, okay lang",
    "ang asawa ko may lagnat, ako okay lang",
    "bukhar nahi hai, bas thakaan",
    "seene mein koi dard nahi, only knees",
    "dawai ghar pe chhod di, can I take it late?",
    "maine dawai nahi chhodi, bas pooch rahi thi",
    "ghutne pe garam paani ki sikai karti hoon",
    "phone chal nahi raha tha, sorry for late reply",
    "marna nahi chahti, bas dard se pareshan hoon",
    "pati ko bukhar hai, mujhe nahi",
    "dawai khali pet nahi leni hai na?",
    # English read by every book: the new books stay silent on it.
    "I speak Hindi at home, the pills are fine",
    "Ben said the stop at the chemist was quick",
    "can I stop at the pharmacy on the way home",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_a_denial_or_a_harmless_look_alike_raises_nothing(text: str) -> None:
    assert read_text(text).kind == "none"


def test_english_with_a_stop_is_left_to_the_english_book() -> None:
    found = read_text("can i stop letrozole for my operation?")
    assert not any(rid.startswith(("nl:", "tl:", "hi:")) for rid in found.matched), found


# A message wholly in one of them, with no sign: recognised, so she gets the English reply.
WHOLLY_FOREIGN = [
    ("nl", "Ik heb vandaag veel pijn in mijn handen"),
    ("tl", "Masakit ang tuhod ko ngayon pero okay lang, salamat"),
    ("hi", "mujhe aaj bahut dard hai ghutno mein"),
]


@pytest.mark.parametrize(("code", "text"), WHOLLY_FOREIGN)
def test_a_message_wholly_in_the_language_is_recognised_as_foreign(code: str, text: str) -> None:
    assert identify(text) == code
    found = read_text(text)
    assert found.kind == "none" and found.foreign


def test_english_stays_english() -> None:
    for text in ("my mum only speaks Hindi, she is fine", "Ben and I walked to the stop"):
        assert identify(text) == "en", text


STOPPING_THROUGH_HANDLERS = [
    "ik ben gisteren met de letrozol gestopt, klaar",
    "hindi ko na po iniinom yung femara since December",
    "maine anastrozole chhod di hai, too much pain",
]


@pytest.mark.parametrize("text", STOPPING_THROUGH_HANDLERS)
async def test_stopping_in_these_languages_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


EMERGENCIES_THROUGH_HANDLERS = [
    "mijn man is bewusteloos en ademt raar, please help",
    "si nanay hindi makahinga, nangingitim ang labi",
    "mummy ko seene mein tez dard hai, she is 72",
]


@pytest.mark.parametrize("text", EMERGENCIES_THROUGH_HANDLERS)
async def test_an_emergency_in_these_languages_gets_the_emergency_reply_and_alert(
    harness: Harness, text: str
) -> None:
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "emergency", seen
    found = await alerts(h, "emergency")
    assert found and all(alert.urgent for alert in found)
    assert all(":emergency." in (alert.detail or "") for alert in found), found


async def test_self_harm_in_hindi_raises_its_own_urgent_alert(harness: Harness) -> None:
    h = harness
    seen = await reply_paths(h, "bas ab aur jeena nahi chahti, sorry")
    assert top_path(seen) == "emergency", seen
    [found] = await alerts(h, "self_harm")
    assert found.urgent and "hi:emergency.self_harm" in (found.detail or "")


UNSUBSCRIBE_THROUGH_HANDLERS = [
    "stuur me geen berichten meer aub",
    "ayoko na po ng reminders, salamat",
    "ye messages band karo please",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE_THROUGH_HANDLERS)
async def test_stop_the_messages_in_these_languages_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


async def test_a_denied_sign_in_these_languages_raises_no_alert(harness: Harness) -> None:
    await gets_no_safety_path(
        harness, "walang lagnat, hindi naman nahihirapang huminga, just tired"
    )


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [
        *(text for _, text in SIGNS),
        *DOUBTS,
        *HARMLESS,
        *(text for _, text in WHOLLY_FOREIGN),
        *STOPPING_THROUGH_HANDLERS,
        *EMERGENCIES_THROUGH_HANDLERS,
        *UNSUBSCRIBE_THROUGH_HANDLERS,
    ]
    assert not in_labelled_set(mine)
