"""Checks of an IVR flow as a whole, and against the city configuration.

Within the flow: the entry and every target name a node; every node is reachable from the entry;
no loop of nodes that never wait for the caller (it would spin forever); every prompt has sounds
for exactly the flow's languages; every language can be chosen; a closed node's callback is a
callback_request node.

Against the configuration (when one is given): the flow's languages are city languages, queues
exist and serve the voice channel, topics are skills of the catalogue (and not language skills,
which follow the language the caller chose).

Each problem is a location in the flow data (as `router.config_issues.Loc`) and a message, so the
loader can put it on the YAML line of the offending key. `partial_problems` runs the checks of
single nodes on a flow that failed validation, so one typo does not hide the other problems.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from router.config_issues import Loc
from router.config_model import CitylineConfig
from router.config_names import LanguageCode
from router.ivr_flow import (
    CallbackRequestNode,
    ClosedNode,
    HoursNode,
    InfoNode,
    IvrFlow,
    LanguageNode,
    MenuNode,
    Node,
    Prompt,
    RouteNode,
    _Node,
)
from router.models import Channel

Problems = list[tuple[Loc, str]]


def flow_problems(flow: IvrFlow, cfg: CitylineConfig | None = None) -> Problems:
    """Every problem of `flow`; with `cfg`, also its references to the city configuration."""
    problems = _language_problems(flow)
    problems += _graph_problems(flow)
    for name, node in flow.nodes.items():
        problems += node_problems(name, node, flow.nodes, flow.languages, cfg)
    if cfg is not None:
        problems += _city_language_problems(flow.languages, cfg)
    return problems


def partial_problems(data: Any, cfg: CitylineConfig | None = None) -> Problems:
    """The single-node checks on the nodes that are valid by themselves, for a flow whose
    validation failed. Checks that need the whole flow (reachability, loops) are left out: an
    invalid node has unknown targets, so they would raise false alarms."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        return []
    raw_nodes: dict[Any, Any] = data["nodes"]
    languages: list[str] | None = None
    with contextlib.suppress(ValidationError):
        languages = _LANGUAGES.validate_python(data.get("languages"))
    nodes: dict[str, _Node] = {}
    for name, raw in raw_nodes.items():
        try:
            nodes[str(name)] = _NODE.validate_python(raw)
        except ValidationError:
            continue
    names = set(map(str, raw_nodes))
    problems: Problems = []
    entry = data.get("entry")
    if isinstance(entry, str) and entry not in names:
        problems.append((("entry",), f"no node called {entry!r}{_known(names)}"))
    for name, node in nodes.items():
        problems += node_problems(name, node, nodes, languages, cfg, names=names)
    if cfg is not None and languages is not None:
        problems += _city_language_problems(languages, cfg)
    return problems


_NODE: TypeAdapter[_Node] = TypeAdapter(Node)
_LANGUAGES: TypeAdapter[list[str]] = TypeAdapter(list[LanguageCode])


# --- languages --------------------------------------------------------------------------------


def _language_problems(flow: IvrFlow) -> Problems:
    problems: Problems = []
    seen: set[str] = set()
    for i, lang in enumerate(flow.languages):
        if lang in seen:
            problems.append((("languages", i), f"language {lang!r} is listed twice"))
        seen.add(lang)
    if flow.default_language is not None and flow.default_language not in seen:
        problems.append(
            (("default_language",), f"{flow.default_language!r} is not one of the flow's "
             f"languages ({', '.join(flow.languages)})")
        )
    choosable = {flow.start_language}
    for node in flow.nodes.values():
        if isinstance(node, LanguageNode):
            choosable.update(node.choices.values())
    never = [lang for lang in flow.languages if lang not in choosable]
    if never:
        problems.append(
            (("languages",), f"language(s) {', '.join(never)} can never be chosen: add them to "
             "the choices of a language node")
        )
    return problems


def _city_language_problems(languages: list[str], cfg: CitylineConfig) -> Problems:
    return [
        (("languages", i), f"{lang!r} is not a city language ({', '.join(cfg.city.languages)})")
        for i, lang in enumerate(languages)
        if lang not in cfg.city.languages
    ]


# --- the graph --------------------------------------------------------------------------------


def _graph_problems(flow: IvrFlow) -> Problems:
    problems: Problems = []
    if flow.entry not in flow.nodes:
        problems.append((("entry",), f"no node called {flow.entry!r}{_known(flow.nodes)}"))
        return problems
    reached = _reachable(flow)
    for name in flow.nodes:
        if name not in reached:
            problems.append(
                (("nodes", name), f"node {name!r} cannot be reached from the entry "
                 f"{flow.entry!r}")
            )
    return problems + _spin_problems(flow)


def _known(names: Collection[str]) -> str:
    return f" (nodes: {', '.join(sorted(names))})"


def _reachable(flow: IvrFlow) -> set[str]:
    reached = {flow.entry}
    todo = deque([flow.entry])
    while todo:
        node = flow.nodes.get(todo.popleft())
        if node is None:
            continue
        for target in node.targets().values():
            if target in flow.nodes and target not in reached:
                reached.add(target)
                todo.append(target)
    return reached


