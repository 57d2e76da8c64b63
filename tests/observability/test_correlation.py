"""TelemetryCorrelationWorker: one snapshot per trace of everything that carries its traceId."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, transaction

from core import services
from core.envelope import Envelope
from core.models import Event, Message
from core.runtime import dispatch, registry
from observability import correlation
from observability.models import LogRecord, MetricExemplar, TelemetryCorrelation
from tests.helpers import drain_all, post_otlp

pytestmark = pytest.mark.django_db
NOW_NS = time.time_ns()
TRACE = "5b8efff798038103d269b633813fc60c"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, CHILD = "eee19b7ec3c1b174", "eee19b7ec3c1b175"
WORKER = "TelemetryCorrelationWorker"


def span(span_id: str, name: str, *, parent: str = "", error=False, trace=TRACE) -> dict:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(NOW_NS),
        "endTimeUnixNano": str(NOW_NS + 5_000_000),
        "status": {"code": 2 if error else 1, "message": "boom" if error else ""},
    }


def batch(*spans: dict) -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}
    return json.dumps(
        {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}
    ).encode()


def post_trace(client, tenant, *spans: dict) -> None:
    key = services.issue_api_key(tenant=tenant)
    response = client.post(
        "/v1/traces",
        data=batch(*spans),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
    drain("TraceIngestionWorker")


def drain(worker: str) -> None:
    drain_all(worker)


def correlate() -> None:
    drain(WORKER)


def log(tenant, key: str, *, severity: int, body: str, offset_ms: int = 0, trace=TRACE):
    return LogRecord.objects.create(
        tenant=tenant,
        record_key=key,
        time_ns=NOW_NS + offset_ms * 1_000_000,
        severity_number=severity,
        severity_text={9: "INFO", 13: "WARN", 17: "ERROR"}.get(severity, ""),
        body=body,
        service="checkout",
        trace_id=trace,
        span_id=CHILD,
    )


def metric_point(tenant, name: str, *exemplar_traces: str, value: float = 1.0) -> None:
    """The exemplars of one histogram point, as metric ingestion stores those naming traces."""
    MetricExemplar.objects.bulk_create(
        MetricExemplar(
            tenant=tenant,
            trace_id=t,
            span_id=CHILD,
            name=name,
            unit="ms",
            series_key=name.ljust(64, "0")[:64],
            value=value,
            time_ns=NOW_NS + i,
            point_time_ns=NOW_NS + 1_000_000_000,
        )
        for i, t in enumerate(exemplar_traces)
    )


def snapshot(tenant, trace=TRACE) -> TelemetryCorrelation:
    return TelemetryCorrelation.objects.get(tenant=tenant, trace_id=trace)


def content(row: TelemetryCorrelation) -> dict:
    return {name: getattr(row, name) for name in correlation._CONTENT}


def envelope_of(event: Event) -> Envelope:
    return Envelope.from_event(event)


@pytest.fixture
def traced(client, tenant):
    """A trace of two spans (one failed) with logs and a metric exemplar, correlated once."""
    log(tenant, "a" * 64, severity=9, body="cart loaded", offset_ms=1)
    log(tenant, "b" * 64, severity=17, body="card declined", offset_ms=2)
    metric_point(tenant, "http.server.request.duration", TRACE, OTHER_TRACE, value=42.0)
    post_trace(
        client,
        tenant,
        span(ROOT, "GET /cart"),
        span(CHILD, "charge card", parent=ROOT, error=True),
    )
    correlate()
    return snapshot(tenant)


def test_it_is_built_and_receives_every_public_event():
    worker = registry.get(WORKER)

    assert worker.built and worker.batch_handler is correlation.correlate
    assert worker.trigger.matches("BuildFailed") and not worker.trigger.matches("ScheduleFired")


def test_it_holds_the_trace_summary_and_its_error_spans(traced):
    trace = traced.trace

    assert (trace["rootName"], trace["rootService"], trace["services"]) == (
        "GET /cart",
        "checkout",
        ["checkout"],
    )
    assert (trace["spanCount"], trace["errorCount"], trace["status"]) == (2, 1, "error")
    assert trace["startTimeUnixNano"] == NOW_NS
    assert trace["durationMs"] == pytest.approx(5)
    assert trace["errorSpans"] == [
        {"spanId": CHILD, "name": "charge card", "service": "checkout", "statusMessage": "boom"}
    ]


def test_it_holds_the_logs_of_the_trace_newest_first_with_severity_counts(traced):
    assert traced.log_count == 2
    assert traced.logs["bySeverity"] == {"INFO": 1, "ERROR": 1}
    assert [(r["severity"], r["body"]) for r in traced.logs["latest"]] == [
        ("ERROR", "card declined"),
        ("INFO", "cart loaded"),
    ]
    assert traced.logs["latest"][0]["spanId"] == CHILD


def test_it_holds_only_the_exemplars_that_point_at_the_trace(traced):
    assert traced.exemplar_count == 1
    [exemplar] = traced.exemplars
    assert (exemplar["metric"], exemplar["spanId"], exemplar["value"]) == (
        "http.server.request.duration",
        CHILD,
        42.0,
    )
    assert exemplar["timeUnixNano"] == NOW_NS


def test_it_holds_the_events_that_named_the_trace(traced, tenant):
    named = Event.objects.filter(tenant=tenant, data__traceId=TRACE)

    assert traced.event_count == named.count() == 2  # TraceRecorded, RuntimeSignalDetected
    assert {e["type"] for e in traced.events} == {"TraceRecorded", "RuntimeSignalDetected"}
    assert {e["eventId"] for e in traced.events} == {str(e.id) for e in named}
    signal = next(e for e in traced.events if e["type"] == "RuntimeSignalDetected")
    assert signal["signal"] == "error" and signal["source"] == "TraceIngestionWorker"


def test_it_gives_the_same_snapshot_when_the_same_event_is_handled_again(traced, tenant):
    event = Event.objects.get(tenant=tenant, type="TraceRecorded", data__traceId=TRACE)
    before = content(traced)

    correlation.correlate([envelope_of(event)])
    correlation.correlate([envelope_of(event), envelope_of(event)])

    after = snapshot(tenant)
    assert content(after) == before
    assert after.updated == traced.updated  # nothing changed, nothing written
    assert TelemetryCorrelation.objects.count() == 1


def test_it_does_nothing_for_an_event_without_a_trace_id(tenant):
    unnamed = services.publish(tenant=tenant, type="BuildFailed", data={"build": 7})
    named = services.publish(tenant=tenant, type="BuildFailed", data={"build": 8, "traceId": TRACE})

    correlation.correlate([unnamed])

    assert not TelemetryCorrelation.objects.exists()
    # Not even a message: at publish the worker takes only the events that name a trace.
    messages = Message.objects.filter(worker=WORKER).values_list("event_id", flat=True)
    assert list(messages) == [named.event_id]


def test_it_ignores_what_is_not_a_trace_id():
    assert correlation.trace_ids_of({"traceId": "0" * 32}) == []
    assert correlation.trace_ids_of({"traceId": "nope", "traceIds": [7, None]}) == []
    assert correlation.trace_ids_of({"traceId": TRACE.upper(), "traceIds": [TRACE]}) == [TRACE]


def test_it_takes_no_trace_id_followed_by_a_newline():
    # `$` matches before a trailing newline: "<32 hex digits>\n" was taken, and stored.
    assert correlation.trace_ids_of({"traceId": TRACE + "\n"}) == []


def test_it_never_shows_another_tenants_logs_points_or_events(client, tenant, other_tenant):
    log(other_tenant, "c" * 64, severity=17, body="not yours")
    metric_point(other_tenant, "other.metric", TRACE)
    services.publish(tenant=other_tenant, type="BuildFailed", data={"traceId": TRACE})
    post_trace(client, tenant, span(ROOT, "GET /cart"))

    correlate()

    mine = snapshot(tenant)
    assert (mine.log_count, mine.exemplar_count) == (0, 0)
    assert [e["type"] for e in mine.events] == ["TraceRecorded"]
    theirs = snapshot(other_tenant)
    assert theirs.trace is None  # the trace's spans are the first tenant's
    assert (theirs.log_count, theirs.exemplar_count, theirs.event_count) == (1, 1, 1)


def test_it_updates_the_snapshot_on_a_runtime_signal(traced, tenant):
    log(tenant, "d" * 64, severity=13, body="slow charge", offset_ms=3)
    services.publish(
        tenant=tenant,
        type="RuntimeSignalDetected",
        data={"traceId": TRACE, "signal": "slow", "spanIds": [CHILD]},
    )

    correlate()

    updated = snapshot(tenant)
    assert updated.event_count == 3
    assert updated.events[0]["signal"] == "slow"  # newest first
    assert updated.log_count == 3 and updated.logs["latest"][0]["body"] == "slow charge"
    assert updated.updated > traced.updated


def test_it_correlates_every_trace_of_a_trace_ids_list(tenant):
    services.publish(
        tenant=tenant,
        type="IncidentOpened",
        data={"incidentId": "inc-1", "traceIds": [TRACE, OTHER_TRACE]},
    )
    log(tenant, "e" * 64, severity=17, body="other trace", trace=OTHER_TRACE)

    correlate()

    first, second = snapshot(tenant), snapshot(tenant, OTHER_TRACE)
    assert [e["type"] for e in first.events] == [e["type"] for e in second.events]
    assert first.events[0]["type"] == "IncidentOpened"
    assert (first.log_count, second.log_count) == (0, 1)


def test_it_finds_exemplars_of_a_trace_not_ingested_yet(tenant):
    metric_point(tenant, "queue.wait", TRACE, value=3.0)
    services.publish(tenant=tenant, type="FeedbackItemCreated", data={"traceId": TRACE})

    correlate()

    row = snapshot(tenant)
    assert row.trace is None
    assert [e["metric"] for e in row.exemplars] == ["queue.wait"]


def test_it_stitches_logs_and_exemplars_ingested_after_the_trace(client, tenant):
    post_trace(client, tenant, span(ROOT, "GET /cart"))
    correlate()
    key = services.issue_api_key(tenant=tenant)
    record = {
        "timeUnixNano": str(NOW_NS + 1000),
        "severityNumber": 17,
        "body": {"stringValue": "card declined"},
        "traceId": TRACE,
        "spanId": ROOT,
    }
    post_otlp(client, key, "logs", {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
    point = {
        "timeUnixNano": str(NOW_NS + 2000),
        "asDouble": 12.5,
        "exemplars": [{"timeUnixNano": str(NOW_NS), "asDouble": 12.5, "traceId": TRACE}],
    }
    gauge = {"name": "queue.depth", "gauge": {"dataPoints": [point]}}
    post_otlp(
        client, key, "metrics", {"resourceMetrics": [{"scopeMetrics": [{"metrics": [gauge]}]}]}
    )

    correlate()

    row = snapshot(tenant)
    assert (row.log_count, row.logs["latest"][0]["body"]) == (1, "card declined")
    assert [(e["metric"], e["value"]) for e in row.exemplars] == [("queue.depth", 12.5)]
    # TelemetryLinked asked for the recompute; the trace's events are the public ones only.
    assert [e["type"] for e in row.events] == ["TraceRecorded"]


def test_it_correlates_a_whole_batch_of_events_in_one_call(tenant, spans):
    traces = [f"{n:032x}" for n in range(1, 41)]
    for t in traces:
        services.publish(tenant=tenant, type="FeedbackItemCreated", data={"traceId": t})
    services.publish(tenant=tenant, type="BuildFailed", data={"build": 1})  # not taken

    outcome = dispatch.drain(WORKER)

    assert outcome["handled"] == 40
    (call,) = [s for s in spans.get_finished_spans() if s.name == f"{WORKER} process"]
    assert call.attributes["messaging.batch.message_count"] == 40
    assert TelemetryCorrelation.objects.filter(tenant=tenant).count() == 40
    assert all(r.event_count == 1 for r in TelemetryCorrelation.objects.all())


@pytest.mark.django_db(transaction=True)
def test_it_makes_a_consumer_wait_for_another_correlating_the_same_trace(postgres, tenant):
    services.publish(tenant=tenant, type="FeedbackItemCreated", data={"traceId": TRACE})
    envelope = envelope_of(Event.objects.get(type="FeedbackItemCreated"))
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with transaction.atomic():
            correlation._serialise(tenant.pk, [TRACE])
            holding.set()
            release.wait(10)
            log(tenant, "f" * 64, severity=17, body="written while holding the trace")
        connection.close()

    def second() -> None:
        with transaction.atomic():
            correlation.correlate([envelope])
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(10)
    threads[1].start()
    threads[1].join(0.5)
    assert threads[1].is_alive()  # waiting for the first to commit

    release.set()
    for thread in threads:
        thread.join(10)

    assert snapshot(tenant).log_count == 1  # computed after the first committed
