"""CostAnomalyWorker: attribute cost and detect anomalies.

Declared from the seed catalog. Its handler comes with the cost issue; until then it receives no
messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

WORKER = Worker(
    name="CostAnomalyWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Attribute cost and detect anomalies.",
    trigger=Trigger(
        schedules=(Schedule("hourly", 60), Schedule("daily", 1440)),
        description="Schedule (hourly/daily)",
    ),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=60, cap_seconds=1800, description="Re-run window"
    ),
    idempotency=Idempotency("Dedup anomaly per (category, day)"),
)
