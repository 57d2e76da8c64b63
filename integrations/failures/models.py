"""Integration failures, their attempts, and the retry policies that pace them.

An IntegrationFailure is written by IntegrationRetryWorker (integrations.failures.handler) from
each IntegrationFailed, and changed by operators (integrations.failures.services). Its subject
(a connection, a credential, a webhook subscription) lives in another app and may be deleted
while the failure is kept: it is named by id, not by a foreign key.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from core.models import Tenant
from integrations.failures import decisions


class Kind(models.TextChoices):
    SYNC = "sync"
    ROTATION = "rotation"
    OUTAGE = "outage"
    WEBHOOK = "webhook"


class ErrorClass(models.TextChoices):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited", "rate limited"
    AUTH = "auth"
    PERMANENT = "permanent"


class Status(models.TextChoices):
    OPEN = "open"  # failed; its next attempt is scheduled (next_attempt_at)
    RETRYING = "retrying"  # an attempt is in flight; next_attempt_at is when it times out
    RESOLVED = "resolved"  # its subject works again
    POISONED = "poisoned"  # the cap, or a class not worth retrying: escalated
    ACKNOWLEDGED = "acknowledged"  # an operator is on it: no automatic retries
    IGNORED = "ignored"  # an operator decided it needs nothing


ACTIVE = (Status.OPEN, Status.RETRYING, Status.POISONED, Status.ACKNOWLEDGED)


class IntegrationFailure(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    failure_id = models.CharField(max_length=200, help_text="The producer's failureId.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    provider = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(
        max_length=200, help_text="The connection, credential or webhook subscription."
    )
    subject = models.CharField(max_length=300, blank=True)
    # What a resume needs and the page shows: connectionId, credentialId, rotationToken,
    # subscriptionId, deliveryId, url.
    detail = models.JSONField(default=dict)
    error_class = models.CharField(max_length=16, choices=ErrorClass.choices)
    error = models.TextField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1, help_text="Executions started.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    status_reason = models.CharField(max_length=500, blank=True)
    status_by = models.CharField(max_length=200, blank=True)
    group_key = models.CharField(max_length=500)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    # Set once, when it was escalated (an AlertTriggered) or joined its group's escalation;
    # `escalated_as` is the failureId whose AlertTriggered speaks for it.
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_as = models.CharField(max_length=200, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "failure_id"], name="failure_once"),
        ]
        indexes = [
            # The sweep: a tenant's due ones.
            models.Index(fields=["tenant", "status", "next_attempt_at"], name="failure_due"),
            models.Index(fields=["tenant", "group_key"], name="failure_group"),
            models.Index(fields=["tenant", "kind", "subject_id"], name="failure_subject"),
            models.Index(fields=["tenant", "-first_seen"], name="failure_listed"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} failure {self.failure_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def retryable_by_hand(self) -> bool:
        return self.status != Status.RESOLVED and not (
            self.status == Status.RETRYING and self.kind != Kind.WEBHOOK
        )

    def escalated(self, *, reason: str) -> decisions.Escalated:
        return decisions.Escalated(
            failure_id=self.failure_id,
            kind=self.kind,
            provider=self.provider,
            subject_id=self.subject_id,
            subject=self.subject,
            error_class=self.error_class,
            error=self.error,
            attempts=self.attempts,
            group_key=self.group_key,
            first_seen=self.first_seen,
            reason=reason,
        )


class FailureAttempt(models.Model):
    class Outcome(models.TextChoices):
        FAILED = "failed"
        SENT = "sent"  # its command is out; no outcome yet
        SUCCEEDED = "succeeded"
        LOST = "lost"  # no outcome within the policy's attempt timeout: counted as failed

    failure = models.ForeignKey(IntegrationFailure, models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    by = models.CharField(
        max_length=200, blank=True, help_text='"schedule", "report", or the operator.'
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["failure", "number"], name="failure_attempt_once"),
        ]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"


class RetryPolicy(models.Model):
    """An override of the code's default policy (decisions.DEFAULT_POLICIES) for a provider
    and kind; a blank provider is every provider's."""

    provider = models.CharField(max_length=100, blank=True, help_text="Blank: every provider.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    initial_interval_seconds = models.FloatField(default=60)
    backoff_coefficient = models.FloatField(default=2.0)
    maximum_interval_seconds = models.FloatField(
        null=True, blank=True, help_text="Blank: 100 times the initial interval."
    )
    maximum_attempts = models.PositiveIntegerField(
        default=6, help_text="Executions, the failed run included. 0: unlimited; 1: no retry."
    )
    non_retryable_error_classes = models.JSONField(
        default=list, blank=True, help_text=f"Any of {', '.join(decisions.ERROR_CLASSES)}."
    )
    attempt_timeout_seconds = models.FloatField(
        default=3600, help_text="A retry with no outcome after this long counts as failed."
    )
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "kind"], name="retry_policy_once"),
        ]
        verbose_name_plural = "retry policies"

    def __str__(self) -> str:
        return f"{self.provider or 'every provider'}: {self.kind}"

    def clean(self) -> None:
        errors = {}
        if not self.initial_interval_seconds or self.initial_interval_seconds <= 0:
            errors["initial_interval_seconds"] = "More than 0 seconds."
        if self.backoff_coefficient is None or self.backoff_coefficient < 1:
            errors["backoff_coefficient"] = "At least 1 (1 is a fixed interval)."
        if (
            self.maximum_interval_seconds is not None
            and self.initial_interval_seconds
            and self.maximum_interval_seconds < self.initial_interval_seconds
        ):
            errors["maximum_interval_seconds"] = "At least the initial interval."
        classes = self.non_retryable_error_classes
        if not isinstance(classes, list) or any(c not in decisions.ERROR_CLASSES for c in classes):
            errors["non_retryable_error_classes"] = (
                f"A list of error classes: {', '.join(decisions.ERROR_CLASSES)}."
            )
        if not self.attempt_timeout_seconds or self.attempt_timeout_seconds <= 0:
            errors["attempt_timeout_seconds"] = "More than 0 seconds."
        if errors:
            raise ValidationError(errors)

    def as_policy(self) -> decisions.Policy:
        return decisions.Policy(
            initial_interval=self.initial_interval_seconds,
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=self.maximum_interval_seconds,
            maximum_attempts=self.maximum_attempts,
            non_retryable=frozenset(self.non_retryable_error_classes or ()),
            attempt_timeout=self.attempt_timeout_seconds,
        )
