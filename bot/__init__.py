"""adherence-bot core: configuration, database, scheduling, sending. No Telegram UI here."""
