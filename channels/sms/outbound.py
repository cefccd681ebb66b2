"""Outbound SMS: split a reply into segments and POST them to the gateway (the retries are the
router's persistent outbox, see adapter.py).

Segments: a text wholly in the GSM 03.38 alphabet is sent as GSM-7 (160 septets in one message,
153 per part of a concatenated one; characters of the extension table take two septets and are
never split); anything else (Polish and Ukrainian letters, emoji) as UCS-2 (70 UTF-16 units, 67
per part; surrogate pairs never split).
"""

from __future__ import annotations

import json
import logging
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
    """The gateway did not take a segment; `permanent` if trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Gateway:
    """The outbound HTTP API: POST JSON {to, from, text, reference, parts?} with a bearer
    token; a 2xx answer may carry the gateway's message id (`id`, or Twilio's `sid`), which its
    delivery receipts name later."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, sender: str,
                 timeout_s: float) -> None:
        self.session = session
        self.url = url
        self.token = token
        self.sender = sender
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send_segment(self, to: str, text: str, reference: str,
                           parts: tuple[str, int, int] | None = None) -> str:
        """POST one segment; returns the gateway's message id ("" if it gave none).
        `parts` = (message reference, 1-based index, total) of a concatenated message."""
        body: dict[str, Any] = {"to": to, "from": self.sender, "text": text,
                                "reference": reference}
        if parts is not None:
            ref, index, total = parts
            body["parts"] = {"ref": ref, "index": index, "total": total}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self.session.post(self.url, json=body, headers=headers,
                                         timeout=self.timeout) as resp:
                answer = await resp.text(errors="replace")
                if resp.status >= 300:
                    # throttling and server trouble pass; any other refusal will not
                    permanent = resp.status < 500 and resp.status not in (408, 429)
                    raise GatewayError(f"gateway answered {resp.status}: {answer[:200]}",
                                       permanent=permanent)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise GatewayError(f"gateway unreachable: {exc!r}", permanent=False) from exc
        try:
            data = json.loads(answer) if answer.strip() else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return ""
        return str(data.get("id") or data.get("sid") or "")[:200]
