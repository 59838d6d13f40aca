"""Issue 13, after blind round 13: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set), in
words other than the round's own.

Kinds: red flags told indirectly (pain in one spot of a bone for days or weeks or that hurts
when pressed; bone pain at night only, told of her or by a relative; a fall she walked away
from that now hurts to stand on, or a fall in other words; double vision in any words; yellow
skin told as a tan without sun; bleeding after the menopause told by the pads she buys again
or a stain on the tissue; moving round her home made hard by pain, told by hyperbole; a new
lump in the Dutch and the new Polish book); emergencies (lips or tongue swollen in any words;
a swollen calf, then breathlessness or a stab in the chest, over two sentences; Swahili words
for fainted, unconscious, not breathing); stopping (a cap on the years she will do; tablets run
out and not replaced; tablets put away for good; a bare "should I stop?" with her years or
joints named, asked gently; drug names split by dictation, read by how they sound; Turkish);
weak doubts (one dose missed and said so; asking herself why she takes it; hesitating over a
dose; weariness in one word of a dialect; Portuguese "esqueci"); stop-the-messages (the
messages named as what she means, the tablets denied; blocking or reporting the bot); and
false alarms that stay neutral (someone else's switch or mishap, the weather in degrees, a
normal temperature asked about, blurred sight from her glasses, giving up something else,
being back at an activity after an injury, tablets kept where she remembers them).
"""

from __future__ import annotations

import pytest

from bot.intent import normalise, read_text
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

