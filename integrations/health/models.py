"""Vendor health: one ProbeResult per (connection, window), and one ConnectionHealth per
connection, the state its windows add up to (integrations.health.decisions).

A window is the probe schedule's slot (or the moment of a "probe now"). A probe retried within
its window overwrites that window's result; a result for a window older than the connection's
newest one is kept but changes nothing of its health: latest wins."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from core.models import TenantKey
from integrations.connections.models import IntegrationConnection


class State(models.TextChoices):
    UNKNOWN = "unknown"  # never probed
    UP = "up"
    PENDING = "pending"  # failing, not for long enough to be down (Uptime Kuma)
    DEGRADED = "degraded"  # up, but slow
    DOWN = "down"


class ProbeResult(models.Model):
    connection = models.ForeignKey(
        IntegrationConnection, models.CASCADE, related_name="probe_results"
    )
    tenant = TenantKey()
    window = models.DateTimeField()
    ok = models.BooleanField()
    slow = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)  # the conditions that failed
    tries = models.PositiveSmallIntegerField(default=1)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "window"], name="probe_once_a_window")
        ]
        indexes = [models.Index(fields=["tenant", "connection", "-window"])]

    def __str__(self) -> str:
        return (
            f"{self.connection_id} @ {self.window:%Y-%m-%d %H:%M}: {'ok' if self.ok else 'failed'}"
        )


class ConnectionHealth(models.Model):
    connection = models.OneToOneField(
        IntegrationConnection, models.CASCADE, primary_key=True, related_name="health"
    )
    tenant = TenantKey()
    state = models.CharField(max_length=10, choices=State.choices, default=State.UNKNOWN)
    window = models.DateTimeField(null=True, blank=True)  # the newest window applied
    failures = models.PositiveIntegerField(default=0)  # failed windows in a row
    successes = models.PositiveIntegerField(default=0)  # good windows in a row
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    changed = models.DateTimeField(null=True, blank=True)  # when the state last changed
    # The current outage's IntegrationFailed (one per outage): its failureId.
    outage_failure_id = models.UUIDField(null=True, blank=True)
    outage_since = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "connection health"
        indexes = [models.Index(fields=["tenant", "state"])]

    def __str__(self) -> str:
        return f"{self.connection_id}: {self.state}"
