"""The creation-time index of cases (`Keys.case_by_created`): written by case_create.lua with the
case, read by ranges (Open311's list, the city's reports), rebuilt for cases made before it
existed. The packaged city: roads unit."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router.auth import Role
from router.cases import Actor, CaseInput, CaseService
from router.config import CitylineConfig, load_config
from router.models import Channel, IntakeRequest
from router.service import RoutingService

K = Keys()
BOSS = Actor("kierownik", Role.supervisor)


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


async def make(service: RoutingService, n: int) -> list[str]:
    numbers = []
    for i in range(n):
        req = IntakeRequest(channel=Channel.sms, resident=f"+4860010020{i}", body="Dziura")
        done = await service.create_interaction(req)
        ix = await service.store.interaction(done.id)
        made = await service.cases.create_from_interaction(
            ix, CaseInput(category="road_damage"), BOSS)
        numbers.append(made.number)
    return numbers


async def test_the_script_files_each_case_by_its_creation_time(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    (number,) = await make(service, 1)
    case = await service.cases.get(number)
    assert await redis.zscore(K.case_by_created, case["id"]) == int(case["created_ms"])


async def test_ranges_newest_first_with_limits_and_all_oldest_first(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    cases: CaseService = service.cases
    numbers = await make(service, 4)
    ids = [await cases.store.id_of(n) for n in numbers]
    # spread them over days: the index is what is read, so move its scores (and the cases')
    day = 86_400_000
    now = await service.store.now_ms()
    for age, cid in zip((3, 2, 1, 0), ids, strict=True):
        await redis.zadd(K.case_by_created, {cid: now - age * day})
        await redis.hset(K.case(cid), "created_ms", now - age * day)
    got = await cases.created_between(now - 2 * day - 1, now)
    assert [c["number"] for c in got] == numbers[:0:-1]  # newest first, the oldest left out
    assert [c["number"] for c in await cases.created_between(now - 5 * day, now, limit=2)] == \
        numbers[:1:-1]
    assert await cases.created_between(now + 1, now + day) == []
    assert [c["number"] for c in await cases.all_cases()] == numbers
    assert await cases.store.created_ids(now - day, now - day) == [ids[2]]  # inclusive bounds


async def test_paging_reads_everything(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    await make(service, 3)
    for i in range(12_000):  # index entries of cases that are gone are left out by `many`
        await redis.zadd(K.case_by_created, {f"gone{i:05d}": i})
    ids = await service.cases.store.created_ids()
    assert len(ids) == 12_003 and ids[0] == "gone00000"
    assert len(await service.cases.all_cases()) == 3


async def test_cases_made_before_the_index_are_added_to_it(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    numbers = await make(service, 3)
    await redis.delete(K.case_by_created)  # as a city upgraded from before the index
    await redis.zadd(K.case_by_created, {await service.cases.store.id_of(numbers[0]): 1})
    now = await service.store.now_ms()
    got = await service.cases.created_between(now - 60_000, now)
    assert sorted(c["number"] for c in got) == numbers[1:]  # the one already there keeps its score
    assert await redis.zcard(K.case_by_created) == 3
    assert await service.cases.store.index_created() == 0  # nothing more to do: two counts
