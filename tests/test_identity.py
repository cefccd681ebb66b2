"""Residents recognised across channels: canonical identities, consent, linking, merging and
withdrawal, on the real Redis through the routing service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from queues.residents import ResidentStore
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.errors import NotFound, Unprocessable
from router.identity import identities_of, identity_of
from router.models import Channel, IntakeRequest
from router.service import RoutingService
from tests.routing_fixtures import CONFIG

PHONE = "tel:+48600100200"
MAIL = "mailto:jan.kowalski@example.pl"


# --- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "raw", "identity"),
    [
        # Polish numbers, national and international, as people and gateways write them
        (Channel.voice, "600100200", PHONE),
        (Channel.voice, "600 100 200", PHONE),
        (Channel.sms, "+48600100200", PHONE),
        (Channel.sms, "+48 600-100-200", PHONE),
        (Channel.voice, "0048600100200", PHONE),
        (Channel.voice, "48600100200", PHONE),  # operators drop the '+'
        (Channel.voice, "(22) 123 45 67", "tel:+48221234567"),
        (Channel.webform, "+48 22 123 45 67", "tel:+48221234567"),
        (Channel.webform, "tel:+48600100200", PHONE),
        # Ukrainian numbers keep their country
        (Channel.sms, "+380501234567", "tel:+380501234567"),
        (Channel.voice, "+380 50 123 45 67", "tel:+380501234567"),
        (None, "00380501234567", "tel:+380501234567"),
        # e-mail: trimmed, lower-cased, a display name dropped
        (Channel.email, "Jan.Kowalski@Example.PL", MAIL),
        (Channel.email, "  JAN.KOWALSKI@EXAMPLE.PL ", MAIL),
        (Channel.email, "Jan Kowalski <Jan.Kowalski@example.pl>", MAIL),
        (Channel.webform, "jan.kowalski@EXAMPLE.pl", MAIL),
        (None, "mailto:Jan.Kowalski@example.pl", MAIL),
        # Telegram chats
        (Channel.telegram, "tg:123456", "telegram:123456"),
        (Channel.telegram, "-100987", "telegram:-100987"),
        (None, "telegram:42", "telegram:42"),
        # no one: withheld callers, a chat without contact, nonsense, invalid numbers
        (Channel.voice, "anonymous", None),
        (Channel.voice, "Unknown", None),
        (Channel.voice, "", None),
        (Channel.sms, "  ", None),
        (Channel.voice, "withheld", None),
        (Channel.chat, "", None),
        (Channel.voice, "123", None),  # a short code
        (Channel.voice, "+48 600", None),
        (Channel.sms, "call me at 600100200", None),
        (Channel.voice, "jan@example.pl", None),  # a phone channel gives phone numbers only
        (Channel.email, "600100200", None),
        (Channel.email, "not-an-address@", None),
        (Channel.email, "a@b", None),
        (Channel.telegram, "tg:abc", None),
        (Channel.webform, "x" * 400 + "@example.pl", None),
    ],
)
def test_identity_of(channel: Channel | None, raw: str, identity: str | None) -> None:
    assert identity_of(channel, raw, "PL") == identity


def test_region_reads_national_numbers() -> None:
    assert identity_of(Channel.voice, "050 123 45 67", "UA") == "tel:+380501234567"
    assert identity_of(Channel.voice, "+48600100200", "UA") == PHONE


def test_identities_of_a_contact_in_order_without_repeats() -> None:
    found = identities_of(Channel.webform, "Jan.Kowalski@example.pl",
                          ["600 100 200", "+48600100200", "nonsense", "JAN.KOWALSKI@example.pl"],
                          "PL")  # fmt: skip
    assert found == [MAIL, PHONE]
    assert identities_of(Channel.chat, "", ["jan.kowalski@example.pl"], "PL") == [MAIL]


# --- a city with every channel --------------------------------------------------------------


def _city(tmp_path: Path) -> CitylineConfig:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for channel in ("sms", "email", "webform", "telegram"):
        data["queues"][channel] = {
            "channel": channel, "labels": {"pl": channel, "en": channel},
            "skills": {"general": 1},
            "service_level": {"target_pct": 80, "threshold_s": 3600},
        }  # fmt: skip
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path, env={})


@pytest.fixture
def city(tmp_path: Path) -> CitylineConfig:
    return _city(tmp_path)


@pytest.fixture
def svc(store: RoutingStore, city: CitylineConfig) -> RoutingService:
    return RoutingService(store, city)


async def contact(svc: RoutingService, channel: Channel, resident: str = "", **kw: Any) -> str:
    done = await svc.create_interaction(IntakeRequest(channel=channel, resident=resident, **kw))
    assert done.created
    await asyncio.sleep(0.002)  # one Redis millisecond apart: history order is defined
    return done.id


async def history_ids(svc: RoutingService, ix_id: str) -> list[str]:
    _rid, others = await svc.resident_history(ix_id)
    return [o["id"] for o in others]


async def resident_keys(redis: aioredis.Redis) -> list[str]:
    found = []
    for pattern in ("cl:rid", "cl:rix", "cl:res:*"):
        found += [k async for k in redis.scan_iter(pattern)]
    return sorted(found)


# --- linking with consent, recognising without ----------------------------------------------


async def test_webform_with_consent_links_email_and_phone_and_a_later_sms_is_recognised(
    svc: RoutingService, redis: aioredis.Redis
) -> None:
    form = await contact(svc, Channel.webform, "Jan.Kowalski@Example.pl",
                         contacts=["600 100 200"], consent=True, subject="Dziura w jezdni")
    rid = await svc.residents.resident_of(MAIL)
    assert rid is not None
    assert await svc.residents.resident_of(PHONE) == rid
    assert await svc.residents.identities(rid) == {MAIL, PHONE}
    consent = await svc.residents.consent(rid)
    assert consent["consent"] == "1" and consent["via"] == "webform"
    assert int(consent["since_ms"]) > 0
    assert await svc.residents.resident_of_interaction(form) == rid
    assert await history_ids(svc, form) == []  # nothing else yet

    # a week later an SMS from that phone: no consent flag, but the resident consented
    sms = await contact(svc, Channel.sms, "+48600100200", body="Czy już naprawione?")
    assert await svc.residents.resident_of_interaction(sms) == rid
    got_rid, others = await svc.resident_history(sms)
    assert got_rid == rid
    assert [o["id"] for o in others] == [form]
    assert others[0]["channel"] == "webform" and others[0]["subject"] == "Dziura w jezdni"
    assert others[0]["ref"] and others[0]["state"] == "queued"
    # and an e-mail in upper case from the same address
    mail = await contact(svc, Channel.email, "JAN.KOWALSKI@EXAMPLE.PL")
    assert await history_ids(svc, mail) == [sms, form]  # newest first, without itself
    assert await history_ids(svc, form) == [mail, sms]
    # the SMS added no identity: only consent links
    assert await svc.residents.identities(rid) == {MAIL, PHONE}


async def test_unknown_caller_without_consent_leaves_no_trace(
    svc: RoutingService, redis: aioredis.Redis
) -> None:
    ix = await contact(svc, Channel.voice, "+48 22 123 45 67", queue="voice",
                       contacts=["someone@example.pl"])
    assert await resident_keys(redis) == []
    assert await svc.resident_history(ix) == (None, [])
    stored = await svc.store.interaction(ix)
    assert "resident_id" not in stored and "identity" not in stored
    # a withheld number, even with consent, has nothing to recognise
    await contact(svc, Channel.voice, "anonymous", queue="voice", consent=True)
    await contact(svc, Channel.chat, "", queue="chat", consent=True)
    assert await resident_keys(redis) == []


async def test_contacts_count_only_with_consent(svc: RoutingService) -> None:
    await contact(svc, Channel.webform, "+48600100200", consent=True)
    # an e-mail naming that phone as a further contact, without consent: not recognised
    ix = await contact(svc, Channel.email, "other@example.pl", contacts=["600100200"])
    assert await svc.resident_history(ix) == (None, [])
    assert await svc.residents.resident_of("mailto:other@example.pl") is None


async def test_consent_alone_makes_a_resident_of_one_identity(svc: RoutingService) -> None:
    form = await contact(svc, Channel.webform, "600100200", consent=True)
    call = await contact(svc, Channel.voice, "+48600100200", queue="voice")
    assert await history_ids(svc, call) == [form]
    telegram = await contact(svc, Channel.telegram, "tg:777", consent=True,
                             contacts=["+48 600 100 200"])
    rid = await svc.residents.resident_of(PHONE)
    assert await svc.residents.identities(rid or "") == {PHONE, "telegram:777"}
    assert await history_ids(svc, telegram) == [call, form]


async def test_repeated_delivery_is_recorded_once(svc: RoutingService) -> None:
    req = IntakeRequest(channel=Channel.sms, resident="+48600100200", external_id="m-1",
                        consent=True)
    first = await svc.create_interaction(req)
    again = await svc.create_interaction(req)
    assert again.id == first.id and not again.created
    rid = await svc.residents.resident_of(PHONE)
    assert await svc.residents.history(rid or "") == [
        (first.id, int((await svc.store.interaction(first.id))["created_ms"]))
    ]


async def test_two_residents_merge_when_one_contact_links_them(
    svc: RoutingService, redis: aioredis.Redis
) -> None:
    by_mail = await contact(svc, Channel.email, "jan.kowalski@example.pl", consent=True)
    older = await svc.residents.resident_of(MAIL)
    by_phone = await contact(svc, Channel.sms, "+48600100200", consent=True)
    newer = await svc.residents.resident_of(PHONE)
    assert older and newer and older != newer
    tg = await contact(svc, Channel.telegram, "tg:5", consent=True)

    # a web form with the phone and the e-mail, consenting: one person after all
    form = await contact(svc, Channel.webform, "600100200", consent=True,
                         contacts=["Jan.Kowalski@example.pl"])
    assert await svc.residents.resident_of(MAIL) == older  # who consented first absorbs
    assert await svc.residents.resident_of(PHONE) == older
    assert await svc.residents.identities(older) == {MAIL, PHONE}
    assert await history_ids(svc, form) == [by_phone, by_mail]
    assert await history_ids(svc, by_phone) == [form, by_mail]
    assert await svc.residents.resident_of_interaction(by_phone) == older
    # nothing of the absorbed resident is left; the unrelated one is untouched
    assert not [k for k in await resident_keys(redis) if f":{newer}:" in k]
    assert await svc.residents.resident_of("telegram:5") not in (None, older)
    assert await history_ids(svc, tg) == []
    consent = await svc.residents.consent(older)
    assert consent["via"] == "email" and int(consent["renewed_ms"]) >= int(consent["since_ms"])


async def test_history_is_capped(store: RoutingStore, svc: RoutingService) -> None:
    small = ResidentStore(store.redis, store.keys, store.scripts, history_cap=3)
    svc._residents = small
    ids = [await contact(svc, Channel.sms, "+48600100200", consent=True) for _ in range(5)]
    rid = await small.resident_of(PHONE)
    assert [i for i, _ in await small.history(rid or "")] == ids[:1:-1]
    assert await small.resident_of_interaction(ids[0]) is None  # forgotten with its record
    assert await history_ids(svc, ids[4]) == [ids[3], ids[2]]


# --- withdrawal -----------------------------------------------------------------------------


async def test_withdrawal_unlinks_and_the_next_contact_is_not_recognised(
    svc: RoutingService, redis: aioredis.Redis
) -> None:
    form = await contact(svc, Channel.webform, "jan.kowalski@example.pl", consent=True,
                         contacts=["600100200"])
    sms = await contact(svc, Channel.sms, "+48600100200")
    rid = await svc.residents.resident_of(PHONE)
    assert rid and await history_ids(svc, sms) == [form]

    done = await svc.withdraw_consent(rid)
    assert (done.identities, done.interactions) == (2, 2) and done.withdrawn_ms > 0
    assert await svc.residents.resident_of(PHONE) is None
    assert await svc.residents.resident_of(MAIL) is None
    assert await svc.resident_history(sms) == (None, [])
    assert await svc.resident_history(form) == (None, [])
    # what stays: the interactions, and the record of the withdrawal without any identity
    assert (await svc.store.interaction(form))["resident"] == "jan.kowalski@example.pl"
    assert await resident_keys(redis) == [f"cl:res:{rid}:consent"]
    record = await svc.residents.consent(rid)
    assert record["consent"] == "0" and int(record["withdrawn_ms"]) == done.withdrawn_ms
    assert not set(record) & {"identity", "resident"}

    call = await contact(svc, Channel.voice, "600100200", queue="voice")
    assert await svc.resident_history(call) == (None, [])
    assert await resident_keys(redis) == [f"cl:res:{rid}:consent"]

    again = await svc.withdraw_consent(rid)  # repeating answers with the first withdrawal
    assert (again.identities, again.interactions, again.withdrawn_ms) == (0, 0, done.withdrawn_ms)

    # consenting again later starts a new resident, with nothing of the old history
    new_form = await contact(svc, Channel.webform, "600100200", consent=True)
    new_rid = await svc.residents.resident_of(PHONE)
    assert new_rid and new_rid != rid
    assert await history_ids(svc, new_form) == []


async def test_withdrawal_by_contact(svc: RoutingService) -> None:
    await contact(svc, Channel.telegram, "tg:99", consent=True, contacts=["+380501234567"])
    done = await svc.withdraw_consent(contact="+380 50 123 45 67")
    assert done.identities == 2
    assert await svc.residents.resident_of("telegram:99") is None
    with pytest.raises(NotFound):
        await svc.withdraw_consent(contact="+380501234567")
    with pytest.raises(NotFound):
        await svc.withdraw_consent("0123456789abcdef")
    with pytest.raises(Unprocessable):
        await svc.withdraw_consent(contact="not a contact")


async def test_concurrent_first_contacts_make_one_resident(svc: RoutingService) -> None:
    reqs = [IntakeRequest(channel=Channel.webform, resident="600100200", consent=True,
                          contacts=[f"user{i}@example.pl"]) for i in range(8)]  # fmt: skip
    done = await asyncio.gather(*(svc.create_interaction(r) for r in reqs))
    rid = await svc.residents.resident_of(PHONE)
    assert rid is not None
    assert len(await svc.residents.identities(rid)) == 9
    assert {i for i, _ in await svc.residents.history(rid)} == {d.id for d in done}


class _RacingRedis:
    """A Redis client whose first HMGET lets another contact link in before answering: the
    resident index then changed between the read and the script."""

    def __init__(self, redis: aioredis.Redis, meanwhile: Any) -> None:
        self._redis = redis
        self._meanwhile = meanwhile
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    async def hmget(self, *args: Any) -> Any:
        got = await self._redis.hmget(*args)
        self.reads += 1
        if self.reads == 1:
            await self._meanwhile()
        return got


async def test_a_link_raced_by_another_reads_again(store: RoutingStore, svc: RoutingService):
    first = await contact(svc, Channel.chat, queue="chat")
    second = await contact(svc, Channel.chat, queue="chat")
    plain = ResidentStore(store.redis, store.keys, store.scripts)

    async def meanwhile() -> None:
        await plain.link(second, [PHONE], consent=True, via="sms")

    racing = _RacingRedis(store.redis, meanwhile)
    linked = await ResidentStore(racing, store.keys, store.scripts).link(  # type: ignore[arg-type]
        first, [MAIL, PHONE], consent=True, via="webform")
    assert racing.reads == 2  # refused as stale once, read again, linked
    rid = await plain.resident_of(PHONE)
    assert linked.resident_id == rid and await plain.resident_of(MAIL) == rid
    assert {i for i, _ in await plain.history(rid or "")} == {first, second}
