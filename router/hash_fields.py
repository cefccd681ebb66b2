"""Reading what a Redis hash holds: every field is a string (or bytes), written by scripts and
by older versions alike, so numbers and the JSON `meta` of an interaction are read leniently: a
missing or unreadable value is "none", never an exception in the middle of a page or a notice."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def as_int(value: Any) -> int:
    """An integer field ("12", "12.0", b"12"); 0 when missing or unreadable."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return int(float(value)) if value not in (None, "") else 0
    except (TypeError, ValueError, OverflowError):
        return 0


def as_float(value: Any) -> float | None:
    """A number field (a coordinate); None when missing or unreadable."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def json_object(raw: Any) -> dict[str, Any]:
    """A JSON object field (already a dict is taken as it is); {} for anything else."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def meta_of(ix: Mapping[str, Any]) -> dict[str, Any]:
    """An interaction's `meta`: what its channel knows (address, contact, message ids...)."""
    return json_object(ix.get("meta"))
