"""TelemetryCorrelationWorker: stitch traces, logs, metrics and feedback into TelemetryCorrelation
by traceId.

Declared from the seed catalog. Its handler comes with the telemetry ingestion issue; until then
it receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker

WORKER = Worker(
    name="TelemetryCorrelationWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Stitch traces, logs, metrics and feedback into TelemetryCorrelation by traceId.",
    trigger=Trigger(events=(WILDCARD,), description="Event (any)"),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=2, cap_seconds=300, description="Backoff; DLQ after 5"
    ),
    idempotency=Idempotency("Upsert by traceId"),
)
