"""The telemetry console's charts, drawn with core.charts: a trace's waterfall and a metric
series' chart over its recent windows.

`waterfall` and `series_chart` compute the geometry from spans and stored windows (plain values
in, px out); `waterfall_context` and `series_chart_context` load what they need and give the
templates (templates/admin/observability/tracerecord/ and metricseries/change_form.html) what
they draw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import formats, timezone
from django.utils.text import Truncator

from core import charts
from core.formats import format_count, format_moment, format_ms, format_value
from observability.aggregation import WINDOWS
from observability.models import MetricPoint, MetricSeries, Span, TraceRecord
from observability.vocabulary import STATUS_ERROR, span_kind_name, status_name

# --- A trace's waterfall ---------------------------------------------------------------------

MAX_SPANS = 2000  # spans drawn on one trace's page; the rest are counted, not drawn
CHART_WIDTH = 720  # px of the time axis
LABEL_WIDTH = 400  # px of the label column, left of the axis
RIGHT_PADDING = 40  # px, so that the last tick label fits
ROW_HEIGHT = 20
AXIS_HEIGHT = 24
INDENT = 12  # px per level of depth, up to MAX_INDENT_DEPTH levels
MAX_INDENT_DEPTH = 16
LABEL_CHAR_WIDTH = 7.2  # px of a character of the labels' monospace font (12px)
TITLE_ATTRIBUTES_CHARS = 2000
TABLE_ATTRIBUTES_CHARS = 500


def compact_json(value, limit: int | None = None) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return Truncator(text).chars(limit) if limit else text


@dataclass(frozen=True)
class Row:
    """One span on the waterfall. x and width are in px along the time axis (0..chart width);
    y is the row's top in px below the axis."""

    span: Span
    depth: int
    x: float
    width: float
    y: int
    offset_ms: float
    duration_ms: float
    indent: int
    label: str
    fill: str

    @property
    def is_error(self) -> bool:
        return self.span.status_code == STATUS_ERROR

    @property
    def kind(self) -> str:
        return span_kind_name(self.span.kind)

    @property
    def status(self) -> str:
        return status_name(self.span.status_code)

    @property
    def tooltip(self) -> str:
        span = self.span
        lines = [
            f"{span.name} ({span.service or 'no service'})",
            f"span {span.span_id}, {self.kind}, {self.status}",
            f"start +{format_ms(self.offset_ms)}, duration {format_ms(self.duration_ms)}",
        ]
        if span.status_message:
            lines.append(f"status message: {span.status_message}")
        if span.attributes:
            lines.append(compact_json(span.attributes, TITLE_ATTRIBUTES_CHARS))
        return "\n".join(lines)

    @property
    def attributes_json(self) -> str:
        return compact_json(self.span.attributes, TABLE_ATTRIBUTES_CHARS)


def tree_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans with their depth, parents before children, siblings by start time (a span whose
    parent is not among them is a root; see core.charts.tree_order)."""
    return charts.tree_order(
        spans,
        key=lambda span: span.span_id,
        parent=lambda span: span.parent_span_id,
        order=lambda span: (span.start_ns, span.end_ns, span.span_id),
    )


def time_scale(
    spans: list[Span], start_ns: int | None, end_ns: int | None, *, width: float = CHART_WIDTH
) -> charts.TimeScale:
    """The time axis: start_ns..end_ns, widened to every span's start and end (a client may send
    a span that ends before it starts)."""
    times = [t for s in spans for t in (s.start_ns, s.end_ns)]
    return charts.TimeScale.covering(
        [*times, *(t for t in (start_ns, end_ns) if t is not None)], width=width
    )


def waterfall(
    spans: list[Span],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    chart_width: float = CHART_WIDTH,
) -> list[Row]:
    """The geometry of a trace's waterfall: one row per span in tree order, its bar from the
    span's start to its end on a time axis of `chart_width` px spanning start_ns..end_ns (by
    default, and at least, the spans' own extent)."""
    if not spans:
        return []
    scale = time_scale(spans, start_ns, end_ns, width=chart_width)
    fill = charts.Palette()
    rows = []
    for index, (span, depth) in enumerate(tree_order(spans)):
        duration = max(span.end_ns - span.start_ns, 0)
        indent = min(depth, MAX_INDENT_DEPTH) * INDENT
        rows.append(
            Row(
                span=span,
                depth=depth,
                x=scale.x(span.start_ns),
                width=scale.length(duration),
                y=index * ROW_HEIGHT,
                offset_ms=(span.start_ns - scale.start) / 1e6,
                duration_ms=duration / 1e6,
                indent=indent,
                label=_label(span, duration / 1e6, LABEL_WIDTH - indent - 16),
                fill=fill(span.service),
            )
        )
    return rows


