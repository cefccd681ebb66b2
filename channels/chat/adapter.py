"""The web chat adapter: the resident page and its WebSocket, and the router's events back to it.

    GET /chat       the resident page (channels/chat/page.py)
    GET /chat/ws    JSON frames (channels/chat/protocol.py):
        start        -> interaction in the chat queue; `started` {ref, token}, then `waiting`
                        {position, estimated_wait_s} every waiting_update_every_s
        resume       -> the same conversation on a new socket (token from `started`), in this or
                        any other cityline process; agent messages sent meanwhile are delivered
                        once
        message      -> resident_message (also while waiting)
        leave        -> waiting: resident_left (ABANDON, exact wait); talking: resident_ended
    router events (EventFeed of the `chat` channel) and, every tick, the state of each held
    conversation: an agent connected -> `agent_joined`; agent MESSAGE -> `message`; a message of
    the city's own (sender "system": a case number and its status link, router.case_notices)
    -> `message` {from: "city", text, link}, its delivery recorded; back in the
    queue -> `agent_left` {reason}; COMPLETEAGENT -> `ended` by agent; EXITWITHTIMEOUT / ABANDON
    not caused here -> `ended` by timeout / resident

Sockets live in the process that accepted them; what it takes to resume a conversation lives in
the chat channel's memory (`service.channel_state("chat")`, see session.py), so a resident may
come back to another process or after a restart. The feed hands an event to one process of the
channel: the one holding the socket acts at once, any other is caught up on its next tick.

Timers, checked by every process's sweep (the first to claim an action does it):
- a socket that dropped has `reconnect_grace_s` to come back: a chat still waiting (or whose
  agent was never announced) is then an ABANDON at the time of the drop (or ended). A process
  that dies holding sockets stops its heartbeat: its sockets count as dropped from then on.
- a resident silent for `resident_idle_timeout_s` while talking is ended (COMPLETECALLER) with
  `ended` by timeout.
- `agent_idle_timeout_s`: the agent wrote nothing this long while the resident waits for an
  answer: the chat goes back to its queue keeping its place (`agent_left` agent_inactive).
- `agent_reply_timeout_s` (checked by the holder of the socket): the resident is told once per
  unanswered stretch that an agent will answer shortly (`notice` reply_pending), with a warning.

Bad frames get an `error` frame and are logged; more than `max_frames_per_s` frames in a second
closes the socket with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channels.chat.page import TEXTS, render_page
from channels.chat.protocol import (
    FrameError,
    LeaveFrame,
    MessageFrame,
    ResumeFrame,
    StartFrame,
    error_frame,
    parse_frame,
)
from channels.chat.session import ChatSession, now_ms, token_hash
from router.config import CitylineConfig
from router.config_chat import ChatConfig
from router.errors import BadRequest, CitylineError, NotFound
from router.http.app import json_error
from router.identity import contact_of
from router.models import Channel, Event, EventType, IntakeRequest, TransferRequest
from router.service import RoutingService
from router.tasks import cancel_for_sure
from router.waiting import WaitEstimator

logger = logging.getLogger(__name__)

PAGE_PATH = "/chat"
WS_PATH = "/chat/ws"
# Frames larger than this close the socket (aiohttp: 1009); text over max_message_chars but
# under it gets an error frame.
MAX_FRAME_BYTES = 64 * 1024
# a socket whose conversation did not change is still brought up to date this often (a resume
# on another process is noticed by it)
RESYNC_EVERY_S = 10.0
# the resident's last sign of life is written at most this often (idle timeouts are minutes)
ACTIVE_SAVE_EVERY_S = 5.0
WAITING_STATES = frozenset({"queued", "offered"})
TERMINAL = frozenset({"closed", "abandoned", "timeout", "deflected"})
# A conversation's links outlive any chat (refreshed by every write); an ended one is kept this
# long for a resident coming back to read what they missed.
SESSION_TTL_S = 86_400.0
ENDED_TTL_S = 3_600.0
# one-time actions of the sweep (ending, handing back) are claimed this long
CLAIM_TTL_S = 86_400.0
AGENT_INACTIVE_NOTE = "agent inactive"
# the links a city message may carry to the page: a case's status page, relative (served here)
# or on the configured public site; anything else (javascript:, data:) is never sent
SAFE_LINK = re.compile(
    r"^(?:https?://[^\s\"'<>?#]+?)?/cases/[A-Za-z0-9-]{1,64}(?:\?lang=[a-z]{2})?$")


def awaiting_answer(messages: list[dict[str, Any]], connected_ms: int
                    ) -> tuple[int, int | None] | None:
    """Since when (wall ms) the resident waits for the connected agent's answer, and the index
    of their first unanswered message (None when they wait for a greeting); None when the agent
    spoke last. Only the agent's messages since `connected_ms` answer."""
    agent_spoke = False
    first: int | None = None
    first_t = 0
    for i, m in enumerate(messages):
        t = int(m.get("t") or 0)
        if m.get("from") == "agent" and t >= connected_ms:
            agent_spoke, first = True, None
        elif m.get("from") == "resident" and first is None:
            first, first_t = i, t
    if first is not None:
        return max(first_t, connected_ms), first
    return None if agent_spoke else (connected_ms, None)


