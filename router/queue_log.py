"""Export the event stream as an Asterisk queue_log, so existing queue-report tools read it.

One line per event, `epoch|callid|queue|agent|EVENT|data1|data2|...`, exactly as Asterisk's
app_queue writes it (checked against /work/shared/asterisk/queue_log.txt, captured from
Asterisk 22):

    ENTERQUEUE                      url (empty)|caller id (the resident's address)|position
    CONNECT                         holdtime s|bridged uniqueid (the interaction id)|ringtime s
    COMPLETECALLER, COMPLETEAGENT   holdtime s|calltime s|original position
    ABANDON, EXITWITHTIMEOUT,
    EXITEMPTY                       position|original position|waittime s
    RINGNOANSWER                    ringtime ms
    TRANSFER                        extension (target agent, else target queue)|context
                                    (`cityline`)|holdtime s|calltime s|original position
    ADDMEMBER                       `PAUSED` when logging in not ready, else empty
    REMOVEMEMBER, UNPAUSE           empty
    PAUSE                           reason

* `callid` is the interaction id (Asterisk: the channel's uniqueid), `NONE` for agent events.
* `agent` is `Agent/<id>`, `NONE` when no agent is involved.
* `queue` is `NONE` for agent events: a cityline agent pauses and logs in for every queue at once
  (Asterisk writes per-queue lines because its members belong to queues one by one).
* Seconds are whole seconds, rounded down, as Asterisk's `time(NULL)` differences are.
* The original position of COMPLETE*/TRANSFER is the position at the ENTERQUEUE of the queue the
  interaction was in (from the stream, or the interaction's `origpos` when that ENTERQUEUE is
  before the exported period).

cityline's own events are kept with their own verb so that nothing is lost (report tools skip
verbs they do not know): OFFER `waittime s|attempt`, WRAPUPEND `wrapuptime s|by|disposition|note`,
ESCALATE `step|from queue|priority|skills JSON`, DEFLECTED `reference|reason`, MESSAGE
`from|size`, and any other event its extra fields in stream order. `include_cityline=False`
(`--asterisk-only`) leaves them out for tools that refuse unknown verbs. A `|` or line break
inside a value becomes a space, so every event stays one line with a fixed field count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from queues.keys import Keys
from router.stats import day_bounds_ms

if TYPE_CHECKING:
    from router.config import CitylineConfig

ASTERISK_VERBS = frozenset(
    {
        "ENTERQUEUE", "CONNECT", "COMPLETECALLER", "COMPLETEAGENT", "ABANDON",
        "EXITWITHTIMEOUT", "EXITEMPTY", "RINGNOANSWER", "TRANSFER", "ADDMEMBER", "REMOVEMEMBER",
        "PAUSE", "UNPAUSE",
    }
)  # fmt: skip
_COMMON = ("ev", "t", "queue", "ix", "agent", "channel")
# An abandon carries the channel's own, earlier time; its stream id is when Redis wrote it.
# Reading ids this far past the end of the period catches abandons that belong to it.
_LATE_ID_MS = 10 * 60 * 1000
_CHUNK = 1000


def _clean(value: object) -> str:
    return str(value).replace("|", " ").replace("\r", " ").replace("\n", " ")


def _secs(fields: Mapping[str, str], name: str) -> int:
    try:
        return int(float(fields.get(name) or 0)) // 1000
    except ValueError:
        return 0


class _Writer:
    def __init__(self, out: TextIO, include_cityline: bool) -> None:
        self.out = out
        self.include_cityline = include_cityline
        self.origpos: dict[str, str] = {}  # ix -> position at entry into its current queue
        self.lines = 0

    def data(self, f: Mapping[str, str], ix_hash: Mapping[str, str]) -> list[object] | None:
        ev = f.get("ev", "")
        ix = f.get("ix", "")
        if ev == "ENTERQUEUE":
            self.origpos[ix] = f.get("pos", "")
            return ["", ix_hash.get("resident", ""), f.get("pos", "")]
        if ev == "CONNECT":
            return [_secs(f, "wait_ms"), ix, _secs(f, "ring_ms")]
        if ev in ("COMPLETECALLER", "COMPLETEAGENT"):
            return [_secs(f, "wait_ms"), _secs(f, "talk_ms"), self._origpos(ix, ix_hash)]
        if ev in ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY"):
            return [f.get("pos", ""), f.get("origpos", ""), _secs(f, "wait_ms")]
        if ev == "RINGNOANSWER":
            return [f.get("ring_ms", "")]
        if ev == "TRANSFER":
            return [
                f.get("target_agent") or f.get("target_queue", ""),
                "cityline",
                _secs(f, "wait_ms"),
                _secs(f, "talk_ms"),
                self._origpos(ix, ix_hash),
            ]
        if ev == "ADDMEMBER":
            return ["PAUSED" if f.get("state") == "not_ready" else ""]
        if ev in ("REMOVEMEMBER", "UNPAUSE"):
            return [""]
        if ev == "PAUSE":
            return [f.get("reason", "")]
        if not self.include_cityline:
            return None
        if ev == "OFFER":
            return [_secs(f, "wait_ms"), f.get("attempt", "")]
        if ev == "WRAPUPEND":
            return [_secs(f, "wrapup_ms"), f.get("by", ""), f.get("disposition", ""),
                    f.get("note", "")]  # fmt: skip
        if ev == "ESCALATE":
            return [f.get("step", ""), f.get("from_queue", ""), f.get("priority", ""),
                    f.get("skills", "")]  # fmt: skip
        if ev == "DEFLECTED":
            return [f.get("ref", ""), f.get("reason", "")]
        if ev == "MESSAGE":
            return [f.get("from", ""), f.get("size", "")]
        return [v for k, v in f.items() if k not in _COMMON] or [""]

    def _origpos(self, ix: str, ix_hash: Mapping[str, str]) -> str:
        return self.origpos.get(ix) or ix_hash.get("origpos", "") or "0"

    def write(self, f: Mapping[str, str], ix_hash: Mapping[str, str]) -> None:
        data = self.data(f, ix_hash)
        if data is None:
            return
        agent = f.get("agent", "")
        head = [
            _secs(f, "t"),
            f.get("ix") or "NONE",
            f.get("queue") or "NONE",
            f"Agent/{agent}" if agent else "NONE",
            f.get("ev", ""),
        ]
        self.out.write("|".join(_clean(v) for v in (*head, *data)) + "\n")
        self.lines += 1


async def export_queue_log(
    redis: aioredis.Redis,
    keys: Keys,
    cfg: CitylineConfig,
    day: date | None,
    out: TextIO,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    include_cityline: bool = True,
) -> int:
    """Write the events of a city-local `day` (None: the whole stream, or [since, until) when
    given) as queue_log lines to `out`, in stream order; returns the number of lines."""
    if day is not None:
        since_ms, until_ms = day_bounds_ms(day, ZoneInfo(cfg.city.timezone))
    # an event's stream id is never before its time `t`, so the period's first id is `since`
    cursor = str(since_ms) if since_ms is not None else "-"
    last = str(until_ms + _LATE_ID_MS) if until_ms is not None else "+"
    writer = _Writer(out, include_cityline)
    while True:
        rows: Sequence[tuple[str, dict[str, str]]] = await redis.xrange(
            keys.events, min=cursor, max=last, count=_CHUNK
        )
        if not rows:
            break
        chosen = [
            fields
            for _, fields in rows
            if (since_ms is None or int(fields.get("t") or 0) >= since_ms)
            and (until_ms is None or int(fields.get("t") or 0) < until_ms)
        ]
        lookups = await _interaction_fields(redis, keys, chosen, writer.origpos)
        for fields in chosen:
            writer.write(fields, lookups.get(fields.get("ix", ""), {}))
        cursor = f"({rows[-1][0]}"
    return writer.lines


async def _interaction_fields(
    redis: aioredis.Redis,
    keys: Keys,
    events: Sequence[Mapping[str, str]],
    known_origpos: Mapping[str, str],
) -> dict[str, dict[str, str]]:
    """The resident (caller id) and first position of the interactions these lines need."""
    wanted = sorted(
        {
            f["ix"]
            for f in events
            if f.get("ix")
            and (
                f.get("ev") == "ENTERQUEUE"
                or (
                    f.get("ev") in ("COMPLETECALLER", "COMPLETEAGENT", "TRANSFER")
                    and f["ix"] not in known_origpos
                )
            )
        }
    )
    if not wanted:
        return {}
    pipe = redis.pipeline(transaction=False)
    for ix in wanted:
        pipe.hmget(keys.ix(ix), ["resident", "origpos"])
    replies = await pipe.execute()
    return {
        ix: {"resident": resident or "", "origpos": origpos or ""}
        for ix, (resident, origpos) in zip(wanted, replies, strict=True)
    }
