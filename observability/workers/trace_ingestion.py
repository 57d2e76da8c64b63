"""TraceIngestionWorker: normalise and project incoming spans into correlated TraceRecord views.

One message per accepted OTLP request (TelemetryBatchReceived, sent by POST /v1/traces); the
handler is observability.services.ingest. Metrics and logs come with the rest of the telemetry
ingestion issue.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker
from observability import services

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
    handler=services.ingest,
)
