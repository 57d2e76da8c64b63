"""Writes of the observability app: accepting OTLP batches and ingesting them."""

from __future__ import annotations

import uuid
import zlib
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from core import services as core_services
from core.envelope import Envelope, TenantId
from core.models import Message, Tenant
from observability import logs, metrics, otlp, otlp_json, traces
from observability.models import TelemetryBatch

INGESTION_WORKER = "TraceIngestionWorker"
Encoding = TelemetryBatch.Encoding


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
    *,
    tenant: Tenant,
    signal: str,
    payload: bytes,
    encoding: str,
    items: int,
    rejected: int = 0,
    gzipped: bytes | None = None,
) -> TelemetryBatch:
    """Store the valid part of an OTLP request and queue its ingestion, in one transaction:
    once the client has its 200, the batch will be ingested. `gzipped`: the request's own
    body when it is `payload` gzipped, stored as it is rather than compressed again."""
    batch = TelemetryBatch.objects.create(
        tenant=tenant,
        signal=signal,
        payload=gzipped or zlib.compress(payload, 1),  # level 1: 20x smaller in 1 ms
        compressed=True,
        encoding=encoding,
        items=items,
        rejected=rejected,
    )
    core_services.send(
        tenant=tenant,
        worker=INGESTION_WORKER,
        type="TelemetryBatchReceived",
        data={"batchId": str(batch.id), "signal": signal, "items": items},
        source="otlp",
        source_id=str(batch.id),
    )
    return batch


def prune_batches(*, now: datetime, **kwargs) -> int:
    """Delete stored requests older than OTLP_BATCH_RETENTION_HOURS whose ingestion is done
    (their spans, points and records are stored); those still waiting or dead-lettered stay,
    for the retry or the replay. Connected to core's hourly prune."""
    cutoff = now - timedelta(hours=settings.OTLP_BATCH_RETENTION_HOURS)
    unfinished = Message.objects.filter(worker=INGESTION_WORKER).exclude(state=Message.State.DONE)
    keep = [uuid.UUID(i) for i in unfinished.values_list("event__source_id", flat=True)]
    old = TelemetryBatch.objects.filter(received_at__lt=cutoff).exclude(id__in=keep)
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:1000]):
        deleted += TelemetryBatch.objects.filter(id__in=ids).delete()[0]
    return deleted


def accept_request(
    *, tenant: Tenant, signal: str, request, rejections: otlp.Rejections
) -> TelemetryBatch:
    """Store a decoded and validated request (what is left of it) as protobuf."""
    return accept_batch(
        tenant=tenant,
        signal=signal,
        payload=request.SerializeToString(),
        encoding=Encoding.PROTOBUF,
        items=count_items(signal, request),
        rejected=rejections.count,
    )


def ingest(envelopes: list[Envelope]) -> None:
    """TraceIngestionWorker's batch handler: stored batches into spans and traces (all the
    span batches of one tenant in one projection), into raw metric points for
    MetricAggregationWorker, or into log records."""
    spans: dict = defaultdict(list)
    linked: dict = defaultdict(set)
    for envelope, batch in _batches_of(envelopes):
        if batch.signal == "metrics":
            linked[batch.tenant_id] |= metrics.store(batch.tenant_id, _decode(batch))
        elif batch.signal == "logs":
            linked[batch.tenant_id] |= logs.store(batch.tenant_id, _decode(batch))
        else:
            spans[batch.tenant_id].append((envelope, batch))
    for tenant_id, batches in spans.items():
        _ingest_spans(tenant_id, batches)
    core_services.publish_envelopes(
        [_linked(tenant_id, trace_ids) for tenant_id, trace_ids in linked.items() if trace_ids]
    )


def _batches_of(envelopes: list[Envelope]) -> list[tuple[Envelope, TelemetryBatch]]:
    """Each envelope's stored request, in one query, each looked up within its envelope's
    tenant (a batch of another tenant is not found: the envelope is refused)."""
    stored = TelemetryBatch.objects.in_bulk([e.data["batchId"] for e in envelopes])
    found = []
    for envelope in envelopes:
        batch = stored.get(uuid.UUID(envelope.data["batchId"]))
        if batch is None or batch.tenant_id != envelope.tenant_id:
            raise TelemetryBatch.DoesNotExist(
                f"no stored request {envelope.data['batchId']} of tenant {envelope.tenant_id}"
            )
        found.append((envelope, batch))
    return found


def _linked(tenant_id: TenantId, trace_ids: set[str]) -> Envelope:
    """Stored log records or exemplars name these traces: their correlations are stale."""
    return core_services.build_envelope(
        tenant_id=tenant_id,
        type="TelemetryLinked",
        data={"traceIds": sorted(trace_ids)},
        source="TraceIngestionWorker",
    )


def _decode(batch: TelemetryBatch):
    return otlp.decode(batch.signal, batch.body(), otlp.PROTOBUF)


def _span_rows(batch: TelemetryBatch) -> list[traces.SpanRow]:
    if batch.encoding == Encoding.JSON:
        return list(traces.rows_of_json(otlp_json.decode_traces(batch.body())))
    return list(traces.rows_of_proto(_decode(batch)))


def _ingest_spans(tenant_id: TenantId, batches: list[tuple[Envelope, TelemetryBatch]]) -> None:
    rows: list[traces.SpanRow] = []
    first_batch: dict[str, uuid.UUID] = {}
    for _, batch in batches:
        found = _span_rows(batch)
        for row in found:
            first_batch.setdefault(row.trace_id, batch.id)
        rows += found
    projected = traces.project(tenant_id, rows)
    core_services.publish_envelopes(_events_of(tenant_id, batches[0][0], projected, first_batch))


def _events_of(
    tenant_id: TenantId, envelope: Envelope, projected: traces.Projected, first_batch: dict
) -> list[Envelope]:
    """TraceRecorded per trace touched, and one RuntimeSignalDetected per trace and kind of
    signal (error spans, slow spans) for FeedbackCreationWorker; never one per span. Each has
    an identity of its own, its eventId and its sourceId (trace, type, kind of signal, batch),
    so that a consumer deduplicating on (source, sourceId) keeps both signals of a trace; both
    derive from the first batch that brought the trace's spans, so handling it again gives the
    same ones."""

    def event(type_: str, trace_id: str, data: dict) -> Envelope:
        batch_id = first_batch[trace_id]
        identity = [trace_id, type_, *([data["signal"]] if "signal" in data else []), batch_id]
        return core_services.build_envelope(
            tenant_id=tenant_id,
            type=type_,
            data={"traceId": trace_id, **data},
            source="TraceIngestionWorker",
            source_id=":".join(map(str, identity)),
            correlation_id=envelope.correlation_id,
            event_id=traces.event_id(batch_id, type_, trace_id, data.get("signal", "")),
        )

    found = [event("TraceRecorded", t, {}) for t in sorted(projected.traces)]
    for kind, spans in (("error", projected.error_spans), ("slow", projected.slow_spans)):
        found += [
            event("RuntimeSignalDetected", t, {"signal": kind, "spanIds": ids})
            for t, ids in sorted(spans.items())
        ]
    return found
