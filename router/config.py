"""The cityline configuration: one YAML file, validated by a pydantic model tree.

* Every section forbids unknown keys, so a misspelt setting is an error, never silently dropped.
* Secrets come from the environment only (``REDIS_URL``; users name the variable that holds their
  initial password). Secret values are `SecretStr` and never appear in ``repr``/``str``.
* Errors carry the YAML line of the offending key (mapped back from pydantic's error location
  through the YAML node tree) and the dotted field path, e.g.
  ``queues.voice-info.escalation.0.after_s``. All problems are reported together.

`load_config` is the entry point; `check_config_file` returns the problems as a list instead of
raising. `reference_markdown` renders the field reference that docs/configuration.md embeds.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from yaml.constructor import ConstructorError

from router.models import AgentProfile, Channel

__all__ = [
    "DEFAULT_CAPACITY",
    "AgentConfig",
    "BlendingConfig",
    "CityConfig",
    "CitylineConfig",
    "ConfigError",
    "ConfigIssue",
    "DemoConfig",
    "EscalationStep",
    "HttpConfig",
    "QueueConfig",
    "ReasonCode",
    "RedisConfig",
    "RoutingConfig",
    "ServiceLevel",
    "SkillConfig",
    "StatsConfig",
    "UserConfig",
    "check_config_file",
    "default_config_path",
    "load_config",
    "reference_markdown",
]

DEFAULT_CONFIG_NAME = "default_config.yaml"
ENV_PREFIX = "CITYLINE_"
ENV_SEPARATOR = "__"
EXTENSION_PREFIX = "x-"

# --------------------------------------------------------------------------------------------
# problems and errors


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


Loc = tuple[str | int, ...]


class _Problems(ValueError):
    """Raised by model validators to report several problems, each at its own sub-location.

    pydantic keeps the exception in the error's ``ctx["error"]``; the loader expands it into one
    `ConfigIssue` per problem, prefixed by the location of the model that raised it.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"{'.'.join(map(str, loc)) or '(root)'}: {msg}" for loc, msg in problems)
        )


