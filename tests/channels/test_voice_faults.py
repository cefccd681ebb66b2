"""Voice calls through trouble: a resident who leaves while the phone rings, a callback that
keeps its place, the AMI link dropped or half-open mid-call, and garbage from the PBX."""

from __future__ import annotations

import asyncio

from tests.channels.voice_city import AGENT, PHONE, VoiceCity, asterisk_ms, city

__all__ = ["city"]



async def test_caller_hangs_up_while_the_agent_phone_rings(city: VoiceCity) -> None:
    city.fake.set_agent_behaviour(PHONE, "noanswer")
    await city.service.agent_login(AGENT, ready=True)
    caller = city.local_taxes_call("601000001")
    await caller.wait_state("ringing", within_s=10)
    caller.hangup()
    (ab,) = await city.wait_event("ABANDON")
    (hung, _), *_ = city.fake.find_events("Hangup", Uniqueid=caller.uniqueid)
    assert (ab.during, ab.agent, ab.time_ms) == ("offered", AGENT, asterisk_ms(hung))
    agent = await city.service.agent_view(AGENT)
    assert agent["load:voice"] == "0"  # the ringing phone's slot is free again


async def test_callback_keeps_its_place_and_calls_the_agent_first(city: VoiceCity) -> None:
    first = city.local_taxes_call("601000002")
    await city.wait_event("ENTERQUEUE")
    await asyncio.sleep(0.05)
    later = city.local_taxes_call("601000003")
    await city.wait_event("ENTERQUEUE", 2)
    ix = await city.ix_of(first.uniqueid)
    first.press("1", delay_s=0.0)  # "press 1 to be called back; you keep your place"

    async def callback_recorded() -> bool:
        return (await city.ix_of(first.uniqueid)).get("callback") == "1"

    await city.wait_for(callback_recorded, within_s=10)
    await first.wait_state("gone", within_s=5)
    assert not await city.events("ABANDON")  # hanging up after asking for a callback
    kept = await city.ix_of(first.uniqueid)
    assert (kept["state"], kept["enqueued_ms"]) == ("queued", ix["enqueued_ms"])
    city.fake.set_agent_behaviour(PHONE, "answer")
    city.fake.set_agent_behaviour("48601000002", "answer")  # the resident picks up
    await city.service.agent_login(AGENT, ready=True)
    (conn,) = await city.wait_event("CONNECT", within_s=10)
    assert conn.ix == ix["id"]  # the callback before the caller who came later
    (orig, _), *_ = city.fake.find_events("OriginateResponse", Response="Success")
    assert conn.time_ms == asterisk_ms(orig)
    later.hangup()


async def test_ami_link_dropped_mid_call_loses_nothing_and_counts_once(city: VoiceCity) -> None:
    city.fake.set_agent_behaviour(PHONE, "answer")
    talking = city.local_taxes_call("601000004")
    await city.service.agent_login(AGENT, ready=True)
    await talking.wait_state("talking", within_s=10)
    await city.wait_event("CONNECT")
    leaving = city.local_taxes_call("601000005")
    staying = city.local_taxes_call("601000006")
    await city.wait_event("ENTERQUEUE", 3)
    accepted = city.fake.connections_accepted
    await city.fake.drop_connections()
    leaving.hangup()  # nobody hears it: the AMI link is down
    await leaving.wait_state("gone", within_s=5)

    async def reconnected() -> bool:
        return city.fake.connections_accepted > accepted and city.adapter.ami.connected

    await city.wait_for(reconnected, within_s=10)
    (ab,) = await city.wait_event("ABANDON")  # found missing by the reconciliation
    assert ab.ix == (await city.ix_of(leaving.uniqueid))["id"]
    assert (await city.ix_of(staying.uniqueid))["state"] == "queued"  # kept its place
    assert (await city.ix_of(talking.uniqueid))["state"] == "connected"
    talking.hangup()
    await city.wait_event("COMPLETECALLER")
    await asyncio.sleep(0.3)
    assert len(await city.events("ABANDON")) == 1  # counted once
    assert len(await city.events("CONNECT")) == 1
    staying.hangup()


async def test_half_open_link_is_noticed_and_replaced(city: VoiceCity) -> None:
    accepted = city.fake.connections_accepted
    city.fake.freeze_connections()  # the socket stays, nothing answers (ping 0.3 s + 0.3 s)

    async def replaced() -> bool:
        return city.fake.connections_accepted > accepted and city.adapter.ami.connected

    await city.wait_for(replaced, within_s=5)
    caller = city.local_taxes_call("601000007")
    await city.wait_event("ENTERQUEUE")
    caller.hangup()
    await city.wait_event("ABANDON")  # the new link hears the hang-up


async def test_garbage_truncated_and_oversized_frames_do_not_stop_the_adapter(
    city: VoiceCity,
) -> None:
    city.fake.send_garbage()
    city.fake.send_truncated()
    city.fake.send_oversized()
    await asyncio.sleep(0.5)
    caller = city.local_taxes_call("601000008")
    await city.wait_event("ENTERQUEUE", within_s=10)
    caller.hangup()
    (ab,) = await city.wait_event("ABANDON", within_s=10)
    assert ab.channel == "voice"
