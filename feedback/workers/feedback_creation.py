"""FeedbackCreationWorker: distil incidents and signals into FeedbackItems.

Declared from the seed catalog. Its handler comes with the feedback issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker, source_key

WORKER = Worker(
    name="FeedbackCreationWorker",
    module=__name__,
    app="feedback",
    group="reaction",
    purpose="Distil incidents and signals into FeedbackItems.",
    trigger=Trigger(
        events=("IncidentResolved", "RuntimeSignalDetected", "CostAnomalyDetected"),
        description="Event IncidentResolved, runtime signals (and CostAnomalyDetected)",
    ),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=2, cap_seconds=300, description="Backoff; DLQ after 5"
    ),
    idempotency=Idempotency("Idempotency key from sourceId", key=source_key),
)
