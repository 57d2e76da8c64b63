"""Writes of the observability app: accepting OTLP batches and ingesting them."""

from __future__ import annotations

from django.db import transaction

from core import services as core_services
from core.envelope import Envelope
from core.models import Tenant
from observability import logs, metrics, otlp, traces
from observability.models import TelemetryBatch

INGESTION_WORKER = "TraceIngestionWorker"


def count_items(signal: str, request) -> int:
    if signal == "traces":
        return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    if signal == "metrics":
        return sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for r in request.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
            if m.WhichOneof("data")
        )
    return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)


@transaction.atomic
def accept_batch(
    *, tenant: Tenant, signal: str, request, rejections: otlp.Rejections
) -> TelemetryBatch:
    """Store a validated OTLP request and queue its ingestion, in one transaction: once the
    client has its 200, the batch will be ingested."""
    batch = TelemetryBatch.objects.create(
        tenant=tenant,
        signal=signal,
        payload=request.SerializeToString(),
        items=count_items(signal, request),
        rejected=rejections.count,
    )
    core_services.send(
        tenant=tenant,
        worker=INGESTION_WORKER,
        type="TelemetryBatchReceived",
        data={"batchId": str(batch.id), "signal": signal, "items": batch.items},
        source="otlp",
        source_id=str(batch.id),
    )
    return batch


def ingest(envelope: Envelope) -> None:
    """TraceIngestionWorker's handler: one stored batch into spans and traces, into raw metric
    points for MetricAggregationWorker, or into log records."""
    batch = TelemetryBatch.objects.get(id=envelope.data["batchId"], tenant_id=envelope.tenant_id)
    request = otlp.decode(batch.signal, bytes(batch.payload), otlp.PROTOBUF)
    if batch.signal == "metrics":
        metrics.store(batch.tenant_id, request)
        return
    if batch.signal == "logs":
        logs.store(batch.tenant_id, request)
        return
    projected = traces.project(batch.tenant_id, request)
    core_services.publish_envelopes(_events_of(envelope, batch, projected))


def _events_of(envelope: Envelope, batch: TelemetryBatch, projected: traces.Projected) -> list:
    """TraceRecorded per trace touched, and one RuntimeSignalDetected per trace and kind of
    signal (error spans, slow spans) for FeedbackCreationWorker; never one per span."""

    def event(type_: str, trace_id: str, data: dict):
        return core_services.build_envelope(
            tenant_id=batch.tenant_id,
            type=type_,
            data={"traceId": trace_id, **data},
            source="TraceIngestionWorker",
            source_id=f"{trace_id}:{type_}:{batch.id}",
            correlation_id=envelope.correlation_id,
            event_id=traces.event_id(batch.id, type_, trace_id, data.get("signal", "")),
        )

    found = [event("TraceRecorded", t, {}) for t in sorted(projected.traces)]
    for kind, spans in (("error", projected.error_spans), ("slow", projected.slow_spans)):
        found += [
            event("RuntimeSignalDetected", t, {"signal": kind, "spanIds": ids})
            for t, ids in sorted(spans.items())
        ]
    return found
