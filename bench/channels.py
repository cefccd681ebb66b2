"""Channels benchmark: accepted messages per second and send-to-stored latency for e-mail over
SMTP, SMS webhooks and chat messages, each against the real adapter on 127.0.0.1.

Run: `python bench/channels.py` (about a minute; `--quick` for a smaller run). It starts its own
redis-server the way the tests do, prints progress on stderr, figures on stdout, and ends with
one line of JSON holding every figure.

Latency is the `ENTERQUEUE` (e-mail, SMS) or resident `MESSAGE` (chat) event's own Redis time
minus the client's wall-clock time just before it sent the message: both clocks are this host's
clock, and the event time has a 1 ms resolution. For e-mail and SMS the client's round trip (to
the SMTP 250 reply, to the webhook's HTTP answer) is reported as well.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import aiosmtplib  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.figures import pct, say, split  # noqa: E402
from channels.chat.adapter import WS_PATH, ChatAdapter  # noqa: E402
from channels.email.adapter import EmailAdapter  # noqa: E402
from channels.sms.adapter import GENERIC_PATH, SmsAdapter  # noqa: E402
from queues.embedded import EmbeddedRedis  # noqa: E402
from queues.keys import Keys  # noqa: E402
from queues.store import RoutingStore  # noqa: E402
from router.config import CitylineConfig, load_config  # noqa: E402
from router.config_chat import ChatConfig  # noqa: E402
from router.config_email import EmailConfig  # noqa: E402
from router.config_sms import SmsConfig  # noqa: E402
from router.http.app import AppContext, create_app  # noqa: E402
from router.metrics import LiveSnapshotCache  # noqa: E402
from router.service import RoutingService  # noqa: E402
from router.stats import StatsAggregator  # noqa: E402
from router.waiting import WaitEstimator  # noqa: E402

MAILBOX = "kontakt@miasto.example.pl"
SECRET = "bench-webhook-secret"
ENV = {"CITYLINE_SMS_WEBHOOK_SECRET": SECRET, "CITYLINE_SMS_TWILIO_TOKEN": "unused"}
CHAT_EVERY_S = 0.5  # paced chat: each resident sends one message this often
TEXT = "Dziura w jezdni na ul. Żwirki i Wigury 5, proszę o naprawę. Dziękuję."


def now_ms() -> float:
    return time.time() * 1000.0


async def last_event_id(redis: aioredis.Redis, stream: str) -> str:
    last = await redis.xrevrange(stream, count=1)
    return last[0][0] if last else "0-0"


async def events_since(redis: aioredis.Redis, stream: str, after: str,
                       kind: str) -> list[dict[str, str]]:
    """Events of `kind` after stream id `after`, in stream order."""
    out: list[dict[str, str]] = []
    start = "(" + after
    while True:
        chunk = await redis.xrange(stream, min=start, count=10_000)
        if not chunk:
            return out
        out.extend(f for _id, f in chunk if f.get("ev") == kind)
        start = "(" + chunk[-1][0]


async def refs_of(store: RoutingStore, ix_ids: list[str]) -> dict[str, str]:
    """Interaction id -> reference number."""
    pipe = store.redis.pipeline(transaction=False)
    for ix_id in ix_ids:
        pipe.hget(store.keys.ix(ix_id), "ref")
    return {ix: ref for ix, ref in zip(ix_ids, await pipe.execute(), strict=True) if ref}


def figures(sent_ms: list[float], stored_ms: list[float], accepted: int, rtts: list[float],
            errors: int) -> dict[str, Any]:
    """Rate from the first send to the last stored event; latencies in ms."""
    lat = [s - c for c, s in zip(sent_ms, stored_ms, strict=True)]
    span_s = (max(stored_ms) - min(sent_ms)) / 1000 if stored_ms else float("nan")
    out: dict[str, Any] = {
        "accepted": accepted, "errors": errors, "matched": len(lat),
        "per_s": round(len(lat) / span_s, 1) if span_s > 0 else None,
        "p50_ms": round(pct(lat, 0.5), 1), "p99_ms": round(pct(lat, 0.99), 1),
        "max_ms": round(max(lat or [0.0]), 1),
    }
    if rtts:
        out["ack_p50_ms"] = round(pct(rtts, 0.5), 1)
        out["ack_p99_ms"] = round(pct(rtts, 0.99), 1)
    return out


# --- e-mail -------------------------------------------------------------------------------


def mail(i: int, run: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Mieszkaniec {i} <resident{i}@example.com>"
    msg["To"] = MAILBOX
    msg["Subject"] = f"Zgłoszenie {run}-{i}"
    msg["Message-ID"] = make_msgid(idstring=f"{run}.{i}", domain="example.com")
    msg.set_content(TEXT + "\n")
    return msg


async def bench_email(service: RoutingService, data_dir: Path, n: int, k: int,
                      run: str) -> dict[str, Any]:
    cfg = EmailConfig.model_validate({
        "enabled": True, "host": "127.0.0.1", "port": 0, "domains": ["miasto.example.pl"],
        "addresses": {MAILBOX: "email"}, "ack": False, "max_connections": max(50, k + 5),
    })
    store = service.store
    after = await last_event_id(store.redis, store.keys.events)
    sent: dict[str, float] = {}  # ref -> send time
    rtts: list[float] = []
    errors = 0
    async with EmailAdapter(service, cfg, data_dir, env={}) as adapter:

        async def client(first: int, count: int) -> None:
            nonlocal errors
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=adapter.port, timeout=30)
            await smtp.connect()
            try:
                for i in range(first, first + count):
                    msg = mail(i, run)
                    t0 = now_ms()
                    try:
                        _refused, reply = await smtp.send_message(
                            msg, sender=f"resident{i}@example.com", recipients=[MAILBOX])
                    except aiosmtplib.SMTPException as exc:
                        errors += 1
                        say(f"  e-mail {i}: {exc}")
                        continue
                    rtts.append(now_ms() - t0)
                    sent[reply.rsplit(" ", 1)[-1]] = t0
            finally:
                await smtp.quit()

        starts = [sum(split(n, k)[:c]) for c in range(k)]
        await asyncio.gather(*(client(s, c) for s, c in zip(starts, split(n, k), strict=True)))
    events = await events_since(store.redis, store.keys.events, after, "ENTERQUEUE")
    refs = await refs_of(store, [e["ix"] for e in events])
    pairs = [(sent[refs[e["ix"]]], float(e["t"])) for e in events
             if refs.get(e["ix"]) in sent]
    return figures([p[0] for p in pairs], [p[1] for p in pairs], len(sent), rtts, errors)


# --- SMS ----------------------------------------------------------------------------------


async def bench_sms(service: RoutingService, base_url: str, n: int, k: int,
                    run: str) -> dict[str, Any]:
    store = service.store
    after = await last_event_id(store.redis, store.keys.events)
    sent: dict[str, float] = {}  # interaction id -> send time
    rtts: list[float] = []
    errors = 0
    url = base_url + GENERIC_PATH
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client(first: int, count: int) -> None:
            nonlocal errors
            for i in range(first, first + count):
                # a new number for every message: each opens its own conversation and no
                # number comes near the per-number rate limit
                payload = {"id": f"bench-{run}-{i}", "from": f"+48600{i:06d}",
                           "to": "+48221234567", "text": f"{TEXT} #{i}"}
                body = json.dumps(payload).encode()
                sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json",
                           "X-Cityline-Signature": f"sha256={sig}"}
                t0 = now_ms()
                async with http.post(url, data=body, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                if resp.status != 200 or answer.get("status") != "created":
                    errors += 1
                    say(f"  SMS {i}: {resp.status} {answer}")
                    continue
                rtts.append(now_ms() - t0)
                sent[answer["interaction"]] = t0

        starts = [sum(split(n, k)[:c]) for c in range(k)]
        await asyncio.gather(*(client(s, c) for s, c in zip(starts, split(n, k), strict=True)))
    events = await events_since(store.redis, store.keys.events, after, "ENTERQUEUE")
    pairs = [(sent[e["ix"]], float(e["t"])) for e in events if e["ix"] in sent]
    return figures([p[0] for p in pairs], [p[1] for p in pairs], len(sent), rtts, errors)


# --- chat ---------------------------------------------------------------------------------


async def bench_chat(service: RoutingService, base_url: str, k: int, m: int,
                     every_s: float = 0.0) -> dict[str, Any]:
    """K residents send M messages each: back to back (every_s 0), or one every `every_s`
    seconds with the residents' starts spread over that interval (a steady rate)."""
    store = service.store
    sent: dict[str, list[float]] = {}  # ref -> send times of its messages, in order
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = [await http.ws_connect(base_url + WS_PATH) for _ in range(k)]

        async def start(ws: Any) -> str:
            await ws.send_json({"type": "start", "language": "pl", "topic": None,
                                "name": "Jan"})
            while True:
                frame = await asyncio.wait_for(ws.receive_json(), 30)
                if frame["type"] == "started":
                    return str(frame["ref"])

        refs = await asyncio.gather(*(start(ws) for ws in sockets))
        # every resident has started: only messages from here on
        after = await last_event_id(store.redis, store.keys.events)

        async def resident(ws: Any, ref: str, offset_s: float) -> None:
            times = sent.setdefault(ref, [])
            began = time.monotonic() + offset_s
            for j in range(m):
                if every_s:
                    await asyncio.sleep(max(0.0, began + j * every_s - time.monotonic()))
                times.append(now_ms())
                await ws.send_str(json.dumps({"type": "message", "text": f"{TEXT} #{j}"}))

        await asyncio.gather(*(resident(ws, ref, every_s * i / k)
                               for i, (ws, ref) in enumerate(zip(sockets, refs, strict=True))))
        expected = k * m
        deadline = time.monotonic() + 120
        while True:
            events = [e for e in await events_since(store.redis, store.keys.events, after,
                                                    "MESSAGE")
                      if e.get("from") == "resident"]
            if len(events) >= expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        errors = expected - len(events)
        for ws in sockets:
            await ws.close()
    ref_of = await refs_of(store, sorted({e["ix"] for e in events}))
    seen: dict[str, int] = {}
    pairs = []
    for e in events:
        ref = ref_of.get(e["ix"], "")
        j = seen.get(ref, 0)
        seen[ref] = j + 1
        if ref in sent and j < len(sent[ref]):
            pairs.append((sent[ref][j], float(e["t"])))
    return figures([p[0] for p in pairs], [p[1] for p in pairs], len(events), [], errors)


