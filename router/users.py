"""Accounts: creating, changing and removing users and their API tokens.

The administrative side of authentication, called by the CLI's `user` and `token` commands and,
at start, by `ensure_users` for the users the configuration declares. The request-time side
(logins, sessions, tokens presented by callers, lockout) is `router.auth`, which this module
builds on: the roles, the password hashing and the digest tokens are stored under.

Nothing here logs or returns a password, a password hash or a token (except the new token that
`create_token` returns to show once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from pydantic import TypeAdapter, ValidationError

from queues.keys import Keys
from router.auth import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    default_hasher,
    hash_password,
    redis_now_ms,
    secret_digest,
)
from router.config import CitylineConfig, UserName
from router.errors import Conflict, NotFound, Unprocessable

# The log name these events have always had: operators' filters and alerts on "router.auth"
# keep seeing user and token changes now that the code lives here.
logger = logging.getLogger("router.auth")

DEMO_CREDENTIALS_FILE = "demo-credentials.txt"
# 32 random bytes = 256 bits: as strong as the SHA-256 they are stored under.
TOKEN_BYTES = 32
# 12 random bytes give a 16-character demo password: easy to type, impossible to guess.
DEMO_PASSWORD_BYTES = 12

_USERNAME = TypeAdapter(UserName)


# --------------------------------------------------------------------------------------------
# errors


class UserExists(Conflict):
    code = "user_exists"


class UnknownUser(NotFound):
    code = "unknown_user"


class BadPassword(Unprocessable):
    code = "weak_password"


class BadUser(Unprocessable):
    code = "invalid_user"


# --------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once to whoever asked for it, never stored
    digest: str  # the token's id from now on (list, revoke)
    username: str
    label: str

    def __repr__(self) -> str:
        return f"IssuedToken(user={self.username!r}, digest={self.digest[:12]}..)"


@dataclass(frozen=True)
class UserRecord:
    username: str
    role: str
    agent_id: str | None
    has_password: bool
    created_ms: int


@dataclass(frozen=True)
class TokenRecord:
    digest: str
    username: str
    label: str
    created_ms: int


# --------------------------------------------------------------------------------------------
# checks (also run by the CLI before it asks for a password)


def check_username(username: str) -> str:
    try:
        return _USERNAME.validate_python(username)
    except ValidationError as exc:
        raise BadUser(exc.errors(include_url=False)[0]["msg"]) from None


def check_role(role: str, agent_id: str | None) -> Role:
    try:
        value = Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise BadUser(f"unknown role {role!r} (one of {known})") from None
    if value == Role.agent and not agent_id:
        raise BadUser("a user with role agent needs an agent id")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


# --------------------------------------------------------------------------------------------
# users and tokens (the CLI's `user` and `token` commands call these)


async def add_user(
    redis: aioredis.Redis,
    keys: Keys,
    username: str,
    role: str,
    *,
    agent_id: str | None = None,
    password: str | None = None,
    hasher: PasswordHasher | None = None,
) -> None:
    """Create a user; without `password` it cannot log in until `set_password`.

    Raises `UserExists`, `BadUser` (name, role, agent) or `BadPassword`.
    """
    check_username(username)
    check_role(role, agent_id)
    fields: dict[str, Any] = {"role": role, "agent_id": agent_id or "", "epoch": 0}
    if password is not None:
        check_password(password)
        fields["password_hash"] = await hash_password(hasher or default_hasher(), password)
    fields["created_ms"] = await redis_now_ms(redis)
    key = keys.user(username)
    # WATCH makes "does not exist yet" and the creation one step: two admins adding the same
    # name at once get one user and one UserExists, never a merge of both.
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        if await pipe.exists(key):
            raise UserExists(f"user {username!r} exists")
        pipe.multi()
        pipe.hset(key, mapping=fields)
        pipe.sadd(keys.users, username)
        try:
            await pipe.execute()
        except aioredis.WatchError:
            raise UserExists(f"user {username!r} exists") from None
    logger.info("user added user=%s role=%s", username, role)


async def set_password(
    redis: aioredis.Redis,
    keys: Keys,
    username: str,
    password: str,
    *,
    hasher: PasswordHasher | None = None,
) -> None:
    """Set a user's password and end every session of that user (their `epoch` moves on)."""
    check_password(password)
    key = keys.user(username)
    if not await redis.exists(key):
        raise UnknownUser(f"no user {username!r}")
    digest = await hash_password(hasher or default_hasher(), password)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, "password_hash", digest)
        pipe.hincrby(key, "epoch", 1)
        await pipe.execute()
    logger.info("password set user=%s (sessions ended)", username)


async def remove_user(redis: aioredis.Redis, keys: Keys, username: str) -> None:
    """Delete a user and revoke their tokens; their sessions stop at the next request."""
    if not await redis.delete(keys.user(username)):
        raise UnknownUser(f"no user {username!r}")
    await redis.srem(keys.users, username)
    for token in await list_tokens(redis, keys, username):
        await redis.delete(keys.api_token(token.digest))
    logger.info("user removed user=%s", username)


