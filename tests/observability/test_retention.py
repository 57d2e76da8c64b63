"""Telemetry retention: what is older than TELEMETRY_RETENTION_DAYS goes with the hourly prune,
the rest stays."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core import services
from core.runtime import scheduling
from observability import correlation, traces
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
from tests.observability.test_metric_aggregation import add

pytestmark = pytest.mark.django_db

DAY_NS = 86_400 * 10**9
NOW_NS = time.time_ns()
OLD_NS = NOW_NS - 8 * DAY_NS  # past the 7 days' retention
OLD, RECENT = "0af7651916cd43dd8448eb211c80319c", "5b8efff798038103d269b633813fc60c"


@pytest.fixture(autouse=True)
def _seven_days(settings):
    settings.TELEMETRY_RETENTION_DAYS = 7


def trace(tenant, trace_id: str, start_ns: int) -> None:
    """A trace of one span, stored and correlated, with an exemplar naming it."""
    row = traces.SpanRow(
        trace_id, "eee19b7ec3c1b174", "", "GET /cart", 2, "checkout", start_ns, start_ns + 1000,
        1, "", "{}", "{}", "", "", "{}", "[]", "[]",
    )  # fmt: skip
    traces.project(tenant.pk, [row])
    envelope = services.publish(tenant=tenant, type="TraceRecorded", data={"traceId": trace_id})
    correlation.correlate([envelope])
    MetricExemplar.objects.create(
        tenant=tenant, trace_id=trace_id, name="m", series_key="k", time_ns=start_ns,
        point_time_ns=NOW_NS,
    )  # fmt: skip


def log(tenant, key: str, *, time_ns: int, observed_ns: int = 0) -> None:
    LogRecord.objects.create(
        tenant=tenant, record_key=key, time_ns=time_ns, observed_ns=observed_ns
    )


def series(tenant, window_start) -> None:
    MetricSeries.objects.create(
        tenant=tenant, series_key="k", window="1m", window_start=window_start,
        window_end=window_start + timedelta(minutes=1), name="m", kind=1, temporality=0,
        points=1, computed_at=window_start,
    )  # fmt: skip


def test_it_deletes_an_old_trace_with_everything_stitched_to_it(tenant):
    trace(tenant, OLD, OLD_NS)
    trace(tenant, RECENT, NOW_NS)

    scheduling.prune()

    for model in (TraceRecord, Span, TelemetryCorrelation, CorrelatedEvent, MetricExemplar):
        assert set(model.objects.values_list("trace_id", flat=True)) == {RECENT}, model


def test_it_deletes_old_logs_points_exemplars_and_series(tenant):
    log(tenant, "a" * 64, time_ns=OLD_NS)
    log(tenant, "b" * 64, time_ns=NOW_NS)
    log(tenant, "c" * 64, time_ns=0, observed_ns=OLD_NS)
    log(tenant, "d" * 64, time_ns=0, observed_ns=NOW_NS)  # no time of its own: observed now
    add(tenant, "old", OLD_NS, value=1.0)
    add(tenant, "recent", NOW_NS, value=1.0)
    MetricExemplar.objects.create(
        tenant=tenant, trace_id=OLD, name="m", series_key="k", time_ns=1, point_time_ns=OLD_NS
    )
    series(tenant, timezone.now() - timedelta(days=8))
    series(tenant, timezone.now() - timedelta(minutes=5))

    scheduling.prune()

    assert sorted(LogRecord.objects.values_list("record_key", flat=True)) == ["b" * 64, "d" * 64]
    assert list(MetricPoint.objects.values_list("name", flat=True)) == ["recent"]
    assert not MetricExemplar.objects.exists()
    assert MetricSeries.objects.count() == 1


def test_it_deletes_a_correlation_of_a_trace_without_spans_once_it_is_old(tenant):
    envelope = services.publish(tenant=tenant, type="IncidentOpened", data={"traceId": OLD})
    correlation.correlate([envelope])
    TelemetryCorrelation.objects.update(updated=timezone.now() - timedelta(days=8))

    scheduling.prune()

    assert not TelemetryCorrelation.objects.exists()
    assert not CorrelatedEvent.objects.exists()


def test_it_prunes_every_tenant(tenant, other_tenant):
    trace(tenant, OLD, OLD_NS)
    trace(other_tenant, OLD, OLD_NS)
    trace(other_tenant, RECENT, NOW_NS)

    scheduling.prune()

    assert list(TraceRecord.objects.values_list("tenant", "trace_id")) == [
        (other_tenant.pk, RECENT)
    ]
