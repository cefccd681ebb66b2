"""The `cityline` command: its parser and entry point, `serve`, `dispatch` and `check-config`.

`stats` and `export` are written in router/stats_cli.py, `user` and `token` in
router/cli_admin.py. The command-line modules alone configure logging handlers and own the event
loop (`asyncio.run`); this one installs the SIGINT/SIGTERM handlers of `serve` and `dispatch`,
whose components are all built by the composition root, router/main.py.
Exit codes: 0 success, 1 failure (a component died, start failed, config has issues),
2 usage or configuration error, 130/143 forced stop by a second signal.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.cli_admin import USER_ROLES as USER_ROLES
from router.cli_admin import add_admin_commands
from router.cli_common import add_config_options, add_log_level, config_or_exit, error, plural
from router.cli_common import format_issue as format_issue
from router.cli_common import load_config_for as load_config_for
from router.cli_directory import add_directory_commands
from router.logging_setup import configure_logging

if TYPE_CHECKING:
    from router.config import CitylineConfig

logger = logging.getLogger("router.cli")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {value}")
    return value


def _add_period_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--day", metavar="DAY", help="YYYY-MM-DD, today or yesterday (city time; default today)"
    )
    parser.add_argument("--since", metavar="TIME", help="start, ISO date/time in city time")
    parser.add_argument("--until", metavar="TIME", help="end, ISO date/time in city time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityline",
        description="Omnichannel contact routing for city halls: skill queues in Redis.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run everything: HTTP API, dispatcher, statistics (embedded Redis by default)",
        description="Run cityline. Without a Redis URL it starts its own redis-server "
        "under DATA_DIR/redis.",
    )
    add_config_options(serve)
    serve.add_argument("--host", help="address to listen on (overrides http.host)")
    serve.add_argument("--port", type=_port, help="port to listen on, 0 = any free one")
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (overrides data_dir)")
    add_log_level(serve)
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Print every problem as FILE:LINE: field: message; exit 1 if there is any.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--flows",
        metavar="DIR",
        help="IVR flows to check against the configuration (default: the packaged ivr_flows/)",
    )
    check.set_defaults(func=cmd_check_config)

    check_kb = commands.add_parser(
        "check-knowledge",
        help="validate knowledge cards against a configuration",
        description="Print every problem of the card files as FILE:LINE: field: message; exit 1 "
        "if there is any, else OK with the number of cards and topics.",
    )
    check_kb.add_argument(
        "dir", metavar="DIR", nargs="?",
        help="directory of card files (default: knowledge.dir, else the packaged cards)",
    )  # fmt: skip
    check_kb.add_argument(
        "--config", metavar="FILE",
        help="configuration the cards refer to (default: the packaged one)",
    )  # fmt: skip
    check_kb.set_defaults(func=cmd_check_knowledge)

    dispatch = commands.add_parser(
        "dispatch",
        help="run one more dispatcher on a shared Redis (scale-out), without HTTP",
    )
    add_config_options(dispatch)
    add_log_level(dispatch)
    dispatch.set_defaults(func=cmd_dispatch)

    stats = commands.add_parser(
        "stats",
        help="print queue, channel and agent statistics",
        description="Service level, ASA, abandonment... for a city day (default today) or a "
        "period, read from the aggregates in Redis (needs REDIS_URL or --redis-url).",
    )
    add_config_options(stats)
    _add_period_options(stats)
    stats.add_argument("--queue", action="append", metavar="NAME", help="only this queue (repeat)")
    stats.add_argument(
        "--by",
        choices=("queue", "channel", "agent", "interval"),
        default="queue",
        help="grouping (default queue; interval = per 15 minutes)",
    )
    stats.add_argument("--agents", action="store_true", help="add the per-agent table")
    stats.add_argument("--format", choices=("text", "json"), default="text")
    stats.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    add_log_level(stats, "warning")
    stats.set_defaults(func=cmd_stats)

    export = commands.add_parser("export", help="export data in other tools' formats")
    exports = export.add_subparsers(dest="export_kind", metavar="KIND", required=True)
    queue_log = exports.add_parser(
        "queue-log",
        help="the event stream as an Asterisk queue_log file",
        description="Write the events of a city day (default today, `--day all` for all) or a "
        "period in Asterisk's queue_log format.",
    )
    add_config_options(queue_log)
    _add_period_options(queue_log)
    queue_log.add_argument(
        "--asterisk-only",
        action="store_true",
        help="only the verbs Asterisk itself writes (leave out OFFER, CASECREATED...)",
    )
    queue_log.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    add_log_level(queue_log, "warning")
    queue_log.set_defaults(func=cmd_export_queue_log)
    add_admin_commands(commands)
    add_directory_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `cityline`: show what it can do
        parser.print_help(sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


# --- serve / dispatch: the event loop and the signals -------------------------------------------


def _install_signal_handlers(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM: graceful stop. A second one: exit at once.

    The forced exit still takes the embedded redis-server along: it was started with a
    parent-death signal, so it gets SIGTERM and flushes its AOF.
    """
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("%s again: exiting now without a graceful stop", name)
            logging.shutdown()
            os._exit(128 + signum)
        logger.info("%s: stopping gracefully (send it again to exit at once)", name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


async def _serve(config: CitylineConfig, redis_url: str | None) -> int:
    from router.main import Cityline

    stop = asyncio.Event()
    _install_signal_handlers(stop)
    async with Cityline(config, redis_url=redis_url) as city:
        return await city.run_until(stop)


async def _dispatch(config: CitylineConfig, redis_url: str | None) -> int:
    from router.main import run_dispatcher_only

    stop = asyncio.Event()
    _install_signal_handlers(stop)
    return await run_dispatcher_only(config, stop, redis_url=redis_url)


def _run_server(main_coro: Callable[[], Any]) -> int:
    from router.main import StartupError

    try:
        return asyncio.run(main_coro())
    except StartupError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:  # a SIGINT before the handlers were installed
        return 130
    except Exception:
        logger.critical("cityline failed", exc_info=True)
        return 1


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = config_or_exit(args)
    if isinstance(config, int):
        return config
    return _run_server(lambda: _serve(config, args.redis_url))


def cmd_dispatch(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = config_or_exit(args)
    if isinstance(config, int):
        return config
    return _run_server(lambda: _dispatch(config, args.redis_url))


# --- check-config -------------------------------------------------------------------------------


def _count(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def summarize(config: Any) -> str:
    """`3 queues, 12 agents, 7 skills`, read from whatever the config declares."""
    queues = getattr(config, "queues", None) or ()
    agents = getattr(config, "agents", None) or ()
    skills = getattr(config, "skills", None)
    if skills is None:
        # No separate catalogue: count the distinct skills agents have and queues require.
        names: set[str] = set()
        items = agents.values() if isinstance(agents, dict) else agents
        for agent in items:
            names.update(getattr(agent, "skills", None) or ())
        qitems = queues.values() if isinstance(queues, dict) else queues
        for queue in qitems:
            names.update(getattr(queue, "skills", None) or ())
        skills = names
    return ", ".join(
        plural(_count(items), noun)
        for items, noun in ((queues, "queue"), (agents, "agent"), (skills, "skill"))
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    configure_logging("warning")
    try:
        from router.config import ConfigError, check_config_file, load_config
    except ImportError as exc:
        error(f"configuration checking is not available in this build: {exc}")
        return 2
    path = args.file
    if not Path(path).is_file():
        print(f"{path}: cannot read: no such file")
        return 1
    issues = check_config_file(path)
    for issue in issues:
        print(format_issue(path, issue))
    if issues:
        print(f"{plural(len(issues), 'problem')} in {path}", file=sys.stderr)
        return 1
    try:
        config = load_config(path)
    except ConfigError as exc:  # cannot happen after a clean check; kept for a clear message
        for issue in exc.errors:
            print(format_issue(path, issue))
        return 1
    print(f"OK {path}: {summarize(config)}")
    return _check_ivr_flows(config, args)


def cmd_check_knowledge(args: argparse.Namespace) -> int:
    """The knowledge cards of DIR (written in router/knowledge.py), against --config."""
    configure_logging("warning")
    from router.knowledge import check_knowledge_dir, format_issue, knowledge_dir

    config = config_or_exit(args)
    if isinstance(config, int):
        return config
    directory = Path(args.dir) if args.dir else knowledge_dir(config)
    cards, problems = check_knowledge_dir(directory, config)
    for path, issue in problems:
        print(format_issue(path, issue))
    if problems:
        print(f"{plural(len(problems), 'problem')} in {directory}", file=sys.stderr)
        return 1
    topics = {card.topic for card in cards}
    print(f"OK {directory}: {plural(len(cards), 'card')} on {plural(len(topics), 'topic')}")
    return 0


def _check_ivr_flows(config: CitylineConfig, args: argparse.Namespace) -> int:
    """The IVR flows, after the configuration they refer to (written in router/ivr_check.py)."""
    from router.ivr_check import check_flows

    return check_flows(config, getattr(args, "flows", None))


# --- stats / export: written in router/stats_cli.py ---------------------------------------------


def _run_stats_cli(command: str, function_name: str, args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        from router import stats_cli
    except ImportError as exc:
        error(f"`cityline {command}` is not available in this installation ({exc})")
        return 2
    function = getattr(stats_cli, function_name, None)
    if function is None:
        error(f"`cityline {command}` is not available: router.stats_cli has no {function_name}")
        return 2
    result = function(args)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        result = asyncio.run(wait())
    return int(result or 0)


def cmd_stats(args: argparse.Namespace) -> int:
    return _run_stats_cli("stats", "stats_command", args)


def cmd_export_queue_log(args: argparse.Namespace) -> int:
    return _run_stats_cli("export queue-log", "export_queue_log_command", args)


if __name__ == "__main__":
    sys.exit(main())
