"""Cases benchmark: how fast cases are made, how duplicate search and the city's reports grow
with the number of cases, and what an Open311 list of 1,000 requests costs over HTTP.

Run: `python bench/cases.py` (about a minute; `--quick` for a smaller run). It starts its own
redis-server the way the tests do, prints progress on stderr, figures on stdout, and ends with
one line of JSON holding every figure.

- **making cases**: `CaseService.create_standalone` (validation, the `case_create` script:
  number, history, unit queue, geo index, creation index, event) from concurrent tasks, next to
  a **baseline** measured in the same run: the same Redis writes sent as plain pipelined
  commands (no script, no checks) by the same number of tasks. The ratio is what the checks and
  atomicity cost.
- **duplicate search** (`find_duplicates`: GEOSEARCH on the category's open cases, then the
  cases read) with the geo index holding a growing number of open cases: p50/p99, and the ratio
  to the smallest size (a flat line is the goal: the search is bounded by the radius).
- **reports** (`case_reports.build`, every case and its history read) at each size.
- **Open311** `GET /open311/v2/requests.json` answering 1,000 requests (JSON) through the real
  HTTP app: p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.figures import pct, say, split  # noqa: E402
from queues.embedded import EmbeddedRedis  # noqa: E402
from queues.keys import Keys  # noqa: E402
from queues.store import RoutingStore  # noqa: E402
from router import case_reports  # noqa: E402
from router.auth import Auth, Role  # noqa: E402
from router.cases import Actor, CaseInput, CaseService  # noqa: E402
from router.config import load_config  # noqa: E402
from router.http.api import setup_api  # noqa: E402
from router.http.app import AppContext, create_app  # noqa: E402
from router.service import RoutingService  # noqa: E402

BOSS = Actor("bench", Role.supervisor)
# the packaged city's centre and a box of about 10 x 10 km around it
LAT0, LON0, SPAN = 51.7592, 19.4560, 0.09
SEARCHES = 300


def place(rng: random.Random) -> tuple[float, float]:
    return LAT0 + rng.uniform(-SPAN / 2, SPAN / 2), LON0 + rng.uniform(-SPAN / 2, SPAN / 2)


async def make_cases(cases: CaseService, categories: list[str], n: int, tasks: int,
                     seed: int) -> float:
    """n cases from `tasks` concurrent tasks; returns cases per second."""
    rng = random.Random(seed)
    todo = [(rng.choice(categories), *place(rng)) for _ in range(n)]
    chunks, start = [], 0
    for size in split(n, tasks):
        chunks.append(todo[start:start + size])
        start += size

    async def worker(chunk: list[tuple[str, float, float]]) -> None:
        for category, lat, lon in chunk:
            await cases.create_standalone(CaseInput(
                category=category, description="Dziura w jezdni", address="ul. Testowa 1",
                lat=lat, lon=lon), language="pl", actor=BOSS)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in chunks))
    return n / (time.perf_counter() - t0)


async def baseline_writes(redis: aioredis.Redis, n: int, tasks: int) -> float:
    """The writes a case makes, as plain pipelined commands (no script): cases per second."""
    rng = random.Random(7)

    async def worker(first: int, count: int) -> None:
        for i in range(first, first + count):
            lat, lon = place(rng)
            cid = f"base{i:08d}"
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hincrby("base:seq", "2026", 1)
                pipe.hset(f"base:case:{cid}", mapping={
                    "number": f"B-2026-{i:06d}", "category": "road_damage", "unit": "roads",
                    "status": "open", "description": "Dziura w jezdni", "lat": lat,
                    "lon": lon, "created_ms": 0, "due_ms": 0})
                pipe.hset("base:numbers", f"B-2026-{i:06d}", cid)
                pipe.rpush(f"base:hist:{cid}", '{"status":"open"}')
                pipe.zadd("base:unit", {cid: i})
                pipe.zadd("base:created", {cid: i})
                pipe.geoadd("base:geo", (lon, lat, cid))
                pipe.xadd("base:events", {"ev": "CASECREATED", "case": cid}, maxlen=100_000,
                          approximate=True)
                await pipe.execute()

    t0 = time.perf_counter()
    starts, first = [], 0
    for size in split(n, tasks):
        starts.append((first, size))
        first += size
    await asyncio.gather(*(worker(f, c) for f, c in starts))
    return n / (time.perf_counter() - t0)


async def search_latency(cases: CaseService, categories: list[str]) -> dict[str, float]:
    rng = random.Random(11)
    times, found = [], 0
    for _ in range(SEARCHES):
        lat, lon = place(rng)
        t0 = time.perf_counter()
        found += len(await cases.find_duplicates(rng.choice(categories), lat, lon))
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(pct(times, 0.5), 2), "p99_ms": round(pct(times, 0.99), 2),
            "found_per_search": round(found / SEARCHES, 2)}


async def report_time(service: RoutingService) -> float:
    t0 = time.perf_counter()
    await case_reports.build(service)
    return round(time.perf_counter() - t0, 3)


async def open311_latency(base: str, rounds: int) -> dict[str, Any]:
    times, sizes = [], []
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            t0 = time.perf_counter()
            async with http.get(f"{base}/open311/v2/requests.json") as resp:
                body = await resp.read()
                assert resp.status == 200, body[:200]
            times.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(json.loads(body)))
    return {"p50_ms": round(pct(times, 0.5), 2), "p99_ms": round(pct(times, 0.99), 2),
            "requests": max(sizes),
            "bytes": len(body)}


async def main(quick: bool) -> dict[str, Any]:
    steps = [1_000, 5_000] if quick else [1_000, 10_000, 30_000]
    tasks = 8
    results: dict[str, Any] = {"quick": quick, "params": {"sizes": steps, "tasks": tasks,
                                                          "searches": SEARCHES}}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False)
        server.start()
        try:
            results["redis_version"] = server.version()
            redis = aioredis.Redis.from_url(server.url, decode_responses=True,
                                            max_connections=64)
            store = RoutingStore(redis)
            await store.load_scripts()
            cfg = load_config(None, env={})
            cfg.cases.duplicate_window_hours = 24 * 365  # every bench case counts as recent
            service = RoutingService(store, cfg)
            cases = service.cases
            categories = sorted(cfg.cases.categories)

            n0 = steps[0] * 2
            say(f"1/4 baseline: the writes of {n0} cases as plain pipelines ...")
            results["baseline_per_s"] = round(await baseline_writes(redis, n0, tasks))
            await redis.delete(*[k async for k in redis.scan_iter("base:*", count=10_000)])
            say(f"    {results['baseline_per_s']}/s")

            made, per_size = 0, []
            rates = []
            for i, size in enumerate(steps):
                say(f"2/4 making cases up to {size} ...")
                rate = await make_cases(cases, categories, size - made, tasks, seed=i)
                rates.append(rate)
                made = size
                say(f"    {rate:.0f}/s; duplicate search over {size} open cases ...")
                search = await search_latency(cases, categories)
                say(f"    {search}; report over {size} cases ...")
                seconds = await report_time(service)
                per_size.append({"cases": size, "search": search, "report_s": seconds})
                say(f"    report {seconds} s")
            results["create_per_s"] = round(sum(rates) / len(rates))
            results["create_vs_baseline"] = round(results["create_per_s"]
                                                  / results["baseline_per_s"], 2)
            results["sizes"] = per_size
            first = per_size[0]["search"]["p50_ms"] or 0.01
            results["search_p50_ratio_largest_to_smallest"] = round(
                per_size[-1]["search"]["p50_ms"] / first, 2)

            say("4/4 Open311 requests.json over HTTP ...")
            auth = Auth(redis, Keys(), cfg)
            app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                             extra_setup=[lambda a: setup_api(a, service, auth)])
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                results["open311_list"] = await open311_latency(base, 10 if quick else 30)
            finally:
                await runner.cleanup()
            say(f"    {results['open311_list']}")
            await redis.aclose()
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (about 20 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    figs = asyncio.run(main(args.quick))
    print(f"making cases      {figs['create_per_s']}/s, baseline (plain pipelined writes) "
          f"{figs['baseline_per_s']}/s: ratio {figs['create_vs_baseline']}")
    for row in figs["sizes"]:
        s = row["search"]
        print(f"{row['cases']:>7} open cases: duplicate search p50 {s['p50_ms']} ms, p99 "
              f"{s['p99_ms']} ms ({s['found_per_search']} found); report {row['report_s']} s")
    print(f"duplicate search p50, largest/smallest: "
          f"{figs['search_p50_ratio_largest_to_smallest']}")
    o = figs["open311_list"]
    print(f"Open311 requests.json ({o['requests']} requests, {o['bytes']} bytes): p50 "
          f"{o['p50_ms']} ms, p99 {o['p99_ms']} ms")
    print(json.dumps(figs, sort_keys=True))