RED_FLAGS = [
    # Pain in one spot of a bone, for days or weeks, or when pressed.
    "there's a tender point on my breastbone, always the same place, three weeks now",
    "my hip hurts in exactly one place and has done for a fortnight, it's sore if I prod it",
    "one particular patch of my spine has ached for ten days and touching it makes me wince",
    "the pain is pinpoint, right on my collarbone, since the start of the month, tender to press",
    "it's always the same small area on my ribs, a fortnight now, and it hurts when I push on it",
    "my left shin has a tender bit about the size of a thumbnail, been like that a fortnight",
    "the ache sits right in one place on my pelvis and has for three weeks",
    "pushing on that bit of my rib is agony, it's been a month",
    "I can point to exactly where it hurts on my breastbone, and it's been there ten days",
    "there's a spot low on my spine that's been sore for a good three weeks",
    "my collarbone has a tender point I can cover with a fingertip, like that since Easter",
    # Bone pain at night only, told by a relative too.
    "my mum's upper arm aches only at night, she's been up every night this week with it",
    "Nana's thigh bone throbs once she lies down at night, the daytime is fine",
    "my wife gets a deep ache in her shin, only in the night, for two weeks now",
    "my auntie's thigh throbs at night only, she's up pacing",
    "Gran says her leg bone only hurts once she's in bed",
    # A fall she walked away from; a fall in other words; pain when she stands on it.
    "went down on the wet kitchen floor on Sunday, got myself up, but I've had a hobble since",
    "came off my bike on Sunday, dusted myself off, now it kills when I stand on that leg",
    "my feet went from under me on the landing, I got up okay but now there's a limp",
    "had a wobble on the stairs Tuesday, seemed fine at the time, now my ankle hurts whenever I "
    "put my weight through it",
    "went down in a heap at the bus stop, picked myself up, now I'm walking with a limp",
    "I tripped over the cat on Monday and got up fine but I'm limping now",
    # Double vision in any words.
    "since this morning I'm seeing two of everything",
    "the telly looks doubled when I glance left",
    "I've got double vision on and off since lunchtime",
    "everything goes double when I look up",
    "words on the page are doubling up since this afternoon",
    "the numbers on the clock look double",
    # Yellow skin told as a tan without sun; the whites of her eyes.
    "my daughter asked where I'd been on holiday because I look so brown, I haven't left the "
    "house in weeks",
    "the neighbours say I've caught the sun, but I've not been out in it at all",
    "everyone keeps commenting on my golden colour and I haven't sat in the sun once",
    "my friend said I've got a lovely tan, but I've been indoors for weeks with this knee",
    "the grandkids asked why I'm so orange when I haven't been on holiday",
    "the whites of my eyes look a funny colour this week",
    # Bleeding after the menopause, told by euphemism.
    "I've had to start wearing panty liners again, first time since my fifties",
    "found some pink on the loo roll, and I finished with all that twenty years ago",
    "back to buying sanitary towels at 68, never thought I'd see the day, and it's not for leaks",
    "there's a bit of brown in my knickers again after years of nothing",
    "buying period pads again at 70, who'd have thought",
    "had to dig out the sanitary towels again, haven't needed them since 2005",
    "pink streaks on the toilet paper this morning, I'm 72",
    # Moving round her home made hard by pain, told by hyperbole.
    "I went up to bed on my hands and knees last night, my hips are that bad",
    "I'm holding on to the furniture to get from room to room",
    "it took me ten minutes to get from the sofa to the loo this morning",
    "had to crawl to the bathroom this morning, the pain in my back is unreal",
    "can't make it across the lounge without stopping, my legs are killing me",
    "bum-shuffled down the stairs this morning because my hip wouldn't bend",
    "I needed my walking stick and the wall to get to the bathroom",
    "getting from my bed to the toilet is a mission, hips screaming",
    # A fever reading that is hers (37.5 and over), the weather aside.
    "I've been running 37.8 since lunch",
    "38.2 on the thermometer this evening",
    "it's a heatwave here and I've got a fever of 38.5",
    # A new lump in the Dutch and Polish books; Polish bone pain at night.
    "ik heb een nieuwe bult in mijn oksel gevonden",
    "sinds gisteren voel ik een knobbel in mijn hals",
    "er zit een knobbeltje onder mijn arm",
    "wyczułam guzek w piersi",
    "od tygodnia mam zgrubienie pod pachą",
    "kręgosłup boli mnie w nocy, budzi mnie o trzeciej",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_told_indirectly_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


EMERGENCIES = [
    # Lips, tongue or mouth swollen in any words: an allergic reaction.
    "my lips have puffed right up and my tongue feels fat, I only took the new antibiotic an hour "
    "ago",
    "my mouth has swollen up so much I can hardly swallow",
    "her tongue is huge and her lips look like sausages, started after the penicillin",
    "her lips have gone puffy and she says her tongue feels thick",
    "my face and tongue blew up after the prawns",
    "her bottom lip has ballooned and her tongue is swelling, can you help",
    "I bit into a prawn and my lips are huge and my throat is tight",
    # A swollen leg, then breathlessness or a stab in the chest, over two sentences.
    "my leg has been puffy and tight since the flight. Now my chest has a sharp stabbing pain",
    "swollen calf for a few days. This afternoon I suddenly can't get a proper breath",
    "ankle swollen and hot for days. This morning sudden sharp chest pain and can't breathe "
    "properly",
    "my calf is puffy and red. Now I can't catch a breath and my chest is stabbing",
    # Swahili: fainted, unconscious, not breathing.
    "Bibi amezimia, hapumui vizuri",
    "mume wangu ameanguka na hana fahamu",
    # Polish: fainted and unconscious, cannot breathe.
    "mama zemdlała i jest nieprzytomna",
    "nie mogę oddychać",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_in_other_words_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


STOPPING = [
    # A cap on the years she will do.
    "five years is my limit, whatever they say about ten",
    "I'll do my five and not a minute longer",
    "three years and that's me done, no matter what the consultant wants",
    "my limit is five, not a day beyond",
    "I agreed to five and five is what they'll get, no more",
    "I'm giving it four years and that's it",
    "I'm only doing three years and then I'm done",
    # Run out and not replaced.
    "the box ran dry on Monday and I'm not replacing it",
    "finished the last strip at the weekend. Not getting any more, my knees are better already",
    "used up the final packet a week ago and I haven't bothered to reorder, nor will I",
    "once this box is empty I'm not getting any more",
    "I've come to the end of my tablets and I won't be ordering more",
    "the packet ran out last week and I'm not reordering, my hands feel better without",
    # Put away for good.
    "the letrozole has been banished to the loft, and there it can stay",
    "I've put the tablets in the shed out of sight, out of mind",
    "the anastrozole now lives behind the tins at the top of the cupboard, best place for it",
    "the exemestane is in the drawer where it can stay",
    "I've relegated the pills to the garage, where they belong",
    "I've stuck the tablets at the back of the wardrobe, out of sight",
    # Drug names split by dictation, read by how they sound.
    "I quit the letter zole last month",
    "stopped the exam a stain a fortnight ago",
    "I've given up the letter sole",
    # Turkish.
    "Anastrozol ilacını bıraktım",
    "haplarımı kestim, letrozol çok ağrı yapıyor",
    "Letrozolü kullanmıyorum artık",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_told_by_a_cap_an_empty_box_or_a_hiding_place_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


WEAK = [
    # A bare "should I stop?" with her years or joints named.
    "should I just stop? it's been three years and my hands are stiff as boards",
    "should I stop? my hands are wrecked and I'm only 18 months in",
    # One dose missed and said so.
    "no pill for me last night, fell asleep on the sofa",
    "no letrozole yesterday, went to a wedding and clean forgot",
    "didn't take my tablet today, slept right through the alarm",
    "oops, no pill last night, I was out at my sister's",
    "I didn't take my letrozole this morning, rushed out to an appointment",
    # Asking herself why she takes it; hesitating over a dose.
    "I stare at the packet every morning wondering why I bother",
    "what am I even taking these tablets for, I ask myself every morning",
    "every morning I look at the tablet and ask myself why I'm doing this",
    "I sit with the tablet in my palm for ages before I can swallow it",
    "most days I hesitate a long time before taking the letrozole",
    "I sit there turning the tablet over in my fingers before I'll take it",
    "I stood holding the pill for ages this morning before I swallowed it",
    "I hover over the packet for ages before I'll take one",
    # Weariness in one word of a dialect.
    "I'm that scunnered wi the letrozole",
    "I'm fair scunnered wi taking these",
    "these tablets make me so sian lah",
    "sian lah, this medicine every day",
    "sick and tired of the anastrozole, jelak already",
    # Portuguese.
    "ontem me esqueci de tomar o remédio",
    "esqueci a pílula hoje de manhã",
    "não tomei o comprimido hoje, desculpa",
]


@pytest.mark.parametrize("text", WEAK)
async def test_doubts_and_a_missed_dose_get_the_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


UNSUBSCRIBE = [
    # The messages named as what she means, the tablets denied.
    "I'd like to stop. I mean the reminders, not my pills",
    "Stop please. The texts, not the letrozole!",
    "I meant stop the reminders, not the medicine",
    "Please stop. Not the letrozole, the notifications",
    "stop please, I mean the check-ins, not the letrozole",
    "I want to stop. The reminders, that is, not my pills",
    # Blocking or reporting the bot.
    "one more ping and I'm blocking you",
    "if this carries on I'll report the number as spam",
    "about to block this chat, it never shuts up",
    "I'll block you if I get one more message",
    "going to report this chat as spam",
    "one more text and you're blocked",
    "I'm going to block this contact if the pings don't stop",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_named_or_a_threat_to_block_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


# The same words in everyday senses, someone else's, or over: the rules stay quiet.
NEUTRAL = [
    # Someone else stopped or switched; someone else's mishap.
    "my cousin swapped from anastrozole to tamoxifen, her oncologist handled it all",
    "a lady at my support group came off letrozole, her team managed it properly",
    "my neighbour came off anastrozole and her oncologist moved her onto tamoxifen, all fine",
    "a woman in my class switched brands, her GP arranged it",
    "my mate swapped her letrozole for exemestane and feels much better",
    "my friend from church switched from letrozole to anastrozole, her nurse sorted it",
    "the lady from church came off her tablets and the cancer came back",
    "my sister-in-law slipped on the stairs and fractured her ankle, poor love, I've been "
    "cooking for her",
    "my neighbour broke her hip last month, bless her, I'm walking her dog",
    "my friend's mum broke her hip last month, poor soul, I've been visiting her",
    "my sister's knee is the size of a grapefruit after her fall, poor love",
    "my neighbour's husband fell off the roof and broke his leg, I've been taking her shopping",
    # The weather in degrees; a normal temperature asked about.
    "it hit 39 degrees in Adelaide yesterday, far too hot for the beach",
    "40 degrees in Seville, we're hiding indoors with the fan",
    "35 degrees at the beach yesterday, lovely",
    "the car said 41 degrees outside",
    "39 degrees in the shade in Madrid, we're melting",
    "28 degrees and sunny here, lovely",
    "temperature 36.9 this morning, is that normal?",
    "my temp was 37.2 after my bath, all fine?",
    "temp 36.8, just checking that's fine",
    "37.2 this morning, is that a fever?",
    "temp 99.1F, should I worry?",
    # Blurred sight from her glasses.
    "my eyes were blurry but it was the old reading glasses, the optician sorted me out",
    "my reading got blurry, turned out my glasses were filthy",
    "my glasses were smeared, that's why things looked blurry, all good now",
    # Giving up something else.
    "given up on the allotment, too much work",
    "I've given up on the crossword, it's impossible this week",
    "given up on the gym, my knees can't take it",
    "given up on the jigsaw, too many pieces",
    # Back at an activity after an injury: recovered.
    "broke my ankle at Easter, it's mended now and I'm back to my walks",
    "fell off my bike in the spring and cracked my wrist, healed now and I'm back at work",
    "broke my arm in January, all mended and I'm back in the garden",
    "I sprained my ankle at Christmas, it's healed and I'm back walking the dog",
    "I broke my toe last summer, healed now and I'm back dancing",
    "I had a fall in May, cracked a rib, all mended and I'm back at bowls",
    # Tablets kept where she remembers them; looking at the packet to check the day.
    "I keep my tablets in the bathroom cabinet where they belong",
    "the pills live in the kitchen drawer next to the tea bags so I don't forget",
    "I put the tablets in the cabinet so I don't forget them",
    "I keep the tablets in the cupboard out of reach of the grandchildren",
    "I look at the packet each morning to check which day it is",
    "I looked at the packet for ages to work out which day it was",
    "my tablets live in the kitchen cupboard next to the tea so I remember them",
    # Look-alikes of the other new kinds.
    "I've had pain in one spot on my back since the new mattress, physio says it's muscular",
    "the tender spot on my shin is where I knocked it on the bed frame last week",
    "went down a storm at the party, my trifle",
    "I went down to the kitchen to make tea",
    "the swelling went down in the night",
    "the double yellow lines outside look freshly painted",
    "seeing double at the christening, twins!",
    "my daughter came back from Spain very tanned, she's been in the sun for a fortnight",
    "I've got a tan from sitting in the garden all week",
    "I bought pads for my granddaughter's first period, what a milestone",
    "I wear pads for my bladder since the hysterectomy",
    "there's a red stain on my pants from the beetroot juice",
    "my grandson is crawling all over the lounge now",
    "the baby is crawling to the kitchen now",
    "had to crawl under the desk to find the charger",
    "I'm on my hands and knees weeding the garden most afternoons",
    "it takes me ages to get to the kitchen because the dog lies across the door",
    "my lips are chapped and dry from the wind",
    "bit my lip and now it's fat",
    "my husband's lips swelled up after a wasp sting",
    "I'll do my five and then see what the doctor says",
    "five minutes and that's it, then bed",
    "I'm doing 10 years like the doctor asked, no more no less",
    "five more years on letrozole, the oncologist says, so that's what I'm doing",
    "my last box ran out on Friday, picking the next lot up tomorrow",
    "I ran out of letrozole but the chemist is getting more in tomorrow",
    "I ran out of milk and I'm not going for more in this rain",
    "should I stop at the shop on the way home? my knees ache",
    "no wine for me tonight, I'm driving",
    "no tea for me this morning, fasting for bloods",
    "I looked at the tablet for a second to check it was the right one",
    "what am I doing this weekend, any ideas?",
    "I'm fair scunnered wi the weather",
    "Sian from next door popped round, we took the dog out",
    "I block out Thursdays for the grandkids",
    "I'd block out the afternoon for the hospital appointment",
    "given up on the idea of a cruise this year",
    # Other languages.
    "nie mam żadnego guzka, wszystko dobrze",
    "urwał mi się guzik od płaszcza",
    "boli mnie kolano po spacerze",
    "mój mąż ma gorączkę",
    "não esqueci de tomar, está tudo bem",
    "nunca me esqueci do remédio",
    "esqueci o guarda-chuva no autocarro",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_and_other_peoples_wordings_alone(text: str) -> None:
    reads_as_none(text)


# Through the handlers: the second reader sits behind the rules; none of these gets the
# emergency or red-flag reply, nor an alert.
@pytest.mark.parametrize(
    "text",
    [
        "my sister-in-law slipped on the stairs and fractured her ankle, poor love, I've been "
        "cooking for her",
        "it hit 39 degrees in Adelaide yesterday, far too hot for the beach",
        "37.2 this morning, is that a fever?",
        "my reading got blurry, turned out my glasses were filthy",
        "broke my arm in January, all mended and I'm back in the garden",
        "the swelling went down in the night",
        "seeing double at the christening, twins!",
        "bit my lip and now it's fat",
        "the baby is crawling to the kitchen now",
        "given up on the jigsaw, too many pieces",
    ],
)
async def test_harmless_stories_get_no_safety_path_through_the_handlers(
    harness: Harness, text: str
) -> None:
    await gets_no_safety_path(harness, text)


@pytest.mark.parametrize(
    "text",
    [
        "my cousin swapped from anastrozole to tamoxifen, her oncologist handled it all",
        "given up on the allotment, too much work",
    ],
)
def test_an_everyday_sense_is_read_and_set_aside_so_the_second_reader_is_not_asked(
    text: str,
) -> None:
    found = read_text(text)
    assert found.kind == "none" and found.dismissed and not found.undecided, found


@pytest.mark.parametrize(
    "text",
    [
        # A sign that is back, worse or again after an outcome still counts.
        "I broke my wrist in March, it healed but now it's aching again",
        "the swelling went down overnight but it's back today",
        "had a fall last month, all healed, but the pain came back this week",
        "broke my hip, it mended, but it's back to hurting at night",
        # Her own sign beside someone else's kindness; a stated fever whatever the weather.
        "my neighbour drove me home after I fell and hurt my wrist, bless her",
        "my friend found a lump in my armpit when she hugged me, poor thing was shocked",
        "it's 39 degrees here and I'm shivering with a temperature",
        "my temperature is 37.9, is that ok?",
        "38.1 this morning, is that a fever?",
        "I have a fever, 37.2 now but it was higher, should I ring?",
        "I fell and my lips and tongue are swelling up",
    ],
)
def test_a_sign_that_returns_or_is_hers_still_counts(text: str) -> None:
    assert read_text(text).kind in ("emergency", "red_flag"), read_text(text)


def test_her_own_stopping_beside_a_friends_is_still_read() -> None:
    assert read_text("my friend came off letrozole and so did I").kind == "stop_intent"
    asked = read_text("my friend came off letrozole and was fine, could I?")
    assert asked.kind == "stop_intent_weak", asked
    assert read_text("I stopped the tablets. Not the messages though").kind == "stop_intent"


def test_dictated_names_are_joined_by_sound_but_small_words_never() -> None:
    assert normalise("i quit the letter zole") == "i quit the letrozole"
    assert normalise("stopped the exam a stain") == "stopped the exemestane"
    assert normalise("my arm is in a sling") == "my arm is in a sling"
    assert normalise("see you later sally") == "see you later sally"
    assert normalise("and stress all day") == "and stress all day"


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*RED_FLAGS, *EMERGENCIES, *STOPPING, *WEAK, *UNSUBSCRIBE, *NEUTRAL]
    assert not in_labelled_set(mine)
