"""The composition root: the one place that builds every component and wires them together.

`Cityline` starts, in this order, each step needing the one before it:

1. Redis: the configured server (`redis.url` / `REDIS_URL` / `--redis-url`), or else an embedded
   `redis-server` under `data_dir/redis` (queues.embedded);
2. the redis.asyncio client and the key catalogue (`Keys(prefix)`);
3. the routing store, which registers the Lua scripts;
4. the long-running components (dispatcher, statistics worker, channel adapters) under one
   `Supervisor`: a component that dies is logged at CRITICAL and stops the server with exit 1;
5. the HTTP server (router/http/app.py), last, so no request arrives before what serves it runs.

`stop()` undoes it in reverse; see the comments there for why that order. The CLI owns the event
loop and the signals: it calls `async with Cityline(cfg) as city: await city.run_until(stop)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from queues.embedded import EmbeddedRedis, EmbeddedRedisError
from queues.keys import Keys
from queues.store import RoutingStore
from router.auth import Auth
from router.directory import Directory, DirectoryWatcher, attach
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.access_log import PathOnlyAccessLogger
from router.http.api import setup_api
from router.http.app import AppContext, create_app
from router.knowledge import KnowledgeBase, KnowledgeError, load_knowledge
from router.knowledge import attach as attach_knowledge
from router.metrics import setup_metrics
from router.service import RoutingService
from router.stats import StatsAggregator
from router.users import ensure_users
from router.waiting import wait_estimator

if TYPE_CHECKING:
    from router.config import CitylineConfig

logger = logging.getLogger(__name__)

# In-flight HTTP requests get this long after the listener closes; agents' clients retry.
HTTP_SHUTDOWN_TIMEOUT_S = 5.0
# The dispatcher finishes the decision in hand (one Lua call) well within this; past it, cancel.
COMPONENT_STOP_TIMEOUT_S = 10.0
# First contact with Redis at start: a server that does not answer INFO in this time is down.
REDIS_CONNECT_TIMEOUT_S = 10.0
# The Lua scripts rely on `redis.replicate_commands()` / TIME semantics of 6.2 (DESIGN.md).
MIN_REDIS_VERSION = (6, 2)
# Connections one process may hold; blocking reads of the event stream keep one each.
REDIS_MAX_CONNECTIONS = 200
# How often the embedded redis-server's process is checked for an unexpected exit.
EMBEDDED_WATCH_INTERVAL_S = 1.0

# A component is a coroutine function that runs until the event is set, then returns.
ComponentRun = Callable[[asyncio.Event], Awaitable[None]]


class StartupError(RuntimeError):
    """cityline cannot start; the message says what to change. Printed without a traceback."""


def redact_url(url: str) -> str:
    """The URL without its password, for logs: `redis://user:***@host:6379/0`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def configured_redis_url(config: CitylineConfig) -> str | None:
    secret = config.redis.url
    return secret.get_secret_value() if secret is not None else None


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


