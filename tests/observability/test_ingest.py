"""OTLP/HTTP trace ingestion end to end: the HTTP edge, the stored batch, TraceIngestionWorker."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from core import services
from core.models import Event, Failure, Message
from core.runtime import dispatch, scheduling
from observability import otlp, traces
from observability.models import Span, TelemetryBatch, TraceRecord
from tests.helpers import drain_all

pytestmark = pytest.mark.django_db
NOW_NS = time.time_ns()
TRACE = "5b8efff798038103d269b633813fc60c"


def span(
    span_id: str,
    name: str,
    *,
    parent: str = "",
    trace: str = TRACE,
    error=False,
    duration_ms: float = 5,
) -> dict:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(NOW_NS),
        "endTimeUnixNano": str(NOW_NS + int(duration_ms * 1_000_000)),
        "status": {"code": 2 if error else 1},
        "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
    }


def batch(*spans: dict, service: str = "checkout") -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, body: bytes, *, content_type=otlp.JSON, **headers):
    return client.post(
        "/v1/traces",
        data=body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def ingest() -> None:
    drain_all("TraceIngestionWorker")


def test_it_projects_a_batch_into_a_trace_record(client, key, tenant):
    body = batch(
        span("eee19b7ec3c1b174", "GET /cart"),
        span("eee19b7ec3c1b175", "SELECT cart", parent="eee19b7ec3c1b174", error=True),
    )

    response = post(client, key, body)
    ingest()

    assert response.status_code == 200 and response.json() == {}
    record = TraceRecord.objects.get(tenant=tenant, trace_id=TRACE)
    assert (record.span_count, record.error_count, record.status) == (2, 1, "error")
    assert (record.root_name, record.root_service, record.services) == (
        "GET /cart",
        "checkout",
        ["checkout"],
    )
    stored = Span.objects.get(span_id="eee19b7ec3c1b175")
    assert stored.attributes == {"http.route": "/cart"}
    assert stored.parent_span_id == "eee19b7ec3c1b174"


def test_it_changes_nothing_when_a_batch_is_sent_again(client, key):
    body = batch(span("eee19b7ec3c1b174", "GET /cart"))
    post(client, key, body)
    ingest()
    events = Event.objects.filter(type="TraceRecorded").count()

    post(client, key, body)
    ingest()

    assert Span.objects.count() == 1
    assert TraceRecord.objects.get().span_count == 1
    assert Event.objects.filter(type="TraceRecorded").count() == events == 1


def test_it_merges_spans_of_one_trace_from_several_batches(client, key):
    post(
        client,
        key,
        batch(span("eee19b7ec3c1b175", "SELECT", parent="eee19b7ec3c1b174"), service="db"),
    )
    post(client, key, batch(span("eee19b7ec3c1b174", "GET /cart", duration_ms=50)))
    ingest()

    record = TraceRecord.objects.get()
    assert (record.span_count, record.root_name) == (2, "GET /cart")
    assert record.services == ["checkout", "db"]
    assert record.duration_ms == pytest.approx(50)


def test_it_adds_a_later_batch_to_the_trace_record_it_merged_before(client, key):
    post(client, key, batch(span("eee19b7ec3c1b175", "SELECT", parent="eee19b7ec3c1b174")))
    ingest()
    assert TraceRecord.objects.get().root_name == ""
    late_root = span("eee19b7ec3c1b174", "GET /cart", error=True, duration_ms=50)

    post(client, key, batch(late_root, service="edge"))
    ingest()

    record = TraceRecord.objects.get()
    assert (record.span_count, record.error_count, record.status) == (2, 1, "error")
    assert (record.root_span_id, record.root_name, record.root_service) == (
        "eee19b7ec3c1b174",
        "GET /cart",
        "edge",
    )
    assert record.services == ["checkout", "edge"]
    assert record.duration_ms == pytest.approx(50)


def test_it_keeps_the_earliest_root_when_a_trace_has_several(client, key):
    first = {**span("eee19b7ec3c1b174", "first"), "startTimeUnixNano": str(NOW_NS - 1000)}
    post(client, key, batch(span("eee19b7ec3c1b176", "later")))
    ingest()
    post(client, key, batch(first))
    ingest()
    post(client, key, batch(span("eee19b7ec3c1b177", "latest")))
    ingest()

    assert TraceRecord.objects.get().root_name == "first"


def test_it_publishes_one_trace_recorded_per_trace_not_per_span(client, key):
    other = "0af7651916cd43dd8448eb211c80319c"
    post(
        client,
        key,
        batch(
            span("eee19b7ec3c1b174", "a"),
            span("eee19b7ec3c1b175", "b"),
            span("eee19b7ec3c1b176", "c", trace=other),
        ),
    )
    ingest()

    recorded = Event.objects.filter(type="TraceRecorded")
    assert sorted(e.data["traceId"] for e in recorded) == sorted([TRACE, other])


def test_it_raises_runtime_signals_for_error_and_slow_spans(client, key, settings):
    settings.TRACE_SLOW_SPAN_MS = 100
    post(
        client,
        key,
        batch(
            span("eee19b7ec3c1b174", "slow", duration_ms=250),
            span("eee19b7ec3c1b175", "broken", error=True),
        ),
    )
    ingest()

    signals = {e.data["signal"]: e.data for e in Event.objects.filter(type="RuntimeSignalDetected")}
    assert signals["slow"]["spanIds"] == ["eee19b7ec3c1b174"]
    assert signals["error"]["spanIds"] == ["eee19b7ec3c1b175"]
    assert signals["error"]["traceId"] == TRACE


def test_it_gives_each_runtime_signal_of_a_trace_its_own_identity(
    client, key, settings, make_worker
):
    # A consumer that deduplicates on (source, sourceId), as FeedbackCreationWorker will.
    seen = []
    make_worker(
        "SignalConsumer",
        handler=lambda envelope: seen.append(envelope.data["signal"]),
        events=("RuntimeSignalDetected",),
        key=lambda envelope: f"{envelope.source}|{envelope.source_id}",
    )
    settings.TRACE_SLOW_SPAN_MS = 100
    post(
        client,
        key,
        batch(
            span("eee19b7ec3c1b174", "slow", duration_ms=250),
            span("eee19b7ec3c1b175", "broken", error=True),
        ),
    )
    ingest()

    signals = Event.objects.filter(type="RuntimeSignalDetected")
    identities = sorted((e.id, e.source, e.source_id) for e in signals)
    assert len({(source, source_id) for _, source, source_id in identities}) == 2
    assert len({event_id for event_id, _, _ in identities}) == 2
    drain_all("SignalConsumer")
    assert sorted(seen) == ["error", "slow"]

    # Handling the same batch again publishes the same events: nothing new.
    Span.objects.all().delete()
    TraceRecord.objects.all().delete()
    Message.objects.filter(worker="TraceIngestionWorker").update(
        state="pending", due_at=timezone.now()
    )
    ingest()

    again = Event.objects.filter(type="RuntimeSignalDetected")
    assert sorted((e.id, e.source, e.source_id) for e in again) == identities


def test_it_answers_partial_success_and_keeps_the_valid_spans(client, key):
    bad = span("0000000000000000", "no id")
    response = post(client, key, batch(span("eee19b7ec3c1b174", "good"), bad))
    ingest()

    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "spanId" in partial["errorMessage"]
    assert list(Span.objects.values_list("name", flat=True)) == ["good"]


def test_it_answers_protobuf_in_protobuf(client, key):
    request = otlp.decode("traces", batch(span("eee19b7ec3c1b174", "GET /")), otlp.JSON)

    response = post(client, key, request.SerializeToString(), content_type=otlp.PROTOBUF)

    assert response.status_code == 200
    assert response["Content-Type"] == otlp.PROTOBUF
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()


def test_it_accepts_a_gzipped_body(client, key):
    body = gzip.compress(batch(span("eee19b7ec3c1b174", "GET /")))

    response = post(client, key, body, **{"Content-Encoding": "gzip"})
    ingest()

    assert response.status_code == 200
    assert Span.objects.count() == 1


def test_it_refuses_a_body_over_the_cap_after_decompression(client, key, settings):
    settings.OTLP_MAX_BODY_BYTES = 10_000
    bomb = gzip.compress(b" " * 1_000_000)  # a kilobyte that inflates to a megabyte

    response = post(client, key, bomb, **{"Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert "10000 bytes" in response.json()["message"]
    assert not TelemetryBatch.objects.exists()


def test_it_refuses_an_undecodable_body_with_a_clear_message(client, key):
    response = post(client, key, b'{"resourceSpans": [')

    assert response.status_code == 400
    assert response.json()["message"]
    assert not TelemetryBatch.objects.exists()


def test_it_refuses_garbage_protobuf(client, key):
    response = post(client, key, b"\xff\xff\xff", content_type=otlp.PROTOBUF)

    assert response.status_code == 400
    assert response["Content-Type"] == otlp.PROTOBUF


def test_it_refuses_a_request_without_a_key(client):
    response = client.post("/v1/traces", data=b"{}", content_type=otlp.JSON)

    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["message"]


def test_it_sheds_load_over_the_tenants_rate_with_retry_after(client, key, settings):
    settings.OTLP_TENANT_REQUESTS_PER_SECOND = 1
    # Three requests span at most two one-second windows: one of them is over the rate.
    responses = [post(client, key, b"{}") for _ in range(3)]

    refused = [r for r in responses if r.status_code == 429]
    assert refused and refused[0]["Retry-After"] == "1"
    assert "per second" in refused[0].json()["message"]


def test_it_sheds_load_when_ingestion_is_too_far_behind(client, key, settings):
    settings.OTLP_BACKLOG_CEILING = 1
    post(client, key, batch(span("eee19b7ec3c1b174", "a")))
    post(client, key, batch(span("eee19b7ec3c1b175", "b")))

    response = post(client, key, batch(span("eee19b7ec3c1b176", "c")))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_it_keeps_each_tenants_traces_apart(client, key, tenant, other_tenant):
    other_key = services.issue_api_key(tenant=other_tenant)
    post(client, key, batch(span("eee19b7ec3c1b174", "mine")))
    post(client, other_key, batch(span("eee19b7ec3c1b174", "theirs")))
    ingest()

    assert TraceRecord.objects.get(tenant=tenant).root_name == "mine"
    assert TraceRecord.objects.get(tenant=other_tenant).root_name == "theirs"


def test_it_refuses_a_content_type_it_does_not_speak(client, key):
    response = post(client, key, b"spans", content_type="text/plain")

    assert response.status_code == 415
    assert "application/x-protobuf" in response.json()["message"]


def test_it_retries_a_batch_whose_span_a_concurrent_batch_stored_first(
    client, key, postgres, monkeypatch
):
    body = batch(span("eee19b7ec3c1b174", "GET /cart"))
    post(client, key, body)
    ingest()
    # The same span again, and a concurrent batch stores it between the check and the COPY.
    post(client, key, body)
    monkeypatch.setattr(traces, "_not_stored", lambda tenant_id, rows: rows)
    dispatch.drain("TraceIngestionWorker")
    monkeypatch.undo()

    failure = Failure.objects.get(worker="TraceIngestionWorker")
    assert "IntegrityError" in failure.error and not failure.permanent
    Message.objects.filter(state="pending").update(due_at=timezone.now())
    ingest()

    assert Span.objects.count() == 1
    assert not Message.objects.filter(worker="TraceIngestionWorker").exclude(state="done").exists()


def test_it_prunes_stored_requests_once_ingested_and_old(client, key, settings):
    settings.OTLP_BATCH_RETENTION_HOURS = 24
    post(client, key, batch(span("eee19b7ec3c1b174", "old")))
    post(client, key, batch(span("eee19b7ec3c1b175", "recent")))
    ingest()
    old, recent = TelemetryBatch.objects.order_by("received_at")
    TelemetryBatch.objects.filter(id=old.id).update(
        received_at=timezone.now() - timedelta(hours=25)
    )

    scheduling.prune()

    assert list(TelemetryBatch.objects.values_list("id", flat=True)) == [recent.id]
    assert Span.objects.count() == 2


def test_it_keeps_an_old_request_whose_ingestion_is_not_done(client, key):
    post(client, key, batch(span("eee19b7ec3c1b174", "waiting")))
    TelemetryBatch.objects.update(received_at=timezone.now() - timedelta(days=3))

    scheduling.prune()

    assert TelemetryBatch.objects.count() == 1


def test_it_dead_letters_a_message_naming_another_tenants_batch(client, key, other_tenant):
    post(client, key, batch(span("eee19b7ec3c1b174", "mine")))
    stored = TelemetryBatch.objects.get()
    Message.objects.update(state="done")
    services.send(
        tenant=other_tenant,
        worker="TraceIngestionWorker",
        type="TelemetryBatchReceived",
        data={"batchId": str(stored.id), "signal": "traces", "items": 1},
    )

    ingest()

    dead = Message.objects.get(tenant=other_tenant)
    assert dead.state == "dead" and "no stored request" in dead.last_error
    assert not Span.objects.exists()


@pytest.mark.parametrize(
    ("name", "content_type"), [("traces.json", otlp.JSON), ("traces.pb", otlp.PROTOBUF)]
)
def test_it_keeps_each_spans_resource_and_scope(client, key, name, content_type):
    body = (Path(__file__).parent / "golden" / name).read_bytes()

    response = post(client, key, body, content_type=content_type)
    ingest()

    assert response.status_code == 200
    span = Span.objects.get(span_id="eee19b7ec3c1b174")
    assert (span.scope, span.scope_version) == ("io.opentelemetry.django", "0.66b2")
    assert span.scope_attributes == {"scope.attr": True}
    assert span.resource == {"service.name": "checkout", "host.cpu.count": 8}
    assert span.service == "checkout"
