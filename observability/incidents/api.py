"""The incidents API: thin views over observability.incidents' selectors and services, with
input and output serializers. Every lookup is by the caller's tenant, so another tenant's
incident is simply not found. An incident is named by its id (a UUID) or its number."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, SinceField, paged
from core.auth import TenantPrincipal
from core.openapi import errors
from observability.incidents import selectors, services
from observability.incidents.models import (
    Incident,
    IncidentTimelineEntry,
    IncidentTrigger,
    Severity,
    Status,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class IncidentOutput(serializers.ModelSerializer[Incident]):
    groupKey = serializers.CharField(source="group_key")
    services = serializers.ListField(child=serializers.CharField())
    startedAt = serializers.DateTimeField(
        source="started_at", help_text="When the first trigger's breaching window began."
    )
    openedAt = serializers.DateTimeField(source="opened_at")
    lastTriggerAt = serializers.DateTimeField(source="last_trigger_at")
    acknowledgedAt = serializers.DateTimeField(source="acknowledged_at", allow_null=True)
    acknowledgedBy = serializers.CharField(source="acknowledged_by")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)
    resolvedBy = serializers.CharField(
        source="resolved_by",
        help_text='"system" (its last trigger resolved), "timeout", or who resolved it.',
    )
    closedAt = serializers.DateTimeField(source="closed_at", allow_null=True)
    triggerCount = serializers.IntegerField(source="trigger_count")
    activeTriggerCount = serializers.IntegerField(source="active_count")

    class Meta:
        model = Incident
        fields = [
            "id", "number", "title", "status", "severity", "groupKey", "services", "startedAt",
            "openedAt", "lastTriggerAt", "acknowledgedAt", "acknowledgedBy", "resolvedAt",
            "resolvedBy", "closedAt", "reopened", "triggerCount", "activeTriggerCount",
        ]  # fmt: skip


class IncidentTriggerOutput(serializers.ModelSerializer[IncidentTrigger]):
    triggerKey = serializers.CharField(source="trigger_key")
    groupKey = serializers.CharField(source="group_key")
    joinedBy = serializers.CharField(
        source="joined_by", help_text='"group" (its group key) or "traces" (shared traces).'
    )
    firstEventId = serializers.UUIDField(source="first_event_id")
    lastEventId = serializers.UUIDField(source="last_event_id")
    firstAt = serializers.DateTimeField(source="first_at")
    lastEventAt = serializers.DateTimeField(source="last_event_at")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)
    data = serializers.DictField(help_text="Its latest event's data, as published.")  # type: ignore[assignment]

    class Meta:
        model = IncidentTrigger
        fields = [
            "triggerKey", "groupKey", "kind", "name", "service", "state", "severity", "joinedBy",
            "fired", "reason", "firstEventId", "lastEventId", "firstAt", "lastEventAt",
            "resolvedAt", "data",
        ]  # fmt: skip


class IncidentTraceOutput(serializers.Serializer[selectors.Lineage]):
    traceId = serializers.CharField(source="trace_id")
    triggerKey = serializers.CharField(source="trigger_key", help_text="The trigger that named it.")
    linkedAt = serializers.DateTimeField(source="linked_at")
    rootService = serializers.CharField(source="root_service")
    rootName = serializers.CharField(source="root_name")
    spanCount = serializers.IntegerField(source="span_count")
    errorCount = serializers.IntegerField(source="error_count")
    logCount = serializers.IntegerField(source="log_count")


class IncidentTimelineEntryOutput(serializers.ModelSerializer[IncidentTimelineEntry]):
    data = serializers.DictField()  # type: ignore[assignment]

    class Meta:
        model = IncidentTimelineEntry
        fields = ["at", "kind", "actor", "message", "data"]


class IncidentDetailOutput(IncidentOutput):
    """An incident with its triggers (the first MAX_TRIGGERS), its lineage (the traces behind
    it, with their figures now) and its timeline (the newest MAX_TIMELINE entries, oldest
    first)."""

    triggers = IncidentTriggerOutput(source="trigger_list", many=True)
    lineage = IncidentTraceOutput(source="lineage_list", many=True)
    timeline = IncidentTimelineEntryOutput(source="timeline_list", many=True)

    class Meta(IncidentOutput.Meta):
        fields = [*IncidentOutput.Meta.fields, "triggers", "lineage", "timeline"]


class IncidentPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-number",)


class IncidentFilters(serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=Status.values, required=False, default="", allow_blank=True
    )
    severity = serializers.ChoiceField(
        choices=Severity.values, required=False, default="", allow_blank=True
    )
    service = serializers.CharField(
        max_length=200,
        required=False,
        default="",
        allow_blank=True,
        help_text="Incidents with a trigger on this service.",
    )
    since = SinceField(required=False, default=None, help_text="Incidents opened since then.")


INCIDENT_ID = OpenApiParameter(
    "incident_id",
    str,
    OpenApiParameter.PATH,
    description="The incident's id (a UUID), or its number (42).",
)


def _incident_or_404(request: Request, incident_id: str) -> Incident:
    found = selectors.incident(tenant=_principal(request).tenant, incident_id=incident_id)
    if found is None:
        raise exceptions.NotFound(
            f"No incident {incident_id} for this tenant: name it by its id or its number "
            "(GET /api/incidents lists them)."
        )
    return found


def _principal(request: Request) -> TenantPrincipal:
    assert isinstance(request.user, TenantPrincipal)  # IsTenant let no one else in
    return request.user


def _reread(request: Request, incident: Incident) -> Incident:
    found = selectors.incident(tenant=_principal(request).tenant, incident_id=str(incident.pk))
    assert found is not None
    return found


class IncidentListView(APIView):
    """GET /api/incidents?status=&severity=&service=&since=: the caller's incidents, the
    newest first, paged."""

    pagination_class = IncidentPage

    @extend_schema(
        summary="List incidents",
        parameters=[IncidentFilters],
        responses={200: IncidentOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = IncidentFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.incidents(tenant=_principal(request).tenant, **query.validated_data)
        return paged(self, request, found, output=IncidentOutput)


class IncidentDetailView(APIView):
    """GET /api/incidents/<id>: an incident with its triggers, lineage and timeline."""

    @extend_schema(
        summary="An incident",
        parameters=[INCIDENT_ID],
        responses={200: IncidentDetailOutput, **errors(401, 404)},
    )
    def get(self, request: Request, incident_id: str) -> Response:
        incident: Any = _incident_or_404(request, incident_id)
        incident.trigger_list = selectors.triggers(incident)[: selectors.MAX_TRIGGERS]
        incident.lineage_list = selectors.lineage(incident)
        incident.timeline_list = selectors.timeline(incident)
        return Response(IncidentDetailOutput(incident).data)


class AcknowledgeView(APIView):
    """POST /api/incidents/<id>/acknowledge: someone is on it. Acknowledging it again changes
    nothing; a resolved or closed incident is not acknowledged (409)."""

    @extend_schema(
        summary="Acknowledge an incident",
        parameters=[INCIDENT_ID],
        request=None,
        responses={200: IncidentOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, incident_id: str) -> Response:
        incident = _incident_or_404(request, incident_id)
        actor = services.actor_of_key(_principal(request).key)
        try:
            services.acknowledge(incident=incident, actor=actor)
        except services.Refused as exc:
            raise Conflict(str(exc)) from None
        return Response(IncidentOutput(_reread(request, incident)).data)


class ResolveView(APIView):
    """POST /api/incidents/<id>/resolve: resolve it and its active triggers, and publish
    IncidentResolved. Resolving a resolved or closed incident changes nothing. A trigger that
    fires again within the reopen window reopens it."""

    @extend_schema(
        summary="Resolve an incident",
        parameters=[INCIDENT_ID],
        request=None,
        responses={200: IncidentOutput, **errors(401, 404)},
    )
    def post(self, request: Request, incident_id: str) -> Response:
        incident = _incident_or_404(request, incident_id)
        actor = services.actor_of_key(_principal(request).key)
        services.resolve(incident=incident, actor=actor)
        return Response(IncidentOutput(_reread(request, incident)).data)


class CommentInput(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=services.COMMENT_CHARS)


class CommentView(APIView):
    """POST /api/incidents/<id>/comments {"text": ...}: a comment on the incident's
    timeline, under the API key's name."""

    @extend_schema(
        summary="Comment on an incident",
        parameters=[INCIDENT_ID],
        request=CommentInput,
        responses={201: IncidentTimelineEntryOutput, **errors(400, 401, 404, 413, 415)},
    )
    def post(self, request: Request, incident_id: str) -> Response:
        incident = _incident_or_404(request, incident_id)
        body = CommentInput(data=request.data)
        body.is_valid(raise_exception=True)
        actor = services.actor_of_key(_principal(request).key)
        try:
            entry = services.comment(
                incident=incident, actor=actor, text=body.validated_data["text"]
            )
        except services.Refused as exc:
            raise exceptions.ValidationError({"text": [str(exc)]}) from None
        return Response(IncidentTimelineEntryOutput(entry).data, status=status.HTTP_201_CREATED)
