"""Telemetry as received (TelemetryBatch), as stored and projected (Span and TraceRecord,
MetricPoint and MetricSeries, LogRecord), and as stitched by trace (MetricExemplar and
CorrelatedEvent, which TelemetryCorrelation snapshots read)."""

from __future__ import annotations

import uuid
import zlib

from django.db import models
from django.utils import timezone

from core.formats import format_moment
from core.models import Tenant, TenantKey


class TelemetryBatch(models.Model):
    """One accepted OTLP/HTTP request, stored as decoded and validated, before any parsing
    into views: the request returns once this row and its message are committed."""

    class Signal(models.TextChoices):
        TRACES = "traces"
        METRICS = "metrics"
        LOGS = "logs"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    signal = models.CharField(max_length=8, choices=Signal.choices)

    class Encoding(models.TextChoices):
        PROTOBUF = "protobuf"
        JSON = "json"

    # The valid part of the request: the body as received when every item in it was valid
    # (for JSON, only when observability.otlp_json vouches for it), else the valid items
    # re-encoded as OTLP protobuf.
    payload = models.BinaryField()
    encoding = models.CharField(max_length=8, choices=Encoding.choices, default="protobuf")
    # Payloads are stored compressed (zlib, or the request's own gzip body): a 512-span JSON
    # request is about 370 kB, and writing that into the database cost more than decoding it.
    compressed = models.BooleanField(default=False)
    items = models.PositiveIntegerField()
    rejected = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "telemetry batches"
        indexes = [models.Index(fields=["tenant", "received_at"])]

    def __str__(self) -> str:
        return f"{self.signal} batch of {self.items} ({self.tenant_id})"

    def body(self) -> bytes:
        """The payload as it was decoded and checked at the edge."""
        stored = bytes(self.payload)
        # wbits 47: a zlib or a gzip stream, by its header.
        return zlib.decompress(stored, 47) if self.compressed else stored


class IngestRate(models.Model):
    """How many OTLP requests a tenant made in the current second (observability.load): one
    row per tenant, counted by one upsert per request, exact across processes."""

    tenant = models.OneToOneField(Tenant, models.CASCADE, primary_key=True, related_name="+")
    second = models.BigIntegerField()
    requests = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.requests} requests in second {self.second}"


class Span(models.Model):
    """One span, normalised; unique per (tenant, traceId, spanId), so a re-sent batch adds
    nothing."""

    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=500)
    kind = models.PositiveSmallIntegerField(default=0)
    service = models.CharField(max_length=200, blank=True)
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    status_code = models.PositiveSmallIntegerField(default=0)  # 0 unset, 1 ok, 2 error
    status_message = models.TextField(blank=True)
    attributes = models.JSONField(default=dict)
    resource = models.JSONField(default=dict)
    # The instrumentation scope: its name, version and attributes.
    scope = models.CharField(max_length=200, blank=True)
    scope_version = models.CharField(max_length=100, blank=True)
    scope_attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    links = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "trace_id", "span_id"], name="span_once_per_trace"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id}/{self.span_id})"

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def is_error(self) -> bool:
        return self.status_code == 2


