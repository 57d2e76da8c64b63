"""The operator's console for telemetry: batches as received, spans, traces and metric series.

Everything here is read-only: these rows are written by ingestion, and an edit by hand would make
a TraceRecord disagree with its spans. A trace's page draws its spans as a waterfall and a metric
series' page the same series over its recent windows, in inline SVG built on the server (no
JavaScript): observability.charts computes the geometry with core.charts, a template draws it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Length
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from core.admin import ReadOnlyMixin, fieldset_fields, pretty_json
from core.formats import format_count, format_moment, format_ns, format_value
from observability import selectors
from observability.charts import (
    amount,
    compact_json,
    series_chart_context,
    waterfall_context,
)
from observability.models import (
    MetricPoint,
    MetricSeries,
    Span,
    TelemetryBatch,
    TelemetryCorrelation,
    TraceRecord,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class RecordPk(TypedDict):
        record_pk: int | None  # trace_record_pk()

    class PayloadBytes(TypedDict):
        payload_bytes: int


from observability.vocabulary import (
    ERROR_SEVERITY,
    SEVERITY_ORDER,
    STATUS_CODES,
    span_kind_name,
    status_name,
)


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
    fields = readonly_fields = (
        "trace_id", "tenant", "root_name", "root_service", "services_list", "span_count",
        "error_count", "status", "duration", "start_time", "end_time", "updated",
    )  # fmt: skip

    @admin.display(description="services")
    def services_list(self, record: TraceRecord) -> str:
        return ", ".join(record.services)

    @admin.display(description="duration (ms)", ordering=F("end_ns") - F("start_ns"))
    def duration(self, record: TraceRecord) -> str:
        return f"{record.duration_ms:,.3f}"

    @admin.display(description="start", ordering="start_ns")
    def start_time(self, record: TraceRecord) -> str:
        return format_ns(record.start_ns)

    @admin.display(description="end", ordering="end_ns")
    def end_time(self, record: TraceRecord) -> str:
        return format_ns(record.end_ns)

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
    fields = readonly_fields = (
        "name", "tenant", "trace", "span_id", "parent_span_id", "kind_name", "service", "scope",
        "scope_version", "start_time", "end_time", "duration", "status", "status_message",
        "attributes_json", "resource_json", "scope_attributes_json", "events_json", "links_json",
    )  # fmt: skip

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(record_pk=trace_record_pk())

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, span: WithAnnotations[Span, RecordPk]) -> str:
        if span.record_pk is None:
            return span.trace_id
        url = reverse("admin:observability_tracerecord_change", args=[span.record_pk])
        return format_html('<a href="{}">{}</a>', url, span.trace_id)

    @admin.display(description="duration (ms)", ordering=F("end_ns") - F("start_ns"))
    def duration(self, span: Span) -> str:
        return f"{span.duration_ms:,.3f}"

    @admin.display(description="status", ordering="status_code")
    def status(self, span: Span) -> str:
        return status_name(span.status_code)

    @admin.display(description="kind")
    def kind_name(self, span: Span) -> str:
        return span_kind_name(span.kind)

    @admin.display(description="start", ordering="start_ns")
    def start_time(self, span: Span) -> str:
        return format_ns(span.start_ns)

    @admin.display(description="end", ordering="end_ns")
    def end_time(self, span: Span) -> str:
        return format_ns(span.end_ns)

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
    fields = readonly_fields = (
        "id", "tenant", "signal", "items", "rejected", "size", "received_at",
    )  # fmt: skip

    def get_queryset(self, request):
        return (
            super().get_queryset(request).defer("payload").annotate(payload_bytes=Length("payload"))
        )

    @admin.display(description="payload size", ordering="payload_bytes")
    def size(self, batch: WithAnnotations[TelemetryBatch, PayloadBytes]) -> str:
        return f"{batch.payload_bytes:,} bytes"


# A trace's correlated telemetry: TelemetryCorrelationWorker's snapshot of the trace (its log
# records, the metric exemplars pointing at it, the platform events that named it), shown below
# the spans on the trace's page, and the snapshots themselves as a read-only list.

LOG_BODY_CHARS = 1000  # a structured body, which the worker does not clip, as compact JSON


def shown_of(shown: int, total: int) -> str:
    """A section's count: "3 of 12 shown" when the snapshot keeps only the newest."""
    return f"{shown:,} of {total:,} shown" if shown < total else f"{total:,}"


def correlated_log(entry: dict) -> dict:
    body = entry.get("body")
    number = entry.get("severityNumber") or 0
    return {
        "time": format_ns(entry["timeUnixNano"]) if entry.get("timeUnixNano") else "-",
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
        "time": format_ns(entry["timeUnixNano"]) if entry.get("timeUnixNano") else "-",
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
    fields = readonly_fields = (
        "trace_link", "tenant", "log_count", "exemplar_count", "event_count", "created",
        "updated", "trace_json", "logs_json", "exemplars_json", "events_json",
    )  # fmt: skip

    def get_queryset(self, request):
        found = super().get_queryset(request).annotate(record_pk=trace_record_pk())
        # The snapshot's JSON (up to 20 log bodies, 50 exemplars and 50 events a row) stays in
        # the database for the list, which shows counts; a snapshot's page loads it as it shows it.
        return found.defer("trace", "logs", "exemplars", "events")

    @admin.display(description="trace id", ordering="trace_id")
    def trace_link(self, row: WithAnnotations[TelemetryCorrelation, RecordPk]) -> str:
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
# series over its recent windows (observability.charts.series_chart computes the geometry,
# templates/admin/observability/metricseries/change_form.html draws it).

Kind = MetricPoint.Kind


def main_figure(series: MetricSeries) -> str:
    """The one figure the list shows for a window, by kind."""
    unit = series.unit
    if series.kind == Kind.SUM:
        return f"Δ {amount(series.delta, unit)}"
    if series.kind == Kind.GAUGE:
        return f"mean {amount(series.mean, unit)}, last {amount(series.last, unit)}"
    if series.kind == Kind.HISTOGRAM:
        return f"count {format_count(series.count)}, p95 {amount(series.p95, unit)}"
    return f"count {format_count(series.count)}"


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
    readonly_fields = fieldset_fields(fieldsets)

    @admin.display(description="window start", ordering="window_start")
    def window_start_time(self, series: MetricSeries) -> str:
        return format_moment(series.window_start)

    @admin.display(description="window end", ordering="window_end")
    def window_end_time(self, series: MetricSeries) -> str:
        return format_moment(series.window_end)

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
