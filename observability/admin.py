"""The operator's console for telemetry: batches as received, spans, traces and metric series.

Everything here is read-only: these rows are written by ingestion, and an edit by hand would make
a TraceRecord disagree with its spans. A trace's page draws its spans as a waterfall, in inline
SVG built on the server (no JavaScript): `waterfall` computes the geometry, a template draws it.
A metric series' page draws the same series over its recent windows the same way
(`series_chart`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Length
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin import ReadOnlyMixin, pretty_json
from observability import selectors
from observability.aggregation import WINDOWS
from observability.models import (
    MetricPoint,
    MetricSeries,
    Span,
    TelemetryBatch,
    TelemetryCorrelation,
    TraceRecord,
)

MAX_SPANS = 2000  # spans drawn on one trace's page; the rest are counted, not drawn
CHART_WIDTH = 720  # px of the time axis
LABEL_WIDTH = 400  # px of the label column, left of the axis
RIGHT_PADDING = 40  # px, so that the last tick label fits
ROW_HEIGHT = 20
AXIS_HEIGHT = 24
INDENT = 12  # px per level of depth, up to MAX_INDENT_DEPTH levels
MAX_INDENT_DEPTH = 16
LABEL_CHAR_WIDTH = 7.2  # px of a character of the labels' monospace font (12px)
MIN_BAR_WIDTH = 1.0  # px, so that an instantaneous span is still seen
TITLE_ATTRIBUTES_CHARS = 2000
TABLE_ATTRIBUTES_CHARS = 500

SPAN_KINDS = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
ERROR = 2
# Fills by service, in order of first appearance; none of them is red, which means "error".
PALETTE = ["#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac", "#f28e2b"]


def ns_to_datetime(ns: int | None) -> datetime | None:
    """A Unix time in nanoseconds as an aware datetime, to the microsecond; None when it does not
    fit in one (a client may send anything)."""
    if ns is None:
        return None
    try:
        seconds, rest = divmod(ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest // 1000)
    except (OverflowError, OSError, ValueError):
        return None


def format_time(ns: int | None) -> str:
    """A span's or trace's time to the millisecond, in the site's time zone: the admin's own
    date format stops at the minute, too coarse for a trace."""
    moment = ns_to_datetime(ns)
    if moment is None:
        return f"{ns} ns (out of range)"
    moment = timezone.localtime(moment)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d} {moment:%Z}"


def format_ms(ms: float) -> str:
    """A duration for a person: three significant figures are plenty on a waterfall."""
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 100:
        return f"{ms:,.0f} ms"
    if abs(ms) >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


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
        return self.span.status_code == ERROR

    @property
    def kind(self) -> str:
        return SPAN_KINDS.get(self.span.kind, str(self.span.kind))

    @property
    def status(self) -> str:
        return STATUS_CODES.get(self.span.status_code, str(self.span.status_code))

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


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


def tree_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans with their depth, parents before children, siblings by start time.

    A span whose parent is not among `spans` (not arrived yet, or past the cap) is a root. Spans
    caught in a parent cycle (bad data) are not lost: the earliest of them becomes a root.
    Iterative, so that a deep chain cannot reach the recursion limit.
    """

    def by_start(span: Span):
        return (span.start_ns, span.end_ns, span.span_id)

    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = defaultdict(list)
    roots = []
    for span in spans:
        parent = span.parent_span_id
        if parent and parent in ids and parent != span.span_id:
            children[parent].append(span)
        else:
            roots.append(span)
    for siblings in children.values():
        siblings.sort(key=by_start)

    ordered: list[tuple[Span, int]] = []
    seen: set[int] = set()

    def walk(root: Span) -> None:
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            if id(span) in seen:
                continue
            seen.add(id(span))
            ordered.append((span, depth))
            stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))

    for root in sorted(roots, key=by_start):
        walk(root)
    for span in sorted(spans, key=by_start):  # only spans in a cycle are left
        if id(span) not in seen:
            walk(span)
    return ordered


