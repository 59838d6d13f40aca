"""Telegram flows: parse an update, call `bot/`, render the reply. One module per flow."""
