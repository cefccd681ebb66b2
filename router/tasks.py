"""Stopping background tasks for sure.

A task cancelled while inside a Redis command may carry on: under Python 3.11, `asyncio.wait_for`
returns the inner result instead of raising when the inner wait finished at the same moment, and
redis-py's reads go through it, so one `cancel()` can be swallowed. Whoever stops a worker that
talks to Redis cancels until the task has really ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

RECHECK_S = 0.5


async def cancel_for_sure(task: asyncio.Task[Any], *, recheck_s: float = RECHECK_S) -> None:
    """Cancel `task` and wait until it ended, cancelling again should it swallow one; a task
    that ended with an error is logged, never raised into the caller's shutdown."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recheck_s)
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s ended with %r", task.get_name(), task.exception())
