"""Errors of the e-mail channel: transport failures are wrapped, never leaked."""

from __future__ import annotations

from router.outbox import DeliveryError


class EmailError(Exception):
    """Base of the e-mail channel's errors; `error_id` is stable for tests and logs."""

    error_id = "email_error"


class EmailSendError(EmailError, DeliveryError):
    """The smarthost could not be reached or refused our mail. A `DeliveryError`, so the outbox
    retries it, or (`permanent`: a refused recipient) gives up at once."""

    error_id = "email_send_failed"


class EmailBusyError(EmailError):
    """The same message is being taken by another connection (or process) right now: the
    sender is asked to try again later (451)."""

    error_id = "email_busy"


class EmailStartError(EmailError):
    """The SMTP server could not start (port in use, unreadable certificate)."""

    error_id = "email_start_failed"
