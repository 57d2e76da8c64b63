"""Load shedding for OTLP ingestion: a per-tenant request rate and a backlog ceiling.

An OTLP exporter that gets 429 or 503 with Retry-After waits and retries the same batch
(specification, "Failures"), so shedding loses nothing while it protects the store.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from core.models import Message, Tenant


class Refused(Exception):
    """A request turned away: its HTTP status, a message, and when to come back."""

    def __init__(self, code: int, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.code, self.retry_after = code, retry_after


def admit(tenant: Tenant) -> None:
    _check_rate(tenant)
    _check_backlog()


def _check_rate(tenant: Tenant) -> None:
    limit = settings.OTLP_TENANT_REQUESTS_PER_SECOND
    if not limit:
        return
    key = f"otlp-rate:{tenant.pk}:{int(time.time())}"
    cache.add(key, 0, timeout=5)
    if cache.incr(key) > limit:
        raise Refused(
            429, f"Over {limit} requests per second for this tenant; retry later.", retry_after=1
        )


def _check_backlog() -> None:
    ceiling = settings.OTLP_BACKLOG_CEILING
    if not ceiling:
        return
    waiting = Message.objects.filter(
        worker="TraceIngestionWorker", state=Message.State.PENDING
    ).values("id")[: ceiling + 1]
    if len(waiting) > ceiling:
        raise Refused(503, f"Ingestion is {ceiling}+ batches behind; retry later.", retry_after=5)
