"""MetricAggregationWorker: roll raw counters and histograms into MetricSeries.

Each schedule slot (1m, 5m, 1h) sends every tenant a ScheduleFired message naming its window;
the handler is observability.aggregation.aggregate. It rolls the tenant's MetricPoint rows of
that window into one MetricSeries row per series (upserted on (tenant, series_key, window,
window_start), so a re-run gives the same rows), re-aggregates earlier windows (up to 24 hours
back) that received late points since they were computed, and publishes one MetricAggregated
per window it computed, with an event id derived from the window and its result, so that a
redelivered slot adds no event.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from observability import aggregation

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
    handler=aggregation.aggregate,
)
