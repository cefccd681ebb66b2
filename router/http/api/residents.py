"""Residents recognised across channels: the agent's view of their history, and withdrawing the
consent to be recognised (GDPR art. 7(3)), which supervisors do for a resident who asks.

An agent reads the history only of an interaction it holds (the same rule as reading the
interaction itself); supervisors and admins read any.
"""

from __future__ import annotations

import logging

from queues.residents import Withdrawn
from router.http.api.intake import readable_interaction
from router.http.api.schemas import (
    ConsentWithdrawalRequest,
    ConsentWithdrawn,
    HistoryEntry,
    ResidentHistory,
)
from router.http.api.table import Call

logger = logging.getLogger(__name__)


async def interaction_history(call: Call) -> ResidentHistory:
    ix_id = call.param("ix_id")
    await readable_interaction(call.service, call.user, ix_id)
    resident_id, others = await call.service.resident_history(ix_id)
    return ResidentHistory(
        recognised=resident_id is not None,
        resident_id=resident_id,
        interactions=[HistoryEntry.from_hash(ix) for ix in others],
    )


def _withdrawn(call: Call, done: Withdrawn) -> ConsentWithdrawn:
    # the record of who did it (the consent hash keeps when); never the contact itself
    logger.info("consent of resident %s withdrawn by %s: %d identities, %d history records",
                done.resident_id, call.user.username, done.identities, done.interactions)
    return ConsentWithdrawn(resident_id=done.resident_id, identities=done.identities,
                            interactions=done.interactions, withdrawn_ms=done.withdrawn_ms)


async def withdraw_consent(call: Call) -> ConsentWithdrawn:
    return _withdrawn(call, await call.service.withdraw_consent(call.param("resident_id")))


async def withdraw_consent_by_contact(call: Call) -> ConsentWithdrawn:
    body: ConsentWithdrawalRequest = call.body
    return _withdrawn(call, await call.service.withdraw_consent(contact=body.contact))
