"""Issue 13, reading free text like a careful nurse in five other languages: the safety signs
of the English book (emergencies and same-day red flags) are read in Spanish, German, French,
Italian and Portuguese too (content/safety/<locale>.yaml), mixed into English the way people
write. Denials, a relative's or a past symptom, food and blood tests do not raise an alarm.

The wordings are ours, written for these tests (none of them is in the labelled set); they
test the method sign by sign, not a list of sentences.
"""

from __future__ import annotations

import pytest

from bench.score_intent import top_path
from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    alerts,
    answered_on,
    gets_no_safety_path,
    gets_red_flag,
    in_labelled_set,
    reply_paths,
)

# (kind, text) for each language, sign by sign.
SPANISH = [
    # Cannot breathe, short of breath at rest, blue lips.
    ("emergency", "Mi madre no puede respirar, what do I do"),
    ("emergency", "me falta el aire even sitting down, los labios morados"),
    # Chest pain, pressure or tightness.
    ("emergency", "Tengo un dolor en el pecho que aprieta, since lunch"),
    ("emergency", "feeling awful, presión en el pecho and sweating"),
    # Blood vomited or coughed up.
    ("emergency", "just vomité sangre twice, is that bad?"),
    ("emergency", "He's tosiendo sangre since this morning"),
    # Fainted and not waking, not responding, on the floor.
    ("emergency", "mi mamá se desmayó and she won't wake up"),
    ("emergency", "my mum no reacciona, please help"),
    ("emergency", "abuela está en el suelo, can't lift her"),
    ("emergency", "me caí en el baño y no puedo levantarme"),
    ("emergency", "la encontré en el suelo, no reacciona"),
    # Stroke signs.
    ("emergency", "creo que es un ictus, la cara torcida"),
    ("emergency", "mi padre habla raro y tiene un lado del cuerpo dormido"),
    # Allergic swelling.
    ("emergency", "se me está hinchando la lengua after the new tablets"),
    ("emergency", "los labios hinchados and my throat feels tight"),
    # Overdose.
    ("emergency", "I think she se tomó la caja entera de pastillas"),
    ("emergency", "sobredosis? I took 20 pastillas by accident"),
    # Self-harm.
    ("emergency", "ya no aguanto, quiero morirme"),
    ("emergency", "tengo pensamientos de suicidio lately"),
    # Fever with aching or hot joints; a hot red joint.
    ("red_flag", "tengo fiebre, 38,5 and my knees ache all over"),
    ("red_flag", "Tengo 38.7 de fiebre y la rodilla está caliente"),
    ("red_flag", "la rodilla caliente y roja since yesterday"),
    # Cannot walk or bear weight; a weak hand.
    ("red_flag", "no puedo apoyar el pie, hurts too much"),
    ("red_flag", "no puedo caminar since the weekend"),
    ("red_flag", "no puedo agarrar nada, my hand is so weak"),
    # A knock on the head; a broken bone; back pain at night.
    ("red_flag", "me caí ayer y me golpeé la cabeza"),
    ("red_flag", "creo que me he roto la muñeca"),
    ("red_flag", "dolor de espalda por la noche, never had it before"),
]

