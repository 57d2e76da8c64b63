"""Load shedding for OTLP ingestion: a per-tenant request rate and a backlog ceiling.

An OTLP exporter that gets 429 or 503 with Retry-After waits and retries the same batch
(specification, "Failures"), so shedding loses nothing while it protects the store.
"""

from __future__ import annotations

from django.conf import settings

from core import ratelimit
from core.models import Message, Tenant
from observability.models import IngestRate


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
    if ratelimit.over(IngestRate, tenant, limit=limit):
        raise Refused(
            429, f"Over {limit} requests per second for this tenant; retry later.", retry_after=1
        )


def _check_backlog() -> None:
    ceiling = settings.OTLP_BACKLOG_CEILING
    if not ceiling:
        return
    # Counted in the database (a COUNT over a LIMIT, on the pending messages' partial index),
    # not by fetching up to ceiling + 1 ids into every request.
    waiting = Message.objects.filter(worker="TraceIngestionWorker", state=Message.State.PENDING)[
        : ceiling + 1
    ].count()
    if waiting > ceiling:
        raise Refused(503, f"Ingestion is {ceiling}+ batches behind; retry later.", retry_after=5)
