"""OTLP/HTTP metrics: every kind of data point stored once, as received, for aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from core import services
from observability import otlp
from observability.models import MetricPoint
from tests.helpers import drain_all

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "golden" / "metrics.json"


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, body: bytes, content_type=otlp.JSON):
    return client.post(
        "/v1/metrics",
        data=body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {key}"},
    )


def ingest() -> None:
    drain_all("TraceIngestionWorker")


def point(name: str) -> MetricPoint:
    return MetricPoint.objects.get(name=name)


def test_it_stores_every_kind_of_point(client, key, tenant):
    response = post(client, key, GOLDEN.read_bytes())
    ingest()

    assert response.status_code == 200 and response.json() == {}
    kinds = dict(MetricPoint.objects.values_list("name", "kind"))
    assert kinds["process.thread.count"] == MetricPoint.Kind.GAUGE
    assert kinds["legacy.request.latency"] == MetricPoint.Kind.SUMMARY
    assert kinds["rpc.server.duration"] == MetricPoint.Kind.EXPONENTIAL_HISTOGRAM
    assert MetricPoint.objects.filter(tenant=tenant).count() == 10
    assert point("process.thread.count").value == 12


def test_it_keeps_temporality_and_monotonicity_of_sums(client, key):
    post(client, key, GOLDEN.read_bytes())
    ingest()

    delta, cumulative = point("http.server.request.count"), point("queue.depth")
    assert (delta.temporality, delta.monotonic) == (MetricPoint.Temporality.DELTA, True)
    assert (cumulative.temporality, cumulative.monotonic) == (
        MetricPoint.Temporality.CUMULATIVE,
        False,
    )


def test_it_keeps_histogram_buckets_and_exemplar_trace_ids(client, key):
    post(client, key, GOLDEN.read_bytes())
    ingest()

    histogram = point("http.server.request.duration")
    source = next(
        m
        for rm in json.loads(GOLDEN.read_text())["resourceMetrics"]
        for sm in rm["scopeMetrics"]
        for m in sm["metrics"]
        if m["name"] == "http.server.request.duration"
    )["histogram"]["dataPoints"][0]
    assert histogram.buckets["bounds"] == source["explicitBounds"]
    assert histogram.buckets["counts"] == [int(c) for c in source["bucketCounts"]]
    assert histogram.count == int(source["count"])
    assert [e["traceId"] for e in histogram.exemplars] == [
        e["traceId"].lower() for e in source["exemplars"]
    ]


def test_it_changes_nothing_when_a_batch_is_sent_again(client, key):
    post(client, key, GOLDEN.read_bytes())
    ingest()
    post(client, key, GOLDEN.read_bytes())
    ingest()

    assert MetricPoint.objects.count() == 10


def test_it_tells_series_apart_by_their_attributes(client, key):
    post(client, key, GOLDEN.read_bytes())
    ingest()

    cpu = MetricPoint.objects.filter(name="system.cpu.utilization")
    assert cpu.count() == 2
    assert cpu.values("series_key").distinct().count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_stores_what_the_real_sdk_exporter_sends(live_server, tenant):
    key = services.issue_api_key(tenant=tenant)
    exporter = OTLPMetricExporter(
        endpoint=f"{live_server.url}/v1/metrics", headers={"Authorization": f"Bearer {key}"}
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "checkout"}), metric_readers=[reader]
    )
    meter = provider.get_meter("tests")
    meter.create_counter("orders").add(3, {"region": "eu"})
    meter.create_histogram("latency", unit="ms").record(42.0)
    provider.shutdown()  # flushes: one export over HTTP

    ingest()

    orders = MetricPoint.objects.get(tenant=tenant, name="orders")
    assert (orders.value, orders.attributes) == (3.0, {"region": "eu"})
    assert orders.resource["service.name"] == "checkout"
    latency = MetricPoint.objects.get(tenant=tenant, name="latency")
    assert (latency.count, latency.sum, latency.unit) == (1, 42.0, "ms")
