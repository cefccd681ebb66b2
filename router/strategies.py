"""Which of the eligible agents gets the interaction: the queue's strategy.

Each strategy orders candidates by a key; ties always fall back to longest idle, then agent id,
so every decision is deterministic for the same state (which the tests rely on).
"""

from __future__ import annotations

from collections.abc import Sequence

from queues.snapshot import AgentView, Head

STRATEGIES = ("longest_idle", "least_occupied", "best_skilled", "round_robin")


class RoundRobin:
    """Per-queue rotation through agent ids, remembered by this dispatcher process.

    With several dispatchers each keeps its own cursor; the rotation is then per process, which
    still spreads work evenly, and it needs no extra Redis round trip per decision.
    """

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def pick(self, queue: str, candidates: Sequence[AgentView]) -> AgentView:
        ordered = sorted(candidates, key=lambda a: a.id)
        last = self.last.get(queue)
        chosen = next((a for a in ordered if last is None or a.id > last), ordered[0])
        self.last[queue] = chosen.id
        return chosen


def choose(
    strategy: str, head: Head, candidates: Sequence[AgentView], rr: RoundRobin
) -> AgentView:
    channel = head.placement.channel
    if strategy == "round_robin":
        return rr.pick(head.placement.queue, candidates)
    if strategy == "least_occupied":
        return min(candidates, key=lambda a: (a.occupancy(channel), a.idle_since, a.id))
    if strategy == "best_skilled":
        need = head.placement.skills

        def skill_score(a: AgentView) -> tuple[int, float, str]:
            return (-sum(a.skills.get(s, 0) for s in need), a.idle_since, a.id)

        return min(candidates, key=skill_score)
    return min(candidates, key=lambda a: (a.idle_since, a.id))