def _label(span: Span, duration_ms: float, width_px: float) -> str:
    """name · service · duration, the name shortened to fit the label column."""
    suffix = f" · {span.service} · {format_ms(duration_ms)}" if span.service else ""
    suffix = suffix or f" · {format_ms(duration_ms)}"
    room = max(int(width_px / LABEL_CHAR_WIDTH) - len(suffix), 8)
    return Truncator(span.name or "(no name)").chars(room) + suffix


def waterfall_context(record: TraceRecord, *, limit: int | None = None) -> dict:
    """What the trace page's template draws: the spans of the record's trace, of the record's
    tenant only (another tenant may well have a trace with the same id)."""
    limit = MAX_SPANS if limit is None else limit
    found = Span.objects.filter(tenant=record.tenant_id, trace_id=record.trace_id)
    spans = list(
        found.order_by("start_ns", "span_id").only(
            "tenant_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "service",
            "start_ns", "end_ns", "status_code", "status_message", "attributes",
        )[: limit + 1]
    )  # fmt: skip
    truncated = len(spans) > limit
    spans = spans[:limit]
    rows = waterfall(spans, start_ns=record.start_ns, end_ns=record.end_ns)
    scale = time_scale(spans, record.start_ns, record.end_ns)
    return {
        "rows": rows,
        "ticks": charts.ticks((scale.end - scale.start) / 1e6, width=CHART_WIDTH, label=format_ms),
        "truncated": truncated,
        "shown": len(spans),
        "total": found.count() if truncated else len(spans),
        "svg_width": LABEL_WIDTH + CHART_WIDTH + RIGHT_PADDING,
        "svg_height": AXIS_HEIGHT + len(rows) * ROW_HEIGHT + 1,
        "chart_x": LABEL_WIDTH,
        "chart_width": CHART_WIDTH,
        "chart_height": len(rows) * ROW_HEIGHT,
        "axis_height": AXIS_HEIGHT,
        "row_height": ROW_HEIGHT,
        "row_width": LABEL_WIDTH + CHART_WIDTH,
        "error_color": charts.ERROR_COLOR,
    }


# --- A metric series over its recent windows -------------------------------------------------

Kind = MetricPoint.Kind

SERIES_WINDOWS = 60  # windows on a series' chart, up to and including the page's own
# The SVG is as wide as the page's column at 1440 px (1,054 px), so that it is drawn at its
# size there: 14 px a window, and the page's window's figures written beside it.
PLOT_WIDTH = 840  # px of the time axis
PLOT_HEIGHT = 180  # px of the value axis
PLOT_LEFT = 64  # px left of the plot, for the value labels
PLOT_TOP = 24  # px above it, for the legend
PLOT_BOTTOM = 40  # px below it, for two rows of time labels
PLOT_RIGHT = 150  # px right of it, for the figures of the page's window
DOT_RADIUS = 2.5
TICK_MIN_PX = 80  # between two time labels: "12:30:00" is about 55 px
LABEL_GAP = 13  # px between two figures' labels beside the plot (11 px text)
# Steps between the time labels: the first that is a whole number of windows and leaves
# TICK_MIN_PX between labels (10 minutes for 1m windows, 30 for 5m, 6 hours for 1h).
TICK_STEPS = [timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30)] + [
    timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24)
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The figures a kind's chart draws, by MetricSeries field: what an operator watches for it.
CHART_FIGURES: dict[int, list[str]] = {
    Kind.SUM: ["delta"],
    Kind.GAUGE: ["mean"],  # inside its min-max band
    Kind.HISTOGRAM: ["p50", "p95", "p99"],
    Kind.EXPONENTIAL_HISTOGRAM: ["count"],  # no buckets are kept for these, so no percentiles
    Kind.SUMMARY: ["count"],
}
# Amounts per window (an increase, a number of observations) are bars; levels are lines.
BAR_KINDS = {Kind.SUM, Kind.EXPONENTIAL_HISTOGRAM, Kind.SUMMARY}
FIGURE_COLORS = {
    "delta": "#4e79a7",
    "count": "#4e79a7",
    "mean": "#4e79a7",
    "p50": "#59a14f",
    "p95": "#f28e2b",
    "p99": "#e15759",
}
BAND_COLOR = "#a0cbe8"


