"""Issue 13, after blind round 12: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set), in
words other than the round's own.

Kinds: weariness with her medicine told without a stop word, read by a lexicon of negative
affect that must attach to her medicine in the same clause (a quarrel with it, dread of the
box, patience or steam running out, a curse, a daily battle with herself, resentment, the
tablets as a drag, flagging partway through the years), not negated, not only at the start,
not aimed at something else (the weather, the dentist, her sister, the packaging), in English
and in the Italian, German, Hindi and (inside the English book) Welsh words; stop-the-messages
with a start time ("from tomorrow" is not another sender), as fewer days or "ease off" asked
of the bot (a frequency for its messages switches off the schedule rules for her tablets), or
by a relative; red flags in plain words (only a few steps, the toilet or the stairs, a fall in
slang with a suspected crack, eyes) and in the Spanish, Dutch and Tagalog books (a new lump,
back pain at night); stopping told as giving up on "them tablets", in Jamaican and Nigerian
English and in Polish; emergencies told plainly (a thunderclap headache, someone who cannot be
woken, working out how to end it, the whole organiser, heart signs in Hindi); and false alarms
that stay neutral (a scare that turned out harmless, a test that came back clear, swelling gone
by the next day, idioms of laughing and of a hectic day, glad it is over, nearly left).
"""

from __future__ import annotations

import pytest

from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_emergency,
    gets_no_safety_path,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
    reads_as_none,
)

