"""/settings: change medicine, start, country and zone, check-in time or days (`set:` buttons).

The questions are the onboarding ones (`handlers.onboarding`); a change of zone, time or
days re-plans her schedule at once, so her next check-in moves.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import doctor_first
from bot import participants as pt
from bot.config import Settings
from bot.countries import country
from bot.models import Participant, TherapyStatus
from bot.outbox import Buttons
from bot.participants import Step
from handlers.common import BotContext, msgs, participant_for
from handlers.onboarding import (
    ITEM_STEPS,
    Reply,
    apply_answer,
    deliver,
    item_menu,
    next_checkin_words,
    parse_press,
    profile_fields,
    question,
    zone_question,
)

SET = "set"
TYPED_TIME = f"{SET}:{Step.time}"


async def menu(
    session: AsyncSession, participant: Participant, settings: Settings
) -> tuple[str, Buttons]:
    """Returns her current settings and one button per item she can change."""
    m = msgs(participant)
    schedule = await pt.active_schedule(session=session, participant=participant)
    fields = profile_fields(
        m,
        participant,
        settings,
        local_time=schedule.local_time if schedule else "",
        weekdays=schedule.weekdays if schedule else pt.EVERY_DAY,
    )
    if participant.therapy_status != TherapyStatus.taking:
        # Her doctor stopped it or her treatment finished; picking one says she takes it again.
        fields["medicine"] = m.get(f"settings.medicine_{participant.therapy_status}")
    buttons = [*item_menu(m, SET), [(m.get("settings.close"), f"{SET}:close")]]
    return m.get("settings.menu", **fields), buttons


def _after_save(participant: Participant) -> Buttons:
    m = msgs(participant)
    return [
        [(m.get("settings.change_more"), f"{SET}:menu")],
        [(m.get("settings.finish"), f"{SET}:close")],
    ]


def _stop_typing(participant: Participant) -> None:
    if (participant.awaiting or "").startswith(f"{SET}:"):
        participant.awaiting = None


async def on_settings(update: Update, context: BotContext) -> None:
    """Shows her settings with a button for each item, if she has finished set-up."""
    reply = Reply()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is not None and pt.has_left(participant):
            reply.say(msgs(participant).get("onboarding.left"))
        elif participant is None or not pt.is_onboarded(participant):
            reply.say(msgs(participant).get("settings.not_ready"))
        else:
            _stop_typing(participant)
            session.add(participant)
            reply.say(*await menu(session, participant, context.services.settings))
    await deliver(update, context, reply)


async def _reschedule(
    session: AsyncSession,
    reply: Reply,
    settings: Settings,
    participant: Participant,
    *,
    local_time: str | None = None,
    weekdays: str | None = None,
    timezone: str | None = None,
) -> None:
    """Re-plans her schedule and says when the next check-in comes."""
    await pt.change_schedule(
        session=session,
        participant=participant,
        default_time=settings.default_checkin_time,
        local_time=local_time,
        weekdays=weekdays,
        timezone=timezone,
    )
    m = msgs(participant)
    when = await next_checkin_words(session, participant)
    text = m.get("settings.saved_next", when=when) if when else m.get("settings.no_next")
    reply.say(text, _after_save(participant))


async def on_press(update: Update, context: BotContext) -> None:
    """Handles a `set:` button: open an item, store a new answer, or close the menu."""
    query = update.callback_query
    if query is None:
        return
    parsed = parse_press(query.data)
    settings = context.services.settings
    reply = Reply()
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None or not pt.is_onboarded(participant):
            reply.say(msgs(participant).get("settings.not_ready"))
        elif parsed is None or parsed[0] != SET:
            reply.say(msgs(participant).get("onboarding.unknown_button"))
            reply.say(*await menu(session, participant, settings))
        else:
            await _settings_press(session, reply, settings, participant, parsed[1], parsed[2])
    await deliver(update, context, reply)


async def _settings_press(
    session: AsyncSession,
    reply: Reply,
    settings: Settings,
    participant: Participant,
    op: str,
    args: list[str],
) -> None:
    """Applies one settings button."""
    m = msgs(participant)
    if op == "menu" and not args:
        _stop_typing(participant)
        session.add(participant)
        reply.say(*await menu(session, participant, settings))
        return
    if op == "close" and not args:
        _stop_typing(participant)
        session.add(participant)
        reply.say(m.get("settings.closed"))
        return
    if op == "edit" and len(args) == 1 and args[0] in ITEM_STEPS:
        _stop_typing(participant)
        session.add(participant)
        step = ITEM_STEPS[args[0]]
        reply.say(*question(m, step, prefix=SET, participant=participant, settings=settings))
        return
    answer = await apply_answer(session, participant, settings, SET, op, args)
    if answer is None:
        reply.say(m.get("onboarding.unknown_button"))
        reply.say(*await menu(session, participant, settings))
        return
    if answer.replace is not None or answer.toast is not None:
        reply.replace, reply.toast = answer.replace, answer.toast
        return
    if answer.typed_prompt:
        participant.awaiting = TYPED_TIME
        session.add(participant)
        reply.say(m.get("onboarding.ask_time_typed"))
        return
    _stop_typing(participant)
    session.add(participant)
    reply.chosen = answer.label
    if op == "med" and await doctor_first.record_restart(session=session, participant=participant):
        reply.say(m.get("settings.medicine_again"), _after_save(participant))
        return
    if answer.stored_country is not None:
        found = country(answer.stored_country)
        assert found is not None
        if len(found.zones) == 1 and not found.is_other:
            pt.set_zone(participant=participant, country_code=found.code, zone=found.zones[0].zone)
            await _reschedule(session, reply, settings, participant, timezone=found.zones[0].zone)
        else:
            # Her country is stored together with the zone she picks next.
            reply.say(*zone_question(m, SET, found, settings))
        return
    if answer.stored_zone is not None:
        code, zone = answer.stored_zone
        pt.set_zone(participant=participant, country_code=code, zone=zone)
        await _reschedule(session, reply, settings, participant, timezone=zone)
        return
    if answer.stored_time is not None:
        await _reschedule(session, reply, settings, participant, local_time=answer.stored_time)
        return
    if answer.stored_days is not None:
        await _reschedule(session, reply, settings, participant, weekdays=answer.stored_days)
        return
    reply.say(m.get("settings.saved"), _after_save(participant))


async def typed_setting(
    session: AsyncSession, reply: Reply, settings: Settings, participant: Participant, text: str
) -> None:
    """Takes a typed check-in time for /settings; anything else closes the typing step."""
    m = msgs(participant)
    if not pt.is_onboarded(participant):
        _stop_typing(participant)
        session.add(participant)
        reply.say(m.get("settings.not_ready"))
        return
    if participant.awaiting != TYPED_TIME:
        _stop_typing(participant)
        session.add(participant)
        reply.say(*await menu(session, participant, settings))
        return
    hhmm = pt.parse_local_time(text)
    if hhmm is None:
        reply.say(m.get("onboarding.time_unclear"))
        return
    _stop_typing(participant)
    session.add(participant)
    await _reschedule(session, reply, settings, participant, local_time=hhmm)


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("settings", on_settings, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=r"^set:"),
]
