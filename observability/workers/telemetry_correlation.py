"""TelemetryCorrelationWorker: stitch traces, logs, metrics and feedback into TelemetryCorrelation
by traceId.

Every public event reaches it (the wildcard); the handler is observability.correlation.correlate.
For each trace an event's data names (`traceId`, `traceIds`) it recomputes that trace's
TelemetryCorrelation snapshot from the stores (TraceRecord and error spans, log records, metric
exemplars, the events that named the trace) and upserts it by (tenant, traceId), writing only
when the content changed. An event naming no trace is handled as a no-op.
"""

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker
from observability import correlation

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
    handler=correlation.correlate,
)
