"""Tailored offers after a check-in, and the alerts the same rules file implies."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import textstat
import yaml
from sqlmodel import SQLModel, select

from bot import clock, education
from bot import offers as engine
from bot.content import ContentError, messages, questionnaire
from bot.devtools.fake_telegram import FakeMessage
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    CheckIn,
    CheckInStatus,
    OfferEvent,
    PageView,
    Participant,
)
from bot.paths import content_dir
from bot.safety_scan import scan
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

T = TypeVar("T", bound=SQLModel)
OTHER = 5_000_000_002
SUMMARY = "Here is what you told me"
PAIN_HELP = "Some things have helped other women"
WORSENING = "higher than usual"
STIFFNESS = "stiff for a long time"
RED_FLAG = "contact your care team today about what you told me"
OPT_OUT = "Don't show this again"
NOTE_QUESTION = "Anything else you want to note?"


# ---------------------------------------------------------------- helpers


def question_message(h: Harness, wording: str) -> FakeMessage:
    """Returns the newest message that shows a question (found by its wording)."""
    for message in reversed(h.fake.chat(PATIENT)):
        if wording in message.text and message.buttons():
            return message
    raise AssertionError(f"no question {wording!r} in the chat")


async def check_in(
    h: Harness,
    *,
    pain: str,
    stiffness: str = "Under 30 minutes",
    symptoms: tuple[str, ...] = (),
    note: str | None = None,
) -> list[FakeMessage]:
    """Answers a whole check-in through the real handlers; returns what arrived after it."""
    before = len(h.fake.chat(PATIENT))
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes", message=question_message(h, "tablet yesterday"))
    await h.press(PATIENT, pain, message=question_message(h, "worst joint pain"))
    await h.press(PATIENT, stiffness, message=question_message(h, "joints stiff"))
    if pain != "0":
        await h.press(PATIENT, "3", message=question_message(h, "get in the way"))
    new = question_message(h, "Anything new")
    if symptoms:
        for label in symptoms:
            await h.press(PATIENT, label, message=new)
        await h.press(PATIENT, "Done", message=new)
    else:
        await h.press(PATIENT, "None", message=new)
    if note is None:
        await h.press(PATIENT, "Skip", message=question_message(h, "Anything else"))
    else:
        await h.send(PATIENT, note)
    chat = h.fake.chat(PATIENT)[before:]
    assert any(SUMMARY in m.text for m in chat), "the check-in did not close"
    return chat


def offers_of(chat: list[FakeMessage]) -> list[FakeMessage]:
    """Returns the offers: what came once every question was answered, before the note.

    They come before the optional note, which she may never write, so that a red flag is
    acted on at once; nothing follows the summary.
    """
    new = next(n for n, m in enumerate(chat) if "Anything new" in m.text)
    note = next(n for n, m in enumerate(chat) if NOTE_QUESTION in m.text)
    summary = next(n for n, m in enumerate(chat) if SUMMARY in m.text)
    assert summary == len(chat) - 1, "nothing follows the summary"
    return chat[new + 1 : note]


def offer_texts(chat: list[FakeMessage]) -> list[str]:
    """Returns the texts of the offers."""
    return [m.text for m in offers_of(chat)]


async def add_history(
    h: Harness,
    participant: Participant,
    *,
    days_ago: float,
    pain: int,
    stiffness: str = "none",
    new_symptoms: str = "none",
) -> None:
    """Stores an earlier completed check-in straight in the database (faster than pressing)."""
    at = clock.now() - timedelta(days=days_ago)
    q = questionnaire()
    async with h.db.session() as session:
        checkin = CheckIn(
            participant_id=participant.id or 0,
            questionnaire_id=q.id,
            questionnaire_version=q.version,
            due_at=at,
            window_closes_at=at + timedelta(hours=6),
            sent_at=at,
            first_answer_at=at,
            closed_at=at,
            status=CheckInStatus.completed,
        )
        session.add(checkin)
        await session.flush()
        values = {
            "took_med": "yes",
            "worst_pain": str(pain),
            "stiffness": stiffness,
            "new_symptoms": new_symptoms,
            "note": "",
        }
        if pain:
            values["interference"] = "2"
        for code, value in values.items():
            session.add(
                Answer(
                    checkin_id=checkin.id or 0,
                    item_code=code,
                    value=value,
                    answered_at=at,
                    first_value=value,
                    first_answered_at=at,
                )
            )


async def rows(h: Harness, model: type[T]) -> list[T]:
    """Returns every row of one table, oldest first."""
    async with h.db.session() as session:
        result = await session.exec(select(model))
        return sorted(result.all(), key=lambda row: getattr(row, "id", 0) or 0)


# ---------------------------------------------------------------- the offers


async def test_checkin_with_pain_7_offers_what_may_help_and_opens_the_page(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    chat = await check_in(h, pain="7")

    offers = offers_of(chat)
    assert len(offers) == 1
    offer = offers[0]
    assert PAIN_HELP in offer.text
    assert [label for label, _ in offer.buttons()] == ["Read: What may help", OPT_OUT]
    assert all(len(data.encode()) <= 64 for _, data in offer.buttons())

    await h.press(PATIENT, "Read: What may help", message=offer)
    page = h.last(PATIENT)
    assert "What may help" in page.text and page.buttons()
    assert page is not offer and offer.edits == 0  # the page opens below the offer
    events = await rows(h, OfferEvent)
    assert sorted((e.offer_code, e.event) for e in events) == [
        ("pain_help", "opened"),
        ("pain_help", "shown"),
    ]
    assert [v.page_id for v in await rows(h, PageView)] == ["what-may-help"]
    # Pain 7 is severe: one severe check-in is a digest line for the care team (codes only);
    # two in a row are urgent (tests below).
    alerts = await rows(h, Alert)
    assert [(a.kind, a.urgent, a.detail) for a in alerts] == [
        ("severe_pain", False, "n=1;src=checkin;rule=severe_pain;worst_pain=7")
    ]


async def test_pain_under_4_brings_no_offer(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    chat = await check_in(h, pain="3")
    assert offer_texts(chat) == []
    assert await rows(h, OfferEvent) == []
    assert await rows(h, Alert) == []


async def test_pain_twice_above_baseline_suggests_the_doctor(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    for day in range(10, 3, -1):  # 7 baseline answers, median 2
        await add_history(h, participant, days_ago=day, pain=2 if day != 6 else 3)
    # Pain 4 is baseline + 2: the first time is only one of the last 3.
    first = await check_in(h, pain="4")
    assert not any(WORSENING in t for t in offer_texts(first))
    assert any(PAIN_HELP in t for t in offer_texts(first))

    clock.advance(timedelta(days=1))
    second = await check_in(h, pain="4")
    texts = offer_texts(second)
    assert len(texts) == 1 and WORSENING in texts[0]  # pain help was shown yesterday
    offer = offers_of(second)[0]
    assert [label for label, _ in offer.buttons()] == ["Read: Talking with your doctor", OPT_OUT]
    alerts = [a for a in await rows(h, Alert) if a.kind == "worsening"]
    assert len(alerts) == 1
    assert alerts[0].urgent is False  # a line in the coordinators' digest
    assert alerts[0].detail == "n=1;src=checkin;rule=worsening;baseline=2;worst_pain_recent=2,4,4"


async def test_fewer_than_7_pain_answers_never_fire_the_baseline_rule(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    for day in (6, 5, 4, 3):
        await add_history(h, participant, days_ago=day, pain=0)
    await add_history(h, participant, days_ago=2, pain=6)
    chat = await check_in(h, pain="6")  # 6 answers: 2 of the last 3 far above, but no baseline
    assert not any(WORSENING in t for t in offer_texts(chat))
    assert not any(a.kind == "worsening" for a in await rows(h, Alert))
    async with h.db.session() as session:
        assert await engine.baseline(session=session, participant=participant) is None
    await add_history(h, participant, days_ago=-1, pain=1)
    async with h.db.session() as session:
        assert await engine.baseline(session=session, participant=participant) == 0.0


def test_baseline_is_the_median_of_the_first_7_scores() -> None:
    assert engine.median_baseline([5, 1, 1, 9, 2, 2, 3], 7) == 2.0
    assert engine.median_baseline([5, 1, 1, 9, 2, 2, 3, 10, 10, 10], 7) == 2.0
    assert engine.median_baseline([5, 1, 1, 9, 2, 2], 7) is None


async def test_red_flag_answer_offers_the_care_team_page_and_raises_an_urgent_alert(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    chat = await check_in(h, pain="2", symptoms=("Numbness or tingling in my hand",))
    offers = offers_of(chat)
    assert len(offers) == 1 and RED_FLAG in offers[0].text
    # No "Don't show this again" on the care-team advice.
    assert [label for label, _ in offers[0].buttons()] == ["Read: When to contact your care team"]
    alerts = await rows(h, Alert)
    assert [(a.kind, a.urgent, a.status, a.detail) for a in alerts] == [
        ("red_flag", True, AlertStatus.open, "n=1;src=checkin;rule=red_flag;sym=numbness")
    ]
    assert alerts[0].notify_pending  # the care team hears of it within one dispatcher tick
    await h.press(PATIENT, "Read: When to contact your care team", message=offers[0])
    assert "When to contact your care team" in h.last(PATIENT).text

    # The next day's red flag gets the advice again (no weekly limit on these); the open
    # alert is updated, and a new symptom is news for the care team.
    async with h.db.session() as session:
        alert = (await session.exec(select(Alert))).one()
        alert.notify_pending = False  # as if the dispatcher had delivered it
        session.add(alert)
    clock.advance(timedelta(days=1))
    chat = await check_in(h, pain="2", symptoms=("I had a fall",))
    assert any(RED_FLAG in t for t in offer_texts(chat))
    [alert] = await rows(h, Alert)
    assert alert.detail == "n=2;src=checkin;rule=red_flag;sym=numbness+fall"
    assert alert.count == 2 and alert.notify_pending


async def test_red_flag_offer_comes_first_and_at_most_two_offers_follow(
    harness: Harness,
) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    for day in (3, 2):
        await add_history(h, participant, days_ago=day, pain=1, stiffness="over_30")
    chat = await check_in(h, pain="8", stiffness="Longer", symptoms=("A swollen or red joint",))
    texts = offer_texts(chat)
    assert len(texts) == 2
    assert RED_FLAG in texts[0] and STIFFNESS in texts[1]
    # Pain help was held back, not recorded as shown; every alert is raised all the same.
    shown = {e.offer_code for e in await rows(h, OfferEvent)}
    assert shown == {"red_flag", "stiffness"}
    assert {a.kind for a in await rows(h, Alert)} == {"red_flag", "stiffness", "severe_pain"}


async def test_stiffness_over_30_minutes_on_3_checkins_in_7_days_suggests_telling_the_doctor(
    harness: Harness,
) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    await add_history(h, participant, days_ago=9, pain=1, stiffness="over_30")
    await add_history(h, participant, days_ago=2, pain=1, stiffness="over_30")
    # Only 2 within 7 days (the third was 9 days ago): nothing yet.
    chat = await check_in(h, pain="1", stiffness="Longer")
    assert offer_texts(chat) == []

    clock.advance(timedelta(days=1))
    chat = await check_in(h, pain="1", stiffness="Longer")
    texts = offer_texts(chat)
    assert len(texts) == 1 and STIFFNESS in texts[0]
    assert "call your care team this week" in texts[0]
    alerts = await rows(h, Alert)
    assert [(a.kind, a.urgent) for a in alerts] == [("stiffness", False)]


async def test_same_offer_not_twice_within_7_days_but_again_after_8(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    assert any(PAIN_HELP in t for t in offer_texts(await check_in(h, pain="5")))
    for _ in range(6):
        clock.advance(timedelta(days=1))
        assert offer_texts(await check_in(h, pain="5")) == []
    clock.advance(timedelta(days=2))  # 8 days after it was shown
    assert any(PAIN_HELP in t for t in offer_texts(await check_in(h, pain="5")))
    shown = [e for e in await rows(h, OfferEvent) if e.event == "shown"]
    assert len(shown) == 2


async def test_dont_show_this_again_turns_the_offer_off_for_good_and_is_replay_safe(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    offer = offers_of(await check_in(h, pain="6"))[0]
    data = next(d for label, d in offer.buttons() if label == OPT_OUT)
    update = h.updates.callback(PATIENT, data, offer, update_id=4242)
    await h.process(update)
    await h.process(update)  # Telegram delivers the same update twice
    await h.press(PATIENT, data, message=offer)  # and she taps the same button again
    assert "I will not show you this again" in offer.text
    assert [label for label, _ in offer.buttons()] == ["Read: What may help"]
    assert h.fake.answered_callbacks[-1].get("text") == "OK, turned off."
    opted = [e for e in await rows(h, OfferEvent) if e.event == "opted_out"]
    assert len(opted) == 1 and opted[0].offer_code == "pain_help"

    clock.advance(timedelta(days=30))
    assert offer_texts(await check_in(h, pain="9")) == []
    # The care team still hears about severe pain, whatever she turned off.
    assert [a.kind for a in await rows(h, Alert)] == ["severe_pain"]


async def test_red_flag_advice_cannot_be_turned_off(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    chat = await check_in(h, pain="1", symptoms=("New bone pain",))
    offer = offers_of(chat)[0]
    checkin_id = int(offer.buttons()[0][1].split(":")[2])
    await h.press(
        PATIENT, engine.callback_data(engine.OPT_OUT, checkin_id, "red_flag"), message=offer
    )
    assert (
        h.fake.answered_callbacks[-1].get("text")
        == "This button no longer works. Send /learn to see all topics."
    )
    assert not any(e.event == "opted_out" for e in await rows(h, OfferEvent))
    clock.advance(timedelta(days=1))
    chat = await check_in(h, pain="1", symptoms=("New bone pain",))
    assert any(RED_FLAG in t for t in offer_texts(chat))


async def test_offer_buttons_are_checked_against_the_presser(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await make_active_participant(h.db, telegram_user_id=OTHER)
    offer = offers_of(await check_in(h, pain="6"))[0]
    data = next(d for label, d in offer.buttons() if label == OPT_OUT)
    await h.process(h.updates.callback(OTHER, data, offer))
    assert h.fake.answered_callbacks[-1].get("text") == "This button is not for you."
    assert not any(e.event == "opted_out" for e in await rows(h, OfferEvent))
    assert "I will not show you this again" not in offer.text


# ---------------------------------------------------------------- the restricted page, alerts


def test_restricted_page_on_stopping_is_never_offered() -> None:
    offerable = {p.id for p in education.pages_offerable_after_checkin()}
    assert "about-stopping" not in offerable
    book = engine.rules()
    for rule in book.rules:
        if rule.offer is not None:
            assert rule.offer.page in offerable
            assert not education.page(rule.offer.page).restricted  # type: ignore[union-attr]
    raw = yaml.safe_load((content_dir() / engine.RULES_FILE).read_text(encoding="utf-8"))
    raw["rules"][1]["offer"]["page"] = "about-stopping"
    with pytest.raises(ContentError, match="about-stopping"):
        engine.parse_rules(raw)


async def test_no_checkin_answer_ever_offers_the_page_on_stopping(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    for day in range(10, 3, -1):
        await add_history(h, participant, days_ago=day, pain=0, stiffness="over_30")
    chat = await check_in(
        h,
        pain="10",
        stiffness="Longer",
        symptoms=("A swollen or red joint", "Pain stops me washing or dressing"),
    )
    clock.advance(timedelta(days=1))
    chat += await check_in(h, pain="10", stiffness="Longer")
    buttons = [data for m in chat for _, data in m.buttons()]
    assert any(d.startswith("of:") for d in buttons)
    pages = set()
    for data in buttons:
        parsed = engine.parse_callback(data)
        if parsed is not None:
            rule = engine.rules().rule(parsed[2])
            assert rule is not None and rule.offer is not None
            pages.add(rule.offer.page)
    assert pages and "about-stopping" not in pages
    assert not any("about-stopping" in d for d in buttons)


async def test_alert_rows_carry_no_patient_text(harness: Harness) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    for day in range(9, 1, -1):
        await add_history(h, participant, days_ago=day, pain=1 if day > 2 else 9)
    secret = "my neighbour Maria walked with me to the garden"
    await check_in(
        h,
        pain="9",
        stiffness="Longer",
        symptoms=("A finger that catches or locks",),
        note=secret,
    )
    alerts = await rows(h, Alert)
    assert {a.kind for a in alerts} == {"red_flag", "severe_pain", "worsening"}
    for alert in alerts:
        assert alert.detail is not None
        assert re.fullmatch(r"[a-z0-9_=;,.]+", alert.detail), alert.detail
        assert "maria" not in alert.detail.lower() and "garden" not in alert.detail.lower()
        assert alert.checkin_id is not None
    async with h.db.session() as session:
        note = (await session.exec(select(Answer).where(Answer.item_code == "note"))).all()
    assert [a.value for a in note if a.value] == [secret]  # stored with her answers only


async def test_severe_pain_is_urgent_only_on_two_checkins_in_a_row_and_one_alert_stays_open(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await check_in(h, pain="8")
    [first] = await rows(h, Alert)
    assert (first.kind, first.urgent, first.notify_pending) == ("severe_pain", False, False)
    clock.advance(timedelta(days=1))
    await check_in(h, pain="8")
    [second] = await rows(h, Alert)  # the same row, updated
    assert (second.urgent, second.count, second.notify_pending) == (True, 2, True)
    async with h.db.session() as session:
        alert = (await session.exec(select(Alert))).one()
        alert.status = AlertStatus.acknowledged
        session.add(alert)
    clock.advance(timedelta(days=1))
    await check_in(h, pain="8")
    assert [a.count for a in await rows(h, Alert)] == [3]  # acknowledged is still active
    async with h.db.session() as session:
        alert = (await session.exec(select(Alert))).one()
        alert.status = AlertStatus.closed
        session.add(alert)
    clock.advance(timedelta(days=1))
    await check_in(h, pain="8")
    assert [a.kind for a in await rows(h, Alert)] == ["severe_pain", "severe_pain"]


# ---------------------------------------------------------------- the rules file and texts


def test_rules_file_loads_and_keeps_the_thresholds() -> None:
    book = engine.load_rules()
    assert (book.baseline_item, book.baseline_answers) == ("worst_pain", 7)
    pain_help = book.rule("pain_help")
    worsening = book.rule("worsening")
    red_flag = book.rule("red_flag")
    assert pain_help is not None and pain_help.when.value == 4
    assert worsening is not None and (worsening.when.delta, worsening.when.hits) == (2, 2)
    assert red_flag is not None and red_flag.alert is not None and red_flag.alert.urgent
    assert set(red_flag.when.values) == {
        "swelling",
        "fever",
        "numbness",
        "locking",
        "selfcare",
        "bone_pain",
        "fall",
    }


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("rules", 0, "when", "item"), "mood", "not an item"),
        (("rules", 0, "when", "values"), ["swelling", "headache"], "options of"),
        (("rules", 0, "offer", "message"), "offers.nope", "not in content/messages"),
        (("rules", 0, "alert", "urgent"), "yes", "true or false"),
        (("baseline", "answers"), 0, "whole number"),
    ],
)
def test_a_broken_rules_file_is_refused_with_a_clear_message(
    path: tuple[str | int, ...], value: object, error: str
) -> None:
    raw = yaml.safe_load((content_dir() / engine.RULES_FILE).read_text(encoding="utf-8"))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ContentError, match=error):
        engine.parse_rules(raw)


def test_offer_texts_read_at_grade_8_and_pass_the_safety_scan() -> None:
    texts = {k: v for k, v in messages("en").texts.items() if k.startswith("offers.")}
    book = engine.rules()
    for rule in book.rules:
        if rule.offer is not None:
            text = texts[rule.offer.message]
            assert textstat.flesch_kincaid_grade(text) <= 8, rule.code
    for key, text in texts.items():
        assert scan(text) == [], key


def test_rules_file_lives_in_content(tmp_path: Path) -> None:
    assert (content_dir() / engine.RULES_FILE).is_file()
    with pytest.raises(ContentError, match="missing rules file"):
        engine.load_rules(tmp_path / "nope.yaml")
