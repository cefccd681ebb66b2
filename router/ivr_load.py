"""Loading IVR flows from YAML with every problem at its line.

The YAML is read with the configuration's line-marking reader (`router.config_yaml.Document`:
duplicate keys, alias bombs and the like are reported, not silently resolved); pydantic errors
and the whole-flow checks of `router.ivr_checks` are mapped back to the line of the offending
key and reported together as `ConfigIssue`s, like configuration problems.

A directory of flows (``*.yaml``, ``*.yml``) is checked file by file; flow names must be unique
in it, because Asterisk selects a flow by name (the AGI URL path).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from router.config_issues import ConfigError, ConfigIssue, Loc, clean_loc, dotted
from router.config_model import CitylineConfig
from router.config_yaml import Document
from router.ivr_checks import flow_problems, partial_problems
from router.ivr_flow import NODE_KINDS, IvrFlow, WeekHours

MAX_FLOW_BYTES = 1_000_000  # a flow is a few kilobytes; refuse to parse a runaway file
FLOW_SUFFIXES = (".yaml", ".yml")


class FlowsError(Exception):
    """Flows that cannot be used. `problems` lists (file, issue) pairs; str() shows one a line
    as ``FILE:LINE: field: message``."""

    def __init__(self, problems: list[tuple[Path, ConfigIssue]]) -> None:
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(format_flow_issue(path, issue) for path, issue in self.problems)


def format_flow_issue(path: Path | str, issue: ConfigIssue) -> str:
    """`FILE:LINE: field: message`, the same shape as `cityline check-config` prints."""
    where = f"{path}:{issue.line}" if issue.line is not None else str(path)
    field = f" {issue.field}:" if issue.field else ""
    return f"{where}:{field} {issue.message}"


def default_flows_dir() -> Path:
    """The packaged flows: the `ivr_flows` package directory (shipped as package data)."""
    return Path(str(resources.files("ivr_flows")))


# --- one flow ---------------------------------------------------------------------------------


def parse_flow(
    text: str, cfg: CitylineConfig | None = None
) -> tuple[IvrFlow | None, list[ConfigIssue]]:
    """The flow in `text` and its problems; the flow is None unless there are none.

    With `cfg`, references to the configuration (languages, queues, skills) are checked too.
    """
    doc = Document(text)
    issues = list(doc.issues)
    if doc.data is None:
        if not issues:
            issues.append(ConfigIssue(line=None, field="", message="the file is empty"))
        return None, issues
    if not isinstance(doc.data, dict):
        issues.append(
            ConfigIssue(line=doc.line_of(()), field="", message="a flow is a mapping "
                        "(name:, languages:, entry:, nodes:)")
        )
        return None, issues
    try:
        flow = IvrFlow.model_validate(doc.data)
    except ValidationError as exc:
        found = _pydantic_problems(exc, doc.data) + partial_problems(doc.data, cfg)
        issues += [_issue(doc, loc, msg) for loc, msg in found]
        return None, _sorted(issues)
    issues += [_issue(doc, loc, msg) for loc, msg in flow_problems(flow, cfg)]
    if issues:
        return None, _sorted(issues)
    return flow, []


def check_flow_file(path: str | Path, cfg: CitylineConfig | None = None) -> list[ConfigIssue]:
    """Every problem of the flow file at `path` ([] when it is valid)."""
    text, issues = _read(Path(path))
    if text is None:
        return issues
    return parse_flow(text, cfg)[1]


def load_flow(path: str | Path, cfg: CitylineConfig | None = None) -> IvrFlow:
    """The valid flow at `path`; `ConfigError` listing every problem otherwise."""
    text, issues = _read(Path(path))
    flow = None
    if text is not None:
        flow, issues = parse_flow(text, cfg)
    if flow is None:
        raise ConfigError(issues, path)
    return flow


def _read(path: Path) -> tuple[str | None, list[ConfigIssue]]:
    try:
        if path.stat().st_size > MAX_FLOW_BYTES:
            return None, [ConfigIssue(line=None, field="", message=f"larger than "
                                      f"{MAX_FLOW_BYTES} bytes: not a flow")]
        return path.read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(line=None, field="", message=f"cannot read: {exc}")]


# --- a directory of flows ---------------------------------------------------------------------


def flow_files(directory: str | Path) -> list[Path]:
    """The flow files in `directory`, in name order."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix in FLOW_SUFFIXES)


