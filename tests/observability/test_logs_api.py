"""GET /api/logs: the caller's log records, newest first, by trace, service, severity, time and
text, each with the link to its trace."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from core import services
from observability import selectors
from observability.api import LogFilters
from observability.models import LogRecord
from tests.helpers import post_otlp

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "golden" / "logs.json"
NOW_NS = time.time_ns()
MINUTE_NS = 60 * 10**9
T1, T2 = "1" * 32, "2" * 32


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def record(tenant, body, *, minutes_ago=0, severity=9, service="checkout", trace_id=""):
    """A stored log record, `minutes_ago` before now."""
    return LogRecord.objects.create(
        tenant=tenant,
        record_key=f"{len(LogRecord.objects.all()):064d}",
        time_ns=NOW_NS - minutes_ago * MINUTE_NS,
        severity_number=severity,
        body=body,
        service=service,
        resource={"service.name": service},
        trace_id=trace_id,
        span_id="a" * 16 if trace_id else "",
    )


def get(client, key, query: str = ""):
    return client.get(f"/api/logs{query}", headers={"Authorization": f"Bearer {key}"})


def bodies(response) -> list:
    assert response.status_code == 200, response.content
    return [r["body"] for r in response.json()["results"]]


@pytest.fixture
def day_of_logs(tenant):
    record(tenant, "cart loaded", minutes_ago=1, trace_id=T1)
    record(tenant, "Payment DECLINED: card expired", minutes_ago=2, severity=17, trace_id=T1)
    record(tenant, {"event": "retry", "reason": "Timeout"}, minutes_ago=30, severity=13)
    record(tenant, "disk full", minutes_ago=90, severity=21, service="billing", trace_id=T2)
    record(tenant, "cache warmed", minutes_ago=600, severity=5, service="billing")


def test_it_returns_what_ingestion_stored_with_the_link_to_each_trace(client, key):
    post_otlp(client, key, "logs", json.loads(GOLDEN.read_text()))

    results = get(client, key).json()["results"]

    assert [r["severityText"] for r in results] == ["ERROR", "INFO", "WARN"]
    error = results[0]
    assert error["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert error["spanId"] == "eee19b7ec3c1b175"
    assert error["trace"] == "/api/traces/5b8efff798038103d269b633813fc60c"
    assert error["body"] == {"reason": "card declined", "attempt": 2}
    assert error["eventName"] == "checkout.payment_failed"
    assert error["time"] == "2025-06-15T15:06:40.200000+00:00"
    assert (error["service"], error["resource"]) == ("checkout", {"service.name": "checkout"})
    assert results[1]["attributes"] == {"cart.items": 3}
    # Without a time (0: unknown in OTLP) a record comes last, with its observed time.
    untimed = results[2]
    assert (untimed["time"], untimed["observedTime"]) == (None, "2025-06-15T15:06:40.300000+00:00")
    assert (untimed["traceId"], untimed["spanId"], untimed["trace"]) == (None, None, None)


def test_it_lists_the_newest_first(client, key, day_of_logs):
    assert bodies(get(client, key)) == [
        "cart loaded",
        "Payment DECLINED: card expired",
        {"event": "retry", "reason": "Timeout"},
        "disk full",
        "cache warmed",
    ]


def test_it_filters_by_trace_in_either_case(client, key, day_of_logs):
    assert bodies(get(client, key, f"?traceId={T2.upper()}")) == ["disk full"]


def test_it_filters_by_service(client, key, day_of_logs):
    assert bodies(get(client, key, "?service=billing")) == ["disk full", "cache warmed"]


@pytest.mark.parametrize("severity", ["WARN", "warn", " Warn ", "13"])
def test_it_filters_from_a_minimum_severity_by_name_or_number(client, key, day_of_logs, severity):
    assert bodies(get(client, key, f"?severity={quote(severity)}")) == [
        "Payment DECLINED: card expired",
        {"event": "retry", "reason": "Timeout"},
        "disk full",
    ]


def test_it_takes_the_finer_severity_names(client, key, day_of_logs):
    assert bodies(get(client, key, "?severity=ERROR2")) == ["disk full"]


def test_it_filters_by_since(client, key, day_of_logs):
    assert len(bodies(get(client, key, "?since=1h"))) == 3


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("declined", ["Payment DECLINED: card expired"]),
        ("TIMEOUT", [{"event": "retry", "reason": "Timeout"}]),  # a structured body's JSON
        ('"reason"', [{"event": "retry", "reason": "Timeout"}]),
        ("%", []),  # a LIKE wildcard is a character like any other
        ("_", []),
    ],
)
def test_it_searches_the_body_in_any_case(client, key, day_of_logs, q, found):
    assert bodies(get(client, key, f"?q={quote(q)}")) == found


def test_it_searches_a_string_body_as_written_not_as_json(client, key, tenant):
    record(tenant, 'he said "stop" \\ twice')
    written = quote('said "stop" \\')

    assert len(bodies(get(client, key, f"?q={written}"))) == 1


def test_it_combines_the_filters(client, key, day_of_logs):
    query = f"?traceId={T1}&severity=error&since=1h&q=card&service=checkout"

    assert bodies(get(client, key, query)) == ["Payment DECLINED: card expired"]


def test_it_pages_with_a_cursor(client, key, day_of_logs):
    first = get(client, key, "?limit=3").json()
    second = client.get(first["next"], headers={"Authorization": f"Bearer {key}"}).json()

    assert len(first["results"]) == 3
    assert [r["body"] for r in second["results"]] == ["disk full", "cache warmed"]
    assert second["next"] is None


def test_it_shows_only_the_callers_records(client, key, day_of_logs, other_tenant):
    record(other_tenant, "globex's secret", trace_id=T1)

    assert "globex's secret" not in bodies(get(client, key))
    assert "globex's secret" not in bodies(get(client, key, f"?traceId={T1}"))


def test_it_names_each_invalid_filter(client, key):
    query = f"?severity=LOUD&traceId=xyz&since=yesterday&q={'x' * 201}&service={'s' * 201}"

    response = get(client, key, query)

    details = response.json()["details"]
    assert response.status_code == 400
    assert set(details) == {"severity", "traceId", "since", "q", "service"}
    assert "'LOUD' is not a severity" in details["severity"][0]
    assert "'xyz' is not a trace id" in details["traceId"][0]


@pytest.mark.parametrize("severity", ["0", "25", "-1", "\u0661", "WARN5", "1e1"])  # ARABIC-INDIC 1
def test_it_refuses_a_severity_outside_otlps(client, key, severity):
    response = get(client, key, f"?severity={quote(severity)}")

    assert response.status_code == 400
    assert "is not a severity" in response.json()["details"]["severity"][0]


@pytest.mark.parametrize("field", ["q", "service", "traceId", "severity"])
def test_it_refuses_a_nul_in_a_filter_instead_of_failing_in_the_database(client, key, field):
    response = get(client, key, f"?{field}=a%00b")

    assert response.status_code == 400
    assert field in response.json()["details"]


def test_it_asks_for_an_api_key(client):
    assert client.get("/api/logs").status_code == 401


def test_its_filters_and_selector_serve_a_list_of_every_tenants_records(
    tenant, other_tenant, day_of_logs
):
    # The admin's list of logs: the same filters, read by the same serializer, over all tenants.
    record(other_tenant, "globex disk full", severity=21)
    filters = LogFilters(data={"severity": "fatal", "q": "disk"})
    filters.is_valid(raise_exception=True)

    found = selectors.filter_logs(LogRecord.objects.all(), **filters.validated_data)

    assert sorted(r.body for r in found) == ["disk full", "globex disk full"]
