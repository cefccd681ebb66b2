"""What every benchmark script shares: progress on stderr, percentiles, splitting a load."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    """Progress for the person watching (stderr: stdout is the figures)."""
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by the nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal shares (the first ones one larger)."""
    return [total // parts + (i < total % parts) for i in range(parts)]