def amount(value: float | None, unit: str) -> str:
    text = format_value(value)
    return f"{text} {unit}" if unit and value is not None else text


def window_tooltip(series: MetricSeries, kind: int) -> str:
    """A window's figures as its point's tooltip on a chart of `kind`."""
    unit = series.unit

    def figures(*names: str) -> str:
        return ", ".join(f"{name} {amount(getattr(series, name), unit)}" for name in names)

    if kind == Kind.SUM:  # `last` only for cumulative sums: a delta sum has no level
        detail = figures("delta", "last") if series.last is not None else figures("delta")
    elif kind == Kind.GAUGE:
        detail = figures("mean", "min", "max", "last")
    elif kind == Kind.HISTOGRAM:
        detail = f"count {format_count(series.count)}, {figures('p50', 'p95', 'p99')}"
    else:
        detail = f"count {format_count(series.count)}, {figures('sum')}"
    return (
        f"{format_moment(series.window_start)} ({series.window})\n{detail}\n{series.points} points"
    )


def chart_values(series: MetricSeries, kind: int) -> dict[str, float]:
    """What one window puts on a chart of `kind` (the page's kind: a series key does not include
    the kind, so an older window may have been another), finite values only: a client may send
    NaN or an infinity, which has no place on an axis."""
    names = CHART_FIGURES.get(kind, ["count"])
    if kind == Kind.GAUGE:
        names = [*names, "min", "max"]
    values = {name: getattr(series, name) for name in names}
    return {n: float(v) for n, v in values.items() if v is not None and math.isfinite(v)}


@dataclass(frozen=True)
class ChartPoint:
    """One stored window on the chart: its slot (0 is the oldest window of the axis), its marks
    and its tooltip. `bar` for bar kinds, `dots` for line kinds, `band` for gauges."""

    series: MetricSeries
    slot: int
    x: float
    width: float
    current: bool
    tooltip: str
    bar: charts.Box | None = None
    band: charts.Box | None = None
    dots: tuple[charts.Dot, ...] = ()


@dataclass(frozen=True)
class ValueLabel:
    """A figure of the page's window written beside the plot: at `y`, moved apart from the
    others (core.charts.spread), with a leader from its value's own height `value_y`."""

    figure: str
    text: str
    y: float
    value_y: float
    color: str

    @property
    def baseline(self) -> float:
        """The text's baseline, for its middle to be at `y` (11 px text)."""
        return round(self.y + 4, 2)


@dataclass(frozen=True)
class SeriesChart:
    points: list[ChartPoint]
    lines: list[charts.Line]
    legend: list[tuple[str, str]]  # (label, color)
    width: float
    height: float
    slot_width: float
    baseline: float | None  # y of zero, when zero is on the axis
    low_label: str
    high_label: str
    first_label: str
    last_label: str
    ticks: list[charts.Tick]  # times of day along the axis, at round steps
    values: list[ValueLabel]  # the page's window's figures, beside its slot

    @property
    def current(self) -> ChartPoint | None:
        return next((p for p in self.points if p.current), None)


