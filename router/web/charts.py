"""Server-side SVG charts for the supervisor wall and the interval report.

Pure functions: figures in, one `<svg>` document out, no JavaScript and no library, so a chart
is the same in every browser, in a saved report, and offline. Every text that comes from data
(queue names, labels, titles) is XML-escaped here; colours are presentation attributes, never
`style=`, so the pages' Content-Security-Policy (no inline styles) does not blank them.

The figures themselves are computed elsewhere (router/stats_figures.py via router/web/report.py):
a chart only draws what it is given, and draws "no data" (a gap, not a zero) for None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "HistogramBucket",
    "SlPoint",
    "VolumePoint",
    "service_level_chart",
    "volume_chart",
    "wait_histogram",
]

WIDTH, HEIGHT = 760, 240
# plot area inside the margins: room for the y-axis numbers, the title and the x labels
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 28, 40

COLOURS = {
    "offered": "#4c78a8",
    "answered": "#54a24b",
    "abandoned": "#e45756",
    "target": "#b279a2",
    "sl": "#4c78a8",
    "cumulative": "#222222",
    "grid": "#dddddd",
    "text": "#333333",
}


@dataclass(frozen=True)
class VolumePoint:
    label: str  # e.g. "08:15"
    offered: int
    answered: int
    abandoned: int


@dataclass(frozen=True)
class SlPoint:
    label: str
    interval: float | None  # service level of the interval alone, 0..1, None without data
    cumulative: float | None  # service level of the day up to and including the interval


@dataclass(frozen=True)
class HistogramBucket:
    label: str  # e.g. "≤15 s"
    answered: int
    abandoned: int


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(title: str, body: list[str], legend: Sequence[tuple[str, str]] = ()) -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_t(title)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{_t(title)}</title>",
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" '
        f'fill="{COLOURS["text"]}">{_t(title)}</text>',
    ]
    x = WIDTH - RIGHT
    for name, colour in reversed(legend):
        x -= 8 + 6 * len(name) + 16
        parts.append(f'<rect x="{x}" y="7" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="16" fill="{COLOURS["text"]}">{_t(name)}</text>')
    parts += body
    parts.append("</svg>")
    return "\n".join(parts)


def _empty(title: str, message: str) -> str:
    return _svg(
        title,
        [
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
            f'fill="{COLOURS["text"]}">{_t(message)}</text>'
        ],
    )


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1): a readable axis top."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _y_axis(top_value: float, fmt: str = "{:g}", ticks: int = 4) -> list[str]:
    out = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(ticks + 1):
        value = top_value * i / ticks
        y = HEIGHT - BOTTOM - plot_h * i / ticks
        out.append(
            f'<line x1="{LEFT}" y1="{_num(y)}" x2="{WIDTH - RIGHT}" y2="{_num(y)}" '
            f'stroke="{COLOURS["grid"]}"/>'
        )
        out.append(
            f'<text x="{LEFT - 4}" y="{_num(y + 4)}" text-anchor="end" '
            f'fill="{COLOURS["text"]}">{_t(fmt.format(value))}</text>'
        )
    return out


def _x_labels(labels: Sequence[str], slot: float, every: int) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + slot * i + slot / 2
        out.append(
            f'<text x="{_num(x)}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'fill="{COLOURS["text"]}">{_t(label)}</text>'
        )
    return out


def _label_step(count: int, room: int = 16) -> int:
    """Show every n-th x label so that at most `room` labels fit."""
    return max(1, -(-count // room))


def volume_chart(points: Sequence[VolumePoint], title: str = "Contacts per 15 minutes") -> str:
    """Offered, answered and abandoned side by side for every interval."""
    if not points or not any(p.offered or p.answered or p.abandoned for p in points):
        return _empty(title, "no contacts in this period")
    top = _nice_max(max(max(p.offered, p.answered, p.abandoned) for p in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)
    bar = min(max(slot / 4, 0.5), 24.0)  # a few intervals must not become huge blocks
    pad = (slot - 3 * bar) / 2
    body = _y_axis(top)
    for i, p in enumerate(points):
        for j, (kind, value) in enumerate(
            (("offered", p.offered), ("answered", p.answered), ("abandoned", p.abandoned))
        ):
            if not value:
                continue
            h = plot_h * value / top
            x = LEFT + slot * i + pad + bar * j
            body.append(
                f'<rect class="bar {kind}" x="{_num(x)}" y="{_num(HEIGHT - BOTTOM - h)}" '
                f'width="{_num(bar)}" height="{_num(h)}" fill="{COLOURS[kind]}">'
                f"<title>{_t(p.label)} {kind}: {value}</title></rect>"
            )
    body += _x_labels([p.label for p in points], slot, _label_step(len(points)))
    legend = [(k, COLOURS[k]) for k in ("offered", "answered", "abandoned")]
    return _svg(title, body, legend)


def service_level_chart(
    points: Sequence[SlPoint],
    target_pct: float | None,
    title: str = "Service level over the day",
) -> str:
    """Per-interval service level as dots, the day's running service level as a line, and the
    target as a dashed line. Intervals without answered or late-abandoned contacts are gaps."""
    if not points or all(p.interval is None and p.cumulative is None for p in points):
        return _empty(title, "no answered or abandoned contacts in this period")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)

    def y(ratio: float) -> float:
        return HEIGHT - BOTTOM - plot_h * max(0.0, min(1.0, ratio))

    body = _y_axis(100, "{:g}%")
    if target_pct is not None:
        ty = y(target_pct / 100)
        body.append(
            f'<line class="target" x1="{LEFT}" y1="{_num(ty)}" x2="{WIDTH - RIGHT}" '
            f'y2="{_num(ty)}" stroke="{COLOURS["target"]}" stroke-width="2" '
            f'stroke-dasharray="6 4"><title>target {_t(_num(target_pct))}%</title></line>'
        )
    path: list[str] = []
    for i, p in enumerate(points):
        x = LEFT + slot * i + slot / 2
        if p.cumulative is None:
            if len(path) > 1:
                body.append(_polyline(path))
            path = []
        else:
            path.append(f"{_num(x)},{_num(y(p.cumulative))}")
        if p.interval is not None:
            body.append(
                f'<circle class="point" cx="{_num(x)}" cy="{_num(y(p.interval))}" r="3" '
                f'fill="{COLOURS["sl"]}"><title>{_t(p.label)}: '
                f"{_t(_num(p.interval * 100))}%</title></circle>"
            )
    if path:
        body.append(_polyline(path))
    body += _x_labels([p.label for p in points], slot, _label_step(len(points)))
    legend = [("interval", COLOURS["sl"]), ("day so far", COLOURS["cumulative"])]
    if target_pct is not None:
        legend.append(("target", COLOURS["target"]))
    return _svg(title, body, legend)


def _polyline(points: list[str]) -> str:
    if len(points) == 1:  # one point: a short tick, so it is visible
        x, y = points[0].split(",")
        return (
            f'<circle class="cumulative" cx="{x}" cy="{y}" r="2" fill="{COLOURS["cumulative"]}"/>'
        )
    return (
        f'<polyline class="cumulative" points="{" ".join(points)}" fill="none" '
        f'stroke="{COLOURS["cumulative"]}" stroke-width="2"/>'
    )


def wait_histogram(
    buckets: Sequence[HistogramBucket], title: str = "Wait-time distribution"
) -> str:
    """How long residents waited: answered and abandoned stacked per wait bucket."""
    if not buckets or not any(b.answered or b.abandoned for b in buckets):
        return _empty(title, "nobody waited in this period")
    top = _nice_max(max(b.answered + b.abandoned for b in buckets))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(buckets)
    bar = slot * 0.7
    body = _y_axis(top)
    for i, b in enumerate(buckets):
        x = LEFT + slot * i + (slot - bar) / 2
        base = HEIGHT - BOTTOM
        for kind, value in (("answered", b.answered), ("abandoned", b.abandoned)):
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            body.append(
                f'<rect class="bar {kind}" x="{_num(x)}" y="{_num(base)}" width="{_num(bar)}" '
                f'height="{_num(h)}" fill="{COLOURS[kind]}">'
                f"<title>{_t(b.label)} {kind}: {value}</title></rect>"
            )
    body += _x_labels([b.label for b in buckets], slot, 1)
    return _svg(
        title, body, [("answered", COLOURS["answered"]), ("abandoned", COLOURS["abandoned"])]
    )