def _raise_if(problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise _Problems(problems)


# --------------------------------------------------------------------------------------------
# names

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/\S+$")


def _name_check(what: str, pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not valid: {rule}")
        return value

    return AfterValidator(check)


_LOWER_RULE = "lower-case letters, digits, '_' and '-', starting with a letter or digit, at most 48"
QueueName = Annotated[str, _name_check("queue name", _NAME_RE, _LOWER_RULE)]
SkillName = Annotated[str, _name_check("skill name", _NAME_RE, _LOWER_RULE)]
ReasonName = Annotated[str, _name_check("reason code", _NAME_RE, _LOWER_RULE)]
_ID_RULE = "letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64"
AgentId = Annotated[str, _name_check("agent id", _ID_RE, _ID_RULE)]
UserName = Annotated[str, _name_check("user name", _ID_RE, _ID_RULE)]
LanguageCode = Annotated[
    str, _name_check("language code", _LANG_RE, "an ISO 639 code of 2-3 lower-case letters")
]
SkillLevel = Annotated[int, Field(ge=1, le=10)]
Labels = dict[LanguageCode, Annotated[str, Field(min_length=1)]]


def _missing_languages(labels: Mapping[str, str], languages: Iterable[str]) -> list[str]:
    return [lang for lang in languages if lang not in labels]


# --------------------------------------------------------------------------------------------
# sections


# Validation context that skips the `_own_problems` checks: used to get at the valid parts of an
# invalid configuration, so cross-references can still be checked (see _partial_problems).
_LENIENT = {"cityline_skip_own_checks": True}


class _Section(BaseModel):
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
            _raise_if(self._own_problems())
        return self


class CityConfig(_Section):
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


class RedisConfig(_Section):
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


class HttpConfig(_Section):
    """The HTTP server: JSON API, agent desktop, supervisor wall, webhooks, /metrics."""

    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = any free port)")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body accepted; larger ones get 413"
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


class BlendingConfig(_Section):
    """Which channels may be mixed on one agent at the same time."""

    voice_with_open_text: bool = Field(
        False,
        description="may a voice call be offered to an agent who has open text interactions",
    )
    text_during_voice: bool = Field(
        False, description="may text interactions be offered to an agent on a call"
    )


class RoutingConfig(_Section):
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


class StatsConfig(_Section):
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


class SkillConfig(_Section):
    """A competence an agent has at a level 1..10 and an interaction may require."""

    kind: Literal["information", "intervention", "language", "general"] = Field(
        description="information topic, intervention category (becomes a case), language, "
        "or general (first line, second line)"
    )
    labels: Labels = Field(description="display name per language; every city language needed")


class ReasonCode(_Section):
    """A reason an agent gives for being not ready."""

    labels: Labels = Field(
        default_factory=dict,
        description="display name per language (missing languages fall back to "
        "city.default_language, then to the code)",
    )
    productive: bool = Field(
        False,
        description="time in this state counts as working time (occupancy, adherence reports)",
    )


class ServiceLevel(_Section):
    """Service-level target: target_pct % of contacts answered within threshold_s seconds."""

    target_pct: float = Field(gt=0, le=100, description="percentage to answer in time")
    threshold_s: float = Field(gt=0, description="the time limit, seconds")


class EscalationStep(_Section):
    """What happens to an interaction that has waited after_s seconds in the queue."""

    after_s: float = Field(
        gt=0,
        description="seconds since the interaction entered the queue; strictly increasing "
        "across steps and below max_wait_s when that is set",
    )
    lower_min_level: dict[SkillName, SkillLevel] = Field(
        default_factory=dict,
        description="skill -> new, lower minimum level; the skill must be required by the "
        "queue (or added by an earlier step)",
    )
    add_skills: dict[SkillName, SkillLevel] = Field(
        default_factory=dict,
        description="skills added to the requirements (skill -> minimum level)",
    )
    raise_priority: int = Field(0, ge=0, le=100, description="added to the interaction's priority")
    move_to_queue: QueueName | None = Field(
        None,
        description="move the interaction to this other queue of the same channel; it keeps "
        "its position time, the other queue's escalation steps and max_wait_s count from the "
        "move, and later steps of this queue no longer apply",
    )

    def actions(self) -> list[str]:
        """Names of the actions this step takes."""
        return [
            name
            for name, active in (
                ("lower_min_level", bool(self.lower_min_level)),
                ("add_skills", bool(self.add_skills)),
                ("raise_priority", self.raise_priority > 0),
                ("move_to_queue", self.move_to_queue is not None),
            )
            if active
        ]


class QueueConfig(_Section):
    """A skill queue of one channel."""

    channel: Channel = Field(description="channel of the interactions in this queue")
    labels: Labels = Field(
        default_factory=dict,
        description="display name per language (missing languages fall back to "
        "city.default_language, then to the queue name)",
    )
    skills: dict[SkillName, SkillLevel] = Field(
        default_factory=dict,
        description="skills an agent needs (skill -> minimum level 1..10); an interaction may "
        "add more (topic from the IVR, the resident's language)",
    )
    priority: int = Field(
        0,
        ge=0,
        le=100,
        description="higher first: an agent free for several queues takes "
        "the highest priority interaction, then the longest waiting",
    )
    strategy: Literal["longest_idle", "least_occupied", "best_skilled", "round_robin"] = Field(
        "longest_idle", description="which of the suitable ready agents gets the offer"
    )
    service_level: ServiceLevel = Field(description="service-level target of the queue")
    abandon_target_pct: float = Field(
        5.0, ge=0, le=100, description="abandonment rate above which the wall shows the queue red"
    )
    max_wait_s: float | None = Field(
        None,
        gt=0,
        description="longest wait in this queue; then the interaction times out to the "
        "overflow queue (or leaves with EXITWITHTIMEOUT when there is none); null = no limit",
    )
    overflow: QueueName | None = Field(
        None,
        description="queue (another one, same channel) that takes interactions reaching "
        "max_wait_s; requires max_wait_s",
    )
    offer_timeout_s: float = Field(
        20.0, gt=0, description="ring-no-answer: seconds an offer waits for the agent to accept"
    )
    wrapup_s: float = Field(
        0.0, ge=0, description="after-contact work time before the agent gets the next offer"
    )
    escalation: list[EscalationStep] = Field(
        default_factory=list, description="steps applied while the interaction waits"
    )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if self.overflow is not None and self.max_wait_s is None:
            problems.append((("overflow",), "overflow needs max_wait_s (when to overflow)"))
        required = dict(self.skills)
        previous: float | None = None
        moved_at: int | None = None
        for i, step in enumerate(self.escalation):
            here: Loc = ("escalation", i)
            if previous is not None and step.after_s <= previous:
                problems.append(
                    (
                        (*here, "after_s"),
                        f"after_s {step.after_s:g} must be greater than the previous "
                        f"step's {previous:g} (steps are in time order)",
                    )
                )
            if self.max_wait_s is not None and step.after_s >= self.max_wait_s:
                problems.append(
                    (
                        (*here, "after_s"),
                        f"after_s {step.after_s:g} is not below max_wait_s "
                        f"{self.max_wait_s:g}: the step would never run",
                    )
                )
            previous = step.after_s if previous is None else max(previous, step.after_s)
            if not step.actions():
                problems.append(
                    (
                        here,
                        "the step does nothing: give lower_min_level, add_skills, "
                        "raise_priority or move_to_queue",
                    )
                )
            if moved_at is not None:
                problems.append(
                    (
                        here,
                        f"step {moved_at} already moves the interaction to another queue; "
                        "this step would never run",
                    )
                )
            for skill, level in step.lower_min_level.items():
                sloc: Loc = (*here, "lower_min_level", skill)
                if skill not in required:
                    problems.append(
                        (sloc, f"skill {skill!r} is not required by this queue, nothing to lower")
                    )
                elif level >= required[skill]:
                    problems.append(
                        (
                            sloc,
                            f"level {level} does not lower the minimum level "
                            f"({required[skill]} at this point)",
                        )
                    )
                else:
                    required[skill] = level
            for skill, level in step.add_skills.items():
                if skill in required:
                    problems.append(
                        (
                            (*here, "add_skills", skill),
                            f"skill {skill!r} is already required; use lower_min_level",
                        )
                    )
                else:
                    required[skill] = level
            if step.move_to_queue is not None and moved_at is None:
                moved_at = i
        return problems


DEFAULT_CAPACITY: dict[Channel, int] = {
    Channel.voice: 1,
    Channel.chat: 3,
    Channel.sms: 5,
    Channel.email: 5,
    Channel.telegram: 3,
    Channel.webform: 5,
}


class AgentConfig(_Section):
    """A person who handles interactions."""

    name: str = Field(min_length=1, description="full name shown to supervisors and colleagues")
    skills: dict[SkillName, SkillLevel] = Field(
        default_factory=dict, description="skill -> level 1..10"
    )
    capacity: dict[Channel, Annotated[int, Field(ge=0, le=20)]] = Field(
        default_factory=lambda: dict(DEFAULT_CAPACITY),
        description="interactions at once per channel (0..20); values given here are merged "
        "over the defaults voice 1, chat 3, sms 5, email 5, telegram 3, webform 5",
    )
    line: Literal["first", "second"] = Field(
        "first", description="first line (consultants) or second line (department experts)"
    )
    endpoint: str = Field(
        "", description='voice endpoint the router connects calls to, e.g. "PJSIP/1001"'
    )

    @field_validator("capacity")
    @classmethod
    def _merge_capacity(cls, value: dict[Channel, int]) -> dict[Channel, int]:
        return {**DEFAULT_CAPACITY, **value}

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, value: str) -> str:
        if value and not _ENDPOINT_RE.fullmatch(value):
            raise ValueError('must look like TECH/resource, e.g. "PJSIP/1001"')
        return value

    def profile(self, agent_id: str) -> AgentProfile:
        """The routing profile stored in Redis when this agent logs in."""
        return AgentProfile(
            id=agent_id,
            name=self.name,
            skills=dict(self.skills),
            capacity=dict(self.capacity),
            line=self.line,
            endpoint=self.endpoint,
        )


