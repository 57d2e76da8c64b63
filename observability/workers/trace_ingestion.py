"""TraceIngestionWorker: normalise and project incoming spans into correlated TraceRecord views.

Declared from the seed catalog. Its handler comes with the telemetry ingestion issue; until then
it receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker

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
)
