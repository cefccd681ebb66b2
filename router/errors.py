"""Errors at cityline's boundary: each has a stable machine-readable `code` and an HTTP status.

Tests and API clients assert on `code`, never on message text. Store refusals (queues.errors)
are translated here so the HTTP layer needs one mapping.
"""

from __future__ import annotations

from queues import errors as store_errors


class CitylineError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code:
            self.code = code


class BadRequest(CitylineError):
    code = "bad_request"
    status = 400


class Unauthorized(CitylineError):
    code = "unauthorized"
    status = 401


class Forbidden(CitylineError):
    code = "forbidden"
    status = 403


class NotFound(CitylineError):
    code = "not_found"
    status = 404


class Conflict(CitylineError):
    code = "conflict"
    status = 409


class Unprocessable(CitylineError):
    code = "validation_error"
    status = 422


class TooManyRequests(CitylineError):
    code = "too_many_requests"
    status = 429


_FROM_STORE: dict[type[store_errors.StoreError], type[CitylineError]] = {
    store_errors.StaleError: Conflict,
    store_errors.StateError: Conflict,
    store_errors.BusyError: Conflict,
    store_errors.ExistsError: Conflict,
    store_errors.EarlyError: Conflict,
    store_errors.ForbiddenError: Forbidden,
    store_errors.NotFoundError: NotFound,
}


def from_store(exc: store_errors.StoreError) -> CitylineError:
    cls = _FROM_STORE.get(type(exc), Conflict)
    return cls(exc.detail or exc.code, code=exc.code)
