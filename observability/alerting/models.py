"""Alert rules, their instances and state history, silences and SLOs.

A rule's and an SLO's specification is JSON (`spec`), the shape the API takes, validated on
every save by the pure modules (observability.alerting.specs, rules.validate, slo.validate);
the columns beside it are what lists filter and sort on. An AlertInstance keeps its evaluator
state as InstanceState.to_json gives it, with the state, severity, reason and last window
copied into columns for the lists. Every query of the domain names its tenant.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.utils import timezone

from core.models import Tenant, TenantKey
from observability.alerting import silences, specs

DEFAULT_GROUP_KEY = specs.DEFAULT_GROUP_KEY


class State(models.TextChoices):
    """observability.alerting.evaluation.State, as stored."""

    NORMAL = "normal"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"
    NODATA = "nodata"
    ERROR = "error"


class Severity(models.TextChoices):
    WARNING = "warning"
    CRITICAL = "critical"


class Health(models.TextChoices):
    OK = "ok", "ok"
    ERROR = "error", "error"


class AlertRule(models.Model):
    """A rule as its tenant wrote it. `revision` counts its saves; each save also leaves an
    AlertRuleRevision. `health` is "error" when its last evaluation failed as a whole (its
    specification could not be read, say), with the reason in `last_error`; its instances keep
    their states, and the next tick tries again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    spec = models.JSONField(help_text="The rule's specification (observability.alerting.specs).")
    group_key = models.CharField(
        max_length=500,
        default=DEFAULT_GROUP_KEY,
        help_text="The incident group key of its triggers: {ruleId}, {ruleName}, {service}, "
        "{instanceKey} or a label it groups by, in braces.",
    )
    revision = models.PositiveIntegerField(default=1)
    health = models.CharField(max_length=8, choices=Health.choices, default=Health.OK)
    last_error = models.TextField(blank=True)
    # The tick (its slot) that last evaluated it, and the newest window it has evaluated.
    evaluated_at = models.DateTimeField(null=True, blank=True)
    last_window = models.DateTimeField(null=True, blank=True)
    # When (by the clock) it was last evaluated: a window the aggregation computed again after
    # that had late points, whose outcome the next tick checks.
    checked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=200, blank=True)
    updated = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="alert_rule_name_once")
        ]
        indexes = [models.Index(fields=["tenant", "enabled"])]

    def __str__(self) -> str:
        return self.name


class AlertRuleRevision(models.Model):
    """A rule as one save left it: never changed afterwards."""

    rule = models.ForeignKey(AlertRule, models.CASCADE, related_name="revisions")
    tenant = TenantKey()
    revision = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    enabled = models.BooleanField()
    spec = models.JSONField()
    group_key = models.CharField(max_length=500)
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "revision"], name="alert_rule_revision_once")
        ]

    def __str__(self) -> str:
        return f"{self.name} r{self.revision}"


class AlertInstance(models.Model):
    """One label group of one rule: its evaluator state (`state`, evaluation.encode_state) and
    the columns lists need. `notified` is the severity the outside world last heard of
    (AlertTriggered) and "" after AlertResolved: a silenced instance publishes nothing, so when
    its silence ends the difference between it and the state is published then."""

    tenant = TenantKey()
    # Looked up by (rule, instance key): alert_instance_once is the index rules need.
    rule = models.ForeignKey(AlertRule, models.CASCADE, related_name="instances", db_index=False)
    instance_key = models.CharField(max_length=64)
    labels = models.JSONField(default=dict)
    # JSON as text, not a JSONField: every tick rewrites every due instance's state and reads
    # it back, and PostgreSQL's parsing it into jsonb and printing it back out (measured: a
    # third of the UPDATE of 20,000 steady instances) bought nothing, since nothing queries
    # inside it. decode_state reads it; only the handler writes it.
    state = models.TextField(help_text="The evaluator's InstanceState, as encode_state gives it.")
    state_name = models.CharField(max_length=12, choices=State.choices, default=State.NORMAL)
    severity = models.CharField(max_length=8, choices=Severity.choices, blank=True)
    reason = models.TextField(blank=True)
    flapping = models.BooleanField(default=False)
    last_window = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    # The newest window in which it had a series: an instance long without one is forgotten.
    last_seen = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField(help_text="When it entered its state (an evaluation time).")
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified = models.CharField(max_length=8, choices=Severity.choices, blank=True)
    silenced = models.BooleanField(default=False, help_text="At its last evaluation.")
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "instance_key"], name="alert_instance_once")
        ]
        indexes = [
            models.Index(fields=["tenant", "state_name"]),
            models.Index(fields=["tenant", "rule"]),
        ]

    def __str__(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.rule_id} {{{labels}}}"


class AlertStateChange(models.Model):
    """One evaluation that changed an instance's state: the transition (its id is the
    transition's, derived from rule, instance, window and kind, so re-evaluating writes nothing
    twice), the event it published if any, and the state after it (an exact checkpoint).
    Kept ALERT_HISTORY_RETENTION_DAYS (the hourly prune)."""

    id = models.UUIDField(primary_key=True, editable=False)
    tenant = TenantKey()
    rule = models.ForeignKey(AlertRule, models.CASCADE, related_name="changes")
    rule_revision = models.PositiveIntegerField()
    instance_key = models.CharField(max_length=64)
    labels = models.JSONField(default=dict)
    kind = models.CharField(max_length=20)
    previous = models.CharField(max_length=12, choices=State.choices)
    state_name = models.CharField(max_length=12, choices=State.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices, blank=True)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    trace_ids = models.JSONField(default=list)
    # The event type it published, "" for none; `silenced` when a silence held it back.
    published = models.CharField(max_length=20, blank=True)
    silenced = models.BooleanField(default=False)
    late = models.BooleanField(default=False)
    state = models.JSONField(help_text="InstanceState.to_json after the change.")
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "rule", "window_start"]),
            models.Index(fields=["rule", "instance_key", "window_start"]),
            models.Index(fields=["recorded_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.window_end:%Y-%m-%d %H:%M}"


class Silence(models.Model):
    """Matchers on instance labels (and `alertname`, the rule's name), active from `starts_at`
    until `ends_at`: a matched instance is evaluated and shown, and publishes nothing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    matchers = models.JSONField(help_text='[{"label": ..., "op": "=|!=|=~|!~", "value": ...}]')
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)
    comment = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "ends_at"])]

    def __str__(self) -> str:
        return silences.describe_json(self.matchers)

    def state_at(self, moment: Any) -> str:
        if moment < self.starts_at:
            return "pending"
        return "active" if moment < self.ends_at else "expired"


class Slo(models.Model):
    """A service level objective: its specification (observability.alerting.slo), the rows
    firing after its last evaluation, and its status then, for the lists."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    service = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    spec = models.JSONField(help_text="The SLO's specification (observability.alerting.specs).")
    firing_rows = models.JSONField(default=list)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, blank=True)  # slo.SloState
    reason = models.TextField(blank=True)
    sli = models.FloatField(null=True, blank=True)
    budget_remaining = models.FloatField(null=True, blank=True)
    burn_rates = models.JSONField(default=dict)
    health = models.CharField(max_length=8, choices=Health.choices, default=Health.OK)
    last_error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=200, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "SLO"
        verbose_name_plural = "SLOs"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="slo_name_once")]
        indexes = [models.Index(fields=["tenant", "enabled"])]

    def __str__(self) -> str:
        return self.name