def bounds(spans: list[Span], start_ns: int | None = None, end_ns: int | None = None):
    """The time axis: start_ns..end_ns, widened to every span's start and end (a client may send
    a span that ends before it starts)."""
    times = [t for s in spans for t in (s.start_ns, s.end_ns)]
    times += [t for t in (start_ns, end_ns) if t is not None]
    return min(times), max(times)


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
    t0, t1 = bounds(spans, start_ns, end_ns)
    total = max(t1 - t0, 1)
    scale = chart_width / total
    fills: dict[str, str] = {}
    rows = []
    for index, (span, depth) in enumerate(tree_order(spans)):
        duration = max(span.end_ns - span.start_ns, 0)
        x = (span.start_ns - t0) * scale
        width = max(duration * scale, MIN_BAR_WIDTH)
        indent = min(depth, MAX_INDENT_DEPTH) * INDENT
        fill = fills.setdefault(span.service, PALETTE[len(fills) % len(PALETTE)])
        rows.append(
            Row(
                span=span,
                depth=depth,
                x=round(x, 2),
                width=round(width, 2),
                y=index * ROW_HEIGHT,
                offset_ms=(span.start_ns - t0) / 1e6,
                duration_ms=duration / 1e6,
                indent=indent,
                label=_label(span, duration / 1e6, LABEL_WIDTH - indent - 16),
                fill=fill,
            )
        )
    return rows


def _label(span: Span, duration_ms: float, width_px: float) -> str:
    """name · service · duration, the name shortened to fit the label column."""
    suffix = f" · {span.service} · {format_ms(duration_ms)}" if span.service else ""
    suffix = suffix or f" · {format_ms(duration_ms)}"
    room = max(int(width_px / LABEL_CHAR_WIDTH) - len(suffix), 8)
    return Truncator(span.name or "(no name)").chars(room) + suffix


def ticks(total_ms: float, chart_width: float = CHART_WIDTH, count: int = 5) -> list[Tick]:
    """`count` evenly spaced ticks, from 0 ms to the trace's duration."""
    return [
        Tick(x=round(chart_width * i / (count - 1), 2), label=format_ms(total_ms * i / (count - 1)))
        for i in range(count)
    ]


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
    t0, t1 = bounds(spans, record.start_ns, record.end_ns)
    height = AXIS_HEIGHT + len(rows) * ROW_HEIGHT
    return {
        "rows": rows,
        "ticks": ticks((t1 - t0) / 1e6),
        "truncated": truncated,
        "shown": len(spans),
        "total": found.count() if truncated else len(spans),
        "svg_width": LABEL_WIDTH + CHART_WIDTH + RIGHT_PADDING,
        "svg_height": height + 1,
        "chart_x": LABEL_WIDTH,
        "chart_width": CHART_WIDTH,
        "chart_height": len(rows) * ROW_HEIGHT,
        "axis_height": AXIS_HEIGHT,
        "row_height": ROW_HEIGHT,
        "row_width": LABEL_WIDTH + CHART_WIDTH,
    }


class StatusCodeFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status_code"

    def lookups(self, request, model_admin):
        return [(str(code), label) for code, label in STATUS_CODES.items()]

    def queryset(self, request, queryset):
        if self.value() in {str(code) for code in STATUS_CODES}:
            return queryset.filter(status_code=int(self.value()))
        return queryset