class TraceRecord(models.Model):
    """The view of one trace. Each batch's new spans are merged into it (observability.traces:
    counts added, earliest start and root, latest end, services united)."""

    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    # The root: the earliest span without a parent (empty while none has arrived).
    root_span_id = models.CharField(max_length=16, blank=True)
    root_name = models.CharField(max_length=500, blank=True)
    root_service = models.CharField(max_length=200, blank=True)
    root_start_ns = models.BigIntegerField(default=0)
    services = models.JSONField(default=list)
    span_count = models.PositiveIntegerField()
    error_count = models.PositiveIntegerField()
    start_ns = models.BigIntegerField()
    end_ns = models.BigIntegerField()
    status = models.CharField(max_length=8)  # "ok" or "error"
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "trace_id"], name="trace_record_once")
        ]
        indexes = [models.Index(fields=["tenant", "start_ns"])]

    def __str__(self) -> str:
        return f"{self.root_name or '?'} ({self.trace_id})"

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class MetricPoint(models.Model):
    """One OTLP data point as received, unique per (tenant, series, time), so a re-sent batch
    adds nothing. MetricAggregationWorker rolls these into MetricSeries."""

    class Kind(models.IntegerChoices):
        GAUGE = 1
        SUM = 2
        HISTOGRAM = 3
        EXPONENTIAL_HISTOGRAM = 4
        SUMMARY = 5

    class Temporality(models.IntegerChoices):
        UNSPECIFIED = 0
        DELTA = 1
        CUMULATIVE = 2

    tenant = TenantKey()
    name = models.CharField(max_length=255)
    unit = models.CharField(max_length=64, blank=True)
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    temporality = models.PositiveSmallIntegerField(choices=Temporality.choices, default=0)
    monotonic = models.BooleanField(default=False)
    # sha256 of (name, resource attributes, scope, point attributes): one time series.
    series_key = models.CharField(max_length=64)
    resource = models.JSONField(default=dict)
    scope = models.CharField(max_length=200, blank=True)
    attributes = models.JSONField(default=dict)
    start_ns = models.BigIntegerField(default=0)
    time_ns = models.BigIntegerField()
    value = models.FloatField(null=True)  # gauge and sum points
    count = models.BigIntegerField(null=True)  # histograms and summaries
    sum = models.FloatField(null=True)
    min = models.FloatField(null=True)
    max = models.FloatField(null=True)
    # Histogram: {"bounds": [...], "counts": [...]}; exponential: {"scale", "zeroCount",
    # "positive": {"offset", "counts"}, "negative": {...}}; summary: {"quantiles": [[q, v]]}.
    buckets = models.JSONField(null=True)
    exemplars = models.JSONField(default=list)  # [{"traceId", "spanId", "value", "timeUnixNano"}]
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "series_key", "time_ns"], name="metric_point_once"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "time_ns"]),
            models.Index(fields=["tenant", "received_at"]),  # late points of a tenant
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.time_ns}"


class MetricSeries(models.Model):
    """One series (MetricPoint.series_key: tenant + metric + resource + scope + attributes)
    rolled up over one window of 1m, 5m or 1h by MetricAggregationWorker.

    Unique per (tenant, series_key, window, window_start): re-running a window upserts the same
    rows. `computed_at` is when the window was last aggregated; a point received after it
    (MetricPoint.received_at) makes the window aggregate again. See observability.aggregation.
    """

    class Window(models.TextChoices):
        MINUTE = "1m"
        FIVE_MINUTES = "5m"
        HOUR = "1h"

    tenant = TenantKey()
    series_key = models.CharField(max_length=64)
    window = models.CharField(max_length=2, choices=Window.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # The series' identity, as its newest point in the window has it.
    name = models.CharField(max_length=255)
    unit = models.CharField(max_length=64, blank=True)
    kind = models.PositiveSmallIntegerField(choices=MetricPoint.Kind.choices)
    temporality = models.PositiveSmallIntegerField(choices=MetricPoint.Temporality.choices)
    monotonic = models.BooleanField(default=False)
    resource = models.JSONField(default=dict)
    scope = models.CharField(max_length=200, blank=True)
    attributes = models.JSONField(default=dict)
    points = models.PositiveIntegerField()  # raw points with a time in the window
    # Sums: the increase over the window (cumulative points turned into deltas); `last` is the
    # newest value of a gauge or of a cumulative sum.
    delta = models.FloatField(null=True)
    last = models.FloatField(null=True)
    # Gauges: over the points' values. Histograms and summaries: observations in the window.
    count = models.BigIntegerField(null=True)
    sum = models.FloatField(null=True)
    min = models.FloatField(null=True)
    max = models.FloatField(null=True)
    mean = models.FloatField(null=True)
    # Histograms: {"bounds": [...], "counts": [...]} merged; summaries: {"quantiles": [[q, v]]}.
    buckets = models.JSONField(null=True)
    p50 = models.FloatField(null=True)
    p95 = models.FloatField(null=True)
    p99 = models.FloatField(null=True)
    exemplars = models.JSONField(default=list)  # up to 10, newest first
    resets = models.PositiveIntegerField(default=0)  # cumulative runs that (re)started
    notes = models.JSONField(default=dict)  # {"gaps": n, "overlaps": n, "boundsChanged": n}
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "metric series"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "series_key", "window", "window_start"],
                name="metric_series_once_per_window",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "window", "window_start"]),
            models.Index(fields=["tenant", "name", "window", "window_start"]),
            models.Index(fields=["tenant", "window", "computed_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.window} @ {format_moment(self.window_start)}"


class LogRecord(models.Model):
    """One OTLP log record. Records carry no id of their own: `record_key` is a digest of the
    whole record with its resource and scope, unique per tenant, so a re-sent batch adds
    nothing."""

    tenant = TenantKey()
    record_key = models.CharField(max_length=64)
    time_ns = models.BigIntegerField(default=0)
    observed_ns = models.BigIntegerField(default=0)
    severity_number = models.PositiveSmallIntegerField(default=0)
    severity_text = models.CharField(max_length=32, blank=True)
    body = models.JSONField(null=True)
    attributes = models.JSONField(default=dict)
    resource = models.JSONField(default=dict)
    service = models.CharField(max_length=200, blank=True)
    scope = models.CharField(max_length=200, blank=True)
    event_name = models.CharField(max_length=200, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "record_key"], name="log_record_once")
        ]
        indexes = [
            models.Index(fields=["tenant", "trace_id"]),
            models.Index(fields=["tenant", "time_ns"]),
            # The errors, newest first (GET /api/logs?severity=ERROR): the query an operator on
            # call makes, fast however rare errors are among the records, for the cost of an
            # index entry per ERROR or FATAL record only.
            models.Index(
                fields=["tenant", "time_ns"],
                name="log_errors",
                condition=models.Q(severity_number__gte=17),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.severity_text or self.severity_number} {str(self.body)[:60]}"


class MetricExemplar(models.Model):
    """An exemplar of a stored MetricPoint that names a trace, stored with its point: how a
    trace finds the metrics it shows up in (MetricPoint.exemplars keeps them for aggregation,
    where no index could look them up by trace)."""

    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=255)
    unit = models.CharField(max_length=64, blank=True)
    series_key = models.CharField(max_length=64)
    value = models.FloatField(null=True)
    time_ns = models.BigIntegerField()  # the exemplar's own time, or its point's when unset
    point_time_ns = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "trace_id"]),
            models.Index(fields=["tenant", "point_time_ns"]),  # retention
        ]

    def __str__(self) -> str:
        return f"{self.name} exemplar of {self.trace_id}"


