"""/settings: change medicine, start, country and zone, check-in time or days (`set:` buttons).

The questions are the set-up ones (`handlers.views.setup`, also asked by onboarding) in their
own words; a change of zone, time or days re-plans her schedule at once, so her next check-in
moves (at most one check-in a day: a time moved later after today's went out starts tomorrow).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import doctor_first
from bot import participants as pt
from bot.awaiting import Awaiting, AwaitKind, awaiting, set_awaiting, stop_awaiting
from bot.config import Settings
from bot.countries import country
from bot.models import Participant, TherapyStatus
from bot.outbox import Buttons
from bot.participants import Step
from bot.scheduling import active_schedule
from handlers.common import BotContext, msgs
from handlers.ui import Reply, TextRoute, Turn, turn
from handlers.views.setup import (
    ITEM_STEPS,
    SET,
    apply_answer,
    ask,
    item_menu,
    next_checkin_words,
    no_reminder_note,
    parse_press,
    profile_fields,
    question,
    zone_question,
)

TYPED_TIME = Awaiting(AwaitKind.settings, Step.time)


async def menu(
    session: AsyncSession, participant: Participant, settings: Settings
) -> tuple[str, Buttons]:
    """Returns her current settings and one button per item she can change."""
    m = msgs(participant)
    schedule = await active_schedule(session=session, participant_id=participant.id or 0)
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
    """Returns 'Change something else' and 'Done'."""
    m = msgs(participant)
    return [
        [(m.get("settings.change_more"), f"{SET}:menu")],
        [(m.get("settings.finish"), f"{SET}:close")],
    ]


def _stop_typing(participant: Participant) -> None:
    """Forgets a typed settings answer she was asked for."""
    stop_awaiting(participant, AwaitKind.settings)


@turn
async def on_settings(t: Turn) -> None:
    """Shows her settings with a button for each item, if she has finished set-up."""
    participant = t.participant
    if participant is not None and participant.has_left:
        t.reply.say(t.m.get("onboarding.left"))
    elif participant is None or not pt.is_onboarded(participant):
        t.reply.say(t.m.get("settings.not_ready"))
    else:
        _stop_typing(participant)
        t.reply.say(*await menu(t.session, participant, t.settings))


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
    """Re-plans her schedule and says when the next check-in comes (and if it gets no reminder)."""
    planned = await pt.change_schedule(
        session=session,
        participant=participant,
        default_time=settings.default_checkin_time,
        local_time=local_time,
        weekdays=weekdays,
        timezone=timezone,
    )
    m = msgs(participant)
    when = await next_checkin_words(session, participant)
    if not when:
        text = m.get("settings.no_next")
    elif planned.from_next_day:
        text = m.get("settings.saved_from_next_day", when=when)
    else:
        text = m.get("settings.saved_next", when=when)
    if local_time is not None:
        # When her new time leaves no room for a reminder before her quiet hours, say so.
        note = no_reminder_note(m, SET, participant, settings, local_time)
        text = text if note is None else f"{text}\n\n{note}"
    reply.say(text, _after_save(participant))


@turn
async def on_press(t: Turn) -> None:
    """Handles a `set:` button: open an item, store a new answer, or close the menu."""
    parsed = parse_press(t.data)
    participant, reply, settings = t.participant, t.reply, t.settings
    if participant is None or not pt.is_onboarded(participant):
        reply.say(t.m.get("settings.not_ready"))
    elif parsed is None or parsed[0] != SET:
        reply.say(t.m.get("onboarding.unknown_button"))
        reply.say(*await menu(t.session, participant, settings))
    else:
        await _settings_press(t.session, reply, settings, participant, parsed[1], parsed[2])


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
        if answer.replace is not None:
            reply.replace(*answer.replace)
        reply.toast = answer.toast
        return
    if answer.typed_prompt:
        set_awaiting(participant, TYPED_TIME)
        reply.say(ask(m, SET, "time_typed"))
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


async def on_typed(t: Turn) -> bool:
    """Takes a typed check-in time for /settings; anything else closes the typing step."""
    participant, reply, settings, session = t.participant, t.reply, t.settings, t.session
    if participant is None:
        return False
    text = t.text
    m = t.m
    if not pt.is_onboarded(participant):
        _stop_typing(participant)
        reply.say(m.get("settings.not_ready"))
        return True
    if awaiting(participant) != TYPED_TIME:
        _stop_typing(participant)
        reply.say(*await menu(session, participant, settings))
        return True
    hhmm = pt.parse_local_time(text)
    if hhmm is None:
        reply.say(m.get("onboarding.time_unclear"))
        return True
    _stop_typing(participant)
    await _reschedule(session, reply, settings, participant, local_time=hhmm)
    return True


# Typed text the fallback hands here (registered by the routing table in bot/app.py).
TEXT_ROUTES: dict[str, TextRoute] = {AwaitKind.settings: on_typed}

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("settings", on_settings, filters=filters.ChatType.PRIVATE),
    CallbackQueryHandler(on_press, pattern=r"^set:"),
]