def check_flow_dir(
    directory: str | Path, cfg: CitylineConfig | None = None
) -> tuple[dict[str, IvrFlow], list[tuple[Path, ConfigIssue]]]:
    """The valid flows of `directory` by name, and every problem as (file, issue)."""
    flows: dict[str, IvrFlow] = {}
    where: dict[str, Path] = {}
    problems: list[tuple[Path, ConfigIssue]] = []
    directory = Path(directory)
    if not directory.is_dir():
        issue = ConfigIssue(line=None, field="", message="not a directory of IVR flows")
        return flows, [(directory, issue)]
    for path in flow_files(directory):
        text, issues = _read(path)
        flow = None
        if text is not None:
            flow, issues = parse_flow(text, cfg)
        problems += [(path, issue) for issue in issues]
        if flow is None:
            continue
        if flow.name in flows:
            line = Document(text or "").line_of(("name",))
            problems.append(
                (path, ConfigIssue(line=line, field="name", message=f"flow {flow.name!r} is "
                                   f"already defined in {where[flow.name].name}"))
            )
            continue
        flows[flow.name] = flow
        where[flow.name] = path
    if not flows and not problems:
        problems.append(
            (directory, ConfigIssue(line=None, field="", message="no flow files (*.yaml)"))
        )
    return flows, problems


def load_flows(directory: str | Path, cfg: CitylineConfig | None = None) -> dict[str, IvrFlow]:
    """Every flow of `directory` by name; `FlowsError` if any file has a problem."""
    flows, problems = check_flow_dir(directory, cfg)
    if problems:
        raise FlowsError(problems)
    return flows


# --- pydantic errors -> locations ----------------------------------------------------------------


def _pydantic_problems(exc: ValidationError, data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    for err in exc.errors(include_url=False):
        loc = _drop_tag(clean_loc(err["loc"]))
        kind = err.get("type", "")
        msg = str(err.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if kind == "extra_forbidden" and loc:
            msg = _unknown_key(loc, data)
        elif kind == "missing":
            msg = "required setting is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            kinds = ", ".join(NODE_KINDS)
            given = _at(data, (*loc, "kind"))
            if kind == "union_tag_invalid":
                loc = (*loc, "kind")
                msg = f"unknown node kind {given!r} (kinds: {kinds})"
            else:
                msg = f"a node needs kind: one of {kinds}"
        found.append((loc, msg))
    return found


def _drop_tag(loc: Loc) -> Loc:
    # pydantic puts the discriminator value in the location of a node's errors:
    # ("nodes", "main", "menu", "options") -> ("nodes", "main", "options")
    if len(loc) > 2 and loc[0] == "nodes" and loc[2] in NODE_KINDS:
        return (*loc[:2], *loc[3:])
    return loc


def _at(data: Any, loc: Loc) -> Any:
    for seg in loc:
        if isinstance(data, dict):
            data = data.get(seg)
        elif isinstance(data, list) and isinstance(seg, int) and 0 <= seg < len(data):
            data = data[seg]
        else:
            return None
    return data


def _model_at(loc: Loc, data: Mapping[str, Any]) -> type[BaseModel] | None:
    if not loc:
        return IvrFlow
    if loc[0] == "nodes" and len(loc) >= 2:
        node = _at(data, loc[:2])
        model = NODE_KINDS.get(node.get("kind")) if isinstance(node, dict) else None
        if len(loc) == 2:
            return model
        if len(loc) == 3 and loc[2] == "week":
            return WeekHours
    return None


def _unknown_key(loc: Loc, data: Mapping[str, Any]) -> str:
    key = str(loc[-1])
    msg = f"unknown setting {key!r}"
    model = _model_at(loc[:-1], data)
    if model is not None:
        names = [n for n in model.model_fields if n != "kind"]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        msg += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(names)})"
    return msg


def _issue(doc: Document, loc: Loc, message: str) -> ConfigIssue:
    return ConfigIssue(line=doc.line_of(loc), field=dotted(loc), message=message)


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = {(i.line, i.field, i.message): i for i in issues}
    return sorted(unique.values(), key=lambda i: (i.line is None, i.line or 0, i.field, i.message))
