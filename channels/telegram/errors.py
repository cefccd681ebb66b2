"""Errors of the Telegram channel: python-telegram-bot's errors are wrapped, never leaked."""

from __future__ import annotations


class TelegramError(Exception):
    """Base of the Telegram channel's errors; `error_id` is stable for tests and logs."""

    error_id = "telegram_error"


class TelegramStartError(TelegramError):
    """The bot could not start: no token, a token the Bot API refuses, the API unreachable."""

    error_id = "telegram_start_failed"


class TelegramSendError(TelegramError):
    """A reply could not be sent for now (network, flood control): the event is retried."""

    error_id = "telegram_send_failed"


class TelegramNotStarted(TelegramError):
    """An event arrived while the bot is not running: the event is retried later."""

    error_id = "telegram_not_started"
