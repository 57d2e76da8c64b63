"""What the console's flows are shown: sent as clients send it (OTLP JSON, the REST API) to the
web tier under test, and handled by the workers as a cluster would."""

from __future__ import annotations

from django.utils import timezone

from core.models import Message
from core.runtime import dispatch, scheduling

MS = 1_000_000  # nanoseconds


def settle(*workers: str) -> None:
    """Run these workers in this process until none has a message due: each may queue work
    for the next (ingestion, then correlation). One due later (a retry) is left pending."""
    pending = Message.objects.filter(worker__in=workers, state=Message.State.PENDING)
    while pending.filter(due_at__lte=timezone.now()).exists():
        for worker in workers:
            dispatch.drain(worker)


def _attributes(**values: str) -> list[dict]:
    return [{"key": key, "value": {"stringValue": value}} for key, value in values.items()]


def span(
    span_id: str,
    name: str,
    *,
    trace: str,
    start: int,
    ms: float,
    parent: str = "",
    error: bool = False,
) -> dict:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(ms * MS)),
        "status": {"code": 2, "message": "declined"} if error else {"code": 1},
        "attributes": _attributes(**{"http.route": "/cart"}),
    }


def traces(service: str, *spans: dict) -> dict:
    """A service's spans, one of the `resourceSpans` of a POST /v1/traces."""
    return {
        "resource": {"attributes": _attributes(**{"service.name": service})},
        "scopeSpans": [{"scope": {"name": "shop"}, "spans": list(spans)}],
    }


def log_record(
    body: str, *, time_ns: int, trace: str = "", span_id: str = "", severity: int = 17
) -> dict:
    return {
        "timeUnixNano": str(time_ns),
        "severityNumber": severity,
        "severityText": {9: "INFO", 13: "WARN", 17: "ERROR"}.get(severity, ""),
        "body": {"stringValue": body},
        "traceId": trace,
        "spanId": span_id,
    }


def logs(service: str, *records: dict) -> dict:
    """A service's log records, one of the `resourceLogs` of a POST /v1/logs."""
    return {
        "resource": {"attributes": _attributes(**{"service.name": service})},
        "scopeLogs": [{"scope": {"name": "shop"}, "logRecords": list(records)}],
    }


def histogram(
    name: str,
    *,
    time_ns: int,
    bounds: list[float],
    counts: list[int],
    unit: str = "ms",
    exemplar: dict | None = None,
) -> dict:
    """A delta histogram of one point, one of the `metrics` of a POST /v1/metrics; `exemplar`
    names the trace and span of one of its observations ({"traceId", "spanId", "asDouble"})."""
    point = {
        "startTimeUnixNano": str(time_ns - 10**9),
        "timeUnixNano": str(time_ns),
        "count": str(sum(counts)),
        "sum": float(sum(counts)),
        "bucketCounts": [str(n) for n in counts],
        "explicitBounds": bounds,
        "min": 1.0,
        "max": 2 * bounds[-1],
        "exemplars": [{"timeUnixNano": str(time_ns), **exemplar}] if exemplar else [],
    }
    return {
        "name": name,
        "unit": unit,
        "histogram": {"aggregationTemporality": 1, "dataPoints": [point]},
    }


def metrics(service: str, *metric: dict) -> dict:
    """A service's metrics, one of the `resourceMetrics` of a POST /v1/metrics."""
    return {
        "resource": {"attributes": _attributes(**{"service.name": service})},
        "scopeMetrics": [{"scope": {"name": "shop"}, "metrics": list(metric)}],
    }


def roll_up() -> None:
    """Roll the points of the minute that just ended (and any later ones that came in late)
    into metric windows, as the 1m schedule does when it fires."""
    scheduling.fire("MetricAggregationWorker", "1m")
    settle("MetricAggregationWorker")


def integration_failure(connection, *, failure_id: str, error: str, status: int) -> None:
    """A failed sync of `connection` reported as its producer reports one (IntegrationFailed),
    and recorded by IntegrationRetryWorker: the row the failures console lists."""
    from core import services
    from integrations.failures import contract

    data = contract.failed_data(
        failure_id=failure_id,
        kind="sync",
        error=error,
        status=status,
        provider=connection.provider,
        subject=connection.name,
        connectionId=str(connection.pk),
    )
    services.publish(tenant=connection.tenant, type="IntegrationFailed", data=data)
    settle("IntegrationRetryWorker")
