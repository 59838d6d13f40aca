"""/learn: the topic menu and the page reader (`edu:` buttons).

Pages are read one phone screen at a time. Next / Back edit the reader message in place; a
page opened from anywhere else (the menu, a check-in offer) arrives as a new message so the
message it was opened from stays as it was. Opening a page records a view (consented only).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot import education
from handlers.common import BotContext
from handlers.ui import Screen, Turn, turn


@turn
async def on_learn(t: Turn) -> None:
    """Shows the topic menu, saying plainly when pages still await clinical review."""
    locale = t.participant.locale if t.participant else education.DEFAULT_LOCALE
    view = education.menu_view(locale)
    t.reply.say(view.text, view.buttons, html=True)


@turn
async def on_page_button(t: Turn) -> None:
    """Shows the menu or one part of a page, and records a view when a page is opened."""
    pressed = t.pressed
    markup = pressed.reply_markup if pressed is not None else None
    buttons = [
        (button.text, button.callback_data)
        for row in (markup.inline_keyboard if markup is not None else ())
        for button in row
        if isinstance(button.callback_data, str)
    ]
    view = await education.view_for_press(
        session=t.session, participant=t.participant, data=t.data, pressed_buttons=buttons
    )
    screen = Screen(view.text, view.buttons, html=True)
    # Inside the reader the message turns its page; from anywhere else a new message opens.
    if any(data == education.MENU_CALLBACK for _, data in buttons):
        t.reply.edit = screen
    else:
        t.reply.show(screen)


PRIVATE = filters.ChatType.PRIVATE

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("learn", on_learn, filters=PRIVATE),
    CallbackQueryHandler(on_page_button, pattern=r"^edu:"),
]
