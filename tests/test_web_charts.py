"""The wall's SVG charts and the report's chart data: well-formed, escaped, faithful."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from router.stats import INTERVAL_MS, IntervalRow, QueueFigures, hist_field
from router.web.charts import (
    HistogramBucket,
    SlPoint,
    VolumePoint,
    service_level_chart,
    volume_chart,
    wait_histogram,
)
from router.web.report import BadScope, chart_data, csv_text, parse_scope

SVG = "{http://www.w3.org/2000/svg}"
TZ = ZoneInfo("Europe/Warsaw")


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def rects(root: ET.Element, cls: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if cls in (r.get("class") or "").split()]


def test_volume_chart_draws_a_bar_per_nonzero_figure() -> None:
    points = [VolumePoint("08:00", 4, 3, 1), VolumePoint("08:15", 2, 2, 0)]
    root = parse(volume_chart(points))
    assert len(rects(root, "offered")) == 2
    assert len(rects(root, "answered")) == 2
    assert len(rects(root, "abandoned")) == 1  # zero draws nothing
    heights = [float(r.get("height") or 0) for r in rects(root, "offered")]
    assert heights[0] == pytest.approx(2 * heights[1])


def test_labels_are_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    for svg in (
        volume_chart([VolumePoint(evil, 1, 1, 0)], title=evil),
        service_level_chart([SlPoint(evil, 0.5, 0.5)], 80, title=evil),
        wait_histogram([HistogramBucket(evil, 1, 1)], title=evil),
    ):
        root = parse(svg)
        assert "<script" not in svg
        assert not list(root.iter(f"{SVG}script"))
        assert evil in "".join(root.itertext())  # shown as text, exactly


def test_empty_charts_say_so() -> None:
    assert "no contacts" in volume_chart([VolumePoint("08:00", 0, 0, 0)])
    assert "no answered" in service_level_chart([SlPoint("08:00", None, None)], 80)
    assert "nobody waited" in wait_histogram([])
    for svg in (volume_chart([]), service_level_chart([], None), wait_histogram([])):
        parse(svg)


def test_service_level_chart_has_target_gaps_and_points() -> None:
    points = [
        SlPoint("08:00", 1.0, 1.0),
        SlPoint("08:15", None, None),  # nothing to measure: a gap, not 0 %
        SlPoint("08:30", 0.5, 0.75),
        SlPoint("08:45", 0.0, 0.5),
    ]
    root = parse(service_level_chart(points, 80))
    target = [e for e in root.iter(f"{SVG}line") if e.get("class") == "target"]
    assert len(target) == 1
    circles = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]
    assert len(circles) == 3
    # the running line restarts after the gap: one dot before it, one polyline after
    lines = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "cumulative"]
    assert len(lines) == 1 and len((lines[0].get("points") or "").split()) == 2
    # higher service level is higher on the chart (smaller y)
    ys = [float(c.get("cy") or 0) for c in circles]
    assert ys[0] < ys[1] < ys[2]
    no_target = parse(service_level_chart(points, None))
    assert not [e for e in no_target.iter(f"{SVG}line") if e.get("class") == "target"]


def test_histogram_stacks_answered_and_abandoned() -> None:
    root = parse(wait_histogram([HistogramBucket("≤5 s", 3, 1), HistogramBucket("≤10 s", 0, 2)]))
    assert len(rects(root, "answered")) == 1 and len(rects(root, "abandoned")) == 2


def _row(iv: int, kind: str, name: str, counters: dict[str, int]) -> IntervalRow:
    return IntervalRow(
        interval_start_ms=iv, start="", kind=kind, name=name,  # type: ignore[arg-type]
        counters=counters, figures=QueueFigures.from_counters(counters),
    )  # fmt: skip


def test_chart_data_uses_the_stats_figures() -> None:
    day0 = 1_767_222_000_000  # 2026-01-01 00:00 in Warsaw
    rows = [_row(day0 + i * INTERVAL_MS, "all", "all", {}) for i in range(96)]
    nine = 36  # 09:00
    busy = {"offered": 4, "answered": 3, "abandoned": 1, "answered_within_sl": 2,
            "abandoned_after_sl": 1, hist_field("ans", 3000): 2, hist_field("ans", 40_000): 1,
            hist_field("ab", 100_000): 1}  # fmt: skip
    rows[nine + 1] = _row(rows[nine + 1].interval_start_ms, "all", "all", busy)
    rows[nine + 5] = _row(rows[nine + 5].interval_start_ms, "all", "all",
                          {"offered": 1, "answered": 1, "answered_within_sl": 1})  # fmt: skip
    data = chart_data(rows, TZ)
    # trimmed to the hour of the first traffic and the last interval with traffic
    assert data.volume[0].label == "09:00" and data.volume[-1].label == "10:15"
    assert data.volume[1] == VolumePoint("09:15", 4, 3, 1)
    # per interval: 2 / (3 + 1); running: the day so far, with the same formula
    assert data.service_level[1].interval == pytest.approx(0.5)
    assert data.service_level[-1].cumulative == pytest.approx(3 / 5)
    assert data.service_level[0].interval is None
    waits = {b.label: (b.answered, b.abandoned) for b in data.waits}
    assert waits["≤5 s"] == (2, 0) and waits["≤45 s"] == (1, 0) and waits["≤2 min"] == (0, 1)
    assert list(waits)[-1] == ">1 h"
    # the current day: up to now, even when the last traffic was earlier
    upto = rows[nine + 10].interval_start_ms
    assert chart_data(rows, TZ, upto).volume[-1].label == "11:30"


def test_scope_parsing() -> None:
    assert parse_scope(None, ["voice"], ["voice"]).param == "all"
    assert parse_scope("queue:voice", ["voice"], ["voice"]).param == "queue:voice"
    assert parse_scope("channel:chat", ["voice"], ["chat"]).kind == "channel"
    for bad in ("queue:nope", "channel:voice", "agent:a1", "queue"):
        with pytest.raises(BadScope):
            parse_scope(bad, ["voice"], ["chat"])


def test_csv_cells_cannot_become_formulas() -> None:
    text = csv_text([_row(1_767_222_000_000, "queue", "=HYPERLINK(1)", {"offered": 1})], TZ)
    header, line = text.splitlines()[:2]
    assert header.startswith("interval_start,kind,name,offered")
    assert ",'=HYPERLINK(1),1," in line
    assert line.startswith("2026-01-01T00:00:00+01:00,queue,")