def message_frame(m: dict[str, Any]) -> dict[str, Any]:
    """The `message` frame of an agent's message, or of the city's own (sender "system": a
    case number with its status link, which the page makes clickable)."""
    text = str(m.get("text") or "")
    if m.get("from") != "system":
        return {"type": "message", "from": "agent", "text": text}
    frame: dict[str, Any] = {"type": "message", "from": "city", "text": text}
    link = str(m.get("link") or "")
    if SAFE_LINK.match(link):
        frame["link"] = link
    return frame


def ended_by(ix: dict[str, str]) -> str:
    """Who ended a conversation, as the `ended` frame says it."""
    state = ix.get("state", "")
    if state == "timeout":
        return "timeout"
    if state == "abandoned" or ix.get("ended_by") == "caller":
        return "resident"
    return "agent"


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
        sweep_every_s: float = 5.0,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.chat = chat_cfg
        self.estimator = estimator
        self.tick_s = tick_s
        self.sweep_every_s = sweep_every_s
        self.state = service.channel_state(Channel.chat)
        # this adapter instance, as the links name the holder of a socket
        self.instance = secrets.token_hex(8)
        self.sessions: dict[str, ChatSession] = {}  # by interaction id: sockets held here
        self.sockets: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._stopping = False

    @property
    def heartbeat_ttl_s(self) -> float:
        return max(2.0, 3 * self.sweep_every_s, 3 * self.tick_s)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self._heartbeat()
        self._loop_task = asyncio.create_task(self._maintain(), name="chat-maintenance")
        logger.info("chat: adapter started (queue %s, instance %s)", self.chat.queue,
                    self.instance)

    async def stop(self) -> None:
        self._stopping = True
        if self._loop_task is not None:
            await cancel_for_sure(self._loop_task)
            self._loop_task = None
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        # the conversations stay resumable elsewhere: their grace starts now
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await self._detach(session, session.ws)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.state.drop_link("process", self.instance)

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
                    with contextlib.suppress(Exception):
                        await self._detach(s, ws)
                    logger.info("chat %s: connection dropped", s.ix_id)
        return ws

    async def _detach(self, session: ChatSession, ws: web.WebSocketResponse | None) -> None:
        """The socket is gone: forget the session here, and start its grace period in the link
        unless the conversation was resumed elsewhere meanwhile."""
        if session.ws is not ws:
            return
        session.ws = None
        try:
            if session.ended:
                return
            link = await self.state.link("token", session.token_sha256)
            if link.get("conn") == session.conn and not link.get("ended"):
                await self.state.set_link("token", session.token_sha256,
                                          {"disconnected_wall_ms": str(now_ms()), "owner": ""},
                                          SESSION_TTL_S)
        finally:
            if self.sessions.get(session.ix_id) is session:
                del self.sessions[session.ix_id]

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
            if session is not None and not session.ended and session.ws is ws:
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
            await self.service.resident_message(session.ix_id, frame.text)
            if time.monotonic() - session.active_saved >= ACTIVE_SAVE_EVERY_S:
                session.active_saved = time.monotonic()
                await self._save(session, active_ms=str(now_ms()))
        elif isinstance(frame, LeaveFrame):
            await self._resident_leaves(session)
        return session

    async def _save(self, session: ChatSession, **fields: str) -> None:
        await self.state.set_link("token", session.token_sha256, fields, SESSION_TTL_S)

    # --- conversation -------------------------------------------------------------------

    def _contacts(self, frame: StartFrame) -> list[str]:
        if not frame.contact:
            return []
        try:
            return [contact_of(frame.contact, self.cfg.city.country)]
        except ValueError as exc:
            raise BadRequest(f"contact: {exc}", code="invalid_contact") from None

    async def _start(self, ws: web.WebSocketResponse, frame: StartFrame) -> ChatSession:
        contacts = self._contacts(frame)
        meta: dict[str, Any] = {"via": "web_chat"}
        if contacts:
            # kept with this conversation, with or without consent: the resident typed it into
            # the chat's start form to be answered, so a case made of this chat tells them by
            # it (router.case_notices). Consent only decides whether it also links them to
            # their earlier contacts (the resident directory).
            meta["contact"] = contacts[0]
        req = IntakeRequest(
            channel=Channel.chat,
            queue=self.chat.queue,
            language=frame.language or None,
            topic=frame.topic or None,
            resident_name=frame.name,
            meta=meta,
            contacts=contacts,
            consent=frame.consent,
        )
        enq = await self.service.create_interaction(req)
        language = frame.language or self.cfg.city.default_language
        session, token = ChatSession.new(enq.id, enq.ref, language)
        session.attach(ws)
        await self.state.set_link("token", session.token_sha256,
                                  {**session.link_fields(), "owner": self.instance},
                                  SESSION_TTL_S)
        await self.state.set_link("ix", enq.id, {"token": session.token_sha256}, SESSION_TTL_S)
        self.sessions[enq.id] = session
        logger.info("chat %s: started (ref %s)", enq.id, enq.ref)
        await session.send({"type": "started", "ref": enq.ref, "token": token})
        await self._waiting_update(session)
        return session

    async def _resume(self, ws: web.WebSocketResponse, request: web.Request,
                      frame: ResumeFrame) -> ChatSession | None:
        sha = token_hash(frame.token)
        link = await self.state.link("token", sha)
        if not link.get("ix"):
            await self._error(ws, request, "unknown_token",
                              "no open conversation for this token: start a new one")
            return None
        session = ChatSession.from_link(sha, link)
        session.attach(ws)
        if link.get("ended"):
            # it ended while the resident was away: what they missed, then the end
            logger.info("chat %s: resumed after its end", session.ix_id)
            await session.send({"type": "started", "ref": session.ref, "token": frame.token})
            await self._flush(session, await self._unseen(session))
            await self._finish(session, link["ended"])
            return None
        old = self.sessions.get(session.ix_id)
        if old is not None:  # the same conversation on another socket of this process
            old.ended = True
            self.sessions.pop(session.ix_id, None)
            if old.ws is not None and not old.ws.closed:
                with contextlib.suppress(Exception):
                    await old.ws.close(code=4000, message=b"resumed elsewhere")
        await self._save(session, conn=session.conn, owner=self.instance,
                         disconnected_wall_ms="0", active_ms=str(now_ms()))
        self.sessions[session.ix_id] = session
        logger.info("chat %s: resumed", session.ix_id)
        await session.send({"type": "started", "ref": session.ref, "token": frame.token})
        ix = await self._interaction(session.ix_id)
        if ix.get("state") == "connected":
            session.agent = ""  # the page may have been reloaded: say again who answers
        await self._sync(session, ix)
        if not session.ended and ix.get("state") in WAITING_STATES \
                and not session.last_waiting_update:
            await self._waiting_update(session)
        return session

    async def _interaction(self, ix_id: str) -> dict[str, str]:
        try:
            return await self.service.interaction(ix_id)
        except NotFound:
            return {}

    async def _leave(self, ix_id: str, state: str, *, at_ms: int | None = None) -> bool:
        """Tell the router the resident is gone; False if it had moved on meanwhile."""
        try:
            if state in WAITING_STATES:
                left = await self.service.resident_left(ix_id, at_ms=at_ms)
                logger.info("chat %s: resident left after %d ms waiting", ix_id, left.wait_ms)
            elif state == "connected":
                await self.service.resident_ended(ix_id)
                logger.info("chat %s: ended by the resident", ix_id)
            else:
                return False
        except CitylineError as exc:  # the router moved on meanwhile (offer, agent ended)
            logger.info("chat %s: leaving refused: %s", ix_id, exc)
            return False
        return True

    async def _resident_leaves(self, session: ChatSession, *, by: str = "resident") -> None:
        ix = await self._interaction(session.ix_id)
        await self._leave(session.ix_id, ix.get("state", ""))
        await self._finish(session, by)

    async def _finish(self, session: ChatSession, by: str) -> None:
        """Tell the resident the conversation is over, close their socket, forget it."""
        if session.ended:
            return
        session.ended = True
        if self.sessions.get(session.ix_id) is session:
            del self.sessions[session.ix_id]
        await session.send({"type": "ended", "by": by})
        ws = session.ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.OK, message=b"ended")
        await self.state.drop_link("token", session.token_sha256)
        await self.state.drop_link("ix", session.ix_id)

    async def _end_away(self, ix_id: str, sha: str, by: str, *, keep: bool) -> None:
        """The conversation ended with nobody's socket here: the holder (if any) or a resident
        coming back learns it from the link (`keep`), else the link is forgotten."""
        if keep:
            await self.state.set_link("token", sha, {"ended": by}, ENDED_TTL_S)
        else:
            await self.state.drop_link("token", sha)
        await self.state.drop_link("ix", ix_id)

    async def _waiting_update(self, session: ChatSession) -> None:
        if session.ws is None or session.agent or session.ended:
            return
        session.last_waiting_update = time.monotonic()
        est = await self.estimator.estimate(session.ix_id, self.chat.queue)
        if est is not None:
            await session.send({"type": "waiting", "position": est.position,
                                "estimated_wait_s": round(est.wait_s)})

    def _text(self, session: ChatSession, key: str) -> str:
        texts = TEXTS.get(session.language) or TEXTS.get(self.cfg.city.default_language) \
            or TEXTS["en"]
        return texts[key]

    async def _announce_agent(self, session: ChatSession, agent_id: str) -> None:
        if not agent_id or session.agent == agent_id:
            return
        agent = self.cfg.agents.get(agent_id)
        name = (agent.name if agent is not None else "") or agent_id
        if await session.send({"type": "agent_joined", "name": name}):
            session.agent = agent_id
            # the idle clock starts when the conversation does
            await self._save(session, agent=agent_id, active_ms=str(now_ms()))

    async def _agent_left(self, session: ChatSession, ix: dict[str, str]) -> None:
        """The conversation went back to the queue (handed back, transferred)."""
        reason = ("agent_inactive" if ix.get("transfer_note") == AGENT_INACTIVE_NOTE
                  else "transferred")
        if await session.send({"type": "agent_left", "reason": reason,
                               "text": self._text(session, reason)}):
            session.agent = ""
            await self._save(session, agent="")

    async def _unseen(self, session: ChatSession) -> list[dict[str, Any]]:
        """The conversation from the first message not yet looked at for delivery."""
        return await self.service.messages(session.ix_id, session.seen)

    async def _flush(self, session: ChatSession, unseen: list[dict[str, Any]]) -> None:
        """Deliver the agent's and the city's messages among `unseen` (the conversation from
        `session.seen` on); only what was sent counts as seen. A city message that is a case
        notice (router.case_notices: `notice` names its delivery record) is recorded as
        delivered once it is on the resident's socket."""
        start = session.seen
        for m in unseen:
            sender = m.get("from")
            if sender in ("agent", "system"):
                frame = message_frame(m)
                if not await session.send(frame):
                    break
                notice = str(m.get("notice") or "")
                if sender == "system" and notice:
                    await self.state.set_delivery(session.ix_id, notice, {
                        "status": "delivered", "to": session.ix_id, "via": "chat",
                        "attempts": 1, "error": "", "at_ms": now_ms()})
            session.seen += 1
        if session.seen != start:
            await self._save(session, seen=str(session.seen))

    async def _reply_notice(self, session: ChatSession, ix: dict[str, str],
                            messages: list[dict[str, Any]]) -> None:
        timeout_ms = self.chat.agent_reply_timeout_s * 1000
        if timeout_ms <= 0 or not session.agent:
            return
        connected_ms = int(ix.get("connected_ms") or 0)
        waiting = awaiting_answer(messages, connected_ms)
        if waiting is None or waiting[1] is None:
            return
        since, first = waiting
        key = f"{connected_ms}:{first}"
        if now_ms() - since < timeout_ms or session.notice == key:
            return
        logger.warning("chat %s: the resident's message waits %.0f s for agent %s's answer",
                       session.ix_id, (now_ms() - since) / 1000, session.agent)
        if await session.send({"type": "notice", "code": "reply_pending",
                               "text": self._text(session, "reply_pending")}):
            session.notice = key
            await self._save(session, notice=key)

    async def _sync(self, session: ChatSession, ix: dict[str, str] | None = None) -> None:
        """Bring the resident's socket up to date with the conversation: who answers, the
        agent's messages, its end. Idempotent: what was delivered is recorded in the link."""
        async with session.lock:
            if session.ended or session.ws is None:
                return
            link = await self.state.link("token", session.token_sha256)
            if link.get("ended"):
                await self._flush(session, await self._unseen(session))
                await self._finish(session, link["ended"])
                return
            if link and link.get("conn") != session.conn:
                logger.info("chat %s: resumed on another connection", session.ix_id)
                session.ended = True
                self.sessions.pop(session.ix_id, None)
                with contextlib.suppress(Exception):
                    await session.ws.close(code=4000, message=b"resumed elsewhere")
                return
            if ix is None:
                ix = await self._interaction(session.ix_id)
            state = ix.get("state", "")
            if not link and (state in WAITING_STATES or state == "connected"):  # expired: again
                await self.state.set_link("token", session.token_sha256,
                                          {**session.link_fields(), "owner": self.instance},
                                          SESSION_TTL_S)
                await self.state.set_link("ix", session.ix_id, {"token": session.token_sha256},
                                          SESSION_TTL_S)
            elif link.get("disconnected_wall_ms", "0") != "0" \
                    or link.get("owner") != self.instance:
                # a sweep took this socket for dropped (a race with a resume): it is here
                await self._save(session, disconnected_wall_ms="0", owner=self.instance)
            unseen = await self._unseen(session)
            if state in TERMINAL or state == "wrapup" or not state:
                await self._flush(session, unseen)
                await self._finish(session, ended_by(ix))
            elif state == "connected":
                await self._announce_agent(session, ix.get("agent", ""))
                await self._flush(session, unseen)
                if self.chat.agent_reply_timeout_s > 0:
                    await self._reply_notice(session, ix,
                                             await self.service.messages(session.ix_id))
            else:
                await self._flush(session, unseen)
                if session.agent:
                    await self._agent_left(session, ix)
                    await self._waiting_update(session)

    # --- router events ------------------------------------------------------------------

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        """Any event of a conversation held here brings its socket up to date (the others are
        caught up by the process holding them, on its next tick). The resident's own
        messages need nothing sent back."""
        session = self.sessions.get(event.ix)
        if session is None:
            return
        if event.type == EventType.MESSAGE \
                and (event.model_extra or {}).get("from") not in ("agent", "system"):
            return
        await self._sync(session, interaction or None)

    # --- timers -------------------------------------------------------------------------

    async def _maintain(self) -> None:
        task = asyncio.current_task()
        # a cancellation arriving inside a Redis pipeline can be swallowed by redis-py: the
        # loop also ends when stop() asked it to, or once a cancellation is pending
        while not self._stopping and not (task is not None and task.cancelling()):
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
                if time.monotonic() - self._last_sweep >= self.sweep_every_s:
                    self._last_sweep = time.monotonic()
                    await self.sweep()
            except Exception:
                logger.exception("chat: maintenance tick failed")

    async def tick(self) -> None:
        """The sockets held here: catch up with the conversations that changed (one round trip
        for all of them tells which), waiting updates."""
        now = time.monotonic()
        sessions = [s for s in list(self.sessions.values()) if not s.ended]
        marks = await self.service.conversation_marks([s.ix_id for s in sessions])
        for session in sessions:
            mark = marks.get(session.ix_id)
            try:
                timed = self.chat.agent_reply_timeout_s > 0 and mark and mark[0] == "connected"
                if mark != session.mark or now - session.synced_at >= RESYNC_EVERY_S or timed:
                    session.mark, session.synced_at = mark, now
                    await self._sync(session)
                if (not session.ended and not session.agent
                        and now - session.last_waiting_update >= self.chat.waiting_update_every_s):
                    await self._waiting_update(session)
            except Exception:
                logger.exception("chat %s: maintenance failed", session.ix_id)

    async def _heartbeat(self) -> None:
        await self.state.set_link("process", self.instance, {"alive_ms": str(now_ms())},
                                  self.heartbeat_ttl_s)

    async def sweep(self) -> None:
        """Every open chat, whichever process holds it (if any): grace periods, idle
        timeouts on both sides. Each action is claimed, so one process does it."""
        await self._heartbeat()
        for ix in await self.service.active_interactions(Channel.chat):
            try:
                await self._sweep_one(ix)
            except Exception:
                logger.exception("chat %s: sweep failed", ix.get("id"))

    async def _sweep_one(self, ix: dict[str, str]) -> None:
        ix_id, state = ix.get("id", ""), ix.get("state", "")
        now = now_ms()
        if state == "connected" and await self._agent_idle(ix, now):
            return
        sha = (await self.state.link("ix", ix_id)).get("token", "")
        if not sha:
            return  # not started by a web chat of this version
        link = await self.state.link("token", sha)
        if not link.get("ix") or link.get("ended"):
            return
        local = self.sessions.get(ix_id)
        held_here = local is not None and local.conn == link.get("conn") and not local.ended
        dropped = int(link.get("disconnected_wall_ms") or 0)
        if not dropped and not held_here:
            owner = link.get("owner", "")
            if owner == self.instance or not await self.state.link("process", owner):
                logger.info("chat %s: its process is gone: the connection counts as dropped",
                            ix_id)
                dropped = now
                await self.state.set_link("token", sha, {"disconnected_wall_ms": str(now),
                                                         "owner": ""}, SESSION_TTL_S)
        if state in WAITING_STATES or (state == "connected" and not link.get("agent")):
            if dropped and now - dropped > self.chat.reconnect_grace_s * 1000:
                await self._gone(ix_id, sha, state, dropped)
        elif state == "connected":
            active = int(link.get("active_ms") or 0)
            if now - active > self.chat.resident_idle_timeout_s * 1000:
                await self._idle(ix_id, sha, local if held_here else None)

    async def _gone(self, ix_id: str, sha: str, state: str, dropped_ms: int) -> None:
        """Not back within the grace period: an ABANDON at the time of the drop (or, if an
        agent took it meanwhile unannounced, ended)."""
        if not await self.state.claim("end", ix_id, CLAIM_TTL_S):
            return
        logger.info("chat %s: not back within the grace period", ix_id)
        if not await self._leave(ix_id, state, at_ms=dropped_ms if state in WAITING_STATES
                                 else None):
            await self.state.release("end", ix_id)
            return
        await self._end_away(ix_id, sha, "timeout", keep=state == "connected")

    async def _idle(self, ix_id: str, sha: str, local: ChatSession | None) -> None:
        if not await self.state.claim("end", ix_id, CLAIM_TTL_S):
            return
        logger.info("chat %s: resident idle, ending", ix_id)
        if local is not None:
            await self._leave(ix_id, "connected")
            await self._finish(local, "timeout")
            return
        # whoever holds the socket reads the end from the link before the router's state
        await self.state.set_link("token", sha, {"ended": "timeout"}, ENDED_TTL_S)
        if not await self._leave(ix_id, "connected"):
            await self.state.release("end", ix_id)
            link = await self.state.link("token", sha)
            if link.get("ended") == "timeout":
                await self.state.set_link("token", sha, {"ended": ""}, SESSION_TTL_S)
            return
        await self.state.drop_link("ix", ix_id)

    async def _agent_idle(self, ix: dict[str, str], now: int) -> bool:
        """Hand a chat whose agent stays silent back to its queue, keeping its place."""
        timeout_ms = self.chat.agent_idle_timeout_s * 1000
        agent, connected_ms = ix.get("agent", ""), int(ix.get("connected_ms") or 0)
        if timeout_ms <= 0 or not agent or not connected_ms:
            return False
        waiting = awaiting_answer(await self.service.messages(ix["id"]), connected_ms)
        if waiting is None or now - waiting[0] < timeout_ms:
            return False
        stint = f"{ix['id']}:{connected_ms}"
        if not await self.state.claim("handback", stint, CLAIM_TTL_S):
            return False
        try:
            await self.service.transfer(
                ix["id"],
                TransferRequest(queue=ix["queue"], keep_position=True, note=AGENT_INACTIVE_NOTE),
                by_agent=agent, by="system")
        except CitylineError as exc:  # the agent answered, completed or transferred meanwhile
            logger.info("chat %s: handing back refused: %s", ix["id"], exc)
            await self.state.release("handback", stint)
            return False
        logger.warning("chat %s: agent %s silent for %.0f s while the resident waits: back to "
                       "queue %s keeping its place", ix["id"], agent,
                       (now - waiting[0]) / 1000, ix["queue"])
        session = self.sessions.get(ix["id"])
        if session is not None:
            await self._sync(session)
        return True
