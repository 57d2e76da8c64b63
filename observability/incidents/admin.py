"""The operator's console for incidents: the list (newest first, filters on status, severity
and tenant, search by number or title), and an incident's page with its timeline, its triggers
and its lineage, each trace a link to its waterfall.

An incident is the worker's record, so nothing here is edited by hand; the operator's writes
are the object actions Acknowledge, Resolve and Comment (core.admin_actions; Comment is a form
under the timeline), through the same services as the API, on the timeline under the console
user's name.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from core.admin import ReadOnlyMixin, clipped_cell, fieldset_fields
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from core.formats import format_count, format_moment
from observability.incidents import selectors, services
from observability.incidents.models import Incident, Status
from observability.models import TraceRecord


def trace_links(incident: Incident, trace_ids: list[str]) -> dict[str, str]:
    """The URL of each stored trace's page (a trace not stored yet has none)."""
    records = TraceRecord.objects.filter(
        tenant_id=incident.tenant_id, trace_id__one_of=set(trace_ids)
    ).values_list("trace_id", "pk")
    return {
        trace_id: reverse("admin:observability_tracerecord_change", args=[pk])
        for trace_id, pk in records
    }


class CommentForm(forms.Form):
    text = forms.CharField(
        label="Comment",
        max_length=services.COMMENT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
    )


@admin.register(Incident)
class IncidentAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    # At 1440 px beside the filters: the tenant is a filter, not a column.
    list_display = [
        "number_label", "short_title", "status", "severity", "services_list", "triggers",
        "opened", "resolved",
    ]  # fmt: skip
    list_display_links = ["number_label", "short_title"]
    list_filter = ["status", "severity", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["title", "=group_key"]
    search_help_text = "A number (42 or #42), words of the title, or a group key."
    ordering = ["-opened_at"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "number_label", "title", "status", "severity", "tenant", "group_key", "services_list",
            "started_at", "opened_at", "last_trigger_at", "acknowledged", "resolved_by_whom",
            "closed_at", "reopened",
        ]}),
        ("Triggers", {"fields": ["triggers_panel"]}),
        ("Lineage: the traces behind it", {"fields": ["lineage_panel"]}),
        # Last, so that the comment form (drawn after the page's fields) is right beneath it.
        ("Timeline", {"fields": ["timeline_panel"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)
    object_actions = ["acknowledge", "resolve", "comment"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Incident]:
        return selectors.counted(super().get_queryset(request))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Incident], search_term: str
    ) -> tuple[QuerySet[Incident], bool]:
        number = search_term.strip().removeprefix("#")
        if number.isascii() and number.isdigit() and len(number) < 10:
            return queryset.filter(number=int(number)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="number", ordering="number")
    def number_label(self, incident: Incident) -> str:
        return f"#{incident.number}"

    @admin.display(description="title", ordering="title")
    def short_title(self, incident: Incident) -> str:
        return clipped_cell(incident.title, 70)

    @admin.display(description="services")
    def services_list(self, incident: Incident) -> str:
        return clipped_cell(", ".join(incident.services), 40) if incident.services else "-"

    @admin.display(description="triggers (active)")
    def triggers(self, incident: Any) -> str:
        return f"{format_count(incident.trigger_count)} ({format_count(incident.active_count)})"

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, incident: Incident) -> str:
        return format_moment(incident.opened_at)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, incident: Incident) -> str:
        return format_moment(incident.resolved_at)

    @admin.display(description="acknowledged")
    def acknowledged(self, incident: Incident) -> str:
        if incident.acknowledged_at is None:
            return "-"
        return f"{format_moment(incident.acknowledged_at)} by {incident.acknowledged_by}"

    @admin.display(description="resolved")
    def resolved_by_whom(self, incident: Incident) -> str:
        if incident.resolved_at is None:
            return "-"
        return f"{format_moment(incident.resolved_at)} by {incident.resolved_by}"

    @admin.display(description="timeline")
    def timeline_panel(self, incident: Incident) -> str:
        entries = selectors.timeline(incident)
        return render_to_string(
            "admin/incidents/incident/timeline.html",
            {"entries": [(format_moment(e.at), e) for e in entries], "limit": len(entries)},
        )

    @admin.display(description="triggers")
    def triggers_panel(self, incident: Incident) -> str:
        shown = list(selectors.triggers(incident)[: selectors.MAX_TRIGGERS])
        return render_to_string(
            "admin/incidents/incident/triggers.html",
            {
                "triggers": [
                    (format_moment(t.first_at), format_moment(t.last_event_at), t) for t in shown
                ],
                "limit": selectors.MAX_TRIGGERS,
            },
        )

    @admin.display(description="lineage")
    def lineage_panel(self, incident: Incident) -> str:
        lineage = selectors.lineage(incident)
        urls = trace_links(incident, [t.trace_id for t in lineage]) if lineage else {}
        return render_to_string(
            "admin/incidents/incident/lineage.html",
            {"rows": [(urls.get(t.trace_id), format_moment(t.linked_at), t) for t in lineage]},
        )

    # The operator's writes: object actions, through observability.incidents.services.

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("incidents.change_incident"))

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("incidents.change_incident"))

    def has_comment_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("incidents.change_incident"))

    @object_action(
        label="Acknowledge",
        permission="acknowledge",
        shown=lambda incident: incident.status == Status.OPEN,
        help="Say that someone is on it: on the timeline under your name.",
    )
    def acknowledge(self, request: HttpRequest, incident: Incident) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        try:
            changed = services.acknowledge(incident=incident, actor=actor)
        except services.Refused as exc:
            return Done(str(exc), messages.WARNING)
        if changed:
            self.log_change(request, incident, "Acknowledged")
            return Done(f"Acknowledged incident #{incident.number}.")
        return Done(f"Incident #{incident.number} was acknowledged already.", messages.WARNING)

    @object_action(
        label="Resolve",
        permission="resolve",
        shown=lambda incident: incident.is_open,
        help="Resolve it and its active triggers; a trigger firing again reopens it.",
    )
    def resolve(self, request: HttpRequest, incident: Incident) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        if services.resolve(incident=incident, actor=actor):
            self.log_change(request, incident, "Resolved")
            return Done(f"Resolved incident #{incident.number}.")
        return Done(f"Incident #{incident.number} was {incident.status} already.", messages.WARNING)

    @object_action(
        label="Comment",
        permission="comment",
        form=CommentForm,
        help="A note on the timeline under your name, in any status (postmortem notes too).",
    )
    def comment(self, request: HttpRequest, incident: Incident, data: dict[str, Any]) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        try:
            services.comment(incident=incident, actor=actor, text=data["text"])
        except services.Refused as exc:
            return Done(str(exc), messages.WARNING)
        self.log_change(request, incident, "Commented")
        return Done(f"Commented on incident #{incident.number}.")
