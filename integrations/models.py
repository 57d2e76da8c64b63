"""Webhook subscriptions, their deliveries, and every attempt of each delivery.

A WebhookSubscription is a tenant's endpoint and the event types it wants. Each matching event
becomes one WebhookDelivery per subscription, unique per (subscription, event), whose id is the
`webhook-id` header: stable across retries, so receivers deduplicate on it. A delivery moves
through a small state machine; a WebhookAttempt records each POST.
"""

from __future__ import annotations

import base64
import fnmatch
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from fernet_fields import EncryptedTextField

from core.models import Tenant, TenantKey

SECRET_PREFIX = "whsec_"


def matches(patterns: list[str], event_type: str) -> bool:
    """Whether an event type is one of `patterns`: exact names, or `Incident*`, `*`."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookSubscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="webhook_subscriptions")
    url = models.URLField(max_length=2000)
    # Exact event type names, or patterns such as "Incident*" and "*".
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Encrypted at rest; shown once, in the reply that creates or rotates it.
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(blank=True, default="")
    previous_secret_expires = models.DateTimeField(null=True, blank=True)
    # Failing since the first failure after the last success; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)
    # Deleted by its owner: gone for the API, the admin and the worker from then on; the row,
    # with its deliveries, is removed as soon as no batch still sends to it
    # (integrations.webhooks.subscriptions.delete_subscription).
    deleted = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["tenant", "enabled"])]

    def __str__(self) -> str:
        return f"{self.url} ({self.tenant_id})"

    def wants(self, event_type: str) -> bool:
        return matches(self.event_types, event_type)

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The secrets that sign a delivery now: the current one, and the previous one while
        its overlap after a rotation lasts."""
        keys = [self.secret]
        expires = self.previous_secret_expires
        if self.previous_secret and expires and expires > now:
            keys.append(self.previous_secret)
        return keys

    def rotate_secret(self, *, now: datetime) -> str:
        self.previous_secret = self.secret
        self.previous_secret_expires = now + timedelta(
            seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS
        )
        self.secret = new_secret()
        return self.secret

    def failing_too_long(self, *, now: datetime) -> bool:
        limit = timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS)
        return self.failing_since is not None and now - self.failing_since >= limit


class WebhookDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        IN_FLIGHT = "in_flight"
        DELIVERED = "delivered"
        RETRYING = "retrying"
        DEAD = "dead"

    # Sendable states. A dead delivery is sent again only when its message comes back, which
    # is a replay or a redeliver; a delivered one never is.
    SENDABLE = (State.PENDING, State.RETRYING, State.DEAD)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # webhook-id
    tenant = TenantKey()
    subscription = models.ForeignKey(WebhookSubscription, models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    payload = models.TextField()  # the exact body, the same bytes on every attempt
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Failed attempts since it was last sent from scratch (created, replayed, redelivered):
    # where it stands on the retry ladder.
    round_attempts = models.PositiveIntegerField(default=0)
    # Seconds this round has waited on the receiver's word (429, a long Retry-After), which
    # spends no attempt; bounded by WEBHOOK_MAX_WAIT_SECONDS (integrations.webhooks.decisions).
    waited_seconds = models.FloatField(default=0.0, db_default=0.0)
    created = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="delivery_once_per_subscription"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "subscription", "created"]),
            models.Index(
                fields=["subscription", "created"],
                name="delivery_failed",
                condition=Q(state__in=["retrying", "dead"]),
            ),
            models.Index(fields=["created"], name="delivery_done", condition=Q(state="delivered")),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.subscription_id} ({self.state})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, models.CASCADE, related_name="attempt_log")
    tenant = TenantKey()
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    response_body = models.TextField(blank=True)  # the first KB of the reply

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error[:60]}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
