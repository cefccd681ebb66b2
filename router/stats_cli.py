"""`cityline stats` and `cityline export queue-log`: reports from the statistics in Redis.

Both are synchronous entry points called by router/cli.py with its argparse namespace; they run
their own event loop. They read these attributes, each optional (getattr with a default), so
the parser may offer either spelling:

    config, redis_url          the configuration file and the Redis to read
    day                        YYYY-MM-DD (also "today", "yesterday"); default today, city time
    since, until               ISO date or date-time in city time, instead of --day
    json / format == "json"    one JSON document instead of tables
    agents / by == "agent"     add (or show only) the per-agent table
    by                         queue (default) | channel | agent | interval
    queue                      list of queue names to show (default all)
    out / output               file to write instead of standard output
    asterisk_only              export only the verbs Asterisk itself writes

Exit codes follow router/cli.py: 0 done, 1 Redis unreachable, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queues.keys import Keys
from router.queue_log import export_queue_log
from router.stats import (
    AgentFigures,
    IntervalRow,
    NamedAgentFigures,
    NamedFigures,
    PeriodReport,
    StatsAggregator,
    day_bounds_ms,
)
from router.stats_format import QUEUE_COLUMNS, active, pct, queue_cells, secs

if TYPE_CHECKING:
    from router.config import CitylineConfig


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


def _error(message: str) -> None:
    print(f"cityline: error: {message}", file=sys.stderr)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _load(args: argparse.Namespace) -> tuple[CitylineConfig, str]:
    from router.config import ConfigError, load_config

    path = getattr(args, "config", None)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise UsageError(
            "the configuration is not valid:\n" + "\n".join(f"  {i}" for i in exc.errors)
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read the configuration: {exc}") from None
    url = getattr(args, "redis_url", None) or cfg.redis.url_value()  # REDIS_URL is in cfg
    if not url:
        hint = ""
        sock = Path(cfg.data_dir) / "redis" / "redis.sock"
        if sock.exists():
            hint = f" (a running `cityline serve` listens on unix://{sock.resolve()})"
        raise UsageError(
            "no Redis configured: pass --redis-url, set REDIS_URL, or set redis.url in the "
            f"configuration{hint}"
        )
    return cfg, url


def _parse_time(text: str, tz: ZoneInfo, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: not an ISO date or date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def _parse_day(text: str | None, tz: ZoneInfo) -> date:
    today = datetime.now(tz).date()
    if text in (None, "", "today"):
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise UsageError(f"--day: expected YYYY-MM-DD, got {text!r}") from None


def _period(args: argparse.Namespace, tz: ZoneInfo) -> tuple[int, int, list[date]]:
    """[start_ms, end_ms) and the city days it covers, from --day or --since/--until."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since or until:
        if getattr(args, "day", None):
            raise UsageError("give either --day or --since/--until, not both")
        end = _parse_time(until, tz, "--until") if until else datetime.now(tz)
        start = (
            _parse_time(since, tz, "--since")
            if since
            else datetime.combine(end.date(), datetime.min.time(), tzinfo=tz)
        )
        if end <= start:
            raise UsageError("--until must be after --since")
        days, d = [], start.astimezone(tz).date()
        while d <= (end - timedelta(microseconds=1)).astimezone(tz).date():
            days.append(d)
            d += timedelta(days=1)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000), days
    day = _parse_day(getattr(args, "day", None), tz)
    start_ms, end_ms = day_bounds_ms(day, tz)
    return start_ms, end_ms, [day]


def _output(args: argparse.Namespace, stack: ExitStack) -> TextIO:
    path = getattr(args, "out", None) or getattr(args, "output", None)
    if not path or path == "-":
        return sys.stdout
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8", newline="\n"))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        cfg, url = _load(args)
        with ExitStack() as stack:
            return asyncio.run(body(cfg, url, stack))
    except UsageError as exc:
        _error(str(exc))
        return 2
    except (RedisError, OSError) as exc:
        _error(f"cannot read statistics from Redis: {exc}")
        return 1


async def _with_redis(url: str, work: Any) -> Any:
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise RedisError(f"cannot reach Redis at {_redact(url)}: {exc}") from None
        return await work(redis)
    finally:
        await redis.aclose()


# --- cityline export queue-log -----------------------------------------------------------------


def export_queue_log_command(args: argparse.Namespace) -> int:
    """Write the period's events as an Asterisk queue_log (default: today, city time)."""

    async def body(cfg: CitylineConfig, url: str, stack: ExitStack) -> int:
        tz = ZoneInfo(cfg.city.timezone)
        day_text = getattr(args, "day", None)
        whole = day_text == "all"
        start_ms, end_ms, _ = _period(args, tz) if not whole else (0, 0, [])
        out = _output(args, stack)

        async def work(redis: aioredis.Redis) -> int:
            return await export_queue_log(
                redis,
                Keys(cfg.redis.prefix),
                cfg,
                None,
                out,
                since_ms=None if whole else start_ms,
                until_ms=None if whole else end_ms,
                include_cityline=not getattr(args, "asterisk_only", False),
            )

        lines = await _with_redis(url, work)
        out.flush()
        if out is not sys.stdout:
            print(f"{lines} queue_log lines written to {out.name}", file=sys.stderr)
        return 0

    return _run(args, body)


