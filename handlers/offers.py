"""Offers after a check-in (`of:` buttons): open the offered page, or "Don't show this again".

Which offers follow which answers is decided by `bot.offers` from `content/rules/offers.yaml`;
the check-in shows them (`handlers.views.offers`); this module handles their two buttons. A
page opens through `bot.education`, as from /learn, as a new message below the offer.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot import education
from bot import offers as rules_engine
from bot.models import CheckIn
from bot.offers import OPEN, OPENED, OPTED_OUT, Offer
from handlers.common import BotContext
from handlers.ui import Screen, Turn, turn
from handlers.views.offers import offer_buttons

CALLBACK_PATTERN = r"^of:"


@turn
async def on_offer_button(t: Turn) -> None:
    """Opens the offered page, or turns the offer off for good ("Don't show this again")."""
    reply, m, participant = t.reply, t.m, t.participant
    parsed = rules_engine.parse_callback(t.data)
    rule = rules_engine.rules().rule(parsed[2]) if parsed else None
    if parsed is None or rule is None or rule.offer is None:
        reply.toast = m.get("offers.stale")
        return
    action, checkin_id, code = parsed
    checkin = await t.session.get(CheckIn, checkin_id)
    if participant is None or checkin is None or checkin.participant_id != participant.id:
        # Neutral on purpose: say nothing about whose check-in it was.
        reply.toast = m.get("offers.not_yours")
        return
    spec = rule.offer
    offer = Offer(
        code=code,
        page_id=spec.page,
        message_key=spec.message,
        can_opt_out=spec.can_opt_out,
        checkin_id=checkin_id,
    )
    taking_part = participant.status in rules_engine.EVALUATED_STATUSES
    if action == OPEN:
        if taking_part:
            await rules_engine.record_press(
                session=t.session,
                participant=participant,
                checkin=checkin,
                code=code,
                event=OPENED,
            )
        view = await education.view_for_press(
            session=t.session, participant=participant, data=education.page_callback(offer.page_id)
        )
        reply.show(Screen(view.text, view.buttons, html=True))
        return
    if not offer.can_opt_out:
        reply.toast = m.get("offers.stale")
        return
    if taking_part:
        await rules_engine.record_press(
            session=t.session, participant=participant, checkin=checkin, code=code, event=OPTED_OUT
        )
    reply.toast = m.get("offers.opted_out_toast")
    text = m.get(offer.message_key) + "\n\n" + m.get("offers.opted_out")
    reply.replace(text, offer_buttons(offer, m, with_opt_out=False))


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CallbackQueryHandler(on_offer_button, pattern=CALLBACK_PATTERN),
]
