"""The operator's console for telemetry: batches as received, spans, traces, log records and
metric series.

Everything here is read-only: these rows are written by ingestion, and an edit by hand would make
a TraceRecord disagree with its spans. A trace's page draws its spans as a waterfall and a metric
series' page the same series over its recent windows, in inline SVG built on the server (no
JavaScript): observability.charts computes the geometry with core.charts, a template draws it.

On call, every id is a link to where it leads: a trace's spans, log records, exemplars and
platform events to their pages (an exemplar to the metric window it was recorded in), a metric
window's exemplars to their traces, a log record to its trace and span. The log records have a
list with the filters of GET /api/logs, read by the same serializer and selector.

Lists fit a laptop's 1440 px: long values are clipped (`clipped`), whole in their tooltip.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Length
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from core.admin import (
    ReadOnlyMixin,
    fieldset_fields,
    moment_cell,
    pretty_json,
    truncated,
    under,
)
from core.formats import (
    format_count,
    format_moment,
    format_ms,
    format_ns,
    format_value,
    ns_to_datetime,
)
from core.models import Event
from observability import selectors
from observability.aggregation import WINDOWS
from observability.api import LogFilters
from observability.charts import (
    BUCKET_CHART_HEIGHT,
    amount,
    compact_json,
    histogram_buckets,
    series_chart_context,
    summary_quantiles,
    waterfall_context,
)
from observability.models import (
    LogRecord,
    MetricPoint,
    MetricSeries,
    Span,
    TelemetryBatch,
    TelemetryCorrelation,
    TraceRecord,
)
from observability.vocabulary import (
    ERROR_SEVERITY,
    SEVERITIES,
    SEVERITY_ORDER,
    STATUS_CODES,
    severity_name,
    span_kind_name,
    status_name,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class RecordPk(TypedDict):
        record_pk: int | None  # trace_record_pk()

    class PayloadBytes(TypedDict):
        payload_bytes: int


LIST_CHARS = 60  # of a name in a list before it is clipped
TOOLTIP_CHARS = 2000  # of a clipped value in its tooltip


def clipped(text: str, length: int = LIST_CHARS, *, nowrap: bool = False) -> str:
    """A value for a list: cut to `length` characters, whole (up to TOOLTIP_CHARS) in its
    tooltip. A long one may break anywhere (the app's change_list.html), so that no unbroken
    token (a URL, a query string) widens the table past the page; a short one (`nowrap`: a
    service's name) keeps to one line rather than be squeezed to a letter a line."""
    css = "nowrap" if nowrap else "clip"
    if len(text) <= length:
        return format_html('<span class="{}">{}</span>', css, text)
    return format_html(
        '<span class="{}" title="{}">{}</span>',
        css,
        truncated(text, TOOLTIP_CHARS),
        truncated(text, length),
    )


def trace_url(record_pk: int) -> str:
    return reverse("admin:observability_tracerecord_change", args=[record_pk])


def span_url(span_pk: int) -> str:
    return reverse("admin:observability_span_change", args=[span_pk])


def stored_span_url(tenant_id: Any, trace_id: str, span_id: str) -> str:
    """The page of a tenant's span, or "" when it is not stored (not ingested, or gone)."""
    found = Span.objects.filter(tenant_id=tenant_id, trace_id=trace_id, span_id=span_id)
    pk = found.values_list("pk", flat=True).first()
    return span_url(pk) if pk else ""


def log_url(record_pk: int) -> str:
    return reverse("admin:observability_logrecord_change", args=[record_pk])


def logs_url(**filters: str) -> str:
    """The list of log records with GET /api/logs' filters: logs_url(traceId=...)."""
    return f"{reverse('admin:observability_logrecord_changelist')}?{urlencode(filters)}"


def linked(url: str, text: str) -> str:
    """`text` linked to `url`, or plain where there is nowhere to go."""
    return format_html('<a href="{}">{}</a>', url, text) if url else text


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
    # At 1440 px, beside the filters: the tenant is a filter, not a column; the start free to
    # wrap between its date and its time of day; the spans in error under the spans, which
    # leaves the root span and the services their room.
    list_display = [
        "trace_id", "start_cell", "root", "services_list", "spans_cell", "status", "duration",
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

    @admin.display(description="root span", ordering="root_name")
    def root(self, record: TraceRecord) -> str:
        return clipped(record.root_name)

    @admin.display(description="services")
    def services_list(self, record: TraceRecord) -> str:
        return clipped(", ".join(record.services), 40)

    @admin.display(description="spans", ordering="span_count")
    def spans_cell(self, record: TraceRecord) -> str:
        """The spans, and under them how many are in error, when any is."""
        spans = format_count(record.span_count)
        if not record.error_count:
            return spans
        return under(spans, f"{format_count(record.error_count)} in error")

    @admin.display(description="duration", ordering=F("end_ns") - F("start_ns"))
    def duration(self, record: TraceRecord) -> str:
        return format_ms(record.duration_ms)

    @admin.display(description="start", ordering="start_ns")
    def start_time(self, record: TraceRecord) -> str:
        return format_ns(record.start_ns)

    @admin.display(description="start", ordering="start_ns")
    def start_cell(self, record: TraceRecord) -> str:
        start = ns_to_datetime(record.start_ns)
        return format_ns(record.start_ns) if start is None else moment_cell(start)

    @admin.display(description="end", ordering="end_ns")
    def end_time(self, record: TraceRecord) -> str:
        return format_ns(record.end_ns)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, unquote(object_id))
        if record is not None and self.has_view_permission(request, record):
            waterfall = waterfall_context(record)
            spans = {row.span.span_id: row.span.pk for row in waterfall["rows"]}
            extra_context = {
                **(extra_context or {}),
                "waterfall": waterfall,
                "correlation": correlation_context(record, span_pks=spans),
                "trace_logs_url": logs_url(traceId=record.trace_id),
            }
        return super().change_view(request, object_id, form_url, extra_context)


def trace_record_pk() -> Subquery:
    """The pk of the TraceRecord of a row's trace, of the row's own tenant (another tenant may
    have a trace with the same id), for links to the trace's page."""
    record = TraceRecord.objects.filter(tenant=OuterRef("tenant"), trace_id=OuterRef("trace_id"))
    return Subquery(record.values("pk")[:1])


SPAN_LOGS = 20  # the newest log records of a span, on its page


@admin.register(Span)
class SpanAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # At 1440 px, beside the filters: a span id is found by the search, the tenant by a filter.
    list_display = ["span_name", "service_name", "trace", "start_time", "duration", "status"]
    list_filter = [StatusCodeFilter, "service", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=trace_id", "=span_id", "name"]
    ordering = ["-start_ns"]
    show_full_result_count = False
    fields = readonly_fields = (
        "name", "tenant", "trace", "span_id", "parent", "kind_name", "service", "scope",
        "scope_version", "start_time", "end_time", "duration", "status", "status_message",
        "span_logs", "attributes_json", "resource_json", "scope_attributes_json", "events_json",
        "links_json",
    )  # fmt: skip

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(record_pk=trace_record_pk())

    @admin.display(description="name", ordering="name")
    def span_name(self, span: Span) -> str:
        return clipped(span.name or "(no name)")

    @admin.display(description="service", ordering="service")
    def service_name(self, span: Span) -> str:
        return clipped(span.service, 24, nowrap=True)

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, span: WithAnnotations[Span, RecordPk]) -> str:
        if span.record_pk is None:
            return span.trace_id
        return format_html('<a href="{}">{}</a>', trace_url(span.record_pk), span.trace_id)

    @admin.display(description="parent span id")
    def parent(self, span: Span) -> str:
        if not span.parent_span_id:
            return "-"
        return linked(
            stored_span_url(span.tenant_id, span.trace_id, span.parent_span_id), span.parent_span_id
        )

    @admin.display(description="duration", ordering=F("end_ns") - F("start_ns"))
    def duration(self, span: Span) -> str:
        return format_ms(span.duration_ms)

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

    @admin.display(description="log records")
    def span_logs(self, span: Span) -> str:
        """The span's own log records, newest first, each a link to its page."""
        found = LogRecord.objects.filter(
            tenant_id=span.tenant_id, trace_id=span.trace_id, span_id=span.span_id
        ).order_by("-time_ns", "-id")
        records = list(found[: SPAN_LOGS + 1])
        return render_to_string(
            "admin/observability/log_rows.html",
            {
                "logs": [stored_log(record) for record in records[:SPAN_LOGS]],
                "more": len(records) > SPAN_LOGS,
                "all_url": logs_url(traceId=span.trace_id),
                "none": "No log record names this span.",
            },
        )

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
# the spans on the trace's page with a link from each to its own page, and the snapshots
# themselves as a read-only list.

LOG_BODY_CHARS = 1000  # a structured body, which the worker does not clip, as compact JSON


def shown_of(shown: int, total: int) -> str:
    """A section's count: "3 of 12 shown" when the snapshot keeps only the newest."""
    return f"{shown:,} of {total:,} shown" if shown < total else f"{total:,}"


def body_text(body: Any) -> str:
    """An OTLP log body as a person reads it: a string as sent, anything else as JSON."""
    return body if isinstance(body, str) else compact_json(body)


def log_row(
    *, time_ns: int, number: int, text: str, service: str, span_id: str, body: Any, url: str
) -> dict:
    """A log record as a row of the trace's and a span's tables (log_rows.html)."""
    return {
        "time": format_ns(time_ns) if time_ns else "-",
        "url": url,
        "severity": severity_name(number),
        "severity_title": f"SeverityNumber {number}" + (f", severityText {text}" if text else ""),
        "is_error": number >= ERROR_SEVERITY,
        "service": service,
        "span_id": span_id,
        "body": truncated(body_text(body), LOG_BODY_CHARS),
    }


def stored_log(record: LogRecord) -> dict:
    return log_row(
        time_ns=record.time_ns or record.observed_ns,
        number=record.severity_number,
        text=record.severity_text,
        service=record.service,
        span_id=record.span_id,
        body=record.body,
        url=log_url(record.pk),
    )


def correlated_log(entry: dict, *, url: str, span_pks: Mapping[str, int]) -> dict:
    span_id = entry.get("spanId", "")
    return {
        **log_row(
            time_ns=entry.get("timeUnixNano") or 0,
            number=entry.get("severityNumber") or 0,
            text=entry.get("severityText", ""),
            service=entry.get("service", ""),
            span_id=span_id,
            body=entry.get("body"),
            url=url,
        ),
        "span_url": span_url(span_pks[span_id]) if span_id in span_pks else "",
    }


def match_log_records(entries: list[dict], rows: Iterable[tuple]) -> list[int | None]:
    """Which stored record each of the snapshot's log entries shows: the snapshot keeps no
    record id, so by what it keeps (time, span id, SeverityNumber, service). `rows` are
    (pk, time_ns, observed_ns, span_id, severity_number, service) in the snapshot's order;
    each is matched once. None for an entry whose record is gone (retention)."""
    waiting: dict[tuple, deque[int]] = defaultdict(deque)
    for pk, time_ns, observed_ns, span_id, number, service in rows:
        waiting[(time_ns or observed_ns, span_id, number, service)].append(pk)
    found = []
    for entry in entries:
        key = (
            entry.get("timeUnixNano") or 0,
            entry.get("spanId", ""),
            entry.get("severityNumber") or 0,
            entry.get("service", ""),
        )
        queue = waiting.get(key)
        found.append(queue.popleft() if queue else None)
    return found


def correlated_log_urls(record: TraceRecord, entries: list[dict]) -> list[str]:
    """The page of each log entry's record: one query, by the trace's index."""
    times = {e["timeUnixNano"] for e in entries if isinstance(e.get("timeUnixNano"), int)}
    if not times:
        return [""] * len(entries)
    rows = (
        LogRecord.objects.filter(tenant_id=record.tenant_id, trace_id=record.trace_id)
        .filter(Q(time_ns__in=times) | Q(time_ns=0, observed_ns__in=times))
        .order_by("-time_ns", "-observed_ns", "record_key")
        .values_list("pk", "time_ns", "observed_ns", "span_id", "severity_number", "service")
    )
    return [log_url(pk) if pk else "" for pk in match_log_records(entries, rows)]


def finest_window(
    windows: Iterable[tuple[int, str, str, datetime, datetime]], key: str, moment: datetime
) -> int | None:
    """Of `windows` (pk, series key, size, start, end), the smallest of series `key` that holds
    `moment`: where an exemplar's point was rolled up, read most closely."""
    holding = [
        (WINDOWS[size], pk)
        for pk, series_key, size, start, end in windows
        if series_key == key and start <= moment < end and size in WINDOWS
    ]
    return min(holding)[1] if holding else None


def exemplar_window_urls(tenant_id: Any, entries: list[dict]) -> list[str]:
    """The page of the metric window each exemplar's point was rolled up in (the finest one
    stored); "" until MetricAggregationWorker has computed it. One query."""
    wanted = []
    for entry in entries:
        key, moment = entry.get("seriesKey"), entry.get("pointTimeUnixNano")
        at = ns_to_datetime(moment) if isinstance(moment, int) else None
        wanted.append((key, at) if isinstance(key, str) and at is not None else None)
    holds = Q()
    for key, at in {w for w in wanted if w is not None}:
        holds |= Q(series_key=key, window_start__lte=at, window_end__gt=at)
    if not holds:
        return [""] * len(entries)
    windows = list(
        MetricSeries.objects.filter(holds, tenant_id=tenant_id).values_list(
            "pk", "series_key", "window", "window_start", "window_end"
        )
    )
    pks = [finest_window(windows, *w) if w else None for w in wanted]
    return [series_url(pk) if pk else "" for pk in pks]


def series_url(series_pk: int) -> str:
    return reverse("admin:observability_metricseries_change", args=[series_pk])


def correlated_exemplar(entry: dict, *, url: str, span_pks: Mapping[str, int]) -> dict:
    span_id = entry.get("spanId", "")
    return {
        "metric": entry.get("metric", ""),
        "url": url,
        "value": format_value(entry.get("value")),
        "unit": entry.get("unit", ""),
        "span_id": span_id,
        "span_url": span_url(span_pks[span_id]) if span_id in span_pks else "",
        "time": format_ns(entry["timeUnixNano"]) if entry.get("timeUnixNano") else "-",
    }


def stored_events(entries: list[dict]) -> set[str]:
    """The ids of the entries' events that core's event store still holds: correlated events
    outlive its retention, and a link to a deleted one would lead nowhere."""
    ids = set()
    for entry in entries:
        try:
            ids.add(uuid.UUID(str(entry.get("eventId"))))
        except ValueError:
            continue
    found = Event.objects.filter(pk__in=ids).values_list("pk", flat=True) if ids else []
    return {str(pk) for pk in found}


def correlated_event(entry: dict, *, stored: bool) -> dict:
    # occurredAt is stored as ISO text (the snapshot is JSON).
    occurred = parse_datetime(entry.get("occurredAt") or "")
    event_id = entry.get("eventId", "")
    return {
        "type": entry.get("type", ""),
        "url": reverse("admin:core_event_change", args=[event_id]) if stored else "",
        "time": format_moment(occurred),
        "source": entry.get("source", ""),
        "signal": entry.get("signal", ""),
        "event_id": event_id,
    }


def severity_counts(by_severity: dict[str, int]) -> str:
    """The count of records per severity, the most severe first: "ERROR 1, INFO 2"."""
    ranked = sorted(
        by_severity.items(),
        key=lambda item: SEVERITY_ORDER.index(item[0]) if item[0] in SEVERITY_ORDER else 99,
    )
    return ", ".join(f"{name} {count:,}" for name, count in ranked)


def correlation_context(record: TraceRecord, *, span_pks: Mapping[str, int]) -> dict:
    """What the trace page shows of the trace's correlation, read as the API reads it (by the
    record's tenant and trace id), each entry with the URL of its own page; `span_pks` are the
    pks of the trace's spans by span id. {"correlated": False} until the worker has correlated
    it."""
    found = selectors.correlation_of(record)
    if found is None:
        return {"correlated": False}
    logs = found.logs.get("latest", [])
    exemplars = found.exemplars
    stored = stored_events(found.events)
    return {
        "correlated": True,
        "pk": found.pk,
        "updated": format_moment(found.updated),
        "logs": [
            correlated_log(entry, url=url, span_pks=span_pks)
            for entry, url in zip(logs, correlated_log_urls(record, logs), strict=True)
        ],
        "log_count": shown_of(len(logs), found.log_count),
        "by_severity": severity_counts(found.logs.get("bySeverity", {})),
        "exemplars": [
            correlated_exemplar(entry, url=url, span_pks=span_pks)
            for entry, url in zip(
                exemplars, exemplar_window_urls(record.tenant_id, exemplars), strict=True
            )
        ],
        "exemplar_count": shown_of(len(exemplars), found.exemplar_count),
        "events": [
            correlated_event(entry, stored=entry.get("eventId") in stored) for entry in found.events
        ],
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


# Log records: a list with GET /api/logs' filters, each record a link to its page, which shows
# it whole with links to its trace and span.

# GET /api/logs' filters besides q, which is the admin's own search parameter too.
LOG_FILTERS = ("traceId", "service", "severity", "since")
LOG_LIST_BODY_CHARS = 100


class LogChangeList(ChangeList):
    """The admin's list, with GET /api/logs' filters in its query string: LogFilters reads them
    (LogRecordAdmin.get_search_results), so Django's own lookups leave them alone, and they stay
    in the links that sort and page the list."""

    def get_filters_params(self, params=None):
        lookups = super().get_filters_params(params)
        for name in LOG_FILTERS:
            lookups.pop(name, None)
        return lookups


def severity_choices(given: str) -> list[tuple[str, str]]:
    """The severity menu of the list's filters: (value, label), a minimum each; the value given
    (a finer level, a number) is kept as an option of its own so that the menu shows it."""
    choices = [("", "any")] + [(name, f"{name} and above") for _, _, name in SEVERITIES]
    if given and given.upper() not in {value for value, _ in choices}:
        choices.append((given, f"{given} and above"))
    return choices


@admin.register(LogRecord)
class LogRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["time", "severity", "service_name", "short_body", "trace", "tenant"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    ordering = ["-time_ns", "-id"]  # newest first, as GET /api/logs pages them
    list_per_page = 100
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "time", "observed_time", "severity_full", "service", "tenant", "trace", "span",
            "event_name", "scope",
        ]}),
        ("Body", {"fields": ["body_full"]}),
        ("Attributes", {"fields": ["attributes_json", "resource_json"]}),
        ("Stored", {"fields": ["received_at", "record_key"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(record_pk=trace_record_pk())

    def get_changelist(self, request, **kwargs):
        return LogChangeList

    def get_search_results(self, request, queryset, search_term):
        """The API's filters, parsed as the API parses them (q, the search box, among them),
        applied by the API's selector. An invalid one is said, and lists nothing rather than
        everything."""
        query = LogFilters(data=request.GET)
        if not query.is_valid():
            for name, problems in query.errors.items():
                self.message_user(request, f"{name}: {' '.join(problems)}", messages.ERROR)
            return queryset.none(), False
        return selectors.filter_logs(queryset, **query.validated_data), False

    def changelist_view(self, request, extra_context=None):
        given = {name: request.GET.get(name, "") for name in ("q", *LOG_FILTERS)}
        extra_context = {
            **(extra_context or {}),
            "log_filters": given,
            "own_params": ["q", *LOG_FILTERS],
            "severities": severity_choices(given["severity"]),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="time", ordering="time_ns")
    def time(self, record: LogRecord) -> str:
        # OTLP: a record without a time (0) has the time its collector observed it.
        return format_ns(record.time_ns or record.observed_ns)

    @admin.display(description="observed time")
    def observed_time(self, record: LogRecord) -> str:
        return format_ns(record.observed_ns) if record.observed_ns else "-"

    @admin.display(description="severity", ordering="severity_number")
    def severity(self, record: LogRecord) -> str:
        number = record.severity_number
        return format_html(
            '<span class="{}" title="SeverityNumber {}{}">{}</span>',
            "severity-error" if number >= ERROR_SEVERITY else "severity",
            number,
            f", severityText {record.severity_text}" if record.severity_text else "",
            severity_name(number),
        )

    @admin.display(description="severity")
    def severity_full(self, record: LogRecord) -> str:
        number, text = record.severity_number, record.severity_text
        given = (
            f'SeverityNumber {number}, severityText "{text}"'
            if text
            else f"SeverityNumber {number}"
        )
        return f"{severity_name(number)} ({given})"

    @admin.display(description="service", ordering="service")
    def service_name(self, record: LogRecord) -> str:
        return clipped(record.service, 24, nowrap=True)

    @admin.display(description="body")
    def short_body(self, record: LogRecord) -> str:
        return clipped(" ".join(body_text(record.body).split()), LOG_LIST_BODY_CHARS)

    @admin.display(description="body")
    def body_full(self, record: LogRecord) -> str:
        if isinstance(record.body, str):
            return format_html('<div class="log-body">{}</div>', record.body)
        return format_html(
            '<div class="log-body">{}</div>', json.dumps(record.body, indent=2, ensure_ascii=False)
        )

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, record: WithAnnotations[LogRecord, RecordPk]) -> str:
        if not record.trace_id:
            return "-"
        link = linked(trace_url(record.record_pk) if record.record_pk else "", record.trace_id)
        return format_html('<span class="trace-id">{}</span>', link)

    @admin.display(description="span id")
    def span(self, record: LogRecord) -> str:
        if not record.span_id:
            return "-"
        return linked(
            stored_span_url(record.tenant_id, record.trace_id, record.span_id), record.span_id
        )

    @admin.display(description="attributes")
    def attributes_json(self, record: LogRecord) -> str:
        return pretty_json(record.attributes)

    @admin.display(description="resource")
    def resource_json(self, record: LogRecord) -> str:
        return pretty_json(record.resource)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, unquote(object_id))
        if record is not None and record.trace_id:
            extra_context = {
                **(extra_context or {}),
                "trace_logs_url": logs_url(traceId=record.trace_id),
            }
        return super().change_view(request, object_id, form_url, extra_context)


# Metric series: a list of rolled-up windows, and a page per window with a chart of the same
# series over its recent windows (observability.charts.series_chart computes the geometry,
# templates/admin/observability/metricseries/change_form.html draws it), its figures, its
# distribution and its exemplars, each a link to its trace.

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


# A window's figures by kind, as its page lists them. A distribution's min and max are OTLP's
# optional fields, and its mean is sum / count: each is listed only when the points sent it.
WINDOW_FIGURES: dict[int, list[str]] = {
    Kind.SUM: ["delta", "last"],
    Kind.GAUGE: ["mean", "min", "max", "last", "count"],
    Kind.HISTOGRAM: ["count", "sum", "mean", "min", "max", "p50", "p95", "p99"],
    Kind.EXPONENTIAL_HISTOGRAM: ["count", "sum", "mean", "min", "max"],
    Kind.SUMMARY: ["count", "sum", "mean", "p50", "p95", "p99"],
}
COUNTS = {"count"}  # figures that are numbers of observations, not in the series' unit


def window_figures(series: MetricSeries) -> tuple[list[tuple[str, str]], list[str]]:
    """The figures of a window's kind that it has, as (name, text) in the series' unit, and the
    names of those it has not (not sent, or not known for this window)."""
    values: dict[str, float | int | None] = {
        name: getattr(series, name) for name in WINDOW_FIGURES.get(series.kind, [])
    }
    if series.kind != Kind.GAUGE and "mean" in values:  # a gauge's mean is its points'
        values["mean"] = (
            series.sum / series.count if series.sum is not None and series.count else None
        )
    shown = [
        (name, format_count(int(value)) if name in COUNTS else amount(value, series.unit))
        for name, value in values.items()
        if value is not None
    ]
    return shown, [name for name, value in values.items() if value is None]


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["series_name", "window", "window_start_time", "kind", "figure", "tenant"]
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
        ("Figures", {"fields": ["figures", "resets", "notes_json"]}),
        ("Distribution and exemplars", {"fields": ["distribution", "exemplars_table"]}),
        ("Series", {"fields": [
            "series_key", "temporality", "monotonic", "scope", "resource_json", "attributes_json",
        ]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)

    @admin.display(description="name", ordering="name")
    def series_name(self, series: MetricSeries) -> str:
        return clipped(series.name)

    @admin.display(description="window start", ordering="window_start")
    def window_start_time(self, series: MetricSeries) -> str:
        return format_moment(series.window_start)

    @admin.display(description="window end", ordering="window_end")
    def window_end_time(self, series: MetricSeries) -> str:
        return format_moment(series.window_end)

    @admin.display(description="figure")
    def figure(self, series: MetricSeries) -> str:
        return main_figure(series)

    @admin.display(description="values")
    def figures(self, series: MetricSeries) -> str:
        shown, missing = window_figures(series)
        return render_to_string(
            "admin/observability/metricseries/figures.html",
            {"figures": shown, "missing": ", ".join(missing)},
        )

    @admin.display(description="buckets")
    def distribution(self, series: MetricSeries) -> str:
        buckets = histogram_buckets(series.buckets)
        quantiles = [(q, amount(v, series.unit)) for q, v in summary_quantiles(series.buckets)]
        if not buckets and not quantiles:
            # An exponential histogram's windows keep no buckets (observability.aggregation).
            return pretty_json(series.buckets) if series.buckets else "-"
        return render_to_string(
            "admin/observability/metricseries/distribution.html",
            {
                "buckets": buckets,
                "quantiles": quantiles,
                "unit": series.unit,
                "chart_width": buckets[-1].bar.x + buckets[-1].bar.width if buckets else 0,
                "chart_height": BUCKET_CHART_HEIGHT,
            },
        )

    @admin.display(description="exemplars")
    def exemplars_table(self, series: MetricSeries) -> str:
        return render_to_string(
            "admin/observability/metricseries/exemplars.html",
            {"exemplars": window_exemplars(series)},
        )

    @admin.display(description="resource")
    def resource_json(self, series: MetricSeries) -> str:
        return pretty_json(series.resource)

    @admin.display(description="attributes")
    def attributes_json(self, series: MetricSeries) -> str:
        return pretty_json(series.attributes)

    @admin.display(description="notes")
    def notes_json(self, series: MetricSeries) -> str:
        return pretty_json(series.notes)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        series = self.get_object(request, unquote(object_id))
        if series is not None and self.has_view_permission(request, series):
            extra_context = {**(extra_context or {}), "series_chart": series_chart_context(series)}
        return super().change_view(request, object_id, form_url, extra_context)


def window_exemplars(series: MetricSeries) -> list[dict]:
    """A window's exemplars (newest first, as stored), each trace id and span id a link to its
    page where it is stored: by the window's tenant (another tenant may use the same ids)."""
    exemplars = [e for e in series.exemplars if isinstance(e, dict)]
    trace_ids = {e.get("traceId") for e in exemplars if e.get("traceId")}
    traces = (
        dict(
            TraceRecord.objects.filter(
                tenant_id=series.tenant_id, trace_id__in=trace_ids
            ).values_list("trace_id", "pk")
        )
        if trace_ids
        else {}
    )
    spans = (
        {
            (trace_id, span_id): pk
            for trace_id, span_id, pk in Span.objects.filter(
                tenant_id=series.tenant_id,
                trace_id__in=trace_ids,
                span_id__in={e.get("spanId") for e in exemplars if e.get("spanId")},
            ).values_list("trace_id", "span_id", "pk")
        }
        if trace_ids
        else {}
    )
    rows = []
    for exemplar in exemplars:
        trace_id, span_id = exemplar.get("traceId") or "", exemplar.get("spanId") or ""
        at = exemplar.get("timeUnixNano")
        rows.append(
            {
                "time": format_ns(at) if isinstance(at, int) and at else "-",
                "value": amount(exemplar.get("value"), series.unit),
                "trace_id": trace_id,
                "trace_url": trace_url(traces[trace_id]) if trace_id in traces else "",
                "span_id": span_id,
                "span_url": span_url(spans[trace_id, span_id])
                if (trace_id, span_id) in spans
                else "",
                "attributes": compact_json(exemplar.get("attributes") or {}, 500),
            }
        )
    return rows
