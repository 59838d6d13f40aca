"""/learn: the topic menu and the page reader (`edu:` buttons).

Pages are read one phone screen at a time. Next / Back edit the reader message in place; a
page opened from anywhere else (the menu, a check-in offer) arrives as a new message so the
message it was opened from stays as it was. Opening a page records a view (consented only).
"""

from __future__ import annotations

from telegram import CallbackQuery, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import education
from bot.education import View
from handlers.common import BotContext, discreet, keyboard, participant_for


def _buttons_of(message: Message | None) -> list[tuple[str, str]]:
    """Returns (label, callback data) of every button on the pressed message."""
    markup = message.reply_markup if message is not None else None
    if markup is None:
        return []
    return [
        (button.text, button.callback_data)
        for row in markup.inline_keyboard
        for button in row
        if isinstance(button.callback_data, str)
    ]


async def _show(query: CallbackQuery, view: View, *, in_place: bool, protect: bool) -> None:
    """Edits the pressed message, or sends a new one, with the view's text and buttons.

    `protect` (her discreet mode) applies to a new message; an edit keeps the original's.
    """
    markup = keyboard(view.buttons)
    if in_place:
        try:
            await query.edit_message_text(
                view.text, reply_markup=markup, parse_mode=ParseMode.HTML
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
        return
    message = query.message
    if isinstance(message, Message):
        await message.reply_text(
            view.text, reply_markup=markup, parse_mode=ParseMode.HTML, protect_content=protect
        )


async def on_learn(update: Update, context: BotContext) -> None:
    """Shows the topic menu, saying plainly when pages still await clinical review."""
    message = update.effective_message
    if message is None:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    locale = participant.locale if participant else education.DEFAULT_LOCALE
    view = education.menu_view(locale)
    await message.reply_text(
        view.text,
        reply_markup=keyboard(view.buttons),
        parse_mode=ParseMode.HTML,
        protect_content=discreet(participant),
    )


async def on_page_button(update: Update, context: BotContext) -> None:
    """Shows the menu or one part of a page, and records a view when a page is opened."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    pressed = query.message if isinstance(query.message, Message) else None
    buttons = _buttons_of(pressed)
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        view = await education.view_for_press(
            session=session,
            participant=participant,
            data=query.data or "",
            pressed_buttons=buttons,
        )
    # Inside the reader the message turns its page; from anywhere else a new message opens.
    in_reader = any(data == education.MENU_CALLBACK for _, data in buttons)
    await _show(query, view, in_place=in_reader, protect=discreet(participant))


PRIVATE = filters.ChatType.PRIVATE

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("learn", on_learn, filters=PRIVATE),
    CallbackQueryHandler(on_page_button, pattern=r"^edu:"),
]
