"""Request and response bodies of the admin API (/api/v1/admin/...).

An agent or a queue is written with the configuration's own models (`AgentConfig`,
`QueueConfig`: the body of `PUT /admin/agents/{agent_id}` is exactly what the YAML file has
under `agents.<id>`), so the API and the file cannot disagree about what is valid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from router.auth import MAX_PASSWORD_LENGTH
from router.config import AgentConfig, QueueConfig
from router.config_issues import Loc
from router.http.api.schemas import _Request

ORIGIN_TEXT = (
    "file: as the configuration file defines it; changed: the file's, changed by an admin; "
    "added: added by an admin"
)
ROLES = Literal["agent", "supervisor", "admin", "intake"]


class QueueBody(QueueConfig):
    """A queue as PUT takes it: `QueueConfig`. Its checks across fields (escalation steps in
    time order...) run in the handler, so each problem is reported at its own field."""

    def _own_problems(self) -> list[tuple[Loc, str]]:
        return []


class AdminAgent(BaseModel):
    id: str
    origin: Literal["file", "changed", "added"] = Field(description=ORIGIN_TEXT)
    state: str = Field(description="offline, ready, not_ready (signed-in agents cannot be removed)")
    config: AgentConfig = Field(description="the agent as PUT takes it")


class AdminAgentList(BaseModel):
    version: int = Field(description="directory version: moves with every admin change")
    agents: list[AdminAgent]
    removed: list[str] = Field(
        default_factory=list,
        description="the configuration file's agents an admin removed (a reset brings one back)",
    )


class AdminQueue(BaseModel):
    name: str
    origin: Literal["file", "changed", "added"] = Field(description=ORIGIN_TEXT)
    waiting: int = Field(description="interactions waiting in the queue now")
    config: QueueConfig = Field(description="the queue as PUT takes it")


class AdminQueueList(BaseModel):
    version: int = Field(description="directory version: moves with every admin change")
    queues: list[AdminQueue]
    removed: list[str] = Field(
        default_factory=list,
        description="the configuration file's queues an admin removed (a reset brings one back)",
    )


class Removed(BaseModel):
    removed: str
    version: int = Field(description="directory version after the change")


class ResetDone(BaseModel):
    reset: str = Field(description="the agent id or queue name")
    result: Literal["restored", "removed"] = Field(
        description="restored: the configuration file's definition applies again; removed: "
        "the file has none (only admins had added it), so the reset removed it"
    )
    version: int = Field(description="directory version after the change")


class AdminUser(BaseModel):
    username: str
    role: str
    agent_id: str | None = None
    has_password: bool
    created_ms: int
    configured: bool = Field(
        description="declared in the configuration file: its role and agent are set again "
        "from the file at the next start"
    )
    locked_out: bool = Field(description="too many failed logins right now")


class AdminUserList(BaseModel):
    users: list[AdminUser]


class UserCreateRequest(_Request):
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    role: ROLES
    agent_id: str | None = Field(None, max_length=64, description="required for role agent")
    password: SecretStr | None = Field(
        None, max_length=MAX_PASSWORD_LENGTH,
        description="initial password (at least 8 characters); none: the user cannot log in "
        "until one is set (e.g. an intake account that uses tokens)",
    )  # fmt: skip


class UserUpdateRequest(_Request):
    role: ROLES | None = Field(None, description="new role (takes effect at the next request)")
    agent_id: str | None = Field(
        None, max_length=64, description="agent the user works as (role agent); \"\" unlinks"
    )
    password: SecretStr | None = Field(
        None, max_length=MAX_PASSWORD_LENGTH,
        description="new password; ends every session of the user",
    )  # fmt: skip


class UserRemoved(BaseModel):
    removed: str
    tokens_revoked: bool = True


class Unlocked(BaseModel):
    username: str
    unlocked: bool = Field(description="false when the user was not locked out")