class CorrelatedEvent(models.Model):
    """A public platform event that named a trace (data.traceId or data.traceIds), as
    TelemetryCorrelationWorker handled it: the events part of a trace's correlation."""

    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    event_id = models.UUIDField()
    type = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=200, blank=True)
    signal = models.CharField(max_length=32, blank=True)  # RuntimeSignalDetected's kind

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "trace_id", "event_id"], name="correlated_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} named {self.trace_id}"


class TelemetryCorrelation(models.Model):
    """Everything the platform holds about one trace, stitched by traceId: the TraceRecord
    summary, its log records, the metric exemplars pointing at it and the platform events that
    named it. One row per (tenant, traceId), recomputed from those stores by
    TelemetryCorrelationWorker whenever an event names the trace (observability.correlation).

    The JSON shapes are the worker's snapshot as an operator reads it; the counts are columns
    so that lists can filter and sort on them. `updated` is when the content last changed:
    recomputing an unchanged snapshot writes nothing."""

    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    # {"rootName", "rootService", "services", "spanCount", "errorCount", "status",
    #  "startTimeUnixNano", "endTimeUnixNano", "durationMs", "errorSpans": [...]}, or null
    # while no span of the trace is stored.
    trace = models.JSONField(null=True)
    log_count = models.PositiveIntegerField(default=0)
    # {"bySeverity": {"ERROR": n, ...}, "latest": [{"timeUnixNano", "severity", ...}]}
    logs = models.JSONField(default=dict)
    exemplar_count = models.PositiveIntegerField(default=0)
    exemplars = models.JSONField(default=list)  # newest first: [{"metric", "spanId", ...}]
    event_count = models.PositiveIntegerField(default=0)
    events = models.JSONField(default=list)  # newest first: [{"eventId", "type", ...}]
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "trace_id"], name="telemetry_correlation_once"
            )
        ]
        indexes = [models.Index(fields=["tenant", "updated"])]

    def __str__(self) -> str:
        return f"correlation of {self.trace_id}"
