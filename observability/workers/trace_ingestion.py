"""TraceIngestionWorker: normalise and project incoming spans into correlated TraceRecord views.

One message per accepted OTLP request (TelemetryBatchReceived, sent by POST /v1/traces,
/v1/metrics and /v1/logs); the batch handler is observability.services.ingest. It takes up to
BATCHES stored requests a call, so that the spans of several requests go into the database in
one COPY and one TraceRecord upsert, and commits them with their messages' marks.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker
from observability import services

BATCHES = 8  # 512-span requests: about 4,000 spans a call

WORKER = Worker(
    name="TraceIngestionWorker",
    module=__name__,
    app="observability",
    group="ingestion",
    purpose="Normalise and project incoming spans into correlated TraceRecord views.",
    trigger=Trigger(
        events=("TelemetryBatchReceived",),
        description="OTLP stream / queue: one message per stored OTLP request",
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_seconds=2,
        cap_seconds=300,
        description="Exponential backoff; DLQ after 5",
    ),
    idempotency=Idempotency("Dedup on span+traceId; upsert by traceId"),
    batch_handler=services.ingest,
    batch_size=BATCHES,
)
