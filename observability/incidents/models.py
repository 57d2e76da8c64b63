"""Incidents, their triggers, their timeline and their trace lineage.

An Incident is written by IncidentAnalysisWorker (observability.incidents.handler) and changed by
operators (observability.incidents.services): its status (open, acknowledged, resolved, closed)
is kept apart from its severity (that of its highest active trigger). The database holds the
one rule that concurrency could break: at most one open (open or acknowledged) incident per
(tenant, group key), a partial unique index, on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.models import Tenant, TenantKey

KEY_CHARS = 500  # a trigger or group key; longer ones are shortened with a digest (decisions)


class Status(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = (Status.OPEN, Status.ACKNOWLEDGED)


class Severity(models.TextChoices):
    WARNING = "warning"
    CRITICAL = "critical"


class Incident(models.Model):
    """Triggers correlated into one incident: those of one group key (by default an alert
    rule's on one service, or an SLO's), and those that share traces with them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    number = models.PositiveIntegerField(help_text="Per tenant: #1, #2, ...")
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    group_key = models.CharField(max_length=KEY_CHARS)
    # When the problem began (the first trigger's breaching window), when the incident was
    # opened (its first trigger arrived), and the latest trigger event of any kind.
    started_at = models.DateTimeField()
    opened_at = models.DateTimeField()
    last_trigger_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # "system" (its last trigger resolved), "timeout", or the operator who resolved it.
    resolved_by = models.CharField(max_length=200, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    services = models.JSONField(default=list)
    reopened = models.PositiveIntegerField(default=0, help_text="Times it was reopened.")
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="incident_number_once"),
            # The one-open guarantee: two consumers opening an incident for the same group key
            # at once cannot both commit (observability.incidents.handler serialises them so
            # that the second joins the first's).
            models.UniqueConstraint(
                fields=["tenant", "group_key"],
                condition=Q(status__in=OPEN_STATUSES),
                name="one_open_incident_per_group_key",
            ),
        ]
        indexes = [
            # Grouping finds the newest resolved incident of a key; the sweep finds open ones
            # gone quiet and resolved ones to close.
            models.Index(fields=["tenant", "group_key", "status"]),
            models.Index(fields=["tenant", "status", "last_trigger_at"]),
            models.Index(fields=["status", "resolved_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class IncidentCounter(models.Model):
    """The last incident number a tenant was given: numbers are allocated by one upsert, so
    that concurrent consumers opening incidents of different group keys never take the same
    one."""

    tenant = models.OneToOneField(Tenant, models.CASCADE, primary_key=True, related_name="+")
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}: #{self.last}"


class IncidentTrigger(models.Model):
    """One alert instance or SLO burn-rate row in one incident, with its own state. The same
    trigger key firing again after its incident closed starts a row in a new incident."""

    class Kind(models.TextChoices):
        ALERT = "alert"
        SLO = "slo"

    class State(models.TextChoices):
        ACTIVE = "active"
        RESOLVED = "resolved"

    incident = models.ForeignKey(Incident, models.CASCADE, related_name="triggers")
    tenant = TenantKey()
    trigger_key = models.CharField(max_length=KEY_CHARS)
    group_key = models.CharField(max_length=KEY_CHARS)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=200)  # the rule's or the SLO's
    service = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    # How it joined: by its group key, or by traces it shares with the incident ("traces").
    joined_by = models.CharField(max_length=16, default="group")
    first_event_id = models.UUIDField()
    last_event_id = models.UUIDField()
    first_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    fired = models.PositiveIntegerField(default=1, help_text="Times it fired in this incident.")
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict)  # the last event's data, as published

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "trigger_key"], name="incident_trigger_once"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "trigger_key"]),
            # Grouping asks which open incident a trigger of another group key was linked
            # into (by shared traces): those triggers only, a few.
            models.Index(
                fields=["tenant", "group_key"],
                condition=Q(joined_by="traces"),
                name="incident_trigger_linked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trigger_key})"


class IncidentTimelineEntry(models.Model):
    """Every change of an incident, with who ("system", a console user, an API key) and
    when."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        REOPENED = "reopened"
        TRIGGER = "trigger", "trigger fired"
        LINKED = "linked", "trigger linked by traces"
        SEVERITY = "severity", "severity changed"
        TRIGGER_RESOLVED = "trigger_resolved", "trigger resolved"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"
        CLOSED = "closed"
        COMMENT = "comment"

    incident = models.ForeignKey(Incident, models.CASCADE, related_name="timeline")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.CharField(max_length=200, default="system")
    message = models.TextField()
    data = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "incident timeline entries"
        indexes = [models.Index(fields=["incident", "at"])]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at.isoformat()}"


class IncidentTrace(models.Model):
    """A trace behind an incident (its lineage): named by a trigger's exemplars, with the
    figures TelemetryCorrelation (or the TraceRecord) had when it was linked. The selectors
    read the current figures where the correlation has moved on."""

    incident = models.ForeignKey(Incident, models.CASCADE, related_name="lineage")
    tenant = TenantKey()
    trace_id = models.CharField(max_length=32)
    trigger_key = models.CharField(max_length=KEY_CHARS)
    linked_at = models.DateTimeField()
    root_service = models.CharField(max_length=200, blank=True)
    root_name = models.CharField(max_length=500, blank=True)
    span_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    log_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "trace_id"], name="incident_trace_once")
        ]
        # Grouping asks which open incidents share a trigger's traces.
        indexes = [models.Index(fields=["tenant", "trace_id"])]

    def __str__(self) -> str:
        return f"{self.trace_id} behind incident {self.incident_id}"
