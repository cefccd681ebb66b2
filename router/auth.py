"""Who may do what: users, passwords, API tokens, login sessions and roles.

Roles (`Role`):

- `agent`: the agent desktop; acts only as its own agent id (`Principal.agent_id`).
- `supervisor`: reads everything, changes agents' states, moves waiting interactions.
- `admin`: everything a supervisor may, plus acting for any agent and managing users and tokens.
- `intake`: the account of a channel or external system; why it exists: see `Role`.

Credentials, all in Redis under `queues.keys.Keys` (router processes stay stateless):

- passwords: argon2id hashes (argon2-cffi), verified in a worker thread because a hash costs
  tens of milliseconds of CPU and would otherwise stall every other request on the loop; a hash
  made with weaker parameters than today's is replaced at the next successful login.
- API tokens: 32 random bytes (URL-safe text), shown once, stored only as their SHA-256, sent as
  `Authorization: Bearer <token>`. A fast digest is enough here (unlike passwords): the token
  has 256 bits of entropy, so nobody can search for it from its digest.
- sessions: `login` returns a random session id for the `cityline_session` cookie and a CSRF
  token that cookie-authenticated unsafe requests must echo in `X-CSRF-Token`. Redis keeps the
  session under the SHA-256 of its id, so a copy of the Redis data does not let anyone log in.
  Changing a user's password ends all of that user's sessions (the `epoch` field).
- lockout: `http.login_max_failures` failed logins within `http.login_lockout_s` lock the user
  name (correct password or not) until the window that began with the first failure passes.

Nothing here logs or returns a password, a password hash, a token or a session id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import TypeAdapter, ValidationError

from queues.keys import Keys
from router.config import CitylineConfig, UserName
from router.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)

logger = logging.getLogger(__name__)

SESSION_COOKIE = "cityline_session"
CSRF_HEADER = "X-CSRF-Token"
DEMO_CREDENTIALS_FILE = "demo-credentials.txt"

# Shorter passwords fall to guessing; longer ones only cost argon2 time (a login body is capped
# at the same length, so nobody makes us hash a megabyte).
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# 32 random bytes = 256 bits: as strong as the SHA-256 they are stored under.
TOKEN_BYTES = 32
# 12 random bytes give a 16-character demo password: easy to type, impossible to guess.
DEMO_PASSWORD_BYTES = 12

_USERNAME = TypeAdapter(UserName)


class Role(StrEnum):
    """What a user may do. `intake` is the fourth role, next to the three people's roles.

    It is the account of a channel or an external system (a web-form backend, an SMS gateway
    bridge, the IVR host), which may only create interactions and report what the resident does
    (messages, leaving). Such a system keeps its token in its own configuration, often on another
    host; when it leaks, the thief must not be able to read residents' conversations, move agents
    or manage users, so it cannot be a supervisor or admin account. Nor can it be an agent: it
    acts for no agent and must never take an offer. And without it the intake endpoints would be
    open to every agent login, which has no business creating contacts.
    """

    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"
    intake = "intake"


# --------------------------------------------------------------------------------------------
# errors


class LockedOut(TooManyRequests):
    """Too many failed logins for this user name; `retry_after_s` until the window ends."""

    code = "locked_out"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class UserExists(Conflict):
    code = "user_exists"


class UnknownUser(NotFound):
    code = "unknown_user"


class BadPassword(Unprocessable):
    code = "weak_password"


class BadUser(Unprocessable):
    code = "invalid_user"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


# --------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by `Auth.authenticate` (re-read from Redis every time,
    so a changed role or a removed user takes effect at the next request)."""

    username: str
    role: Role
    agent_id: str | None
    via: Literal["session", "token"]
    # session only: the CSRF token it was issued with, and the Redis key of the session
    csrf_token: str = ""
    session_key: str = ""

    def __repr__(self) -> str:  # the CSRF token stays out of logs and tracebacks
        return f"Principal({self.username!r}, {self.role.value}, via={self.via})"


