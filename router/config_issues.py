"""How configuration problems are reported: `ConfigIssue`, `ConfigError` and their locations.

A location (`Loc`) is the path of a value in the configuration data, e.g.
``("queues", "voice-info", "escalation", 0, "after_s")``; issues show it dotted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

Loc = tuple[str | int, ...]


class ConfigIssue(BaseModel):
    """One problem found in a configuration."""

    model_config = ConfigDict(frozen=True)

    line: int | None = Field(
        None, description="1-based line in the YAML file; None for environment values"
    )
    field: str = Field("", description='dotted path, e.g. "queues.voice-info.escalation.0.after_s"')
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else ""
        parts = [p for p in (where, self.field) if p]
        return ": ".join([*parts, self.message])


class ConfigError(Exception):
    """The configuration is invalid. `errors` lists every problem found; str() shows one a line."""

    def __init__(self, errors: Iterable[ConfigIssue], path: str | Path | None = None) -> None:
        self.errors: list[ConfigIssue] = list(errors)
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


class Problems(ValueError):
    """Raised by model validators to report several problems, each at its own sub-location.

    pydantic keeps the exception in the error's ``ctx["error"]``; the loader expands it into one
    `ConfigIssue` per problem, prefixed by the location of the model that raised it.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"{'.'.join(map(str, loc)) or '(root)'}: {msg}" for loc, msg in problems)
        )


def raise_if(problems: list[tuple[Loc, str]]) -> None:
    """Raise `Problems` when there are any."""
    if problems:
        raise Problems(problems)


# pydantic's own segments in an error location: "function-after[check(), str]" and the like
_PYDANTIC_TAG = re.compile(r"^[a-z-]+\[.*\]$")


def clean_loc(loc: Iterable[str | int]) -> Loc:
    """Drop pydantic's internal segments ("[key]", "function-after[...]") from a location."""
    return tuple(
        seg
        for seg in loc
        if not (isinstance(seg, str) and (seg == "[key]" or _PYDANTIC_TAG.match(seg)))
    )


def dotted(loc: Iterable[str | int]) -> str:
    """A location as issues show it: "queues.voice-info.escalation.0.after_s"."""
    return ".".join(str(seg) for seg in loc)
