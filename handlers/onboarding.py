"""Joining and first-time set-up: /start, consent (and re-consent), and the set-up questions.

Callback data: `onb:<op>[:<arg>...]`. Where she is in the set-up is derived from what is
stored (`bot.participants.next_step`), so a replayed update, a stale button or a second
worker continues at the right place. The questions are shared views
(`handlers.views.setup`), which /settings asks too with its own prefix.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import participants as pt
from bot.awaiting import Awaiting, AwaitKind, awaiting, set_awaiting
from bot.config import Settings
from bot.content import consent_text
from bot.enrollment import START_PARAM, InviteProblem, find_invite, redeem
from bot.enrolment_events import Step as EnrolmentStep
from bot.enrolment_events import record_step
from bot.models import OutgoingMessage, Participant
from bot.outbox import Buttons, RenderedMessage
from bot.participants import Step
from bot.pseudonym import pseudonym_for
from bot.services import Services
from handlers.common import BotContext, msgs
from handlers.ui import Reply, TextRoute, Turn, turn
from handlers.views.common import emergency_for
from handlers.views.setup import (
    ITEM_STEPS,
    ONB,
    apply_answer,
    ask,
    consent_buttons,
    consent_message,
    item_menu,
    next_checkin_words,
    no_reminder_note,
    parse_press,
    question,
    summary_message,
)

log = logging.getLogger(__name__)

INVITE_PROBLEMS = {
    InviteProblem.unknown: "onboarding.invite_unknown",
    InviteProblem.expired: "onboarding.invite_expired",
    InviteProblem.used_up: "onboarding.invite_used_up",
}


def _ask(participant: Participant, step: Step) -> None:
    """Records that her next typed message answers this set-up question."""
    set_awaiting(participant, Awaiting(AwaitKind.onboarding, step))


async def current_question(
    session: AsyncSession, participant: Participant, settings: Settings
) -> tuple[Step, tuple[str, Buttons | None]]:
    """Returns her next set-up step and its question, and records it as awaited."""
    m = msgs(participant)
    draft = await pt.draft_schedule(session=session, participant=participant)
    step = pt.next_step(participant, draft)
    if step == Step.done:
        return step, (m.get("onboarding.already_done"), None)
    _ask(participant, step)
    if step == Step.confirm:
        assert draft is not None
        return step, summary_message(m, participant, draft, settings)
    return step, question(m, step, prefix=ONB, participant=participant, settings=settings)


# ---------------------------------------------------------------- /start


@turn
async def on_start(t: Turn) -> None:
    """Welcomes a new person (with an invite or open enrollment) and shows the consent text."""
    user_id, chat_id = t.user_id, t.chat_id
    if user_id is None or chat_id is None:
        return
    settings, reply = t.settings, t.reply
    code = t.context.args[0] if t.context.args else None
    if t.participant is not None:
        await _returning(t.session, reply, settings, t.participant)
        return
    key = pseudonym_key(settings)
    # Her ids may have been erased on request; the pseudonym still says she left.
    earlier = await pt.find_by_pseudonym(session=t.session, pseudonym=pseudonym_for(user_id, key))
    if earlier is not None:
        reply.say(msgs(earlier).get("onboarding.left"))
    else:
        await _admit(t.session, reply, settings, user_id, chat_id, code)


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
            await record_step(
                session=session,
                step=EnrolmentStep.invite_refused,
                pseudonym=pseudonym_for(user_id, pseudonym_key(settings)),
                cohort_id=invite.cohort_id if invite is not None else None,
                reason=str(problem),
            )
            if not settings.open_enrollment:
                reply.say(m.get(INVITE_PROBLEMS[problem]))
                return
            # Open enrollment: a link that did not work does not keep her out of the study.
            reply.say(m.get("onboarding.invite_open_instead"))
            invite = None
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
    await record_step(
        session=session,
        step=EnrolmentStep.started,
        pseudonym=participant.pseudonym,
        cohort_id=participant.cohort_id,
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
    if participant.has_left:
        reply.say(m.get("onboarding.left"))
        return
    if pt.is_onboarded(participant):
        if pt.needs_consent(participant):
            set_awaiting(participant, Awaiting(AwaitKind.reconsent))
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


@turn
async def on_start_in_group(t: Turn) -> None:
    """Says that the bot works in a private chat only."""
    t.reply.say(msgs().get("onboarding.private_only"))


# ---------------------------------------------------------------- button presses


@turn
async def on_press(t: Turn) -> None:
    """Handles an `onb:` button: consent, a set-up answer, the summary, or a change."""
    parsed = parse_press(t.data)
    participant, reply, settings = t.participant, t.reply, t.settings
    if participant is None:
        reply.say(msgs().get("onboarding.start_first"))
    elif participant.has_left:
        reply.say(t.m.get("onboarding.left"))
    elif parsed is None or parsed[0] != ONB:
        await _unknown(t.session, reply, settings, participant)
    else:
        await _onboarding_press(t.session, reply, settings, participant, parsed[1], parsed[2])


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
            await record_step(
                session=session,
                step=EnrolmentStep.consent_declined,
                pseudonym=participant.pseudonym,
                cohort_id=participant.cohort_id,
            )
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
        _ask(participant, step)
        reply.say(*question(m, step, prefix=ONB, participant=participant, settings=settings))
        return
    answer = await apply_answer(session, participant, settings, ONB, op, args)
    if answer is None:
        await _unknown(session, reply, settings, participant)
        return
    if answer.replace is not None or answer.toast is not None:
        if answer.replace is not None:
            reply.replace(*answer.replace)
        reply.toast = answer.toast
        return
    if answer.typed_prompt:
        _ask(participant, Step.time)
        reply.say(ask(m, ONB, "time_typed"))
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
        _note_no_reminder(reply, settings, participant, answer.stored_time)
    elif answer.stored_days is not None:
        await pt.set_draft_days(
            session=session, participant=participant, weekdays=answer.stored_days
        )
    session.add(participant)
    reply.chosen = answer.label
    reply.say(*(await current_question(session, participant, settings))[1])


def _note_no_reminder(
    reply: Reply, settings: Settings, participant: Participant, local_time: str
) -> None:
    """Tells her, under her chosen time, when a check-in then gets no reminder."""
    note = no_reminder_note(msgs(participant), ONB, participant, settings, local_time)
    if note is not None:
        reply.say(note)


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


# ---------------------------------------------------------------- typed answers


async def on_awaited_text(t: Turn) -> bool:
    """Handles typed text while a set-up question is open."""
    participant = t.participant
    if participant is None:
        t.reply.say(msgs().get("onboarding.start_first"))
        return True
    await _typed_onboarding(t.session, t.reply, t.settings, participant, t.text)
    return True


async def on_reconsent_text(t: Turn) -> bool:
    """Answers typed text while the new consent text waits: the buttons again."""
    participant = t.participant
    if participant is None:
        return False
    m = t.m
    version = consent_text(participant.locale).version
    t.reply.say(m.get("onboarding.reconsent_nudge"), consent_buttons(m, version))
    return True


async def _typed_onboarding(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant, text: str
) -> None:
    """Takes a typed check-in time; for other questions, asks her to use the buttons."""
    m = msgs(participant)
    if pt.is_onboarded(participant):
        set_awaiting(participant, None)
        reply.say(m.get("onboarding.already_done"))
        return
    draft = await pt.draft_schedule(session=session, participant=participant)
    step = pt.next_step(participant, draft)
    if awaiting(participant) == Awaiting(AwaitKind.onboarding, Step.time) and step != Step.consent:
        hhmm = pt.parse_local_time(text)
        if hhmm is None:
            reply.say(m.get("onboarding.time_unclear"))
            return
        await pt.set_draft_time(session=session, participant=participant, local_time=hhmm)
        _note_no_reminder(reply, settings, participant, hhmm)
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
    if participant is None or participant.has_left or not pt.needs_consent(participant):
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


# Typed text the fallback hands here (registered by the routing table in bot/app.py).
TEXT_ROUTES: dict[str, TextRoute] = {
    AwaitKind.onboarding: on_awaited_text,
    AwaitKind.reconsent: on_reconsent_text,
}

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("start", on_start, filters=filters.ChatType.PRIVATE),
    CommandHandler("start", on_start_in_group, filters=~filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=r"^onb:"),
]
