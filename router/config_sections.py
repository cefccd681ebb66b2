"""The `Section` base of every configuration model, and the single service-wide sections.

city, redis, http, routing (with its blending rules), stats and demo each appear once in the
configuration; the named entries (skills, reason codes, queues, agents, users) are in
`router.config_catalogue`.
"""

from __future__ import annotations

import re
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.config_issues import Loc, raise_if
from router.config_names import LanguageCode, ReasonName

# Validation context that skips the `_own_problems` checks: used to get at the valid parts of an
# invalid configuration, so cross-references can still be checked (see router.config_salvage).
LENIENT = {"cityline_skip_own_checks": True}


class Section(BaseModel):
    # Unknown keys are errors, never silently dropped; error inputs are hidden because they may
    # hold secrets.
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=False,
        hide_input_in_errors=True,
    )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        """Checks across this section's fields, each at a location relative to the section."""
        return []

    @model_validator(mode="after")
    def _check_own_problems(self, info: ValidationInfo) -> Self:
        if not (info.context and info.context.get("cityline_skip_own_checks")):
            raise_if(self._own_problems())
        return self


class CityConfig(Section):
    """Who we are: the city, its time zone and the languages it serves."""

    name: str = Field("Miasto", min_length=1, description="name of the city shown to residents")
    country: str = Field(
        "PL",
        description="ISO 3166 country code; the default region for phone numbers written "
        "without a +country prefix",
    )
    timezone: str = Field(
        "Europe/Warsaw",
        description="IANA time zone of business hours, 15-minute intervals and daily reports",
    )
    languages: list[LanguageCode] = Field(
        default_factory=lambda: ["pl", "en", "uk"],
        min_length=1,
        description="languages the city serves (ISO 639 codes); every skill label needs each",
    )
    default_language: LanguageCode = Field(
        "pl", description="language of a resident whose language is not known; one of languages"
    )

    @field_validator("country", mode="before")
    @classmethod
    def _upper_country(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if not re.fullmatch(r"[A-Z]{2}", value):
                raise ValueError("must be a two-letter ISO 3166 country code, e.g. PL")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Europe/Warsaw)"
            ) from exc
        return value

    def _own_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for i, lang in enumerate(self.languages):
            if lang in seen:
                problems.append((("languages", i), f"language {lang!r} is listed twice"))
            seen.add(lang)
        if self.default_language not in self.languages:
            problems.append(
                (
                    ("default_language",),
                    f"{self.default_language!r} is not one of the city languages "
                    f"({', '.join(self.languages)})",
                )
            )
        return problems

    def tzinfo(self) -> ZoneInfo:
        """The city's time zone as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)

    def language(self, lang: str | None) -> str:
        """`lang` if the city serves it, else its default language: what a page, a notice or
        an answer is written in when a resident (or a URL) asks for one."""
        return lang if lang and lang in self.languages else self.default_language


class RedisConfig(Section):
    """Where the shared state lives."""

    url: SecretStr | None = Field(
        None,
        description="Redis URL, e.g. redis://:password@host:6379/0 or unix:///run/redis.sock; "
        "a secret: set it with the REDIS_URL environment variable, not in the file. "
        "null starts the embedded redis-server under data_dir",
    )
    prefix: str = Field(
        "cl:",
        pattern=r"^[A-Za-z0-9_.:{}-]{1,32}$",
        description="prefix of every Redis key, so several installations can share one Redis",
    )
    events_maxlen: int = Field(
        5_000_000,
        ge=1000,
        description="approximate length the event stream is trimmed to (oldest entries go first)",
    )

    def url_value(self) -> str | None:
        """The URL in clear, for the one place that connects; never log it."""
        return self.url.get_secret_value() if self.url is not None else None


class HttpConfig(Section):
    """The HTTP server: JSON API, agent desktop, supervisor wall, webhooks, /metrics."""

    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = any free port)")
    max_body_bytes: int = Field(
        6_291_456, ge=1024,
        description="largest request body accepted, larger ones get 413 (6 MiB: a web-form "
        "photo of up to 5 MiB fits)",
    )
    session_ttl_s: int = Field(
        28_800, ge=60, description="lifetime of a login session in seconds (default one shift)"
    )
    cookie_secure: bool = Field(
        False,
        description="mark the session cookie Secure (HTTPS only); set true behind a TLS proxy",
    )
    login_max_failures: int = Field(
        5, ge=1, description="failed logins in a row after which the account is locked"
    )
    login_lockout_s: int = Field(
        900, ge=1, description="how long a locked account stays locked, seconds"
    )


class BlendingConfig(Section):
    """Which channels may be mixed on one agent at the same time."""

    voice_with_open_text: bool = Field(
        False,
        description="may a voice call be offered to an agent who has open text interactions",
    )
    text_during_voice: bool = Field(
        False, description="may text interactions be offered to an agent on a call"
    )


class RoutingConfig(Section):
    """Dispatcher behaviour common to every queue."""

    short_abandon_s: float = Field(
        5.0,
        ge=0,
        description="abandons within this many seconds are short abandons: counted, but left "
        "out of the abandonment rate and the service level",
    )
    max_misses: int = Field(
        2,
        ge=0,
        description="offer timeouts (ring-no-answer) in a row after which the agent is paused; "
        "0 = never",
    )
    miss_pause_reason: ReasonName = Field(
        "rona", description="reason code given to an agent paused for misses; a reason_codes key"
    )
    reject_excludes_agent: bool = Field(
        True,
        description="an agent who rejects an offer is not offered the same interaction "
        "again (until it is transferred); a missed offer (timeout) does not exclude",
    )
    blending: BlendingConfig = Field(
        default_factory=BlendingConfig, description="channel blending rules"
    )
    timer_max_sleep_ms: int = Field(
        1000,
        ge=10,
        le=60_000,
        description="longest the dispatcher sleeps without an event (bounds how late an "
        "escalation step or offer timeout can fire if a wake-up is lost)",
    )
    dispatch_lease_ms: int = Field(
        500,
        ge=0,
        le=10_000,
        description="with several dispatcher processes, one plans the matching rounds while it "
        "holds a lease renewed by its rounds; the others take over within this many ms of it "
        "stopping. 0: all plan at once (still correct, since every pick is re-checked, but "
        "they waste work refusing each other's picks)",
    )


class StatsConfig(Section):
    """Statistics and staffing."""

    retention_days: int = Field(
        400, ge=1, description="days of 15-minute interval statistics kept (400 covers a year)"
    )
    erlang_window_intervals: int = Field(
        4,
        ge=1,
        le=96,
        description="15-minute intervals of history used for the arrival rate and handle time "
        "behind the Erlang C/A staffing figures",
    )


class DemoConfig(Section):
    """Conveniences for demonstrations and first steps; keep them off in production."""

    create_demo_users: bool = Field(
        False,
        description="`cityline serve` gives every configured user without a password a random "
        "one and writes them to <data_dir>/demo-credentials.txt (mode 0600)",
    )
