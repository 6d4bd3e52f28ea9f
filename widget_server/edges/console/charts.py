"""The dashboard's charts: pure functions from numbers to inline SVG markup.

Server-rendered so that they hold under the console's CSP (no script draws them, and no `style` attribute: colours
and sizes are presentation attributes). Every label is escaped here, since a guardrail reason or a persona name is
a tenant's text. Each chart is `role="img"` named by its `<title>` and described by a `<desc>` that sums it up;
the page puts the same numbers in a table beside it. The `viewBox` lets the browser scale it to any width (the
font sizes are chosen to stay readable at 390 px, where it shows at about two thirds of its size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 480
FONT = 17  # in viewBox units: about 12 px on a 390 px screen, where the chart is about 340 px wide
INK, MUTED, GRID = "#1b1f24", "#4d5560", "#d0d5dc"
COLOURS = ("#1f5fbf", "#a4161a", "#1e6b34", "#7a4d00")  # the console's accent, danger, ok, warn
MOST_VALUE_LABELS = 16  # more bars than this and the numbers would overlap: the table holds them
MOST_AXIS_LABELS = 5


@dataclass(frozen=True)
class Series:
    """A named line of a line chart; None where there is no value (a gap, not a zero)."""

    name: str
    values: Sequence[float | None]


def short(value: float) -> str:
    """A number as a label has room for it: 7, 12.5, 434, 1.2k, 12k, 4.5M (the table beside has it exactly)."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.1f}".removesuffix(".0") + "M"
    if size >= 1000:
        return f"{value / 1000:.{1 if size < 10_000 else 0}f}".removesuffix(".0") + "k"
    if value == int(value) or size >= 100:
        return str(round(value))
    return f"{value:.1f}"


