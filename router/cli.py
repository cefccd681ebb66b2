"""The `cityline` command.

This module alone configures logging handlers, owns the event loop (`asyncio.run`) and installs
the SIGINT/SIGTERM handlers; everything it runs is built by the composition root, router/main.py.
Exit codes: 0 success, 1 failure (a component died, start failed, config has issues),
2 usage or configuration error, 130/143 forced stop by a second signal.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.logging_setup import LEVELS, configure_logging

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from queues.keys import Keys
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


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration (default: the packaged one; CITYLINE_* variables override)",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use, e.g. redis://host:6379/0 (overrides REDIS_URL and redis.url)",
    )


def _add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    parser.add_argument("--log-level", choices=LEVELS, default=default, help=f"default {default}")


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
    _add_config_options(serve)
    serve.add_argument("--host", help="address to listen on (overrides http.host)")
    serve.add_argument("--port", type=_port, help="port to listen on, 0 = any free one")
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (overrides data_dir)")
    _add_log_level(serve)
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Print every problem as FILE:LINE: field: message; exit 1 if there is any.",
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    dispatch = commands.add_parser(
        "dispatch",
        help="run one more dispatcher on a shared Redis (scale-out), without HTTP",
    )
    _add_config_options(dispatch)
    _add_log_level(dispatch)
    dispatch.set_defaults(func=cmd_dispatch)

    stats = commands.add_parser(
        "stats",
        help="print queue, channel and agent statistics",
        description="Service level, ASA, abandonment... for a city day (default today) or a "
        "period, read from the aggregates in Redis (needs REDIS_URL or --redis-url).",
    )
    _add_config_options(stats)
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
    _add_log_level(stats, "warning")
    stats.set_defaults(func=cmd_stats)

    export = commands.add_parser("export", help="export data in other tools' formats")
    exports = export.add_subparsers(dest="export_kind", metavar="KIND", required=True)
    queue_log = exports.add_parser(
        "queue-log",
        help="the event stream as an Asterisk queue_log file",
        description="Write the events of a city day (default today, `--day all` for all) or a "
        "period in Asterisk's queue_log format.",
    )
    _add_config_options(queue_log)
    _add_period_options(queue_log)
    queue_log.add_argument(
        "--asterisk-only",
        action="store_true",
        help="only the verbs Asterisk itself writes (leave out OFFER, CASECREATED...)",
    )
    queue_log.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    _add_log_level(queue_log, "warning")
    queue_log.set_defaults(func=cmd_export_queue_log)
    _add_user_commands(commands)
    _add_token_commands(commands)
    return parser


# The values of router.auth.Role, spelt out so that `cityline --help` need not import argon2 and
# redis (tests/test_cli_users.py checks that the two lists agree).
USER_ROLES = ("agent", "supervisor", "admin", "intake")

_REDIS_HELP = (
    "They need the Redis of the installation: --redis-url, REDIS_URL or redis.url; with none of "
    "them, the embedded Redis of a `cityline serve` on this machine (DATA_DIR/redis/redis.sock)."
)


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    _add_config_options(parser)
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory of the `cityline serve` whose embedded Redis to use "
        "(overrides data_dir)",
    )
    _add_log_level(parser, "warning")


def _add_password_source(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (one line) instead of asking twice on the "
        "terminal; for scripts. A password is never taken from the command line",
    )
    if optional:
        source.add_argument(
            "--no-password",
            action="store_true",
            help="no password: the account cannot log in, only use tokens (e.g. role intake); "
            "`cityline user passwd` can give it one later",
        )


def _add_user_commands(commands: Any) -> None:
    user = commands.add_parser(
        "user",
        help="add, list and remove users, set their passwords",
        description="Manage the users who log in to cityline. " + _REDIS_HELP,
    )
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="create a user",
        description="Create a user. The password is asked twice on the terminal, or read from "
        "standard input with --password-stdin.",
    )
    add.add_argument("name", metavar="NAME", help="login name")
    add.add_argument("--role", required=True, choices=USER_ROLES, help="what the user may do")
    add.add_argument(
        "--agent", metavar="ID", help="the agent this login works as (required for role agent)"
    )
    _add_password_source(add, optional=True)
    _add_admin_options(add)
    add.set_defaults(func=cmd_user_add)

    passwd = actions.add_parser(
        "passwd",
        help="set a user's password (ends the user's sessions)",
        description="Set a user's password; every session of that user ends.",
    )
    passwd.add_argument("name", metavar="NAME")
    _add_password_source(passwd, optional=False)
    _add_admin_options(passwd)
    passwd.set_defaults(func=cmd_user_passwd)

    listing = actions.add_parser("list", help="list the users (never their passwords)")
    _add_admin_options(listing)
    listing.set_defaults(func=cmd_user_list)

    remove = actions.add_parser(
        "remove", help="delete a user and revoke the user's tokens; sessions end at once"
    )
    remove.add_argument("name", metavar="NAME")
    _add_admin_options(remove)
    remove.set_defaults(func=cmd_user_remove)


def _add_token_commands(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="create, list and revoke API tokens",
        description="API tokens authenticate as `Authorization: Bearer <token>` for a user. "
        + _REDIS_HELP,
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a token for a user and print it (once)",
        description="Create an API token for USER. It is printed once, alone on standard "
        "output; only its digest is stored, so it cannot be shown again.",
    )
    create.add_argument("user", metavar="USER")
    create.add_argument("--label", default="", metavar="TEXT", help="what the token is for")
    _add_admin_options(create)
    create.set_defaults(func=cmd_token_create)

    revoke = actions.add_parser(
        "revoke",
        help="revoke a token",
        description="Revoke a token, given by its id as `cityline token list` shows it (or a "
        "longer prefix of it) or by the token itself.",
    )
    revoke.add_argument("token", metavar="TOKEN_OR_ID")
    _add_admin_options(revoke)
    revoke.set_defaults(func=cmd_token_revoke)

    listing = actions.add_parser(
        "list", help="list tokens: ids, users, labels, creation times (never the tokens)"
    )
    listing.add_argument("user", metavar="USER", nargs="?", help="only this user's tokens")
    _add_admin_options(listing)
    listing.set_defaults(func=cmd_token_list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `cityline`: show what it can do
        parser.print_help(sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


# --- configuration ------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"cityline: error: {message}", file=sys.stderr)


def format_issue(path: str | None, issue: Any) -> str:
    """`FILE:LINE: field: message`, the shape editors and CI logs link to the line."""
    where = path or "(packaged default)"
    if issue.line is not None:
        where = f"{where}:{issue.line}"
    field = f" {issue.field}:" if issue.field else ""
    return f"{where}:{field} {issue.message}"


def load_config_for(args: argparse.Namespace) -> CitylineConfig:
    """The config file (or the packaged default) with the command line's overrides applied.

    Raises `router.config.ConfigError`, which the commands report as a usage error (exit 2).
    """
    from router.config import load_config

    config = load_config(getattr(args, "config", None))
    http_updates: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        http_updates["host"] = args.host
    if getattr(args, "port", None) is not None:
        http_updates["port"] = args.port
    updates: dict[str, Any] = {}
    if http_updates:
        updates["http"] = config.http.model_copy(update=http_updates)
    if getattr(args, "data_dir", None) is not None:
        updates["data_dir"] = Path(args.data_dir)
    return config.model_copy(update=updates) if updates else config


def _config_or_exit(args: argparse.Namespace) -> CitylineConfig | int:
    from router.config import ConfigError

    try:
        return load_config_for(args)
    except ConfigError as exc:
        _error("the configuration is not valid:")
        for issue in exc.errors:
            print(format_issue(getattr(args, "config", None), issue), file=sys.stderr)
        return 2
    except OSError as exc:
        _error(f"cannot read the configuration: {exc}")
        return 2


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
    config = _config_or_exit(args)
    if isinstance(config, int):
        return config
    return _run_server(lambda: _serve(config, args.redis_url))


def cmd_dispatch(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = _config_or_exit(args)
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
        _plural(_count(items), noun)
        for items, noun in ((queues, "queue"), (agents, "agent"), (skills, "skill"))
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_check_config(args: argparse.Namespace) -> int:
    configure_logging("warning")
    try:
        from router.config import ConfigError, check_config_file, load_config
    except ImportError as exc:
        _error(f"configuration checking is not available in this build: {exc}")
        return 2
    path = args.file
    if not Path(path).is_file():
        print(f"{path}: cannot read: no such file")
        return 1
    issues = check_config_file(path)
    for issue in issues:
        print(format_issue(path, issue))
    if issues:
        print(f"{_plural(len(issues), 'problem')} in {path}", file=sys.stderr)
        return 1
    try:
        config = load_config(path)
    except ConfigError as exc:  # cannot happen after a clean check; kept for a clear message
        for issue in exc.errors:
            print(format_issue(path, issue))
        return 1
    print(f"OK {path}: {summarize(config)}")
    return 0


# --- stats / export: written in router/stats_cli.py ---------------------------------------------


def _run_stats_cli(command: str, function_name: str, args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        from router import stats_cli
    except ImportError as exc:
        _error(f"`cityline {command}` is not available in this installation ({exc})")
        return 2
    function = getattr(stats_cli, function_name, None)
    if function is None:
        _error(f"`cityline {command}` is not available: router.stats_cli has no {function_name}")
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


# --- user / token: administration of the credentials in Redis -----------------------------------
#
# Each command runs in short steps: checks on Redis (one asyncio.run), then the password prompt
# outside any event loop (a first Ctrl-C must interrupt getpass at once, which it would not under
# asyncio.run's SIGINT handler), then the change (a second asyncio.run). Nothing here logs or
# prints a password; a token is printed once, by `token create`, on standard output.

# A Redis that does not answer a PING within this is reported as unreachable.
ADMIN_REDIS_TIMEOUT_S = 5.0
# Token ids as listed: the first characters of the SHA-256 the token is stored under.
TOKEN_ID_CHARS = 12
# A shorter prefix given to `token revoke` is refused: it would too easily match another token.
MIN_TOKEN_ID_PREFIX = 8
MAX_TOKEN_LABEL = 200


class AdminError(Exception):
    """What the operator must read (one line) and the exit code: 1 failure, 2 usage error."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class _Admin:
    config: CitylineConfig
    keys: Keys
    redis: aioredis.Redis


