"""Agents and queues managed at run time: the YAML file is the base, admins' changes an overlay.

An admin (web page, JSON API, `cityline agent|queue ...`) sets or removes one agent or queue at
a time. `Directory` validates the change by building the whole effective configuration (file +
overlay + this change) with the same models (`AgentConfig`, `QueueConfig`) and the same
cross-checks (`router.config_checks.reference_problems`) the YAML load uses, plus the channels'
own references to queues; a change with problems is refused with every problem at its field
and nothing is written. A valid change is written to Redis by one script
(`queues/lua/directory_change.lua`) that also bumps the directory version and appends a CONFIG
event; a change made by someone else meanwhile makes the script refuse, and the change is
validated again against the new state.

Every process applies changes without a restart: `DirectoryWatcher` polls the version (one GET
a second) and, when it moved, swaps the effective `agents` and `queues` into the one shared
`CitylineConfig` every component reads through (service, dispatcher, timers, statistics, the
wall, the desktop, the API), then writes every agent's routing profile
(`RoutingService.sync_agent_profiles`) so new skills and capacities route at once. The process
that made the change applies it before it answers.

What applies when: an agent's skills, capacity, line and endpoint at once (also for a signed-in
agent). A queue's service-level target, strategy, offer timeout, wrap-up and escalation at once;
its required skills and priority for interactions entering it from then on (those waiting keep
the placement they were queued with). Removing an agent is refused while the agent is signed
in or holds work, or while a user works as that agent; removing a queue while interactions wait
in it, another queue overflows or escalates to it, a channel hands its contacts to it, or an IVR
flow of the voice channel routes callers to it (changing a queue's channel away from voice is
refused for the same flows). The flows are those the voice adapter runs: with
``channels.voice.enabled``, every valid flow of ``channels.voice.flows_dir`` (else the packaged
`ivr_flows/`), parsed once by `router.ivr_load` and checked with `router.ivr_checks` against the
queues the change would leave. (The `cases:` block names units and skills, never a queue.)

Resetting an agent or a queue drops the admins' entry for it (a change or a removal), so the
file's definition applies again; it is validated like setting the file's definition (or, for an
entry only admins added, like removing it: a reset then removes it) and written by the same
script, with a CONFIG event whose action is ``reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import RedisError

from queues import errors as store_errors
from queues.directory import DirectoryStore, Overlay
from queues.keys import Keys
from queues.scripts import Scripts
from router.config import AgentConfig, AgentId, CitylineConfig, QueueConfig, QueueName
from router.config_checks import reference_problems
from router.config_issues import Loc, clean_loc
from router.errors import Conflict, NotFound, Unprocessable

if TYPE_CHECKING:
    from router.config_yaml import Document
    from router.ivr_flow import IvrFlow
    from router.service import RoutingService

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How often every process looks at the directory version (one GET).
POLL_S = 1.0
# A change refused as stale (someone else changed the directory meanwhile) is validated and
# tried again this many times before the caller gets a 409.
WRITE_ATTEMPTS = 5

Origin = Literal["file", "changed", "added"]
Action = Literal["set", "remove", "reset"]
_AGENT_ID = TypeAdapter(AgentId)
_QUEUE_NAME = TypeAdapter(QueueName)



def _merged(kind: str, base: Mapping[str, T], removed: Collection[str],
            overlaid: Mapping[str, Any], parse: Callable[[Any], T],
            skip: frozenset[tuple[str, str]], unusable: list[tuple[str, str]]) -> dict[str, T]:
    """The file's entries of one kind with the overlay's changes and removals applied (entries
    in `skip` keep the file's definition); an overlay entry the model refuses (the file changed
    under it) is left out and added to `unusable`."""
    out = {key: value for key, value in base.items()
           if key not in removed or (kind, key) in skip}
    for key, data in overlaid.items():
        if (kind, key) in skip:
            continue
        try:
            out[key] = parse(data)
        except ValidationError:
            unusable.append((kind, key))
    return out

class DirectoryInvalid(Unprocessable):
    """The change would make the configuration invalid; `problems` says where and why, each at
    a location relative to the changed entry (e.g. ``("skills", "taxes")``) when it is about
    that entry, else from the configuration's root (``("queues", "chat", "overflow")``)."""

    code = "validation_error"

    def __init__(self, message: str, problems: list[tuple[Loc, str]]) -> None:
        super().__init__(message)
        self.problems = problems

    def details(self) -> list[dict[str, Any]]:
        return [{"loc": list(loc), "msg": msg} for loc, msg in self.problems]


