"""The tile-free case map carries a scale bar whose length in pixels matches the distance
between points: the only way to read distances on a plot without streets."""

from __future__ import annotations

import re

from router.cases import distance_m
from router.web.case_map import case_map

LAT, LON = 51.7592, 19.4560


def _bar(svg: str) -> tuple[float, str]:
    m = re.search(r'class="scale-bar"><path d="M([\d.]+) [\d.]+V[\d.]+H([\d.]+)V[\d.]+"'
                  r'.*?>([^<]+)</text>', svg)
    assert m, svg
    return float(m.group(2)) - float(m.group(1)), m.group(3)


def _metres(label: str) -> float:
    value, unit = label.split()
    return float(value) * (1000 if unit == "km" else 1)


def test_scale_bar_matches_the_points() -> None:
    north = {"lat": LAT + 0.02, "lon": LON, "category": "a", "overdue": False}
    south = {"lat": LAT, "lon": LON, "category": "a", "overdue": False}
    svg = case_map([north, south])
    ys = [float(y) for y in re.findall(r'class="case-point" cx="[\d.]+" cy="([\d.]+)"', svg)]
    px_per_m = abs(ys[0] - ys[1]) / distance_m(LAT + 0.02, LON, LAT, LON)
    length, label = _bar(svg)
    assert label in ("500 m", "1 km")  # ~2.2 km apart: a round length within a third
    assert abs(length / _metres(label) - px_per_m) / px_per_m < 0.01
    assert "N \u2191" in svg


def test_small_and_large_areas_get_round_lengths() -> None:
    close = case_map([{"lat": LAT, "lon": LON, "category": "a"},
                      {"lat": LAT + 0.0005, "lon": LON, "category": "a"}])
    far = case_map([{"lat": LAT, "lon": LON, "category": "a"},
                    {"lat": LAT + 0.3, "lon": LON + 0.3, "category": "a"}])
    assert _metres(_bar(close)[1]) < _metres(_bar(far)[1])
    assert _bar(far)[1].endswith("km")
    assert "scale-bar" not in case_map([])
