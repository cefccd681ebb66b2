"""Environment overrides of the configuration: ``REDIS_URL`` and ``CITYLINE_<SECTION>__<FIELD>``.

Values are parsed as YAML (``CITYLINE_HTTP__PORT=9000`` is a number), except ``REDIS_URL``,
which is taken verbatim. Keys nest with ``__`` and match case-insensitively.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from router.config_issues import ConfigIssue, Loc, dotted
from router.config_model import CitylineConfig, is_model, unwrap

ENV_PREFIX = "CITYLINE_"
ENV_SEPARATOR = "__"


class _EnvError(Exception):
    pass


def _env_value(var: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise _EnvError(f"env {var}: not a valid YAML value ({exc.__class__.__name__})") from None


def apply_env(
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
        if is_model(unwrap(field.annotation)) or typing.get_origin(field.annotation) is dict
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
                    field=dotted(s.lower() for s in segments),
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
                    field=dotted(s.lower() for s in segments),
                    message=f"env {var}: unknown section {head!r}{hint}",
                )
            )
            continue
        try:
            overrides.append((var, segments, _env_value(var, env[var])))
        except _EnvError as exc:
            issues.append(
                ConfigIssue(line=None, field=dotted(s.lower() for s in segments), message=str(exc))
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
                        field=dotted(loc),
                        message=f"env {var}: {dotted(loc) or 'the configuration'} is not a "
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
