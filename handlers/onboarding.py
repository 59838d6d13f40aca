"""Joining and first-time set-up: /start, consent (and re-consent), and the set-up questions.

Callback data: `onb:<op>[:<arg>...]`. Where she is in the set-up is derived from what is
stored (`bot.participants.next_step`), so a replayed update, a stale button or a second
worker continues at the right place. The question renderers here are shared with /settings
(`handlers.settings`, prefix `set:`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import participants as pt
from bot.clock import now
from bot.config import Settings
from bot.content import Messages, consent_text
from bot.countries import (
    OTHER_CODE,
    Country,
    all_countries,
    country,
    emergency_number,
    utc_offset,
)
from bot.enrollment import START_PARAM, InviteProblem, find_invite, redeem
from bot.models import OutgoingMessage, Participant, Schedule
from bot.outbox import Buttons, RenderedMessage
from bot.participants import Step
from bot.pseudonym import pseudonym_for
from bot.services import Services
from handlers.common import BotContext, keyboard, msgs, participant_for

log = logging.getLogger(__name__)

ONB = "onb"
COUNTRIES_PER_PAGE = 8
# Callback data: a prefix, an operation and its arguments (values are checked per operation).
PRESS = re.compile(r"^(onb|set):([a-z]{2,6})(?::([A-Za-z0-9_.\-:]{1,40}))?$")

MEDICINE_LABELS = {
    "anastrozole": "onboarding.medicine.anastrozole",
    "letrozole": "onboarding.medicine.letrozole",
    "exemestane": "onboarding.medicine.exemestane",
    "other": "onboarding.medicine.other",
    "not_sure": "onboarding.medicine.not_sure",
}
STARTED_LABELS = {
    "this_month": "onboarding.started.this_month",
    "1_6_months": "onboarding.started.1_6_months",
    "6_12_months": "onboarding.started.6_12_months",
    "over_year": "onboarding.started.over_year",
    "not_sure": "onboarding.started.not_sure",
}
ITEM_LABELS = {
    "med": "onboarding.item.med",
    "st": "onboarding.item.st",
    "cty": "onboarding.item.cty",
    "tm": "onboarding.item.tm",
    "dy": "onboarding.item.dy",
}
ITEM_STEPS = {
    "med": Step.medicine,
    "st": Step.started,
    "cty": Step.country,
    "tm": Step.time,
    "dy": Step.days,
}
DAY_SHORT = tuple(f"onboarding.day_short.{d}" for d in range(7))
DAY_LONG = tuple(f"onboarding.day_long.{d}" for d in range(7))
INVITE_PROBLEMS = {
    InviteProblem.unknown: "onboarding.invite_unknown",
    InviteProblem.expired: "onboarding.invite_expired",
    InviteProblem.used_up: "onboarding.invite_used_up",
}


# ---------------------------------------------------------------- replies


@dataclass
class Reply:
    """What a handler sends once its transaction has committed."""

    messages: list[tuple[str, Buttons | None]] = field(default_factory=list)
    chosen: str | None = None  # marks the pressed message with her choice, removing its buttons
    replace: tuple[str, Buttons | None] | None = None  # rewrites the pressed message in place
    toast: str | None = None  # a short notice on the button press

    def say(self, text: str, buttons: Buttons | None = None) -> Reply:
        """Adds one message to send."""
        self.messages.append((text, buttons))
        return self


async def deliver(update: Update, context: BotContext, reply: Reply) -> None:
    """Edits the pressed message, answers the press, and sends the reply's messages."""
    query = update.callback_query
    if query is not None:
        original = getattr(query.message, "text", None)
        try:
            if reply.replace is not None:
                text, buttons = reply.replace
                await query.edit_message_text(text, reply_markup=keyboard(buttons))
            elif reply.chosen is not None and original:
                marked = f"{original}\n\n{msgs().get('onboarding.chosen', choice=reply.chosen)}"
                await query.edit_message_text(marked, reply_markup=None)
        except BadRequest as exc:
            # "Message is not modified" / too old to edit: the choice is already stored.
            log.info("could not edit the pressed message: %s", type(exc).__name__)
        await query.answer(reply.toast)
    chat = update.effective_chat
    if chat is None:
        return
    for text, buttons in reply.messages:
        await context.bot.send_message(chat.id, text, reply_markup=keyboard(buttons))


