"""Dispatch benchmark: lifecycles per second against the Lua ceiling, enqueue-to-offer latency at
a steady rate, and decision time as the number of waiting interactions grows.

Run: `python bench/dispatch.py` (about two minutes; `--quick` for a smaller run). It starts its
own redis-server the way the tests do, prints progress on stderr, figures on stdout, and ends
with one line of JSON holding every figure. The machine is small and noisy: compare the ratios,
which are measured in the same run, more than the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from bench.figures import pct, say  # noqa: E402
from queues.embedded import EmbeddedRedis  # noqa: E402
from queues.store import Blending, RoutingStore  # noqa: E402
from router.config import load_config  # noqa: E402
from router.dispatcher import Dispatcher  # noqa: E402
from router.models import AgentProfile  # noqa: E402
from router.placement import placement  # noqa: E402

CONFIG = Path(__file__).with_name("bench_city.yaml")
SCRIPTS_PER_LIFECYCLE = 4  # enqueue, reserve, accept, complete (no wrap-up)
BUCKETS = [("q1", {}), ("q2", {}), ("q3", {}), ("q4", {}), ("q1", {"lang_en": 1}),
           ("q2", {"lang_en": 1}), ("q3", {"lang_en": 1}), ("q4", {"lang_en": 1})]


async def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, max_connections=256)


async def make_store(url: str) -> RoutingStore:
    store = RoutingStore(await connect(url))
    await store.load_scripts()
    return store


async def evalsha_ceiling(url: str, seconds: float, concurrency: int) -> float:
    """Plain EVALSHA calls per second with the same client concurrency as the lifecycle runs."""
    client = await connect(url)
    sha = await client.script_load("return 1")
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await client.evalsha(sha, 0)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    rate = count / (time.perf_counter() - started)
    await client.aclose()
    return rate


async def login_agents(store: RoutingStore, prefix: str, n: int) -> set[str]:
    ids = set()
    for i in range(n):
        agent_id = f"{prefix}{i:04d}"
        profile = AgentProfile(id=agent_id, skills={"general": 5, "taxes": 5, "roads": 5,
                                                    "lang_en": 5})
        await store.agent_login(profile, Blending(), ready=True)
        ids.add(agent_id)
    return ids


async def agent_worker(url: str, prefix: str, n_agents: int, seconds: float, ready_flag: Any,
                       dispatch: bool) -> None:
    """A process that dispatches (like `cityline dispatch`) or plays agents who accept and
    complete every offer at once (like agents' desktops would, through the API)."""
    store = await make_store(url)
    cfg = load_config(CONFIG, env={})
    agents = await login_agents(store, prefix, n_agents)
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def work(ix_id: str, agent_id: str) -> None:
        await store.accept(ix_id, agent_id)
        await store.complete(ix_id, agent_id, side="agent", wrapup_ms=0)

    async def react() -> None:
        reader = await connect(url)
        last = "$"
        while not stop.is_set():
            reply = await reader.xread({store.keys.events: last}, count=1000, block=200)
            for _stream, entries in reply or []:
                for entry_id, f in entries:
                    last = entry_id
                    if f.get("ev") == "OFFER" and f.get("agent") in agents:
                        t = asyncio.create_task(work(f["ix"], f["agent"]))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
        await reader.aclose()

    runners = [asyncio.create_task(react())] if agents else []
    if dispatch:
        runners.append(asyncio.create_task(Dispatcher(store, cfg, prefix).run(stop)))
    ready_flag.set()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*runners, return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.redis.aclose()


def _worker_entry(*args: Any) -> None:
    asyncio.run(agent_worker(*args))


def start_workers(url: str, dispatchers: int, agents: int, seconds: float) -> list[Any]:
    """One process of simulated agents, then `dispatchers` dispatcher processes."""
    ctx = mp.get_context("spawn")
    procs = []
    roles = [("agents", agents, False)] + [(f"d{p}", 0, True) for p in range(dispatchers)]
    for name, n_agents, dispatch in roles:
        flag = ctx.Event()
        proc = ctx.Process(target=_worker_entry,
                           args=(url, name, n_agents, seconds, flag, dispatch))
        proc.start()
        if not flag.wait(60):
            raise RuntimeError(f"{name} process did not start")
        procs.append(proc)
    return procs


async def count_events(client: aioredis.Redis, ev: str) -> int:
    n = 0
    for _id, f in await client.xrange("cl:events"):
        n += f.get("ev") == ev
    return n


async def lifecycles(url: str, processes: int, total: int, agents: int) -> float:
    """Enqueue `total` interactions as fast as 32 in flight allow; time until all completed.

    `processes` dispatcher processes share the work; agents run in a process of their own.
    """
    store = await make_store(url)
    await store.redis.flushall()
    await store.load_scripts()
    cfg = load_config(CONFIG, env={})
    procs = start_workers(url, processes, agents, seconds=300)
    target = placement(cfg, "q1", extra={})
    sem = asyncio.Semaphore(32)

    async def one() -> None:
        async with sem:
            await store.enqueue(target, {"language": "pl"})

    reader = await connect(url)
    last = (await reader.xrevrange("cl:events", count=1) or [("0-0", {})])[0][0]
    started = time.perf_counter()
    producer = asyncio.gather(*(one() for _ in range(total)))
    done = 0
    while done < total:
        reply = await reader.xread({"cl:events": last}, count=5000, block=1000)
        for _s, entries in reply or []:
            for entry_id, f in entries:
                last = entry_id
                done += f.get("ev") == "COMPLETEAGENT"
        if time.perf_counter() - started > 240:
            raise RuntimeError(f"only {done}/{total} lifecycles in 240 s")
    elapsed = time.perf_counter() - started
    await producer
    for proc in procs:
        proc.terminate()
        proc.join()
    await reader.aclose()
    await store.redis.aclose()
    return total / elapsed


async def latency_at_rate(url: str, rate: float, seconds: float, agents: int) -> dict[str, float]:
    """Enqueue at a steady rate with free agents; enqueue-to-offer from the events' own times."""
    store = await make_store(url)
    await store.redis.flushall()
    await store.load_scripts()
    cfg = load_config(CONFIG, env={})
    procs = start_workers(url, 1, agents, seconds=seconds + 30)
    target = placement(cfg, "q1", extra={})
    n = int(rate * seconds)
    started = time.perf_counter()
    pending = set()
    for i in range(n):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(store.enqueue(target, {"language": "pl"}))
        pending.add(t)
        t.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    achieved = n / (time.perf_counter() - started)
    await asyncio.sleep(1.0)
    entered: dict[str, int] = {}
    waits: list[float] = []
    for _id, f in await store.redis.xrange("cl:events"):
        if f["ev"] == "ENTERQUEUE":
            entered[f["ix"]] = int(f["t"])
        elif f["ev"] == "OFFER" and f["ix"] in entered:
            waits.append(int(f["t"]) - entered.pop(f["ix"]))
    for proc in procs:
        proc.terminate()
        proc.join()
    await store.redis.aclose()
    return {"rate_per_s": round(achieved, 1), "offers": len(waits), "not_offered": len(entered),
            "p50_ms": pct(waits, 0.5), "p99_ms": pct(waits, 0.99), "max_ms": max(waits or [0])}


async def decision_time(url: str, waiting: int, samples: int) -> dict[str, float]:
    """Time one matching round that makes one offer, with `waiting` interactions in 8 buckets."""
    store = await make_store(url)
    await store.redis.flushall()
    await store.load_scripts()
    cfg = load_config(CONFIG, env={})
    targets = [placement(cfg, q, extra=extra) for q, extra in BUCKETS]
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await store.enqueue(targets[i % len(targets)], {"language": "pl"})

    filled = 0
    while filled < waiting:
        batch = min(10_000, waiting - filled)
        await asyncio.gather(*(one(filled + i) for i in range(batch)))
        filled += batch
        say(f"  filled {filled}/{waiting} waiting")
    await login_agents(store, "d", 1)
    dispatcher = Dispatcher(store, cfg, "bench")
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        made = await dispatcher.match_round()
        times.append((time.perf_counter() - t0) * 1000)
        if made != 1:
            raise RuntimeError(f"expected one offer, got {made}")
        (ix_id,) = await store.agent_work("d0000")
        # not measured: free the agent and put one back, so `waiting` stays the same
        bucket = (await store.interaction(ix_id))["bucket"]
        await store.abandon(ix_id, short_abandon_ms=0)
        await store.enqueue(next(t for t in targets if t.bucket_id == bucket),
                            {"language": "pl"})
    await store.redis.aclose()
    return {"waiting": waiting, "p50_ms": round(pct(times, 0.5), 3),
            "p99_ms": round(pct(times, 0.99), 3), "mean_ms": round(statistics.mean(times), 3)}


async def main(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False)
        server.start()
        try:
            url = server.url
            results["redis_version"] = server.version()
            total = 1000 if quick else 4000
            say("1/4 EVALSHA ceiling ...")
            ceiling_calls = await evalsha_ceiling(url, 2 if quick else 4, concurrency=32)
            ceiling = ceiling_calls / SCRIPTS_PER_LIFECYCLE
            results["evalsha_per_s"] = round(ceiling_calls)
            results["ceiling_lifecycles_per_s"] = round(ceiling)
            say("2/4 lifecycles, 1 and 2 processes ...")
            for procs in (1, 2):
                rate = await lifecycles(url, procs, total, agents=50)
                results[f"lifecycles_per_s_{procs}p"] = round(rate)
                results[f"ratio_to_ceiling_{procs}p"] = round(rate / ceiling, 3)
                say(f"  {procs} process(es): {rate:.0f}/s ({rate / ceiling:.0%} of ceiling)")
            say("3/4 enqueue-to-offer latency at 500/s ...")
            results["latency_at_500_per_s"] = await latency_at_rate(
                url, 500, 3 if quick else 8, agents=300)
            say(f"  {results['latency_at_500_per_s']}")
            say("4/4 decision time vs waiting ...")
            decisions = []
            for waiting in (100, 10_000) if quick else (100, 10_000, 100_000):
                d = await decision_time(url, waiting, samples=100 if quick else 300)
                decisions.append(d)
                say(f"  {d}")
            results["decision"] = decisions
            results["decision_p50_ratio_largest_to_100"] = round(
                decisions[-1]["p50_ms"] / decisions[0]["p50_ms"], 2)
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (about 30 s)")
    args = parser.parse_args()
    figures = asyncio.run(main(args.quick))
    c = figures["ceiling_lifecycles_per_s"]
    print(f"ceiling (EVALSHA/s / {SCRIPTS_PER_LIFECYCLE}): {c}/s")
    for p in (1, 2):
        print(f"lifecycles/s, {p} process(es): {figures[f'lifecycles_per_s_{p}p']} "
              f"({figures[f'ratio_to_ceiling_{p}p']:.0%} of ceiling; goal >= 50 %)")
    lat = figures["latency_at_500_per_s"]
    print(f"enqueue->offer at {lat['rate_per_s']}/s: p50 {lat['p50_ms']} ms, "
          f"p99 {lat['p99_ms']} ms (goal p99 < 10 ms)")
    for d in figures["decision"]:
        print(f"decision with {d['waiting']:>7} waiting: "
              f"p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")
    print(json.dumps(figures, sort_keys=True))
