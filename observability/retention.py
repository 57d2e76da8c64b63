"""Telemetry retention: telemetry older than TELEMETRY_RETENTION_DAYS is deleted by core's
hourly prune (the `pruning` signal), tenant by tenant and CHUNK rows at a time, each delete on
an index that starts with the tenant:

- traces that started before the cutoff: their TraceRecord, spans, metric exemplars naming
  them, correlation snapshot and the events recorded as naming them;
- correlation snapshots not updated since the cutoff (traces that never had spans stored, such
  as one an incident named), with their recorded events;
- log records by their time (by the time they were observed when they carry none), metric
  points and the exemplars of points by the points' time, metric series by their window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model, Q, QuerySet

from core.envelope import TenantId
from core.models import Tenant
from observability.models import (
    CorrelatedEvent,
    LogRecord,
    MetricExemplar,
    MetricPoint,
    MetricSeries,
    Span,
    TelemetryCorrelation,
    TraceRecord,
)

CHUNK = 1000


def prune(*, now: datetime, **kwargs) -> int:
    """Delete the tenants' telemetry past retention; returns how many rows went."""
    cutoff = now - timedelta(days=settings.TELEMETRY_RETENTION_DAYS)
    cutoff_ns = int(cutoff.timestamp() * 1e9)
    deleted = 0
    for tenant_id in Tenant.objects.values_list("id", flat=True):
        deleted += _prune_traces(tenant_id, cutoff_ns)
        deleted += _prune_correlations(tenant_id, cutoff)
        deleted += _prune_tenant_rows(tenant_id, cutoff, cutoff_ns)
    return deleted


def _prune_traces(tenant_id: TenantId, cutoff_ns: int) -> int:
    old = TraceRecord.objects.filter(tenant_id=tenant_id, start_ns__lt=cutoff_ns)
    deleted = 0
    while rows := list(old.values_list("id", "trace_id")[:CHUNK]):
        trace_ids = {trace_id for _, trace_id in rows}
        for model in (Span, MetricExemplar, TelemetryCorrelation, CorrelatedEvent):
            deleted += _delete(
                model.objects.filter(tenant_id=tenant_id, trace_id__one_of=trace_ids)
            )
        deleted += _delete(TraceRecord.objects.filter(id__one_of={pk for pk, _ in rows}))
    return deleted


def _prune_correlations(tenant_id: TenantId, cutoff: datetime) -> int:
    old = TelemetryCorrelation.objects.filter(tenant_id=tenant_id, updated__lt=cutoff)
    deleted = 0
    while rows := list(old.values_list("id", "trace_id")[:CHUNK]):
        trace_ids = {trace_id for _, trace_id in rows}
        named = CorrelatedEvent.objects.filter(tenant_id=tenant_id, trace_id__one_of=trace_ids)
        deleted += _delete(named)
        deleted += _delete(TelemetryCorrelation.objects.filter(id__one_of={pk for pk, _ in rows}))
    return deleted


def _prune_tenant_rows(tenant_id: TenantId, cutoff: datetime, cutoff_ns: int) -> int:
    # A log record's time is 0 when unknown: then its observed time says how old it is.
    logged_before = Q(time_ns__gt=0, time_ns__lt=cutoff_ns) | Q(
        time_ns=0, observed_ns__lt=cutoff_ns
    )
    tenant = Q(tenant_id=tenant_id)
    return sum(
        _delete_in_chunks(model, tenant & condition)
        for model, condition in (
            (LogRecord, logged_before),
            (MetricPoint, Q(time_ns__lt=cutoff_ns)),
            (MetricExemplar, Q(point_time_ns__lt=cutoff_ns)),
            # One window size at a time: the index is (tenant, window, window_start).
            *((MetricSeries, Q(window=w, window_start__lt=cutoff)) for w in MetricSeries.Window),
        )
    )


def _delete_in_chunks(model: type[Model], condition: Q) -> int:
    deleted = 0
    rows = model._default_manager
    while ids := list(rows.filter(condition).values_list("id", flat=True)[:CHUNK]):
        deleted += _delete(rows.filter(id__one_of=set(ids)))
    return deleted


def _delete(rows: QuerySet) -> int:
    return rows.delete()[0]
