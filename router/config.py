"""The cityline configuration: one YAML file, validated by a pydantic model tree.

* Every section forbids unknown keys, so a misspelt setting is an error, never silently dropped.
* Secrets come from the environment only (``REDIS_URL``; users name the variable that holds their
  initial password). Secret values are `SecretStr` and never appear in ``repr``/``str``.
* Errors carry the YAML line of the offending key (mapped back from pydantic's error location
  through the YAML node tree) and the dotted field path, e.g.
  ``queues.voice-info.escalation.0.after_s``. All problems are reported together.

`load_config` is the entry point; `check_config_file` returns the problems as a list instead of
raising. `reference_markdown` renders the field reference that docs/configuration.md embeds
(``python -m router.config`` prints it).

This module is the public face: import configuration names from here. The work is done in
``router.config_*`` modules, each with one job; none of them imports this one, so there is no
import cycle and ``python -m router.config`` runs without loading the models twice:

* `config_issues`: `ConfigIssue`, `ConfigError` and error locations
* `config_names`: validated names (queue, skill, agent id, ...) and small value types
* `config_sections`: the `Section` base and the single sections (city, redis, http, routing, ...)
* `config_catalogue`: the named entries (skills, reason codes, queues, agents, users)
* `config_checks`: references across sections
* `config_model`: `CitylineConfig`, the root, and walking the model tree
* `config_yaml`: YAML with the line of every key
* `config_env`: ``REDIS_URL`` and ``CITYLINE_*`` overrides
* `config_salvage`: cross-reference problems of a configuration that failed validation
* `config_loader`: `load_config`, `check_config_file`, pydantic errors to issues
* `config_reference`: the markdown reference
"""

from __future__ import annotations

from router.config_catalogue import (
    AgentConfig,
    EscalationStep,
    QueueConfig,
    ReasonCode,
    ServiceLevel,
    SkillConfig,
    UserConfig,
)
from router.config_env import ENV_PREFIX as ENV_PREFIX
from router.config_env import ENV_SEPARATOR as ENV_SEPARATOR
from router.config_issues import ConfigError, ConfigIssue
from router.config_issues import Loc as Loc
from router.config_loader import DEFAULT_CONFIG_NAME as DEFAULT_CONFIG_NAME
from router.config_loader import EXTENSION_PREFIX as EXTENSION_PREFIX
from router.config_loader import check_config_file, default_config_path, load_config
from router.config_model import CitylineConfig
from router.config_names import AgentId as AgentId
from router.config_names import Labels as Labels
from router.config_names import LanguageCode as LanguageCode
from router.config_names import QueueName as QueueName
from router.config_names import ReasonName as ReasonName
from router.config_names import SkillLevel as SkillLevel
from router.config_names import SkillName as SkillName
from router.config_names import UserName as UserName
from router.config_reference import main as _print_reference
from router.config_reference import reference_markdown
from router.config_sections import (
    BlendingConfig,
    CityConfig,
    DemoConfig,
    HttpConfig,
    RedisConfig,
    RoutingConfig,
    StatsConfig,
)
from router.models import DEFAULT_CAPACITY

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

if __name__ == "__main__":  # python -m router.config  -> prints the reference tables
    _print_reference()
