"""A tile-free SVG map of open cases: points projected (equirectangular, around the points'
bounding box with a margin) and coloured by category with a legend; overdue ones outlined.
No street tiles, no network: it draws the same offline. Every label is XML-escaped."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 480
PAD, LEGEND_W = 20, 200
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac", "#eeca3b")


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def _n(v: float) -> str:
    return f"{v:.1f}"


def case_map(points: Sequence[Mapping[str, Any]], title: str = "Open cases",
             empty: str = "No open cases with a location", overdue: str = "overdue") -> str:
    """`points`: dicts with lat, lon, category, label (optional) and overdue."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_t(title)}" '
             'font-family="sans-serif" font-size="11" class="case-map">',
             f"<title>{_t(title)}</title>",
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#f7f7f4" '
             'stroke="#cccccc"/>',
             f'<text x="{PAD}" y="16" font-size="13" font-weight="bold" fill="#333333">'
             f"{_t(title)}</text>"]
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                     f'fill="#333333">{_t(empty)}</text></svg>')
        return "\n".join(parts)
    lats = [float(p["lat"]) for p in points]
    lons = [float(p["lon"]) for p in points]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    # a margin of 10 % (at least ~100 m) around the box
    mlat = max((lat1 - lat0) * 0.1, 0.001)
    mlon = max((lon1 - lon0) * 0.1, 0.001)
    lat0, lat1, lon0, lon1 = lat0 - mlat, lat1 + mlat, lon0 - mlon, lon1 + mlon
    kx = math.cos(math.radians((lat0 + lat1) / 2))  # equirectangular: x scaled by cos(lat)
    w_deg, h_deg = (lon1 - lon0) * kx, lat1 - lat0
    area_w, area_h = WIDTH - LEGEND_W - 2 * PAD, HEIGHT - 28 - PAD
    scale = min(area_w / w_deg, area_h / h_deg)
    ox = PAD + (area_w - w_deg * scale) / 2
    oy = 28 + (area_h - h_deg * scale) / 2
    parts.append(f'<rect x="{_n(ox)}" y="{_n(oy)}" width="{_n(w_deg * scale)}" '
                 f'height="{_n(h_deg * scale)}" fill="#ffffff" stroke="#dddddd"/>')
    colours: dict[str, str] = {}
    labels: dict[str, str] = {}
    for p in points:
        cat = str(p.get("category", ""))
        colours.setdefault(cat, PALETTE[len(colours) % len(PALETTE)])
        labels.setdefault(cat, str(p.get("label") or cat))
    for p in points:
        x = ox + (float(p["lon"]) - lon0) * kx * scale
        y = oy + (lat1 - float(p["lat"])) * scale
        cat = str(p.get("category", ""))
        outline = ' stroke="#000000" stroke-width="2"' if p.get("overdue") else ""
        parts.append(f'<circle class="case-point{" overdue" if p.get("overdue") else ""}" '
                     f'cx="{_n(x)}" cy="{_n(y)}" r="5" fill="{colours[cat]}"{outline}>'
                     f"<title>{_t(labels[cat])}{f' ({_t(overdue)})' if p.get('overdue') else ''}"
                     "</title></circle>")
    parts.extend(_scale_bar(area_w, scale))
    lx, ly = WIDTH - LEGEND_W + 10, 40
    for cat, colour in colours.items():
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly}" fill="#333333">{_t(labels[cat])}</text>')
        ly += 16
    parts.append(f'<circle cx="{lx + 5}" cy="{ly - 4}" r="5" fill="#ffffff" stroke="#000000" '
                 'stroke-width="2"/>')
    parts.append(f'<text x="{lx + 14}" y="{ly}" fill="#333333">{_t(overdue)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


M_PER_DEG_LAT = 111_320.0
NICE_M = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)


def _scale_bar(area_w: float, px_per_deg: float) -> list[str]:
    """A scale bar (the longest round length within a third of the drawing's width) under the
    plot, and a north arrow by the legend: without streets, distance is what tells places
    apart."""
    px_per_m = px_per_deg / M_PER_DEG_LAT
    fits = [m for m in NICE_M if m * px_per_m <= area_w / 3]
    if not fits:
        return []
    metres = fits[-1]
    length = metres * px_per_m
    x, y = PAD, HEIGHT - 6
    label = f"{metres // 1000} km" if metres >= 1000 else f"{metres} m"
    return [
        f'<g class="scale-bar"><path d="M{_n(x)} {_n(y - 5)}V{_n(y)}H{_n(x + length)}'
        f'V{_n(y - 5)}" fill="none" stroke="#333333" stroke-width="1.5"/>'
        f'<text x="{_n(x + length + 6)}" y="{_n(y)}" fill="#333333">{label}</text></g>',
        f'<text class="north" x="{WIDTH - LEGEND_W + 10}" y="{HEIGHT - 10}" fill="#333333" '
        'font-weight="bold">N \u2191</text>',
    ]
