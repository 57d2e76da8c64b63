"""What OTLP ingestion adds to GET /metrics (core.prometheus): the requests OtlpView answered,
by signal and status, and the items of the accepted ones, stored or rejected.

Counted as each request is answered (one upsert), not summed from TelemetryBatch rows: those
are deleted OTLP_BATCH_RETENTION_HOURS after ingestion, refusals store none, and a day of
batches summed at every scrape would grow with the traffic.
"""

from __future__ import annotations

from typing import Any

from core import prometheus
from core.prometheus import Counters, Family, Labels, Metric
from observability.models import TelemetryBatch

OTLP_REQUESTS = Metric(
    "platform_otlp_requests_total",
    "counter",
    "OTLP/HTTP requests answered, by signal and HTTP status code: 200 accepted (whole or in "
    "part), 4xx and 5xx refused (400 undecodable, 401 no key, 413 too large, 415 media type, "
    "429 over the tenant's rate, 503 ingestion backlog).",
    ("signal", "code"),
)
OTLP_ITEMS = Metric(
    "platform_otlp_items_total",
    "counter",
    "Spans, metric data points and log records of accepted OTLP requests, by signal and "
    "outcome: accepted (stored for ingestion) or rejected (named in partialSuccess).",
    ("signal", "outcome"),
)
OUTCOMES = ("accepted", "rejected")


def count_request(*, signal: str, code: int, batch: TelemetryBatch | None) -> None:
    """Count a request OtlpView answered with `code`, and the items of `batch`, the request
    as stored when it was accepted."""
    counts: dict[tuple[Metric, Labels], int] = {(OTLP_REQUESTS, (signal, str(code))): 1}
    if batch is not None:
        counts[OTLP_ITEMS, (signal, "accepted")] = batch.items
        counts[OTLP_ITEMS, (signal, "rejected")] = batch.rejected
    prometheus.add(counts)


def families(*, counters: Counters, **kwargs: Any) -> list[Family]:
    """core.prometheus.collecting's receiver: the ingest counters, every signal's items from
    zero."""
    known = [(signal, outcome) for signal in TelemetryBatch.Signal.values for outcome in OUTCOMES]
    return [
        prometheus.counter_family(OTLP_REQUESTS, counters),
        prometheus.counter_family(OTLP_ITEMS, counters, known=known),
    ]
