"""app_queue as far as cityline meets it: static members whose device state AMI reports.

cityline does not use app_queue, but the capture Asterisk had a queue ``cityq`` with the members
``Local/agent1@agents/n`` and ``Local/agent2@agents/n`` (capture-config/queues.conf), so a call
to agent1 also produces ``QueueMemberStatus`` and ``DeviceStateChange Queue:cityq_avail``
(originate-callback.txt), and ``QueueStatus`` lists the queue (surprises 6, 7, 30).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import Pairs

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

# Device state -> member Status (AST_DEVICE_* numbers).
MEMBER_STATUS = {
    "UNKNOWN": 0,
    "NOT_INUSE": 1,
    "INUSE": 2,
    "BUSY": 3,
    "INVALID": 4,
    "UNAVAILABLE": 5,
    "RINGING": 6,
    "RINGINUSE": 7,
    "ONHOLD": 8,
}
CAPTURE_QUEUES = {
    "cityq": [("Agent1", "Local/agent1@agents/n"), ("Agent2", "Local/agent2@agents/n")]
}


@dataclass
class Member:
    name: str
    interface: str
    status: int = 1
    paused: bool = False
    paused_reason: str = ""

    @property
    def device(self) -> str:
        return self.interface.removesuffix("/n")


@dataclass
class Queue:
    name: str
    members: list[Member]
    strategy: str = "ringall"
    avail: str | None = None  # last Queue:<name>_avail state announced


class QueueModel:
    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx
        self.queues: dict[str, Queue] = {}
        self.configure(CAPTURE_QUEUES)

    def configure(self, queues: dict[str, list[tuple[str, str]]]) -> None:
        self.queues = {
            name: Queue(name, [Member(member, iface) for member, iface in members])
            for name, members in queues.items()
        }

    def device_changed(self, device: str, state: str) -> None:
        for queue in self.queues.values():
            for member in queue.members:
                if member.device != device:
                    continue
                status = MEMBER_STATUS.get(state, 0)
                if status == member.status:
                    continue
                member.status = status
                self.pbx.emit("QueueMemberStatus", self._member_event(queue, member), "agent")
                avail = "NOT_INUSE" if any(self._free(m) for m in queue.members) else "INUSE"
                if avail != queue.avail:
                    queue.avail = avail
                    self.pbx.device_state(f"Queue:{queue.name}_avail", avail)

    @staticmethod
    def _free(member: Member) -> bool:
        return member.status == 1 and not member.paused

    def _member_event(self, queue: Queue, member: Member) -> Pairs:
        return [
            ("Queue", queue.name),
            ("MemberName", member.name),
            ("Interface", member.interface),
            ("StateInterface", member.interface),
            *self._member_common(member),
            ("Ringinuse", "0"),
            ("Wrapuptime", "0"),
        ]

    def _member_common(self, member: Member) -> Pairs:
        return [
            ("Membership", "static"),
            ("Penalty", "0"),
            ("CallsTaken", "0"),
            ("LastCall", "0"),
            ("LastPause", "0"),
            ("LoginTime", str(int(self.pbx.boot_time))),
            ("InCall", "0"),
            ("Status", str(member.status)),
            ("Paused", "1" if member.paused else "0"),
            ("PausedReason", member.paused_reason),
        ]

    def status_items(self, queue_name: str, member_name: str, action_id: str | None) -> list[Pairs]:
        """The QueueParams/QueueMember events of a QueueStatus (ActionID last, surprise 7)."""
        tail: Pairs = [("ActionID", action_id)] if action_id is not None else []
        items: list[Pairs] = []
        for queue in self.queues.values():
            if queue_name and queue.name != queue_name:
                continue
            items.append(
                [
                    ("Event", "QueueParams"),
                    ("Queue", queue.name),
                    ("Max", "0"),
                    ("Strategy", queue.strategy),
                    ("Calls", "0"),
                    ("Holdtime", "0"),
                    ("TalkTime", "0"),
                    ("Completed", "0"),
                    ("Abandoned", "0"),
                    ("ServiceLevel", "0"),
                    ("ServicelevelPerf", "0.0"),
                    ("ServicelevelPerf2", "0.0"),
                    ("Weight", "0"),
                    *tail,
                ]
            )
            for member in queue.members:
                if member_name and member_name not in (member.name, member.interface):
                    continue
                items.append(
                    [
                        ("Event", "QueueMember"),
                        ("Queue", queue.name),
                        ("Name", member.name),
                        ("Location", member.interface),
                        ("StateInterface", member.interface),
                        *self._member_common(member),
                        ("Wrapuptime", "0"),
                        *tail,
                    ]
                )
        return items