class UserConfig(_Section):
    """A login."""

    role: Literal["agent", "supervisor", "admin", "intake"] = Field(
        description="agent: the agent desktop; supervisor: also the wall and agent control; "
        "admin: also configuration and user management; intake: an integration account "
        "(a channel gateway, a city portal) that may only hand in contacts"
    )
    agent: AgentId | None = Field(
        None, description="the agent this login works as; required for role agent"
    )
    password_env: str | None = Field(
        None,
        description="NAME of an environment variable holding the initial password (never the "
        "password itself); null: set it with the CLI, or let demo.create_demo_users make one",
    )

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.fullmatch(value):
            raise ValueError(
                "must be the name of an environment variable (letters, digits, '_'), "
                "not the password"
            )
        return value

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.role == "agent" and self.agent is None:
            return [(("agent",), "a user with role agent needs agent: <agent id>")]
        return []

    def initial_password(self, env: Mapping[str, str] | None = None) -> SecretStr | None:
        """The initial password from the environment variable `password_env` names (None when
        unset or empty). `env` defaults to `os.environ`."""
        env = os.environ if env is None else env
        value = env.get(self.password_env) if self.password_env else None
        return SecretStr(value) if value else None


class DemoConfig(_Section):
    """Conveniences for demonstrations and first steps; keep them off in production."""

    create_demo_users: bool = Field(
        False,
        description="`cityline serve` gives every configured user without a password a random "
        "one and writes them to <data_dir>/demo-credentials.txt (mode 0600)",
    )


def _default_reason_codes() -> dict[str, ReasonCode]:
    return {
        "rona": ReasonCode(
            labels={
                "pl": "Nieodebrane zgłoszenie",
                "en": "Missed offer",
                "uk": "Пропущене звернення",
            }
        )
    }


class CitylineConfig(_Section):
    """The whole configuration."""

    city: CityConfig = Field(default_factory=CityConfig, description="the city")
    redis: RedisConfig = Field(default_factory=RedisConfig, description="shared state")
    http: HttpConfig = Field(default_factory=HttpConfig, description="the HTTP server")
    data_dir: Path = Field(
        Path("data"),
        description="directory for the embedded Redis, attachments and demo credentials; "
        "relative paths are relative to the working directory",
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="the dispatcher")
    stats: StatsConfig = Field(default_factory=StatsConfig, description="statistics")
    skills: dict[SkillName, SkillConfig] = Field(
        default_factory=dict, description="the skill catalogue: skill name -> skill"
    )
    languages: dict[LanguageCode, SkillName | None] = Field(
        default_factory=dict,
        description="language code -> skill an agent needs to serve a resident in it "
        "(null or absent = every agent); keys must be city languages",
    )
    reason_codes: dict[ReasonName, ReasonCode] = Field(
        default_factory=_default_reason_codes,
        description="not-ready reasons: code -> reason (default: only rona)",
    )
    queues: dict[QueueName, QueueConfig] = Field(
        default_factory=dict, description="queue name -> queue"
    )
    agents: dict[AgentId, AgentConfig] = Field(
        default_factory=dict, description="agent id -> agent"
    )
    users: dict[UserName, UserConfig] = Field(
        default_factory=dict, description="login name -> user"
    )
    demo: DemoConfig = Field(default_factory=DemoConfig, description="demonstration helpers")

    def _own_problems(self) -> list[tuple[Loc, str]]:
        return _reference_problems(
            city_languages=self.city.languages,
            routing=self.routing,
            skills=self.skills,
            languages=self.languages,
            reason_codes=self.reason_codes,
            queues=self.queues,
            agents=self.agents,
            users=self.users,
        )

    def queue(self, name: str) -> QueueConfig:
        """The queue called `name`; KeyError naming the configured queues when there is none."""
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(sorted(self.queues)) or "none"
            raise KeyError(f"unknown queue {name!r} (configured queues: {known})") from None

    def language_skill(self, lang: str) -> str | None:
        """Skill an agent needs to serve a resident in `lang` (None: every agent can).

        KeyError when the city does not serve `lang`.
        """
        if lang not in self.city.languages:
            raise KeyError(
                f"language {lang!r} is not served (city languages: "
                f"{', '.join(self.city.languages)})"
            )
        return self.languages.get(lang)


