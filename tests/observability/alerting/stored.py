"""Telemetry stored the way the platform stores it, for the alerting handler's, API's and
admin's tests: OTLP metrics posted to /v1/metrics and ingested, each minute aggregated by
MetricAggregationWorker's own slot, and AlertEvaluationWorker's tick fired and drained."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client

from core import services
from core.models import Event, Tenant
from core.runtime import scheduling
from observability import aggregation
from observability.alerting import services as alerting
from observability.alerting.models import AlertRule
from tests.helpers import drain_all, post_otlp

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday morning, days before any test runs
MINUTE = timedelta(minutes=1)
TRACE = "4bf92f3577b34da6a3ce929d0e0e47{:02x}"
SPAN = "00f067aa0ba902b7"


def minute(i: int) -> datetime:
    return T0 + i * MINUTE


class Telemetry:
    """One tenant's API key and client, posting points at T0 + i minutes (30 s in)."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.key = services.issue_api_key(tenant=tenant)
        self.client = Client()

    def gauge(
        self,
        name: str,
        values: Iterable[float | str | None],
        *,
        service: str = "checkout",
        attributes: Mapping[str, str] | None = None,
        start: int = 0,
        exemplars: bool = False,
        second: int = 30,
    ) -> None:
        """One point a minute from minute `start`, `second` seconds into it: a number, None for
        no point, "stale" for a point flagged NO_RECORDED_VALUE."""
        points = []
        for i, value in enumerate(values, start):
            if value is None:
                continue
            point: dict[str, Any] = {"timeUnixNano": _ns(minute(i) + second * timedelta(seconds=1))}
            point["attributes"] = _attributes(attributes or {})
            if value == "stale":
                point["flags"] = 1
            else:
                point["asDouble"] = float(value)
                if exemplars:
                    point["exemplars"] = [_exemplar(i, float(value))]
            points.append(point)
        self.post(service, {"name": name, "gauge": {"dataPoints": points}})

    def counter(
        self,
        name: str,
        increases: Iterable[float | None],
        *,
        service: str = "checkout",
        attributes: Mapping[str, str] | None = None,
        start: int = 0,
        exemplars: bool = False,
    ) -> None:
        """A delta counter: each minute's increase."""
        points = []
        for i, value in enumerate(increases, start):
            if value is None:
                continue
            point: dict[str, Any] = {
                "startTimeUnixNano": _ns(minute(i)),
                "timeUnixNano": _ns(minute(i) + 30 * timedelta(seconds=1)),
                "asDouble": float(value),
                "attributes": _attributes(attributes or {}),
            }
            if exemplars and value:
                point["exemplars"] = [_exemplar(i, float(value))]
            points.append(point)
        body = {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points}
        self.post(service, {"name": name, "sum": body})

    def histogram(
        self,
        name: str,
        minute_index: int,
        counts: list[int],
        bounds: list[float],
        *,
        service: str = "checkout",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        point = {
            "startTimeUnixNano": _ns(minute(minute_index)),
            "timeUnixNano": _ns(minute(minute_index) + 30 * timedelta(seconds=1)),
            "count": str(sum(counts)),
            "sum": float(sum(counts)),
            "bucketCounts": [str(c) for c in counts],
            "explicitBounds": bounds,
            "attributes": _attributes(attributes or {}),
        }
        body = {"aggregationTemporality": 1, "dataPoints": [point]}
        self.post(service, {"name": name, "histogram": body})

    def post(self, service: str, metric: dict[str, Any]) -> None:
        resource = {"attributes": _attributes({"service.name": service})}
        scope = {"scope": {"name": "tests"}, "metrics": [metric]}
        body = {"resourceMetrics": [{"resource": resource, "scopeMetrics": [scope]}]}
        post_otlp(self.client, self.key, "metrics", body)


def _ns(moment: datetime) -> str:
    return str(aggregation.to_ns(moment))


def _attributes(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]


def _exemplar(i: int, value: float) -> dict[str, Any]:
    return {
        "timeUnixNano": _ns(minute(i) + 20 * timedelta(seconds=1)),
        "asDouble": value,
        "traceId": TRACE.format(i),
        "spanId": SPAN,
    }


def aggregate(upto: int, *, since: int = 0) -> None:
    """MetricAggregationWorker's 1-minute slots for the windows of minutes since..upto-1 (every
    tenant), as its schedule fires them."""
    for i in range(since, upto):
        scheduling.fire("MetricAggregationWorker", "1m", now=minute(i + 1))
    drain_all("MetricAggregationWorker")


def tick(i: int) -> None:
    """AlertEvaluationWorker's tick at minute i (every tenant), drained."""
    scheduling.fire("AlertEvaluationWorker", "cadence", now=minute(i))
    drain_all("AlertEvaluationWorker")


def minute_by_minute(upto: int, *, since: int = 0) -> None:
    """Aggregate each minute and tick right after it, as the two schedules would."""
    for i in range(since, upto):
        aggregate(i + 1, since=i)
        tick(i + 1)


def rule(tenant: Tenant, name: str = "queue too deep", **spec: Any) -> AlertRule:
    body: dict[str, Any] = {
        "query": {"metric": "queue.depth", "window": "1m", "field": "last"},
        "groupBy": ["service.name"],
        "op": ">",
        "critical": 90,
        "flapChanges": 0,
    }
    body.update(spec)
    return alerting.create_rule(tenant=tenant, name=name, spec=body, actor="tests")


def events(tenant: Tenant, *types: str) -> list[Event]:
    found = Event.objects.filter(
        tenant=tenant, type__in=types or ("AlertTriggered", "AlertResolved")
    )
    return list(found.order_by("occurred_at", "type"))
