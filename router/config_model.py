"""`CitylineConfig`, the root of the configuration model tree, and how to walk the tree.

The walking helpers (`unwrap`, `is_model`, `model_at`) serve the loader (which model an error or
an environment variable is about) and the reference generator (which sections to document).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from router.config_cases import CasesConfig, cases_problems
from router.config_catalogue import (
    AgentConfig,
    QueueConfig,
    ReasonCode,
    SkillConfig,
    UserConfig,
    default_reason_codes,
)
from router.config_channels import ChannelsConfig
from router.config_checks import reference_problems
from router.config_issues import Loc
from router.config_knowledge import KnowledgeConfig
from router.config_names import AgentId, LanguageCode, QueueName, ReasonName, SkillName, UserName
from router.config_sections import (
    CityConfig,
    DemoConfig,
    HttpConfig,
    RedisConfig,
    RoutingConfig,
    Section,
    StatsConfig,
)


class CitylineConfig(Section):
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
        default_factory=default_reason_codes,
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
    channels: ChannelsConfig = Field(
        default_factory=ChannelsConfig, description="channel adapters, each off unless its block "
        "enables it (the packaged city enables e-mail, SMS, chat and the web form)"
    )
    cases: CasesConfig = Field(default_factory=CasesConfig, description="cases (service "
                               "requests): units, category rules, duplicates, notices")
    knowledge: KnowledgeConfig = Field(
        default_factory=KnowledgeConfig, description="the first line's knowledge base (cards)"
    )
    demo: DemoConfig = Field(default_factory=DemoConfig, description="demonstration helpers")

    def _own_problems(self) -> list[tuple[Loc, str]]:
        return reference_problems(
            city_languages=self.city.languages,
            routing=self.routing,
            skills=self.skills,
            languages=self.languages,
            reason_codes=self.reason_codes,
            queues=self.queues,
            agents=self.agents,
            users=self.users,
        ) + cases_problems(self.cases, city_languages=self.city.languages, skills=self.skills,
                           agents=self.agents)

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


def unwrap(tp: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None`` wrappers (a real union stays)."""
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


def is_model(tp: Any) -> bool:
    """Whether `tp` is a pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that the data at `loc` is validated against (None if not a model)."""
    tp: Any = CitylineConfig
    for seg in loc:
        tp = unwrap(tp)
        origin = typing.get_origin(tp)
        if is_model(tp):
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
    tp = unwrap(tp)
    return tp if is_model(tp) else None