# --------------------------------------------------------------------------------------------
# cross-field checks


def _reference_problems(
    *,
    city_languages: list[str] | None,
    routing: RoutingConfig | None,
    skills: Mapping[str, SkillConfig | None] | None,
    languages: Mapping[str, str | None] | None,
    reason_codes: Mapping[str, ReasonCode | None] | None,
    queues: Mapping[str, QueueConfig | None] | None,
    agents: Mapping[str, AgentConfig | None] | None,
    users: Mapping[str, UserConfig | None] | None,
) -> list[tuple[Loc, str]]:
    """Every reference between sections that does not resolve.

    A section given as None is unknown (it failed validation): checks that depend on it are
    skipped. An item given as None exists but is itself invalid: it counts as a known name, and
    its own references are not checked. So a partial configuration gives no false alarms.
    """
    problems: list[tuple[Loc, str]] = []

    def check_skill(loc: Loc, skill: str) -> None:
        if skills is not None and skill not in skills:
            problems.append((loc, f"unknown skill {skill!r} (not in the skills catalogue)"))

    if city_languages is not None and skills is not None:
        for name, skill in skills.items():
            if skill is None:
                continue
            missing = _missing_languages(skill.labels, city_languages)
            if missing:
                problems.append(
                    (
                        ("skills", name, "labels"),
                        f"no label for city language(s) {', '.join(missing)}",
                    )
                )

    if languages is not None:
        for lang, skill in languages.items():
            if city_languages is not None and lang not in city_languages:
                problems.append(
                    (
                        ("languages", lang),
                        f"{lang!r} is not one of the city languages ({', '.join(city_languages)})",
                    )
                )
            if skill is not None:
                check_skill(("languages", lang), skill)

    if (
        routing is not None
        and reason_codes is not None
        and routing.miss_pause_reason not in reason_codes
    ):
        problems.append(
            (
                ("routing", "miss_pause_reason"),
                f"{routing.miss_pause_reason!r} is not one of the reason_codes",
            )
        )

    def check_target(loc: Loc, target: str, what: str, qname: str, queue: QueueConfig) -> None:
        if target == qname:
            problems.append((loc, f"{what} cannot be the queue itself"))
        elif queues is not None and target not in queues:
            problems.append((loc, f"unknown queue {target!r}"))
        elif queues is not None:
            other = queues[target]
            if other is not None and other.channel != queue.channel:
                problems.append(
                    (
                        loc,
                        f"queue {target!r} is a {other.channel.value} queue, this one is "
                        f"{queue.channel.value}: {what} must stay in the same channel",
                    )
                )

    for qname, queue in (queues or {}).items():
        if queue is None:
            continue
        for skill in queue.skills:
            check_skill(("queues", qname, "skills", skill), skill)
        if queue.overflow is not None:
            check_target(("queues", qname, "overflow"), queue.overflow, "overflow", qname, queue)
        for i, step in enumerate(queue.escalation):
            for skill in step.add_skills:
                check_skill(("queues", qname, "escalation", i, "add_skills", skill), skill)
            if step.move_to_queue is not None:
                check_target(
                    ("queues", qname, "escalation", i, "move_to_queue"),
                    step.move_to_queue,
                    "move_to_queue",
                    qname,
                    queue,
                )

    endpoints: dict[str, str] = {}
    for agent_id, agent in (agents or {}).items():
        if agent is None:
            continue
        for skill in agent.skills:
            check_skill(("agents", agent_id, "skills", skill), skill)
        if agent.endpoint:
            if agent.endpoint in endpoints:
                problems.append(
                    (
                        ("agents", agent_id, "endpoint"),
                        f"endpoint {agent.endpoint} is already used by agent "
                        f"{endpoints[agent.endpoint]!r}",
                    )
                )
            else:
                endpoints[agent.endpoint] = agent_id

    linked: dict[str, str] = {}
    for user_name, user in (users or {}).items():
        if user is None or user.agent is None:
            continue
        loc: Loc = ("users", user_name, "agent")
        if agents is not None and user.agent not in agents:
            problems.append((loc, f"unknown agent {user.agent!r}"))
        elif user.agent in linked:
            problems.append(
                (loc, f"agent {user.agent!r} already belongs to user {linked[user.agent]!r}")
            )
        else:
            linked[user.agent] = user_name
    return problems


