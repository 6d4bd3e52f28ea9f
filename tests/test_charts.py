"""The dashboard's charts (`edges/console/charts.py`): well-formed SVG with a name and a description, no `style`
anywhere (the console's CSP), tenant text escaped, an empty series drawn as an empty state, one point drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from widget_server.edges.console.charts import Series, bar_chart, hbar_chart, line_chart, nice_ceiling, short

NS = "{http://www.w3.org/2000/svg}"


def parsed(markup: str) -> ET.Element:
    root = ET.fromstring(markup)  # well-formed, or this raises
    assert root.tag == f"{NS}svg" and root.get("role") == "img" and root.get("viewBox", "").startswith("0 0 ")
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert title is not None and desc is not None and title.text and desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert all(e.get("style") is None for e in root.iter()) and not root.findall(f".//{NS}script")
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def test_a_bar_chart_writes_each_count_above_its_bar() -> None:
    root = parsed(bar_chart("c", "Conversations per day", [("Mar 1", 3), ("Mar 2", 0), ("Mar 3", 12)]))
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert len(bars) == 3
    heights = [float(b.get("height", "")) for b in bars]
    assert heights[1] == 0 and heights[2] > heights[0] > 0
    assert [t.text for t in root.iter(f"{NS}text") if t.get("class") == "value"] == ["3", "12"]
    assert [t.text for t in bars[2].iter(f"{NS}title")] == ["Mar 3: 12"]
    assert {"Mar 1", "Mar 3"} <= set(texts(root)) and "20" in texts(root)  # the axis reaches a round 20


def test_labels_and_titles_with_markup_are_text() -> None:
    hostile = "<script>alert('x')</script>&amp;"
    for markup in (bar_chart("c", hostile, [(hostile, 1)]), hbar_chart("h", hostile, [(hostile, 2)]),
                   line_chart("l", hostile, [hostile], [Series(hostile, [5.0])])):
        assert "<script>" not in markup and "&lt;script&gt;" in markup
        root = parsed(markup)
        assert root.find(f"{NS}title") is not None and root.find(f"{NS}title").text == hostile  # type: ignore[union-attr]
        assert hostile in texts(root)
    attribute = bar_chart('x" onload="alert(1)', "t", [("a", 1)])
    assert 'onload="' not in attribute and 'aria-labelledby="x&#34; onload=&#34;alert(1)-title' in attribute


def test_an_empty_series_is_an_empty_state_not_a_broken_chart() -> None:
    for markup in (bar_chart("c", "Conversations", [], empty="No conversation"),
                   hbar_chart("h", "Reasons", [], empty="No conversation"),
                   line_chart("l", "TTFT", [], [], empty="No conversation"),
                   line_chart("l", "TTFT", ["Mar 1", "Mar 2"], [Series("p50", [None, None])], empty="No conversation")):
        root = parsed(markup)
        assert texts(root) == ["No conversation"] and root.find(f"{NS}desc").text == "No conversation"  # type: ignore[union-attr]
        assert not root.findall(f".//{NS}rect[@class='bar']") and not root.findall(f".//{NS}circle")


def test_one_point_is_drawn_as_a_dot_and_one_bar_keeps_a_sane_width() -> None:
    root = parsed(line_chart("l", "TTFT", ["Mar 1"], [Series("p50", [180.0]), Series("p95", [412.5])], unit=" ms"))
    assert len(root.findall(f".//{NS}circle")) == 2 and not root.findall(f".//{NS}polyline")
    assert {"180", "412"} <= set(texts(root)) or {"180", "413"} <= set(texts(root))
    (bar,) = parsed(bar_chart("c", "One", [("Mar 1", 5)])).findall(f".//{NS}rect[@class='bar']")
    assert float(bar.get("width", "")) <= 60


def test_a_gap_breaks_the_line_and_is_not_a_zero() -> None:
    root = parsed(line_chart("l", "TTFT", ["a", "b", "c", "d", "e"], [Series("p50", [10.0, 20.0, None, 30.0, 40.0])]))
    lines = root.findall(f".//{NS}polyline")
    assert [len(p.get("points", "").split()) for p in lines] == [2, 2] and len(root.findall(f".//{NS}circle")) == 4


def test_many_days_keep_their_labels_apart() -> None:
    root = parsed(bar_chart("c", "A year", [(f"d{i}", i % 7) for i in range(366)]))
    assert len(root.findall(f".//{NS}rect[@class='bar']")) == 366
    assert not [t for t in root.iter(f"{NS}text") if t.get("class") == "value"]  # no room: the table has them
    assert len([t for t in texts(root) if t.startswith("d")]) <= 5


def test_short_numbers_and_round_ceilings() -> None:
    assert [short(v) for v in (0, 7, 12.5, 433.8, 1000, 1234, 12_345, 4_500_000)] == [
        "0", "7", "12.5", "434", "1k", "1.2k", "12k", "4.5M"]
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 3, 12, 51, 999)] == [1, 0.5, 1, 5, 20, 100, 1000]


@settings(derandomize=True, database=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.floats(min_value=0, max_value=1e9)), max_size=40))
def test_any_counts_and_labels_make_a_well_formed_chart(bars: list[tuple[str, float]]) -> None:
    clean = [("".join(c for c in label if c.isprintable()), v) for label, v in bars]
    parsed(bar_chart("c", "Any", clean))
    parsed(hbar_chart("h", "Any", clean))
    parsed(line_chart("l", "Any", [label for label, _ in clean], [Series("s", [v for _, v in clean])]))
