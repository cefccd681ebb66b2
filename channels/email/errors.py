"""Errors of the e-mail channel: transport failures are wrapped, never leaked."""

from __future__ import annotations


class EmailError(Exception):
    """Base of the e-mail channel's errors; `error_id` is stable for tests and logs."""

    error_id = "email_error"


class EmailSendError(EmailError):
    """The smarthost could not be reached or refused our mail."""

    error_id = "email_send_failed"


class EmailStartError(EmailError):
    """The SMTP server could not start (port in use, unreadable certificate)."""

    error_id = "email_start_failed"
