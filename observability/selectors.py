"""Reads of the observability app; every one is scoped to a tenant."""

from __future__ import annotations

import json
import re
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from core.models import Tenant
from observability.models import MetricSeries, Span, TelemetryCorrelation, TraceRecord

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


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
        found = found.filter(start_ns__gte=_unix_ns(since))
    return found


def _unix_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, within the int64 that spans are stored in (years 1677 to
    2262): a time beyond that range is as good as its end, and the database refuses more."""
    return max(-(2**63), min(2**63 - 1, int(moment.timestamp() * 1e9)))


def is_trace_id(text: str) -> bool:
    """32 hexadecimal digits, in either case (OTLP JSON's and the W3C's spelling)."""
    return _TRACE_ID.fullmatch(text) is not None


def trace(*, tenant: Tenant, trace_id: str) -> TraceRecord | None:
    """The tenant's trace; None for an id that is not one (nothing else reaches the query:
    a NUL, say, which PostgreSQL refuses)."""
    if not is_trace_id(trace_id):
        return None
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