WEAK = [
    "me and the anastrozole are having a falling out this week",
    "I dread opening that packet every night",
    "the letrozole is wearing me down, honestly",
    "stupid tablets. ugh.",
    "I'm losing patience with these pills",
    "three years in and I'm running out of steam with the exemestane",
    "every night it's a battle with myself to swallow the thing",
    "still taking it, but I resent every single one",
    "sono proprio stanca di queste compresse",
    "ich halte diese Tabletten bald nicht mehr aus",
    "ye dawai le le ke pareshan ho gayi hoon",
    # Dread, hate, resentment, weariness, attached to her medicine.
    "I've come to loathe that little white tablet",
    "I begrudge every tablet I swallow",
    "getting really weary of the letrozole routine",
    "I'm starting to despise those little pills",
    "I've grown to hate swallowing the arimidex",
    "that pill box fills me with dread every Sunday when I refill it",
    "I'm sick to the back teeth of these pills",
    "I've had it up to here with the letrozole",
    "I'm heartily sick of these hormone pills",
    "I'm cheesed off with these hormone tablets",
    "I'm grumpy with the aromasin today",
    "I'm really not keen on the letrozole any more",
    # A heart or stomach that sinks at the box; a daily struggle with herself.
    "my stomach drops every evening when the pill alarm goes off",
    "honestly my spirits sink whenever I open the blister pack",
    "it's a daily tug of war with myself to take the anastrozole",
    "every morning I have to force myself to swallow it",
    "every evening there's a fight in my head about taking it",
    # Patience or steam running out.
    "my patience with these tablets is wearing thin",
    "I'm running low on patience with the anastrozole",
    # The medicine as the subject: wearing her down, a drag, not friends.
    "the arimidex is grinding me down",
    "the femara is doing my head in",
    "the hormone tablets are really getting me down this month",
    "the anastrozole has become such a drag",
    "honestly these pills are the bane of my life",
    "honestly the exemestane and I are at loggerheads this month",
    "me and my exemestane have had words this week",
    # "It" or "them" in a sentence about taking them.
    "still swallowing them, still resenting them",
    "taking them feels like a chore I hate",
    "I really resent having to take these every day",
    # Curses and groans.
    "ugh, these meds again",
    "these flipping pills",
    "blimmin tablets. sigh.",
    "these wretched tablets, every single night",
    # Flagging partway through the years.
    "halfway through my five years and I'm running on empty",
    "year 3 of 5 and I've hit a wall",
    "one year down four to go and I'm weary already",
    "four years in and I'm losing heart with it all, the tablets especially",
    # Other languages: Italian, German, Hindi, Welsh.
    "queste pastiglie mi hanno proprio stufata",
    "non ne posso più di queste compresse",
    "ich habe das Letrozol so satt",
    "diese blöden Tabletten schon wieder",
    "roz roz ye dawai kha kha ke main ub gayi hoon",
    "dw i wedi cael llond bol ar y moddion",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weariness_with_her_medicine_gets_the_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


# The same words aimed at something else, denied, or only at the start: the rules stay quiet
# (the second reader may still ask its own question, never a safety path).
WEARY_NEUTRAL = [
    "losing patience with the GP surgery phone line",
    "I used to dread the tablets but honestly I barely notice them now",
    "ugh, the weather. tablets taken though",
    "I dread the dentist next week, tablets are fine",
    "fed up with the rain, took my tablet as usual",
    "I hate the new packaging on my tablets, so fiddly",
    "at first I hated the tablets but I've got used to them",
    "at first I dreaded them, now they're just part of my morning",
    "I don't resent the tablets at all, they keep me safe",
    "I don't hate the letrozole, I just wish it didn't make me ache",
    "not fed up with the letrozole, just tired today",
    "my husband is driving me mad, pills all taken though",
    "the bloody pharmacy was shut so I'm picking my tablets up tomorrow",
    "these stupid knees! tablets done for today",
    "I'm tired of the heat, took my letrozole in the morning",
    "fed up with my sister, tablets taken",
    "I'm sick of the cold weather, tablets going fine",
    "I'm fed up with the hot weather, but the tablets are okay",
    "the queue at the chemist for my tablets was awful, sick of waiting",
    "my granddaughter's piano practice is wearing me down, lol. took my pills",
    "the tablets used to drag me down but I feel fine now",
    "my pills used to get me down but now I'm fine with them",
    "three years to go and I'm feeling great",
    "two years down, three to go and feeling good",
    "ugh what a day. letrozole done though",
    "I'm dreading my mammogram next week",
    "non sono stanca delle pastiglie, anzi",
    "die Tabletten nerven mich nicht, alles gut",
    "dawai se pareshan nahi hoon, sab theek hai",
]


@pytest.mark.parametrize("text", WEARY_NEUTRAL)
def test_weariness_aimed_elsewhere_denied_or_over_is_left_alone(text: str) -> None:
    reads_as_none(text)


UNSUBSCRIBE = [
    "please stop the reminders from tomorrow",
    "can you end the check-ins from now on",
    "could you message me once a week rather than every day?",
    "you message me a lot, could you ease off a bit",
    "my mother asked me to tell you she doesn't want the texts any more",
    # A start time is not another sender.
    "can you stop the check-ins from next week please",
    "unsubscribe me from Monday",
    "no more reminders from Tuesday please",
    "end the reminders from this weekend please",
    "could the reminders stop from the first of next month",
    "please let the messages stop from now",
    # Fewer messages asked of the bot.
    "twice a week would be plenty for your messages",
    "could you text me every other day instead",
    "I'd rather hear from you once a fortnight",
    "can we go down to once a week with the texts",
    # Ease off, tone it down, too full on.
    "you're a bit full on, could you tone it down",
    "please back off with the reminders",
    "could you dial it back with the messages",
    "bit much with the daily check-ins, could you ease up",
    "can you leave me be for a bit, you're quite persistent",
    # A relative asks for her.
    "my nan wants you to stop messaging her, she finds it stressful",
    "my wife asked me to get you to stop texting her",
    "please stop bothering my mum, she's 84 and the texts upset her",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_with_a_start_time_or_said_softly_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


UNSUBSCRIBE_NEUTRAL = [
    "I turned off the reminders from my calendar app",
    "I stopped the reminders from my phone's clock app",
    "I muted the notifications from the hospital app",
    "my GP texts me once a week about bloods",
    "my neighbour texts me every other day",
    "my daughter keeps messaging me every day, bless her",
    "I'd like to cancel my hair appointment",
    "I nearly cancelled the reminders but they're helpful",
    "I almost unsubscribed but decided to keep going with the check-ins",
    "I nearly quit the study last month but I'm glad I stayed",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE_NEUTRAL)
def test_other_senders_and_things_she_nearly_did_are_not_unsubscribing(text: str) -> None:
    assert read_text(text).kind == "none"


@pytest.mark.parametrize(
    "text",
    [
        "can I take it every other day instead?",
        "Could I take my letrozole once a week rather than every day?",
    ],
)
def test_a_schedule_for_her_tablets_is_not_a_request_for_fewer_messages(text: str) -> None:
    assert read_text(text).kind in ("stop_intent", "stop_intent_weak")


RED_FLAGS = [
    "since Tuesday I can only shuffle a few yards before my feet give up",
    "hips are a 9 out of 10, I can't get dressed without help",
    "slipped on the ice this morning, my wrist is throbbing, I wonder if I've fractured it",
    # Only a few steps or yards.
    "I can barely hobble ten yards without stopping",
    "can only manage a couple of paces before my hip locks",
    "I can't walk further than a few metres before my knee gives way",
    "only made it about ten paces yesterday before I had to sit",
    "I can hardly get more than a few yards down the road before I have to stop",
    # The toilet, the shower, the stairs.
    "can't get up the stairs by myself anymore",
    "can't manage to get in the shower without help now",
    "I can't get onto the toilet without my husband helping",
    # A fall in slang; a break she suspects.
    "took a tumble off the step, I think I've broken something in my wrist",
    "hit the deck in the garden, ribs are agony",
    "went over on my ankle and I reckon I've cracked a bone",
    "fell in the car park and I'm worried I've fractured something",
    # Eyes.
    "I'm seeing floaters and flashes in my left eye since lunch",
    "my vision has gone misty in one eye",
    "blurred vision in my right eye since this morning",
    # Other books: a new lump (Spanish, Tagalog), back or bone pain at night (Dutch).
    "tengo un nódulo nuevo en el cuello",
    "me noté una bolita dura en la axila esta semana",
    "tengo un bultito raro junto a la cicatriz",
    "napansin ko may kulani sa leeg ko ngayong linggo",
    "may bukol sa dibdib ko na bago",
    "mijn onderrug doet zeer, vooral in bed, het maakt me elke nacht wakker",
    "sinds kort nieuwe rugpijn die me 's nachts wakker houdt",
    "ik heb nieuwe pijn in mijn botten, vooral 's nachts",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


EMERGENCIES = [
    # Heart signs read together in Hindi-Urdu (Latin letters).
    "chhati par bhaari dabav hai aur thanda paseena aa raha hai",
    "seene mein ajeeb sa jalan uth rahi hai, baayein haath mein jhunjhuni hai",
    # A thunderclap headache; someone who cannot be woken; the whole organiser.
    "sudden thunderclap in my head an hour ago",
    "I can't rouse my husband, he's slumped in his chair",
    "mum took her whole dosette by accident this morning",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_plainly_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


@pytest.mark.parametrize(
    "text", ["been figuring out how to end it all", "I keep looking up how I would do it"]
)
async def test_working_out_how_is_self_harm(harness: Harness, text: str) -> None:
    await gets_emergency(harness, text, alert="self_harm")


STOPPING = [
    "I've given up on the letrozole for good",
    "gave up on those pills last month, the aches are easing",
    # "Them tablets"; Jamaican and Nigerian English; Polish.
    "given up on them pills, not going back",
    "I have given up on dem pills",
    "mi nuh tek di tablet dem from Christmas",
    "mi nuh tek di pills dem no more",
    "mi nah tek nuh more a dem tablet",
    "I no dey take am again",
    "I don stop the drug since January",
    "przestałam brać tabletki w zeszłym tygodniu",
    "odstawiłam leki na dobre",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_giving_up_on_the_tablets_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


NEUTRAL = [
    # A scare that turned out fine; someone else's lump; swelling gone the next day.
    "the lump they scanned was just a fatty bit, nothing to worry about",
    "my neighbour's lump was benign thank goodness",
    "my ankle puffed up after the long walk but was back to normal by the morning",
    "I thought it was my heart last year but it was reflux, all checked and fine",
    "the lump in my armpit turned out to be a swollen gland, all sorted",
    "my friend's lump was a lipoma in the end",
    "the lump on my back turned out to be a cyst",
    "my sister's breast lump came back benign",
    "mum's lump came back as a lipoma",
    "thought I had broken my wrist but it was just a sprain",
    "my ECG came back normal, phew",
    "my sister's scan came back all clear, so relieved",
    "ankle swelled on the flight but went down overnight",
    "that ankle swelling settled within a day",
    "my knee puffed up after gardening and settled down by the next day",
    "the swelling in my ankle had gone by the morning",
    "the chest pain I had in hospital was from the surgery, all healed now",
    "the pains I had during chemo were awful, glad those days are over",
    "the pain in my bones from the chemo was awful, so glad that's all behind me",
    "my grandson took a tumble on his bike but he's fine, just a graze",
    # Idioms.
    "what a heart attack of a morning, the boiler broke and the dog got out",
    "what a heart attack of a week at work",
    "heart attack of a week, deadlines everywhere",
    "fell about laughing when my grandson sang",
    "fell off my chair laughing at the panto",
    # Walking, falling, eyes and lumps in everyday words.
    "the chemist is only a few steps from my house",
    "walked 20 yards to the car, lovely day",
    "just a few steps from the beach, lovely holiday",
    "the shop is only twenty steps away, handy",
    "I walk 5 miles most days, feeling strong",
    "had a spill of tea on my trousers",
    "went flying to Malaga last week with my sister",
    "I stumbled across a lovely recipe for scones",
    "I fell asleep on the sofa again",
    "my eyes went blurry from crying at the film",
    "I think I've broken the kettle",
    "I cannot wake my husband in the mornings, heavy sleeper",
    "worst headache of my life was after my wedding in 1985",
    "przestałam pić kawę",
    "no tengo ningún bulto, todo bien",
    "wala naman akong bukol",
    "ik heb geen rugpijn 's nachts",
    "seene mein dard nahi hai, bas garmi se pasina aa raha hai",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    reads_as_none(text)


# Through the handlers: with the second reader behind the rules, none of these gets the
# emergency or red-flag reply (the model may ask its own question).
@pytest.mark.parametrize(
    "text",
    [
        "the lump on my back turned out to be a cyst",
        "my sister's breast lump came back benign",
        "ankle swelled on the flight but went down overnight",
        "what a heart attack of a week at work",
        "fell off my chair laughing at the panto",
        "the pain in my bones from the chemo was awful, so glad that's all behind me",
        "thought I had broken my wrist but it was just a sprain",
        "the chemist is only a few steps from my house",
        "went flying to Malaga last week with my sister",
        "my eyes went blurry from crying at the film",
        "I think I've broken the kettle",
        "I cannot wake my husband in the mornings, heavy sleeper",
    ],
)
async def test_harmless_stories_get_no_safety_path_through_the_handlers(
    harness: Harness, text: str
) -> None:
    await gets_no_safety_path(harness, text)


@pytest.mark.parametrize(
    "text",
    [
        # Her guess is no outcome; a test told before the sign does not reach it; back again.
        "my chest is tight, it's probably nothing",
        "thought it was indigestion but the pressure in my chest is going into my jaw",
        "the scan was clear in March but I've found a new lump",
        "the swelling went down overnight but it's back again today",
        "my knee swelled up, it went down after a day but now it is bigger",
        "the lump came back",
    ],
)
def test_a_guess_or_a_sign_that_returns_still_counts(text: str) -> None:
    assert read_text(text).kind in ("emergency", "red_flag")


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [
        *WEAK,
        *WEARY_NEUTRAL,
        *UNSUBSCRIBE,
        *UNSUBSCRIBE_NEUTRAL,
        *RED_FLAGS,
        *EMERGENCIES,
        *STOPPING,
        *NEUTRAL,
    ]
    assert not in_labelled_set(mine)
