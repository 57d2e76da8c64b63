"""Whatever the OTLP endpoints acknowledge, TraceIngestionWorker stores: NUL characters,
values that are not finite numbers, enums and integers out of their columns' ranges are
decided at the edge, never found out by the worker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from core import services
from core.models import DeadLetter, Failure, Message
from observability import otlp
from observability.models import LogRecord, MetricExemplar, MetricPoint, MetricSeries, Span
from tests.helpers import drain_all
from tests.observability.test_metric_aggregation import run

pytestmark = pytest.mark.django_db
NOW = time.time_ns()
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
NUL, FFFD = "\x00", "\ufffd"


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, signal: str, tree: dict, media: str):
    """POST the request as OTLP JSON or as protobuf, and let TraceIngestionWorker store it."""
    data = json.dumps(tree).encode()
    if media == otlp.PROTOBUF:
        data = otlp.decode(signal, data, otlp.JSON).SerializeToString()
    response = client.post(
        f"/v1/{signal}", data=data, content_type=media, headers={"Authorization": f"Bearer {key}"}
    )
    drain_all("TraceIngestionWorker")
    assert not Failure.objects.exists() and not DeadLetter.objects.exists()
    assert not Message.objects.filter(worker="TraceIngestionWorker").exclude(state="done").exists()
    return response


def reply(response) -> dict:
    assert response.status_code == 200, response.content
    if response["Content-Type"] == otlp.JSON:
        return response.json()
    return {"partialSuccess": True} if len(response.content) else {}


def attribute(key: str, value: dict) -> dict:
    return {"key": key, "value": value}


def resource(service: str) -> dict:
    return {"attributes": [attribute("service.name", {"stringValue": service})]}


def span(**fields) -> dict:
    return {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "GET /cart",
        "startTimeUnixNano": str(NOW),
        "endTimeUnixNano": str(NOW + 1000),
        **fields,
    }


def traces(*spans: dict, service: str = "shop", scope: str = "s") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": resource(service),
                "scopeSpans": [{"scope": {"name": scope}, "spans": list(spans)}],
            }
        ]
    }


def logs(*records: dict, scope: str = "s") -> dict:
    return {
        "resourceLogs": [
            {
                "resource": resource("shop"),
                "scopeLogs": [{"scope": {"name": scope}, "logRecords": list(records)}],
            }
        ]
    }


def metrics(*items: dict, scope: str = "s") -> dict:
    return {
        "resourceMetrics": [
            {
                "resource": resource("shop"),
                "scopeMetrics": [{"scope": {"name": scope}, "metrics": list(items)}],
            }
        ]
    }


def gauge(name: str, *points: dict, unit: str = "") -> dict:
    return {"name": name, "unit": unit, "gauge": {"dataPoints": list(points)}}


MEDIA = pytest.mark.parametrize("media", [otlp.JSON, otlp.PROTOBUF])


# --- NUL: stored as U+FFFD ------------------------------------------------------------------


@MEDIA
def test_it_stores_the_nul_characters_of_spans_as_the_replacement_character(client, key, media):
    tree = traces(
        span(
            name=f"GET{NUL}",
            status={"code": 2, "message": f"boom{NUL}"},
            attributes=[attribute(f"k{NUL}", {"stringValue": f"v{NUL}"})],
            events=[{"timeUnixNano": str(NOW), "name": f"e{NUL}"}],
        ),
        service=f"shop{NUL}",
        scope=f"s{NUL}",
    )

    assert reply(post(client, key, "traces", tree, media)) == {}

    stored = Span.objects.get()
    assert (stored.name, stored.status_message, stored.service, stored.scope) == (
        f"GET{FFFD}",
        f"boom{FFFD}",
        f"shop{FFFD}",
        f"s{FFFD}",
    )
    assert stored.attributes == {f"k{FFFD}": f"v{FFFD}"}
    assert stored.resource == {"service.name": f"shop{FFFD}"}
    assert stored.events[0]["name"] == f"e{FFFD}"


@MEDIA
def test_it_stores_the_nul_characters_of_log_records_as_the_replacement_character(
    client, key, media
):
    record = {
        "timeUnixNano": str(NOW),
        "severityText": f"WARN{NUL}",
        "eventName": f"login{NUL}",
        "body": {"kvlistValue": {"values": [attribute(f"a{NUL}", {"stringValue": f"b{NUL}"})]}},
        "attributes": [attribute("user", {"arrayValue": {"values": [{"stringValue": NUL}]}})],
    }

    assert reply(post(client, key, "logs", logs(record, scope=f"s{NUL}"), media)) == {}

    stored = LogRecord.objects.get()
    assert (stored.severity_text, stored.event_name, stored.scope) == (
        f"WARN{FFFD}",
        f"login{FFFD}",
        f"s{FFFD}",
    )
    assert stored.body == {f"a{FFFD}": f"b{FFFD}"}
    assert stored.attributes == {"user": [FFFD]}


@MEDIA
def test_it_stores_the_nul_characters_of_metrics_as_the_replacement_character(client, key, media):
    point = {
        "timeUnixNano": str(NOW),
        "asDouble": 1.5,
        "attributes": [attribute(f"k{NUL}", {"stringValue": f"v{NUL}"})],
        "exemplars": [
            {
                "timeUnixNano": str(NOW),
                "asDouble": 1.5,
                "traceId": TRACE,
                "spanId": SPAN,
                "filteredAttributes": [attribute(NUL, {"stringValue": NUL})],
            }
        ],
    }
    tree = metrics(gauge(f"queue{NUL}", point, unit=f"s{NUL}"), scope=f"s{NUL}")

    assert reply(post(client, key, "metrics", tree, media)) == {}

    stored = MetricPoint.objects.get()
    assert (stored.name, stored.unit, stored.scope) == (f"queue{FFFD}", f"s{FFFD}", f"s{FFFD}")
    assert stored.attributes == {f"k{FFFD}": f"v{FFFD}"}
    assert stored.exemplars[0]["attributes"] == {FFFD: FFFD}
    assert MetricExemplar.objects.get().name == f"queue{FFFD}"


# --- values that are not finite numbers -------------------------------------------------------


@MEDIA
def test_it_stores_doubles_that_are_not_finite_as_otlp_json_spells_them(client, key, media):
    nan, inf = {"doubleValue": "NaN"}, {"doubleValue": "Infinity"}
    record = {
        "timeUnixNano": str(NOW),
        "body": nan,
        "attributes": [attribute("ratio", inf), attribute("low", {"doubleValue": "-Infinity"})],
    }

    assert reply(post(client, key, "logs", logs(record), media)) == {}
    tree = traces(span(attributes=[attribute("r", nan)]))
    assert reply(post(client, key, "traces", tree, media)) == {}

    stored = LogRecord.objects.get()
    assert (stored.body, stored.attributes) == ("NaN", {"ratio": "Infinity", "low": "-Infinity"})
    assert Span.objects.get().attributes == {"r": "NaN"}


@MEDIA
def test_it_stores_metric_values_that_are_not_finite_as_no_value(client, key, tenant, media):
    minute = NOW - NOW % 60_000_000_000 - 120_000_000_000  # a whole minute, two minutes ago
    points = [
        {"timeUnixNano": str(minute + i * 10**9), "asDouble": value}
        for i, value in enumerate(["NaN", "Infinity", "-Infinity", 2.0, 4.0])
    ]
    points[0]["exemplars"] = [
        {"asDouble": "Infinity", "traceId": TRACE, "spanId": SPAN, "timeUnixNano": str(minute)}
    ]
    histogram = {
        "name": "latency",
        "histogram": {
            "aggregationTemporality": 1,
            "dataPoints": [
                {
                    "timeUnixNano": str(minute),
                    "count": "2",
                    "sum": "NaN",
                    "min": "-Infinity",
                    "max": 3.0,
                    "bucketCounts": ["1", "1"],
                    "explicitBounds": [1.0],
                }
            ],
        },
    }
    summary = {
        "name": "legacy",
        "summary": {
            "dataPoints": [
                {
                    "timeUnixNano": str(minute),
                    "count": "2",
                    "sum": "Infinity",
                    "quantileValues": [
                        {"quantile": 0.5, "value": "NaN"},
                        {"quantile": 0.99, "value": "Infinity"},
                        {"quantile": 1.0, "value": 7.0},
                    ],
                }
            ]
        },
    }
    tree = metrics(gauge("ratio", *points), histogram, summary)

    assert reply(post(client, key, "metrics", tree, media)) == {}

    values = MetricPoint.objects.filter(name="ratio").order_by("time_ns")
    assert [p.value for p in values] == [None, None, None, 2.0, 4.0]
    assert values[0].exemplars[0]["value"] is None
    assert MetricExemplar.objects.get().value is None
    latency = MetricPoint.objects.get(name="latency")
    assert (latency.sum, latency.min, latency.max) == (None, None, 3.0)
    legacy = MetricPoint.objects.get(name="legacy")
    assert legacy.sum is None
    assert legacy.buckets == {"quantiles": [[0.5, None], [0.99, None], [1.0, 7.0]]}

    # Aggregated as points without a value, and answered as JSON.
    run(tenant, "1m", datetime.fromtimestamp(minute / 1e9, tz=UTC))
    gauge_window = MetricSeries.objects.get(name="ratio", window="1m")
    assert (gauge_window.count, gauge_window.min, gauge_window.max, gauge_window.mean) == (
        2,
        2.0,
        4.0,
        3.0,
    )
    response = client.get(
        "/api/metrics/series?window=1m", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert {s["name"] for s in response.json()["results"]} == {"ratio", "latency", "legacy"}


def test_it_aggregates_a_window_of_the_largest_doubles_and_bounds_without_overflow(
    client, key, tenant
):
    # Double.MAX_VALUE, a common "no value yet" sentinel: two in one window would overflow the
    # sum (PostgreSQL fails the window's statement on it), so it is stored as no value.
    largest = 1.7976931348623157e308
    minute = NOW - NOW % 60_000_000_000 - 120_000_000_000
    values = [largest, -largest, 1e300, -1e300, 1e300]
    points = [{"timeUnixNano": str(minute + i), "asDouble": v} for i, v in enumerate(values)]
    # The widest bounds it takes, and 2^53 observations: the interpolation stays finite.
    wide = {
        "name": "wide",
        "histogram": {
            "aggregationTemporality": 1,
            "dataPoints": [
                {
                    "timeUnixNano": str(minute),
                    "count": str(2**53),
                    "bucketCounts": ["0", str(2**53), "0"],
                    "explicitBounds": [-1e300, 1e300],
                    "min": largest,
                }
            ],
        },
    }

    post(client, key, "metrics", metrics(gauge("sentinel", *points), wide), otlp.JSON)
    run(tenant, "1m", datetime.fromtimestamp(minute / 1e9, tz=UTC))

    stored = MetricPoint.objects.filter(name="sentinel").order_by("time_ns")
    assert list(stored.values_list("value", flat=True)) == [None, None, 1e300, -1e300, 1e300]
    sentinel = MetricSeries.objects.get(name="sentinel", window="1m")
    assert (sentinel.count, sentinel.min, sentinel.max) == (3, -1e300, 1e300)
    assert sentinel.mean == 1e300 / 3  # PostgreSQL's AVG would overflow summing squares
    assert MetricSeries.objects.get(name="wide", window="1m").p50 == 0.0


# --- enums and integers out of their columns' ranges -------------------------------------------


@MEDIA
def test_it_rejects_spans_whose_enums_are_out_of_range_and_stores_the_others(client, key, media):
    tree = traces(
        span(spanId="00000000000000a1", kind=-1),
        span(spanId="00000000000000a2", kind=99),
        span(spanId="00000000000000a3", status={"code": 7}),
        span(spanId="00000000000000a4", kind=2, status={"code": 2}),
    )

    response = post(client, key, "traces", tree, media)

    answer = reply(response)
    if media == otlp.JSON:
        partial = answer["partialSuccess"]
        assert partial["rejectedSpans"] == "3"
        assert "kind -1 is not a SpanKind (0 to 5)" in partial["errorMessage"]
        assert "kind 99 is not a SpanKind (0 to 5)" in partial["errorMessage"]
        assert "status.code 7 is not a StatusCode (0 to 2)" in partial["errorMessage"]
    assert list(Span.objects.values_list("span_id", "kind", "status_code")) == [
        ("00000000000000a4", 2, 2)
    ]


@MEDIA
def test_it_rejects_what_its_columns_cannot_hold_and_stores_the_rest(client, key, media):
    records = [
        {"timeUnixNano": str(NOW), "severityNumber": -1},
        {"timeUnixNano": str(NOW), "severityNumber": 9, "body": {"stringValue": "kept"}},
    ]
    points = [
        {"timeUnixNano": str(NOW), "startTimeUnixNano": str(2**64 - 1), "asInt": "1"},
        {
            "timeUnixNano": str(NOW),
            "asInt": "2",
            "exemplars": [{"timeUnixNano": str(2**64 - 1), "asInt": "2", "traceId": TRACE}],
        },
    ]
    tree = metrics(
        gauge("g", *points),
        gauge("m" * 256, {"timeUnixNano": str(NOW), "asInt": "1"}),
        {
            "name": "h",
            "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [{"timeUnixNano": str(NOW), "count": str(2**64 - 1)}],
            },
        },
        {
            "name": "c",
            "sum": {
                "aggregationTemporality": 3,
                "dataPoints": [{"timeUnixNano": str(NOW), "asInt": "1"}],
            },
        },
    )

    logs_reply = reply(post(client, key, "logs", logs(*records), media))
    metrics_reply = reply(post(client, key, "metrics", tree, media))

    if media == otlp.JSON:
        assert logs_reply["partialSuccess"]["rejectedLogRecords"] == "1"
        assert metrics_reply["partialSuccess"]["rejectedDataPoints"] == "4"
    assert list(LogRecord.objects.values_list("severity_number", "body")) == [(9, "kept")]
    (stored,) = MetricPoint.objects.all()
    assert (stored.name, stored.value) == ("g", 2.0)
    assert MetricExemplar.objects.get().time_ns == NOW  # its point's time stood in
