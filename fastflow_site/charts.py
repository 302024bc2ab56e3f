"""Server-rendered SVG charts for the admin console: bars (stacked, linked), a line chart with
axes, units and a limit line, and a Gantt-like timeline.

Everything is drawn here, in Python, into inline SVG: no chart library, no script, no CDN. The
colours are CSS classes (`ff-s-<STATUS>`, `ff-chart-*` in console.css), so the light and dark
themes colour the charts like the rest of the page. Every text that reaches the SVG is escaped.
Charts scale to their container (`viewBox`, width 100 %); the numbers below are the drawing's
own coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Left margin for the y labels, bottom margin for the x labels.
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 10, 10, 22


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 × 10^k) that divides `span` into about `ticks` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


# Steps a time axis reads well in: seconds, then minutes, then hours.
DURATION_STEPS = (
    *(0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200, 86400),
)


def nice_ticks(top: float, ticks: int = 4, *, steps: Sequence[float] | None = None) -> list[float]:
    """0, step, 2·step, … up to the first tick at or above `top`; the step is round, or the
    first of `steps` that needs at most `ticks` ticks."""
    step = nice_step(top, ticks)
    if steps:
        step = next(
            (s for s in steps if top / s <= ticks), steps[-1] * math.ceil(top / steps[-1] / ticks)
        )
    count = max(1, math.ceil(top / step - 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def _svg(width: int, height: int, body: list[str], *, label: str, css: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every piece of text in `body` went through escape()
        f'<svg class="ff-chart {escape(css)}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _y_axis(
    ticks: list[float], *, y_of: Callable[[float], float], x0: float, x1: float, fmt: Callable
) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line class="ff-chart-grid" x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}"/>'
            f'<text class="ff-chart-label" x="{x0 - 6:.1f}" y="{y + 3.5:.1f}" '
            f'text-anchor="end">{escape(fmt(tick))}</text>'
        )
    return parts


# --- bars ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    value: float
    css: str  # e.g. "ff-s-SUCCESS"
    title: str
    href: str | None = None


@dataclass(frozen=True)
class Column:
    label: str  # under the column (shown for some columns only, so they never overlap)
    segments: tuple[Segment, ...]
    title: str = ""  # the whole column's tooltip, when it has no segments

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


def bar_chart(
    columns: Sequence[Column],
    *,
    label: str,
    value_format: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 720,
    height: int = 200,
    max_labels: int = 8,
    css: str = "ff-chart-bars",
    steps: Sequence[float] | None = None,
) -> SafeString:
    """Columns of stacked segments over a y axis with round ticks; each segment can link to
    the list behind it. An empty chart still draws its axis, so "nothing happened" reads as
    such."""
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    top = max((c.total for c in columns), default=0) or 1
    ticks = nice_ticks(top, steps=steps)
    scale_top = ticks[-1] or 1

    def y_of(value: float) -> float:
        return PAD_TOP + plot_h - value / scale_top * plot_h

    body = _y_axis(ticks, y_of=y_of, x0=PAD_LEFT, x1=width - PAD_RIGHT, fmt=value_format)
    n = max(len(columns), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.78, 40), 1)
    every = max(1, math.ceil(n / max_labels))
    for index, column in enumerate(columns):
        x = PAD_LEFT + index * slot + (slot - bar_w) / 2
        base = 0.0
        if not column.segments and column.title:
            body.append(
                f'<rect class="ff-chart-empty" x="{x:.1f}" y="{PAD_TOP}" width="{bar_w:.1f}" '
                f'height="{plot_h}"><title>{escape(column.title)}</title></rect>'
            )
        for segment in column.segments:
            if segment.value <= 0:
                continue
            y1, y0 = y_of(base + segment.value), y_of(base)
            rect = (
                f'<rect class="ff-chart-bar {escape(segment.css)}" x="{x:.1f}" y="{y1:.1f}" '
                f'width="{bar_w:.1f}" height="{max(y0 - y1, 0.5):.1f}">'
                f"<title>{escape(segment.title)}</title></rect>"
            )
            body.append(f'<a href="{escape(segment.href)}">{rect}</a>' if segment.href else rect)
            base += segment.value
        if index % every == 0 and column.label:
            body.append(
                f'<text class="ff-chart-label" x="{x + bar_w / 2:.1f}" y="{height - 6}" '
                f'text-anchor="middle">{escape(column.label)}</text>'
            )
    body.append(
        f'<line class="ff-chart-axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" '
        f'x2="{width - PAD_RIGHT}" y2="{PAD_TOP + plot_h}"/>'
    )
    return _svg(width, height, body, label=label, css=css)


# --- line chart ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    value: float
    label: str


def downsample(points: Sequence[tuple[float, float]], size: int) -> list[tuple[float, float]]:
    """At most `size` points: each bucket of neighbours keeps its highest, so spikes stay."""
    if len(points) <= size:
        return list(points)
    step = len(points) / size
    return [
        max(points[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)], key=lambda p: p[1])
        for i in range(size)
    ]


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    label: str,
    value_format: Callable[[float], str],
    x_format: Callable[[float], str],
    limit: Limit | None = None,
    floor_top: float = 0.0,
    width: int = 560,
    height: int = 170,
    css: str = "",
    x_steps: Sequence[float] | None = DURATION_STEPS,
    max_points: int = 300,
) -> SafeString:
    """(x, y) points as a filled line over both axes. The y axis reaches at least `floor_top`
    and the limit (drawn dashed with its label), so 0.1 % of a core never looks like a busy
    core. With fewer than two points the axes are drawn with a note instead of a line."""
    points = downsample(points, max_points)
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    values = [y for _, y in points]
    top = max([*values, floor_top, limit.value if limit else 0.0, 0.0]) or 1.0
    ticks = nice_ticks(top)
    scale_top = ticks[-1] or 1.0
    x_min = points[0][0] if points else 0.0
    x_max = points[-1][0] if points else 1.0
    x_span = (x_max - x_min) or 1.0

    def x_of(x: float) -> float:
        return PAD_LEFT + (x - x_min) / x_span * plot_w

    def y_of(y: float) -> float:
        return PAD_TOP + plot_h - y / scale_top * plot_h

    body = _y_axis(ticks, y_of=y_of, x0=PAD_LEFT, x1=width - PAD_RIGHT, fmt=value_format)
    bottom = PAD_TOP + plot_h
    body.append(
        f'<line class="ff-chart-axis" x1="{PAD_LEFT}" y1="{bottom}" x2="{width - PAD_RIGHT}" '
        f'y2="{bottom}"/>'
    )
    for tick in nice_ticks(x_span, 5, steps=x_steps) if len(points) > 1 else []:
        if tick > x_span + 1e-9:
            continue
        x = x_of(x_min + tick)
        body.append(
            f'<text class="ff-chart-label" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{escape(x_format(tick))}</text>"
        )
    if len(points) > 1:
        line = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
        area = f"{x_of(x_min):.1f},{bottom} {line} {x_of(x_max):.1f},{bottom}"
        body.append(f'<polygon class="ff-chart-area" points="{area}"/>')
        body.append(f'<polyline class="ff-chart-line" points="{line}"/>')
        last_x, last_y = points[-1]
        body.append(
            f'<circle class="ff-chart-dot" cx="{x_of(last_x):.1f}" cy="{y_of(last_y):.1f}" r="3">'
            f"<title>{escape(value_format(last_y))} at {escape(x_format(last_x - x_min))}</title>"
            "</circle>"
        )
    else:
        body.append(
            f'<text class="ff-chart-note" x="{PAD_LEFT + plot_w / 2:.1f}" '
            f'y="{PAD_TOP + plot_h / 2:.1f}" text-anchor="middle">'
            "Waiting for samples (every 2 s while the run is running)</text>"
        )
    if limit is not None:
        y = y_of(limit.value)
        body.append(
            f'<line class="ff-chart-limit" x1="{PAD_LEFT}" y1="{y:.1f}" x2="{width - PAD_RIGHT}" '
            f'y2="{y:.1f}"/><text class="ff-chart-limit-label" x="{width - PAD_RIGHT - 4}" '
            f'y="{y - 4:.1f}" text-anchor="end">{escape(limit.label)}</text>'
        )
    return _svg(width, height, body, label=label, css=f"ff-chart-line-chart {css}".strip())


# --- timeline -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    css: str
    title: str
    href: str | None = None
    wait_from: datetime | None = None  # queued: drawn lighter before `start`


@dataclass
class Lane:
    label: str
    href: str | None = None
    spans: list[Span] = field(default_factory=list)


LANE_HEIGHT, LANE_LABEL_WIDTH = 22, 150


def timeline(
    lanes: Sequence[Lane],
    *,
    since: datetime,
    until: datetime,
    label: str,
    time_format: Callable[[datetime], str],
    width: int = 1000,
) -> SafeString:
    """One lane per row (a pipeline), each run a bar from its start to its end (or now) on a
    shared time axis, its queue wait drawn lighter before it; bars link to their runs. A run
    too short to see gets a minimal width, so it is still there to hover and click."""
    plot_x0 = LANE_LABEL_WIDTH
    plot_w = width - plot_x0 - PAD_RIGHT
    height = PAD_TOP + max(len(lanes), 1) * LANE_HEIGHT + PAD_BOTTOM
    span_s = max((until - since).total_seconds(), 1.0)

    def x_of(moment: datetime) -> float:
        offset = (moment - since).total_seconds()
        return plot_x0 + min(max(offset / span_s, 0.0), 1.0) * plot_w

    body = []
    step = next((s for s in DURATION_STEPS if span_s / s <= 8), DURATION_STEPS[-1])
    bottom = PAD_TOP + max(len(lanes), 1) * LANE_HEIGHT
    # Ticks on round clock times (multiples of the step since the epoch, in UTC).
    first = math.ceil(since.timestamp() / step) * step
    tick = first - since.timestamp()
    while tick <= span_s + 1e-6:
        x = plot_x0 + tick / span_s * plot_w
        moment = since + (until - since) * (tick / span_s)
        body.append(
            f'<line class="ff-chart-grid" x1="{x:.1f}" y1="{PAD_TOP}" x2="{x:.1f}" '
            f'y2="{bottom}"/><text class="ff-chart-label" x="{x:.1f}" y="{bottom + 15}" '
            f'text-anchor="middle">{escape(time_format(moment))}</text>'
        )
        tick += step
    for index, lane in enumerate(lanes):
        y = PAD_TOP + index * LANE_HEIGHT
        text = f'<text class="ff-chart-lane" x="{plot_x0 - 8}" y="{y + 15}" text-anchor="end">'
        text += f"{escape(lane.label[:22])}<title>{escape(lane.label)}</title></text>"
        body.append(f'<a href="{escape(lane.href)}">{text}</a>' if lane.href else text)
        body.append(
            f'<line class="ff-chart-grid" x1="{plot_x0}" y1="{y + LANE_HEIGHT:.1f}" '
            f'x2="{width - PAD_RIGHT}" y2="{y + LANE_HEIGHT:.1f}"/>'
        )
        for span in lane.spans:
            parts = []
            if span.wait_from is not None and span.wait_from < span.start:
                wx0, wx1 = x_of(span.wait_from), x_of(span.start)
                parts.append(
                    f'<rect class="ff-chart-wait {escape(span.css)}" x="{wx0:.1f}" '
                    f'y="{y + 8}" width="{max(wx1 - wx0, 0):.1f}" height="6"/>'
                )
            x0, x1 = x_of(span.start), x_of(span.end)
            parts.append(
                f'<rect class="ff-chart-bar {escape(span.css)}" x="{x0:.1f}" y="{y + 4}" '
                f'width="{max(x1 - x0, 2.5):.1f}" height="{LANE_HEIGHT - 8}" rx="2"/>'
            )
            group = f"<g><title>{escape(span.title)}</title>{''.join(parts)}</g>"
            body.append(f'<a href="{escape(span.href)}">{group}</a>' if span.href else group)
    if not lanes:
        body.append(
            f'<text class="ff-chart-note" x="{plot_x0 + plot_w / 2:.1f}" y="{PAD_TOP + 15}" '
            'text-anchor="middle">No runs in this window</text>'
        )
    return _svg(width, height, body, label=label, css="ff-chart-timeline")


# --- a one-hop graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    label: str
    href: str | None = None
    css: str = ""  # e.g. "ff-s-SUCCESS": the dot's colour (the node's last run)
    note: str = ""  # on the edge towards the centre: "on success", "on failure", ...
    title: str = ""


NODE_W, NODE_H, NODE_GAP = 190, 30, 12


def flow_graph(
    upstream: Sequence[Node], centre: Node, downstream: Sequence[Node], *, label: str
) -> SafeString:
    """Upstream nodes on the left, the centre, downstream nodes on the right, each edge an
    arrow labelled with its condition; nodes link to their pages."""
    rows = max(len(upstream), len(downstream), 1)
    height = PAD_TOP * 2 + rows * (NODE_H + NODE_GAP) - NODE_GAP
    width = NODE_W * 3 + 2 * 150
    columns = (0, NODE_W + 150, 2 * NODE_W + 300)

    def top_of(index: int, count: int) -> float:
        block = count * (NODE_H + NODE_GAP) - NODE_GAP
        return (height - block) / 2 + index * (NODE_H + NODE_GAP)

    def node(item: Node, x: float, y: float, *, main: bool = False) -> str:
        css = "ff-graph-node ff-graph-main" if main else "ff-graph-node"
        parts = (
            f'<g class="{css}"><title>{escape(item.title or item.label)}</title>'
            f'<rect x="{x}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<circle class="ff-chart-bar {escape(item.css or "ff-s-none")}" cx="{x + 14}" '
            f'cy="{y + NODE_H / 2:.1f}" r="4"/>'
            f'<text x="{x + 26}" y="{y + NODE_H / 2 + 4:.1f}">{escape(item.label[:24])}</text></g>'
        )
        return f'<a href="{escape(item.href)}">{parts}</a>' if item.href and not main else parts

    def edge(x0: float, y0: float, x1: float, y1: float, note: str) -> str:
        mid = (x0 + x1) / 2
        return (
            f'<path class="ff-graph-edge" d="M{x0},{y0:.1f} C{mid},{y0:.1f} {mid},{y1:.1f} '
            f'{x1 - 6},{y1:.1f}" marker-end="url(#ff-arrow)"/>'
            f'<text class="ff-chart-label" x="{mid}" y="{(y0 + y1) / 2 - 5:.1f}" '
            f'text-anchor="middle">{escape(note)}</text>'
        )

    body = [
        '<defs><marker id="ff-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path class="ff-graph-arrow" '
        'd="M0,0 L10,5 L0,10 z"/></marker></defs>'
    ]
    centre_y = top_of(0, 1)
    for index, item in enumerate(upstream):
        y = top_of(index, len(upstream))
        body.append(
            edge(NODE_W, y + NODE_H / 2, columns[1], centre_y + NODE_H / 2, item.note)
            + node(item, columns[0], y)
        )
    for index, item in enumerate(downstream):
        y = top_of(index, len(downstream))
        body.append(
            edge(columns[1] + NODE_W, centre_y + NODE_H / 2, columns[2], y + NODE_H / 2, item.note)
            + node(item, columns[2], y)
        )
    body.append(node(centre, columns[1], centre_y, main=True))
    return _svg(width, height, body, label=label, css="ff-chart-graph")
