"""Turn the configuration into placements: which bucket an interaction waits in, now and after
each escalation step. Pure functions of the config, so the dispatcher and the API agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from queues.buckets import Placement
from router.config import CitylineConfig, EscalationStep


def merge_skills(*parts: Mapping[str, int]) -> dict[str, int]:
    """Union of requirements; where two parts name one skill, the stricter level wins."""
    merged: dict[str, int] = {}
    for part in parts:
        for skill, level in part.items():
            merged[skill] = max(int(level), merged.get(skill, 0))
    return merged


def extra_skills(cfg: CitylineConfig, language: str, topic: str | None) -> dict[str, int]:
    """Requirements that follow the resident, not the queue: their language and their topic."""
    extra: dict[str, int] = {}
    lang_skill = cfg.language_skill(language)
    if lang_skill:
        extra[lang_skill] = 1
    if topic:
        extra[topic] = 1
    return extra


def placement(
    cfg: CitylineConfig,
    queue: str,
    *,
    extra: Mapping[str, int],
    priority: int = 0,
    target_agent: str = "",
) -> Placement:
    q = cfg.queue(queue)
    return Placement(
        queue=queue,
        channel=str(q.channel),
        priority=priority,
        skills=merge_skills(q.skills, extra),
        target_agent=target_agent,
        queue_priority=q.priority,
    )


def escalation_after_ms(cfg: CitylineConfig, queue: str, step: int) -> int:
    """Delay from entering `queue` to its step `step`, 0 when there is no such step."""
    steps = cfg.queue(queue).escalation
    return int(steps[step].after_s * 1000) if step < len(steps) else 0


def max_wait_ms(cfg: CitylineConfig, queue: str) -> int:
    limit = cfg.queue(queue).max_wait_s
    return int(limit * 1000) if limit else 0


@dataclass(frozen=True)
class EscalationPlan:
    target: Placement
    # delays counted from entering the target queue (the Lua script knows when that was)
    next_escalation_after_ms: int
    max_wait_ms: int


def plan_escalation(cfg: CitylineConfig, ix: Mapping[str, str]) -> EscalationPlan | None:
    """What the interaction's next escalation step does, from its stored fields."""
    queue = ix["queue"]
    step_index = int(ix.get("esc_step") or 0)
    steps = cfg.queue(queue).escalation
    if step_index >= len(steps):
        return None
    step: EscalationStep = steps[step_index]
    skills = dict(json.loads(ix.get("skills") or "{}"))
    priority = int(ix.get("priority") or 0) + step.raise_priority
    for skill, level in step.lower_min_level.items():
        if skill in skills:
            skills[skill] = min(skills[skill], level)
    skills = merge_skills(skills, step.add_skills)
    if step.move_to_queue:
        extra = json.loads(ix.get("extra_skills") or "{}")
        new_queue = step.move_to_queue
        target = placement(cfg, new_queue, extra=merge_skills(extra, step.add_skills),
                           priority=priority, target_agent=ix.get("target_agent", ""))
        # the new queue's clock starts at the move and its steps from the first
        return EscalationPlan(target, escalation_after_ms(cfg, new_queue, 0),
                              max_wait_ms(cfg, new_queue))
    q = cfg.queue(queue)
    target = Placement(queue=queue, channel=str(q.channel), priority=priority, skills=skills,
                       target_agent=ix.get("target_agent", ""), queue_priority=q.priority)
    return EscalationPlan(target, escalation_after_ms(cfg, queue, step_index + 1),
                          max_wait_ms(cfg, queue))