class InUse(Conflict):
    """Refused while something still needs the entry; `problems` lists what, each at its
    location from the configuration's root (empty for waiting interactions and users)."""

    code = "in_use"

    def __init__(self, message: str, problems: list[tuple[Loc, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def details(self) -> list[dict[str, Any]]:
        return [{"loc": list(loc), "msg": msg} for loc, msg in self.problems]


@dataclass(frozen=True)
class ResetResult:
    """What a reset did: `restored` the file's definition, or `removed` an entry that only
    admins had added (the file has none to go back to)."""

    version: int
    result: Literal["restored", "removed"]


def check_agent_id(agent_id: str) -> str:
    try:
        return _AGENT_ID.validate_python(agent_id)
    except ValidationError as exc:
        raise DirectoryInvalid("not a valid agent id", [(("id",), _first(exc))]) from None


def check_queue_name(name: str) -> str:
    try:
        return _QUEUE_NAME.validate_python(name)
    except ValidationError as exc:
        raise DirectoryInvalid("not a valid queue name", [(("name",), _first(exc))]) from None


def _first(exc: ValidationError) -> str:
    msg = str(exc.errors(include_url=False)[0]["msg"])
    return msg.removeprefix("Value error, ")


def validation_problems(exc: ValidationError) -> list[tuple[Loc, str]]:
    """A pydantic error of one entry as (location, message) pairs, the way the YAML loader
    reports them (the several problems of a model check each at its own place)."""
    from router.config_issues import Problems

    out: list[tuple[Loc, str]] = []
    for err in exc.errors(include_url=False):
        loc = clean_loc(err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, Problems):
            out.extend(((*loc, *sub), msg) for sub, msg in inner.problems)
        else:
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            out.append((loc, "required setting is missing" if err["type"] == "missing" else msg))
    return out


def _summary(what: str, problems: list[tuple[Loc, str]]) -> str:
    return f"{what}: " + "; ".join(
        f"{'.'.join(map(str, loc)) or '(whole)'}: {msg}" for loc, msg in problems
    )


def parse_agent(data: Mapping[str, Any]) -> AgentConfig:
    try:
        return AgentConfig.model_validate(dict(data))
    except ValidationError as exc:
        found = validation_problems(exc)
        raise DirectoryInvalid(_summary("the agent is not valid", found), found) from None


def parse_queue(data: Mapping[str, Any]) -> QueueConfig:
    try:
        return QueueConfig.model_validate(dict(data))
    except ValidationError as exc:
        found = validation_problems(exc)
        raise DirectoryInvalid(_summary("the queue is not valid", found), found) from None


def channel_queue_problems(
    cfg: CitylineConfig, queues: Mapping[str, QueueConfig]
) -> list[tuple[Loc, str]]:
    """Enabled channels hand their contacts to queues by name: each must exist and serve that
    channel (the YAML load leaves this to the adapters' start; a run-time change must not
    break a running channel)."""
    problems: list[tuple[Loc, str]] = []
    channels = cfg.channels
    named: list[tuple[Loc, str, str]] = []
    for ch in ("chat", "sms", "telegram", "webform"):
        block = getattr(channels, ch, None)
        if block is not None and getattr(block, "enabled", False) and getattr(block, "queue", ""):
            named.append((("channels", ch, "queue"), ch, block.queue))
    email = getattr(channels, "email", None)
    if email is not None and getattr(email, "enabled", False):
        for mailbox, queue in (getattr(email, "addresses", None) or {}).items():
            named.append((("channels", "email", "addresses", mailbox), "email", queue))
    for loc, ch, queue in named:
        q = queues.get(queue)
        if q is None:
            problems.append((loc, f"the {ch} channel hands its contacts to queue {queue!r}"))
        elif str(q.channel) != ch:
            message = (f"the {ch} channel hands its contacts to queue {queue!r}, which would "
                       f"serve {q.channel.value}")  # fmt: skip
            problems.append((loc, message))
    return problems


@dataclass(frozen=True)
class RunningFlow:
    """One IVR flow the voice adapter runs: its file name, its YAML (for line numbers)."""

    file: str
    doc: Document
    flow: IvrFlow


def running_flows(cfg: CitylineConfig) -> list[RunningFlow]:
    """The IVR flows the voice adapter of `cfg` runs (`channels.voice.factory`): none while
    voice is off; else the valid flows of ``channels.voice.flows_dir`` or the packaged ones.

    Parsed by the IVR loader without the configuration (its references are what the caller
    checks); a file that does not parse is left out: the voice adapter refuses to start with
    it, so it routes no caller.
    """
    voice = cfg.channels.voice
    if not voice.enabled:
        return []
    from router.config_yaml import Document
    from router.ivr_load import MAX_FLOW_BYTES, default_flows_dir, flow_files, parse_flow

    directory = Path(voice.flows_dir) if voice.flows_dir is not None else default_flows_dir()
    try:
        files = flow_files(directory)
    except OSError as exc:
        logger.warning("directory: cannot read the IVR flows in %s (%s): removing or changing "
                       "a voice queue is not checked against them", directory, exc)  # fmt: skip
        return []
    found: list[RunningFlow] = []
    for path in files:
        try:
            if path.stat().st_size > MAX_FLOW_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        flow, _issues = parse_flow(text)
        if flow is not None:
            found.append(RunningFlow(path.name, Document(text), flow))
    return found


FLOWS_LOC: Loc = ("channels", "voice", "flows")


def flow_queue_problems(
    flows: list[RunningFlow], cfg: CitylineConfig, queues: Mapping[str, QueueConfig]
) -> list[tuple[Loc, str]]:
    """The IVR flows' references to queues that `queues` would break (a queue gone, or no
    longer of the voice channel), by the IVR checks themselves (`router.ivr_checks`); each at
    ``channels.voice.flows.<flow>.nodes.<step>.queue``, naming the flow, the step, its file
    and line."""
    if not flows:
        return []
    from router.ivr_checks import flow_problems

    view = cfg.model_copy(update={"queues": dict(queues)})  # shallow: nothing re-validated
    problems: list[tuple[Loc, str]] = []
    for running in flows:
        flow = running.flow
        for loc, msg in flow_problems(flow, view):
            if len(loc) != 3 or loc[0] != "nodes" or loc[2] != "queue":
                continue  # languages and topics: not the directory's business
            step = str(loc[1])
            queue = getattr(flow.nodes.get(step), "queue", "?")
            line = running.doc.line_of(loc)
            where = f"{running.file}:{line}" if line is not None else running.file
            problems.append(
                ((*FLOWS_LOC, flow.name, *loc), f"IVR flow {flow.name!r}, step {step!r} "
                 f"({where}), sends callers to queue {queue!r}: {msg}")
            )
    return problems


class Directory:
    """The effective agents and queues of one process, and the admin changes to them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        cfg: CitylineConfig,
        *,
        scripts: Scripts | None = None,
        events_maxlen: int | None = None,
        service: RoutingService | None = None,
    ) -> None:
        self.cfg = cfg
        self.keys = keys
        self.service = service
        # the file's definitions, captured before any overlay is applied
        self.base_agents: dict[str, AgentConfig] = dict(cfg.agents)
        self.base_queues: dict[str, QueueConfig] = dict(cfg.queues)
        self.store = DirectoryStore(
            redis, keys, scripts,
            events_maxlen=events_maxlen if events_maxlen is not None
            else cfg.redis.events_maxlen,
        )  # fmt: skip
        self.version = 0  # the overlay version applied to cfg
        self.overlay = Overlay()
        self._lock = asyncio.Lock()
        self._flows: list[RunningFlow] | None = None

    @property
    def flows(self) -> list[RunningFlow]:
        """The IVR flows this configuration runs, read once (the voice adapter, too, reads
        them once, at the start)."""
        if self._flows is None:
            self._flows = running_flows(self.cfg)
        return self._flows

    # --- the effective configuration ----------------------------------------------------------

    def _effective(
        self, overlay: Overlay, skip: frozenset[tuple[str, str]] = frozenset()
    ) -> tuple[dict[str, AgentConfig], dict[str, QueueConfig], list[tuple[str, str]]]:
        """File + overlay (entries in `skip` keep the file's definition). Entries the models
        refuse (the file changed under them) are skipped and returned as unusable."""
        unusable: list[tuple[str, str]] = []
        agents = _merged("agent", self.base_agents, overlay.removed_agents, overlay.agents,
                         AgentConfig.model_validate, skip, unusable)
        queues = _merged("queue", self.base_queues, overlay.removed_queues, overlay.queues,
                         QueueConfig.model_validate, skip, unusable)
        return agents, queues, unusable

    def problems(
        self, agents: Mapping[str, AgentConfig], queues: Mapping[str, QueueConfig]
    ) -> list[tuple[Loc, str]]:
        """Every cross-reference problem of the configuration with these agents and queues."""
        cfg = self.cfg
        found = reference_problems(
            city_languages=cfg.city.languages,
            routing=cfg.routing,
            skills=cfg.skills,
            languages=cfg.languages,
            reason_codes=cfg.reason_codes,
            queues=queues,
            agents=agents,
            users=cfg.users,
        )
        return (found + channel_queue_problems(cfg, queues)
                + flow_queue_problems(self.flows, cfg, queues))  # fmt: skip

    def queue_named_at(self, loc: Loc) -> str | None:
        """The queue a channel or an IVR step names at `loc` (a problem's location), if any."""
        channels = self.cfg.channels
        if len(loc) == 7 and tuple(loc[:3]) == FLOWS_LOC:
            for running in self.flows:
                if running.flow.name == loc[3]:
                    return getattr(running.flow.nodes.get(str(loc[5])), "queue", None)
            return None
        if len(loc) == 3 and loc[0] == "channels" and loc[2] == "queue":
            return getattr(getattr(channels, str(loc[1]), None), "queue", None)
        if len(loc) == 4 and tuple(loc[:3]) == ("channels", "email", "addresses"):
            return (channels.email.addresses or {}).get(str(loc[3]))
        return None

    def _apply(self, agents: dict[str, AgentConfig], queues: dict[str, QueueConfig]) -> None:
        # Both at once, without an await in between, and without re-validating the whole model
        # on assignment (it was validated above): every component reads cfg.agents / cfg.queues
        # at the moment it needs them, so the next read sees the new ones.
        self.cfg.__dict__.update(agents=agents, queues=queues)

    async def refresh(self, *, force: bool = False) -> bool:
        """Apply the overlay in Redis when its version moved; True when something was applied.

        Entries that no longer fit (the file changed since an admin made them: a skill left
        the catalogue) are left out with an error in the log, never stop the process.
        """
        async with self._lock:
            if not force and await self.store.version() == self.version:
                return False
            overlay = await self.store.read()
            skip: frozenset[tuple[str, str]] = frozenset()
            agents, queues, unusable = self._effective(overlay)
            # only what the overlay adds counts: a file may name a queue no channel uses yet
            known = set(self.problems(self.base_agents, self.base_queues))
            for _ in range(10):
                problems = [p for p in self.problems(agents, queues) if p not in known]
                if not problems:
                    break
                bad = {
                    ("agent" if loc[0] == "agents" else "queue", str(loc[1]))
                    for loc, _msg in problems
                    if len(loc) > 1 and loc[0] in ("agents", "queues")
                }
                # a channel or an IVR step naming a queue the overlay removed or changed
                bad |= {
                    ("queue", named) for loc, _msg in problems
                    if (named := self.queue_named_at(loc)) is not None
                }
                bad &= {("agent", a) for a in overlay.agents} | {
                    ("queue", q) for q in overlay.queues
                } | {("agent", a) for a in overlay.removed_agents} | {
                    ("queue", q) for q in overlay.removed_queues
                }
                if not bad - skip:
                    logger.error(
                        "directory: version %d leaves problems (%s); keeping the file's "
                        "agents and queues", overlay.version,
                        "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems),
                    )  # fmt: skip
                    agents, queues = dict(self.base_agents), dict(self.base_queues)
                    break
                skip = skip | bad
                agents, queues, unusable = self._effective(overlay, skip)
            for kind, name in sorted({*unusable, *skip}):
                logger.error(
                    "directory: the admin's %s %r does not fit the configuration any more; "
                    "using the file's definition", kind, name,
                )  # fmt: skip
            self._apply(agents, queues)
            changed = overlay.version != self.version
            self.version = overlay.version
            self.overlay = overlay
        if changed:
            logger.info(
                "directory: version %d applied (%d agents, %d queues)",
                overlay.version, len(agents), len(queues),
            )  # fmt: skip
        if self.service is not None:
            await self.service.sync_agent_profiles()
        return True

    # --- what admins see ----------------------------------------------------------------------

    def origin(self, kind: Literal["agent", "queue"], name: str) -> Origin:
        changed = self.overlay.agents if kind == "agent" else self.overlay.queues
        base = self.base_agents if kind == "agent" else self.base_queues
        if name in changed:
            return "changed" if name in base else "added"
        return "file"

    def removed(self, kind: Literal["agent", "queue"]) -> list[str]:
        """The file's entries admins removed (a reset brings them back), in the file's order."""
        gone = self.overlay.removed_agents if kind == "agent" else self.overlay.removed_queues
        base = self.base_agents if kind == "agent" else self.base_queues
        return [name for name in base if name in gone]

    # --- changes ------------------------------------------------------------------------------

    async def _write(
        self,
        kind: Literal["agent", "queue"],
        action: Action,
        name: str,
        value: AgentConfig | QueueConfig | None,
        by: str,
    ) -> int:
        return (await self._write_result(kind, action, name, value, by)).version

    async def _write_result(
        self,
        kind: Literal["agent", "queue"],
        action: Action,
        name: str,
        value: AgentConfig | QueueConfig | None,
        by: str,
    ) -> ResetResult:
        base = self.base_agents if kind == "agent" else self.base_queues
        outcome: Literal["restored", "removed"] = "restored"
        for _ in range(WRITE_ATTEMPTS):
            overlay = await self.store.read()
            agents, queues, _unusable = self._effective(overlay)
            if action == "reset":
                # back to the file: validated like setting the file's definition, or, for an
                # entry only admins added, like removing it
                self._check_resettable(kind, name, overlay)
                if name in base:
                    outcome = "restored"
                    await self._check(kind, "set", name, base[name], agents, queues)
                else:
                    outcome = "removed"
                    await self._check(kind, "remove", name, None, agents, queues)
            else:
                await self._check(kind, action, name, value, agents, queues)
            try:
                version = await self.store.change(
                    kind, action, name,
                    expected_version=overlay.version,
                    value=value.model_dump(mode="json") if value is not None else None,
                    in_base=name in base,
                    by=by,
                )  # fmt: skip
            except store_errors.StaleError:
                continue  # someone else changed the directory: validate again on the new state
            except store_errors.BusyError as exc:
                raise Conflict(exc.detail, code="busy") from None
            logger.info("directory: %s %s %s by %s (version %d)", kind, name, action, by or "-",
                        version)  # fmt: skip
            await self.refresh(force=True)
            return ResetResult(version, outcome)
        raise Conflict("the directory keeps changing; try again", code="stale")

    def _check_resettable(
        self, kind: Literal["agent", "queue"], name: str, overlay: Overlay
    ) -> None:
        changed = overlay.agents if kind == "agent" else overlay.queues
        removed = overlay.removed_agents if kind == "agent" else overlay.removed_queues
        base = self.base_agents if kind == "agent" else self.base_queues
        if name in changed or (name in removed and name in base):
            return
        if name in base:
            raise Conflict(f"{kind} {name!r} has no admin change to reset: it is as the "
                           "configuration file defines it", code="not_changed")  # fmt: skip
        code = "unknown_agent" if kind == "agent" else "unknown_queue"
        raise NotFound(f"unknown {kind} {name!r}", code=code)

    async def _check(
        self,
        kind: Literal["agent", "queue"],
        action: Literal["set", "remove"],
        name: str,
        value: AgentConfig | QueueConfig | None,
        agents: dict[str, AgentConfig],
        queues: dict[str, QueueConfig],
    ) -> None:
        section = "agents" if kind == "agent" else "queues"
        current: Mapping[str, Any] = agents if kind == "agent" else queues
        # only the problems this change makes count (a file may have a channel's queue that
        # does not exist while the channel is not used, say)
        known = set(self.problems(agents, queues))
        if action == "remove":
            if name not in current:
                code = "unknown_agent" if kind == "agent" else "unknown_queue"
                raise NotFound(f"unknown {kind} {name!r}", code=code)
            if kind == "agent":
                agents = {k: v for k, v in agents.items() if k != name}
                await self._check_no_user(name)
            else:
                waiting = await self.store.waiting(name)
                if waiting:
                    raise InUse(f"{waiting} interaction(s) wait in queue {name!r}: move them "
                                "or let them be served first")  # fmt: skip
                queues = {k: v for k, v in queues.items() if k != name}
            problems = [p for p in self.problems(agents, queues) if p not in known]
            if problems:
                raise InUse(
                    f"{kind} {name!r} is still needed: "
                    + "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems),
                    problems,
                )
            return
        if kind == "agent":
            assert isinstance(value, AgentConfig)
            # the changed entry last, so a clash (a shared endpoint) is reported on it
            agents = {**{k: v for k, v in agents.items() if k != name}, name: value}
        else:
            assert isinstance(value, QueueConfig)
            old = queues.get(name)
            if old is not None and old.channel != value.channel:
                waiting = await self.store.waiting(name)
                if waiting:
                    raise InUse(
                        f"{waiting} interaction(s) of the {old.channel.value} channel wait in "
                        f"queue {name!r}: its channel cannot change now"
                    )
            queues = {**{k: v for k, v in queues.items() if k != name}, name: value}
        problems = [p for p in self.problems(agents, queues) if p not in known]
        if problems:
            own = (section, name)
            relative = [
                (loc[2:] if tuple(loc[:2]) == own else loc, msg) for loc, msg in problems
            ]
            raise DirectoryInvalid(
                f"the {kind} does not fit the configuration: "
                + "; ".join(f"{'.'.join(map(str, loc)) or kind}: {msg}" for loc, msg in relative),
                relative,
            )

    async def _check_no_user(self, agent_id: str) -> None:
        from router.users import list_users

        for user in await list_users(self.store.redis, self.keys):
            if user.agent_id == agent_id:
                raise InUse(
                    f"user {user.username!r} works as agent {agent_id!r}: remove the user or "
                    "link it to another agent first"
                )

    async def set_agent(self, agent_id: str, agent: AgentConfig, *, by: str = "") -> int:
        """Add or replace an agent; returns the new directory version."""
        check_agent_id(agent_id)
        return await self._write("agent", "set", agent_id, agent, by)

    async def remove_agent(self, agent_id: str, *, by: str = "") -> int:
        return await self._write("agent", "remove", agent_id, None, by)

    async def set_queue(self, name: str, queue: QueueConfig, *, by: str = "") -> int:
        check_queue_name(name)
        return await self._write("queue", "set", name, queue, by)

    async def remove_queue(self, name: str, *, by: str = "") -> int:
        return await self._write("queue", "remove", name, None, by)

    async def reset_agent(self, agent_id: str, *, by: str = "") -> ResetResult:
        """Drop the admins' change (or removal) of an agent: the file's definition applies
        again; an agent only admins added is removed (`result` says which)."""
        return await self._write_result("agent", "reset", agent_id, None, by)

    async def reset_queue(self, name: str, *, by: str = "") -> ResetResult:
        """Drop the admins' change (or removal) of a queue, like `reset_agent`."""
        return await self._write_result("queue", "reset", name, None, by)


class DirectoryWatcher:
    """The supervised loop that applies other processes' changes (see the module text)."""

    def __init__(self, directory: Directory, poll_s: float = POLL_S) -> None:
        self.directory = directory
        self.poll_s = poll_s

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("directory: watching for agent and queue changes (version %d)",
                    self.directory.version)  # fmt: skip
        failing = False
        while not stop.is_set():
            try:
                await self.directory.refresh()
                failing = False
            except (RedisError, OSError, store_errors.StoreError) as exc:
                if not failing:
                    logger.warning("directory: cannot read the changes (%s); retrying", exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)


# The Directory of a running service (the composition root registers it); API handlers in
# processes built without the composition root (tests, tools) get one made on first use.
_BY_SERVICE: weakref.WeakKeyDictionary[Any, Directory] = weakref.WeakKeyDictionary()


def attach(service: RoutingService, directory: Directory) -> None:
    _BY_SERVICE[service] = directory


def directory_of(service: RoutingService) -> Directory:
    found = _BY_SERVICE.get(service)
    if found is None:
        store = service.store
        found = Directory(store.redis, store.keys, service.cfg, scripts=store.scripts,
                          events_maxlen=store.events_maxlen, service=service)  # fmt: skip
        _BY_SERVICE[service] = found
    return found
