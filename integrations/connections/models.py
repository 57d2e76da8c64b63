"""Connections to outside vendors and the credentials they authenticate with (issue 12).

An IntegrationConnection is a tenant's link to one provider of the registry
(integrations.connections.providers): GitHub, Jira, a generic JSON API, at the provider's base
URL or one of its own (GitHub Enterprise, Jira Data Center). Its IntegrationCredential holds
CredentialVersions staged the way AWS Secrets Manager stages them: at most one `pending` (a
rotation under way), one `current` (what every request authenticates with), one `previous`
(still accepted for a grace period after a rotation) and any number of `retired`. A version's
secret is JSON, encrypted at rest (FERNET_KEYS); its key fingerprint names the key that
encrypted it, so an operator can tell which keys the stored rows still need.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone
from fernet_fields import EncryptedTextField

from core.models import TenantKey


class IntegrationConnection(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        ERROR = "error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    # A provider's name in the registry (validated by services.create_connection, which knows
    # the registry: the column stays a plain name so a provider retired from code leaves its
    # rows readable).
    provider = models.CharField(max_length=50)
    name = models.CharField(max_length=200)
    # Empty: the provider's default base URL. Set: a self-hosted instance.
    base_url = models.URLField(max_length=2000, blank=True)
    config = models.JSONField(default=dict, blank=True)
    streams = models.JSONField(default=list, blank=True)  # stream names; empty = all
    cadence_seconds = models.PositiveIntegerField(default=3600)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="connection_name_once")
        ]
        indexes = [models.Index(fields=["tenant", "created"], name="connection_tenant")]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class IntegrationCredential(models.Model):
    class Kind(models.TextChoices):
        TOKEN = "token", "Token (bearer or personal access token)"
        API_KEY = "api_key", "API key"
        BASIC = "basic", "User and password or API token (Basic)"
        OAUTH2 = "oauth2", "OAuth 2.0 (access and refresh token)"

    class Method(models.TextChoices):
        """How a rotation gets its new secret."""

        VENDOR_KEY = "vendor_key", "Create a new key at the vendor's key API"
        OAUTH2_REFRESH = "oauth2_refresh", "OAuth 2.0 refresh"
        OPERATOR = "operator", "Supplied by an operator"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    connection = models.ForeignKey(
        IntegrationConnection, models.CASCADE, related_name="credentials"
    )
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TOKEN)
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.OPERATOR)
    # The rotation policy: every N days (None: only on request), and how long the previous
    # version keeps working after a rotation.
    rotate_every_days = models.PositiveIntegerField(null=True, blank=True)
    grace_seconds = models.PositiveIntegerField(default=24 * 3600)
    rotated_at = models.DateTimeField(null=True, blank=True)
    # When the schedule rotates it next (rotated_at + N days); None when it does not.
    next_rotation_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]
        indexes = [
            models.Index(fields=["tenant", "connection"], name="credential_tenant"),
            models.Index(
                fields=["next_rotation_at"],
                name="credential_due",
                condition=Q(next_rotation_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} of {self.connection_id}"


class CredentialVersion(models.Model):
    class Stage(models.TextChoices):
        PENDING = "pending"
        CURRENT = "current"
        PREVIOUS = "previous"
        RETIRED = "retired"

    class Step(models.TextChoices):
        """How far a pending version's rotation got; each step is committed before the next,
        so a rotation resumed after a crash starts where it stopped."""

        # The row exists, committed before anything is asked of the vendor: the vendor is
        # asked under an Idempotency-Key derived from its id, so asking again after a crash
        # gets the same key back.
        CREATED = "created"
        SET = "set"  # the vendor's answer (the new secret, its key id) is stored
        VERIFIED = "verified"  # the provider's verification request accepted it
        FAILED = "failed"  # given up; current untouched
        DONE = "done"  # promoted (or the first version of a credential)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    credential = models.ForeignKey(IntegrationCredential, models.CASCADE, related_name="versions")
    stage = models.CharField(max_length=8, choices=Stage.choices)
    step = models.CharField(max_length=8, choices=Step.choices, default=Step.CREATED)
    # The client's idempotency token (AWS's ClientRequestToken): the version's public id.
    rotation_token = models.CharField(max_length=64)
    source = models.CharField(max_length=16, blank=True)  # initial, a Method, rollback
    # JSON, encrypted under FERNET_KEYS[0] when written; "" while a vendor has yet to mint it.
    secret = EncryptedTextField(blank=True, default="")
    key_fingerprint = models.CharField(max_length=16, blank=True)
    # The vendor's id of the key this version is (to revoke it once it is retired).
    vendor_key_id = models.CharField(max_length=200, blank=True)
    vendor_revoked_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True)
    created = models.DateTimeField(default=timezone.now)
    promoted = models.DateTimeField(null=True, blank=True)
    # A previous version works until then.
    expires = models.DateTimeField(null=True, blank=True)
    retired = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["credential", "-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "rotation_token"], name="version_token_once"
            ),
            # One pending, one current, one previous per credential: the database refuses a
            # second, whatever two concurrent rotations try.
            *(
                models.UniqueConstraint(
                    fields=["credential"], condition=Q(stage=stage), name=f"version_one_{stage}"
                )
                for stage in ("pending", "current", "previous")
            ),
        ]
        indexes = [models.Index(fields=["tenant", "credential"], name="version_tenant")]

    def __str__(self) -> str:
        return f"{self.rotation_token} ({self.stage})"

    @property
    def value(self) -> dict[str, Any]:
        return json.loads(self.secret) if self.secret else {}

    def usable(self, *, now: datetime) -> bool:
        if self.stage == self.Stage.CURRENT:
            return True
        return self.stage == self.Stage.PREVIOUS and self.expires is not None and self.expires > now