async def list_users(redis: aioredis.Redis, keys: Keys) -> list[UserRecord]:
    out = []
    for name in sorted(await redis.smembers(keys.users)):
        data = await redis.hgetall(keys.user(name))
        if not data:
            continue
        out.append(
            UserRecord(
                username=name,
                role=data.get("role", ""),
                agent_id=data.get("agent_id") or None,
                has_password=bool(data.get("password_hash")),
                created_ms=int(data.get("created_ms") or 0),
            )
        )
    return out


async def create_token(
    redis: aioredis.Redis, keys: Keys, username: str, label: str = ""
) -> IssuedToken:
    """A new API token for `username`. Show `token` once; keep `digest` to revoke it."""
    if not await redis.exists(keys.user(username)):
        raise UnknownUser(f"no user {username!r}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = secret_digest(token)
    await redis.hset(
        keys.api_token(digest),
        mapping={"user": username, "label": label, "created": await redis_now_ms(redis)},
    )
    logger.info("token created user=%s label=%s id=%s", username, label, digest[:12])
    return IssuedToken(token=token, digest=digest, username=username, label=label)


async def revoke_token(redis: aioredis.Redis, keys: Keys, token_or_digest: str) -> bool:
    """Revoke by the token itself or by its digest (as listed); False if there was none."""
    candidates = [token_or_digest, secret_digest(token_or_digest)]
    for digest in candidates:
        if await redis.delete(keys.api_token(digest)):
            logger.info("token revoked id=%s", digest[:12])
            return True
    return False


async def list_tokens(
    redis: aioredis.Redis, keys: Keys, username: str | None = None
) -> list[TokenRecord]:
    """Every token (of one user): an administrative scan, never on a request path."""
    prefix = keys.api_token("")
    out = []
    async for key in redis.scan_iter(match=keys.api_token("*"), count=500):
        data = await redis.hgetall(key)
        if not data or (username is not None and data.get("user") != username):
            continue
        out.append(
            TokenRecord(
                digest=key[len(prefix) :],
                username=data.get("user", ""),
                label=data.get("label", ""),
                created_ms=int(data.get("created") or 0),
            )
        )
    return sorted(out, key=lambda t: (t.username, t.created_ms))


# --------------------------------------------------------------------------------------------
# users from the configuration


async def ensure_users(
    redis: aioredis.Redis,
    keys: Keys,
    cfg: CitylineConfig,
    env: Mapping[str, str] | None = None,
    *,
    hasher: PasswordHasher | None = None,
) -> list[str]:
    """Make every configured user exist; returns the names created now.

    The configuration is the source of truth for a configured user's role and agent, so those
    are written every time. A password is only ever given to a user that has none (one set with
    the CLI is never overwritten): from the environment variable `password_env` names; else,
    with `demo.create_demo_users`, a random one written to `<data_dir>/demo-credentials.txt`
    (mode 0600); else none, and the user cannot log in until one is set.

    Safe with several router processes starting at once: the password is set with HSETNX, so
    exactly one process's demo password wins and only that one is written down.
    """
    env = os.environ if env is None else env
    hasher = hasher or default_hasher()
    now = await redis_now_ms(redis)
    created: list[str] = []
    demo: dict[str, tuple[str, str]] = {}
    for name, user in cfg.users.items():
        key = keys.user(name)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "created_ms", now)
            pipe.hsetnx(key, "epoch", 0)
            pipe.hset(key, mapping={"role": user.role, "agent_id": user.agent or ""})
            pipe.sadd(keys.users, name)
            pipe.hexists(key, "password_hash")
            is_new, _, _, _, has_password = await pipe.execute()
        if is_new:
            created.append(name)
            logger.debug("user created from configuration user=%s role=%s", name, user.role)
        if has_password:
            continue
        initial = user.initial_password(env)
        if initial is not None:
            password = initial.get_secret_value()
            try:
                check_password(password)
            except BadPassword as exc:
                logger.warning(
                    "user=%s: the password in %s is not accepted (%s); user left without one",
                    name, user.password_env, exc.message,
                )  # fmt: skip
                continue
        elif cfg.demo.create_demo_users:
            password = secrets.token_urlsafe(DEMO_PASSWORD_BYTES)
        else:
            logger.info("user=%s has no password: set one with the CLI to let it log in", name)
            continue
        stored = await redis.hsetnx(key, "password_hash", await hash_password(hasher, password))
        if stored and initial is None:
            demo[name] = (password, user.role)
    if demo:
        path = Path(cfg.data_dir) / DEMO_CREDENTIALS_FILE
        await asyncio.to_thread(_write_demo_credentials, path, demo)
        logger.warning("demo passwords for %d user(s) written to %s", len(demo), path)
    return created


def _write_demo_credentials(path: Path, new: Mapping[str, tuple[str, str]]) -> None:
    """Merge `new` into the file: lines of users not given a new password now are kept, since
    their password in Redis is still the one written there on an earlier start."""
    lines: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts:
                lines[parts[0]] = line
    for name, (password, role) in new.items():
        lines[name] = f"{name}  {password}  {role}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start (not chmod'ed after writing), so no other user of the host
    # can open it in between; fchmod fixes a file an earlier version left with wider rights.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines.values()))