GERMAN = [
    ("emergency", "Meine Mutter kann nicht richtig atmen, what should I do?"),
    ("emergency", "bekomme kaum Luft, even when resting"),
    ("emergency", "Druck auf der Brust und Schweiß, scared"),
    ("emergency", "Brustschmerzen seit einer Stunde, help"),
    ("emergency", "ich habe Blut erbrochen, lots of it"),
    ("emergency", "mein Mann hustet Blut, is that urgent?"),
    ("emergency", "Mama ist bewusstlos, I'm calling you first"),
    ("emergency", "Oma liegt auf dem Boden und reagiert nicht"),
    ("emergency", "bin gestürzt und komme nicht mehr hoch, home alone"),
    ("emergency", "I think Schlaganfall, ihr Mundwinkel hängt"),
    ("emergency", "he suddenly kann nicht mehr richtig sprechen"),
    ("emergency", "meine Lippen sind geschwollen and itchy all over"),
    ("emergency", "sie hat die ganze Packung geschluckt"),
    ("emergency", "Überdosis maybe? took too many"),
    ("emergency", "ich will nicht mehr leben, sorry"),
    ("red_flag", "ich habe Fieber, 38,5, and all my joints ache"),
    ("red_flag", "the Knie ist heiß und rot today"),
    ("red_flag", "Knöchel geschwollen, can't put my shoes on"),
    ("red_flag", "ich kann kaum laufen since Monday"),
    ("red_flag", "kann nichts mehr festhalten, meine Hand ist so schwach"),
    ("red_flag", "bin gestern gestürzt und habe mir den Kopf angeschlagen"),
    ("red_flag", "I think my Handgelenk ist gebrochen"),
    ("red_flag", "Rückenschmerzen in der Nacht, they wake me up"),
]

FRENCH = [
    ("emergency", "ma mère n'arrive pas à respirer, what do I do"),
    ("emergency", "je suis essoufflée même au repos, lèvres bleues"),
    ("emergency", "douleur dans la poitrine, it feels like a weight"),
    ("emergency", "j'ai une douleur thoracique since an hour"),
    ("emergency", "j'ai vomi du sang this morning"),
    ("emergency", "il crache du sang, should I call?"),
    ("emergency", "ma mère s'est évanouie and doesn't wake up"),
    ("emergency", "maman est par terre et ne répond pas"),
    ("emergency", "je suis tombée et je ne peux pas me relever"),
    ("emergency", "je crois que c'est un AVC, sa bouche est de travers"),
    ("emergency", "il parle bizarrement and one side is weak"),
    ("emergency", "mes lèvres gonflent after the new pills"),
    ("emergency", "elle a avalé toute la boîte de comprimés"),
    ("emergency", "j'ai des idées noires and want to disappear"),
    ("red_flag", "j'ai de la fièvre, 38,5, et le genou gonflé"),
    ("red_flag", "le genou est chaud et rouge since yesterday"),
    ("red_flag", "je ne peux plus marcher, hip"),
    ("red_flag", "impossible de poser le pied par terre"),
    ("red_flag", "je n'arrive plus à serrer la main, so weak"),
    ("red_flag", "je suis tombée et je me suis cognée la tête"),
    ("red_flag", "I think j'ai le poignet cassé"),
    ("red_flag", "mal au dos la nuit, it's new"),
]

ITALIAN = [
    ("emergency", "mia madre non riesce a respirare bene, help"),
    ("emergency", "mi manca l'aria anche a riposo"),
    ("emergency", "dolore al petto since this morning, scared"),
    ("emergency", "ho un peso sul petto and I'm sweating"),
    ("emergency", "ho vomitato sangue, what do I do"),
    ("emergency", "mio padre tossisce sangue"),
    ("emergency", "mamma è svenuta and won't wake up"),
    ("emergency", "la nonna è per terra e non risponde"),
    ("emergency", "sono caduta e non riesco ad alzarmi, alone at home"),
    ("emergency", "credo sia un ictus, ha la bocca storta"),
    ("emergency", "non riesce a parlare bene and his arm is weak"),
    ("emergency", "mi si gonfia la lingua after the new pills"),
    ("emergency", "ha preso tutta la scatola di pastiglie"),
    ("emergency", "voglio farla finita, sorry"),
    ("red_flag", "ho la febbre a 38,5 and my joints ache"),
    ("red_flag", "il ginocchio è caldo e gonfio since yesterday"),
    ("red_flag", "non riesco a camminare, my hip"),
    ("red_flag", "non riesco a stringere niente, la mano è debole"),
    ("red_flag", "sono caduta e ho battuto la testa"),
    ("red_flag", "penso di essermi rotta il polso, it's swollen"),
    ("red_flag", "mal di schiena di notte, mi sveglia"),
]

