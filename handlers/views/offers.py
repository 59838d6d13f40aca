"""Tailored offers after a check-in: a short message with a page button and an opt-out."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import education
from bot import offers as rules_engine
from bot.content import Messages
from bot.models import CheckIn, Participant
from bot.offers import OPEN, OPT_OUT, Offer
from bot.outbox import Buttons
from handlers.common import msgs
from handlers.ui import Screen


def offer_buttons(offer: Offer, m: Messages, *, with_opt_out: bool = True) -> Buttons:
    """Returns the button that opens the offer's page and, if allowed, "Don't show this again"."""
    target = education.page(offer.page_id, m.locale)
    title = target.title if target is not None else offer.page_id
    rows: Buttons = [
        [
            (
                m.get("offers.open", title=title),
                rules_engine.callback_data(OPEN, offer.checkin_id, offer.code),
            )
        ]
    ]
    if offer.can_opt_out and with_opt_out:
        data = rules_engine.callback_data(OPT_OUT, offer.checkin_id, offer.code)
        rows.append([(m.get("offers.opt_out"), data)])
    return rows


async def offer_screens(
    *, session: AsyncSession, participant: Participant, checkin: CheckIn
) -> list[Screen]:
    """Decides the offers after her completed check-in and returns them as messages."""
    m = msgs(participant)
    offers = await rules_engine.evaluate(session=session, participant=participant, checkin=checkin)
    return [Screen(m.get(offer.message_key), offer_buttons(offer, m)) for offer in offers]
