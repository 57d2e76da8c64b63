"""Tenants, API keys, and the tables of the worker runtime.

An Event is the outbox row written in the producer's transaction. A Message is that event
addressed to one worker: its state, committed in the same transaction as the worker's writes,
is the (eventId, handler) idempotency mark. Failures log every failed attempt; a DeadLetter
keeps the whole story of a message that gave up, so that it can be replayed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class ApiKey(models.Model):
    """A per-tenant API key. Only a SHA-256 of the key is stored: keys are 256 random bits,
    so a fast hash is enough, and the plain key is shown exactly once, at creation."""

    PREFIX = "pk_"

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.PREFIX}{self.lookup}_… ({self.tenant.slug})"

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, *, tenant: Tenant, name: str = "") -> tuple[ApiKey, str]:
        """Create a key and return it with its plain text, which is never stored."""
        lookup, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = cls.objects.create(
            tenant=tenant, name=name, lookup=lookup, digest=cls.digest_of(secret)
        )
        return key, f"{cls.PREFIX}{lookup}_{secret}"

    def matches(self, secret: str) -> bool:
        return self.revoked is None and secrets.compare_digest(self.digest, self.digest_of(secret))


class TenantKey(models.ForeignKey[Tenant, Tenant]):
    """The tenant of a row written at volume (events, messages, telemetry). Not a database
    constraint: PostgreSQL checks a foreign key once per inserted row (a deferred trigger and
    an index lookup each), which halved the rows per second of a span COPY (measured: 47,500
    against 84,700). These rows are only ever written for a tenant the request or envelope
    was checked against, and deleting a tenant still cascades to them through Django.

    Nor is it indexed alone: every such table has an index or a unique constraint that starts
    with the tenant, and a second, smaller index on the tenant alone is one more write per row,
    and one the planner may pick for `tenant = X AND trace_id IN (...)`, reading every row of
    the tenant (seen on spans while their statistics lagged)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("to", Tenant)
        kwargs.setdefault("on_delete", models.CASCADE)
        kwargs.setdefault("related_name", "+")
        kwargs.setdefault("db_constraint", False)
        kwargs.setdefault("db_index", False)
        super().__init__(**kwargs)


class Event(models.Model):
    """The canonical envelope, stored in the producer's transaction (the outbox)."""

    id = models.UUIDField(primary_key=True, editable=False)  # eventId
    type = models.CharField(max_length=100)
    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    correlation_id = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=200, blank=True)
    source_id = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now, db_index=True)
    data = models.JSONField(default=dict)
    # Set for a command or a schedule slot sent to one worker rather than published to all.
    to_worker = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "type", "recorded_at"]),
            # The console finds events by their traceId and sourceId, exactly (core.admin's
            # search_events). Each is one more index entry per event written (a bulk insert
            # of events took about a third longer with either, measured alone).
            models.Index(fields=["trace_id"], name="event_trace_id"),
            models.Index(fields=["source_id"], name="event_source_id"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class Message(models.Model):
    """One event addressed to one worker; unique per (event, worker)."""

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        DEAD = "dead"

    # Written with its event, in the same transaction: no check per row, and no index of its
    # own beside message_once_per_worker, which starts with it (see TenantKey).
    event = models.ForeignKey(
        Event, models.CASCADE, related_name="messages", db_constraint=False, db_index=False
    )
    worker = models.CharField(max_length=64)
    tenant = TenantKey()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    # A pending message is taken once due_at has passed and it is not leased. A claim leases it
    # until leased_until, so a consumer that dies simply lets the lease run out. The lease
    # columns are not indexed, so that taking and releasing a lease are HOT updates.
    due_at = models.DateTimeField(default=timezone.now)
    leased_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # failed attempts
    claims = models.PositiveIntegerField(default=0)  # claims that ended in no outcome
    created = models.DateTimeField(default=timezone.now)
    handled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "worker"], name="message_once_per_worker")
        ]
        indexes = [
            models.Index(
                fields=["worker", "due_at"],
                name="message_due",
                condition=Q(state="pending"),
            ),
            models.Index(fields=["worker"], name="message_dead", condition=Q(state="dead")),
        ]

    def __str__(self) -> str:
        return f"{self.worker} ← {self.event_id}"

    @property
    def in_flight(self) -> bool:
        return self.leased_until is not None and self.leased_until > timezone.now()


