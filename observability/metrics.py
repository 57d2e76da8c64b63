"""OTLP metric data points into MetricPoint rows, as received, in bulk.

Aggregation into MetricSeries is MetricAggregationWorker's; this only stores what arrived,
once per (tenant, series, time), and remembers when, so that late points can re-open their
window.

A measured value that is not a finite number (NaN, ±Infinity: a point's value, sum, min or
max, a quantile's value, an exemplar's value, a zero threshold) is stored as no value, as a
point flagged NO_RECORDED_VALUE has none. OTLP allows them in doubles, but what they mean
here is "no number": Prometheus clients send NaN for a quantile or a ratio without
observations, and each window aggregates sums, means, increases and percentiles, which one
NaN or infinity would make NaN or infinite for the whole window. (Prometheus keeps them as
samples, and its sums and averages over them are NaN.) SQLite could not store a NaN anyway.
So is a value beyond ±otlp.MAX_MAGNITUDE (1e300), such as the ±1.8e308 of a "no value yet"
sentinel (Java's Double.MAX_VALUE): a window's sum of two of those overflows, and PostgreSQL
fails the whole window's statement on an overflow where SQLite gives an infinity.
Names, units and scopes are stored as observability.traces.text has them (NUL as U+FFFD).
"""

from __future__ import annotations

import hashlib
import json

from core import bulk
from core.envelope import TenantId
from observability.models import MetricExemplar, MetricPoint
from observability.otlp import MAX_MAGNITUDE
from observability.traces import attributes, text

Kind, Temporality = MetricPoint.Kind, MetricPoint.Temporality
POINT_COLUMNS = [
    "tenant_id", "name", "unit", "kind", "temporality", "monotonic", "series_key", "resource",
    "scope", "attributes", "start_ns", "time_ns", "value", "count", "sum", "min", "max",
    "buckets", "exemplars", "received_at",
]  # fmt: skip


def series_key(name: str, resource: dict, scope: str, point_attributes: dict) -> str:
    identity = json.dumps([name, resource, scope, point_attributes], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


def points_of(tenant_id: TenantId, request) -> list[MetricPoint]:
    rows = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = text(scope_metrics.scope.name)
            for metric in scope_metrics.metrics:
                rows += _points(tenant_id, metric, resource, scope)
    return rows


def _points(tenant_id: TenantId, metric, resource: dict, scope: str) -> list[MetricPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    data = getattr(metric, kind)
    common = {
        "tenant_id": tenant_id,
        "name": text(metric.name),
        "unit": text(metric.unit[:64]),
        "kind": _KINDS[kind],
        "temporality": getattr(data, "aggregation_temporality", Temporality.UNSPECIFIED),
        "monotonic": getattr(data, "is_monotonic", False),
        "resource": resource,
        "scope": scope[:200],
    }
    return [_point(common, kind, point) for point in data.data_points]


_KINDS = {
    "gauge": Kind.GAUGE,
    "sum": Kind.SUM,
    "histogram": Kind.HISTOGRAM,
    "exponential_histogram": Kind.EXPONENTIAL_HISTOGRAM,
    "summary": Kind.SUMMARY,
}


def _point(common: dict, kind: str, point) -> MetricPoint:
    point_attributes = attributes(point.attributes)
    row = MetricPoint(
        **common,
        series_key=series_key(
            common["name"], common["resource"], common["scope"], point_attributes
        ),
        attributes=point_attributes,
        start_ns=point.start_time_unix_nano,
        time_ns=point.time_unix_nano,
        exemplars=[_exemplar(e) for e in getattr(point, "exemplars", ())],
    )
    _VALUES[kind](row, point)
    return row


def _number(row: MetricPoint, point) -> None:
    row.value = _number_value(point)


def measured(value: float | None) -> float | None:
    """A measured value as stored: None when it is not a number within ±MAX_MAGNITUDE (a NaN,
    an infinity, an overflowing sentinel: module docstring)."""
    return value if value is not None and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE else None


def _number_value(point) -> float | None:
    which = point.WhichOneof("value")
    return measured(float(getattr(point, which))) if which else None


def _histogram(row: MetricPoint, point) -> None:
    _counts(row, point)
    row.buckets = {"bounds": list(point.explicit_bounds), "counts": list(point.bucket_counts)}


def _exponential(row: MetricPoint, point) -> None:
    _counts(row, point)
    row.buckets = {
        "scale": point.scale,
        "zeroCount": point.zero_count,
        "zeroThreshold": measured(point.zero_threshold),
        "positive": {"offset": point.positive.offset, "counts": list(point.positive.bucket_counts)},
        "negative": {"offset": point.negative.offset, "counts": list(point.negative.bucket_counts)},
    }


def _summary(row: MetricPoint, point) -> None:
    row.count, row.sum = point.count, measured(point.sum)
    row.buckets = {"quantiles": [[q.quantile, measured(q.value)] for q in point.quantile_values]}


def _counts(row: MetricPoint, point) -> None:
    row.count = point.count
    row.sum = measured(point.sum) if point.HasField("sum") else None
    row.min = measured(point.min) if point.HasField("min") else None
    row.max = measured(point.max) if point.HasField("max") else None


_VALUES = {
    "gauge": _number,
    "sum": _number,
    "histogram": _histogram,
    "exponential_histogram": _exponential,
    "summary": _summary,
}


def _exemplar(exemplar) -> dict:
    return {
        "traceId": exemplar.trace_id.hex(),
        "spanId": exemplar.span_id.hex(),
        "value": _number_value(exemplar),
        "timeUnixNano": exemplar.time_unix_nano,
        "attributes": attributes(exemplar.filtered_attributes),
    }


def store(tenant_id: TenantId, request) -> set[str]:
    """Store the batch's points that are not stored yet, and the exemplars of the new ones
    that name a trace; returns the traces they name."""
    rows = list({(r.series_key, r.time_ns): r for r in points_of(tenant_id, request)}.values())
    if not rows:
        return set()
    stored = set(
        MetricPoint.objects.filter(
            tenant_id=tenant_id,
            series_key__in={r.series_key for r in rows},
            time_ns__gte=min(r.time_ns for r in rows),
            time_ns__lte=max(r.time_ns for r in rows),
        ).values_list("series_key", "time_ns")
    )
    new = [r for r in rows if (r.series_key, r.time_ns) not in stored]
    bulk.insert(MetricPoint, new, columns=POINT_COLUMNS)
    exemplars = [e for point in new for e in _linked_exemplars(point)]
    MetricExemplar.objects.bulk_create(exemplars, batch_size=1000)
    return {e.trace_id for e in exemplars}


def _linked_exemplars(point: MetricPoint) -> list[MetricExemplar]:
    """The exemplars of a point that name a trace (validation cleared invalid ids)."""
    return [
        MetricExemplar(
            tenant_id=point.tenant_id,
            trace_id=e["traceId"],
            span_id=e["spanId"],
            name=point.name,
            unit=point.unit,
            series_key=point.series_key,
            value=e["value"],
            time_ns=e["timeUnixNano"] or point.time_ns,
            point_time_ns=point.time_ns,
        )
        for e in point.exemplars
        if e["traceId"]
    ]