def _embedded_socket(config: CitylineConfig) -> Path:
    """Where the embedded redis-server of a `cityline serve` with this data_dir listens
    (the same path queues.embedded.EmbeddedRedis chooses)."""
    return Path(config.data_dir).resolve() / "redis" / "redis.sock"


async def _ping(url: str) -> aioredis.Redis:
    """A connected client for `url`; raises what connecting raised (the client closed)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=ADMIN_REDIS_TIMEOUT_S,
        socket_timeout=ADMIN_REDIS_TIMEOUT_S,
    )
    try:
        async with asyncio.timeout(ADMIN_REDIS_TIMEOUT_S):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def _admin_redis(args: argparse.Namespace, config: CitylineConfig) -> aioredis.Redis:
    """--redis-url, else REDIS_URL / redis.url (in `config`), else the embedded server's socket
    under data_dir if a `cityline serve` answers on it; AdminError otherwise."""
    from redis.exceptions import RedisError

    from router.main import configured_redis_url, redact_url

    url = args.redis_url or configured_redis_url(config)
    if url:
        try:
            return await _ping(url)
        except ValueError as exc:  # redis-py's word for a URL it cannot parse
            raise AdminError(f"not a Redis URL: {redact_url(url)} ({exc})", 2) from None
        except (RedisError, OSError, TimeoutError) as exc:
            raise AdminError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    sock = _embedded_socket(config)
    if not sock.exists():
        raise AdminError(
            "no Redis configured: set REDIS_URL, redis.url in the configuration or --redis-url "
            f"(or run this where a `cityline serve` keeps its embedded Redis at {sock})",
            2,
        )
    try:
        return await _ping(f"unix://{sock}")
    except (RedisError, OSError, TimeoutError) as exc:
        raise AdminError(
            f"no Redis answers on {sock} (is `cityline serve` running? {exc}); "
            "set REDIS_URL or --redis-url",
            2,
        ) from None


def _run_admin(
    args: argparse.Namespace, config: CitylineConfig, work: Callable[[_Admin], Awaitable[Any]]
) -> Any:
    """Connect, run `work`, close; Redis failures become one line (AdminError, exit 1)."""
    from redis.exceptions import RedisError

    from queues.keys import Keys

    async def session() -> Any:
        redis = await _admin_redis(args, config)
        try:
            return await work(_Admin(config, Keys(config.redis.prefix), redis))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(session())
    except RedisError as exc:
        raise AdminError(f"Redis failed: {exc}") from None


def _admin_command(
    body: Callable[[argparse.Namespace, CitylineConfig], int],
) -> Callable[[argparse.Namespace], int]:
    """The shared frame of the user/token commands: logging, configuration, one-line errors."""

    @functools.wraps(body)
    def command(args: argparse.Namespace) -> int:
        configure_logging(args.log_level)
        config = _config_or_exit(args)
        if isinstance(config, int):
            return config
        from router.errors import CitylineError

        try:
            return body(args, config)
        except AdminError as exc:
            _error(exc.message)
            return exc.exit_code
        except CitylineError as exc:  # the checks of router.auth: bad input 2, state 1
            _error(exc.message)
            return 2 if exc.status in (400, 422) else 1
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130

    return command


def _password_from_stdin() -> str:
    from router.auth import MAX_PASSWORD_LENGTH

    text = sys.stdin.read(MAX_PASSWORD_LENGTH + 3)  # enough to tell "too long" with a CRLF
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if not text:
        raise AdminError("no password on standard input", 2)
    if "\n" in text or "\r" in text:
        raise AdminError("standard input must hold the password alone on one line", 2)
    return text


def _password_from_terminal(name: str) -> str:
    import getpass
    import warnings

    try:
        with warnings.catch_warnings():
            # Without a terminal getpass would read standard input with echo on, after a
            # warning: refuse instead, and point to the way meant for that.
            warnings.simplefilter("error", getpass.GetPassWarning)
            first = getpass.getpass(f"New password for {name}: ")
            second = getpass.getpass("Repeat the password: ")
    except getpass.GetPassWarning:
        raise AdminError(
            "no terminal to ask for the password: pipe it in with --password-stdin", 2
        ) from None
    except EOFError:
        raise AdminError("no password given", 2) from None
    if first != second:
        raise AdminError("the two passwords differ; nothing was changed", 2)
    return first


def _read_password(args: argparse.Namespace, name: str) -> str:
    from router.auth import check_password

    password = _password_from_stdin() if args.password_stdin else _password_from_terminal(name)
    check_password(password)  # BadPassword: one line, exit 2, before anything is written
    return password


def _city_time(config: CitylineConfig, ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, config.city.tzinfo()).strftime("%Y-%m-%d %H:%M")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def _check_agent(admin: _Admin, agent_id: str) -> None:
    """The agent must exist: in this configuration, or known to the Redis (a `cityline serve`
    with another configuration writes every agent it has there at start)."""
    if agent_id in admin.config.agents or await admin.redis.exists(admin.keys.agent(agent_id)):
        return
    raise AdminError(f"unknown agent {agent_id!r}: no such agent in the configuration", 2)


async def _require_user(admin: _Admin, name: str) -> None:
    from router.auth import UnknownUser

    if not await admin.redis.exists(admin.keys.user(name)):
        raise UnknownUser(f"no user {name!r}")


@_admin_command
def cmd_user_add(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import UserExists, add_user, check_role, check_username

    name, role, agent = args.name, args.role, args.agent
    check_username(name)
    check_role(role, agent)
    if agent and role != "agent":
        raise AdminError("--agent is only for role agent", 2)

    async def precheck(admin: _Admin) -> None:
        if await admin.redis.exists(admin.keys.user(name)):
            raise UserExists(f"user {name!r} exists (set a password with `cityline user passwd`)")
        if agent:
            await _check_agent(admin, agent)

    async def create(admin: _Admin) -> None:
        await add_user(admin.redis, admin.keys, name, role, agent_id=agent, password=password)

    _run_admin(args, config, precheck)
    password = None if args.no_password else _read_password(args, name)
    _run_admin(args, config, create)
    as_agent = f", agent {agent}" if agent else ""
    print(f"user {name} added: role {role}{as_agent}" + ("" if password else ", no password"))
    configured = config.users.get(name)
    if configured is not None and (configured.role, configured.agent) != (role, agent):
        print(
            f"note: the configuration declares {name} as role {configured.role}; "
            "`cityline serve` sets that role again at its next start",
            file=sys.stderr,
        )
    return 0


@_admin_command
def cmd_user_passwd(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import set_password

    name = args.name

    async def precheck(admin: _Admin) -> None:
        await _require_user(admin, name)

    async def change(admin: _Admin) -> None:
        await set_password(admin.redis, admin.keys, name, password)

    _run_admin(args, config, precheck)
    password = _read_password(args, name)
    _run_admin(args, config, change)
    print(f"password of {name} changed; the user's sessions have ended")
    return 0


@_admin_command
def cmd_user_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import UserRecord, list_users

    async def read(admin: _Admin) -> list[UserRecord]:
        return await list_users(admin.redis, admin.keys)

    users: list[UserRecord] = _run_admin(args, config, read)
    if not users:
        print("no users", file=sys.stderr)
        return 0
    rows = [
        (
            u.username,
            u.role,
            u.agent_id or "-",
            "yes" if u.has_password else "no",
            _city_time(config, u.created_ms),
        )
        for u in users
    ]
    _print_table(("USER", "ROLE", "AGENT", "PASSWORD", "CREATED"), rows)
    return 0


@_admin_command
def cmd_user_remove(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import list_tokens, remove_user

    name = args.name

    async def remove(admin: _Admin) -> int:
        await _require_user(admin, name)
        tokens = await list_tokens(admin.redis, admin.keys, name)
        await remove_user(admin.redis, admin.keys, name)
        return len(tokens)

    revoked = _run_admin(args, config, remove)
    print(f"user {name} removed; {_plural(revoked, 'token')} revoked")
    if name in config.users:
        print(
            f"note: {name} is in the configuration; `cityline serve` creates it again at its "
            "next start unless you delete it there",
            file=sys.stderr,
        )
    return 0


@_admin_command
def cmd_token_create(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import IssuedToken, create_token

    label = args.label
    if len(label) > MAX_TOKEN_LABEL or not label.isprintable():
        raise AdminError(f"a label is printable text of at most {MAX_TOKEN_LABEL} characters", 2)

    async def create(admin: _Admin) -> IssuedToken:
        return await create_token(admin.redis, admin.keys, args.user, label)

    issued: IssuedToken = _run_admin(args, config, create)
    token_id = issued.digest[:TOKEN_ID_CHARS]
    print(issued.token, flush=True)
    print(
        f"token {token_id} for {issued.username}"
        + (f" ({label})" if label else "")
        + ": copy it now, it will not be shown again "
        f"(revoke it with `cityline token revoke {token_id}`)",
        file=sys.stderr,
    )
    return 0


@_admin_command
def cmd_token_revoke(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import list_tokens, revoke_token

    given = args.token.strip()

    async def revoke(admin: _Admin) -> str:
        # the token itself or its full digest
        if given and await revoke_token(admin.redis, admin.keys, given):
            return "token revoked"
        # an id as listed: a unique prefix of the digest
        prefix = given.lower()
        if len(prefix) < MIN_TOKEN_ID_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise AdminError("no such token (give a token id as `cityline token list` shows)")
        found = [
            t for t in await list_tokens(admin.redis, admin.keys) if t.digest.startswith(prefix)
        ]
        if len(found) > 1:
            raise AdminError(f"{prefix} matches {len(found)} tokens: give more characters", 2)
        if not found or not await revoke_token(admin.redis, admin.keys, found[0].digest):
            raise AdminError(f"no token with id {prefix}")
        return f"token {found[0].digest[:TOKEN_ID_CHARS]} of {found[0].username} revoked"

    print(_run_admin(args, config, revoke))
    return 0


@_admin_command
def cmd_token_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.auth import TokenRecord, list_tokens

    async def read(admin: _Admin) -> list[TokenRecord]:
        if args.user is not None:
            await _require_user(admin, args.user)
        return await list_tokens(admin.redis, admin.keys, args.user)

    tokens: list[TokenRecord] = _run_admin(args, config, read)
    if not tokens:
        print("no tokens", file=sys.stderr)
        return 0
    rows = [
        (
            t.digest[:TOKEN_ID_CHARS],
            t.username,
            t.label or "-",
            _city_time(config, t.created_ms),
        )
        for t in tokens
    ]
    _print_table(("ID", "USER", "LABEL", "CREATED"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