@admin.register(TraceRecord)
class TraceRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "trace_id", "root_name", "root_service", "services_list", "span_count", "error_count",
        "status", "duration", "start_time",
    ]  # fmt: skip
    list_filter = ["status", "tenant", "root_service"]
    list_select_related = ["tenant"]
    search_fields = ["=trace_id", "root_name"]
    ordering = ["-start_ns"]
    show_full_result_count = False
    fields = [
        "trace_id", "tenant", "root_name", "root_service", "services_list", "span_count",
        "error_count", "status", "duration", "start_time", "end_time", "updated",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="services")
    def services_list(self, record: TraceRecord) -> str:
        return ", ".join(record.services)

    @admin.display(description="duration (ms)", ordering=F("end_ns") - F("start_ns"))
    def duration(self, record: TraceRecord) -> str:
        return f"{record.duration_ms:,.3f}"

    @admin.display(description="start", ordering="start_ns")
    def start_time(self, record: TraceRecord) -> str:
        return format_time(record.start_ns)

    @admin.display(description="end", ordering="end_ns")
    def end_time(self, record: TraceRecord) -> str:
        return format_time(record.end_ns)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, unquote(object_id))
        if record is not None and self.has_view_permission(request, record):
            extra_context = {
                **(extra_context or {}),
                "waterfall": waterfall_context(record),
                "correlation": correlation_context(record),
            }
        return super().change_view(request, object_id, form_url, extra_context)


def trace_record_pk() -> Subquery:
    """The pk of the TraceRecord of a row's trace, of the row's own tenant (another tenant may
    have a trace with the same id), for links to the trace's page."""
    record = TraceRecord.objects.filter(tenant=OuterRef("tenant"), trace_id=OuterRef("trace_id"))
    return Subquery(record.values("pk")[:1])


@admin.register(Span)
class SpanAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "service", "trace", "duration", "status"]
    list_filter = [StatusCodeFilter, "service", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=trace_id", "=span_id", "name"]
    ordering = ["-start_ns"]
    show_full_result_count = False
    fields = [
        "name", "tenant", "trace", "span_id", "parent_span_id", "kind_name", "service", "scope",
        "scope_version", "start_time", "end_time", "duration", "status", "status_message",
        "attributes_json", "resource_json", "scope_attributes_json", "events_json", "links_json",
    ]  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(record_pk=trace_record_pk())

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, span: Span) -> str:
        if span.record_pk is None:
            return span.trace_id
        url = reverse("admin:observability_tracerecord_change", args=[span.record_pk])
        return format_html('<a href="{}">{}</a>', url, span.trace_id)

    @admin.display(description="duration (ms)", ordering=F("end_ns") - F("start_ns"))
    def duration(self, span: Span) -> str:
        return f"{span.duration_ms:,.3f}"

    @admin.display(description="status", ordering="status_code")
    def status(self, span: Span) -> str:
        return STATUS_CODES.get(span.status_code, str(span.status_code))

    @admin.display(description="kind")
    def kind_name(self, span: Span) -> str:
        return SPAN_KINDS.get(span.kind, str(span.kind))

    @admin.display(description="start", ordering="start_ns")
    def start_time(self, span: Span) -> str:
        return format_time(span.start_ns)

    @admin.display(description="end", ordering="end_ns")
    def end_time(self, span: Span) -> str:
        return format_time(span.end_ns)

    @admin.display(description="attributes")
    def attributes_json(self, span: Span) -> str:
        return pretty_json(span.attributes)

    @admin.display(description="resource")
    def resource_json(self, span: Span) -> str:
        return pretty_json(span.resource)

    @admin.display(description="scope attributes")
    def scope_attributes_json(self, span: Span) -> str:
        return pretty_json(span.scope_attributes)

    @admin.display(description="events")
    def events_json(self, span: Span) -> str:
        return pretty_json(span.events)

    @admin.display(description="links")
    def links_json(self, span: Span) -> str:
        return pretty_json(span.links)


