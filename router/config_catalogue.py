"""The named entries of the configuration: skills, reason codes, queues, agents and users.

Each is one value of a map section (``skills: {taxes: ...}``). Checks within one entry live
here; references between entries (a queue's overflow, a user's agent) are checked by
`router.config_checks`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from router.config_issues import Loc
from router.config_names import AgentId, Labels, QueueName, SkillLevel, SkillName
from router.config_sections import Section
from router.models import DEFAULT_CAPACITY, AgentProfile, Channel

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/\S+$")


class SkillConfig(Section):
    """A competence an agent has at a level 1..10 and an interaction may require."""

    kind: Literal["information", "intervention", "language", "general"] = Field(
        description="information topic, intervention category (becomes a case), language, "
        "or general (first line, second line)"
    )
    labels: Labels = Field(description="display name per language; every city language needed")


class ReasonCode(Section):
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


def default_reason_codes() -> dict[str, ReasonCode]:
    """The reason codes when the configuration names none: only `rona` (miss_pause_reason)."""
    return {
        "rona": ReasonCode(
            labels={
                "pl": "Nieodebrane zgłoszenie",
                "en": "Missed offer",
                "uk": "Пропущене звернення",
            }
        )
    }


class ServiceLevel(Section):
    """Service-level target: target_pct % of contacts answered within threshold_s seconds."""

    target_pct: float = Field(gt=0, le=100, description="percentage to answer in time")
    threshold_s: float = Field(gt=0, description="the time limit, seconds")


class EscalationStep(Section):
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


class QueueConfig(Section):
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
        return problems + self._escalation_problems()

    def _escalation_problems(self) -> list[tuple[Loc, str]]:
        """Problems of the escalation steps, found by walking them in the order they run and
        tracking the skills each step leaves required."""
        problems: list[tuple[Loc, str]] = []
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


class AgentConfig(Section):
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


class UserConfig(Section):
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