class Supervisor:
    """Runs the long-lived loops and notices when one of them stops on its own.

    Why not a bare `asyncio.TaskGroup`: a TaskGroup lives inside one `async with` block and, on a
    failure, cancels the siblings at once. The server needs start/stop as two calls, a graceful
    stop first (set the event, let the dispatcher finish the decision in hand) and cancellation
    only after a deadline, and a dead component reported through the same orderly shutdown as
    SIGTERM. Every task is tracked here and its result retrieved in `_on_done` (STYLE.md 11-12).
    """

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], str] = {}
        self.failed = asyncio.Event()
        self.failures: list[str] = []
        # Set by the owner as soon as shutdown begins (before the HTTP server stops): from then
        # on a component that errors out (Redis closing under it) is reported, not a failure.
        self.shutting_down = False

    @property
    def names(self) -> list[str]:
        return list(self._tasks.values())

    def start(self, name: str, run: ComponentRun) -> None:
        if self._stop.is_set():
            raise RuntimeError(f"supervisor is stopping; cannot start {name}")
        task: asyncio.Task[None] = asyncio.create_task(self._run(run), name=f"cityline:{name}")
        self._tasks[task] = name
        task.add_done_callback(self._on_done)

    async def _run(self, run: ComponentRun) -> None:
        await run(self._stop)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        name = self._tasks[task]
        stopping = self.shutting_down or self._stop.is_set()
        if task.cancelled():
            if stopping:
                logger.info("%s: cancelled after the stop deadline", name)
                return
            self._fail(name, "was cancelled while cityline was running", None)
            return
        exc = task.exception()
        if exc is not None and stopping:
            logger.error("%s failed while stopping: %r", name, exc, exc_info=exc)
        elif exc is not None:
            self._fail(name, f"died: {exc!r}", exc)
        elif not stopping:
            self._fail(name, "returned while cityline was running", None)
        else:
            logger.info("%s: stopped", name)

    def _fail(self, name: str, what: str, exc: BaseException | None) -> None:
        logger.critical("%s %s; stopping cityline", name, what, exc_info=exc)
        self.failures.append(name)
        self.failed.set()

    async def stop(self, grace_s: float = COMPONENT_STOP_TIMEOUT_S) -> None:
        """Ask every component to stop, wait up to `grace_s`, then cancel what is left."""
        self._stop.set()
        pending = {task for task in self._tasks if not task.done()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace_s)
        for task in late:
            logger.warning(
                "%s: still running %g s after stop; cancelling", self._tasks[task], grace_s
            )
            task.cancel()
        if late:
            _, stuck = await asyncio.wait(late, timeout=grace_s)
            for task in stuck:
                logger.error("%s: ignored cancellation; abandoning it", self._tasks[task])


