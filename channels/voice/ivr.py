"""The IVR engine: one flow (router.ivr_flow) walked over one FastAGI session.

`run_flow` plays the prompts, reads the keys and follows the nodes until a leaf, and returns what
became of the call as a `FlowOutcome`:

* `Deflected`: an info leaf answered the caller (self-service, DEFLECTED under its topic);
* `Routed`: the caller is to wait for an agent (queue, topic, language, priority, ...);
* `CallbackRequested`: the caller asked to be called back (number in E.164);
* `HungUp`: the caller left inside the IVR (at which node);
* `Ended`: the IVR ended the call itself: closed with no callback, a callback declined or
  without a number, or the session broke (protocol error, timeout; see `reason`).

It never enqueues anything: the server hands the outcome to the voice adapter (`on_outcome`).
Every outcome carries the path of nodes the call went through, for the interaction's metadata.

Retries: a menu prompt is played, then the engine waits `timeout_s` for one key. No key or a key
that is no option counts as a failed attempt; after `retries` repeats the call goes to the
`fallback`. A key pressed during the on_invalid/on_timeout message is taken as the next answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from channels.voice.agi import AgiError, AgiSession, CallerHungUp
from channels.voice.agi_env import AgiEnv, normalise_caller
from router.ivr_flow import (
    CallbackRequestNode,
    ClosedNode,
    GotoNode,
    HoursNode,
    InfoNode,
    IvrFlow,
    LanguageNode,
    MenuNode,
    Prompt,
    RouteNode,
)
from router.ivr_hours import hours_status

logger = logging.getLogger(__name__)

MAX_STEPS = 100  # node visits per call: a caller who keeps pressing '*' is stopped somewhere
MAX_NUMBER_DIGITS = 16  # E.164 has at most 15 digits; one more for a national trunk prefix

Path = tuple[str, ...]


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deflected:
    topic: str
    path: Path
    language: str = ""
    kind: Literal["deflected"] = "deflected"
    ends_call = True


@dataclass(frozen=True, slots=True)
class Routed:
    queue: str
    topic: str | None
    language: str
    priority: int
    callback_offer: bool
    announce_every_s: int | None
    path: Path
    kind: Literal["routed"] = "routed"
    ends_call = False


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    queue: str
    number: str  # E.164
    language: str
    path: Path
    topic: str | None = None
    number_source: Literal["caller_id", "keyed"] = "caller_id"
    kind: Literal["callback"] = "callback"
    ends_call = True


@dataclass(frozen=True, slots=True)
class HungUp:
    path: Path
    at_node: str
    language: str = ""
    kind: Literal["hungup"] = "hungup"
    ends_call = False  # nothing left to end


@dataclass(frozen=True, slots=True)
class Ended:
    # "closed", "callback declined", "no callback number", "too many steps", "error: <kind>"
    reason: str
    path: Path
    at_node: str
    language: str = ""
    kind: Literal["ended"] = "ended"

    @property
    def ends_call(self) -> bool:
        # after an error of ours the caller is left to the dialplan's fallback, not hung up
        return not self.reason.startswith("error")


FlowOutcome = Deflected | Routed | CallbackRequested | HungUp | Ended


def outcome_variables(outcome: FlowOutcome) -> dict[str, str]:
    """Channel variables that tell the dialplan (and the CDR) what the IVR decided."""
    variables = {
        "CITYLINE_OUTCOME": outcome.kind,
        "CITYLINE_IVR_PATH": ">".join(outcome.path)[-250:],
    }
    if outcome.language:
        variables["CITYLINE_LANGUAGE"] = outcome.language
    if isinstance(outcome, Routed):
        variables.update(
            CITYLINE_QUEUE=outcome.queue,
            CITYLINE_TOPIC=outcome.topic or "",
            CITYLINE_PRIORITY=str(outcome.priority),
            CITYLINE_CALLBACK_OFFER="1" if outcome.callback_offer else "0",
            CITYLINE_ANNOUNCE_EVERY=str(outcome.announce_every_s or 0),
        )
    elif isinstance(outcome, Deflected):
        variables["CITYLINE_TOPIC"] = outcome.topic
    elif isinstance(outcome, CallbackRequested):
        variables.update(CITYLINE_QUEUE=outcome.queue, CITYLINE_CALLBACK_NUMBER=outcome.number)
    elif isinstance(outcome, Ended):
        variables["CITYLINE_IVR_END"] = outcome.reason
    return variables


# --- the engine -----------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run_flow(
    session: AgiSession,
    flow: IvrFlow,
    env: AgiEnv,
    *,
    tz: tzinfo | str = "Europe/Warsaw",
    region: str = "PL",
    clock: Callable[[], datetime] = _utc_now,
    max_steps: int = MAX_STEPS,
) -> FlowOutcome:
    """Walk `flow` for the call of `session` until a leaf; never raises for call trouble.

    `tz` is the city time zone of hours nodes, `region` the country of numbers keyed in without
    a prefix, `clock` the current instant (timezone-aware).
    """
    call = _Call(session, flow, env, ZoneInfo(tz) if isinstance(tz, str) else tz, region, clock)
    return await call.run(max_steps)


class _Call:
    def __init__(
        self,
        session: AgiSession,
        flow: IvrFlow,
        env: AgiEnv,
        tz: tzinfo,
        region: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.session = session
        self.flow = flow
        self.env = env
        self.tz = tz
        self.region = region
        self.clock = clock
        self.language = flow.start_language
        self.path: list[str] = []

    async def run(self, max_steps: int) -> FlowOutcome:
        name = self.flow.entry
        try:
            await self.session.answer()
            for _ in range(max_steps):
                self.path.append(name)
                step = await self._visit(name)
                if not isinstance(step, str):
                    return step
                name = step
            logger.warning("ivr: call %s stopped after %d steps: %s", self.env.uniqueid,
                           max_steps, ">".join(self.path[-10:]))
            return self._ended("too many steps", name)
        except CallerHungUp:
            return HungUp(tuple(self.path), name, self.language)
        except AgiError as exc:
            # the session cannot go on (malformed or oversized input, a timeout, a refused
            # command): the server logs it and closes; the caller is left to the dialplan
            logger.warning("ivr: call %s at node %s: %s: %s", self.env.uniqueid, name,
                           type(exc).__name__, exc)
            return self._ended(f"error: {type(exc).__name__}", name)

    def _ended(self, reason: str, at: str) -> Ended:
        return Ended(reason, tuple(self.path), at, self.language)

    async def _visit(self, name: str) -> str | FlowOutcome:
        node = self.flow.nodes[name]
        if isinstance(node, LanguageNode):
            return await self._language(node)
        if isinstance(node, MenuNode):
            return await self._menu(node)
        if isinstance(node, HoursNode):
            status = hours_status(node, self.clock(), self.tz)
            logger.debug("ivr: call %s %s: %s", self.env.uniqueid, name, status.reason)
            return node.open if status.open else node.closed
        if isinstance(node, ClosedNode):
            await self._play(node.prompt)
            return node.callback if node.callback else self._ended("closed", name)
        if isinstance(node, InfoNode):
            await self._play(node.prompt)
            return Deflected(node.topic, tuple(self.path), self.language)
        if isinstance(node, RouteNode):
            if node.prompt is not None:
                await self._play(node.prompt)
            return Routed(
                queue=node.queue,
                topic=node.topic,
                language=self.language,
                priority=node.priority,
                callback_offer=node.callback_offer,
                announce_every_s=node.announce_every_s,
                path=tuple(self.path),
            )
        if isinstance(node, CallbackRequestNode):
            return await self._callback(name, node)
        if isinstance(node, GotoNode):
            return node.target
        raise AssertionError(f"unknown node kind {node!r}")  # the schema has no other kinds

    # -- nodes that wait for the caller

    async def _language(self, node: LanguageNode) -> str:
        # each language's prompt in its own language, in the order of the keys
        order = list(dict.fromkeys(node.choices.values()))
        sounds = [s for lang in order for s in node.prompt.get(lang, ())]
        keys = "".join(node.choices)
        chosen = node.default or self.flow.start_language
        for _ in range(node.retries + 1):
            key = await self._ask(sounds, keys, node.timeout_s)
            if key is not None and key in node.choices:
                chosen = node.choices[key]
                break
        self.language = chosen
        # Asterisk's own sayings (SAY NUMBER in the hold loop) follow the channel language
        await self.session.set_variable("CHANNEL(language)", chosen)
        return node.next

    async def _menu(self, node: MenuNode) -> str:
        keys = "".join(node.options)
        pending: str | None = None
        for attempt in range(node.retries + 1):
            key = pending if pending is not None else await self._ask(
                self._sounds(node.prompt), keys, node.timeout_s
            )
            pending = None
            if key is not None and key in node.options:
                return node.options[key]
            if attempt == node.retries:
                break
            message = node.on_timeout if not key else node.on_invalid
            if message is not None:
                pending = await self._play(message, keys)
        return node.fallback

    async def _callback(self, name: str, node: CallbackRequestNode) -> FlowOutcome:
        if node.confirm is not None:
            for _ in range(node.retries + 1):
                key = await self._ask(self._sounds(node.confirm), node.confirm_digit,
                                      node.timeout_s)
                if key == node.confirm_digit:
                    break
            else:
                return self._ended("callback declined", name)
        number = self.env.caller.e164
        source: Literal["caller_id", "keyed"] = "caller_id"
        if number is None and node.enter_number is not None:
            source = "keyed"
            for _ in range(node.retries + 1):
                keyed = await self._ask(self._sounds(node.enter_number), "", node.timeout_s,
                                        max_digits=MAX_NUMBER_DIGITS)
                candidate = normalise_caller(keyed or "", self.region)
                if candidate.valid:
                    number = candidate.e164
                    break
        if number is None:
            return self._ended("no callback number", name)
        await self._play(node.done)
        return CallbackRequested(
            queue=node.queue,
            number=number,
            language=self.language,
            path=tuple(self.path),
            topic=node.topic,
            number_source=source,
        )

    # -- prompts

    def _sounds(self, prompt: Prompt) -> list[str]:
        # a checked flow has every language; an unchecked one falls back to the start language
        return list(prompt.get(self.language) or prompt.get(self.flow.start_language) or [])

    async def _play(self, prompt: Prompt, escape: str = "") -> str | None:
        """Play a prompt to its end, or until one of the `escape` keys; that key or None."""
        for sound in self._sounds(prompt):
            key = await self.session.stream_file(sound, escape)
            if key:
                return key
        return None

    async def _ask(
        self, sounds: list[str], keys: str, timeout_s: float, max_digits: int = 1
    ) -> str | None:
        """Play `sounds` (a key interrupts any but the last) and collect the answer.

        The last sound is played by GET DATA, which then waits `timeout_s` for the keys.
        """
        for sound in sounds[:-1]:
            key = await self.session.stream_file(sound, keys)
            if key:
                return key
        if not sounds:
            return None
        return await self.session.get_data(sounds[-1], int(timeout_s * 1000), max_digits)
