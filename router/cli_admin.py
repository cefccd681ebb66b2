"""`cityline user ...` and `cityline token ...`: administration of the credentials in Redis.

Each command runs in short steps: checks on Redis (one asyncio.run), then the password prompt
outside any event loop (a first Ctrl-C must interrupt getpass at once, which it would not under
asyncio.run's SIGINT handler), then the change (a second asyncio.run). Nothing here logs or
prints a password; a token is printed once, by `token create`, on standard output.

router.users (argon2, redis) is imported by the commands themselves, so that `cityline --help`
does not load it. Where the Redis is and how a step runs in it: router/cli_admin_session.py;
how a password is asked for: router/cli_password.py.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from router.cli_admin_session import AdminError, AdminSession, run_admin
from router.cli_common import add_config_options, add_log_level, config_or_exit, error, plural
from router.cli_password import read_password
from router.logging_setup import configure_logging

if TYPE_CHECKING:
    from router.config import CitylineConfig
    from router.users import IssuedToken, TokenRecord, UserRecord

# The values of router.auth.Role, spelt out so that `cityline --help` need not import argon2 and
# redis (tests/test_cli_users.py checks that the two lists agree).
USER_ROLES = ("agent", "supervisor", "admin", "intake")

# Token ids as listed: the first characters of the SHA-256 the token is stored under.
TOKEN_ID_CHARS = 12
# A shorter prefix given to `token revoke` is refused: it would too easily match another token.
MIN_TOKEN_ID_PREFIX = 8
MAX_TOKEN_LABEL = 200

_REDIS_HELP = (
    "They need the Redis of the installation: --redis-url, REDIS_URL or redis.url; with none of "
    "them, the embedded Redis of a `cityline serve` on this machine (DATA_DIR/redis/redis.sock)."
)


# --- the parsers --------------------------------------------------------------------------------


def add_admin_commands(commands: Any) -> None:
    """Add `user` and `token` to the subparsers of `cityline`."""
    _add_user_commands(commands)
    _add_token_commands(commands)


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory of the `cityline serve` whose embedded Redis to use "
        "(overrides data_dir)",
    )
    add_log_level(parser, "warning")


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


# --- what every command shares ------------------------------------------------------------------


def _admin_command(
    body: Callable[[argparse.Namespace, CitylineConfig], int],
) -> Callable[[argparse.Namespace], int]:
    """The shared frame of the user/token commands: logging, configuration, one-line errors."""

    @functools.wraps(body)
    def command(args: argparse.Namespace) -> int:
        configure_logging(args.log_level)
        config = config_or_exit(args)
        if isinstance(config, int):
            return config
        from router.errors import CitylineError

        try:
            return body(args, config)
        except AdminError as exc:
            error(exc.message)
            return exc.exit_code
        except CitylineError as exc:  # the checks of router.users: bad input 2, state 1
            error(exc.message)
            return 2 if exc.status in (400, 422) else 1
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130

    return command


def _city_time(config: CitylineConfig, ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, config.city.tzinfo()).strftime("%Y-%m-%d %H:%M")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def _check_agent(admin: AdminSession, agent_id: str) -> None:
    """The agent must exist: in this configuration, or known to the Redis (a `cityline serve`
    with another configuration writes every agent it has there at start)."""
    if agent_id in admin.config.agents or await admin.redis.exists(admin.keys.agent(agent_id)):
        return
    raise AdminError(f"unknown agent {agent_id!r}: no such agent in the configuration", 2)


async def _require_user(admin: AdminSession, name: str) -> None:
    from router.users import UnknownUser

    if not await admin.redis.exists(admin.keys.user(name)):
        raise UnknownUser(f"no user {name!r}")


# --- user ---------------------------------------------------------------------------------------


@_admin_command
def cmd_user_add(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.users import UserExists, add_user, check_role, check_username

    name, role, agent = args.name, args.role, args.agent
    check_username(name)
    check_role(role, agent)
    if agent and role != "agent":
        raise AdminError("--agent is only for role agent", 2)

    async def precheck(admin: AdminSession) -> None:
        if await admin.redis.exists(admin.keys.user(name)):
            raise UserExists(f"user {name!r} exists (set a password with `cityline user passwd`)")
        if agent:
            await _check_agent(admin, agent)

    async def create(admin: AdminSession) -> None:
        await add_user(admin.redis, admin.keys, name, role, agent_id=agent, password=password)

    run_admin(args, config, precheck)
    password = None if args.no_password else read_password(args, name)
    run_admin(args, config, create)
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
    from router.users import set_password

    name = args.name

    async def precheck(admin: AdminSession) -> None:
        await _require_user(admin, name)

    async def change(admin: AdminSession) -> None:
        await set_password(admin.redis, admin.keys, name, password)

    run_admin(args, config, precheck)
    password = read_password(args, name)
    run_admin(args, config, change)
    print(f"password of {name} changed; the user's sessions have ended")
    return 0


@_admin_command
def cmd_user_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.users import list_users

    async def read(admin: AdminSession) -> list[UserRecord]:
        return await list_users(admin.redis, admin.keys)

    users: list[UserRecord] = run_admin(args, config, read)
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
    from router.users import list_tokens, remove_user

    name = args.name

    async def remove(admin: AdminSession) -> int:
        await _require_user(admin, name)
        tokens = await list_tokens(admin.redis, admin.keys, name)
        await remove_user(admin.redis, admin.keys, name)
        return len(tokens)

    revoked = run_admin(args, config, remove)
    print(f"user {name} removed; {plural(revoked, 'token')} revoked")
    if name in config.users:
        print(
            f"note: {name} is in the configuration; `cityline serve` creates it again at its "
            "next start unless you delete it there",
            file=sys.stderr,
        )
    return 0


# --- token --------------------------------------------------------------------------------------


@_admin_command
def cmd_token_create(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.users import create_token

    label = args.label
    if len(label) > MAX_TOKEN_LABEL or not label.isprintable():
        raise AdminError(f"a label is printable text of at most {MAX_TOKEN_LABEL} characters", 2)

    async def create(admin: AdminSession) -> IssuedToken:
        return await create_token(admin.redis, admin.keys, args.user, label)

    issued: IssuedToken = run_admin(args, config, create)
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
    from router.users import list_tokens, revoke_token

    given = args.token.strip()

    async def revoke(admin: AdminSession) -> str:
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

    print(run_admin(args, config, revoke))
    return 0


@_admin_command
def cmd_token_list(args: argparse.Namespace, config: CitylineConfig) -> int:
    from router.users import list_tokens

    async def read(admin: AdminSession) -> list[TokenRecord]:
        if args.user is not None:
            await _require_user(admin, args.user)
        return await list_tokens(admin.redis, admin.keys, args.user)

    tokens: list[TokenRecord] = run_admin(args, config, read)
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