def parse_press(data: str | None) -> tuple[str, str, list[str]] | None:
    """Splits callback data into (prefix, operation, arguments), or None when malformed."""
    match = PRESS.match(data or "")
    if not match or len((data or "").encode()) > 64:
        return None
    args = match.group(3).split(":") if match.group(3) else []
    return match.group(1), match.group(2), args


# ---------------------------------------------------------------- labels


def emergency_for(participant: Participant | None, settings: Settings) -> str:
    """Returns her emergency number (by country, else the study default) for a sentence."""
    number = emergency_number(
        country_code=participant.country if participant else None,
        default=settings.emergency_number,
    )
    return number or msgs(participant).get("onboarding.emergency_unknown")


def zone_label(m: Messages, found: Country, index: int) -> str:
    """Returns the button label of one zone of a country."""
    choice = found.zones[index]
    if found.is_other:
        offset = utc_offset(choice.zone, at=now())
        return m.get("onboarding.zone_other_button", offset=offset, label=choice.label)
    return choice.label


def default_zone_label(m: Messages, settings: Settings) -> str:
    """Returns the button label of the study's default zone."""
    return m.get(
        "onboarding.zone_other_button",
        offset=utc_offset(settings.default_timezone, at=now()),
        label=m.get("onboarding.zone_default_label"),
    )


def describe_zone(m: Messages, participant: Participant, settings: Settings) -> str:
    """Returns the label of her stored zone for the summary."""
    found = country(participant.country)
    zone = participant.timezone or ""
    if found is not None:
        for index, choice in enumerate(found.zones):
            if choice.zone == zone:
                return zone_label(m, found, index)
    if zone == settings.default_timezone:
        return default_zone_label(m, settings)
    return zone


def describe_country(m: Messages, code: str | None) -> str:
    """Returns a country's name for the summary."""
    found = country(code)
    if found is None:
        return ""
    return m.get("onboarding.other_country_name") if found.is_other else found.name


def describe_days(m: Messages, weekdays: str) -> str:
    """Returns 'Every day' or the chosen days, e.g. 'Mon, Wed, Fri'."""
    if weekdays == pt.EVERY_DAY:
        return m.get("onboarding.every_day")
    return ", ".join(m.get(DAY_SHORT[int(d)]) for d in weekdays)


def describe_when(m: Messages, due_at_utc: datetime, zone: str) -> str:
    """Returns 'today at 09:05', 'tomorrow at 08:00' or 'on Wednesday at 08:00' in her time."""
    local = pt.local_due(due_at_utc, zone)
    today = pt.local_due(now(), zone).date()
    hhmm = local.strftime("%H:%M")
    if local.date() == today:
        return m.get("onboarding.when_today", time=hhmm)
    if local.date() == today + timedelta(days=1):
        return m.get("onboarding.when_tomorrow", time=hhmm)
    return m.get("onboarding.when_later", day=m.get(DAY_LONG[local.weekday()]), time=hhmm)


def profile_fields(
    m: Messages, participant: Participant, settings: Settings, *, local_time: str, weekdays: str
) -> dict[str, str]:
    """Returns her set-up answers as labels, for the summary and the settings menu."""
    return {
        "medicine": m.get(MEDICINE_LABELS[participant.medicine or "not_sure"]),
        "started": m.get(STARTED_LABELS[participant.therapy_started or "not_sure"]),
        "country": describe_country(m, participant.country),
        "zone": describe_zone(m, participant, settings),
        "time": local_time,
        "days": describe_days(m, weekdays),
    }


# ---------------------------------------------------------------- questions


def consent_message(m: Messages, participant: Participant | None) -> tuple[str, Buttons]:
    """Returns the consent text with its version and the Agree / Not now buttons."""
    ct = consent_text(participant.locale if participant else "en")
    return m.get("onboarding.consent", text=ct.text, version=ct.version), consent_buttons(
        m, ct.version
    )


