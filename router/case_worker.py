"""Case notices that survive the process that changed the case.

The script that makes or moves a case (queues/lua/case_*.lua) appends CASECREATED or CASESTATUS
to the event stream in the same call. This worker reads the stream through its own consumer
group (`cases:notices`, one per city however many processes run it: each event reaches one of
them) and queues the notices the event calls for, through `router.case_notices.notify`:

| event                           | who is told (if the status is in `cases.notify_on`)        |
|---------------------------------|------------------------------------------------------------|
| CASECREATED                     | the reporter, of `open` (with the case number)             |
| CASESTATUS `action=link`        | the linked report's resident, of `open`                    |
| CASESTATUS `action=status`      | every subscriber, of the new status (when it changed), with |
|                                 | the public note of that history entry (else its note)      |

The process that made the change still queues the notices right away (`router.cases`), so the
API can answer what became of them; this worker is what makes them durable: if that process died
between the script and the notice, the event is still in the stream and pending in the group
until one worker has queued it. Both paths end in the outbox's one-time claim of
`<ix>:case:<number>:<status>`, so a resident gets one notice per status whoever queues it first,
and an event delivered twice (a retry, another process's XAUTOCLAIM) queues nothing new.

Where a fresh group starts: `REPLAY_MS` back in the stream, not at its end. The group is created
the first time any process runs the worker (an upgrade, a new Redis): a case changed by a process
that died during that upgrade is still told. Not from the stream's beginning: the outbox forgets
its claims after `router.outbox.SUBMITTED_TTL_S` (30 days), so replaying older history would send
residents notices they had long ago. For the same reason an event older than `MAX_AGE_MS` (a city
whose every process was down for a week) is acknowledged without a notice, and logged: a
supervisor can still send it with `CaseService.resend_notices`.
"""

from __future__ import annotations

import logging
from typing import Any

from queues.cases import Subscriber
from queues.errors import NotFoundError
from router import case_notices
from router.models import Event, EventType

logger = logging.getLogger(__name__)

GROUP = "cases:notices"
# A fresh group starts a day back: events of the last day before any process ran the worker.
REPLAY_MS = 24 * 3_600_000
# An event older than this is not acted on: well inside the outbox's 30-day memory of what it
# queued, so a notice it sent before can never be queued again.
MAX_AGE_MS = 7 * 24 * 3_600_000


class CaseNoticeWorker:
    """The event handler of the `cases:notices` group (an `router.event_feed.EventWorker`)."""

    group = GROUP
    replay_ms = REPLAY_MS

    def __init__(self, service: Any) -> None:
        self.service = service  # the RoutingService: configuration, cases, channel state
        self.queued = 0  # notices this worker queued (not those found queued already)

    def wants(self, event: Event) -> bool:
        return event.type in (EventType.CASECREATED, EventType.CASESTATUS)

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        """Queue what `event` calls for; raises (so the feed retries) if Redis fails."""
        cfg = self.service.cfg
        extra = event.model_extra or {}
        case_id = str(extra.get("case_id") or "")
        if not cfg.cases.enabled or not case_id:
            return
        notify_on = set(cfg.cases.notify_on)
        action = str(extra.get("action") or "")
        status = str(extra.get("status") or "")
        everyone = False
        if event.type == EventType.CASECREATED or action == "link":
            if "open" not in notify_on or (action == "link" and not event.ix):
                return
            status = "open"
        elif action == "status":
            if status not in notify_on or status == str(extra.get("from_status") or ""):
                return
            everyone = True
        else:
            return  # another unit (case_assign): nobody is told
        now = await self.service.store.now_ms()
        if now - event.time_ms > MAX_AGE_MS:
            logger.warning("cases: %s %s of %s is %d h old: no notice (resend_notices can)",
                           event.type, status, extra.get("case", case_id),
                           (now - event.time_ms) // 3_600_000)
            return
        cases = self.service.cases
        try:
            case = await cases.store.get(case_id)
        except NotFoundError:
            logger.warning("cases: %s of unknown case %s: no notice", event.type, case_id)
            return
        if everyone:
            note = await self._note(case, status, event.time_ms)
            results = await cases.resend_notices(case, status, note)
        else:
            # the reporter (a standalone case's: its contact, without interaction) or the
            # resident of the linked report, not whoever subscribed since
            subs = [s for s in await cases.subscribers(case) if _of(s, event.ix)]
            results = await case_notices.notify(self.service, case, "open", "", subs)
        new = sum(1 for r in results if r.get("result") == "queued")
        self.queued += new
        logger.debug("cases: %s %s %s: %d notice(s) queued, %d already", event.id,
                     case.get("number", case_id), status, new, len(results) - new)

    async def _note(self, case: dict[str, str], status: str, time_ms: int) -> str:
        """The public note of the history entry the event records (the same script wrote both,
        with the same time): what the inline path sends too. Never the internal note."""
        for entry in reversed(await self.service.cases.history(case)):
            if str(entry.get("status")) == status and int(entry.get("t") or 0) == time_ms:
                return str(entry.get("public_note") or "")
        return ""


def _of(sub: Subscriber, ix_id: str) -> bool:
    return sub.ix == ix_id