def _without(raw: Any, paths: Iterable[Loc]) -> Any:
    """A deep copy of `raw` with the values at `paths` removed (paths that do not exist are
    ignored)."""
    out = copy.deepcopy(raw)
    for path in paths:
        node = out
        for seg in path[:-1]:
            try:
                node = node[seg]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _salvage(model: type[_Section], raw: Any, *, lossy: bool) -> tuple[Any, list[tuple[Loc, str]]]:
    """The valid part of `raw` as a `model`, for cross-reference checks of a broken config.

    Validates without the models' own cross-field checks. When only unknown keys are in the way,
    they are dropped and the own checks are returned as well (dropping an unknown key changes
    nothing else, so they are reliable). With `lossy`, invalid values are dropped too (first the
    values themselves, then the whole setting); that only ever removes references, so checks
    on the result raise no false alarms, but its own checks are skipped. Returns (None, []) when
    nothing usable is left, e.g. a required setting is missing.
    """
    try:
        return model.model_validate(raw, context=_LENIENT), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if not isinstance(raw, Mapping):
        return None, []
    locs = [_clean_loc(err["loc"]) for err in errors]
    if any(not loc for loc in locs):
        return None, []
    attempts: list[tuple[list[Loc], bool]] = []
    if all(err["type"] == "extra_forbidden" for err in errors):
        attempts.append((locs, True))
    elif lossy:
        removable = [loc for err, loc in zip(errors, locs, strict=True) if err["type"] != "missing"]
        attempts.append((removable, False))
        attempts.append(([loc[:1] for loc in removable], False))
    for paths, own in attempts:
        try:
            item = model.model_validate(_without(raw, paths), context=_LENIENT)
        except ValidationError:
            continue
        return item, (item._own_problems() if own else [])
    return None, []


def _partial_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Cross-field problems of a configuration that failed validation elsewhere.

    pydantic runs a model's own checks only when all its fields are valid, and the whole-
    configuration reference check only when everything else is. So that one typo does not hide
    the rest, each section (and each item of the dict sections) is salvaged on its own here and
    what is usable takes part in the checks.
    """
    problems: list[tuple[Loc, str]] = []
    # a misspelt section name ("skils:") must not turn every reference into "unknown"
    absent: dict[str, Any] | None = {}
    if any(key not in CitylineConfig.model_fields for key in data):
        absent = None

    def one(model: type[_Section], key: str) -> Any:
        item, own = _salvage(model, data.get(key) or {}, lossy=False)
        problems.extend(((key, *loc), msg) for loc, msg in own)
        return item

    def many(model: type[_Section], key: str) -> dict[str, Any] | None:
        raw = data.get(key)
        if raw is None:
            return absent if key not in data else {}
        if not isinstance(raw, Mapping):
            return None
        out: dict[str, Any] = {}
        for name, value in raw.items():
            item, own = _salvage(model, value, lossy=True)
            problems.extend(((key, name, *loc), msg) for loc, msg in own)
            out[str(name)] = item
        return out

    city = one(CityConfig, "city")
    city_languages: list[str] | None = city.languages if city is not None else None
    raw_city = data.get("city")
    raw_langs = raw_city.get("languages") if isinstance(raw_city, Mapping) else None
    if (
        city is None
        and isinstance(raw_langs, list)
        and all(isinstance(x, str) and _LANG_RE.fullmatch(x) for x in raw_langs)
    ):
        city_languages = list(raw_langs)

    languages: dict[str, str | None] | None = {}
    languages_raw = data.get("languages")
    if isinstance(languages_raw, Mapping):
        languages = {str(k): v for k, v in languages_raw.items() if v is None or isinstance(v, str)}
    elif languages_raw is not None:
        languages = None

    reason_codes = many(ReasonCode, "reason_codes")
    if "reason_codes" not in data:
        reason_codes = _default_reason_codes()
    problems.extend(
        _reference_problems(
            city_languages=city_languages,
            routing=one(RoutingConfig, "routing"),
            skills=many(SkillConfig, "skills"),
            languages=languages,
            reason_codes=reason_codes,
            queues=many(QueueConfig, "queues"),
            agents=many(AgentConfig, "agents"),
            users=many(UserConfig, "users"),
        )
    )
    return problems


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _Document:
    """YAML text turned into plain data, remembering the line of every key and list item."""

    MAX_NODES = 1_000_000  # guards against alias bombs

    def __init__(self, text: str) -> None:
        self.data: Any = None
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self._loader = yaml.SafeLoader(text)
        self._checked: set[int] = set()
        self._building: set[int] = set()
        self._nodes = 0
        try:
            root = self._loader.get_single_node()
            if root is not None:
                self.lines[()] = root.start_mark.line + 1
                self.data = self._build(root, ())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            context = exc.context or ""
            if context and exc.context_mark is not None and exc.context_mark is not mark:
                context += f" (line {exc.context_mark.line + 1})"
            message = ": ".join(p for p in (context, exc.problem) if p) or str(exc)
            what = "YAML error" if isinstance(exc, ConstructorError) else "YAML syntax error"
            self.issues.append(
                ConfigIssue(
                    line=mark.line + 1 if mark else None,
                    field="",
                    message=f"{what}: {message}",
                )
            )
            self.data = None
        except yaml.YAMLError as exc:
            self.issues.append(ConfigIssue(line=None, field="", message=f"YAML error: {exc}"))
            self.data = None
        except _TooBig:
            self.issues.append(
                ConfigIssue(
                    line=None,
                    field="",
                    message="the document expands to too many values (alias loop or bomb)",
                )
            )
            self.data = None
        finally:
            self._loader.dispose()

    def _issue(self, node: yaml.Node, path: Loc, message: str) -> None:
        self.issues.append(
            ConfigIssue(line=node.start_mark.line + 1, field=_dotted(path), message=message)
        )

    def _build(self, node: yaml.Node, path: Loc) -> Any:
        self._nodes += 1
        if self._nodes > self.MAX_NODES:
            raise _TooBig
        if isinstance(node, yaml.ScalarNode):
            return self._loader.construct_object(node)
        if id(node) in self._building:
            self._issue(node, path, "an alias refers to the value that contains it")
            return None
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != "tag:yaml.org,2002:seq":
                    self._issue(node, path, f"unsupported YAML tag {node.tag}")
                items = []
                for i, item in enumerate(node.value):
                    self.lines[(*path, i)] = item.start_mark.line + 1
                    items.append(self._build(item, (*path, i)))
                return items
            assert isinstance(node, yaml.MappingNode)
            if node.tag != "tag:yaml.org,2002:map":
                self._issue(node, path, f"unsupported YAML tag {node.tag}")
            if id(node) not in self._checked:
                self._checked.add(id(node))
                self._check_duplicates(node, path)
                self._loader.flatten_mapping(node)  # resolves "<<" merge keys
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._issue(key_node, path, "keys must be plain values, not lists or maps")
                    continue
                # keys are kept as written: "1001" stays a string and "no" is not False
                key = key_node.value
                sub = (*path, key)
                self.lines[sub] = key_node.start_mark.line + 1
                result[key] = self._build(value_node, sub)
            return result
        finally:
            self._building.discard(id(node))

    def _check_duplicates(self, node: yaml.MappingNode, path: Loc) -> None:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                self.issues.append(
                    ConfigIssue(
                        line=line,
                        field=_dotted((*path, key_node.value)),
                        message=f"duplicate key (first given on line "
                        f"{first[key_node.value]}); only one value would be used",
                    )
                )
            else:
                first[key_node.value] = line

    def line_of(self, loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None


class _TooBig(Exception):
    pass


# --------------------------------------------------------------------------------------------
# error locations -> issues

_PYDANTIC_TAG = re.compile(r"^[a-z-]+\[.*\]$")


def _clean_loc(loc: Iterable[str | int]) -> Loc:
    """Drop pydantic's internal segments ("[key]", "function-after[...]") from a location."""
    return tuple(
        seg
        for seg in loc
        if not (isinstance(seg, str) and (seg == "[key]" or _PYDANTIC_TAG.match(seg)))
    )