def series_chart(
    series: MetricSeries,
    windows: list[MetricSeries],
    *,
    slots: int = SERIES_WINDOWS,
    width: float = PLOT_WIDTH,
    height: float = PLOT_HEIGHT,
) -> SeriesChart:
    """The geometry of a series' chart: the time axis is `slots` windows of the series' size
    ending with `series`'s own, one slot each, so that a missing window shows as a gap; `windows`
    are the stored ones (any outside the axis are left out). Drawn as `series`'s kind is."""
    size = WINDOWS[series.window]
    first = series.window_start - (slots - 1) * size
    placed = sorted(
        ((w.window_start - first) // size, w)
        for w in windows
        if first <= w.window_start <= series.window_start
    )
    bars = series.kind in BAR_KINDS
    values = {slot: chart_values(w, series.kind) for slot, w in placed}
    low, high = charts.value_range(
        (v for vs in values.values() for v in vs.values()), with_zero=bars
    )
    axes = charts.Axes(slot_width=width / slots, low=low, high=high, height=height)
    figures = CHART_FIGURES.get(series.kind, ["count"])
    colors = {name: FIGURE_COLORS[name] for name in figures}
    points = [
        _chart_point(w, slot, values[slot], axes, page=series, bars=bars) for slot, w in placed
    ]
    return SeriesChart(
        points=points,
        lines=[] if bars else charts.lines(values, colors, axes),
        legend=_legend(series.kind, figures),
        width=width,
        height=height,
        slot_width=round(axes.slot_width, 2),
        baseline=axes.baseline,
        low_label=format_value(low, 4),
        high_label=format_value(high, 4),
        first_label=format_moment(first),
        last_label=format_moment(series.window_start),
        ticks=time_ticks(first, size, slots=slots, slot_width=axes.slot_width),
        values=value_labels(series, values.get(slots - 1, {}), axes),
    )


def time_ticks(
    first: datetime, size: timedelta, *, slots: int, slot_width: float
) -> list[charts.Tick]:
    """Labels along a series' time axis: the start of every window at a round step of time
    (TICK_STEPS), as a time of day in the one format (core.formats: TIME_FORMAT)."""
    step = next(
        (s for s in TICK_STEPS if not s % size and s // size * slot_width >= TICK_MIN_PX),
        size * slots,
    )
    per = step // size  # windows between two labels
    offset = -((first - EPOCH) // size) % per  # the first window that starts on a step
    return [
        charts.Tick(
            x=round(slot * slot_width, 2),
            label=formats.time_format(timezone.localtime(first + slot * size)),
        )
        for slot in range(offset, slots, per)
    ]


def value_labels(
    series: MetricSeries, values: dict[str, float], axes: charts.Axes
) -> list[ValueLabel]:
    """The page's window's figures (those its chart draws), each beside the plot at its own
    height, moved apart where they would overlap: the newest window read without a hover."""
    figures = [name for name in CHART_FIGURES.get(series.kind, ["count"]) if name in values]
    unit = "" if figures == ["count"] else series.unit  # a count is not in the unit
    heights = [axes.y(values[name]) for name in figures]
    placed = charts.spread(heights, gap=LABEL_GAP, low=0, high=axes.height)
    return [
        ValueLabel(
            figure=name,
            text=f"{name} {amount(values[name], unit)}",
            y=y,
            value_y=value_y,
            color=FIGURE_COLORS[name],
        )
        for name, y, value_y in zip(figures, placed, heights, strict=True)
    ]


def _chart_point(
    window: MetricSeries,
    slot: int,
    values: dict[str, float],
    axes: charts.Axes,
    *,
    page: MetricSeries,
    bars: bool,
) -> ChartPoint:
    """One window's marks: a bar from zero to its value, or a dot per figure, and for gauges
    the band from its min to its max."""
    figures = CHART_FIGURES.get(page.kind, ["count"])
    bar = band = None
    if bars and figures[0] in values:
        bar = axes.bar(slot, values[figures[0]])
    if "min" in values and "max" in values:
        band = axes.band(slot, values["min"], values["max"])
    dots: tuple[charts.Dot, ...] = ()
    if not bars:
        dots = tuple(
            charts.Dot(name, axes.center(slot), axes.y(values[name]), FIGURE_COLORS[name])
            for name in figures
            if name in values
        )
    return ChartPoint(
        series=window,
        slot=slot,
        x=axes.x(slot),
        width=round(axes.slot_width, 2),
        current=window.window_start == page.window_start,
        tooltip=window_tooltip(window, page.kind),
        bar=bar,
        band=band,
        dots=dots,
    )


def _legend(kind: int, figures: list[str]) -> list[tuple[str, str]]:
    legend = [(name, FIGURE_COLORS[name]) for name in figures]
    return [*legend, ("min-max", BAND_COLOR)] if kind == Kind.GAUGE else legend


def recent_windows(series: MetricSeries, slots: int = SERIES_WINDOWS) -> list[MetricSeries]:
    """The stored windows of `series`'s chart: same tenant (another tenant may send the very
    same series, hence the same key), same series key and size, within the `slots` windows
    ending with this one. The JSON columns are left in the database: the chart reads figures."""
    since = series.window_start - slots * WINDOWS[series.window]
    found = MetricSeries.objects.filter(
        tenant=series.tenant_id,
        series_key=series.series_key,
        window=series.window,
        window_start__gt=since,
        window_start__lte=series.window_start,
    )
    return list(
        found.order_by("window_start").defer(
            "resource", "attributes", "buckets", "exemplars", "notes"
        )
    )


def series_chart_context(series: MetricSeries, *, slots: int | None = None) -> dict:
    """What the series page's template draws."""
    slots = SERIES_WINDOWS if slots is None else slots
    chart = series_chart(series, recent_windows(series, slots), slots=slots)
    figures = CHART_FIGURES.get(series.kind, ["count"])
    return {
        "chart": chart,
        "slots": slots,
        "figures": ", ".join(label for label, _ in chart.legend),
        "unit": "" if figures == ["count"] else series.unit,  # a count is not in the unit
        "svg_width": PLOT_LEFT + PLOT_WIDTH + PLOT_RIGHT,
        "svg_height": PLOT_TOP + PLOT_HEIGHT + PLOT_BOTTOM,
        "plot_x": PLOT_LEFT,
        "plot_y": PLOT_TOP,
        "dot_radius": DOT_RADIUS,
        "band_color": BAND_COLOR,
        "bar_color": FIGURE_COLORS[figures[0]],
    }


# --- A window's distribution -----------------------------------------------------------------

BUCKET_BAR_WIDTH = 24  # px a bucket on the small bar chart beside the table of buckets
BUCKET_CHART_HEIGHT = 80
BUCKET_CHART_MAX_WIDTH = 480  # a histogram of many buckets gets narrower bars, not a wider chart


@dataclass(frozen=True)
class Bucket:
    """One bucket of a histogram window: the values it holds as a range, how many, and its bar
    on the small chart (x along the buckets, y down from the top of the chart)."""

    range: str
    count: int
    share: float  # of the window's observations, 0 to 1
    bar: charts.Box

    @property
    def percent(self) -> str:
        return f"{self.share:.1%}"

    @property
    def tooltip(self) -> str:
        return f"{self.range}: {format_count(self.count)} ({self.percent})"


def bound(value: float) -> str:
    # Not format_value: its thousands separator would read as the range's comma, "(1,000, 2,500]".
    return f"{value:g}"


def histogram_buckets(buckets: object, *, height: float = BUCKET_CHART_HEIGHT) -> list[Bucket]:
    """A window's merged explicit-bounds buckets (observability.aggregation) as ranges with
    counts: bucket i holds the values in (bounds[i-1], bounds[i]], the first from -∞ and the
    last to +∞, as OTLP defines them. [] when `buckets` holds none: not a histogram's (a
    summary keeps quantiles there, an exponential histogram nothing), or counts that do not
    match the bounds."""
    if not isinstance(buckets, dict):
        return []
    bounds, counts = buckets.get("bounds"), buckets.get("counts")
    if not isinstance(bounds, list) or not isinstance(counts, list):
        return []
    if len(counts) != len(bounds) + 1 or not all(
        isinstance(n, int | float) for n in [*bounds, *counts]
    ):
        return []
    lows = ["-∞", *(bound(b) for b in bounds)]
    ranges = [f"({low}, {bound(high)}]" for low, high in zip(lows, bounds, strict=False)]
    ranges.append(f"({lows[-1]}, +∞)")
    total = sum(counts) or 1
    width = min(BUCKET_BAR_WIDTH * len(counts), BUCKET_CHART_MAX_WIDTH)
    boxes = charts.bars([float(n) for n in counts], width=width, height=height)
    return [
        Bucket(range=text, count=int(n), share=n / total, bar=box)
        for text, n, box in zip(ranges, counts, boxes, strict=True)
    ]


def summary_quantiles(buckets: object) -> list[tuple[str, float | None]]:
    """A summary window's quantiles (the newest point's) as (p50, value); [] for none."""
    quantiles = buckets.get("quantiles") if isinstance(buckets, dict) else None
    if not isinstance(quantiles, list):
        return []
    return [
        (f"p{q * 100:g}", value)
        for q, value in (pair for pair in quantiles if isinstance(pair, list) and len(pair) == 2)
        if isinstance(q, int | float)
    ]