@admin.register(TelemetryBatch)
class TelemetryBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # The payload is binary protobuf: never shown, only measured (in the database, so that the
    # list does not even load it).
    list_display = ["id", "tenant", "signal", "items", "rejected", "size", "received_at"]
    list_filter = ["signal", "tenant"]
    list_select_related = ["tenant"]
    ordering = ["-received_at"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = ["id", "tenant", "signal", "items", "rejected", "size", "received_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super().get_queryset(request).defer("payload").annotate(payload_bytes=Length("payload"))
        )

    @admin.display(description="payload size", ordering="payload_bytes")
    def size(self, batch: TelemetryBatch) -> str:
        return f"{batch.payload_bytes:,} bytes"


# A trace's correlated telemetry: TelemetryCorrelationWorker's snapshot of the trace (its log
# records, the metric exemplars pointing at it, the platform events that named it), shown below
# the spans on the trace's page, and the snapshots themselves as a read-only list.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOG_BODY_CHARS = 1000  # a structured body, which the worker does not clip, as compact JSON
SEVERITY_ORDER = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "UNSPECIFIED"]
ERROR_SEVERITY = 17  # OTLP SeverityNumber: ERROR and FATAL from here on


def format_moment(moment: datetime | None) -> str:
    """An aware datetime as format_time shows a span's time, "-" for none."""
    if moment is None:
        return "-"
    return format_time((moment - EPOCH) // timedelta(microseconds=1) * 1000)


def shown_of(shown: int, total: int) -> str:
    """A section's count: "3 of 12 shown" when the snapshot keeps only the newest."""
    return f"{shown:,} of {total:,} shown" if shown < total else f"{total:,}"


def correlated_log(entry: dict) -> dict:
    body = entry.get("body")
    number = entry.get("severityNumber") or 0
    return {
        "time": format_time(entry["timeUnixNano"]) if entry.get("timeUnixNano") else "-",
        "severity": entry.get("severityText") or entry.get("severity", ""),
        "is_error": number >= ERROR_SEVERITY,
        "service": entry.get("service", ""),
        "span_id": entry.get("spanId", ""),
        # OTLP bodies are any value: a string is shown as sent, anything else as JSON.
        "body": body if isinstance(body, str) else compact_json(body, LOG_BODY_CHARS),
    }


def correlated_exemplar(entry: dict) -> dict:
    return {
        "metric": entry.get("metric", ""),
        "value": format_value(entry.get("value")),
        "unit": entry.get("unit", ""),
        "span_id": entry.get("spanId", ""),
        "time": format_time(entry["timeUnixNano"]) if entry.get("timeUnixNano") else "-",
    }


def correlated_event(entry: dict) -> dict:
    # occurredAt is stored as ISO text (the snapshot is JSON).
    occurred = parse_datetime(entry.get("occurredAt") or "")
    return {
        "type": entry.get("type", ""),
        "time": format_moment(occurred),
        "source": entry.get("source", ""),
        "signal": entry.get("signal", ""),
        "event_id": entry.get("eventId", ""),
    }


def severity_counts(by_severity: dict[str, int]) -> str:
    """The count of records per severity, the most severe first: "ERROR 1, INFO 2"."""
    ranked = sorted(
        by_severity.items(),
        key=lambda item: SEVERITY_ORDER.index(item[0]) if item[0] in SEVERITY_ORDER else 99,
    )
    return ", ".join(f"{name} {count:,}" for name, count in ranked)


def correlation_context(record: TraceRecord) -> dict:
    """What the trace page shows of the trace's correlation, read as the API reads it (by the
    record's tenant and trace id); {"correlated": False} until the worker has correlated it."""
    found = selectors.correlation_of(record)
    if found is None:
        return {"correlated": False}
    logs = found.logs.get("latest", [])
    return {
        "correlated": True,
        "pk": found.pk,
        "updated": format_moment(found.updated),
        "logs": [correlated_log(entry) for entry in logs],
        "log_count": shown_of(len(logs), found.log_count),
        "by_severity": severity_counts(found.logs.get("bySeverity", {})),
        "exemplars": [correlated_exemplar(entry) for entry in found.exemplars],
        "exemplar_count": shown_of(len(found.exemplars), found.exemplar_count),
        "events": [correlated_event(entry) for entry in found.events],
        "event_count": shown_of(len(found.events), found.event_count),
    }


@admin.register(TelemetryCorrelation)
class TelemetryCorrelationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["trace_link", "tenant", "log_count", "exemplar_count", "event_count", "updated"]
    # The trace id links to the trace's page (which shows the snapshot as an operator reads it),
    # so the snapshot's own page (its JSON as stored) is linked from its time: one link a cell.
    list_display_links = ["updated"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=trace_id"]
    ordering = ["-updated"]
    show_full_result_count = False
    fields = [
        "trace_link", "tenant", "log_count", "exemplar_count", "event_count", "created",
        "updated", "trace_json", "logs_json", "exemplars_json", "events_json",
    ]  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        found = super().get_queryset(request).annotate(record_pk=trace_record_pk())
        # The snapshot's JSON (up to 20 log bodies, 50 exemplars and 50 events a row) stays in
        # the database for the list, which shows counts; a snapshot's page loads it as it shows it.
        return found.defer("trace", "logs", "exemplars", "events")

    @admin.display(description="trace id", ordering="trace_id")
    def trace_link(self, row: TelemetryCorrelation) -> str:
        if row.record_pk is None:  # events or exemplars named a trace not ingested (yet)
            return row.trace_id
        url = reverse("admin:observability_tracerecord_change", args=[row.record_pk])
        return format_html('<a href="{}">{}</a>', url, row.trace_id)

    @admin.display(description="trace summary")
    def trace_json(self, row: TelemetryCorrelation) -> str:
        return pretty_json(row.trace)

    @admin.display(description="logs")
    def logs_json(self, row: TelemetryCorrelation) -> str:
        return pretty_json(row.logs)

    @admin.display(description="exemplars")
    def exemplars_json(self, row: TelemetryCorrelation) -> str:
        return pretty_json(row.exemplars)

    @admin.display(description="events")
    def events_json(self, row: TelemetryCorrelation) -> str:
        return pretty_json(row.events)


# Metric series: a list of rolled-up windows, and a page per window with a chart of the same
# series over its recent windows, drawn like the waterfall: `series_chart` computes the
# geometry, templates/admin/observability/metricseries/change_form.html draws it.

Kind = MetricPoint.Kind

SERIES_WINDOWS = 60  # windows on a series' chart, up to and including the page's own
PLOT_WIDTH = 720  # px of the time axis
PLOT_HEIGHT = 180  # px of the value axis
PLOT_LEFT = 80  # px left of the plot, for the value labels
PLOT_TOP = 24  # px above it, for the legend
PLOT_BOTTOM = 24  # px below it, for the time labels
PLOT_RIGHT = 16
BAR_GAP = 0.15  # share of a window's slot left empty on either side of its bar
MIN_BAR_HEIGHT = 1.0  # px, so that a window of zero is still seen
DOT_RADIUS = 2.5

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


def format_value(value: float | None, digits: int = 6) -> str:
    """A figure for a person: a few significant figures, thousands separated, "-" for none."""
    if value is None:
        return "-"
    return f"{value:,.{digits}g}"


def format_count(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def format_window(moment: datetime) -> str:
    """A window's start in the site's time zone; windows start on the minute."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


def _amount(value: float | None, unit: str) -> str:
    text = format_value(value)
    return f"{text} {unit}" if unit and value is not None else text


def main_figure(series: MetricSeries) -> str:
    """The one figure the list shows for a window, by kind."""
    unit = series.unit
    if series.kind == Kind.SUM:
        return f"Δ {_amount(series.delta, unit)}"
    if series.kind == Kind.GAUGE:
        return f"mean {_amount(series.mean, unit)}, last {_amount(series.last, unit)}"
    if series.kind == Kind.HISTOGRAM:
        return f"count {format_count(series.count)}, p95 {_amount(series.p95, unit)}"
    return f"count {format_count(series.count)}"


def window_tooltip(series: MetricSeries, kind: int) -> str:
    """A window's figures as its point's tooltip on a chart of `kind`."""
    unit = series.unit

    def figures(*names: str) -> str:
        return ", ".join(f"{name} {_amount(getattr(series, name), unit)}" for name in names)

    if kind == Kind.SUM:  # `last` only for cumulative sums: a delta sum has no level
        detail = figures("delta", "last") if series.last is not None else figures("delta")
    elif kind == Kind.GAUGE:
        detail = figures("mean", "min", "max", "last")
    elif kind == Kind.HISTOGRAM:
        detail = f"count {format_count(series.count)}, {figures('p50', 'p95', 'p99')}"
    else:
        detail = f"count {format_count(series.count)}, {figures('sum')}"
    return (
        f"{format_window(series.window_start)} ({series.window})\n{detail}\n{series.points} points"
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


def value_range(values: list[float], *, with_zero: bool) -> tuple[float, float]:
    """The value axis, low to high: the values' extent, from zero for bars (a bar's length is
    its value), widened when flat so that a constant series sits mid-height."""
    values = [*values, 0.0] if with_zero else values
    low, high = min(values, default=0.0), max(values, default=0.0)
    if low == high == 0:  # nothing, or zeros only: zero at the bottom
        return 0.0, 1.0
    if low == high:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    return low, high


@dataclass(frozen=True)
class Box:
    """A rectangle in px within the plot (y down from the plot's top)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Dot:
    figure: str
    cx: float
    cy: float
    color: str


@dataclass(frozen=True)
class Line:
    figure: str
    points: str  # a polyline's "x,y x,y ..."
    color: str


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
    bar: Box | None = None
    band: Box | None = None
    dots: tuple[Dot, ...] = ()


@dataclass(frozen=True)
class SeriesChart:
    points: list[ChartPoint]
    lines: list[Line]
    legend: list[tuple[str, str]]  # (label, color)
    width: float
    height: float
    slot_width: float
    baseline: float | None  # y of zero, when zero is on the axis
    low_label: str
    high_label: str
    first_label: str
    last_label: str

    @property
    def current(self) -> ChartPoint | None:
        return next((p for p in self.points if p.current), None)


@dataclass(frozen=True)
class Axes:
    """From windows and values to px: slot 0 (the oldest window of the axis) at the left, `low`
    at the bottom of a plot `height` px high."""

    slot_width: float
    low: float
    high: float
    height: float

    def y(self, value: float) -> float:
        return round(self.height - (value - self.low) / (self.high - self.low) * self.height, 2)

    def center(self, slot: int) -> float:
        return round((slot + 0.5) * self.slot_width, 2)


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
    low, high = value_range([v for vs in values.values() for v in vs.values()], with_zero=bars)
    axes = Axes(slot_width=width / slots, low=low, high=high, height=height)
    figures = CHART_FIGURES.get(series.kind, ["count"])
    return SeriesChart(
        points=[
            _chart_point(w, slot, values[slot], axes, page=series, bars=bars) for slot, w in placed
        ],
        lines=[] if bars else _lines(figures, values, axes),
        legend=_legend(series.kind, figures),
        width=width,
        height=height,
        slot_width=round(axes.slot_width, 2),
        baseline=axes.y(0.0) if low <= 0 <= high else None,
        low_label=format_value(low, 4),
        high_label=format_value(high, 4),
        first_label=format_window(first),
        last_label=format_window(series.window_start),
    )


def _chart_point(
    window: MetricSeries,
    slot: int,
    values: dict[str, float],
    axes: Axes,
    *,
    page: MetricSeries,
    bars: bool,
) -> ChartPoint:
    """One window's marks: a bar from zero to its value, or a dot per figure, and for gauges
    the band from its min to its max."""
    x = slot * axes.slot_width
    figures = CHART_FIGURES.get(page.kind, ["count"])
    bar = band = None
    if bars and figures[0] in values:
        top, bottom = sorted((axes.y(values[figures[0]]), axes.y(0.0)))
        gap = axes.slot_width * BAR_GAP
        bar = Box(
            x=round(x + gap, 2),
            y=top,
            width=round(axes.slot_width - 2 * gap, 2),
            height=max(round(bottom - top, 2), MIN_BAR_HEIGHT),
        )
    if "min" in values and "max" in values:
        # Sorted: a client's histogram may claim a min above its max.
        top, bottom = sorted((axes.y(values["max"]), axes.y(values["min"])))
        band = Box(x=round(x, 2), y=top, width=round(axes.slot_width, 2), height=bottom - top)
    dots: tuple[Dot, ...] = ()
    if not bars:
        dots = tuple(
            Dot(name, axes.center(slot), axes.y(values[name]), FIGURE_COLORS[name])
            for name in figures
            if name in values
        )
    return ChartPoint(
        series=window,
        slot=slot,
        x=round(x, 2),
        width=round(axes.slot_width, 2),
        current=window.window_start == page.window_start,
        tooltip=window_tooltip(window, page.kind),
        bar=bar,
        band=band,
        dots=dots,
    )


def _lines(figures: list[str], values: dict[int, dict[str, float]], axes: Axes) -> list[Line]:
    """One polyline per figure and run of consecutive windows that have it: a line across a
    missing window would invent the values in between (its dots still show a lone window)."""
    lines = []
    for name in figures:
        runs: list[list[str]] = []
        previous = None
        for slot in sorted(values):
            if name not in values[slot]:
                continue
            if previous is None or slot != previous + 1:
                runs.append([])
            runs[-1].append(f"{axes.center(slot)},{axes.y(values[slot][name])}")
            previous = slot
        lines += [Line(name, " ".join(run), FIGURE_COLORS[name]) for run in runs if len(run) > 1]
    return lines


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


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "window", "window_start_time", "kind", "figure", "tenant"]
    list_filter = ["window", "kind", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name"]
    ordering = ["-window_start"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "name", "tenant", "kind", "unit", "window", "window_start_time", "window_end_time",
            "points", "computed_at",
        ]}),
        ("Figures", {"fields": [
            "delta", "last", "count", "sum", "min", "max", "mean", "p50", "p95", "p99", "resets",
            "notes_json",
        ]}),
        ("Series", {"fields": [
            "series_key", "temporality", "monotonic", "scope", "resource_json", "attributes_json",
        ]}),
        ("Distribution and exemplars", {"fields": ["buckets_json", "exemplars_json"]}),
    ]  # fmt: skip
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    @admin.display(description="window start", ordering="window_start")
    def window_start_time(self, series: MetricSeries) -> str:
        return format_window(series.window_start)

    @admin.display(description="window end", ordering="window_end")
    def window_end_time(self, series: MetricSeries) -> str:
        return format_window(series.window_end)

    @admin.display(description="figure")
    def figure(self, series: MetricSeries) -> str:
        return main_figure(series)

    @admin.display(description="resource")
    def resource_json(self, series: MetricSeries) -> str:
        return pretty_json(series.resource)

    @admin.display(description="attributes")
    def attributes_json(self, series: MetricSeries) -> str:
        return pretty_json(series.attributes)

    @admin.display(description="buckets")
    def buckets_json(self, series: MetricSeries) -> str:
        return pretty_json(series.buckets)

    @admin.display(description="exemplars")
    def exemplars_json(self, series: MetricSeries) -> str:
        return pretty_json(series.exemplars)

    @admin.display(description="notes")
    def notes_json(self, series: MetricSeries) -> str:
        return pretty_json(series.notes)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        series = self.get_object(request, unquote(object_id))
        if series is not None and self.has_view_permission(request, series):
            extra_context = {**(extra_context or {}), "series_chart": series_chart_context(series)}
        return super().change_view(request, object_id, form_url, extra_context)
