"""The JSON frames of the chat WebSocket, client to server, validated with pydantic.

    {"type": "start", "language": "pl", "topic": null, "name": "", "contact": "",
     "consent": false}
    {"type": "resume", "token": "..."}
    {"type": "message", "text": "..."}
    {"type": "leave"}

`contact` (optional) is an e-mail address or a phone number, kept with the conversation so a
case made of it tells the resident by it; with `consent` the resident also agreed to be
recognised across channels by it. Server frames are plain dicts built by the adapter
(started, waiting, agent_joined, agent_left, notice, message, ended, error); a `message` is
{from: "agent" | "city", text} and a city's message may carry `link` (a case's status page).
`parse_frame` turns one text frame into a model or a `FrameError` with the code
of the `error` frame the client gets.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StartFrame(_Frame):
    type: Literal["start"]
    language: str | None = Field(None, max_length=8)
    topic: str | None = Field(None, max_length=64)
    name: str = Field("", max_length=200)
    contact: str = Field("", max_length=320)
    consent: bool = False


class ResumeFrame(_Frame):
    type: Literal["resume"]
    token: str = Field(min_length=16, max_length=128)


class MessageFrame(_Frame):
    type: Literal["message"]
    text: str = Field(min_length=1)


class LeaveFrame(_Frame):
    type: Literal["leave"]


ClientFrame = Annotated[
    StartFrame | ResumeFrame | MessageFrame | LeaveFrame, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientFrame)
TYPES = frozenset({"start", "resume", "message", "leave"})


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_frame(raw: str, max_message_chars: int) -> Any:
    try:
        data = json.loads(raw)
    except ValueError:
        raise FrameError("invalid_json", "the frame is not JSON") from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "a frame is a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise FrameError("unknown_type", f"unknown frame type {str(kind)[:32]!r}")
    if kind == "message":
        text = data.get("text")
        if isinstance(text, str) and len(text) > max_message_chars:
            raise FrameError("too_long", f"a message has at most {max_message_chars} characters")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"][1:]) or kind for e in exc.errors())
        raise FrameError("invalid_frame", f"invalid {kind} frame: {where}") from None


def error_frame(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}
