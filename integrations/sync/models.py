"""Incremental sync: a connection's streams with their checkpoints, the records stored from
them, and its runs.

- SyncStream: one per (connection, stream name): the checkpoint the provider wrote after the
  last committed page (integrations.connections.providers), and whether the stream is mid-run.
- SyncRecord: one per (connection, stream, external id), Nango's records cache: the vendor's
  data, its content hash (and the algorithm), first seen, last modified, last action
  (added, updated, deleted), deleted_at for a soft delete, and `change` — a number from the
  connection's own counter, larger for every change, that the consumer feed pages by.
- IntegrationRun: one per run of a connection (all its streams): its trigger, the checkpoints
  it started from and reached, its counts, and how it ended.
- SyncLock: one per connection: which run holds it (one run at a time), and the change counter.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from core.models import TenantKey
from integrations.connections.models import IntegrationConnection


class IntegrationRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"  # the API's or the admin's "sync now"
        RETRY = "retry"  # IntegrationRetryWorker resuming a failed run

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        PAUSED = "paused"  # waited longer than SYNC_MAX_WAIT_SECONDS on a vendor's limit

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    connection = models.ForeignKey(IntegrationConnection, models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    streams = models.JSONField(default=list)  # the stream names, in the order they are read
    stream = models.CharField(max_length=100, blank=True)  # the one being read now
    full = models.JSONField(default=list)  # streams read from an empty checkpoint (sweepable)
    checkpoints_from = models.JSONField(default=dict)
    checkpoints_to = models.JSONField(default=dict)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    not_modified = models.PositiveIntegerField(default=0)
    rate_limited_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    # A retry IntegrationRetryWorker started: its failure and attempt, echoed in a report.
    failure_id = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    started = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started"]
        indexes = [
            models.Index(fields=["tenant", "connection", "-started"], name="run_connection"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class SyncLock(models.Model):
    """The connection's run lock and change counter: every page commits under this row's lock,
    so changes are numbered in commit order (a feed reader never skips one committed late)."""

    connection = models.OneToOneField(
        IntegrationConnection, models.CASCADE, primary_key=True, related_name="sync_lock"
    )
    tenant = TenantKey()
    run = models.ForeignKey(
        IntegrationRun, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    change = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sync lock of {self.connection_id}"


class SyncStream(models.Model):
    class State(models.TextChoices):
        IDLE = "idle"
        RUNNING = "running"
        ERROR = "error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = TenantKey()
    connection = models.ForeignKey(IntegrationConnection, models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    checkpoint = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.IDLE)
    last_run = models.ForeignKey(
        IntegrationRun, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_synced = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["connection", "name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "name"], name="sync_stream_once")
        ]
        indexes = [models.Index(fields=["tenant", "connection"], name="sync_stream_tenant")]

    def __str__(self) -> str:
        return f"{self.name} of {self.connection_id}"


class SyncRecord(models.Model):
    class Action(models.TextChoices):
        ADDED = "added"
        UPDATED = "updated"
        DELETED = "deleted"

    id = models.BigAutoField(primary_key=True)
    tenant = TenantKey()
    # No index of its own: sync_record_once starts with it (one index fewer to write per record).
    connection = models.ForeignKey(
        IntegrationConnection, models.CASCADE, related_name="+", db_index=False
    )
    stream = models.CharField(max_length=100)
    external_id = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64)
    hash_algorithm = models.CharField(max_length=40)
    data = models.JSONField()
    cursor = models.CharField(max_length=100, blank=True)  # the vendor's updated-at
    first_seen = models.DateTimeField()
    last_modified = models.DateTimeField()
    last_action = models.CharField(max_length=8, choices=Action.choices)
    deleted_at = models.DateTimeField(null=True, blank=True)
    change = models.BigIntegerField()  # the connection's change counter at the last change
    # The last full run that read it: mark-and-sweep deletes what a complete full run missed.
    seen_run = models.UUIDField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "stream", "external_id"], name="sync_record_once"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "connection", "change"], name="sync_record_feed"),
        ]

    def __str__(self) -> str:
        return f"{self.stream}/{self.external_id}"
