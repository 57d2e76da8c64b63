"""The health API: a tenant's connections' health, one connection's with its recent probes,
and "probe now". Thin views; every lookup is by the caller's tenant."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import services
from core.api import Pager, paged
from core.openapi import errors
from integrations.connections.models import IntegrationConnection
from integrations.health.handler import COMMAND
from integrations.health.models import ConnectionHealth, ProbeResult
from integrations.limits import keys
from integrations.limits.models import Circuit


class ProbeOutput(serializers.ModelSerializer):
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    latencyMs = serializers.IntegerField(source="latency_ms", allow_null=True)

    class Meta:
        model = ProbeResult
        fields = ["window", "ok", "slow", "statusCode", "latencyMs", "error", "tries"]


class ConnectionHealthOutput(serializers.ModelSerializer):
    connectionId = serializers.UUIDField(source="connection_id")
    failures = serializers.IntegerField(help_text="Failed windows in a row.")
    successes = serializers.IntegerField(help_text="Good windows in a row.")
    latencyMs = serializers.IntegerField(source="latency_ms", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    outageSince = serializers.DateTimeField(source="outage_since", allow_null=True)
    outageFailureId = serializers.UUIDField(source="outage_failure_id", allow_null=True)
    circuit = serializers.SerializerMethodField(
        help_text="The connection's circuit: closed, open, half_open or isolated."
    )

    class Meta:
        model = ConnectionHealth
        fields = [
            "connectionId", "state", "window", "failures", "successes", "latencyMs",
            "lastError", "changed", "outageSince", "outageFailureId", "circuit", "updated",
        ]  # fmt: skip

    def get_circuit(self, health: ConnectionHealth) -> str:
        key = keys.connection(health.connection_id)
        state = Circuit.objects.filter(key=key).values_list("state", flat=True).first()
        return state or Circuit.State.CLOSED


class ConnectionHealthDetailOutput(ConnectionHealthOutput):
    probes = serializers.SerializerMethodField(help_text="The newest probes, newest first.")

    class Meta(ConnectionHealthOutput.Meta):
        fields = [*ConnectionHealthOutput.Meta.fields, "probes"]

    def get_probes(self, health: ConnectionHealth) -> list[Any]:
        recent = ProbeResult.objects.filter(connection_id=health.connection_id)
        return list(ProbeOutput(recent.order_by("-window")[:20], many=True).data)


class HealthPage(Pager):
    page_size = 100
    max_page_size = 500
    ordering = ("connection_id",)


CONNECTION_ID = OpenApiParameter(
    "connection_id", str, OpenApiParameter.PATH, description="The connection's id (a UUID)."
)


def _connection_or_404(request, connection_id: str) -> IntegrationConnection:
    missing = exceptions.NotFound(f"No connection {connection_id} for this tenant.")
    try:
        pk = uuid.UUID(connection_id)
    except ValueError:
        raise missing from None
    found = IntegrationConnection.objects.filter(tenant_id=request.user.tenant.pk, pk=pk).first()
    if found is None:
        raise missing
    return found


class HealthListView(APIView):
    """GET /api/integrations/health: the tenant's probed connections and their health."""

    pagination_class = HealthPage

    @extend_schema(
        summary="Connections' health",
        responses={200: ConnectionHealthOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        found = ConnectionHealth.objects.filter(tenant_id=request.user.tenant.pk)
        return paged(self, request, found, output=ConnectionHealthOutput)


class ConnectionHealthView(APIView):
    """GET /api/integrations/connections/<id>/health: its health and newest probes."""

    @extend_schema(
        summary="A connection's health",
        parameters=[CONNECTION_ID],
        responses={200: ConnectionHealthDetailOutput, **errors(401, 404)},
    )
    def get(self, request, connection_id: str):
        connection = _connection_or_404(request, connection_id)
        health = ConnectionHealth.objects.filter(connection=connection).first()
        if health is None:
            raise exceptions.NotFound(f"Connection {connection_id} has not been probed yet.")
        return Response(ConnectionHealthDetailOutput(health).data)


class ProbeAcceptedOutput(serializers.Serializer):
    eventId = serializers.UUIDField(help_text="The ConnectionProbeRequested command's id.")


class ProbeNowView(APIView):
    """POST /api/integrations/connections/<id>/probe: probe it now (its result is the
    window's of this moment); 202, the probe follows in ExternalApiHealthWorker."""

    @extend_schema(
        summary="Probe a connection now",
        parameters=[CONNECTION_ID],
        request=None,
        responses={202: ProbeAcceptedOutput, **errors(401, 404)},
    )
    def post(self, request, connection_id: str):
        connection = _connection_or_404(request, connection_id)
        envelope = services.publish(
            tenant=request.user.tenant,
            type=COMMAND,
            data={"connectionId": str(connection.pk)},
            source="api",
            source_id=str(connection.pk),
        )
        return Response({"eventId": str(envelope.event_id)}, status=status.HTTP_202_ACCEPTED)
