"""Rate buckets and circuits: one row per key, shared by every process through the database.

Keys are strings (integrations.limits.keys): `connection:<uuid>`, `credential:<uuid>`,
`host:<hostname>`, and `tenant:<uuid>:host:<hostname>` for the endpoints of a tenant's webhook
subscriptions. A row belongs to the tenant whose connection, credential or subscription its key
names (`tenant`, which the API scopes by); a platform-wide `host:` key has none and is seen
only in the admin.

Times a conditional UPDATE compares and moves (a bucket's theoretical arrival time, its
blocked-until) are stored as Unix microseconds in a bigint: the same exact arithmetic in
PostgreSQL and SQLite (which keeps datetimes as text), where a double's rounding at 1.7e9
seconds could grant one request more or less than the burst.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import models
from django.utils import timezone

from core.models import Tenant

MICROS = 1_000_000


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_datetime(micros: int | None) -> datetime | None:
    return EPOCH + timedelta(microseconds=micros) if micros else None


def as_micros(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)  # exact, where a float is not


def tenant_key() -> models.ForeignKey:
    # No database constraint: a bucket or a circuit is written on a connection of its own that
    # commits at once (integrations.limits.store), perhaps before the tenant's transaction.
    return models.ForeignKey(
        Tenant, models.CASCADE, null=True, blank=True, related_name="+", db_constraint=False
    )


class RateBucket(models.Model):
    """A GCRA bucket (the generic cell rate algorithm, as redis-cell's CL.THROTTLE): one stored
    value, the theoretical arrival time `tat`; a request at `now` is granted when
    max(tat, now) + 1/rate - now <= burst/rate, and moves tat there. So a quiet bucket grants
    `burst` at once, then `rate` per second. `blocked_until` is the vendor's own word (a reset
    time, a Retry-After): nothing is granted before it."""

    key = models.CharField(max_length=300, unique=True)
    tenant = tenant_key()
    tat = models.BigIntegerField(default=0, help_text="Theoretical arrival time, Unix µs.")
    rate = models.FloatField(help_text="Requests per second, sustained.")
    burst = models.PositiveIntegerField()
    blocked_until = models.BigIntegerField(default=0, help_text="Unix µs; 0: not blocked.")
    blocked_reason = models.CharField(max_length=300, blank=True)
    grants = models.BigIntegerField(default=0)  # requests granted, ever
    last_taken = models.PositiveIntegerField(default=0)  # by the last UPDATE that granted
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        indexes = [models.Index(fields=["tenant", "key"])]

    def __str__(self) -> str:
        return self.key

    @property
    def blocked_until_at(self) -> datetime | None:
        return as_datetime(self.blocked_until)

    @property
    def tat_at(self) -> datetime | None:
        return as_datetime(self.tat)

    def available(self, *, now: datetime) -> float:
        """Requests it would grant at once now (for display: the UPDATE decides)."""
        at = as_micros(now)
        if self.blocked_until > at:
            return 0.0
        used = max(0, self.tat - at) / MICROS * self.rate
        return max(0.0, self.burst - used)


class Circuit(models.Model):
    """A circuit breaker shared by every process (integrations.limits.circuits; its decisions
    are integrations.limits.decisions'): closed lets calls through and counts their outcomes
    over a window; open refuses them until `open_until`; half-open hands out a few permits and
    closes again when they succeed; isolated is held open by an operator until closed."""

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"
        ISOLATED = "isolated"

    key = models.CharField(max_length=300, unique=True)
    tenant = tenant_key()
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    # The current window's outcomes (closed), or the half-open trial's.
    window_start = models.DateTimeField(null=True, blank=True)
    calls = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    slow = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Trips in a row without a quiet spell between them: each opens it for longer (capped).
    trips = models.PositiveIntegerField(default=0)
    permits_left = models.PositiveIntegerField(default=0)
    permits_given_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        indexes = [models.Index(fields=["tenant", "key"])]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