def _spin_problems(flow: IvrFlow) -> Problems:
    """Loops made only of nodes that never wait for a key (goto, hours, closed) would run
    forever without the caller doing anything; report each such loop once."""
    passive = {name for name, node in flow.nodes.items() if not node.waits_for_caller}
    succ = {
        name: [t for t in flow.nodes[name].targets().values() if t in passive]
        for name in passive
    }
    # Peel off the nodes that lead out of the passive part; what is left lies on a loop or
    # leads into one.
    left = set(passive)
    changed = True
    while changed:
        changed = False
        for name in sorted(left):
            if not any(t in left for t in succ[name]):
                left.discard(name)
                changed = True
    problems: Problems = []
    reported: set[str] = set()
    for start in sorted(left):
        # walk forward inside `left` (every node there has a successor there) until a repeat
        walk: list[str] = []
        name = start
        while name not in walk:
            walk.append(name)
            name = next(t for t in succ[name] if t in left)
        loop = walk[walk.index(name) :]
        if reported.isdisjoint(loop):
            reported.update(loop)
            problems.append(
                (("nodes", loop[0]), "these nodes loop without waiting for the caller: "
                 + " -> ".join([*loop, loop[0]]))
            )
    return problems


# --- single nodes -----------------------------------------------------------------------------


def node_problems(
    name: str,
    node: _Node,
    nodes: Mapping[str, _Node],
    languages: list[str] | None,
    cfg: CitylineConfig | None,
    *,
    names: Collection[str] | None = None,
) -> Problems:
    """Problems of one node: its targets (`names`: every node name, default `nodes`), its
    prompts (when the flow's `languages` are known), its own rules and, with `cfg`, its
    references to the configuration."""
    here: Loc = ("nodes", name)
    names = nodes.keys() if names is None else names
    problems: Problems = []
    for field, target in node.targets().items():
        if target not in names:
            problems.append(
                ((*here, *field.split(".", 1)), f"no node called {target!r}{_known(names)}")
            )
    if languages is not None:
        problems += _prompt_problems(here, node, languages)
    if isinstance(node, ClosedNode) and node.callback is not None:
        target = nodes.get(node.callback)
        if target is not None and not isinstance(target, CallbackRequestNode):
            kind = getattr(target, "kind", "?")
            problems.append(
                ((*here, "callback"), f"{node.callback!r} is a {kind} node, "
                 "not a callback_request")
            )
    elif isinstance(node, HoursNode) and not any(node.week.on(day) for day in range(7)):
        problems.append(
            ((*here, "week"), "no opening hours on any day: the open branch is never taken "
             "(use a goto to the closed node if that is meant)")
        )
    elif isinstance(node, MenuNode) and node.fallback == name:
        problems.append(
            ((*here, "fallback"), "the fallback is the menu itself: a silent caller would hear "
             "it forever")
        )
    elif isinstance(node, LanguageNode):
        problems += _choice_problems(here, node, languages)
    if cfg is not None:
        problems += _config_problems(here, node, cfg)
    return problems


def _choice_problems(here: Loc, node: LanguageNode, languages: list[str] | None) -> Problems:
    problems: Problems = []
    if len(set(node.choices.values())) < 2:
        problems.append(((*here, "choices"), "a language choice needs two languages or more"))
    if languages is None:
        return problems
    known = ", ".join(languages)
    for key, lang in node.choices.items():
        if lang not in languages:
            problems.append(
                ((*here, "choices", key), f"{lang!r} is not one of the flow's languages "
                 f"({known}): it has no prompts")
            )
    if node.default is not None and node.default not in languages:
        problems.append(
            ((*here, "default"), f"{node.default!r} is not one of the flow's languages ({known})")
        )
    return problems


def _prompts(node: _Node) -> Iterator[tuple[str, Prompt]]:
    for field in ("prompt", "on_invalid", "on_timeout", "confirm", "enter_number", "done"):
        value = getattr(node, field, None)
        if value is not None:
            yield field, value


def _prompt_problems(here: Loc, node: _Node, languages: list[str]) -> Problems:
    problems: Problems = []
    wanted = list(dict.fromkeys(languages))
    for field, prompt in _prompts(node):
        missing = [lang for lang in wanted if lang not in prompt]
        if missing:
            problems.append(
                ((*here, field), f"no sounds for language(s) {', '.join(missing)}")
            )
        for lang in prompt:
            if lang not in wanted:
                problems.append(
                    ((*here, field, lang), f"{lang!r} is not one of the flow's languages "
                     f"({', '.join(wanted)})")
                )
    return problems


def _config_problems(here: Loc, node: _Node, cfg: CitylineConfig) -> Problems:
    problems: Problems = []
    if isinstance(node, RouteNode | CallbackRequestNode):
        voice = ", ".join(sorted(n for n, q in cfg.queues.items() if q.channel == Channel.voice))
        queue = cfg.queues.get(node.queue)
        if queue is None:
            problems.append(
                ((*here, "queue"), f"unknown queue {node.queue!r} (voice queues: "
                 f"{voice or 'none'})")
            )
        elif queue.channel != Channel.voice:
            problems.append(
                ((*here, "queue"), f"queue {node.queue!r} serves {queue.channel}, not voice "
                 f"(voice queues: {voice or 'none'})")
            )
    topic = node.topic if isinstance(node, RouteNode | CallbackRequestNode | InfoNode) else None
    if topic is not None:
        skill = cfg.skills.get(topic)
        if skill is None:
            problems.append(
                ((*here, "topic"), f"unknown skill {topic!r} (not in the skills catalogue)")
            )
        elif skill.kind == "language":
            problems.append(
                ((*here, "topic"), f"{topic!r} is a language skill: the caller's language "
                 "choice adds it, a topic names the matter")
            )
    return problems