def consent_buttons(m: Messages, version: str) -> Buttons:
    """Returns Agree / Not now; Agree names the version she read."""
    return [
        [(m.get("onboarding.agree"), f"{ONB}:agree:{version}")],
        [(m.get("onboarding.not_now"), f"{ONB}:later")],
    ]


def country_page(m: Messages, prefix: str, page: int) -> Buttons:
    """Returns one page of country buttons, page arrows and "Another country"."""
    listed = all_countries()
    pages = max(1, -(-len(listed) // COUNTRIES_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    shown = listed[page * COUNTRIES_PER_PAGE : (page + 1) * COUNTRIES_PER_PAGE]
    rows: Buttons = [
        [(c.name, f"{prefix}:cty:{c.code}") for c in shown[i : i + 2]]
        for i in range(0, len(shown), 2)
    ]
    nav: list[tuple[str, str]] = []
    if page > 0:
        nav.append((m.get("onboarding.fewer_countries"), f"{prefix}:cp:{page - 1}"))
    if page < pages - 1:
        nav.append((m.get("onboarding.more_countries"), f"{prefix}:cp:{page + 1}"))
    if nav:
        rows.append(nav)
    rows.append([(m.get("onboarding.other_country"), f"{prefix}:cty:{OTHER_CODE}")])
    return rows


def zone_question(
    m: Messages, prefix: str, found: Country, settings: Settings
) -> tuple[str, Buttons]:
    """Returns the time zone question for one country."""
    rows: Buttons = [
        [(zone_label(m, found, i), f"{prefix}:tz:{found.code}:{i}")]
        for i in range(len(found.zones))
    ]
    if found.is_other:
        rows.append([(default_zone_label(m, settings), f"{prefix}:tz:{found.code}:d")])
        return m.get("onboarding.ask_zone_other"), rows
    return m.get("onboarding.ask_zone"), rows


def days_toggle(m: Messages, prefix: str, mask: str) -> tuple[str, Buttons]:
    """Returns the weekday toggles (ticked when chosen) and Done."""
    buttons: list[tuple[str, str]] = []
    for day in range(7):
        name = m.get(DAY_SHORT[day])
        label = m.get("onboarding.day_on", day=name) if str(day) in mask else name
        buttons.append((label, f"{prefix}:dy:{pt.toggle_weekday(mask, day) or '-'}"))
    rows: Buttons = [buttons[:4], buttons[4:]]
    rows.append([(m.get("onboarding.days_done"), f"{prefix}:dd:{mask or '-'}")])
    return m.get("onboarding.ask_pick_days"), rows


def question(
    m: Messages,
    step: Step,
    *,
    prefix: str,
    participant: Participant,
    settings: Settings,
) -> tuple[str, Buttons | None]:
    """Returns one set-up question with its buttons (the summary is `summary_message`)."""
    if step == Step.consent:
        return consent_message(m, participant)
    if step == Step.medicine:
        return m.get("onboarding.ask_medicine"), [
            [(m.get(key), f"{prefix}:med:{value}")] for value, key in MEDICINE_LABELS.items()
        ]
    if step == Step.started:
        return m.get("onboarding.ask_started"), [
            [(m.get(key), f"{prefix}:st:{value}")] for value, key in STARTED_LABELS.items()
        ]
    if step == Step.country:
        return m.get("onboarding.ask_country"), country_page(m, prefix, 0)
    if step == Step.zone:
        found = country(participant.country)
        if found is None:
            return question(
                m, Step.country, prefix=prefix, participant=participant, settings=settings
            )
        return zone_question(m, prefix, found, settings)
    if step == Step.time:
        presets = [(hhmm, f"{prefix}:tm:{hhmm.replace(':', '')}") for hhmm in pt.TIME_PRESETS]
        rows: Buttons = [presets[:3], presets[3:]]
        rows.append([(m.get("onboarding.another_time"), f"{prefix}:tmx")])
        return m.get("onboarding.ask_time"), rows
    if step == Step.days:
        return m.get("onboarding.ask_days"), [
            [(m.get("onboarding.every_day"), f"{prefix}:dd:{pt.EVERY_DAY}")],
            [(m.get("onboarding.choose_days"), f"{prefix}:dy:-")],
        ]
    raise ValueError(f"no question for step {step}")


def item_menu(m: Messages, prefix: str) -> Buttons:
    """Returns one button per set-up item she can change."""
    return [[(m.get(key), f"{prefix}:edit:{item}")] for item, key in ITEM_LABELS.items()]


def summary_message(
    m: Messages, participant: Participant, draft: Schedule, settings: Settings
) -> tuple[str, Buttons]:
    """Returns the summary of her answers with Confirm / Change something."""
    fields = profile_fields(
        m, participant, settings, local_time=draft.local_time, weekdays=draft.weekdays
    )
    return m.get("onboarding.summary", **fields), [
        [(m.get("onboarding.confirm"), f"{ONB}:ok")],
        [(m.get("onboarding.change"), f"{ONB}:chg")],
    ]


async def current_question(
    session: AsyncSession, participant: Participant, settings: Settings
) -> tuple[Step, tuple[str, Buttons | None]]:
    """Returns her next set-up step and its question, and records it as awaited."""
    m = msgs(participant)
    draft = await pt.draft_schedule(session=session, participant=participant)
    step = pt.next_step(participant, draft)
    if step == Step.done:
        return step, (m.get("onboarding.already_done"), None)
    participant.awaiting = f"{ONB}:{step}"
    session.add(participant)
    if step == Step.confirm:
        assert draft is not None
        return step, summary_message(m, participant, draft, settings)
    return step, question(m, step, prefix=ONB, participant=participant, settings=settings)


# ---------------------------------------------------------------- /start


async def on_start(update: Update, context: BotContext) -> None:
    """Welcomes a new person (with an invite or open enrollment) and shows the consent text."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    settings = context.services.settings
    code = context.args[0] if context.args else None
    reply = Reply()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None:
            key = pseudonym_key(settings)
            # Her ids may have been erased on request; the pseudonym still says she left.
            earlier = await pt.find_by_pseudonym(
                session=session, pseudonym=pseudonym_for(user.id, key)
            )
            if earlier is not None:
                reply.say(msgs(earlier).get("onboarding.left"))
            else:
                await _admit(session, reply, settings, user.id, chat.id, code)
        else:
            await _returning(session, reply, settings, participant)
    await deliver(update, context, reply)


def pseudonym_key(settings: Settings) -> str:
    """Returns the pseudonym key; nobody may join without one (a made-up key is guessable)."""
    if not settings.pseudonym_key:
        raise RuntimeError("PSEUDONYM_KEY is not set")
    return settings.pseudonym_key


async def _admit(
    session: AsyncSession,
    reply: Reply,
    settings: Settings,
    user_id: int,
    chat_id: int,
    code: str | None,
) -> None:
    """Checks her invite (or open enrollment), stores the invited row, shows welcome + consent."""
    m = msgs()
    invite = None
    if code is not None:
        invite = await find_invite(session=session, code=code) if START_PARAM.match(code) else None
        problem = (
            InviteProblem.unknown
            if invite is None
            else await redeem(session=session, invite=invite)
        )
        if problem is not None:
            log.info("start with an unusable invite: %s", problem)
            reply.say(m.get(INVITE_PROBLEMS[problem]))
            return
    elif not settings.open_enrollment:
        reply.say(m.get("onboarding.closed"))
        return
    participant = await pt.create_invited(
        session=session,
        telegram_user_id=user_id,
        chat_id=chat_id,
        pseudonym_key=pseudonym_key(settings),
        invite=invite,
        locale=settings.default_locale,
    )
    m = msgs(participant)
    reply.say(
        m.get(
            "onboarding.welcome",
            study_name=settings.study_name,
            emergency=emergency_for(None, settings),
        )
    )
    reply.say(*consent_message(m, participant))


async def _returning(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant
) -> None:
    """Answers /start from someone we know: welcome back, re-consent or carry on set-up."""
    m = msgs(participant)
    if pt.has_left(participant):
        reply.say(m.get("onboarding.left"))
        return
    if pt.is_onboarded(participant):
        if pt.needs_consent(participant):
            participant.awaiting = pt.RECONSENT
            session.add(participant)
            reply.say(*consent_message(m, participant))
            return
        reply.say(m.get("onboarding.welcome_back", emergency=emergency_for(participant, settings)))
        return
    step, (text, buttons) = await current_question(session, participant, settings)
    if step == Step.consent:
        reply.say(
            m.get(
                "onboarding.welcome",
                study_name=settings.study_name,
                emergency=emergency_for(None, settings),
            )
        )
    else:
        reply.say(m.get("onboarding.resume"))
    reply.say(text, buttons)


async def on_start_in_group(update: Update, context: BotContext) -> None:
    """Says that the bot works in a private chat only."""
    if update.effective_chat is not None:
        await context.bot.send_message(
            update.effective_chat.id, msgs().get("onboarding.private_only")
        )


# ---------------------------------------------------------------- button presses


async def on_press(update: Update, context: BotContext) -> None:
    """Handles an `onb:` button: consent, a set-up answer, the summary, or a change."""
    query = update.callback_query
    if query is None:
        return
    parsed = parse_press(query.data)
    settings = context.services.settings
    reply = Reply()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None:
            reply.say(msgs().get("onboarding.start_first"))
        elif pt.has_left(participant):
            reply.say(msgs(participant).get("onboarding.left"))
        elif parsed is None or parsed[0] != ONB:
            await _unknown(session, reply, settings, participant)
        else:
            await _onboarding_press(session, reply, settings, participant, parsed[1], parsed[2])
    await deliver(update, context, reply)


async def _unknown(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant
) -> None:
    """Answers a button we cannot read, re-asking the open question; nothing is stored."""
    m = msgs(participant)
    if pt.is_onboarded(participant):
        reply.say(m.get("onboarding.already_done"))
        return
    reply.say(m.get("onboarding.unknown_button"))
    reply.say(*(await current_question(session, participant, settings))[1])


async def _consent_press(
    session: AsyncSession,
    reply: Reply,
    settings: Settings,
    participant: Participant,
    op: str,
    args: list[str],
) -> None:
    """Records Agree (for the version she read) or answers Not now."""
    m = msgs(participant)
    if op == "later":
        if not pt.needs_consent(participant):
            # A stale "Not now" from before she agreed: nothing changes.
            if pt.is_onboarded(participant):
                reply.say(m.get("onboarding.already_done"))
            else:
                reply.say(*(await current_question(session, participant, settings))[1])
            return
        reply.chosen = m.get("onboarding.not_now")
        if pt.is_onboarded(participant):
            reply.say(m.get("onboarding.reconsent_later"))
        else:
            reply.say(m.get("onboarding.not_now_reply"))
        return
    current = consent_text(participant.locale).version
    if len(args) != 1:
        await _unknown(session, reply, settings, participant)
        return
    if args[0] != current:
        # She read an older text: show the one in force now.
        reply.say(m.get("onboarding.consent_updated"))
        reply.say(*consent_message(m, participant))
        return
    reply.chosen = m.get("onboarding.agree")
    already = not pt.needs_consent(participant)
    await pt.record_consent(session=session, participant=participant, version=current)
    if pt.is_onboarded(participant):
        if not already:
            reply.say(m.get("onboarding.reconsent_thanks"))
        return
    reply.say(*(await current_question(session, participant, settings))[1])


async def _onboarding_press(
    session: AsyncSession,
    reply: Reply,
    settings: Settings,
    participant: Participant,
    op: str,
    args: list[str],
) -> None:
    """Stores one set-up answer and asks the next question, derived from what is stored."""
    m = msgs(participant)
    if op in ("agree", "later"):
        await _consent_press(session, reply, settings, participant, op, args)
        return
    if pt.is_onboarded(participant):
        reply.say(m.get("onboarding.already_done"))
        return
    if pt.needs_consent(participant):
        reply.say(m.get("onboarding.consent_nudge"))
        reply.say(*consent_message(m, participant))
        return
    if op == "ok" and not args:
        await _confirm(session, reply, settings, participant)
        return
    if op == "chg" and not args:
        reply.say(m.get("onboarding.change_what"), item_menu(m, ONB))
        return
    if op == "edit" and len(args) == 1 and args[0] in ITEM_STEPS:
        step = ITEM_STEPS[args[0]]
        participant.awaiting = f"{ONB}:{step}"
        session.add(participant)
        reply.say(*question(m, step, prefix=ONB, participant=participant, settings=settings))
        return
    answer = await apply_answer(session, participant, settings, ONB, op, args)
    if answer is None:
        await _unknown(session, reply, settings, participant)
        return
    if answer.replace is not None or answer.toast is not None:
        reply.replace, reply.toast = answer.replace, answer.toast
        return
    if answer.typed_prompt:
        participant.awaiting = f"{ONB}:{Step.time}"
        session.add(participant)
        reply.say(m.get("onboarding.ask_time_typed"))
        return
    if answer.stored_country is not None:
        pt.set_country(participant=participant, code=answer.stored_country)
    elif answer.stored_zone is not None:
        pt.set_zone(
            participant=participant, country_code=answer.stored_zone[0], zone=answer.stored_zone[1]
        )
    elif answer.stored_time is not None:
        await pt.set_draft_time(
            session=session, participant=participant, local_time=answer.stored_time
        )
    elif answer.stored_days is not None:
        await pt.set_draft_days(
            session=session, participant=participant, weekdays=answer.stored_days
        )
    session.add(participant)
    reply.chosen = answer.label
    reply.say(*(await current_question(session, participant, settings))[1])


async def _confirm(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant
) -> None:
    """Finishes onboarding and says when her first check-in comes."""
    m = msgs(participant)
    draft = await pt.draft_schedule(session=session, participant=participant)
    if pt.next_step(participant, draft) != Step.confirm:
        # A stale Confirm: ask what is still missing instead.
        reply.say(*(await current_question(session, participant, settings))[1])
        return
    await pt.complete_onboarding(session=session, participant=participant)
    reply.chosen = m.get("onboarding.confirm")
    reply.say(
        m.get(
            "onboarding.done",
            when=await next_checkin_words(session, participant),
            emergency=emergency_for(participant, settings),
        )
    )


async def next_checkin_words(session: AsyncSession, participant: Participant) -> str:
    """Describes her next scheduled check-in ('today at 19:00'), or '' when none is planned."""
    upcoming = await pt.next_checkin(session=session, participant=participant)
    if upcoming is None or participant.timezone is None:
        return ""
    return describe_when(msgs(participant), upcoming.due_at, participant.timezone)


# ---------------------------------------------------------------- answers shared with /settings


@dataclass
class Answer:
    """A valid set-up answer from a button, not yet stored (what to store depends on the flow)."""

    label: str = ""
    stored_country: str | None = None  # a country (its zone is chosen next, or automatically)
    stored_zone: tuple[str, str] | None = None  # (country code, IANA zone)
    stored_time: str | None = None
    stored_days: str | None = None
    typed_prompt: bool = False  # "Another time": she will type it
    replace: tuple[str, Buttons | None] | None = None  # a page turn or a day toggle
    toast: str | None = None


async def apply_answer(
    session: AsyncSession,
    participant: Participant,
    settings: Settings,
    prefix: str,
    op: str,
    args: list[str],
) -> Answer | None:
    """Validates one answer button; stores medicine/start directly; None when unreadable."""
    m = msgs(participant)
    arg = args[0] if len(args) == 1 else None
    if op == "med" and arg in MEDICINE_LABELS:
        pt.set_medicine(participant=participant, value=arg)
        session.add(participant)
        return Answer(label=m.get(MEDICINE_LABELS[arg]))
    if op == "st" and arg in STARTED_LABELS:
        pt.set_started(participant=participant, value=arg)
        session.add(participant)
        return Answer(label=m.get(STARTED_LABELS[arg]))
    if op == "cp" and arg is not None and arg.isdigit() and len(arg) <= 2:
        return Answer(replace=(m.get("onboarding.ask_country"), country_page(m, prefix, int(arg))))
    if op == "cty" and arg is not None and country(arg) is not None:
        return Answer(label=describe_country(m, arg), stored_country=arg)
    if op == "tz" and len(args) == 2:
        found = country(args[0])
        if found is None:
            return None
        if args[1] == "d" and found.is_other:
            zone, label = settings.default_timezone, default_zone_label(m, settings)
        elif args[1].isdigit() and int(args[1]) < len(found.zones):
            zone, label = found.zones[int(args[1])].zone, zone_label(m, found, int(args[1]))
        else:
            return None
        return Answer(label=label, stored_zone=(found.code, zone))
    if op == "tm" and arg is not None and len(arg) == 4:
        hhmm = pt.parse_local_time(arg)
        return None if hhmm is None else Answer(label=hhmm, stored_time=hhmm)
    if op == "tmx" and not args:
        return Answer(typed_prompt=True)
    if op in ("dy", "dd") and arg is not None:
        mask = "" if arg == "-" else arg
        if pt.normalise_weekdays(mask) != mask:
            return None
        if op == "dy":
            return Answer(replace=days_toggle(m, prefix, mask))
        if not mask:
            return Answer(toast=m.get("onboarding.pick_a_day"))
        return Answer(label=describe_days(m, mask), stored_days=mask)
    return None


# ---------------------------------------------------------------- typed answers


async def on_awaited_text(update: Update, context: BotContext) -> None:
    """Handles typed text while a set-up question, a settings question or re-consent is open."""
    message = update.effective_message
    if message is None or update.effective_chat is None:
        return
    text = message.text or ""
    settings = context.services.settings
    reply = Reply()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None:
            reply.say(msgs().get("onboarding.start_first"))
        else:
            awaiting = participant.awaiting or ""
            if awaiting.startswith("set:"):
                from handlers import settings as settings_flow  # it imports this module

                await settings_flow.typed_setting(session, reply, settings, participant, text)
            elif awaiting == pt.RECONSENT:
                m = msgs(participant)
                version = consent_text(participant.locale).version
                reply.say(m.get("onboarding.reconsent_nudge"), consent_buttons(m, version))
            else:
                await _typed_onboarding(session, reply, settings, participant, text)
    await deliver(update, context, reply)


async def _typed_onboarding(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant, text: str
) -> None:
    """Takes a typed check-in time; for other questions, asks her to use the buttons."""
    m = msgs(participant)
    if pt.is_onboarded(participant):
        participant.awaiting = None
        session.add(participant)
        reply.say(m.get("onboarding.already_done"))
        return
    draft = await pt.draft_schedule(session=session, participant=participant)
    step = pt.next_step(participant, draft)
    if participant.awaiting == f"{ONB}:{Step.time}" and step != Step.consent:
        hhmm = pt.parse_local_time(text)
        if hhmm is None:
            reply.say(m.get("onboarding.time_unclear"))
            return
        await pt.set_draft_time(session=session, participant=participant, local_time=hhmm)
        reply.say(*(await current_question(session, participant, settings))[1])
        return
    if step == Step.consent:
        version = consent_text(participant.locale).version
        reply.say(m.get("onboarding.consent_nudge"), consent_buttons(m, version))
        return
    reply.say(m.get("onboarding.use_buttons"))
    reply.say(*(await current_question(session, participant, settings))[1])


# ---------------------------------------------------------------- outbox: re-consent


async def render_reconsent(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders the re-consent request: a neutral first line, the new text, Agree / Not now."""
    if participant is None or pt.has_left(participant) or not pt.needs_consent(participant):
        return RenderedMessage(text="", skip=True)
    m = msgs(participant)
    ct = consent_text(participant.locale)
    return RenderedMessage(
        text=m.get("onboarding.reconsent", text=ct.text, version=ct.version),
        buttons=consent_buttons(m, ct.version),
    )


def register_outbox(services: Services) -> None:
    """Registers the "reconsent" renderer with the outbox."""
    services.renderers["reconsent"] = render_reconsent


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("start", on_start, filters=filters.ChatType.PRIVATE),
    CommandHandler("start", on_start_in_group, filters=~filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=r"^onb:"),
]
