"""The console's sync: runs, streams with their checkpoints, and the stored records.

All three are IntegrationSyncWorker's rows, so nothing here is edited by hand. The operator's
one write is a stream's "Reset" (an object action, through integrations.sync.handler, as the
API's POST .../streams/<stream>/reset): its checkpoint forgotten, its next run a full read.
"Sync now" is on the connection's page (integrations/connections/admin.py).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse

from core.admin import (
    ReadOnlyMixin,
    clipped_cell,
    fieldset_fields,
    first_line,
    link,
    moment_column,
    pretty_json,
    truncated,
)
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from core.formats import format_count, format_duration
from integrations.connections import providers
from integrations.sync import handler
from integrations.sync.models import IntegrationRun, SyncRecord, SyncStream

CHECKPOINT_CHARS = 120


def run_url(run_id: Any) -> str:
    return reverse("admin:sync_integrationrun_change", args=[run_id])


def checkpoint_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Where the stream stands first (`since`, which a clipped cell must not lose), the ids
    seen at that instant last (a map of hashes, long and of little use to a person)."""
    key = item[0]
    return ({"since": 0, "seen": 2}.get(key, 1), key)


def checkpoint_text(checkpoint: dict[str, Any], *, value_chars: int = 32) -> str:
    """A checkpoint on one line, "since=2024-05-01T10:05:00Z, etag=\"d20f…, seen={…": each value
    clipped, for a list cell or a panel (the whole JSON is on the stream's page)."""
    parts = []
    for key, value in sorted(checkpoint.items(), key=checkpoint_order):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        parts.append(f"{key}={truncated(text, value_chars)}")
    return ", ".join(parts) or "(empty)"


class StreamFilter(admin.SimpleListFilter):
    """The stream names every provider declares: from the registry, not a DISTINCT over the
    records (which grow without bound)."""

    title = "stream"
    parameter_name = "stream"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = sorted({s.name for p in providers.all() for s in p.streams})
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(stream=self.value()) if self.value() else queryset


@admin.register(IntegrationRun)
class IntegrationRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["started_cell", "connection", "trigger", "status", "counts", "pages",
                    "finished_cell", "error_cell"]  # fmt: skip
    list_display_links = ["started_cell"]
    # The platform's list styles (clipped values wrap anywhere): fits 1440 px beside the filters.
    change_list_template = "admin/core/change_list.html"
    list_filter = ["status", "trigger", "connection"]
    list_select_related = ["connection"]
    search_fields = ["=id"]
    search_help_text = "A run's id."
    ordering = ["-started"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "id", "connection", "tenant", "trigger", "status", "started", "finished", "streams",
            "stream", "full", "error", "failure_id", "attempt",
        ]}),
        ("Counts", {"fields": [
            "added", "updated", "unchanged", "deleted", "pages", "requests", "not_modified",
            "rate_limited",
        ]}),
        ("Checkpoints", {"fields": ["checkpoints_from_json", "checkpoints_to_json"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)

    started_cell = moment_column("started", "started")
    finished_cell = moment_column("finished", "finished")

    @admin.display(description="records")
    def counts(self, run: IntegrationRun) -> str:
        # Each figure named in the cell, which wraps: a list's header does not.
        figures = {
            "added": run.added, "updated": run.updated, "unchanged": run.unchanged,
            "deleted": run.deleted,
        }  # fmt: skip
        return ", ".join(f"{format_count(n)} {name}" for name, n in figures.items())

    @admin.display(description="error")
    def error_cell(self, run: IntegrationRun) -> str:
        return clipped_cell(first_line(run.error, 200), 50) if run.error else "-"

    @admin.display(description="waited on rate limits")
    def rate_limited(self, run: IntegrationRun) -> str:
        """Time the run waited on its rate bucket or a vendor's 429 (no attempt spent), as the
        console writes every duration, not a float of seconds."""
        return format_duration(run.rate_limited_seconds) if run.rate_limited_seconds else "-"

    @admin.display(description="checkpoints from")
    def checkpoints_from_json(self, run: IntegrationRun) -> str:
        return pretty_json(run.checkpoints_from)

    @admin.display(description="checkpoints to")
    def checkpoints_to_json(self, run: IntegrationRun) -> str:
        return pretty_json(run.checkpoints_to)


@admin.register(SyncStream)
class SyncStreamAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    list_display = ["name", "connection", "state", "checkpoint_cell", "last_synced_cell",
                    "last_run_link"]  # fmt: skip
    list_filter = ["state", "connection"]
    list_select_related = ["connection"]
    search_fields = ["=name"]
    ordering = ["connection__name", "name"]
    fields = readonly_fields = ("connection", "name", "state", "checkpoint_json", "last_synced",
                                "last_run_link", "updated")  # fmt: skip
    object_actions = ["reset"]
    change_list_template = "admin/core/change_list.html"

    @admin.display(description="checkpoint")
    def checkpoint_cell(self, stream: SyncStream) -> str:
        return clipped_cell(checkpoint_text(stream.checkpoint), CHECKPOINT_CHARS)

    @admin.display(description="checkpoint")
    def checkpoint_json(self, stream: SyncStream) -> str:
        return pretty_json(stream.checkpoint)

    last_synced_cell = moment_column("last_synced", "last synced")

    @admin.display(description="last run")
    def last_run_link(self, stream: SyncStream) -> str:
        return link(run_url(stream.last_run_id), "its run") if stream.last_run_id else "-"

    def has_reset_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sync.change_syncstream"))

    @object_action(
        label="Reset",
        permission="reset",
        help="Forget the checkpoint: the next run reads the whole stream again (stored records "
        "stay, so nothing unchanged is published again).",
    )
    def reset(self, request: HttpRequest, stream: SyncStream) -> Done:
        try:
            handler.reset_stream(connection=stream.connection, name=stream.name)
        except handler.Busy as exc:
            return Done(f"Not reset: {exc}", messages.WARNING)
        except handler.NotSyncable as exc:
            return Done(f"Not reset: {exc}", messages.ERROR)
        self.log_change(request, stream, "Reset its checkpoint")
        return Done(f"Reset {stream.name}: its next run reads it from the start.")


@admin.register(SyncRecord)
class SyncRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["external_id", "stream", "connection", "last_action", "last_modified_cell",
                    "change", "deleted"]  # fmt: skip
    list_filter = [StreamFilter, "last_action", "connection"]
    list_select_related = ["connection"]
    search_fields = ["=external_id"]
    search_help_text = "The vendor's id of a record, exactly."
    change_list_template = "admin/core/change_list.html"
    ordering = ["-id"]  # newest first, on the primary key (a change number is per connection)
    show_full_result_count = False
    fields = readonly_fields = ("connection", "stream", "external_id", "last_action",
                                "first_seen", "last_modified", "deleted_at", "change", "cursor",
                                "content_hash", "hash_algorithm", "seen_run",
                                "data_json")  # fmt: skip

    last_modified_cell = moment_column("last_modified", "last modified")
    deleted = moment_column("deleted_at", "deleted")

    @admin.display(description="data")
    def data_json(self, record: SyncRecord) -> str:
        return pretty_json(record.data)
