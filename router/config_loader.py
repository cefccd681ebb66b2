"""Loading a configuration: read the YAML, apply the environment, validate, report every problem.

pydantic's errors come back as `ConfigIssue`s at the YAML line of the offending key (or naming
the environment variable that set it), with a hint for misspelt settings. A configuration that
fails validation is also salvaged for its cross-references (`router.config_salvage`), so one
mistake does not hide the others.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router.config_env import apply_env
from router.config_issues import ConfigError, ConfigIssue, Loc, Problems, clean_loc, dotted
from router.config_model import CitylineConfig, model_at
from router.config_salvage import partial_problems
from router.config_yaml import Document

DEFAULT_CONFIG_NAME = "default_config.yaml"
EXTENSION_PREFIX = "x-"

# --------------------------------------------------------------------------------------------
# pydantic errors -> issues


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "extra_forbidden" and loc:
        key = str(loc[-1])
        msg = f"unknown setting {key!r}"
        model = model_at(loc[:-1])
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
    doc: Document | None,
    env_paths: Mapping[Loc, str],
) -> tuple[list[ConfigIssue], bool]:
    """Turn pydantic errors into issues. Also says whether the cross-field check already ran."""
    found: list[tuple[Loc, str]] = []
    cross_ran = False
    for err in exc.errors(include_url=False):
        loc = clean_loc(err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, Problems):
            if loc == ():
                cross_ran = True
            found.extend(((*loc, *sub), msg) for sub, msg in inner.problems)
        else:
            found.append((loc, _message(err, loc)))
    return [_issue_at(loc, msg, doc, env_paths) for loc, msg in found], cross_ran


def _issue_at(
    loc: Loc, message: str, doc: Document | None, env_paths: Mapping[Loc, str]
) -> ConfigIssue:
    for end in range(len(loc), 0, -1):
        var = env_paths.get(loc[:end])
        if var is not None:
            return ConfigIssue(line=None, field=dotted(loc), message=f"env {var}: {message}")
    line = doc.line_of(loc) if doc is not None else None
    return ConfigIssue(line=line, field=dotted(loc), message=message)


def _sorted_unique(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    unique: dict[tuple[int | None, str, str], ConfigIssue] = {}
    for issue in issues:
        unique.setdefault((issue.line, issue.field, issue.message), issue)
    return sorted(
        unique.values(),
        key=lambda i: (i.line is None, i.line or 0, i.field, i.message),
    )


def _file_secret_issues(data: Mapping[str, Any], doc: Document) -> list[ConfigIssue]:
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
    doc = Document(text)
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
    env_paths, env_issues = apply_env(data, env)
    issues.extend(env_issues)
    try:
        config = CitylineConfig.model_validate(data)
    except ValidationError as exc:
        found, cross_ran = _issues_from_validation(exc, doc, env_paths)
        issues.extend(found)
        if not cross_ran:
            issues.extend(
                _issue_at(loc, msg, doc, env_paths) for loc, msg in partial_problems(data)
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
