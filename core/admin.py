"""The operator's console: tenants, API keys, and the worker runtime's tables.

The runtime's tables are the platform's record of what happened, so the admin shows them and
never edits them. The operator's only writes are revoking a key and replaying a dead letter, and
both go through the same code paths as everywhere else (revoked=now, core.runtime.replay).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin_actions import Done, ModelAdmin, ObjectActionsAdmin, object_action
from core.models import ApiKey, DeadLetter, Event, Failure, Message, Tenant
from core.runtime import health, replay

if TYPE_CHECKING:  # generic in django-stubs only (see core.admin_actions.ModelAdmin)
    TabularInline = admin.TabularInline[Any, Any]
    StackedInline = admin.StackedInline[Any, Any]
else:
    TabularInline, StackedInline = admin.TabularInline, admin.StackedInline


def pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def fieldset_fields(fieldsets: Sequence[tuple[Any, Mapping[str, Any]]]) -> list[str]:
    """Every field of `fieldsets`: those of a page that is read-only throughout."""
    return [field for _, options in fieldsets for field in options["fields"]]


def truncated(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


class ReadOnlyMixin:
    """View permission only: these rows are written by the runtime, and an edit by hand would
    break the story they tell (and the idempotency marks they carry)."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(ModelAdmin):
    list_display = ["slug", "name", "created"]
    search_fields = ["slug"]


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    # The digest is in no field list: it is what a presented key is checked against, so showing
    # it helps nobody and editing it would silently swap the key. Keys are issued only by
    # `manage.py create_api_key`, the one place that shows the plain key (once).
    list_display = ["display", "tenant", "name", "created", "last_used", "revoked"]
    list_filter = [("revoked", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["lookup", "name", "tenant__slug"]
    fields = ["tenant", "name", "display", "created", "last_used", "revoked"]
    readonly_fields = ["tenant", "display", "created", "last_used", "revoked"]
    actions = ["revoke"]

    @admin.display(description="key")
    def display(self, key: ApiKey) -> str:
        return f"{ApiKey.PREFIX}{key.lookup}_…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # A revoked key stays, so that last_used and revoked still answer "who used it, when".
        return False

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked__isnull=True))
        ApiKey.objects.filter(pk__in=[k.pk for k in keys]).update(revoked=timezone.now())
        for key in keys:
            self.log_change(request, key, "Revoked")
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)


class MessageInline(ReadOnlyMixin, TabularInline):
    model = Message
    fields = readonly_fields = ("worker", "state", "attempts", "due_at", "handled_at", "error")
    show_change_link = True
    extra = 0

    @admin.display(description="last error")
    def error(self, message: Message) -> str:
        return truncated(message.last_error)


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ["type", "tenant", "recorded_at", "source"]
    list_filter = ["type", "tenant"]
    list_select_related = ["tenant"]
    date_hierarchy = "recorded_at"
    fields = readonly_fields = (
        "id", "type", "tenant", "trace_id", "span_id", "correlation_id", "source", "source_id",
        "occurred_at", "recorded_at", "to_worker", "data_json",
    )  # fmt: skip
    inlines = [MessageInline]

    @admin.display(description="data")
    def data_json(self, event: Event) -> str:
        return pretty_json(event.data)


class FailureInline(ReadOnlyMixin, StackedInline):
    model = Failure
    fields = readonly_fields = ("attempt", "at", "permanent", "error", "traceback_pre")
    extra = 0

    @admin.display(description="traceback")
    def traceback_pre(self, failure: Failure) -> str:
        return format_html("<pre>{}</pre>", failure.traceback)


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = [
        "worker", "event_type", "tenant", "state", "attempts", "due_at", "handled_at", "error",
    ]  # fmt: skip
    list_filter = ["worker", "state"]
    list_select_related = ["event", "tenant"]
    fields = readonly_fields = (
        "event", "worker", "tenant", "state", "attempts", "claims", "due_at", "lease_token",
        "created", "handled_at", "last_error",
    )  # fmt: skip
    inlines = [FailureInline]

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, message: Message) -> str:
        return message.event.type

    @admin.display(description="last error")
    def error(self, message: Message) -> str:
        return truncated(message.last_error)


