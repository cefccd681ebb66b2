"""Errors of the voice channel's Asterisk Manager link, with stable ids for tests and logs.

Whatever goes wrong on the AMI connection reaches callers as one of these, never as a
panoramisk or asyncio exception (STYLE.md, example 10).
"""

from __future__ import annotations

from typing import Any


class VoiceError(Exception):
    """Base of the voice channel's errors."""

    error_id = "voice_error"

    def __init__(self, message: str = "", *, action: str | None = None) -> None:
        super().__init__(message or self.error_id)
        self.message = message or self.error_id
        self.action = (
            action  # the AMI action concerned, if any (never its fields: a Login has a secret)
        )


class AmiError(VoiceError):
    """Any failure of an AMI action or of the AMI connection."""

    error_id = "ami_error"


class AmiTimeout(AmiError):
    """No (complete) answer within the action's timeout; the connection may still be fine."""

    error_id = "ami_timeout"


class AmiDisconnected(AmiError):
    """Not connected and logged in, or the connection went away before the answer came."""

    error_id = "ami_disconnected"


class AmiAuthError(AmiError):
    """Asterisk refused the Login (wrong user or secret: ``Authentication failed``)."""

    error_id = "ami_auth_failed"


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error`` (e.g. ``No such channel``)."""

    error_id = "ami_action_failed"

    def __init__(self, message: str, *, action: str | None = None, response: Any = None) -> None:
        super().__init__(message, action=action)
        self.response = response  # the Response message (panoramisk Message) as received