def nice_ceiling(value: float) -> float:
    """The axis's top: 1, 2 or 5 times a power of ten, at or above `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(float(step * power) for step in (1, 2, 5, 10) if step * power >= value)


def _open(chart_id: str, title: str, desc: str, height: int) -> str:
    cid = escape(chart_id)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-labelledby="{cid}-title {cid}-desc" preserveAspectRatio="xMidYMid meet" '
            f'font-family="system-ui, sans-serif" font-size="{FONT}">'
            f'<title id="{cid}-title">{escape(title)}</title><desc id="{cid}-desc">{escape(desc)}</desc>')


def _text(x: float, y: float, text: str, anchor: str = "middle", fill: str = INK, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{klass}>{escape(text)}</text>'


def _empty(chart_id: str, title: str, message: str) -> Markup:
    height = 120
    return Markup(_open(chart_id, title, message, height)
                  + f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{height - 1}" fill="none" stroke="{GRID}" '
                    'stroke-dasharray="4 4"/>' + _text(WIDTH / 2, height / 2 + 5, message, fill=MUTED, cls="empty")
                  + "</svg>")


def _axis(top: float, bottom: float, left: float, right: float, ceiling: float, whole: bool) -> str:
    """Three horizontal rules (0, half, top) with their values at the left; no "2.5" on an axis of counts."""
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * fraction
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>')
        if not (whole and ceiling * fraction != int(ceiling * fraction)):
            parts.append(_text(left - 6, y + 5, short(ceiling * fraction), anchor="end", fill=MUTED))
    return "".join(parts)


def _x_labels(labels: Sequence[str], xs: Sequence[float], y: float) -> str:
    step = max(1, math.ceil(len(labels) / MOST_AXIS_LABELS))
    return "".join(_text(x, y, label, fill=MUTED) for i, (label, x) in enumerate(zip(labels, xs, strict=True))
                   if i % step == 0)


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float]], *, empty: str = "No data") -> Markup:
    """Vertical bars (one per label, e.g. a day), each with its value written above it when there is room."""
    if not bars:
        return _empty(chart_id, title, empty)
    height, top, bottom, left, right = 270, 26, 232, 52, WIDTH - 8
    ceiling = nice_ceiling(max(v for _, v in bars))
    slot = (right - left) / len(bars)
    width = min(slot * 0.7, 60)
    total, highest = sum(v for _, v in bars), max(v for _, v in bars)
    desc = f"{len(bars)} bars from {bars[0][0]} to {bars[-1][0]}; total {short(total)}, highest {short(highest)}"
    whole = all(v == int(v) for _, v in bars)
    parts = [_open(chart_id, title, desc, height), _axis(top, bottom, left, right, ceiling, whole)]
    xs = []
    for i, (label, value) in enumerate(bars):
        x = left + slot * i + slot / 2
        xs.append(x)
        h = (bottom - top) * value / ceiling
        parts.append(f'<rect class="bar" x="{x - width / 2:.1f}" y="{bottom - h:.1f}" width="{width:.1f}" '
                     f'height="{h:.1f}" fill="{COLOURS[0]}"><title>{escape(label)}: {escape(short(value))}</title>'
                     '</rect>')
        if value and len(bars) <= MOST_VALUE_LABELS:  # a zero is the missing bar (and in the table)
            parts.append(_text(x, bottom - h - 6, short(value), cls="value"))
    parts.append(_x_labels([label for label, _ in bars], xs, height - 12))
    return Markup("".join(parts) + "</svg>")


def line_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], *, unit: str = "",
               empty: str = "No data") -> Markup:
    """One line per series over the labels, a dot and its value at each point; a None breaks the line."""
    points = [v for s in series for v in s.values if v is not None]
    if not labels or not points:
        return _empty(chart_id, title, empty)
    height, top, bottom, left, right = 300, 58, 262, 52, WIDTH - 8
    ceiling = nice_ceiling(max(points))
    slot = (right - left) / len(labels)
    xs = [left + slot * i + slot / 2 for i in range(len(labels))]
    named = ", ".join(f"{s.name} up to {short(max(v for v in s.values if v is not None))}{unit}"
                      for s in series if any(v is not None for v in s.values))
    desc = f"{len(labels)} points from {labels[0]} to {labels[-1]}; {named}"
    parts = [_open(chart_id, title, desc, height), _axis(top, bottom, left, right, ceiling, False)]
    for k, s in enumerate(series):  # the legend, above the plot
        colour = COLOURS[k % len(COLOURS)]
        parts.append(f'<rect x="{left + k * 110}" y="8" width="16" height="16" fill="{colour}"/>')
        parts.append(_text(left + k * 110 + 22, 22, s.name, anchor="start"))
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        parts.extend(_line(s, xs, top, bottom, ceiling, colour, below=k % 2 == 0, labelled=len(labels)
                           <= MOST_VALUE_LABELS, labels=labels, unit=unit))
    parts.append(_x_labels(labels, xs, height - 12))
    return Markup("".join(parts) + "</svg>")


def _line(s: Series, xs: Sequence[float], top: float, bottom: float, ceiling: float, colour: str, *, below: bool,
          labelled: bool, labels: Sequence[str], unit: str) -> list[str]:
    parts: list[str] = []
    run: list[str] = []
    ys = [None if v is None else bottom - (bottom - top) * v / ceiling for v in s.values]
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            run = _flush(parts, run, colour)
            continue
        run.append(f"{x:.1f},{y:.1f}")
    _flush(parts, run, colour)
    for x, y, v, label in zip(xs, ys, s.values, labels, strict=True):
        if y is None or v is None:
            continue
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                     f'<title>{escape(s.name)} {escape(label)}: {escape(short(v))}{escape(unit)}</title></circle>')
        if labelled:
            parts.append(_text(x, y + 18 if below else y - 9, short(v), fill=colour, cls="value"))
    return parts


def _flush(parts: list[str], run: list[str], colour: str) -> list[str]:
    if len(run) > 1:
        parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
    return []


def hbar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float]], *, empty: str = "No data",
               most: int = 12, colours: Sequence[str] = COLOURS[:1]) -> Markup:
    """Horizontal bars, one per category (a reason, a rating), its name above it and its value at its end, coloured
    in turn from `colours`; the first `most` are drawn (the table lists them all)."""
    bars = list(bars)[:most]
    if not bars:
        return _empty(chart_id, title, empty)
    row, left, right = 50, 4, WIDTH - 70
    height = row * len(bars) + 8
    ceiling = max(v for _, v in bars) or 1
    desc = "; ".join(f"{label}: {short(v)}" for label, v in bars)
    parts = [_open(chart_id, title, desc, height)]
    for i, (label, value) in enumerate(bars):
        y = 8 + row * i
        w = max((right - left) * value / ceiling, 2 if value else 0)
        shown = label if len(label) <= 44 else label[:43] + "…"
        parts.append(_text(left, y + 16, shown, anchor="start"))
        parts.append(f'<rect class="bar" x="{left}" y="{y + 22}" width="{w:.1f}" height="20" '
                     f'fill="{colours[i % len(colours)]}"><title>{escape(label)}: {escape(short(value))}</title>'
                     '</rect>')
        parts.append(_text(left + w + 6, y + 38, short(value), anchor="start", cls="value"))
    return Markup("".join(parts) + "</svg>")
