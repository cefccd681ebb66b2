"""Cross-field problems of a configuration that failed validation elsewhere.

pydantic runs a model's own checks only when all its fields are valid, and the whole-
configuration reference check only when everything else is. So that one typo does not hide the
rest, the loader salvages each section (and each item of the map sections) on its own here and
checks what is usable.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from router.config_catalogue import (
    AgentConfig,
    QueueConfig,
    ReasonCode,
    SkillConfig,
    UserConfig,
    default_reason_codes,
)
from router.config_checks import reference_problems
from router.config_issues import Loc, clean_loc
from router.config_model import CitylineConfig
from router.config_names import LANG_RE
from router.config_sections import LENIENT, CityConfig, RoutingConfig, Section


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


def _salvage(model: type[Section], raw: Any, *, lossy: bool) -> tuple[Any, list[tuple[Loc, str]]]:
    """The valid part of `raw` as a `model`, for cross-reference checks of a broken config.

    Validates without the models' own cross-field checks. When only unknown keys are in the way,
    they are dropped and the own checks are returned as well (dropping an unknown key changes
    nothing else, so they are reliable). With `lossy`, invalid values are dropped too (first the
    values themselves, then the whole setting); that only ever removes references, so checks
    on the result raise no false alarms, but its own checks are skipped. Returns (None, []) when
    nothing usable is left, e.g. a required setting is missing.
    """
    try:
        return model.model_validate(raw, context=LENIENT), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if not isinstance(raw, Mapping):
        return None, []
    locs = [clean_loc(err["loc"]) for err in errors]
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
            item = model.model_validate(_without(raw, paths), context=LENIENT)
        except ValidationError:
            continue
        return item, (item._own_problems() if own else [])
    return None, []


def partial_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Cross-field problems of `data`, a configuration that failed validation elsewhere."""
    problems: list[tuple[Loc, str]] = []
    # a misspelt section name ("skils:") must not turn every reference into "unknown"
    absent: dict[str, Any] | None = {}
    if any(key not in CitylineConfig.model_fields for key in data):
        absent = None

    def one(model: type[Section], key: str) -> Any:
        item, own = _salvage(model, data.get(key) or {}, lossy=False)
        problems.extend(((key, *loc), msg) for loc, msg in own)
        return item

    def many(model: type[Section], key: str) -> dict[str, Any] | None:
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
        and all(isinstance(x, str) and LANG_RE.fullmatch(x) for x in raw_langs)
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
        reason_codes = default_reason_codes()
    problems.extend(
        reference_problems(
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
