"""TelemetryCorrelationWorker: stitch traces, logs, metrics and feedback into TelemetryCorrelation
by traceId.

Every public event reaches it (the wildcard), and TelemetryLinked, which log and metric
ingestion publish when stored records or exemplars name traces. The batch handler is
observability.correlation.correlate: for the traces a batch of events names (`traceId`,
`traceIds`) it recomputes each trace's TelemetryCorrelation snapshot from the stores
(TraceRecord and error spans, log records, metric exemplars, the events that named the trace)
and upserts it by (tenant, traceId), writing only when the content changed. An event naming no
trace is not taken at publish (`takes`): it would be a no-op.
"""

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker
from observability import correlation

WORKER = Worker(
    name="TelemetryCorrelationWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Stitch traces, logs, metrics and feedback into TelemetryCorrelation by traceId.",
    trigger=Trigger(events=(WILDCARD, "TelemetryLinked"), description="Event (any)"),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=2, cap_seconds=300, description="Backoff; DLQ after 5"
    ),
    idempotency=Idempotency("Upsert by traceId"),
    # Up to 500 events a call: a burst of TraceRecorded costs a handful of queries per batch.
    batch_handler=correlation.correlate,
    batch_size=500,
    # Only the events that name a trace become its messages (the others would be no-ops).
    takes=correlation.takes,
)