def _dotted(loc: Iterable[str | int]) -> str:
    return ".".join(str(seg) for seg in loc)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that the data at `loc` is validated against (None if not a model)."""
    tp: Any = CitylineConfig
    for seg in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if _is_model(tp) else None


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "extra_forbidden" and loc:
        key = str(loc[-1])
        msg = f"unknown setting {key!r}"
        model = _model_at(loc[:-1])
        if model is not None:
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            else:
                msg += f" (allowed: {', '.join(model.model_fields)})"
        if key.lower() in {"password", "passwd", "secret", "token"}:
            msg += "; secrets never go in the file: name an environment variable instead"
    elif kind == "missing":
        msg = "required setting is missing"
    return msg


def _issues_from_validation(
    exc: ValidationError,
    doc: _Document | None,
    env_paths: Mapping[Loc, str],
) -> tuple[list[ConfigIssue], bool]:
    """Turn pydantic errors into issues. Also says whether the cross-field check already ran."""
    found: list[tuple[Loc, str]] = []
    cross_ran = False
    for err in exc.errors(include_url=False):
        loc = _clean_loc(err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, _Problems):
            if loc == ():
                cross_ran = True
            found.extend(((*loc, *sub), msg) for sub, msg in inner.problems)
        else:
            found.append((loc, _message(err, loc)))
    return [_issue_at(loc, msg, doc, env_paths) for loc, msg in found], cross_ran


def _issue_at(
    loc: Loc, message: str, doc: _Document | None, env_paths: Mapping[Loc, str]
) -> ConfigIssue:
    for end in range(len(loc), 0, -1):
        var = env_paths.get(loc[:end])
        if var is not None:
            return ConfigIssue(line=None, field=_dotted(loc), message=f"env {var}: {message}")
    line = doc.line_of(loc) if doc is not None else None
    return ConfigIssue(line=line, field=_dotted(loc), message=message)


def _sorted_unique(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    unique: dict[tuple[int | None, str, str], ConfigIssue] = {}
    for issue in issues:
        unique.setdefault((issue.line, issue.field, issue.message), issue)
    return sorted(
        unique.values(),
        key=lambda i: (i.line is None, i.line or 0, i.field, i.message),
    )


# --------------------------------------------------------------------------------------------
# environment overrides


def _env_value(var: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise _EnvError(f"env {var}: not a valid YAML value ({exc.__class__.__name__})") from None


class _EnvError(Exception):
    pass


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[Loc, str], list[ConfigIssue]]:
    """Apply REDIS_URL and CITYLINE_<SECTION>__<FIELD>... to `data` (in place).

    Returns the paths that came from the environment (so errors there name the variable) and
    the problems met. Variables with the prefix but without "__" are not configuration (they
    belong to the CLI and tools, e.g. CITYLINE_REDIS_SERVER) unless they name a top-level
    setting like CITYLINE_DATA_DIR.
    """
    paths: dict[Loc, str] = {}
    issues: list[ConfigIssue] = []
    overrides: list[tuple[str, list[str], Any]] = []
    if env.get("REDIS_URL"):
        overrides.append(("REDIS_URL", ["redis", "url"], env["REDIS_URL"]))  # taken verbatim
    sections = {
        name
        for name, field in CitylineConfig.model_fields.items()
        if _is_model(_unwrap(field.annotation)) or typing.get_origin(field.annotation) is dict
    }
    scalars = set(CitylineConfig.model_fields) - sections
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        segments = rest.split(ENV_SEPARATOR)
        head = segments[0].lower()
        if len(segments) == 1 and head not in scalars:
            continue
        if any(not s for s in segments):
            issues.append(
                ConfigIssue(
                    line=None,
                    field=_dotted(s.lower() for s in segments),
                    message=f"env {var}: empty name between separators (nest with exactly '__')",
                )
            )
            continue
        if head not in CitylineConfig.model_fields:
            close = difflib.get_close_matches(head, list(CitylineConfig.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            issues.append(
                ConfigIssue(
                    line=None,
                    field=_dotted(s.lower() for s in segments),
                    message=f"env {var}: unknown section {head!r}{hint}",
                )
            )
            continue
        try:
            overrides.append((var, segments, _env_value(var, env[var])))
        except _EnvError as exc:
            issues.append(
                ConfigIssue(line=None, field=_dotted(s.lower() for s in segments), message=str(exc))
            )
    for var, segments, value in overrides:
        node: Any = data
        loc: list[str] = []
        ok = True
        for i, seg in enumerate(segments):
            if not isinstance(node, dict):
                issues.append(
                    ConfigIssue(
                        line=None,
                        field=_dotted(loc),
                        message=f"env {var}: {_dotted(loc) or 'the configuration'} is not a "
                        "section, cannot set a key inside it",
                    )
                )
                ok = False
                break
            # keys match case-insensitively, so CITYLINE_AGENTS__JAN__LINE finds "Jan" too
            key = next((k for k in node if str(k).lower() == seg.lower()), seg.lower())
            loc.append(key)
            if i == len(segments) - 1:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        if ok:
            paths[tuple(loc)] = var
    return paths, issues


def _file_secret_issues(data: Mapping[str, Any], doc: _Document) -> list[ConfigIssue]:
    redis = data.get("redis")
    url = redis.get("url") if isinstance(redis, Mapping) else None
    if not isinstance(url, str):
        return []
    parts = urllib.parse.urlsplit(url)
    has_password = False
    with contextlib.suppress(ValueError):  # a malformed port is pydantic's business, not ours
        has_password = bool(parts.password)
    query = urllib.parse.parse_qs(parts.query)
    if has_password or "password" in query:
        return [
            ConfigIssue(
                line=doc.line_of(("redis", "url")),
                field="redis.url",
                message="the file must not hold the Redis password: set the URL in the REDIS_URL "
                "environment variable",
            )
        ]
    return []


# --------------------------------------------------------------------------------------------
# public entry points


def default_config_path() -> Path:
    """Path of the packaged default configuration (router/default_config.yaml)."""
    return Path(str(resources.files(__package__ or "router").joinpath(DEFAULT_CONFIG_NAME)))


def _read(path: str | Path | None) -> tuple[str | None, list[ConfigIssue]]:
    try:
        if path is None:
            resource = resources.files(__package__ or "router").joinpath(DEFAULT_CONFIG_NAME)
            return resource.read_text(encoding="utf-8"), []
        return Path(path).read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        where = path if path is not None else DEFAULT_CONFIG_NAME
        return None, [ConfigIssue(line=None, field="", message=f"cannot read {where}: {exc}")]


def _load(
    path: str | Path | None, env: Mapping[str, str] | None
) -> tuple[CitylineConfig | None, list[ConfigIssue]]:
    env = os.environ if env is None else env
    text, issues = _read(path)
    if text is None:
        return None, issues
    doc = _Document(text)
    issues = list(doc.issues)
    if doc.issues and doc.data is None:
        return None, issues
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        issues.append(
            ConfigIssue(
                line=doc.line_of(()),
                field="",
                message="the configuration must be a mapping of sections (city:, queues:, ...)",
            )
        )
        return None, issues
    # top-level keys starting with "x-" are free for YAML anchors (as in docker-compose files)
    data = {k: v for k, v in data.items() if not str(k).startswith(EXTENSION_PREFIX)}
    issues.extend(_file_secret_issues(data, doc))
    env_paths, env_issues = _apply_env(data, env)
    issues.extend(env_issues)
    try:
        config = CitylineConfig.model_validate(data)
    except ValidationError as exc:
        found, cross_ran = _issues_from_validation(exc, doc, env_paths)
        issues.extend(found)
        if not cross_ran:
            issues.extend(
                _issue_at(loc, msg, doc, env_paths) for loc, msg in _partial_problems(data)
            )
        return None, _sorted_unique(issues)
    if issues:
        return None, _sorted_unique(issues)
    return config, []


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> CitylineConfig:
    """Load, override from the environment and validate a configuration.

    `path` None reads the packaged default. `env` defaults to `os.environ`; pass {} to ignore
    the environment. Raises `ConfigError` listing every problem.
    """
    config, issues = _load(path, env)
    if config is None:
        raise ConfigError(issues, path)
    return config


def check_config_file(
    path: str | Path | None, env: Mapping[str, str] | None = None
) -> list[ConfigIssue]:
    """Every problem of a configuration file ([] when valid); same rules as `load_config`."""
    return _load(path, env)[1]


# --------------------------------------------------------------------------------------------
# reference documentation


def _constraint_text(metadata: Iterable[Any]) -> str:
    low = high = ""
    parts: list[str] = []
    for item in metadata:
        if isinstance(item, Ge):
            low = f"≥ {item.ge}"
        elif isinstance(item, Gt):
            low = f"> {item.gt}"
        elif isinstance(item, Le):
            high = f"≤ {item.le}"
        elif isinstance(item, Lt):
            high = f"< {item.lt}"
        elif isinstance(item, MinLen) and item.min_length > 0:
            parts.append(f"at least {item.min_length}")
        elif isinstance(item, MaxLen):
            parts.append(f"at most {item.max_length}")
        elif isinstance(item, FieldInfo):
            inner = _constraint_text(item.metadata)
            if inner:
                parts.append(inner)
        elif getattr(item, "pattern", None):
            parts.append(f"matching `{item.pattern}`")
    if low.startswith("≥") and high.startswith("≤"):
        bounds = [f"{low[2:]}..{high[2:]}"]
    else:
        bounds = [b for b in (low, high) if b]
    return ", ".join([*bounds, *parts])


_KEY_NAMES = {
    "SkillName": "skill",
    "QueueName": "queue",
    "ReasonName": "reason code",
    "AgentId": "agent id",
    "UserName": "user",
    "LanguageCode": "language",
}


def _type_text(tp: Any, metadata: Iterable[Any] = ()) -> str:
    validators = list(metadata)
    for alias, name in _KEY_NAMES.items():
        annotated = globals()[alias]
        if tp == annotated or (tp is str and typing.get_args(annotated)[1] in validators):
            return name
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        base = _type_text(args[0])
        extra = _constraint_text(args[1:])
        return f"{base} ({extra})" if extra else base
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in rest)
        return f"{text} or null" if len(rest) < len(args) else text
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is dict:
        return f"map {_type_text(args[0])} → {_type_text(args[1])}"
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if tp is Channel:
        return "channel"
    if _is_model(tp):
        return f"`{tp.__name__}`"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        SecretStr: "secret string",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if _is_model(type(value)):
        return "see below"
    if isinstance(value, dict):
        value = {str(k): v for k, v in value.items()}
        if value and all(_is_model(type(v)) for v in value.values()):
            return ", ".join(f"`{k}`" for k in value)
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1000, sort_keys=False
    )
    text = text.strip().removesuffix("...").strip()
    return f"`{text}`"


def _model_sections(
    model: type[BaseModel], path: str, seen: list[tuple[str, type[BaseModel]]]
) -> None:
    seen.append((path, model))
    for name, field in model.model_fields.items():
        tp = _unwrap(field.annotation)
        sub = f"{path}.{name}" if path else name
        origin = typing.get_origin(tp)
        if _is_model(tp):
            _model_sections(tp, sub, seen)
        elif origin is dict and _is_model(_unwrap(typing.get_args(tp)[1])):
            key = _type_text(typing.get_args(tp)[0])
            _model_sections(_unwrap(typing.get_args(tp)[1]), f"{sub}.<{key}>", seen)
        elif origin is list and _is_model(_unwrap(typing.get_args(tp)[0])):
            _model_sections(_unwrap(typing.get_args(tp)[0]), f"{sub}[]", seen)


def reference_markdown() -> str:
    """The field reference (one table per section), as embedded in docs/configuration.md."""
    sections: list[tuple[str, type[BaseModel]]] = []
    _model_sections(CitylineConfig, "", sections)
    out: list[str] = []
    for path, model in sections:
        title = f"`{path}`" if path else "top level"
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out += [f"### {title} — `{model.__name__}`", "", doc, ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            type_text = _type_text(field.annotation, field.metadata)
            extra = _constraint_text(field.metadata)
            if extra:
                type_text += f" ({extra})"
            desc = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
            out.append(
                f"| `{name}` | {type_text.replace('|', '/')} | {_default_text(field)} | {desc} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # python -m router.config  -> prints the reference tables
    print(reference_markdown(), end="")