@dataclass(frozen=True)
class LoginResult:
    session_id: str  # goes into the cookie only
    csrf_token: str
    ttl_s: int
    principal: Principal

    def __repr__(self) -> str:
        return f"LoginResult({self.principal!r}, ttl_s={self.ttl_s})"


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
# helpers


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


async def _now_ms(redis: aioredis.Redis) -> int:
    # One clock for the whole system: Redis TIME (DESIGN.md "State and atomicity").
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


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


async def _hash(hasher: PasswordHasher, password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


async def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# --------------------------------------------------------------------------------------------
# user and token administration (the CLI's `user` and `token` commands call these)


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
        fields["password_hash"] = await _hash(hasher or default_hasher(), password)
    fields["created_ms"] = await _now_ms(redis)
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
    digest = await _hash(hasher or default_hasher(), password)
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
    digest = _digest(token)
    await redis.hset(
        keys.api_token(digest),
        mapping={"user": username, "label": label, "created": await _now_ms(redis)},
    )
    logger.info("token created user=%s label=%s id=%s", username, label, digest[:12])
    return IssuedToken(token=token, digest=digest, username=username, label=label)


async def revoke_token(redis: aioredis.Redis, keys: Keys, token_or_digest: str) -> bool:
    """Revoke by the token itself or by its digest (as listed); False if there was none."""
    candidates = [token_or_digest, _digest(token_or_digest)]
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
    now = await _now_ms(redis)
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
        stored = await redis.hsetnx(key, "password_hash", await _hash(hasher, password))
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


# --------------------------------------------------------------------------------------------
# the request-time side


class Auth:
    """Authentication for the HTTP layer: sessions, tokens, lockout. Stateless (all in Redis)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        cfg: CitylineConfig,
        *,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.cfg = cfg
        self.hasher = hasher or default_hasher()
        self._dummy_hash: str | None = None

    @property
    def session_ttl_s(self) -> int:
        return int(self.cfg.http.session_ttl_s)

    @property
    def cookie_secure(self) -> bool:
        return bool(self.cfg.http.cookie_secure)

    async def _dummy(self) -> str:
        # Verifying against a throw-away hash when the user or its password does not exist
        # makes a failed login take the same time either way: the answer's timing does not
        # tell which user names exist.
        if self._dummy_hash is None:
            self._dummy_hash = await _hash(self.hasher, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _user(self, username: str) -> dict[str, str]:
        return await self.redis.hgetall(self.keys.user(username))

    @staticmethod
    def _principal(
        username: str,
        data: Mapping[str, str],
        via: Literal["session", "token"],
        *,
        epoch: str | None = None,
        csrf_token: str = "",
        session_key: str = "",
    ) -> Principal | None:
        """The principal for a user record, None when the record cannot authenticate."""
        if not data:
            return None
        try:
            role = Role(data.get("role", ""))
        except ValueError:
            logger.error("user=%s has an unknown role in Redis; refused", username)
            return None
        agent_id = data.get("agent_id") or None
        if role == Role.agent and agent_id is None:
            logger.error("user=%s has role agent but no agent id; refused", username)
            return None
        if epoch is not None and epoch != data.get("epoch", "0"):
            return None  # the password changed since this session began
        return Principal(
            username=username,
            role=role,
            agent_id=agent_id,
            via=via,
            csrf_token=csrf_token,
            session_key=session_key,
        )

    # --- login and logout ------------------------------------------------------------------

    async def login(self, username: str, password: str, remote: str = "") -> LoginResult:
        """Check the password and open a session. Raises `LockedOut` or `Unauthorized`."""
        http = self.cfg.http
        fkey = self.keys.login_failures(username)
        # Every attempt takes a number before the password is checked, atomically; so however
        # many run at once, at most `login_max_failures` are verified per window. SET NX EX and
        # INCR in one transaction: the counter can never exist without its expiry (a crash
        # between two calls would otherwise lock the user name for good).
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(fkey, 0, ex=int(http.login_lockout_s), nx=True)
            pipe.incr(fkey)
            pipe.ttl(fkey)
            _, attempt, ttl = await pipe.execute()
        if attempt > http.login_max_failures:
            logger.warning("login refused: locked out user=%s remote=%s", username, remote)
            raise LockedOut(max(int(ttl), 1))
        data = await self._user(username)
        stored = data.get("password_hash") or ""
        ok = await _verify(self.hasher, stored or await self._dummy(), password)
        principal = self._principal(username, data, "session") if ok and stored else None
        if principal is None:
            logger.warning(
                "login failed user=%s remote=%s failures=%d/%d",
                username, remote, attempt, http.login_max_failures,
            )  # fmt: skip
            if attempt == http.login_max_failures:
                logger.warning(
                    "user=%s locked out for %d s after %d failed logins",
                    username, http.login_lockout_s, attempt,
                )  # fmt: skip
            raise Unauthorized("wrong user name or password")
        await self.redis.delete(fkey)
        if self.hasher.check_needs_rehash(stored):
            await self.redis.hset(
                self.keys.user(username), "password_hash", await _hash(self.hasher, password)
            )
            logger.info("password hash upgraded user=%s", username)
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        skey = self.keys.session(_digest(session_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                skey,
                mapping={
                    "user": username,
                    "csrf": csrf,
                    "epoch": data.get("epoch", "0"),
                    "created": await _now_ms(self.redis),
                    "remote": remote,
                },
            )
            pipe.expire(skey, self.session_ttl_s)
            await pipe.execute()
        logger.info("login user=%s role=%s remote=%s", username, principal.role.value, remote)
        principal = Principal(
            username=username,
            role=principal.role,
            agent_id=principal.agent_id,
            via="session",
            csrf_token=csrf,
            session_key=skey,
        )
        return LoginResult(session_id, csrf, self.session_ttl_s, principal)

    async def logout(self, principal: Principal) -> None:
        if principal.via == "session" and principal.session_key:
            await self.redis.delete(principal.session_key)
            logger.info("logout user=%s", principal.username)

    # --- every request ---------------------------------------------------------------------

    async def from_token(self, token: str) -> Principal | None:
        data = await self.redis.hgetall(self.keys.api_token(_digest(token)))
        if not data:
            return None
        username = data.get("user", "")
        return self._principal(username, await self._user(username), "token")

    async def from_session(self, session_id: str) -> Principal | None:
        skey = self.keys.session(_digest(session_id))
        data = await self.redis.hgetall(skey)
        if not data:
            return None
        username = data.get("user", "")
        return self._principal(
            username,
            await self._user(username),
            "session",
            epoch=data.get("epoch", "0"),
            csrf_token=data.get("csrf", ""),
            session_key=skey,
        )

    async def authenticate(self, authorization: str | None, session_id: str | None) -> Principal:
        """The caller of a request, from its Authorization header or else its session cookie.

        A request that sends an Authorization header is judged by it alone: a bad token is a
        401 even when a valid cookie rides along, so a client never acts as someone unexpected.
        """
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("use Authorization: Bearer <token>")
            principal = await self.from_token(token)
            if principal is None:
                raise Unauthorized("invalid or revoked token")
            return principal
        if session_id:
            principal = await self.from_session(session_id)
            if principal is None:
                raise Unauthorized("session expired or ended: log in again")
            return principal
        raise Unauthorized("authentication required")

    @staticmethod
    def check_csrf(principal: Principal, header: str | None) -> None:
        """Cookie-authenticated unsafe requests must echo the session's CSRF token.

        Tokens need no check: a browser never adds an Authorization header on its own.
        """
        if principal.via != "session":
            return
        if not header or not hmac.compare_digest(header.encode(), principal.csrf_token.encode()):
            raise CsrfFailed(f"missing or wrong {CSRF_HEADER} header")
