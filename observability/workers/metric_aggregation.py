"""MetricAggregationWorker: roll raw counters and histograms into MetricSeries.

Declared from the seed catalog. Its handler comes with the telemetry ingestion issue; until then
it receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

WORKER = Worker(
    name="MetricAggregationWorker",
    module=__name__,
    app="observability",
    group="ingestion",
    purpose="Roll raw counters and histograms into MetricSeries.",
    trigger=Trigger(
        schedules=(Schedule("1m", 1), Schedule("5m", 5), Schedule("1h", 60)),
        description="Schedule (1m/5m/1h)",
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_seconds=60,
        cap_seconds=900,
        description="Re-run window on failure (idempotent)",
    ),
    idempotency=Idempotency("Deterministic per (metric, window, key)"),
)