PORTUGUESE = [
    ("emergency", "minha mãe não consegue respirar, what do I do"),
    ("emergency", "falta de ar mesmo parada, lábios roxos"),
    ("emergency", "dor no peito forte, like a weight"),
    ("emergency", "aperto no peito e suando frio"),
    ("emergency", "vomitei sangue this morning"),
    ("emergency", "ele está tossindo sangue"),
    ("emergency", "minha mãe desmaiou e não acorda"),
    ("emergency", "a vó está no chão e não responde"),
    ("emergency", "caí e não consigo me levantar, alone"),
    ("emergency", "acho que é um AVC, a boca está torta"),
    ("emergency", "ela não consegue falar direito and her arm is weak"),
    ("emergency", "a língua está inchando after the new tablets"),
    ("emergency", "tomei a caixa toda de comprimidos"),
    ("emergency", "não quero mais viver"),
    ("red_flag", "estou com febre de 38,5 and my knee is swollen"),
    ("red_flag", "o joelho está quente e vermelho"),
    ("red_flag", "não consigo andar since yesterday"),
    ("red_flag", "não consigo segurar a xícara, mão fraca"),
    ("red_flag", "caí e bati com a cabeça"),
    ("red_flag", "acho que quebrei o pulso"),
    ("red_flag", "dor nas costas à noite, me acorda"),
    # Stopping and stop-the-messages (Brazilian and European forms).
    ("stop_intent", "parei de tomar o letrozol, too much pain"),
    ("stop_intent", "deixei de tomar os comprimidos last week"),
    ("unsubscribe", "não quero mais mensagens, obrigada"),
    ("unsubscribe", "parem de me mandar mensagens please"),
]

SIGNS = [*SPANISH, *GERMAN, *FRENCH, *ITALIAN, *PORTUGUESE]


@pytest.mark.parametrize(("kind", "text"), SIGNS)
def test_a_sign_in_another_language_is_read_as_in_english(kind: str, text: str) -> None:
    assert read_text(text).kind == kind


