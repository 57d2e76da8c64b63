"""IncidentAnalysisWorker: correlate triggers into incidents; enrich with trace lineage.

Declared from the seed catalog. Its handler comes with the incidents issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker, source_key

WORKER = Worker(
    name="IncidentAnalysisWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Correlate triggers into incidents; enrich with trace lineage.",
    trigger=Trigger(
        events=("AlertTriggered", "SloBreached"), description="Event AlertTriggered, SloBreached"
    ),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=2, cap_seconds=300, description="Backoff; DLQ after 5"
    ),
    idempotency=Idempotency("Dedup on (source, sourceId); idempotent key", key=source_key),
)
