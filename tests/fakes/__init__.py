"""Protocol-level fakes of the peers cityline talks to (Asterisk AMI and FastAGI)."""

from tests.fakes.ami_server import FakeAsterisk
from tests.fakes.calls import AgentHandle, CallerHandle

__all__ = ["AgentHandle", "CallerHandle", "FakeAsterisk"]
