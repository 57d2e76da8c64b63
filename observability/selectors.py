"""Reads of the observability app; every one is scoped to a tenant."""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from core.models import Tenant
from observability.models import MetricSeries, Span, TelemetryCorrelation, TraceRecord


def traces(
    *, tenant: Tenant, service: str = "", status: str = "", since: datetime | None = None
) -> QuerySet[TraceRecord]:
    found = TraceRecord.objects.filter(tenant=tenant)
    if service:
        # Any span of the trace, not just its root: a trace "touches" every service it crossed,
        # which its record's services list holds (no scan of the spans). SQLite has no JSON
        # containment: there the list's text is searched for the quoted name.
        if connection.features.supports_json_field_contains:
            found = found.filter(services__contains=[service])
        else:
            found = found.filter(services__icontains=json.dumps(service))
    if status:
        found = found.filter(status=status)
    if since:
        found = found.filter(start_ns__gte=int(since.timestamp() * 1e9))
    return found


def trace(*, tenant: Tenant, trace_id: str) -> TraceRecord | None:
    return TraceRecord.objects.filter(tenant=tenant, trace_id=trace_id.lower()).first()


def spans_of(record: TraceRecord) -> QuerySet[Span]:
    return Span.objects.filter(tenant_id=record.tenant_id, trace_id=record.trace_id).order_by(
        "start_ns", "span_id"
    )


def correlation_of(record: TraceRecord) -> TelemetryCorrelation | None:
    """The trace's TelemetryCorrelation snapshot, None until TelemetryCorrelationWorker has
    correlated it. By the record's tenant as well as its trace id: another tenant may have a
    trace with the same id, and its snapshot is not this one's."""
    return TelemetryCorrelation.objects.filter(
        tenant_id=record.tenant_id, trace_id=record.trace_id
    ).first()


def metric_series(
    *, tenant: Tenant, name: str = "", window: str = "1m", since: datetime | None = None
) -> QuerySet[MetricSeries]:
    found = MetricSeries.objects.filter(tenant=tenant, window=window)
    if name:
        found = found.filter(name=name)
    if since:
        found = found.filter(window_start__gte=since)
    return found