class OpenFilter(admin.SimpleListFilter):
    """Open dead letters still need the operator; replayed ones are history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("replayed", "Replayed")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> QuerySet[DeadLetter]:
        if self.value() == "open":
            return queryset.filter(replayed_at__isnull=True)
        if self.value() == "replayed":
            return queryset.filter(replayed_at__isnull=False)
        return queryset


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    list_display = [
        "worker",
        "event_type",
        "tenant",
        "created",
        "short_reason",
        "replays",
        "is_open",
    ]
    list_filter = ["worker", "event_type", "tenant", OpenFilter]
    list_select_related = ["tenant"]
    fields = readonly_fields = (
        "worker", "event_type", "tenant", "message", "created", "replayed_at", "replays",
        "reason", "envelope_json", "attempts_html",
    )  # fmt: skip
    actions = ["replay_selected"]
    object_actions = ["replay"]

    @admin.display(description="reason")
    def short_reason(self, dead_letter: DeadLetter) -> str:
        return truncated(dead_letter.reason)

    @admin.display(description="open", boolean=True)
    def is_open(self, dead_letter: DeadLetter) -> bool:
        return dead_letter.is_open

    @admin.display(description="envelope")
    def envelope_json(self, dead_letter: DeadLetter) -> str:
        return pretty_json(dead_letter.envelope)

    @admin.display(description="attempts")
    def attempts_html(self, dead_letter: DeadLetter) -> str:
        # Stored as ISO text (JSON); shown in the console's time format.
        attempts = [{**a, "at": parse_datetime(a["at"])} for a in dead_letter.attempts]
        return render_to_string("admin/core/deadletter/attempts.html", {"attempts": attempts})

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Dead letters are otherwise read-only; replaying is the one change an operator makes
        # to them, so it is granted by the model's change permission.
        return bool(request.user.has_perm("core.change_deadletter"))

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        # Listed first: under the "open" filter, the queryset would lose what was just replayed.
        dead_letters = list(queryset.select_related("message"))
        replayed = replay.replay_all(dead_letters)
        for dead_letter in dead_letters:
            if dead_letter.id in replayed:
                self.log_change(request, dead_letter, "Replayed")
        already = len(dead_letters) - len(replayed)
        self.message_user(
            request,
            f"Replayed {len(replayed)}; {already} were already replayed",
            messages.SUCCESS,
        )

    @object_action(label="Replay", permission="replay", shown=lambda letter: letter.is_open)
    def replay(self, request: HttpRequest, dead_letter: DeadLetter) -> Done:
        if not replay.replay(dead_letter):
            return Done(f"{dead_letter} was already replayed.", messages.WARNING)
        self.log_change(request, dead_letter, "Replayed")
        return Done(f"Replayed {dead_letter}.")

    def get_urls(self) -> list[URLPattern]:
        # The health page hangs here, beside the dead letters it links to: a ModelAdmin's own
        # URLs are how an app adds admin pages to the stock admin site.
        view = self.admin_site.admin_view
        return [path("health/", view(self.health_view), name="core_health"), *super().get_urls()]

    def health_view(self, request: HttpRequest) -> HttpResponse:
        report = health.report()
        context = {
            **self.admin_site.each_context(request),
            "title": "Worker health",
            "opts": self.opts,
            "report": report,
            "checked_at": parse_datetime(report["checkedAt"]),
            "clusters": [_with_times(c, "lastHeartbeat") for c in report["clusters"]],
            "workers": [
                _with_times(w, "lastSuccess", "clusterHeartbeat") for w in report["workers"]
            ],
        }
        return render(request, "admin/core/health.html", context)


def _with_times(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The report speaks ISO 8601 for machines; the page shows ages, so it needs datetimes."""
    return {**row, **{f"{key}At": parse_datetime(row[key]) if row[key] else None for key in keys}}
