"""The core REST API: publishing events and the workers' health."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core import services, since
from core.runtime import health


def exception_handler(exc, context):
    """Every API error is {"error": <what to do>, "details": ...} with the right status."""
    if isinstance(exc, DjangoValidationError):
        return Response({"error": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.NotAuthenticated):
        exc = exceptions.NotAuthenticated(
            "No API key: send the header 'Authorization: Bearer <API key>'. "
            "Create a key with 'manage.py create_api_key --tenant <slug>'."
        )
    response = drf_exception_handler(exc, context)
    if response is not None:
        data = response.data
        if isinstance(data, dict) and set(data) == {"detail"}:
            response.data = {"error": str(data["detail"])}
        else:
            response.data = {"error": "The request is invalid; see details.", "details": data}
    return response


def paged(view, request, found, *, pager: type[pagination.BasePagination], output) -> Response:
    """One page of `found`, each row through the `output` serializer, with the pager's links."""
    paginator = pager()
    page = paginator.paginate_queryset(found, request, view=view)
    return paginator.get_paginated_response(output(page, many=True).data)


class SinceField(serializers.Field):
    """An ISO datetime, or a duration back from now such as 2h or 7d."""

    def to_internal_value(self, data):
        try:
            return since.parse_since(str(data), now=timezone.now())
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value.isoformat()


class EventCreateView(APIView):
    """POST /api/events: publish a factory event for the caller's tenant."""

    class InputSerializer(serializers.Serializer):
        type = serializers.CharField(max_length=100)
        data = serializers.DictField(required=False, default=dict)
        source = serializers.CharField(max_length=200, required=False, default="")
        sourceId = serializers.CharField(max_length=200, required=False, default="")
        correlationId = serializers.CharField(max_length=100, required=False, default="")
        occurredAt = serializers.DateTimeField(required=False, default=None)

    def post(self, request):
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        envelope = services.publish_from_api(
            tenant=request.user.tenant,
            type=v["type"],
            data=v["data"],
            source=v["source"],
            source_id=v["sourceId"],
            correlation_id=v["correlationId"],
            occurred_at=v["occurredAt"],
        )
        return Response(envelope.as_dict(), status=status.HTTP_202_ACCEPTED)


class WorkerHealthView(APIView):
    """GET /api/health/workers. Open to probes (load balancers, Kubernetes): it shows platform
    aggregates and no tenant's data. 503 when unhealthy, so a probe can act on the status alone."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        report = health.report()
        code = 503 if report["status"] == health.UNHEALTHY else 200
        return Response(report, status=code)