# --- cityline stats ----------------------------------------------------------------------------


def stats_command(args: argparse.Namespace) -> int:
    """Print queue, channel (and agent) figures for a day or a period, as tables or JSON."""

    async def body(cfg: CitylineConfig, url: str, stack: ExitStack) -> int:
        tz = ZoneInfo(cfg.city.timezone)
        start_ms, end_ms, days = _period(args, tz)
        by = getattr(args, "by", None) or "queue"
        want_json = bool(getattr(args, "json", False)) or getattr(args, "format", "") == "json"
        with_agents = bool(getattr(args, "agents", False)) or by == "agent"
        only = set(getattr(args, "queue", None) or ())
        unknown = only - set(cfg.queues)
        if unknown:
            raise UsageError(f"--queue: no such queue: {', '.join(sorted(unknown))}")
        out = _output(args, stack)

        async def work(redis: aioredis.Redis) -> tuple[PeriodReport, list[IntervalRow]]:
            agg = StatsAggregator(redis, Keys(cfg.redis.prefix), cfg)
            report = await agg.period_report(start_ms, end_ms)
            rows: list[IntervalRow] = []
            if by == "interval":
                for day in days:
                    rows += [
                        r
                        for r in await agg.interval_report(cfg, day)
                        if start_ms <= r.interval_start_ms < end_ms
                    ]
            return report, rows

        report, rows = await _with_redis(url, work)
        if only:
            report.queues = [q for q in report.queues if q.name in only]
            rows = [r for r in rows if r.kind != "queue" or r.name in only]
        doc: dict[str, Any] = {
            "timezone": cfg.city.timezone,
            "start": report.start,
            "end": report.end,
        }
        if by in ("queue", "interval"):
            doc["queues"] = report.queues
        if by in ("queue", "channel", "interval"):
            doc["channels"] = report.channels
            doc["total"] = report.total
        if with_agents:
            doc["agents"] = report.agents
        if by == "interval":
            doc["intervals"] = [r for r in rows if active(r.counters)]
        if want_json:
            json.dump(_plain(doc), out, indent=2, ensure_ascii=False)
            out.write("\n")
        else:
            out.write(render_text(doc, tz))
        return 0

    return _run(args, body)


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- text tables -------------------------------------------------------------------------------


_AGENT_COLUMNS = (
    "Name", "Offers", "Answered", "RONA", "Handled", "FCR", "KB", "AHT", "Talk", "Wrap-up",
    "Ready", "Paused", "Occupancy",
)  # fmt: skip


def _agent_cells(name: str, f: AgentFigures) -> list[str]:
    return [
        name, str(f.offers), str(f.answered), str(f.rona), str(f.handled),
        str(f.first_contact_resolved), str(f.kb_resolved), secs(f.aht_s), secs(f.talk_s),
        secs(f.wrapup_s), secs(f.ready_s), secs(f.paused_s), pct(f.occupancy),
    ]  # fmt: skip


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Plain-text table: the first `left` columns (names) left-aligned, figures right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)]) + "\n"


def render_text(doc: dict[str, Any], tz: ZoneInfo) -> str:
    parts = [f"cityline statistics {doc['start']} .. {doc['end']} ({doc['timezone']})\n"]
    if "queues" in doc:
        queues: list[NamedFigures] = doc["queues"]
        rows = [[q.name, *queue_cells(q.figures)] for q in queues]
        empty = [["(none)", *[""] * len(QUEUE_COLUMNS)]]
        parts.append(_table(["Queue", *QUEUE_COLUMNS], rows or empty))
    if "channels" in doc:
        channels: list[NamedFigures] = doc["channels"]
        total: NamedFigures = doc["total"]
        rows = [[c.name, *queue_cells(c.figures)] for c in channels]
        rows.append(["all", *queue_cells(total.figures)])
        parts.append(_table(["Channel", *QUEUE_COLUMNS], rows))
    if "agents" in doc:
        agents: list[NamedAgentFigures] = doc["agents"]
        # the table shows who worked; the JSON document lists every agent
        rows = [[a.agent, *_agent_cells(a.name, a.figures)] for a in agents if active(a.counters)]
        empty = [["(no activity)", *[""] * len(_AGENT_COLUMNS)]]
        parts.append(_table(["Agent", *_AGENT_COLUMNS], rows or empty, left=2))
    if "intervals" in doc:
        intervals: list[IntervalRow] = doc["intervals"]
        rows = [
            [
                datetime.fromtimestamp(r.interval_start_ms / 1000, tz).strftime("%Y-%m-%d %H:%M"),
                r.name if r.kind == "all" else f"{r.kind}:{r.name}",
                *queue_cells(r.figures),
            ]
            for r in intervals
        ]
        empty = [["(no traffic)", "", *[""] * len(QUEUE_COLUMNS)]]
        parts.append(_table(["Interval", "Scope", *QUEUE_COLUMNS], rows or empty, left=2))
    return "\n".join(parts)