# Denials, someone else's or a past symptom, food, blood tests, hair loss and idioms.
HARMLESS = [
    "no tengo fiebre, just tired today",
    "no tengo dolor en el pecho, only the knees ache",
    "sin fiebre y sin hinchazón, all good",
    "mañana tengo análisis de sangre, can I take the pill before?",
    "comí pechuga de pollo, is that ok with letrozole?",
    "la caída del pelo me preocupa",
    "el año pasado tuve fiebre alta, ya estoy bien",
    "mi marido tiene fiebre, should I worry for myself?",
    "la rodilla no está caliente ni roja",
    "tengo la garganta inflamada from a cold",
    "tengo 38 años y tomo anastrozol",
    "el médico no responde a mis correos",
    "he tomado todas mis pastillas esta semana",
    "keine Brustschmerzen, nur die Knie",
    "kein Fieber, alles gut",
    "morgen ist Blutabnahme, soll ich nüchtern sein?",
    "die App reagiert nicht, help",
    "das Knie ist nicht heiß, just stiff",
    "das Konzert hat mir gut gefallen",
    "ich bin gestern vor dem Fernseher eingeschlafen",
    "letztes Jahr hatte ich Fieber, jetzt alles gut",
    "pas de douleur, just checking in",
    "je n'ai pas de fièvre",
    "pas de douleur à la poitrine, juste la fatigue",
    "prise de sang demain matin, à jeun?",
    "la chute des cheveux is getting worse",
    "je suis tombée malade la semaine dernière, a cold",
    "je suis tombée sur un article about letrozole",
    "de plus en plus fatiguée, is that the pills?",
    "le médecin ne répond pas à mes messages",
    "je suis effondrée depuis le diagnostic",
    "ces comprimés peuvent me faire du mal?",
    "non ho febbre, solo stanca",
    "nessun dolore al petto, just the hands",
    "ho mangiato petto di pollo alla griglia",
    "domani ho l'esame del sangue, posso prendere la pillola?",
    "la caduta dei capelli is terrible",
    "mio marito ha la febbre, I'm fine",
    "il ginocchio non è caldo",
    "mi sento gonfia dopo cena",
    "ho 38 anni and I take letrozole",
    "le pillole possono farmi del male?",
    "sono a terra, molto triste oggi",
    "não tenho febre, só cansaço",
    "não tenho dor no peito, só nos joelhos",
    "comi peito de frango ontem",
    "amanhã tenho exame de sangue em jejum",
    "meu cabelo cai muito, is that the pills?",
    "a queda de cabelo is awful",
    "meu marido está com febre",
    "o joelho não está quente",
    "ano passado tive febre, já estou bem",
    "vou cancelar a consulta de amanhã",
    "nunca parei de tomar",
    "a luz apagou e fiquei no escuro",
    # Someone not answering the phone is not someone unresponsive.
    "el médico no responde, estoy mareada hoy",
    "il medico non risponde, mi gira la testa",
    "der Arzt antwortet nicht, mir ist schwindelig",
    "le médecin ne répond pas, j'ai des vertiges",
    "o médico não responde, estou tonta",
    # English read by every book: the other books stay silent on it.
    "I had a fracture in 2015, all healed",
    "The blue pill is true to form",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_a_denial_or_a_harmless_look_alike_raises_nothing(text: str) -> None:
    assert read_text(text).kind == "none"


EMERGENCIES_THROUGH_HANDLERS = [
    "Mi madre no puede respirar bien, los labios azules, what do I do",
    "Papa liegt auf dem Boden und reagiert nicht mehr, please",
    "je tousse du sang depuis ce matin, is it serious?",
    "meu marido desmaiou e não acorda, help",
]


@pytest.mark.parametrize("text", EMERGENCIES_THROUGH_HANDLERS)
async def test_an_emergency_in_another_language_gets_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "emergency")


# Another book's rules are named "es:emergency.breathing": the alert must still be raised, with
# that id (this found a gap: only ids starting "emergency." raised one).
@pytest.mark.parametrize("text", EMERGENCIES_THROUGH_HANDLERS)
async def test_an_emergency_in_another_language_raises_the_urgent_alert(
    harness: Harness, text: str
) -> None:
    h = harness
    await reply_paths(h, text)
    found = await alerts(h, "emergency")
    assert found and all(alert.urgent for alert in found)
    assert all(":emergency." in (alert.detail or "") for alert in found), found


async def test_self_harm_in_another_language_raises_its_own_urgent_alert(
    harness: Harness,
) -> None:
    h = harness
    seen = await reply_paths(h, "ya no puedo más, quiero morir")
    assert top_path(seen) == "emergency", seen
    [found] = await alerts(h, "self_harm")
    assert found.urgent and "es:emergency.self_harm" in (found.detail or "")


RED_FLAGS_THROUGH_HANDLERS = [
    "ho la febbre a 38,2 e la caviglia è rossa e gonfia, what should I do",
    "estou com febre e o tornozelo está quente, can't walk well",
]


@pytest.mark.parametrize("text", RED_FLAGS_THROUGH_HANDLERS)
async def test_a_red_flag_in_another_language_gets_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


async def test_a_denied_sign_in_another_language_raises_no_alert(harness: Harness) -> None:
    await gets_no_safety_path(harness, "no tengo fiebre ni dolor en el pecho, just checking in")


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [
        *(text for _, text in SIGNS),
        *HARMLESS,
        *EMERGENCIES_THROUGH_HANDLERS,
        *RED_FLAGS_THROUGH_HANDLERS,
    ]
    assert not in_labelled_set(mine)
