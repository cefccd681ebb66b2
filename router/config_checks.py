"""Checks across sections: every reference from one part of the configuration to another resolves.

Skills named by queues, agents and languages are in the catalogue; skill labels and language
keys match the city languages; routing.miss_pause_reason is a reason code; overflow and move
targets are other queues of the same channel; agent endpoints are unique; users name existing
agents, each agent at most once. `reference_problems` takes the sections one by one so that it
also works on the salvaged parts of a broken configuration (`router.config_salvage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from router.config_catalogue import AgentConfig, QueueConfig, ReasonCode, SkillConfig, UserConfig
from router.config_issues import Loc
from router.config_sections import RoutingConfig


def _missing_languages(labels: Mapping[str, str], languages: Iterable[str]) -> list[str]:
    return [lang for lang in languages if lang not in labels]


def reference_problems(
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
