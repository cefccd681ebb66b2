"""Users managed over HTTP by admins (/api/v1/admin/users): what `cityline user ...` does.

The same functions as the CLI (router/users.py: argon2, tokens revoked with the user, sessions
ended by a new password). Never returns a password or a hash. An admin cannot remove or demote
their own account, so an installation always keeps the admin who is working on it.
"""

from __future__ import annotations

import logging

from router import users as accounts
from router.errors import Conflict
from router.http.api.schemas_admin import (
    AdminUser,
    AdminUserList,
    Unlocked,
    UserCreateRequest,
    UserRemoved,
    UserUpdateRequest,
)
from router.http.api.table import Call
from router.http.api.validation import ApiError

logger = logging.getLogger("router.auth")  # where user changes have always been logged


def _field_error(field: str, message: str, code: str = "validation_error") -> ApiError:
    return ApiError(422, code, message, details=[{"loc": [field], "msg": message}])


async def _locked(call: Call, names: list[str]) -> list[bool]:
    redis, keys = call.service.store.redis, call.service.store.keys
    limit = call.service.cfg.http.login_max_failures
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(keys.login_failures(name))
        counts = await pipe.execute()
    return [int(c or 0) >= limit for c in counts]


async def _views(call: Call, only: str | None = None) -> list[AdminUser]:
    store = call.service.store
    records = [
        r for r in await accounts.list_users(store.redis, store.keys)
        if only is None or r.username == only
    ]  # fmt: skip
    locked = await _locked(call, [r.username for r in records])
    configured = call.service.cfg.users
    return [
        AdminUser(username=r.username, role=r.role, agent_id=r.agent_id,
                  has_password=r.has_password, created_ms=r.created_ms,
                  configured=r.username in configured, locked_out=lock)
        for r, lock in zip(records, locked, strict=True)
    ]  # fmt: skip


async def _one(call: Call, name: str) -> AdminUser:
    found = await _views(call, name)
    if not found:
        raise accounts.UnknownUser(f"no user {name!r}")
    return found[0]


def _check_link(call: Call, role: str, agent_id: str | None) -> None:
    if role == "agent":
        if not agent_id:
            raise _field_error("agent_id", "a user with role agent needs the agent it works as")
        if agent_id not in call.service.cfg.agents:
            raise _field_error("agent_id", f"unknown agent {agent_id!r}", "unknown_agent")
    elif agent_id:
        raise _field_error("agent_id", "only a user with role agent works as an agent")


async def admin_list_users(call: Call) -> AdminUserList:
    return AdminUserList(users=await _views(call))


async def admin_create_user(call: Call) -> AdminUser:
    body: UserCreateRequest = call.body
    _check_link(call, body.role, body.agent_id)
    password = body.password.get_secret_value() if body.password is not None else None
    store = call.service.store
    try:
        await accounts.add_user(store.redis, store.keys, body.username, body.role,
                                agent_id=body.agent_id or None, password=password,
                                hasher=call.auth.hasher)  # fmt: skip
    except accounts.BadPassword as exc:
        raise _field_error("password", exc.message, exc.code) from None
    return await _one(call, body.username)


async def admin_update_user(call: Call) -> AdminUser:
    body: UserUpdateRequest = call.body
    name = call.param("username")
    current = await _one(call, name)
    store = call.service.store
    role = body.role or current.role
    agent_id = current.agent_id if body.agent_id is None else (body.agent_id or None)
    if role != "agent" and body.agent_id is None:
        agent_id = None  # a user leaving role agent stops working as its agent
    if name == call.user.username and role != current.role:
        raise Conflict("you cannot change your own role", code="self")
    if (role, agent_id) != (current.role, current.agent_id):
        _check_link(call, role, agent_id)
        await store.redis.hset(store.keys.user(name),
                               mapping={"role": role, "agent_id": agent_id or ""})  # fmt: skip
        logger.info("user changed user=%s role=%s agent=%s by=%s", name, role, agent_id or "-",
                    call.user.username)  # fmt: skip
    if body.password is not None:
        try:
            await accounts.set_password(store.redis, store.keys, name,
                                        body.password.get_secret_value(),
                                        hasher=call.auth.hasher)  # fmt: skip
        except accounts.BadPassword as exc:
            raise _field_error("password", exc.message, exc.code) from None
    return await _one(call, name)


async def admin_delete_user(call: Call) -> UserRemoved:
    name = call.param("username")
    if name == call.user.username:
        raise Conflict("you cannot remove your own account", code="self")
    store = call.service.store
    await accounts.remove_user(store.redis, store.keys, name)
    return UserRemoved(removed=name)


async def admin_unlock_user(call: Call) -> Unlocked:
    name = call.param("username")
    await _one(call, name)
    store = call.service.store
    done = bool(await store.redis.delete(store.keys.login_failures(name)))
    return Unlocked(username=name, unlocked=done)