class Failure(models.Model):
    """One failed attempt: what went wrong, and whether it was worth retrying."""

    message = models.ForeignKey(Message, models.CASCADE, related_name="failures")
    worker = models.CharField(max_length=64)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    permanent = models.BooleanField(default=False)
    error = models.TextField()
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["message", "attempt"]
        indexes = [models.Index(fields=["worker", "at"])]

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.error[:80]}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at.isoformat(),
            "permanent": self.permanent,
            "error": self.error,
            "traceback": self.traceback,
        }


class DeadLetter(models.Model):
    """A message that gave up, with its full envelope and every attempt, kept for replay."""

    message = models.OneToOneField(Message, models.CASCADE, related_name="dead_letter")
    worker = models.CharField(max_length=64)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=100)
    envelope = models.JSONField()
    reason = models.TextField()
    attempts = models.JSONField(default=list)
    created = models.DateTimeField(default=timezone.now)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replays = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["worker", "created"])]

    def __str__(self) -> str:
        return f"{self.worker}: {self.event_type} {self.message.event_id}"

    @property
    def is_open(self) -> bool:
        """Still dead: not replayed since it last died."""
        return self.replayed_at is None


class WorkerState(models.Model):
    """Per worker bookkeeping that would be costly to derive on every health check."""

    worker = models.CharField(max_length=64, primary_key=True)
    # Drain tasks queued or running for this worker, so that a burst of publishes queues one
    # task rather than one per event, and a deep backlog at most DISPATCH_CONCURRENCY.
    drains = models.PositiveIntegerField(default=0)
    drains_changed = models.DateTimeField(null=True, blank=True)
    last_success = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.worker


class HandledKey(models.Model):
    """A worker's own idempotency key (e.g. (source, sourceId)), written in the same
    transaction as the handler's effects, so that two events meaning the same thing act once."""

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    worker = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    event = models.ForeignKey(Event, models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "worker", "key"], name="handled_key_once")
        ]

    def __str__(self) -> str:
        return f"{self.worker}: {self.key}"


class ClusterHeartbeat(models.Model):
    """Written by each `manage.py qcluster` every sweep: which clusters are alive, by name.
    (django-q2's own stats in the cache do not say which queue a cluster serves.)"""

    cluster_id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=64)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.name} on {self.host} ({self.pid})"


class EventRate(models.Model):
    """How many POST /api/events requests a tenant made in the current second (core.ratelimit):
    one row per tenant, counted by one upsert per request, exact across processes."""

    tenant = models.OneToOneField(Tenant, models.CASCADE, primary_key=True, related_name="+")
    second = models.BigIntegerField()
    requests = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.requests} requests in second {self.second}"


class PlatformCounter(models.Model):
    """A count of something that happened, for GET /metrics (core.prometheus): how many OTLP
    requests were answered, webhook attempts made, ... since the platform's database was
    created. The rows that tell of each occurrence are deleted by retention, so a count of them
    would fall, which Prometheus reads as a restart; and it would cost a scan per scrape. One
    row per metric and label values, raised by one upsert per occurrence (or per batch).

    The same upsert counts the minute too, for the console's rates over the last hour: a ring
    of MINUTE_SLOTS rows per metric and label values (slot = the Unix minute modulo
    MINUTE_SLOTS), a slot's count restarting when its minute comes round again. So a chart of
    the last hour reads at most sixty rows a series whatever the traffic, and nothing needs
    pruning; the rows each occurrence leaves (batches, attempts) are not all indexed by time."""

    TOTAL = -1  # the slot of the count since the start
    MINUTE_SLOTS = 120  # two hours of minutes: the last hour whole, whenever it is read

    metric = models.CharField(max_length=100)
    labels = models.CharField(max_length=255)  # the label values, as a JSON list
    slot = models.SmallIntegerField(default=TOTAL)
    minute = models.BigIntegerField(default=0)  # the Unix minute a slot counts (0 for TOTAL)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "labels", "slot"], name="platform_counter_slot_once"
            )
        ]

    def __str__(self) -> str:
        when = "" if self.slot == self.TOTAL else f" in minute {self.minute}"
        return f"{self.metric}{self.labels} = {self.value}{when}"