class Cityline:
    """Everything one `cityline serve` process runs. Use as an async context manager.

    `redis_url` overrides the configured one (`--redis-url`). `http=False` and
    `embedded_redis=False` give the dispatcher-only process of `cityline dispatch`.
    """

    def __init__(
        self,
        config: CitylineConfig,
        *,
        redis_url: str | None = None,
        http: bool = True,
        embedded_redis: bool = True,
        stats: bool = True,
        channels: bool = True,
        name: str | None = None,
    ) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.keys = Keys(config.redis.prefix)
        self.registry = CollectorRegistry()
        self.supervisor = Supervisor()
        self.embedded: EmbeddedRedis | None = None
        self.redis: aioredis.Redis | None = None
        self.redis_url: str | None = redis_url or configured_redis_url(config)
        self.store: RoutingStore | None = None
        self.service: RoutingService | None = None
        self.directory: Directory | None = None  # admins' changes to agents and queues
        self.adapters: list[Any] = []  # channel adapters started by this process
        self.knowledge: KnowledgeBase | None = None  # the first line's cards (HTTP API)
        self.app: web.Application | None = None
        self.http_port: int | None = None
        self.http_url: str | None = None
        self._with_http = http
        self._with_stats = stats
        self._with_channels = channels
        self._allow_embedded = embedded_redis
        self._runner: web.AppRunner | None = None
        self._extra: list[tuple[str, ComponentRun]] = []
        self._started = False
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------------------

    def add_component(self, name: str, run: ComponentRun) -> None:
        """Register another supervised loop (e.g. a channel adapter) before `start()`."""
        if self._started:
            raise RuntimeError("add_component() after start()")
        self._extra.append((name, run))

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("Cityline.start() called twice")
        self._started = True
        if self._with_http:  # bad knowledge cards stop the start before anything runs
            try:
                self.knowledge = load_knowledge(self.config)
            except KnowledgeError as exc:
                raise StartupError(f"knowledge cards cannot be used:\n{exc}") from None
        await self._start_redis()
        await self._start_store()
        self._start_components()
        if self._with_http:
            await self._start_http()
        logger.info("cityline: started name=%s", self.name)

    async def run_until(self, stop: asyncio.Event) -> int:
        """Serve until `stop` is set (exit code 0) or a component dies (exit code 1)."""
        waiters = [
            asyncio.create_task(stop.wait(), name="cityline:stop-requested"),
            asyncio.create_task(self.supervisor.failed.wait(), name="cityline:component-failed"),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if self.supervisor.failed.is_set():
            logger.critical(
                "cityline: stopping because %s failed", ", ".join(self.supervisor.failures)
            )
            return 1
        return 0

    async def stop(self) -> None:
        """Tear down in reverse order of start; safe after a partial start and when repeated.

        Each step runs even when an earlier one fails, so the embedded redis-server is never left
        behind holding the data directory.
        """
        if self._stopped:
            return
        self._stopped = True
        self.supervisor.shutting_down = True
        logger.info("cityline: stopping")
        # 1. HTTP intake first: no new interaction, agent action or webhook arrives while the
        #    rest shuts down, and requests in flight still have the store and Redis to finish.
        await self._step("http", self._stop_http())
        # 2. The loops next (dispatcher, statistics, adapters): the work they react to has
        #    stopped arriving; each finishes the decision in hand (its commit is one Lua call, so
        #    atomic either way), and is cancelled after COMPONENT_STOP_TIMEOUT_S.
        await self._step("components", self.supervisor.stop(COMPONENT_STOP_TIMEOUT_S))
        # 3. The Redis client: nothing above uses it any more.
        await self._step("redis client", self._close_redis())
        # 4. The embedded redis-server last: SIGTERM makes it fsync the AOF, and everything that
        #    could still write to it has stopped.
        await self._step("embedded redis", self._stop_embedded())
        logger.info("cityline: stopped")

    async def __aenter__(self) -> Cityline:
        try:
            await self.start()
        except BaseException:
            # A failed start (busy port, Redis down, bad script) must not leave the embedded
            # redis-server or half-open sockets behind.
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- start steps ---------------------------------------------------------------------------

    async def _start_redis(self) -> None:
        url = self.redis_url
        if url is None:
            if not self._allow_embedded:
                raise StartupError(
                    "no Redis configured: set REDIS_URL, redis.url in the config, or --redis-url"
                )
            url = self.redis_url = self._start_embedded()
        # A blocking pool: under a burst, requests wait for a free connection (bounded by the
        # timeout) instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=REDIS_MAX_CONNECTIONS, timeout=10
        )
        self.redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        try:
            async with asyncio.timeout(REDIS_CONNECT_TIMEOUT_S):
                info = await self.redis.info("server")
        except Exception as exc:
            raise StartupError(f"cannot reach Redis at {redact_url(url)}: {exc}") from exc
        version = str(info.get("redis_version", "unknown"))
        if _version_tuple(version) < MIN_REDIS_VERSION:
            raise StartupError(
                f"Redis {version} at {redact_url(url)} is too old: need 6.2 or later"
            )
        if self.embedded is not None:
            logger.info(
                "redis: embedded redis-server %s at %s (AOF everysec, data %s)",
                version,
                url,
                self.embedded.data_dir,
            )
        else:
            logger.info("redis: redis-server %s at %s", version, redact_url(url))

    def _start_embedded(self) -> str:
        # The embedded server asks Linux to SIGTERM it when the thread that forked it exits
        # (PR_SET_PDEATHSIG), so it must be forked by the main thread, which lives as long as the
        # process; from an executor thread it would die whenever that thread is retired.
        if threading.current_thread() is not threading.main_thread():
            raise StartupError("the embedded Redis must be started from the main thread")
        self.embedded = EmbeddedRedis(self.config.data_dir / "redis")
        try:
            # Blocking on purpose (a PING probe of at most a few seconds): nothing else runs on
            # the loop yet, and the fork has to happen on this thread (see above).
            self.embedded.start()
        except EmbeddedRedisError as exc:
            self.embedded = None
            raise StartupError(f"embedded Redis failed to start: {exc}") from exc
        return self.embedded.url

    async def _start_store(self) -> None:
        assert self.redis is not None
        self.store = RoutingStore(
            self.redis, self.keys, events_maxlen=self.config.redis.events_maxlen
        )
        await self.store.load_scripts()
        # the service gives the store the city's clock (reference numbers' year) and is what
        # the HTTP API and the channels call
        self.service = RoutingService(self.store, self.config)
        # admins' changes to agents and queues (router/directory.py) apply over the file's
        # before anything routes; refresh() also writes every agent's profile
        self.directory = Directory(self.redis, self.keys, self.config, scripts=self.store.scripts,
                                   events_maxlen=self.config.redis.events_maxlen,
                                   service=self.service)  # fmt: skip
        attach(self.service, self.directory)
        await self.directory.refresh(force=True)
        logger.info(
            "store: Lua scripts loaded on %s (key prefix %r)",
            redact_url(self.redis_url or ""),
            self.keys.prefix,
        )

    def _start_components(self) -> None:
        # ---- every long-running loop of the process is started here, under the supervisor ----
        # Each component logs its own start line with its details once its task runs.
        dispatcher = self._make_dispatcher()
        if dispatcher is not None:
            self.supervisor.start("dispatcher", dispatcher.run)
        aggregator = self._make_stats_aggregator() if self._with_stats else None
        if aggregator is not None:
            self.supervisor.start("stats", aggregator.run)
        if self.embedded is not None:
            self.supervisor.start("redis-watch", self._watch_embedded)
        if self.directory is not None:
            self.supervisor.start("directory", DirectoryWatcher(self.directory).run)
        for name, run in self._channel_components():
            self.supervisor.start(name, run)
        for name, run in self._case_components():
            self.supervisor.start(name, run)
        for name, run in self._extra:
            self.supervisor.start(name, run)
        if self.supervisor.names:
            logger.info(
                "supervisor: running %s (name=%s)", ", ".join(self.supervisor.names), self.name
            )

    def _channel_components(self) -> list[tuple[str, ComponentRun]]:
        """Each enabled channel adapter, and the feed of router events it must act on."""
        if self.service is None or self.redis is None or not self._with_channels:
            return []
        adapters: list[Any] = []
        if self.config.channels.voice.enabled:
            from channels.voice.factory import VoiceConfigError, build_voice_adapter

            try:
                adapters.append(
                    build_voice_adapter(self.service, self.config)
                )
            except VoiceConfigError as exc:
                raise StartupError(str(exc)) from exc
        if self.config.channels.email.enabled:
            from channels.email.adapter import EmailAdapter

            adapters.append(
                EmailAdapter(self.service, self.config.channels.email, self.config.data_dir)
            )
        if self.config.channels.chat.enabled:
            from channels.chat.adapter import ChatAdapter

            adapters.append(ChatAdapter(self.service, self.config, self.config.channels.chat,
                                        wait_estimator(self.service)))
        if self.config.channels.webform.enabled:
            from channels.webform.adapter import WebformAdapter

            adapters.append(WebformAdapter(self.service, self.config,
                                           self.config.channels.webform, self.config.data_dir))
        telegram = self.config.channels.telegram
        if telegram.enabled and not os.environ.get(telegram.token_env):
            # the packaged city enables it: it starts once the city has a bot
            logger.warning("telegram: %s is not set: the Telegram channel starts once a bot "
                           "token is configured", telegram.token_env)
        elif telegram.enabled:
            from channels.telegram.adapter import TelegramAdapter

            adapters.append(TelegramAdapter(self.service, self.config, telegram))
        if self.config.channels.sms.enabled:
            from channels.sms.adapter import SmsAdapter

            adapters.append(SmsAdapter(self.service, self.config.channels.sms,
                                       self.config.data_dir))
        self.adapters = adapters
        components: list[tuple[str, ComponentRun]] = []
        for adapter in adapters:
            components.append((adapter.name, _adapter_lifecycle(adapter)))
            feed = EventFeed(self.redis, self.keys, adapter, consumer=self.name)
            components.append((f"{adapter.name}-events", feed.run))
        return components

    def _case_components(self) -> list[tuple[str, ComponentRun]]:
        """The case notices worker: every process with channels runs one consumer of the
        `cases:notices` group, so a notice is queued even if the process that changed the case
        died right after its script (router/case_worker.py)."""
        if (self.service is None or self.redis is None or not self._with_channels
                or not self.config.cases.enabled):
            return []
        from router.case_worker import CaseNoticeWorker

        feed = EventFeed(self.redis, self.keys, CaseNoticeWorker(self.service),
                         consumer=self.name)
        return [("case-notices", feed.run)]

    def _make_dispatcher(self) -> Any:
        if self.store is None:
            return None
        return Dispatcher(self.store, self.config, self.name)

    def _make_stats_aggregator(self) -> Any:
        """Folds cl:events into the 15-minute aggregates; any number may run (cursor-checked)."""
        assert self.redis is not None
        return StatsAggregator(self.redis, self.keys, self.config)

    async def _watch_embedded(self, stop: asyncio.Event) -> None:
        """Fail loudly if the embedded redis-server exits under us (OOM killer, disk full)."""
        embedded = self.embedded
        assert embedded is not None and embedded.process is not None
        process = embedded.process
        while not stop.is_set():
            code = process.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"embedded redis-server exited with {code}; see {embedded.data_dir}/redis.log"
                )
            try:
                async with asyncio.timeout(EMBEDDED_WATCH_INTERVAL_S):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _start_http(self) -> None:
        assert self.redis is not None and self.service is not None
        http = self.config.http
        auth = Auth(self.redis, self.keys, self.config)
        created = await ensure_users(self.redis, self.keys, self.config)
        if created:
            logger.info("users: %d created from the configuration", len(created))
        service, redis = self.service, self.redis
        if self.knowledge is not None:
            attach_knowledge(service, self.knowledge)
        self.app = create_app(
            AppContext(
                config=self.config,
                redis=self.redis,
                keys=self.keys,
                store=self.store,
                registry=self.registry,
            ),
            extra_setup=[
                lambda app: setup_api(app, service, auth),
                # webhooks and resident pages of the channels that have them (SMS, chat, ...)
                *(a.setup_routes for a in self.adapters if hasattr(a, "setup_routes")),
                lambda app: setup_metrics(app, StatsAggregator(redis, self.keys, self.config)),
            ],
        )
        # handle_signals stays False: only the CLI owns signal handlers.
        self._runner = web.AppRunner(self.app, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
                                     access_log_class=PathOnlyAccessLogger)
        await self._runner.setup()
        site = web.TCPSite(self._runner, http.host, http.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {http.host}:{http.port}: {exc}") from exc
        self.http_port = int(self._runner.addresses[0][1])
        wildcard = http.host in ("0.0.0.0", "::", "")
        shown = "127.0.0.1" if wildcard else http.host
        self.http_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{self.http_port}"
        logger.info(
            "http: %s (API /api/v1, health /healthz, metrics /metrics)%s",
            self.http_url,
            " listening on all interfaces" if wildcard else "",
        )

    # --- stop steps ----------------------------------------------------------------------------

    async def _step(self, what: str, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception:
            logger.exception("stopping %s failed; going on with the rest", what)

    async def _stop_http(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            logger.info("http: stopped")

    async def _close_redis(self) -> None:
        if self.redis is not None:
            client, self.redis = self.redis, None
            await client.aclose()

    async def _stop_embedded(self) -> None:
        if self.embedded is not None:
            embedded = self.embedded
            # Off the loop: redis-server may take a moment to fsync the AOF and exit.
            await asyncio.to_thread(embedded.stop)
            logger.info("redis: embedded redis-server stopped (data %s)", embedded.data_dir)


def _adapter_lifecycle(adapter: Any) -> ComponentRun:
    """A channel adapter as a supervised component: started, held until stop, stopped."""

    async def run(stop: asyncio.Event) -> None:
        await adapter.start()
        try:
            await stop.wait()
        finally:
            await adapter.stop()

    return run


async def run_dispatcher_only(
    config: CitylineConfig,
    stop: asyncio.Event | None = None,
    *,
    redis_url: str | None = None,
) -> int:
    """`cityline dispatch`: one more dispatcher on a shared Redis, no HTTP, no embedded server.

    Several dispatchers may run at once: the `reserve` script re-checks every pick, so two of them
    never offer one interaction twice. Returns the exit code; runs until `stop` is set (or
    forever, when it is None and the caller cancels).
    """
    url = redis_url or configured_redis_url(config)
    if not url:
        raise StartupError(
            "`cityline dispatch` joins the Redis of a running `cityline serve`: set REDIS_URL, "
            "redis.url in the config, or --redis-url (an embedded server is private to its serve)"
        )
    stop = stop if stop is not None else asyncio.Event()
    city = Cityline(config, redis_url=url, http=False, embedded_redis=False, stats=False,
                    channels=False)
    async with city:
        if "dispatcher" not in city.supervisor.names:
            raise StartupError(
                "this build has no dispatcher (queues/store.py, router/dispatcher.py)"
            )
        return await city.run_until(stop)
