"""What webhooks add to GET /metrics (core.prometheus): the failed deliveries by state now, and
every attempt by outcome since the start.

Attempts are counted as their batch commits (one upsert a batch), not counted from
WebhookAttempt rows: delivered deliveries and their attempts are deleted after
WEBHOOK_DELIVERY_RETENTION_DAYS, and a month of attempts counted at every scrape would cost
a scan of the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import urllib3
from django.db.models import Count, Q

from core import outbound, prometheus
from core.prometheus import Counters, Family, Labels, Metric
from integrations.models import WebhookDelivery

FAILED_DELIVERIES = Metric(
    "platform_webhook_failed_deliveries",
    "gauge",
    "Webhook deliveries failed and not delivered since, by state: retrying (on the retry "
    "ladder) or dead (dead-lettered: replay, redeliver or recover them).",
    ("state",),
)
FAILED = (WebhookDelivery.State.RETRYING, WebhookDelivery.State.DEAD)
ATTEMPTS = Metric(
    "platform_webhook_attempts_total",
    "counter",
    "Webhook POSTs made, by outcome: the reply's status class (2xx is a success), or timeout, "
    "connection_error, or blocked (refused by the outbound guard).",
    ("outcome",),
)
OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection_error", "blocked")


def attempt_outcome(reply: outbound.Reply | Exception) -> str:
    """What an attempt's result was, as ATTEMPTS labels it."""
    if isinstance(reply, outbound.Reply):
        return f"{reply.status // 100}xx"
    if isinstance(reply, outbound.BlockedDestination):
        return "blocked"
    # A refused connection or an unknown host (NewConnectionError) is, for urllib3's history, a
    # subclass of ConnectTimeoutError: not a timeout.
    if isinstance(reply, urllib3.exceptions.TimeoutError) and not isinstance(
        reply, urllib3.exceptions.NewConnectionError
    ):
        return "timeout"
    return "connection_error"


def count_attempts(replies: Sequence[outbound.Reply | Exception]) -> None:
    """Count a batch's attempts once it commits."""
    outcomes = Counter(attempt_outcome(reply) for reply in replies)
    prometheus.add({(ATTEMPTS, (outcome,)): n for outcome, n in outcomes.items()})


def families(*, counters: Counters, **kwargs: Any) -> list[Family]:
    """core.prometheus.collecting's receiver: one query, and the counters. The failed
    deliveries are counted on their partial index (delivery_failed): a count of every state
    read the whole table (365 ms a scrape for a million deliveries, bench/scrape.py). Delivered
    ones are the 2xx attempts; pending ones the worker's backlog (its messages); in_flight is
    never seen outside the batch that sends it."""
    by_state = WebhookDelivery.objects.filter(state__in=FAILED).aggregate(
        **{state: Count("id", filter=Q(state=state)) for state in FAILED}
    )
    failed: dict[Labels, float] = {(state,): float(n) for state, n in by_state.items()}
    return [
        Family(FAILED_DELIVERIES, failed),
        prometheus.counter_family(ATTEMPTS, counters, known=[(o,) for o in OUTCOMES]),
    ]
