"""Offers after a check-in (`of:` buttons): a short message, a button to a page, an opt-out.

Which offers follow which answers is decided by `bot.offers` from `content/rules/offers.yaml`;
this module renders them after the check-in summary and handles their two buttons. A page
opens through `bot.education`, as from /learn, as a new message below the offer.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot import education
from bot import offers as rules_engine
from bot.content import Messages
from bot.education import View
from bot.models import CheckIn, Participant
from bot.offers import OPEN, OPENED, OPT_OUT, OPTED_OUT, Offer, OfferSpec
from bot.outbox import Buttons
from handlers.common import BotContext, discreet, keyboard, msgs, participant_for

CALLBACK_PATTERN = r"^of:"


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


async def offer_messages(
    *, session: AsyncSession, participant: Participant, checkin: CheckIn
) -> list[tuple[str, Buttons | None]]:
    """Decides the offers after her completed check-in and returns them as messages to send."""
    m = msgs(participant)
    out: list[tuple[str, Buttons | None]] = []
    for offer in await rules_engine.evaluate(
        session=session, participant=participant, checkin=checkin
    ):
        out.append((m.get(offer.message_key), offer_buttons(offer, m)))
    return out


def _offer_of(spec: OfferSpec, code: str, checkin_id: int) -> Offer:
    """Rebuilds the offer a button belongs to from its rule."""
    return Offer(
        code=code,
        page_id=spec.page,
        message_key=spec.message,
        can_opt_out=spec.can_opt_out,
        checkin_id=checkin_id,
    )


async def on_offer_button(update: Update, context: BotContext) -> None:
    """Opens the offered page, or turns the offer off for good ("Don't show this again")."""
    query = update.callback_query
    if query is None:
        return
    toast: str | None = None
    view: View | None = None
    edit: tuple[str, Buttons] | None = None
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        m = msgs(participant)
        parsed = rules_engine.parse_callback(query.data or "")
        checkin = await session.get(CheckIn, parsed[1]) if parsed else None
        rule = rules_engine.rules().rule(parsed[2]) if parsed else None
        if parsed is None or rule is None or rule.offer is None:
            toast = m.get("offers.stale")
        elif participant is None or checkin is None or checkin.participant_id != participant.id:
            # Neutral on purpose: say nothing about whose check-in it was.
            toast = m.get("offers.not_yours")
        else:
            action, checkin_id, code = parsed
            offer = _offer_of(rule.offer, code, checkin_id)
            taking_part = participant.status in rules_engine.EVALUATED_STATUSES
            if action == OPEN:
                if taking_part:
                    await rules_engine.record_press(
                        session=session,
                        participant=participant,
                        checkin=checkin,
                        code=code,
                        event=OPENED,
                    )
                view = await education.view_for_press(
                    session=session,
                    participant=participant,
                    data=education.page_callback(offer.page_id),
                )
            elif not offer.can_opt_out:
                toast = m.get("offers.stale")
            else:
                if taking_part:
                    await rules_engine.record_press(
                        session=session,
                        participant=participant,
                        checkin=checkin,
                        code=code,
                        event=OPTED_OUT,
                    )
                toast = m.get("offers.opted_out_toast")
                text = m.get(offer.message_key) + "\n\n" + m.get("offers.opted_out")
                edit = (text, offer_buttons(offer, m, with_opt_out=False))
    await query.answer(toast)
    if edit is not None:
        try:
            await query.edit_message_text(edit[0], reply_markup=keyboard(edit[1]))
        except BadRequest as exc:
            # A second tap on the same button: Telegram says "not modified"; nothing to do.
            if "not modified" not in str(exc).lower():
                raise
    if view is not None and isinstance(query.message, Message):
        await query.message.reply_text(
            view.text,
            reply_markup=keyboard(view.buttons),
            parse_mode=ParseMode.HTML,
            protect_content=discreet(participant),
        )


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CallbackQueryHandler(on_offer_button, pattern=CALLBACK_PATTERN),
]
