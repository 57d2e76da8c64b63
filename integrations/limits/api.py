"""The limits API: a tenant's circuits (and isolating or closing one) and rate buckets. Thin
views over integrations.limits; every lookup is by the caller's tenant. A row belongs to the
tenant of the connection, credential or webhook subscription its key names (models.py);
platform-wide keys (`host:<name>`, no tenant) are the operator's, in the admin only."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, paged
from core.openapi import errors
from integrations.limits import circuits
from integrations.limits.models import Circuit, RateBucket


class CircuitOutput(serializers.ModelSerializer):
    openedAt = serializers.DateTimeField(source="opened_at", allow_null=True)
    openUntil = serializers.DateTimeField(
        source="open_until", allow_null=True, help_text="Open: calls wait until then."
    )
    closedAt = serializers.DateTimeField(source="closed_at", allow_null=True)
    trips = serializers.IntegerField(help_text="Trips in a row; each opens it for longer.")
    windowStart = serializers.DateTimeField(source="window_start", allow_null=True)
    calls = serializers.IntegerField(help_text="Calls counted in the current window.")
    failures = serializers.IntegerField()
    slow = serializers.IntegerField()
    permitsLeft = serializers.IntegerField(source="permits_left")

    class Meta:
        model = Circuit
        fields = [
            "key", "state", "reason", "openedAt", "openUntil", "closedAt", "trips",
            "windowStart", "calls", "failures", "slow", "permitsLeft", "updated",
        ]  # fmt: skip


class RateBucketOutput(serializers.ModelSerializer):
    rate = serializers.FloatField(help_text="Requests per second, sustained.")
    burst = serializers.IntegerField(help_text="Requests at once after a quiet spell.")
    available = serializers.SerializerMethodField(help_text="Requests it would grant now.")
    blockedUntil = serializers.SerializerMethodField(
        help_text="The vendor said wait until then (reset time or Retry-After); null if not."
    )
    blockedReason = serializers.CharField(source="blocked_reason")
    grants = serializers.IntegerField(help_text="Requests granted, ever.")

    class Meta:
        model = RateBucket
        fields = [
            "key", "rate", "burst", "available", "blockedUntil", "blockedReason", "grants",
            "updated",
        ]  # fmt: skip

    def get_available(self, bucket: RateBucket) -> float:
        return round(bucket.available(now=timezone.now()), 3)

    def get_blockedUntil(self, bucket: RateBucket) -> str | None:
        until = bucket.blocked_until_at
        if until is None or until <= timezone.now():
            return None
        return serializers.DateTimeField().to_representation(until)


class KeyPage(Pager):
    page_size = 100
    max_page_size = 500
    ordering = ("key",)


class CircuitListView(APIView):
    """GET /api/integrations/circuits: the tenant's circuits (its connections', credentials'
    and webhook endpoint hosts'), by key."""

    pagination_class = KeyPage

    @extend_schema(
        summary="List circuits",
        parameters=[
            OpenApiParameter("state", str, enum=[s.value for s in Circuit.State]),
        ],
        responses={200: CircuitOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        found = Circuit.objects.filter(tenant_id=request.user.tenant.pk)
        state = request.query_params.get("state")
        if state:
            if state not in Circuit.State.values:
                raise exceptions.ValidationError({"state": [f"Not one of {Circuit.State.values}."]})
            found = found.filter(state=state)
        return paged(self, request, found, output=CircuitOutput)


class IsolateInput(serializers.Serializer):
    reason = serializers.CharField(max_length=400, required=False, default="", allow_blank=True)


KEY = OpenApiParameter(
    "key",
    str,
    OpenApiParameter.PATH,
    description="The circuit's key, e.g. connection:<uuid> or tenant:<uuid>:host:<name>.",
)


def _circuit_or_404(request, key: str) -> Circuit:
    found = Circuit.objects.filter(tenant_id=request.user.tenant.pk, key=key).first()
    if found is None:
        raise exceptions.NotFound(f"No circuit {key} for this tenant.")
    return found


class IsolateCircuitView(APIView):
    """POST /api/integrations/circuits/<key>/isolate: hold it open (Polly's Isolate): every
    caller waits, without spending attempts, until it is closed."""

    @extend_schema(
        summary="Isolate a circuit",
        parameters=[KEY],
        request=IsolateInput,
        responses={200: CircuitOutput, **errors(400, 401, 404, 413, 415)},
    )
    def post(self, request, key: str):
        circuit = _circuit_or_404(request, key)
        body = IsolateInput(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"] or "isolated through the API"
        return Response(CircuitOutput(circuits.isolate(circuit.key, reason=reason)).data)


class CloseCircuitView(APIView):
    """POST /api/integrations/circuits/<key>/close: let calls through again now, its trips
    forgotten."""

    @extend_schema(
        summary="Close a circuit",
        parameters=[KEY],
        request=None,
        responses={200: CircuitOutput, **errors(401, 404)},
    )
    def post(self, request, key: str):
        circuit = _circuit_or_404(request, key)
        return Response(CircuitOutput(circuits.close(circuit.key)).data)


class RateBucketListView(APIView):
    """GET /api/integrations/rate-buckets: the tenant's rate buckets, by key."""

    pagination_class = KeyPage

    @extend_schema(
        summary="List rate buckets",
        responses={200: RateBucketOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        found = RateBucket.objects.filter(tenant_id=request.user.tenant.pk)
        return paged(self, request, found, output=RateBucketOutput)
