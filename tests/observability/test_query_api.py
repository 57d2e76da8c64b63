"""GET /api/traces and /api/traces/<traceId>: the caller's traces, and only theirs."""

from __future__ import annotations

import time

import pytest

from core import services
from observability import traces

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
        "", "[]", "[]",
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
