"""The platform's own telemetry: queue depth gauges per worker, and trace ids on log records."""

from __future__ import annotations

import logging
import re

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from core import services, telemetry
from core.runtime import dispatch, health
from core.runtime.errors import PermanentError
from core.telemetry import TraceContextFilter

pytestmark = pytest.mark.django_db

GAUGES = ["platform.worker.backlog", "platform.worker.in_flight", "platform.worker.dead_letters"]


@pytest.fixture
def reader():
    """A MeterProvider of the test's own, with the gauges registered on it."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    telemetry.register_gauges(provider.get_meter("tests"), health.worker_counts)
    yield reader
    provider.shutdown()


def gauges(reader) -> dict[str, dict[str, int]]:
    """{gauge name: {worker: value}} as one collection reads them."""
    found: dict[str, dict[str, int]] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = {
                    point.attributes["worker"]: point.value for point in metric.data.data_points
                }
    return found


def refuse_poison(envelope) -> None:
    if envelope.data.get("poison"):
        raise PermanentError("poison")


def publish(tenant, **data):
    return services.publish(tenant=tenant, type="DeploymentPromoted", data=data)


def log_record() -> logging.LogRecord:
    record = logging.LogRecord("tests", logging.INFO, __file__, 1, "hello", None, None)
    assert TraceContextFilter().filter(record) is True
    return record


def test_it_reports_backlog_in_flight_and_dead_letters_per_worker(tenant, make_worker, reader):
    worker = make_worker(handler=refuse_poison)
    publish(tenant, poison=True)
    dispatch.drain("TestWorker")  # one dead letter
    for _ in range(3):
        publish(tenant)
    dispatch.claim(worker, limit=1)  # one in flight, two waiting

    values = gauges(reader)

    assert sorted(values) == sorted(GAUGES)
    assert values["platform.worker.backlog"]["TestWorker"] == 2
    assert values["platform.worker.in_flight"]["TestWorker"] == 1
    assert values["platform.worker.dead_letters"]["TestWorker"] == 1


def test_it_reports_what_health_counts(tenant, make_worker, reader):
    make_worker(handler=refuse_poison)
    publish(tenant, poison=True)
    dispatch.drain("TestWorker")
    publish(tenant)

    values = gauges(reader)

    for worker, counts in health.worker_counts().items():
        assert values["platform.worker.backlog"][worker] == counts["backlog"]
        assert values["platform.worker.in_flight"][worker] == counts["in_flight"]
        assert values["platform.worker.dead_letters"][worker] == counts["dead_letters"]


def test_it_reports_every_catalog_worker_even_when_idle(db, reader):
    values = gauges(reader)

    backlog = values["platform.worker.backlog"]
    assert {"TraceIngestionWorker", "WebhookDeliveryWorker", "IntegrationRetryWorker"} <= set(
        backlog
    )
    assert set(backlog.values()) == {0}


def test_it_reads_the_counts_afresh_at_each_collection(tenant, make_worker, reader):
    make_worker()
    publish(tenant)
    assert gauges(reader)["platform.worker.backlog"]["TestWorker"] == 1

    publish(tenant)
    publish(tenant)

    assert gauges(reader)["platform.worker.backlog"]["TestWorker"] == 3
    dispatch.drain("TestWorker")
    assert gauges(reader)["platform.worker.backlog"]["TestWorker"] == 0


def test_it_stamps_a_dash_on_log_records_outside_any_span():
    record = log_record()

    assert (record.trace_id, record.span_id) == ("-", "-")


def test_it_stamps_the_active_spans_ids_on_log_records():
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        record = log_record()

    context = span.get_span_context()
    assert record.trace_id == format(context.trace_id, "032x")
    assert record.span_id == format(context.span_id, "016x")


def test_it_gives_an_event_published_inside_a_span_that_spans_ids(tenant):
    with trace.get_tracer("tests").start_as_current_span("request") as span:
        envelope = publish(tenant)

    context = span.get_span_context()
    assert envelope.trace_id == format(context.trace_id, "032x")
    assert envelope.span_id == format(context.span_id, "016x")


def test_it_gives_an_event_published_outside_any_span_a_fresh_trace(tenant):
    first, second = publish(tenant), publish(tenant)

    for envelope in (first, second):
        assert re.fullmatch(r"[0-9a-f]{32}", envelope.trace_id)
        assert re.fullmatch(r"[0-9a-f]{16}", envelope.span_id)
    assert first.trace_id != second.trace_id
