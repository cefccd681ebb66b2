"""The web chat adapter: the resident page and its WebSocket, and the router's events back to it.

    GET /chat       the resident page (channels/chat/page.py)
    GET /chat/ws    JSON frames (channels/chat/protocol.py):
        start        -> interaction in the chat queue; `started` {ref, token}, then `waiting`
                        {position, estimated_wait_s} every waiting_update_every_s
        resume       -> the same conversation on a new socket (token from `started`); agent
                        messages sent meanwhile are delivered
        message      -> resident_message (also while waiting)
        leave        -> waiting: resident_left (ABANDON, exact wait); talking: resident_ended
    router events (EventFeed of the `chat` channel):
        CONNECT -> `agent_joined`; agent MESSAGE -> `message`; COMPLETEAGENT -> `ended` by agent;
        EXITWITHTIMEOUT / ABANDON not caused here -> `ended` by timeout

A socket that drops while waiting has `reconnect_grace_s` to come back, else the chat is an
ABANDON at the time of the drop. A resident silent for `resident_idle_timeout_s` while talking is
ended (COMPLETECALLER) with `ended` by timeout. Bad frames get an `error` frame and are logged;
more than `max_frames_per_s` frames in a second closes the socket with 1008.

Sessions live in this process's memory: with several cityline processes, the `chat` channel's
events must reach the process holding the socket (run the chat in one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channels.chat.page import render_page
from channels.chat.protocol import (
    FrameError,
    LeaveFrame,
    MessageFrame,
    ResumeFrame,
    StartFrame,
    error_frame,
    parse_frame,
)
from channels.chat.session import ChatSession, token_hash
from router.config import CitylineConfig
from router.config_chat import ChatConfig
from router.errors import CitylineError
from router.http.app import json_error
from router.models import Channel, Event, EventType, IntakeRequest
from router.service import RoutingService
from router.waiting import WaitEstimator

logger = logging.getLogger(__name__)

PAGE_PATH = "/chat"
WS_PATH = "/chat/ws"
# Frames larger than this close the socket (aiohttp: 1009); text over max_message_chars but
# under it gets an error frame.
MAX_FRAME_BYTES = 64 * 1024
WAITING_STATES = frozenset({"queued", "offered"})
TERMINAL = frozenset({"closed", "abandoned", "timeout", "deflected"})


class ChatAdapter:
    """One per cityline process: `setup_routes(app)` before the app starts, then `start()`;
    `handle_event` is fed by the EventFeed of the `chat` channel; `stop()` at shutdown."""

    name = "chat"
    channel = "chat"

    def __init__(
        self,
        service: RoutingService,
        cfg: CitylineConfig,
        chat_cfg: ChatConfig,
        estimator: WaitEstimator,
        *,
        tick_s: float = 1.0,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.chat = chat_cfg
        self.estimator = estimator
        self.tick_s = tick_s
        self.sessions: dict[str, ChatSession] = {}  # by interaction id
        self.by_token: dict[str, ChatSession] = {}  # by token SHA-256
        self.sockets: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._maintain(), name="chat-maintenance")
        logger.info("chat: adapter started (queue %s)", self.chat.queue)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- routes -------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get(PAGE_PATH, self.page)
        app.router.add_get(WS_PATH, self.websocket)

    async def page(self, request: web.Request) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        languages = [lang for lang in self.cfg.city.languages if lang in ("pl", "en", "uk")]
        html = render_page(nonce, languages or ["pl", "en", "uk"], self.cfg.city.name,
                           self.chat.max_message_chars)
        headers = {
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers=headers)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self.sockets) >= self.chat.max_connections:
            logger.warning("chat: connection from %s refused: %d sockets open", request.remote,
                           len(self.sockets))
            return json_error(503, "too_many_connections", "the chat is full, try again later")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        self.sockets.add(ws)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(ws, request)
        finally:
            self.sockets.discard(ws)
            if task is not None:
                self._tasks.discard(task)
            # whichever session this socket last held, it is dropped now (not left)
            for s in list(self.sessions.values()):
                if s.ws is ws:
                    s.detach(ws)
                    logger.info("chat %s: connection dropped", s.ix_id)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, request: web.Request) -> ChatSession | None:
        session: ChatSession | None = None
        window: deque[float] = deque()
        async for msg in ws:
            now = time.monotonic()
            window.append(now)
            while window and now - window[0] > 1.0:
                window.popleft()
            if len(window) > self.chat.max_frames_per_s:
                logger.warning("chat: flood from %s (%d frames/s): closing", request.remote,
                               len(window))
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many frames")
                break
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await self._error(ws, request, "invalid_frame", "frames are JSON text")
                    continue
                break  # ERROR / CLOSE
            try:
                frame = parse_frame(msg.data, self.chat.max_message_chars)
            except FrameError as exc:
                await self._error(ws, request, exc.code, exc.message)
                continue
            try:
                session = await self._dispatch(ws, request, session, frame)
            except CitylineError as exc:
                await self._error(ws, request, exc.code, exc.message)
            except Exception:
                logger.exception("chat: handling a %s frame failed", type(frame).__name__)
                await self._error(ws, request, "internal_error", "try again in a moment")
            if ws.closed:
                break
        return session

    async def _error(self, ws: web.WebSocketResponse, request: web.Request, code: str,
                     message: str) -> None:
        logger.warning("chat: bad frame from %s: %s (%s)", request.remote, code, message)
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(error_frame(code, message))

    async def _dispatch(self, ws: web.WebSocketResponse, request: web.Request,
                        session: ChatSession | None, frame: Any) -> ChatSession | None:
        if isinstance(frame, StartFrame | ResumeFrame):
            if session is not None and not session.ended:
                await self._error(ws, request, "already_started",
                                  "this connection already holds a conversation")
                return session
            if isinstance(frame, StartFrame):
                return await self._start(ws, frame)
            return await self._resume(ws, request, frame)
        if session is None or session.ended or session.ws is not ws:
            await self._error(ws, request, "no_conversation", "send start or resume first")
            return session
        if isinstance(frame, MessageFrame):
            session.touch()
            await self.service.resident_message(session.ix_id, frame.text)
        elif isinstance(frame, LeaveFrame):
            await self._resident_leaves(session)
        return session

    # --- conversation -------------------------------------------------------------------

    async def _start(self, ws: web.WebSocketResponse, frame: StartFrame) -> ChatSession:
        req = IntakeRequest(
            channel=Channel.chat,
            queue=self.chat.queue,
            language=frame.language or None,
            topic=frame.topic or None,
            resident_name=frame.name,
            meta={"via": "web_chat"},
        )
        enq = await self.service.create_interaction(req)
        session, token = ChatSession.new(enq.id, enq.ref)
        session.attach(ws)
        self.sessions[enq.id] = session
        self.by_token[session.token_sha256] = session
        logger.info("chat %s: started (ref %s)", enq.id, enq.ref)
        await session.send({"type": "started", "ref": enq.ref, "token": token})
        await self._waiting_update(session)
        return session

    async def _resume(self, ws: web.WebSocketResponse, request: web.Request,
                      frame: ResumeFrame) -> ChatSession | None:
        session = self.by_token.get(token_hash(frame.token))
        if session is None or session.ended or not session.matches(frame.token):
            await self._error(ws, request, "unknown_token",
                              "no open conversation for this token: start a new one")
            return None
        old = session.attach(ws)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close(code=4000, message=b"resumed elsewhere")
        logger.info("chat %s: resumed", session.ix_id)
        await session.send({"type": "started", "ref": session.ref, "token": frame.token})
        ix = await self._interaction(session.ix_id)
        state = ix.get("state", "")
        if state in TERMINAL:
            await self._end(session, "timeout" if state == "timeout" else "agent")
        elif state == "connected" or state == "wrapup":
            session.agent = ""
            await self._announce_agent(session, ix.get("agent", ""))
            await self._flush(session)
        else:
            await self._waiting_update(session)
        return session

    async def _interaction(self, ix_id: str) -> dict[str, str]:
        try:
            return await self.service.store.interaction(ix_id)
        except Exception:
            return {}

    async def _resident_leaves(self, session: ChatSession, *, at_ms: int | None = None,
                               by: str = "resident") -> None:
        ix = await self._interaction(session.ix_id)
        state = ix.get("state", "")
        try:
            if state in WAITING_STATES:
                left = await self.service.resident_left(session.ix_id, at_ms=at_ms)
                logger.info("chat %s: resident left after %d ms waiting", session.ix_id,
                            left.wait_ms)
            elif state == "connected":
                await self.service.resident_ended(session.ix_id)
                logger.info("chat %s: ended by the resident (%s)", session.ix_id, by)
        except CitylineError as exc:  # the router moved on meanwhile (offer, agent ended)
            logger.info("chat %s: leaving refused: %s", session.ix_id, exc)
        await self._end(session, by)

    async def _end(self, session: ChatSession, by: str) -> None:
        """Tell the resident the conversation is over, close their socket, forget it."""
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.ix_id, None)
        self.by_token.pop(session.token_sha256, None)
        await session.send({"type": "ended", "by": by})
        ws = session.ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.OK, message=b"ended")

    async def _waiting_update(self, session: ChatSession) -> None:
        if session.ws is None or session.agent:
            return
        session.last_waiting_update = time.monotonic()
        est = await self.estimator.estimate(session.ix_id, self.chat.queue)
        if est is not None:
            await session.send({"type": "waiting", "position": est.position,
                                "estimated_wait_s": round(est.wait_s)})

    async def _announce_agent(self, session: ChatSession, agent_id: str) -> None:
        if not agent_id or session.agent == agent_id:
            return
        agent = self.cfg.agents.get(agent_id)
        name = (agent.name if agent is not None else "") or agent_id
        if await session.send({"type": "agent_joined", "name": name}):
            session.agent = agent_id
            session.touch()  # the idle clock starts when the conversation does

    async def _flush(self, session: ChatSession) -> None:
        """Deliver the agent's messages not delivered yet; only what was sent counts as seen."""
        async with session.lock:
            messages = await self.service.store.messages(session.ix_id)
            for m in messages[session.seen:]:
                if m.get("from") == "agent" and not await session.send(
                    {"type": "message", "from": "agent", "text": str(m.get("text") or "")}
                ):
                    return
                session.seen += 1

    # --- router events ------------------------------------------------------------------

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        session = self.sessions.get(event.ix)
        if session is None:
            return
        kind = event.type
        if kind == EventType.CONNECT:
            await self._announce_agent(session, event.agent or interaction.get("agent", ""))
            await self._flush(session)
        elif kind == EventType.MESSAGE:
            if (event.model_extra or {}).get("from") == "agent":
                await self._flush(session)
        elif kind == EventType.COMPLETEAGENT:
            await self._flush(session)
            await self._end(session, "agent")
        elif kind in (EventType.EXITWITHTIMEOUT, EventType.ABANDON, EventType.COMPLETECALLER):
            await self._end(session, "timeout" if kind == EventType.EXITWITHTIMEOUT
                            else "resident")
        elif kind == EventType.TRANSFER:
            session.agent = ""  # the next CONNECT announces the new agent

    # --- timers -------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except Exception:
                logger.exception("chat: maintenance tick failed")

    async def tick(self) -> None:
        """Grace periods, idle timeouts and waiting updates: one pass over the sessions."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.ended:
                continue
            try:
                if session.agent:
                    if now - session.last_activity > self.chat.resident_idle_timeout_s:
                        logger.info("chat %s: resident idle, ending", session.ix_id)
                        await self._resident_leaves(session, by="timeout")
                elif session.ws is None:
                    if (session.disconnected_at is not None
                            and now - session.disconnected_at > self.chat.reconnect_grace_s):
                        logger.info("chat %s: not back within the grace period", session.ix_id)
                        await self._resident_leaves(session, at_ms=session.disconnected_wall_ms)
                elif now - session.last_waiting_update >= self.chat.waiting_update_every_s:
                    await self._waiting_update(session)
            except Exception:
                logger.exception("chat %s: maintenance failed", session.ix_id)
