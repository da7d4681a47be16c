"""Inline SVG charts for the HTML report: a line chart and a horizontal (stacked) bar chart.

Drawn here in Python rather than by a charting library so the report is one file that opens
anywhere with no network: the SVG scales with its card (`viewBox`, width 100%), every point
and bar carries a `<title>` (a native tooltip, no script needed) and a `data-tip` the page's
small script shows nicer. All text from the data is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Bar", "Segment", "Series", "bar_chart", "line_chart", "nice_ticks"]

Formatter = Callable[[float], str]
_FONT = 'font-family="inherit"'


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """0, step, 2*step, ... up to the first tick >= maximum, step a 1/2/2.5/5 x 10^k value."""
    maximum = maximum if maximum > 0 and math.isfinite(maximum) else 1.0
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    steps = math.ceil(maximum / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True)
class Series:
    """One line: `values` aligned with the chart's x labels; None leaves a gap."""

    key: str
    """Stable id used by the legend to show/hide the line (e.g. `p95`)."""
    label: str
    color: str
    values: Sequence[float | None]
    tips: Sequence[str] = ()
    """Tooltip per point (defaults to label and value)."""
    dashed: bool = False
    """Dashed stroke, so a line drawn on top of a close one leaves it visible."""


def _paths(xs: list[float], ys: list[float | None]) -> list[str]:
    """One SVG path `d` per run of consecutive defined points."""
    runs: list[list[str]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{'M' if not runs[-1] else 'L'}{_num(x)},{_num(y)}")
    return ["".join(run) for run in runs if len(run) > 1]


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[str],
    *,
    y_format: Formatter,
    title: str,
    width: int = 560,
    height: int = 220,
    max_x_labels: int = 6,
) -> str:
    """A line chart with a zero-based y axis; `title` is the accessible name of the SVG."""
    left, right, top, bottom = 64, 14, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(x_labels), 1)
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    y_max = ticks[-1] or 1.0

    def x_at(i: int) -> float:
        return left + (i + 0.5) * plot_w / n

    def y_at(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    parts = [
        f'<svg class="chart line-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in ticks:
        y = _num(y_at(tick))
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle" {_FONT}>{escape(y_format(tick))}</text>'
        )
    every = max(1, math.ceil(n / max_x_labels))
    for i, label in enumerate(x_labels):
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{_num(x_at(i))}" y="{height - 8}" '
                f'text-anchor="middle" {_FONT}>{escape(label)}</text>'
            )
    base = _num(top + plot_h)
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>'
    )
    xs = [x_at(i) for i in range(len(x_labels))]
    for s in series:
        ys = [None if v is None else y_at(v) for v in s.values]
        parts.append(f'<g class="series" data-series="{escape(s.key)}">')
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for d in _paths(xs, ys):
            parts.append(
                f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="2"{dash} '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if y is None:
                continue
            tip = s.tips[i] if i < len(s.tips) else f"{s.label}: {y_format(s.values[i] or 0)}"
            parts.append(
                f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.6" fill="{s.color}" '
                f'data-tip="{escape(tip)}"><title>{escape(tip)}</title></circle>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Segment:
    key: str
    value: float
    color: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One row: a label, stacked segments, and a note printed after the bar."""

    label: str
    segments: Sequence[Segment]
    note: str = ""
    tip: str = ""
    emphasis: bool = field(default=False)
    """Draw the label in the alert colour (e.g. an agent with errors)."""


def _clip(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(
    bars: Sequence[Bar],
    *,
    x_format: Formatter,
    title: str,
    width: int = 560,
    row_height: int = 26,
    label_width: int = 180,
    note_width: int = 92,
    maximum: float | None = None,
) -> str:
    """Horizontal bars (stacked when a bar has several segments) on a shared zero-based axis."""
    top, bottom = 8, 24
    height = top + bottom + row_height * max(len(bars), 1)
    plot_left, plot_right = label_width, width - note_width
    plot_w = plot_right - plot_left
    largest = max((sum(s.value for s in b.segments) for b in bars), default=0.0)
    ticks = nice_ticks(maximum if maximum is not None else largest)
    x_max = ticks[-1] or 1.0
    parts = [
        f'<svg class="chart bar-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    axis_y = height - bottom
    for tick in ticks:
        x = _num(plot_left + tick / x_max * plot_w)
        parts.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{top}" y2="{axis_y}"/>')
        parts.append(
            f'<text class="axis" x="{x}" y="{height - 8}" text-anchor="middle" {_FONT}>'
            f"{escape(x_format(tick))}</text>"
        )
    for row, bar in enumerate(bars):
        y = top + row * row_height
        mid = _num(y + row_height / 2)
        label_class = "bar-label alert" if bar.emphasis else "bar-label"
        parts.append(
            f'<text class="{label_class}" x="{plot_left - 8}" y="{mid}" text-anchor="end" '
            f'dominant-baseline="middle" {_FONT}><title>{escape(bar.label)}</title>'
            f"{escape(_clip(bar.label, 25))}</text>"
        )
        x = float(plot_left)
        tip = escape(bar.tip or bar.label)
        for segment in bar.segments:
            w = segment.value / x_max * plot_w
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(y + 5)}" width="{_num(max(w, 0.0))}" '
                f'height="{row_height - 10}" rx="2" fill="{segment.color}" '
                f'data-series="{escape(segment.key)}" data-tip="{tip}"><title>{tip}</title></rect>'
            )
            x += w
        parts.append(
            f'<text class="bar-note" x="{_num(x + 6)}" y="{mid}" dominant-baseline="middle" '
            f"{_FONT}>{escape(bar.note)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
