"""GET /api/traces and /api/traces/<traceId>: the caller's traces, and only theirs."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.parse import quote

import pytest

from core import services
from core.models import Event
from observability import traces
from observability.models import TelemetryCorrelation
from tests.helpers import drain_all, post_otlp

pytestmark = pytest.mark.django_db
NOW_NS = time.time_ns()
HOUR_NS = 3600 * 10**9


def store(tenant, trace_id: str, *spans: tuple, start_ns: int = NOW_NS) -> None:
    """spans: (span_id, parent_id, name, service, error)"""
    rows = [
        span_row(trace_id, span_id, parent, name, service, error, start_ns + i * 1000)
        for i, (span_id, parent, name, service, error) in enumerate(spans)
    ]
    traces.project(tenant.pk, rows)


def span_row(trace_id, span_id, parent, name, service, error, start_ns) -> traces.SpanRow:
    end_ns, status = start_ns + 2_000_000, 2 if error else 1
    return traces.SpanRow(
        trace_id, span_id, parent, name, 2, service, start_ns, end_ns, status, "", "{}", "{}",
        "", "", "{}", "[]", "[]",
    )  # fmt: skip


def get(client, key, url: str):
    return client.get(url, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


A, B, C = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
def three_traces(tenant):
    store(
        tenant,
        A,
        ("1" * 16, "", "GET /cart", "checkout", False),
        ("2" * 16, "1" * 16, "SELECT", "db", False),
    )
    store(tenant, B, ("3" * 16, "", "POST /pay", "payments", True), start_ns=NOW_NS - HOUR_NS)
    store(tenant, C, ("4" * 16, "", "GET /", "web", False), start_ns=NOW_NS - 5 * HOUR_NS)


def trace_ids(response) -> list[str]:
    return [t["traceId"] for t in response.json()["results"]]


def test_it_returns_a_trace_with_its_spans(client, key, three_traces):
    response = get(client, key, f"/api/traces/{A}")

    body = response.json()
    assert response.status_code == 200
    assert (body["rootName"], body["spanCount"], body["status"]) == ("GET /cart", 2, "ok")
    assert body["services"] == ["checkout", "db"]
    assert [s["name"] for s in body["spans"]] == ["GET /cart", "SELECT"]
    assert body["spans"][1]["parentSpanId"] == "1" * 16
    assert body["durationMs"] == pytest.approx(2.001)


def test_it_lists_traces_newest_first(client, key, three_traces):
    assert trace_ids(get(client, key, "/api/traces")) == [A, B, C]


def test_it_filters_by_any_service_the_trace_crossed(client, key, three_traces):
    assert trace_ids(get(client, key, "/api/traces?service=db")) == [A]


def test_it_filters_by_status(client, key, three_traces):
    assert trace_ids(get(client, key, "/api/traces?status=error")) == [B]


def test_it_filters_by_since_as_a_duration(client, key, three_traces):
    assert trace_ids(get(client, key, "/api/traces?since=2h")) == [A, B]


def test_it_pages_with_a_cursor(client, key, three_traces):
    first = get(client, key, "/api/traces?limit=2").json()
    second = client.get(first["next"], headers={"Authorization": f"Bearer {key}"}).json()

    assert [t["traceId"] for t in first["results"]] == [A, B]
    assert [t["traceId"] for t in second["results"]] == [C]
    assert second["next"] is None


def test_it_explains_a_bad_filter(client, key):
    response = get(client, key, "/api/traces?since=yesterday&status=bad")

    assert response.status_code == 400
    assert "since" in response.json()["details"] and "status" in response.json()["details"]


@pytest.mark.parametrize(
    "trace_id", ["abc%00def", "abc", "a" * 31, "a" * 33, "g" * 32, f"{'a' * 31}%00", "%00" * 32]
)
def test_it_refuses_a_trace_id_that_is_not_one(client, key, trace_id):
    # A NUL reached PostgreSQL, which refuses it in text: a 500.
    response = get(client, key, f"/api/traces/{trace_id}")

    assert response.status_code == 400
    assert "is not a trace id: a trace id is 32 hexadecimal digits" in response.json()["error"]


def test_it_finds_a_trace_by_its_id_in_capitals(client, key, three_traces):
    assert get(client, key, f"/api/traces/{A.upper()}").json()["traceId"] == A


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("99999999999d", "'99999999999d' goes back before the year 1."),
        ("9" * 5000 + "w", "goes back before the year 1."),
        ("0001-01-01T00:00:00+14:00", "is outside the calendar (years 1 to 9999) in UTC."),
    ],
)
def test_it_refuses_a_since_outside_the_calendar(client, key, since, says):
    # An OverflowError in core.since: a 500.
    response = get(client, key, f"/api/traces?since={quote(since)}")

    assert response.status_code == 400
    assert says in response.json()["details"]["since"][0]


@pytest.mark.parametrize(("since", "found"), [("0001-01-01", [A, B, C]), ("9999-12-31", [])])
def test_it_takes_a_since_at_either_end_of_the_calendar(client, key, three_traces, since, found):
    # Past the int64 of nanoseconds that spans are stored in (years 1677 to 2262): a since
    # beyond is as good as its end, not an integer the database refuses.
    assert trace_ids(get(client, key, f"/api/traces?since={since}")) == found


def test_it_never_shows_another_tenants_trace(client, key, other_tenant):
    store(other_tenant, A, ("1" * 16, "", "secret", "theirs", False))

    assert get(client, key, f"/api/traces/{A}").status_code == 404
    assert trace_ids(get(client, key, "/api/traces")) == []


def test_it_keeps_spans_of_the_same_trace_id_per_tenant(client, key, tenant, other_tenant):
    store(tenant, A, ("1" * 16, "", "mine", "checkout", False))
    store(other_tenant, A, ("9" * 16, "", "theirs", "other", False))

    spans = get(client, key, f"/api/traces/{A}").json()["spans"]

    assert [s["name"] for s in spans] == ["mine"]


def test_it_says_when_a_trace_is_not_there(client, key):
    response = get(client, key, f"/api/traces/{A}")

    assert response.status_code == 404
    assert A in response.json()["error"]


def test_it_needs_a_key(client):
    assert client.get("/api/traces").status_code == 401


# The trace's correlation: what TelemetryCorrelationWorker stitched to it, from telemetry sent as
# an exporter sends it (OTLP JSON) and ingested and correlated by the workers.

ROOT, CHILD = "e" * 16, "f" * 16


def otlp_span(span_id: str, name: str, *, parent: str = "", error: bool = False) -> dict:
    return {
        "traceId": A,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(NOW_NS),
        "endTimeUnixNano": str(NOW_NS + 5_000_000),
        "status": {"code": 2, "message": "boom"} if error else {"code": 1},
    }


def otlp_log(offset_ns: int, severity: int, text: str, body: str) -> dict:
    return {
        "timeUnixNano": str(NOW_NS + offset_ns),
        "severityNumber": severity,
        "severityText": text,
        "body": {"stringValue": body},
        "traceId": A,
        "spanId": CHILD,
    }


def otlp_gauge(name: str, value: float) -> dict:
    exemplar = {"timeUnixNano": str(NOW_NS), "asDouble": value, "traceId": A, "spanId": CHILD}
    point = {"timeUnixNano": str(NOW_NS + 1000), "asDouble": value, "exemplars": [exemplar]}
    return {"name": name, "unit": "ms", "gauge": {"dataPoints": [point]}}


CHECKOUT = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}


def send_trace(client, key, *spans: dict) -> None:
    resource_spans = {"resource": CHECKOUT, "scopeSpans": [{"spans": list(spans)}]}
    post_otlp(client, key, "traces", {"resourceSpans": [resource_spans]})


def send_logs(client, key, *records: dict) -> None:
    resource_logs = {"resource": CHECKOUT, "scopeLogs": [{"logRecords": list(records)}]}
    post_otlp(client, key, "logs", {"resourceLogs": [resource_logs]})


def send_metrics(client, key, *metrics: dict) -> None:
    resource_metrics = {"resource": CHECKOUT, "scopeMetrics": [{"metrics": list(metrics)}]}
    post_otlp(client, key, "metrics", {"resourceMetrics": [resource_metrics]})


def drain(worker: str) -> None:
    drain_all(worker)


def correlate() -> None:
    drain("TelemetryCorrelationWorker")


def test_it_returns_the_logs_exemplars_and_events_correlated_with_a_trace(client, key, tenant):
    send_trace(
        client,
        key,
        otlp_span(ROOT, "GET /cart"),
        otlp_span(CHILD, "charge", parent=ROOT, error=True),
    )
    send_logs(
        client,
        key,
        otlp_log(1000, 9, "INFO", "cart loaded"),
        otlp_log(2000, 17, "ERROR", "card declined"),
    )
    send_metrics(client, key, otlp_gauge("queue.depth", 12.5))
    correlate()

    correlation = get(client, key, f"/api/traces/{A}").json()["correlation"]

    counts = [correlation[name] for name in ("logCount", "exemplarCount", "eventCount")]
    assert counts == [2, 1, 2]
    assert correlation["logs"]["bySeverity"] == {"INFO": 1, "ERROR": 1}
    latest = correlation["logs"]["latest"]
    assert [(r["severity"], r["body"], r["spanId"]) for r in latest] == [
        ("ERROR", "card declined", CHILD),
        ("INFO", "cart loaded", CHILD),
    ]
    [exemplar] = correlation["exemplars"]
    assert [exemplar[name] for name in ("metric", "value", "unit", "spanId")] == [
        "queue.depth",
        12.5,
        "ms",
        CHILD,
    ]
    types = {e["type"] for e in correlation["events"]}
    assert types == {"TraceRecorded", "RuntimeSignalDetected"}
    stored = TelemetryCorrelation.objects.get(tenant=tenant, trace_id=A)
    assert datetime.fromisoformat(correlation["updated"]) == stored.updated


def test_it_returns_a_null_correlation_until_the_worker_has_correlated_the_trace(client, key):
    send_trace(client, key, otlp_span(ROOT, "GET /cart"))

    before = get(client, key, f"/api/traces/{A}").json()
    correlate()
    after = get(client, key, f"/api/traces/{A}").json()

    assert before["correlation"] is None and before["spanCount"] == 1
    assert after["correlation"]["eventCount"] == 1  # its TraceRecorded


def test_it_never_returns_another_tenants_correlation_of_the_same_trace_id(
    client, key, tenant, other_tenant
):
    theirs = services.issue_api_key(tenant=other_tenant)
    send_trace(client, theirs, otlp_span(ROOT, "their root"))
    send_logs(client, theirs, otlp_log(1000, 17, "ERROR", "their secret"))
    correlate()
    store(tenant, A, (ROOT, "", "GET /cart", "checkout", False))  # stored, never correlated

    unrelated = get(client, key, f"/api/traces/{A}").json()
    send_trace(client, key, otlp_span(CHILD, "charge", parent=ROOT))
    correlate()
    ours = get(client, key, f"/api/traces/{A}").json()

    assert unrelated["correlation"] is None
    assert (ours["correlation"]["logCount"], ours["correlation"]["logs"]["latest"]) == (0, [])
    mine = Event.objects.filter(tenant=tenant, data__traceId=A).values_list("id", flat=True)
    assert {e["eventId"] for e in ours["correlation"]["events"]} == {str(i) for i in mine}
    assert "their secret" not in json.dumps(ours)
