"""Login, logout and "who am I" for the agent desktop, the supervisor wall and API clients.

The session cookie is HttpOnly (page scripts cannot read it, so an injected script cannot carry
it away), SameSite=Strict (a browser never sends it on a request started by another site) and
Secure when `http.cookie_secure` is set. The CSRF token in the login answer is the second
factor for unsafe requests: the desktop keeps it in memory and echoes it in X-CSRF-Token.
"""

from __future__ import annotations

from aiohttp import web

from router.auth import SESSION_COOKIE, Principal
from router.http.api.schemas import LoggedOut, LoginRequest, LoginResponse, Me
from router.http.api.table import Call, json_reply


def _me(principal: Principal) -> Me:
    return Me(
        username=principal.username,
        role=principal.role.value,
        agent_id=principal.agent_id,
        auth=principal.via,
    )


async def login(call: Call) -> web.StreamResponse:
    body: LoginRequest = call.body
    remote = call.request.remote or ""
    result = await call.auth.login(body.username, body.password.get_secret_value(), remote)
    me = _me(result.principal)
    answer = LoginResponse(
        **me.model_dump(), csrf_token=result.csrf_token, expires_in_s=result.ttl_s
    )
    response = json_reply(answer)
    response.set_cookie(
        SESSION_COOKIE,
        result.session_id,
        max_age=result.ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=call.auth.cookie_secure or None,
    )
    return response


async def logout(call: Call) -> web.StreamResponse:
    await call.auth.logout(call.user)
    response = json_reply(LoggedOut())
    if call.user.via == "session":
        response.del_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=call.auth.cookie_secure or None,
        )
    return response


async def me(call: Call) -> Me:
    return _me(call.user)
