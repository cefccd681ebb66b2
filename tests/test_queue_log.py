"""`cityline export queue-log`: the event stream as Asterisk queue_log lines.

The reference is the queue_log a real Asterisk 22 wrote during the capture in
/work/shared/asterisk (queue_log.txt): the same scenario fed through cityline's events must give
the same lines, except where cityline differs on purpose (agents as `Agent/<id>`; agent events
for every queue at once, so their queue is `NONE`).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router.config import CitylineConfig
from router.queue_log import export_queue_log
from tests.stats_events import (
    Events,
    abandon,
    addmember,
    complete,
    connect,
    deflected,
    enterqueue,
    escalate,
    exitwithtimeout,
    local_ms,
    message,
    offer,
    pause,
    removemember,
    ringnoanswer,
    transfer,
    unpause,
    wrapupend,
)

# /work/shared/asterisk/queue_log.txt, verbatim (Asterisk 22.10.1, queue `cityq`)
CAPTURED = """\
1795814155|NONE|cityq|Agent1|PAUSE|lunch
1795814155|NONE|cityq|Agent2|PAUSE|lunch
1795814156|1795814156.36|cityq|NONE|ENTERQUEUE||5550001|1
1795814160|1795814159.38|cityq|NONE|ENTERQUEUE||5550002|2
1795814162|1795814156.36|cityq|NONE|ABANDON|1|1|6
1795814165|1795814159.38|cityq|NONE|ABANDON|1|2|5
1795814166|NONE|cityq|Agent1|UNPAUSE|
1795814166|NONE|cityq|Agent2|UNPAUSE|
"""
CAPTURE_FILE = Path(__file__).resolve().parents[2] / "shared" / "asterisk" / "queue_log.txt"


@pytest.fixture
def cfg() -> CitylineConfig:
    return CitylineConfig.model_validate(
        {"city": {"timezone": "Europe/Warsaw", "languages": ["pl"], "default_language": "pl"}}
    )


@pytest.fixture
def keys() -> Keys:
    return Keys()


async def export(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig, day: date | None = None, **kw: object
) -> tuple[int, list[str]]:
    out = io.StringIO()
    count = await export_queue_log(redis, keys, cfg, day, out, **kw)  # type: ignore[arg-type]
    text = out.getvalue()
    assert text.endswith("\n") or not text
    return count, text.splitlines()


def test_the_embedded_capture_is_the_real_one() -> None:
    if not CAPTURE_FILE.exists():
        pytest.skip("shared/asterisk is not beside this checkout")
    assert CAPTURE_FILE.read_text() == CAPTURED


async def test_the_captured_asterisk_scenario(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig
) -> None:
    # both agents paused for lunch, two callers join and hang up (6 s and 5 s), agents back
    s = 1795814155000
    a, b = "1795814156.36", "1795814159.38"
    await redis.hset(keys.ix(a), mapping={"resident": "5550001", "origpos": "1"})
    await redis.hset(keys.ix(b), mapping={"resident": "5550002", "origpos": "2"})
    ev = Events(redis)
    await ev.add_all(
        pause(s, "Agent1", "lunch", 1000),
        pause(s + 400, "Agent2", "lunch", 1000),
        enterqueue(s + 1000, a, "cityq", pos=1),
        enterqueue(s + 5000, b, "cityq", pos=2),
        abandon(s + 7300, a, "cityq", 6300, pos=1, origpos=1),
        abandon(s + 10_100, b, "cityq", 5100, pos=1, origpos=2),
        unpause(s + 11_000, "Agent1", 11_000),
        unpause(s + 11_200, "Agent2", 10_800),
    )
    count, lines = await export(redis, keys, cfg)
    assert count == 8
    captured = CAPTURED.splitlines()
    for ours, theirs in zip(lines, captured, strict=True):
        ours_f, theirs_f = ours.split("|"), theirs.split("|")
        assert len(ours_f) == len(theirs_f), (ours, theirs)
        if theirs_f[4] in ("ENTERQUEUE", "ABANDON"):
            assert ours == theirs  # call events: byte for byte
        else:
            # agent events: same time, callid, verb and data; queue NONE, Agent/<name>
            assert ours_f[:2] == theirs_f[:2] and ours_f[4:] == theirs_f[4:]
            assert ours_f[2] == "NONE" and ours_f[3] == f"Agent/{theirs_f[3]}"


async def test_every_verb_in_asterisk_field_order(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig
) -> None:
    t = local_ms("2026-03-10T10:00:00")
    sec = t // 1000
    await redis.hset(keys.ix("c1"), mapping={"resident": "+48600100200", "origpos": "3"})
    ev = Events(redis)
    await ev.add_all(
        addmember(t, "anna"),
        addmember(t, "bob", "not_ready", "meeting"),
        enterqueue(t + 1000, "c1", "info", pos=3),
        offer(t + 2000, "c1", "info", "bob", 1000),
        ringnoanswer(t + 17_500, "c1", "info", "bob", 15_500, "timeout"),
        offer(t + 18_000, "c1", "info", "anna", 17_000, attempt=2),
        connect(t + 21_900, "c1", "info", "anna", 20_900, ring_ms=3900),
        transfer(t + 81_900, "c1", "info", "anna", "second", wait_ms=20_900, talk_ms=60_000),
        enterqueue(t + 81_900, "c1", "second", first=False, pos=1),
        escalate(t + 90_000, "c1", "second", step=0, priority=2, skills='{"taxes": 6}'),
        connect(t + 95_000, "c1", "second", "bob", 13_100, total_wait_ms=94_000),
        complete(t + 155_000, "c1", "second", "bob", 13_100, 60_000, side="agent"),
        wrapupend(
            t + 185_000,
            "c1",
            "second",
            "bob",
            30_000,
            by="agent",
            disposition="solved",
            note="told about | fees\nand dates",
        ),
        exitwithtimeout(t + 200_000, "c2", "info", 600_000, pos=2, origpos=4),
        deflected(t + 201_000, "d1", "info", reason="opening-hours"),
        message(t + 202_000, "m1", "mail", "resident", 512, channel="email"),
        unpause(t + 300_000, "bob", 300_000),
        removemember(t + 400_000, "anna", 400_000),
    )
    _, lines = await export(redis, keys, cfg, date(2026, 3, 10))
    assert lines == [
        f"{sec}|NONE|NONE|Agent/anna|ADDMEMBER|",
        f"{sec}|NONE|NONE|Agent/bob|ADDMEMBER|PAUSED",
        f"{sec + 1}|c1|info|NONE|ENTERQUEUE||+48600100200|3",
        f"{sec + 2}|c1|info|Agent/bob|OFFER|1|1",
        f"{sec + 17}|c1|info|Agent/bob|RINGNOANSWER|15500",
        f"{sec + 18}|c1|info|Agent/anna|OFFER|17|2",
        f"{sec + 21}|c1|info|Agent/anna|CONNECT|20|c1|3",
        f"{sec + 81}|c1|info|Agent/anna|TRANSFER|second|cityline|20|60|3",
        f"{sec + 81}|c1|second|NONE|ENTERQUEUE||+48600100200|1",
        f'{sec + 90}|c1|second|NONE|ESCALATE|0|second|2|{{"taxes": 6}}',
        f"{sec + 95}|c1|second|Agent/bob|CONNECT|13|c1|2",
        f"{sec + 155}|c1|second|Agent/bob|COMPLETEAGENT|13|60|1",
        f"{sec + 185}|c1|second|Agent/bob|WRAPUPEND|30|agent|solved|told about   fees and dates",
        f"{sec + 200}|c2|info|NONE|EXITWITHTIMEOUT|2|4|600",
        f"{sec + 201}|d1|info|NONE|DEFLECTED|2026-000009|opening-hours",
        f"{sec + 202}|m1|mail|NONE|MESSAGE|resident|512",
        f"{sec + 300}|NONE|NONE|Agent/bob|UNPAUSE|",
        f"{sec + 400}|NONE|NONE|Agent/anna|REMOVEMEMBER|",
    ]
    count, strict = await export(redis, keys, cfg, date(2026, 3, 10), include_cityline=False)
    assert count == len(strict) == 12  # 18 less 2 OFFER, ESCALATE, WRAPUPEND, DEFLECTED, MESSAGE
    assert {line.split("|")[4] for line in strict} <= {
        "ADDMEMBER",
        "ENTERQUEUE",
        "RINGNOANSWER",
        "CONNECT",
        "TRANSFER",
        "COMPLETEAGENT",
        "EXITWITHTIMEOUT",
        "UNPAUSE",
        "REMOVEMEMBER",
    }


async def test_day_filter_uses_city_days_and_event_times(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig
) -> None:
    midnight = local_ms("2026-03-11T00:00:00")
    ev = Events(redis)
    await ev.add(enterqueue(midnight - 3_600_000, "before", "info"))
    await ev.add(enterqueue(midnight - 20_000, "late", "info"))
    # the channel saw the hang-up at 23:59:59; Redis wrote it just after midnight
    await ev.add(abandon(midnight - 1000, "late", "info", 19_000), id_ms=midnight + 500)
    await ev.add(enterqueue(midnight, "next", "info"))
    count, lines = await export(redis, keys, cfg, date(2026, 3, 10))
    assert count == 3
    assert [line.split("|")[1] for line in lines] == ["before", "late", "late"]
    assert lines[-1].split("|")[4] == "ABANDON"
    _, nxt = await export(redis, keys, cfg, date(2026, 3, 11))
    assert [line.split("|")[1] for line in nxt] == ["next"]
    count, _ = await export(redis, keys, cfg, None)
    assert count == 4
    count, _ = await export(redis, keys, cfg, None, since_ms=midnight - 30_000, until_ms=midnight)
    assert count == 2


async def test_original_position_from_the_interaction_when_entry_is_earlier(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig
) -> None:
    t = local_ms("2026-03-10T23:59:00")
    await redis.hset(keys.ix("e1"), mapping={"resident": "+48600", "origpos": "5"})
    ev = Events(redis)
    await ev.add_all(
        enterqueue(t, "e1", "info", pos=5),
        connect(t + 30_000, "e1", "info", "anna", 30_000),
        complete(local_ms("2026-03-11T00:10:00"), "e1", "info", "anna", 30_000, 630_000),
    )
    _, lines = await export(redis, keys, cfg, date(2026, 3, 11))
    assert lines == [
        f"{local_ms('2026-03-11T00:10:00') // 1000}|e1|info|Agent/anna|COMPLETECALLER|30|630|5"
    ]


async def test_empty_stream(redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig) -> None:
    assert await export(redis, keys, cfg, date(2026, 3, 10)) == (0, [])
