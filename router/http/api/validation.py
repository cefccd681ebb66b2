"""Reading request bodies and path parameters, with the API's error codes.

Order of checks for a body, each with its own answer so a client knows what to fix:

1. too large: 413 `request_too_large` (the app's error middleware, from Content-Length; a
   chunked body raises the same 413 from aiohttp while it is read here);
2. a body that is not `application/json`: 415 `unsupported_media_type`. Demanding the JSON
   content type is also what keeps cross-site HTML forms out: a browser cannot send it to
   another origin without a CORS preflight, which this server never grants;
3. not UTF-8 JSON: 400 `invalid_json`;
4. not what the model wants (unknown fields included): 422 `validation_error` with `details`.

An empty body stands for `{}`, so `POST /agents/a1/login` needs no body at all, and a model with
required fields answers 422 naming them.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from router.errors import CitylineError

M = TypeVar("M", bound=BaseModel)

JSON_TYPE = "application/json"

# Path parameters are ids, names and reference numbers: short, no separators. Anything else
# cannot name a resource, so it is a 404 before any Redis key is built from it.
_PARAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")


class ApiError(CitylineError):
    """An error answered by the API layer itself, optionally with `details` and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.details = details
        self.headers = headers or {}


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON and which no client should send.
    raise ValueError(f"{name} is not valid JSON")


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """[{loc, msg}] of a pydantic error, without the input (it may hold a password)."""
    return [{"loc": list(err["loc"]), "msg": err["msg"]} for err in exc.errors(include_url=False)]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(
            422,
            "validation_error",
            f"the body does not match {model.__name__}",
            details=validation_details(exc),
        ) from None


async def read_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        return validate(model, {})
    if request.content_type != JSON_TYPE:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as {JSON_TYPE} (got {request.content_type or 'no content type'})",
        )
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    return validate(model, data)


def check_path_params(request: web.Request) -> None:
    for name, value in request.match_info.items():
        if not _PARAM_RE.fullmatch(value):
            raise ApiError(404, "not_found", f"no resource at {request.path} (bad {name})")
