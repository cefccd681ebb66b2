"""Errors of the Redis state layer. Each Lua script refusal maps to one class with a stable code.

A script checks every precondition before its first write, so any of these means nothing changed.
"""

from __future__ import annotations


class StoreError(Exception):
    code = "store_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail


class StaleError(StoreError):
    """The pick was made from data that changed meanwhile (another dispatcher, a hang-up)."""

    code = "stale"


class StateError(StoreError):
    """The transition is not allowed from the current state."""

    code = "invalid_state"


class ForbiddenError(StoreError):
    """The interaction belongs to another agent."""

    code = "forbidden"


class NotFoundError(StoreError):
    code = "not_found"


class ExistsError(StoreError):
    code = "exists"


class EarlyError(StoreError):
    """A timer fired before its deadline (clock skew between hosts); it will fire again."""

    code = "early"


class BusyError(StoreError):
    """The agent still holds interactions."""

    code = "busy"


SCRIPT_ERRORS: dict[str, type[StoreError]] = {
    "CL_STALE": StaleError,
    "CL_STATE": StateError,
    "CL_FORBIDDEN": ForbiddenError,
    "CL_NOTFOUND": NotFoundError,
    "CL_EXISTS": ExistsError,
    "CL_EARLY": EarlyError,
    "CL_BUSY": BusyError,
}