# --- main ---------------------------------------------------------------------------------


async def serve_http(cfg: CitylineConfig, redis: aioredis.Redis, store: RoutingStore,
                     setups: list[Any]) -> tuple[web.AppRunner, str]:
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                     extra_setup=setups)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def main(quick: bool) -> dict[str, Any]:
    sizes = {
        "email": (1500, 5) if quick else (6000, 10),
        "sms": (3000, 10) if quick else (12_000, 20),
        "chat": (50, 100) if quick else (200, 200),
        "chat_paced": (200, 10) if quick else (500, 30),
    }
    run = f"{int(time.time())}"
    results: dict[str, Any] = {"quick": quick, "params": {
        "email_messages": sizes["email"][0], "email_clients": sizes["email"][1],
        "sms_messages": sizes["sms"][0], "sms_clients": sizes["sms"][1],
        "chat_residents": sizes["chat"][0], "chat_messages_each": sizes["chat"][1],
        "chat_paced_residents": sizes["chat_paced"][0],
        "chat_paced_messages_each": sizes["chat_paced"][1], "chat_paced_every_s": CHAT_EVERY_S}}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False)
        server.start()
        try:
            results["redis_version"] = server.version()
            redis = aioredis.Redis.from_url(server.url, decode_responses=True,
                                            max_connections=512)
            store = RoutingStore(redis)
            await store.load_scripts()
            cfg = load_config(None, env={})
            service = RoutingService(store, cfg)

            say(f"1/3 e-mail: {sizes['email'][0]} messages from {sizes['email'][1]} "
                "SMTP clients ...")
            results["email"] = await bench_email(service, Path(tmp), *sizes["email"], run)
            say(f"  {results['email']}")

            sms = SmsAdapter(service, SmsConfig(enabled=True, sender="+48221234567"),
                             env=ENV)
            chat = ChatAdapter(
                service, cfg, ChatConfig(max_frames_per_s=1000),
                WaitEstimator(store, LiveSnapshotCache(StatsAggregator(redis, Keys(), cfg))))
            runner, base = await serve_http(cfg, redis, store,
                                            [sms.setup_routes, chat.setup_routes])
            await sms.start()
            await chat.start()
            try:
                say(f"2/3 SMS: {sizes['sms'][0]} webhooks from {sizes['sms'][1]} tasks ...")
                results["sms"] = await bench_sms(service, base, *sizes["sms"], run)
                say(f"  {results['sms']}")
                k, m = sizes["chat"]
                say(f"3/3 chat: {k} residents x {m} messages, back to back ...")
                results["chat"] = await bench_chat(service, base, k, m)
                say(f"  {results['chat']}")
                k, m = sizes["chat_paced"]
                say(f"    and {k} residents x {m} messages, one every {CHAT_EVERY_S} s each "
                    f"({k / CHAT_EVERY_S:.0f}/s offered) ...")
                results["chat_paced"] = await bench_chat(service, base, k, m, CHAT_EVERY_S)
                say(f"  {results['chat_paced']}")
            finally:
                await chat.stop()
                await sms.stop()
                await runner.cleanup()
                await redis.aclose()
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (about 15 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    figs = asyncio.run(main(args.quick))
    for name, label in (("email", "e-mail over SMTP"), ("sms", "SMS webhooks"),
                        ("chat", "chat, burst"),
                        ("chat_paced", "chat, paced")):
        f = figs[name]
        ack = (f", client round trip p50 {f['ack_p50_ms']} ms, p99 {f['ack_p99_ms']} ms"
               if "ack_p50_ms" in f else "")
        print(f"{label:<17} {f['per_s']}/s accepted ({f['matched']} stored, {f['errors']} "
              f"errors); send->stored p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms{ack}")
    print(json.dumps(figs, sort_keys=True))
