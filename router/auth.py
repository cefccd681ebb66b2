"""Who is calling and what they may do: roles, logins, sessions, API tokens, CSRF, lockout.

Roles (`Role`):

- `agent`: the agent desktop; acts only as its own agent id (`Principal.agent_id`).
- `supervisor`: reads everything, changes agents' states, moves waiting interactions.
- `admin`: everything a supervisor may, plus acting for any agent and managing users and tokens.
- `intake`: the account of a channel or external system; why it exists: see `Role`.

Credentials, all in Redis under `queues.keys.Keys` (router processes stay stateless); users and
tokens are created, changed and removed by `router.users`:

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
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from queues.keys import Keys
from router.config import CitylineConfig
from router.errors import Forbidden, TooManyRequests, Unauthorized

logger = logging.getLogger(__name__)

SESSION_COOKIE = "cityline_session"
CSRF_HEADER = "X-CSRF-Token"

# Shorter passwords fall to guessing; longer ones only cost argon2 time (a login body is capped
# at the same length, so nobody makes us hash a megabyte).
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


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


# --------------------------------------------------------------------------------------------
# helpers (router.users stores passwords and tokens with the same ones)


def secret_digest(secret: str) -> str:
    """The SHA-256 (hex) a token or a session id is stored under."""
    return hashlib.sha256(secret.encode()).hexdigest()


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


async def redis_now_ms(redis: aioredis.Redis) -> int:
    # One clock for the whole system: Redis TIME (DESIGN.md "State and atomicity").
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


async def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


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
            self._dummy_hash = await hash_password(self.hasher, secrets.token_urlsafe(16))
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
            upgraded = await hash_password(self.hasher, password)
            await self.redis.hset(self.keys.user(username), "password_hash", upgraded)
            logger.info("password hash upgraded user=%s", username)
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        skey = self.keys.session(secret_digest(session_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                skey,
                mapping={
                    "user": username,
                    "csrf": csrf,
                    "epoch": data.get("epoch", "0"),
                    "created": await redis_now_ms(self.redis),
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
        data = await self.redis.hgetall(self.keys.api_token(secret_digest(token)))
        if not data:
            return None
        username = data.get("user", "")
        return self._principal(username, await self._user(username), "token")

    async def from_session(self, session_id: str) -> Principal | None:
        skey = self.keys.session(secret_digest(session_id))
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
