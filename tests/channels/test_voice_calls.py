"""Calls end to end: FakeAsterisk (speaking like the captured Asterisk 22) runs the shipped
dialplan; the production voice adapter, IVR, dispatcher and event feed do the rest. Waits and
talk times are checked against the fake's own event Timestamps, to the millisecond."""

from __future__ import annotations

import asyncio

from router.models import TransferRequest
from tests.channels.voice_city import AGENT, PHONE, VoiceCity, asterisk_ms, city

__all__ = ["city"]



async def test_answered_call_waits_and_talks_by_asterisk_time(city: VoiceCity) -> None:
    caller = await city.talking_call("601234567")
    (conn,) = await city.events("CONNECT")
    ix = await city.ix_of(caller.uniqueid)
    assert (ix["queue"], ix["topic"], ix["resident"]) == ("voice-info", "local_taxes",
                                                         "+48601234567")
    (answered, _), *_ = city.fake.find_events("DialEnd", DialStatus="ANSWER")
    assert conn.agent == AGENT and conn.time_ms == asterisk_ms(answered)
    assert conn.wait_ms == asterisk_ms(answered) - int(ix["entered_ms"])
    caller.hangup()
    (done,) = await city.wait_event("COMPLETECALLER")
    # the conversation ends when the resident leaves the bridge (before any Hangup event)
    (left, _), *_ = city.fake.find_events("BridgeLeave", Uniqueid=caller.uniqueid)
    assert done.time_ms == asterisk_ms(left)
    assert done.talk_ms == asterisk_ms(left) - asterisk_ms(answered)


async def test_agent_hangs_up_first(city: VoiceCity) -> None:
    caller = await city.talking_call("601234571")
    assert city.fake.hangup_agent(PHONE)
    (done,) = await city.wait_event("COMPLETEAGENT")
    assert done.agent == AGENT and not await city.events("COMPLETECALLER")
    await caller.wait_state("gone", within_s=5)  # Dial without "g": the caller goes too
    wrap = await city.service.store.interaction(done.ix)
    assert wrap["state"] == "wrapup"  # voice-info has 10 s of wrap-up


async def test_caller_hangs_up_while_waiting_is_an_exact_abandon(city: VoiceCity) -> None:
    caller = city.local_taxes_call("601234568")
    await city.wait_event("ENTERQUEUE")
    await caller.wait_state("ivr", "moh", within_s=5)
    caller.hangup()
    (ab,) = await city.wait_event("ABANDON")
    (hung, _), *_ = city.fake.find_events("Hangup", Uniqueid=caller.uniqueid)
    ix = await city.ix_of(caller.uniqueid)
    assert (ab.time_ms, ab.wait_ms) == (asterisk_ms(hung),
                                        asterisk_ms(hung) - int(ix["entered_ms"]))
    assert ix["state"] == "abandoned"


async def test_agent_who_does_not_answer_is_ring_no_answer_and_caller_keeps_place(
    city: VoiceCity,
) -> None:
    city.fake.set_agent_behaviour(PHONE, "noanswer")
    await city.service.agent_login(AGENT, ready=True)
    caller = city.local_taxes_call("601234569")
    (rona,) = await city.wait_event("RINGNOANSWER", within_s=10)
    assert rona.agent == AGENT
    ix = await city.ix_of(caller.uniqueid)
    assert ix["state"] in ("queued", "offered")  # back at its place (maybe offered again)
    await caller.wait_state("ivr", "moh", "ringing", within_s=5)  # still on the line
    caller.hangup()
    await city.wait_event("ABANDON")


async def test_information_leaf_deflects(city: VoiceCity) -> None:
    caller = city.fake.add_caller(kind="pjsip", callerid_num="601234570")
    caller.answer_prompts("1", "1", "1")  # Polish, information, office hours
    (defl,) = await city.wait_event("DEFLECTED", within_s=10)
    assert defl.channel == "voice" and not await city.events("ENTERQUEUE")
    await caller.wait_state("gone", within_s=5)


async def test_waiting_caller_hears_place_and_wait_and_the_promise_is_kept(
    city: VoiceCity,
) -> None:
    caller = city.local_taxes_call("601234572")
    await city.wait_event("ENTERQUEUE")

    async def announced() -> bool:
        return int((await city.ix_of(caller.uniqueid)).get("announcements") or 0) >= 2

    await city.wait_for(announced, within_s=10)
    ix = await city.ix_of(caller.uniqueid)
    assert (ix["promised_pos"], ix["announced_pos"]) == ("1", "1")
    assert int(ix["promised_at_ms"]) <= int(ix["announced_at_ms"])
    caller.hangup()
    await city.wait_event("ABANDON")


async def test_blind_transfer_puts_the_caller_back_on_hold_in_the_new_queue(
    city: VoiceCity,
) -> None:
    caller = await city.talking_call("601234573")
    (conn,) = await city.events("CONNECT")
    await city.service.transfer(conn.ix, TransferRequest(queue="voice-general"), by_agent=AGENT)
    await caller.wait_state("ivr", "moh", within_s=5)  # back in cityline's hold loop
    ix = await city.service.store.interaction(conn.ix)
    assert (ix["state"], ix["queue"]) == ("queued", "voice-general")
    await city.wait_for(lambda: not city.fake.agent(PHONE).channel, within_s=5)  # hung up
    assert not await city.events("COMPLETECALLER", "COMPLETEAGENT", "ABANDON")
    caller.hangup()
    (ab,) = await city.wait_event("ABANDON")
    assert ab.queue == "voice-general"


async def test_caller_who_hangs_up_in_the_menus_is_counted_as_an_ivr_abandon(
    city: VoiceCity,
) -> None:
    caller = city.fake.add_caller(kind="pjsip", callerid_num="601234574")
    caller.answer_prompts("1", "")  # Polish, then silence in the main menu...
    await city.wait_for(lambda: caller.state == "ivr", within_s=5)
    await asyncio.sleep(0.3)  # past the language choice (prompts run at 1/50 speed)
    caller.hangup()  # ... and gone
    (left,) = await city.wait_event("IVRABANDON", within_s=10)
    assert left.channel == "voice" and (left.model_extra or {})["reason"] == "main_menu"
    assert not await city.events("ENTERQUEUE", "ABANDON")
