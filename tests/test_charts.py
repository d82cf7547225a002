"""The server-side SVG charts: well-formed XML, one column per label with the exact values in its
tooltip, heights proportional to the values, every text escaped, many series folded into "other"."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from reapi.billing.money import format_usd
from reapi.charts import _nice_max, bar_chart, stacked_bar_chart

NS = "{http://www.w3.org/2000/svg}"


def test_bar_chart_columns_tooltips_and_heights():
    svg = bar_chart(["d1", "d2", "d3"], [0, 5, 10], label="Requests per day")
    root = ET.fromstring(svg)
    assert root.get("aria-label") == "Requests per day" and root.get("viewBox").startswith("0 0 720 ")
    groups = root.findall(f"{NS}g")
    assert [g.find(f"{NS}title").text for g in groups] == ["d1: 0", "d2: 5", "d3: 10"]
    heights = [[float(r.get("height")) for r in g.findall(f"{NS}rect")[1:]] for g in groups]
    assert heights[0] == [] and abs(heights[2][0] - 2 * heights[1][0]) < 0.2  # proportional
    assert "10" in [t.text for t in root.findall(f"{NS}text")]  # the axis top


def test_stacked_chart_escapes_and_folds_series():
    series = {f"<m{i}>&": [i, 0] for i in range(12)}
    svg = stacked_bar_chart(["2026-12-01", "2026-12-02"], series, label='spend "by" model',
                            fmt=lambda n: format_usd(n) + " USD", max_series=4)
    root = ET.fromstring(svg)  # parses: every text escaped
    legend = [t.text for t in root.findall(f"{NS}text")][-4:]
    assert legend == ["<m0>&", "<m1>&", "<m2>&", "other"]
    tip = root.findall(f"{NS}g")[0].find(f"{NS}title").text
    assert tip.splitlines()[0] == f"2026-12-01: {format_usd(sum(range(12)))} USD"
    assert f"other: {format_usd(sum(range(3, 12)))} USD" in tip


def test_axis_tops_and_empty_input():
    assert [_nice_max(v) for v in (0, 1, 2, 3, 7, 11, 150, 999, 1001)] == [1, 1, 2, 5, 10, 20, 200, 1000, 2000]
    ET.fromstring(bar_chart([], [], label="nothing"))
