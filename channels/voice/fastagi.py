"""`FastAgiServer`: the TCP server Asterisk's ``AGI(agi://host:port/ivr)`` connects to.

One connection is one call. The server reads the agi_* environment, picks what to run by the
URL path (``agi_network_script``), runs the IVR flow, hands the outcome to the voice adapter's
`on_outcome` and finishes the call as the outcome says.

Which handler a script gets:
  1. a name in `handlers` (e.g. ``hold``, the adapter's hold loop): ``handler(session, env)``;
  2. a flow name (``agi://host:4573/city``): that flow;
  3. ``ivr_script`` (default ``ivr``, as the dialplan in asterisk_conf/ uses): the flow named by
     the first AGI argument, else `default_flow` (else the only flow);
  4. anything else is logged and the connection closed (the dialplan carries on).

After the flow, in this order: the outcome's channel variables (``CITYLINE_OUTCOME``,
``CITYLINE_QUEUE``, ..., see `channels.voice.ivr.outcome_variables`) are set; `on_outcome(env,
outcome)` is awaited while the AGI session is still open; if it returns a coroutine function,
that continuation runs on the same session (the adapter's hold loop for a `Routed` call:
music, announcements, the callback offer); otherwise a call whose outcome ends it (deflected,
callback requested, ended) is hung up with AGI HANGUP, and a routed call returns to the
dialplan. A `Routed` caller found gone by then (a HANGUP line seen) is reported as `HungUp`.

panoramisk's own `Application.handler` is not used: it loops forever on a connection closed
before the empty line (``reader.read`` returns b'' and the loop never ends), reads the
environment without a size limit, swallows the task's cancellation (``except BaseException``)
and calls ``asyncio.get_event_loop()`` unless given a loop. The `Application` exists only
because a panoramisk `Request` names one; it is created inside the running loop with that loop.

Every session is a tracked task; `stop()` closes the listening socket, lets sessions finish for
`grace_s`, cancels the rest and waits for them. A cap on concurrent sessions refuses more calls
(closed at once: Asterisk continues in the dialplan with AGISTATUS=FAILURE). Garbage, oversized
lines, a silent peer: logged, that connection closed, the server unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panoramisk.fast_agi import Application, Request

from channels.voice.agi import (
    MAX_LINE_BYTES,
    AgiError,
    AgiSession,
    CallerHungUp,
    FastAgiSession,
)
from channels.voice.agi_env import AgiEnv, read_env
from channels.voice.ivr import FlowOutcome, HungUp, Routed, outcome_variables, run_flow
from router.config_model import CitylineConfig
from router.ivr_flow import IvrFlow

logger = logging.getLogger(__name__)

Continuation = Callable[[AgiSession], Awaitable[None]]
OnOutcome = Callable[[AgiEnv, FlowOutcome], Awaitable[Continuation | None]]
AgiHandler = Callable[[AgiSession, AgiEnv], Awaitable[None]]


@dataclass(slots=True)
class FastAgiStats:
    """Counters since start, for /metrics and the tests."""

    accepted: int = 0
    refused: int = 0  # over max_sessions, or while stopping
    completed: int = 0  # flows that returned an outcome
    failed: int = 0  # sessions ended by bad input, a timeout or an error of ours


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FastAgiServer:
    """The FastAGI server of the voice channel. `start()`/`stop()`, or ``async with``."""

    name = "fastagi"

    def __init__(
        self,
        cfg: CitylineConfig,
        flows: Mapping[str, IvrFlow],
        on_outcome: OnOutcome,
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        ivr_script: str = "ivr",
        default_flow: str | None = None,
        handlers: Mapping[str, AgiHandler] | None = None,
        max_sessions: int = 500,
        clock: Callable[[], datetime] = _utc_now,
        env_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        media_timeout_s: float = 120.0,
        outcome_timeout_s: float = 30.0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        if default_flow is None and len(flows) == 1:
            default_flow = next(iter(flows))
        if default_flow is not None and default_flow not in flows:
            raise ValueError(f"default flow {default_flow!r} is not one of {sorted(flows)}")
        self.cfg = cfg
        self.flows = dict(flows)
        self.on_outcome = on_outcome
        self.host = host
        self.port = port
        self.ivr_script = ivr_script
        self.default_flow = default_flow
        self.handlers = dict(handlers or {})
        self.max_sessions = max_sessions
        self.clock = clock
        self.env_timeout_s = env_timeout_s
        self.command_timeout_s = command_timeout_s
        self.media_timeout_s = media_timeout_s
        self.outcome_timeout_s = outcome_timeout_s
        self.max_line_bytes = max_line_bytes
        self.stats = FastAgiStats()
        self._server: asyncio.Server | None = None
        self._app: Application | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._ids = itertools.count(1)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the FastAGI server is already running")
        self._stopping = False
        self._app = Application(loop=asyncio.get_running_loop())
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=self.max_line_bytes
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("fastagi: listening on %s:%d", self.host, self.port)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop taking calls, give running sessions `grace_s`, cancel the rest, close."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no new connections from here on
        if grace_s > 0 and self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
            logger.info("fastagi: stopped (%d cancelled)", len(tasks))

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- connections ----------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain function, not a coroutine: asyncio would otherwise make an untracked task.
        if self._stopping or len(self._tasks) >= self.max_sessions:
            self.stats.refused += 1
            logger.warning("fastagi: call refused from %s (%d sessions, max %d%s)",
                           writer.get_extra_info("peername"), len(self._tasks),
                           self.max_sessions, ", stopping" if self._stopping else "")
            writer.close()
            return
        self.stats.accepted += 1
        task = asyncio.get_running_loop().create_task(
            self._session(reader, writer), name=f"fastagi-session-{next(self._ids)}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # _session catches everything but cancellation: this is a bug of ours
            logger.critical("fastagi: session task died", exc_info=task.exception())

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        call = "?"
        try:
            headers = await read_env(reader, timeout_s=self.env_timeout_s)
            env = AgiEnv.from_headers(headers, self.cfg.city.country)
            call = env.uniqueid or env.channel or "?"
            request = Request(app=self._app, headers=headers, reader=reader, writer=writer)
            session = FastAgiSession(
                request,
                command_timeout_s=self.command_timeout_s,
                media_timeout_s=self.media_timeout_s,
            )
            await self._dispatch(session, env)
        except CallerHungUp as exc:
            logger.info("fastagi: call %s from %s gone: %s", call, peer, exc)
        except AgiError as exc:
            self.stats.failed += 1
            logger.warning("fastagi: session from %s (call %s) ended: %s: %s",
                           peer, call, type(exc).__name__, exc)
        except Exception:
            self.stats.failed += 1
            logger.exception("fastagi: session from %s (call %s) failed", peer, call)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _dispatch(self, session: FastAgiSession, env: AgiEnv) -> None:
        handler = self.handlers.get(env.script)
        if handler is not None:
            await handler(session, env)
            return
        flow = self._flow_for(env)
        if flow is None:
            logger.warning("fastagi: no flow for AGI script %r (call %s); known: %s",
                           env.script, env.uniqueid, ", ".join(sorted(self.flows)) or "none")
            return
        logger.debug("fastagi: call %s from %s runs flow %s", env.uniqueid,
                     env.caller.number, flow.name)
        outcome = await run_flow(
            session,
            flow,
            env,
            tz=self.cfg.city.timezone,
            region=self.cfg.city.country,
            clock=self.clock,
        )
        if outcome.kind == "ended" and session.broken is not None:
            self.stats.failed += 1
        else:
            self.stats.completed += 1
        await self._finish(session, env, outcome)

    def _flow_for(self, env: AgiEnv) -> IvrFlow | None:
        if env.script in self.flows:
            return self.flows[env.script]
        if env.script != self.ivr_script:
            return None
        if env.args and env.args[0] in self.flows:
            return self.flows[env.args[0]]
        return self.flows.get(self.default_flow) if self.default_flow else None

    async def _finish(self, session: FastAgiSession, env: AgiEnv, outcome: FlowOutcome) -> None:
        if session.broken is None and not isinstance(outcome, HungUp):
            try:
                for name, value in outcome_variables(outcome).items():
                    await session.set_variable(name, value)
            except AgiError as exc:
                logger.warning("fastagi: call %s: setting the outcome variables: %s",
                               env.uniqueid, exc)
        # SET VARIABLE still works on a dead channel (25); the HANGUP line Asterisk sends
        # between replies is what tells that the caller left before waiting in any queue
        if isinstance(outcome, Routed) and (session.hung_up or session.broken is not None):
            outcome = HungUp(outcome.path, outcome.path[-1], outcome.language)
        logger.info("fastagi: call %s ivr %s: %s", env.uniqueid, outcome.kind, _brief(outcome))
        continuation = await self._tell(env, outcome)
        if session.broken is not None:
            return
        with contextlib.suppress(CallerHungUp):
            if continuation is not None:
                await continuation(session)
            elif outcome.ends_call:
                await session.hangup()

    async def _tell(self, env: AgiEnv, outcome: FlowOutcome) -> Continuation | None:
        try:
            async with asyncio.timeout(self.outcome_timeout_s):
                return await self.on_outcome(env, outcome)
        except TimeoutError:
            logger.error("fastagi: on_outcome took over %g s for call %s (%s)",
                         self.outcome_timeout_s, env.uniqueid, outcome.kind)
        except Exception:
            logger.exception("fastagi: on_outcome failed for call %s (%s)", env.uniqueid,
                             outcome.kind)
        return None


def _brief(outcome: FlowOutcome) -> str:
    fields: dict[str, Any] = {
        k: getattr(outcome, k)
        for k in ("queue", "topic", "language", "reason", "at_node")
        if getattr(outcome, k, None)
    }
    fields["path"] = ">".join(outcome.path)
    return " ".join(f"{k}={v}" for k, v in fields.items())
