"""Outbound SMS: split a reply into segments and POST them to the gateway, with retries.

Segments: a text wholly in the GSM 03.38 alphabet is sent as GSM-7 (160 septets in one message,
153 per part of a concatenated one; characters of the extension table take two septets and are
never split); anything else (Polish and Ukrainian letters, emoji) as UCS-2 (70 UTF-16 units, 67
per part; surrogate pairs never split).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM7_BASIC) - {"\x1b"}
_EXT = frozenset(GSM7_EXT)


def is_gsm7(text: str) -> bool:
    return all(c in _BASIC or c in _EXT for c in text)


def _units(text: str, gsm: bool) -> list[tuple[str, int]]:
    """The text as indivisible units with their cost (septets or UTF-16 code units)."""
    if gsm:
        return [(c, 2 if c in _EXT else 1) for c in text]
    return [(c, 2 if ord(c) > 0xFFFF else 1) for c in text]


def split_segments(text: str, max_segments: int) -> tuple[list[str], bool]:
    """The segments of `text` and whether it had to be cut to `max_segments`."""
    gsm = is_gsm7(text)
    single, part = (160, 153) if gsm else (70, 67)
    units = _units(text, gsm)
    if sum(n for _, n in units) <= single:
        return [text], False
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for ch, n in units:
        if size + n > part:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += n
    if cur:
        out.append("".join(cur))
    out = _at_word_breaks(out, part, gsm)
    if len(out) <= max_segments:
        return out, False
    kept = out[:max_segments]
    last = kept[-1]
    kept[-1] = last[:-3] + "..." if gsm else last[:-1] + "…"
    return kept, True


def _at_word_breaks(chunks: list[str], part: int, gsm: bool) -> list[str]:
    """Move a word cut at the end of a chunk to the next one, when the next one has room."""
    out = list(chunks)
    for i in range(len(out) - 1):
        head, tail = out[i], out[i + 1]
        cut = head.rfind(" ")
        if cut <= len(head) // 2 or head.endswith(" ") or tail.startswith(" "):
            continue
        moved = head[cut + 1:]
        if sum(n for _, n in _units(moved + tail, gsm)) <= part:
            out[i], out[i + 1] = head[: cut + 1], moved + tail
    return [c for c in out if c]


class GatewayError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class OutboundJob:
    """One agent message to one resident: its segments, how far it got, how often it failed."""

    ix_id: str
    msg_index: int
    to: str
    segments: list[str]
    truncated: bool = False
    sent: int = 0
    attempts: int = 0
    gateway_ids: list[str] = field(default_factory=list)
    last_error: str = ""

    @property
    def reference(self) -> str:
        return f"{self.ix_id}:{self.msg_index}"

    def record(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "to": self.to,
            "segments": len(self.segments),
            "sent": self.sent,
            "attempts": self.attempts,
            "truncated": self.truncated,
            "gateway_ids": self.gateway_ids,
            "error": self.last_error,
            "t": int(time.time() * 1000),
        }


class Gateway:
    """The outbound HTTP API: POST JSON {to, from, text, reference} with a bearer token."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, sender: str,
                 timeout_s: float) -> None:
        self.session = session
        self.url = url
        self.token = token
        self.sender = sender
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send_segment(self, job: OutboundJob, index: int) -> str:
        body: dict[str, Any] = {
            "to": job.to,
            "from": self.sender,
            "text": job.segments[index],
            "reference": f"{job.reference}:{index + 1}",
        }
        if len(job.segments) > 1:
            body["parts"] = {"ref": job.reference, "index": index + 1,
                             "total": len(job.segments)}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self.session.post(self.url, json=body, headers=headers,
                                         timeout=self.timeout) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    # throttling and server trouble pass; any other refusal will not
                    permanent = resp.status < 500 and resp.status not in (408, 429)
                    raise GatewayError(f"gateway answered {resp.status}: {text[:200]}",
                                       permanent=permanent)
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                return str(data.get("id", "")) if isinstance(data, dict) else ""
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise GatewayError(f"gateway unreachable: {exc!r}", permanent=False) from exc

    async def send(self, job: OutboundJob) -> None:
        """Send the segments not yet sent; raises GatewayError at the first failure."""
        while job.sent < len(job.segments):
            gw_id = await self.send_segment(job, job.sent)
            job.gateway_ids.append(gw_id)
            job.sent += 1


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Pause after the `attempt`-th failed try (1-based): base, 2*base, 4*base... capped."""
    return float(min(max_s, base_s * (2 ** (attempt - 1))))
