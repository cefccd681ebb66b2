"""`cityline agent ...` and `cityline queue ...`: agents and queues changed at run time.

The configuration file stays the base; a change is validated against the whole configuration
(the file given with --config, which must be the one the servers run) and written to Redis as
an overlay (router/directory.py). Every running `cityline serve` / `dispatch` applies it within
a second, without a restart. `set` changes only what its options name: the rest of the agent
or queue stays as it is (a new one starts from the defaults). `reset` drops the admins' change
(or removal) of one agent or queue so the file's definition applies again; one the file does
not define is removed by it (the output says so).

Exit codes like the user commands: 0 done, 1 refused by the state (a signed-in agent, a queue
still in use, no such agent), 2 wrong input (the change does not validate).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.cli_admin import _add_admin_options, _admin_command, _print_table
from router.cli_admin_session import AdminError, AdminSession, run_admin

if TYPE_CHECKING:
    from router.config import CitylineConfig
    from router.directory import Directory

CHANNELS = ("voice", "chat", "sms", "email", "telegram", "webform")
STRATEGIES = ("longest_idle", "least_occupied", "best_skilled", "round_robin")


def _pair(kind: str, value_type: type) -> Any:
    def parse(text: str) -> tuple[str, Any]:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected {kind}=VALUE, got {text!r}")
        try:
            return name.strip(), value_type(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number in {text!r}") from None

    return parse


def _service_level(text: str) -> dict[str, float]:
    pct, sep, secs = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return {"target_pct": float(pct), "threshold_s": float(secs)}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected PERCENT/SECONDS, e.g. 90/15, got {text!r}"
        ) from None


def _seconds_or_none(text: str) -> float | None:
    if text.lower() in ("none", "null", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


# --- the parsers --------------------------------------------------------------------------------


def add_directory_commands(commands: Any) -> None:
    """Add `agent` and `queue` to the subparsers of `cityline`."""
    _add_agent_commands(commands)
    _add_queue_commands(commands)


def _add_skill_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--skill", action="append", default=[], type=_pair("SKILL", int),
                        metavar="SKILL=LEVEL", help=f"{what} (level 1..10; repeat)")
    parser.add_argument("--remove-skill", action="append", default=[], metavar="SKILL",
                        help="drop this skill (repeat)")
    parser.add_argument("--only-skills", action="store_true",
                        help="the --skill options are all the skills (the others go)")


def _add_agent_commands(commands: Any) -> None:
    agent = commands.add_parser(
        "agent", help="list, add, change and remove agents (applies without a restart)",
        description="Manage agents at run time: skills with levels, capacity per channel, "
        "first or second line. Changes are validated against --config and stored in Redis "
        "over the file's agents; running servers apply them within a second.",
    )  # fmt: skip
    actions = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    set_ = actions.add_parser(
        "set", help="add an agent or change one",
        description="Add an agent (--name needed) or change the options given; the rest stays.",
    )  # fmt: skip
    set_.add_argument("id", metavar="ID")
    set_.add_argument("--name", help="full name shown to supervisors and colleagues")
    _add_skill_options(set_, "skill and level")
    set_.add_argument("--capacity", action="append", default=[], type=_pair("CHANNEL", int),
                      metavar="CHANNEL=N", help="interactions at once on a channel (repeat)")
    set_.add_argument("--line", choices=("first", "second"))
    set_.add_argument("--endpoint", help='voice endpoint, e.g. PJSIP/1001 ("" for none)')
    _add_admin_options(set_)
    set_.set_defaults(func=cmd_agent_set)
    _add_list_and_remove(
        actions, "the agents as configured now", cmd_agent_list,
        "remove an agent (refused while signed in or linked to a user)", "ID", cmd_agent_remove,
    )  # fmt: skip
    _add_reset(actions, "agent", "ID", cmd_agent_reset)


def _add_queue_commands(commands: Any) -> None:
    queue = commands.add_parser(
        "queue", help="list, add, change and remove queues (applies without a restart)",
        description="Manage queues at run time. Changes are validated against --config and "
        "stored in Redis over the file's queues; running servers apply them within a second.",
    )  # fmt: skip
    actions = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    set_ = actions.add_parser(
        "set", help="add a queue or change one",
        description="Add a queue (--channel and --service-level needed) or change the options "
        "given; the rest stays. --from-json FILE (or -) gives the whole queue as JSON, the "
        "shape of a queue in the YAML file (escalation steps included).",
    )  # fmt: skip
    set_.add_argument("name", metavar="NAME")
    set_.add_argument("--from-json", metavar="FILE", help="the whole queue as JSON (- = stdin)")
    set_.add_argument("--channel", choices=CHANNELS)
    _add_skill_options(set_, "required skill and minimum level")
    set_.add_argument("--priority", type=int, help="0..100, higher first")
    set_.add_argument("--strategy", choices=STRATEGIES)
    set_.add_argument("--service-level", "--sl", type=_service_level, metavar="PCT/SECONDS",
                      help="service-level target, e.g. 90/15")
    set_.add_argument("--abandon-target", type=float, metavar="PCT")
    set_.add_argument("--max-wait", type=_seconds_or_none, metavar="SECONDS",
                      default=argparse.SUPPRESS, help="longest wait (none = no limit)")
    set_.add_argument("--overflow", metavar="QUEUE", help="queue at max wait (none = leave)")
    set_.add_argument("--offer-timeout", type=float, metavar="SECONDS")
    set_.add_argument("--wrapup", type=float, metavar="SECONDS")
    set_.add_argument("--label", action="append", default=[], type=_pair("LANG", str),
                      metavar="LANG=TEXT", help="display name in a language (repeat)")
    _add_admin_options(set_)
    set_.set_defaults(func=cmd_queue_set)
    _add_list_and_remove(
        actions, "the queues as configured now", cmd_queue_list,
        "remove a queue (refused while in use)", "NAME", cmd_queue_remove,
    )  # fmt: skip
    _add_reset(actions, "queue", "NAME", cmd_queue_reset)


def _add_list_and_remove(
    actions: Any, list_help: str, list_func: Any, remove_help: str, key: str, remove_func: Any
) -> None:
    """The `list` (text or JSON) and `remove KEY` actions of `agent` and `queue`."""
    listing = actions.add_parser("list", help=list_help)
    listing.add_argument("--format", choices=("text", "json"), default="text")
    _add_admin_options(listing)
    listing.set_defaults(func=list_func)
    remove = actions.add_parser("remove", help=remove_help)
    remove.add_argument(key.lower(), metavar=key)
    _add_admin_options(remove)
    remove.set_defaults(func=remove_func)


def _add_reset(actions: Any, kind: str, key: str, func: Any) -> None:
    reset = actions.add_parser(
        "reset", help=f"back to the configuration file's definition of the {kind}",
        description=f"Drop the admins' change (or removal) of the {kind}: the configuration "
        f"file's definition applies again in every running process. A {kind} the file does not "
        "define (added by an admin) is removed. Validated like any change.",
    )  # fmt: skip
    reset.add_argument(key.lower(), metavar=key)
    _add_admin_options(reset)
    reset.set_defaults(func=func)


# --- shared -------------------------------------------------------------------------------------


async def _directory(admin: AdminSession) -> Directory:
    from router.directory import Directory

    directory = Directory(admin.redis, admin.keys, admin.config)
    await directory.refresh(force=True)
    return directory


def _skills(current: dict[str, int], args: argparse.Namespace) -> dict[str, int]:
    skills = {} if args.only_skills else dict(current)
    for name in args.remove_skill:
        skills.pop(name, None)
    skills.update(dict(args.skill))
    return skills


def _by() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _skills_text(skills: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in skills.items()) or "-"


def _reset_text(kind: str, name: str, result: str, version: int) -> str:
    if result == "removed":
        return (f"{kind} {name} removed (version {version}): the configuration file does not "
                "define it, so resetting it removes it")  # fmt: skip
    return f"{kind} {name} reset to the configuration file's definition (version {version})"


def _removed_note(kind: str, names: list[str]) -> None:
    if names:
        print(f"removed by an admin from the file's {kind}s: {', '.join(names)} "
              f"(`cityline {kind} reset NAME` brings one back)")  # fmt: skip


# --- agent --------------------------------------------------------------------------------------


@_admin_command
def cmd_agent_set(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.directory import check_agent_id, parse_agent

    agent_id = check_agent_id(args.id)

    async def change(admin: AdminSession) -> str:
        directory = await _directory(admin)
        current = directory.cfg.agents.get(agent_id)
        data: dict[str, Any] = current.model_dump(mode="json") if current else {}
        if current is None and args.name is None:
            raise AdminError(f"no agent {agent_id!r} yet: give --name to add one", 2)
        if args.name is not None:
            data["name"] = args.name
        data["skills"] = _skills(data.get("skills", {}), args)
        data["capacity"] = {**data.get("capacity", {}), **dict(args.capacity)}
        if args.line is not None:
            data["line"] = args.line
        if args.endpoint is not None:
            data["endpoint"] = args.endpoint
        agent = parse_agent(data)
        version = await directory.set_agent(agent_id, agent, by=_by())
        verb = "changed" if current is not None else "added"
        return (f"agent {agent_id} {verb} (version {version}): {_skills_text(agent.skills)}; "
                f"line {agent.line}")  # fmt: skip

    print(run_admin(args, config, change))
    return 0


@_admin_command
def cmd_agent_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def read(admin: AdminSession) -> tuple[Directory, dict[str, str]]:
        directory = await _directory(admin)
        states = {}
        for agent_id in directory.cfg.agents:
            states[agent_id] = await admin.redis.hget(admin.keys.agent(agent_id), "state")
        return directory, states

    directory, states = run_admin(args, config, read)
    agents = directory.cfg.agents
    if args.format == "json":
        doc = {"version": directory.version, "agents": [
            {"id": a, "origin": directory.origin("agent", a), "state": states[a] or "offline",
             "config": agent.model_dump(mode="json")} for a, agent in agents.items()],
            "removed": directory.removed("agent")}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    rows = [
        (a, agent.name, agent.line, _skills_text(agent.skills),
         " ".join(f"{ch}={n}" for ch, n in agent.capacity.items()),
         states[a] or "offline", directory.origin("agent", a))
        for a, agent in agents.items()
    ]  # fmt: skip
    _print_table(("ID", "NAME", "LINE", "SKILLS", "CAPACITY", "STATE", "ORIGIN"), rows)
    _removed_note("agent", directory.removed("agent"))
    return 0


@_admin_command
def cmd_agent_remove(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def remove(admin: AdminSession) -> int:
        directory = await _directory(admin)
        return await directory.remove_agent(args.id, by=_by())

    version = run_admin(args, config, remove)
    print(f"agent {args.id} removed (version {version})")
    return 0


@_admin_command
def cmd_agent_reset(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def reset(admin: AdminSession) -> tuple[str, int]:
        directory = await _directory(admin)
        done = await directory.reset_agent(args.id, by=_by())
        return done.result, done.version

    result, version = run_admin(args, config, reset)
    print(_reset_text("agent", args.id, result, version))
    return 0


# --- queue --------------------------------------------------------------------------------------


def _read_json(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read the queue from {source}: {exc}", 2) from None
    if not isinstance(data, dict):
        raise AdminError("the queue must be a JSON object", 2)
    return data


@_admin_command
def cmd_queue_set(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.directory import check_queue_name, parse_queue

    name = check_queue_name(args.name)
    whole = _read_json(args.from_json) if args.from_json else None

    async def change(admin: AdminSession) -> str:
        directory = await _directory(admin)
        current = directory.cfg.queues.get(name)
        if whole is not None:
            data = dict(whole)
        else:
            data = current.model_dump(mode="json", exclude_unset=True) if current else {}
        if current is None and whole is None and (args.channel is None
                                                  or args.service_level is None):
            raise AdminError(
                f"no queue {name!r} yet: give --channel and --service-level to add one", 2
            )
        options = {
            "channel": args.channel, "priority": args.priority, "strategy": args.strategy,
            "service_level": args.service_level, "abandon_target_pct": args.abandon_target,
            "offer_timeout_s": args.offer_timeout, "wrapup_s": args.wrapup,
        }  # fmt: skip
        data.update({k: v for k, v in options.items() if v is not None})
        if hasattr(args, "max_wait"):  # given, maybe as none
            data["max_wait_s"] = args.max_wait
        if args.overflow is not None:
            data["overflow"] = None if args.overflow.lower() in ("none", "-") else args.overflow
        if args.skill or args.remove_skill or args.only_skills:
            data["skills"] = _skills(data.get("skills", {}), args)
        if args.label:
            data["labels"] = {**data.get("labels", {}), **dict(args.label)}
        queue = parse_queue(data)
        version = await directory.set_queue(name, queue, by=_by())
        verb = "changed" if current is not None else "added"
        sl = queue.service_level
        return (f"queue {name} {verb} (version {version}): {queue.channel.value}, "
                f"{_skills_text(queue.skills)}, {sl.target_pct:g}% in {sl.threshold_s:g} s")

    print(run_admin(args, config, change))
    return 0


@_admin_command
def cmd_queue_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def read(admin: AdminSession) -> Directory:
        return await _directory(admin)

    directory = run_admin(args, config, read)
    queues = directory.cfg.queues
    if args.format == "json":
        doc = {"version": directory.version, "queues": [
            {"name": n, "origin": directory.origin("queue", n),
             "config": q.model_dump(mode="json")} for n, q in queues.items()],
            "removed": directory.removed("queue")}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    rows = [
        (n, q.channel.value, _skills_text(q.skills), str(q.priority), q.strategy,
         f"{q.service_level.target_pct:g}%/{q.service_level.threshold_s:g}s",
         f"{q.offer_timeout_s:g}", f"{q.wrapup_s:g}", directory.origin("queue", n))
        for n, q in queues.items()
    ]  # fmt: skip
    _print_table(("NAME", "CHANNEL", "SKILLS", "PRIO", "STRATEGY", "SL", "OFFER_S", "WRAPUP_S",
                  "ORIGIN"), rows)  # fmt: skip
    _removed_note("queue", directory.removed("queue"))
    return 0


@_admin_command
def cmd_queue_remove(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def remove(admin: AdminSession) -> int:
        directory = await _directory(admin)
        return await directory.remove_queue(args.name, by=_by())

    version = run_admin(args, config, remove)
    print(f"queue {args.name} removed (version {version})")
    return 0


@_admin_command
def cmd_queue_reset(args: argparse.Namespace, config: CitylineConfig) -> int:
    async def reset(admin: AdminSession) -> tuple[str, int]:
        directory = await _directory(admin)
        done = await directory.reset_queue(args.name, by=_by())
        return done.result, done.version

    result, version = run_admin(args, config, reset)
    print(_reset_text("queue", args.name, result, version))
    return 0
