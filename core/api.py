"""The core REST API: publishing events and the workers' health; and what every view of the
API shares: its errors, its pager, its `since`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, QuerySet
from django.utils import timezone
from drf_spectacular.renderers import OpenApiJsonRenderer2, OpenApiYamlRenderer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core import ratelimit, services, since
from core.auth import tenant_of
from core.models import EventRate
from core.openapi import RETRY_AFTER, Error, errors
from core.runtime import health


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is {"error": <what to do>, "details": ...} with the right status."""
    if isinstance(exc, DjangoValidationError):
        code = 413 if isinstance(exc, services.DataTooLarge) else status.HTTP_400_BAD_REQUEST
        return Response({"error": " ".join(exc.messages)}, status=code)
    if isinstance(exc, RequestDataTooBig):  # a body past DATA_UPLOAD_MAX_MEMORY_SIZE (core.wsgi)
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"error": f"The body is over the limit of {cap} bytes."}, status=413)
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


class Pager(pagination.CursorPagination):
    """The API's pager, which every list's pager extends: DRF's cursor paging (stable while
    rows arrive, no COUNT), with the cursor checked before it reaches a query. DRF decodes the
    cursor's position as text and filters on it as it is, so a tampered one (`p=abc` where the
    ordering field is a number, a NUL) failed in the database; here it must parse as the
    ordering field's type, and any cursor the API did not give is a 400."""

    page_size_query_param = "limit"
    invalid_cursor_message = (
        "Invalid cursor: follow the next and previous links as the API gives them."
    )

    def paginate_queryset(
        self,
        queryset: QuerySet[Any] | Sequence[Any],
        request: Request,
        view: APIView | None = None,
    ) -> list[Any] | None:
        if not isinstance(queryset, QuerySet):
            raise TypeError("the API pages querysets: their ordering field types the cursor")
        field = queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
        assert isinstance(field, Field)  # a column: not a reverse relation
        self._position_field = field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:  # DRF's answer to a cursor it cannot decode
            raise exceptions.ParseError(self.invalid_cursor_message) from None
        if cursor is not None and not is_position(self._position_field, cursor.position):
            raise exceptions.ParseError(self.invalid_cursor_message)
        return cursor


def is_position(field: Field[Any, Any], text: str | int | None) -> bool:
    """Whether a cursor's position (the ordering field's value as text, None for none) is a
    value the field can hold: parsed, in the field's range, and for a time, aware and within
    the calendar in UTC (the database compares it in UTC)."""
    if text is None:
        return True
    text = str(text)  # DRF decodes it as text; its type says int
    if "\x00" in text:  # a text field would take it, PostgreSQL would not
        return False
    try:
        value = field.to_python(text)
        field.run_validators(value)
        if isinstance(value, datetime):
            if timezone.is_naive(value):
                return False
            value.astimezone(UTC)  # OverflowError near year 1 or 9999
    except (DjangoValidationError, OverflowError, TypeError, ValueError):
        return False
    return value is not None


def paged(
    view: APIView,
    request: Request,
    found: QuerySet[Any],
    *,
    output: type[serializers.BaseSerializer[Any]],
) -> Response:
    """One page of `found`, each row through the `output` serializer, with the links of the
    view's `pagination_class` (a Pager, which the OpenAPI schema reads too: the page's shape
    and its cursor and limit parameters): the one way the API pages."""
    pager = getattr(view, "pagination_class", None)
    if not (isinstance(pager, type) and issubclass(pager, Pager)):
        raise TypeError(f"{type(view).__name__} pages with a pagination_class, a Pager")
    paginator = pager()
    page = paginator.paginate_queryset(found, request, view=view)
    return paginator.get_paginated_response(output(page, many=True).data)


@extend_schema_field(
    {
        "type": "string",
        "description": "An ISO 8601 time (2026-12-02T06:00:00Z), or a duration back from now: "
        "a number and s, m, h or d (90s, 15m, 2h, 7d).",
    }
)
class SinceField(serializers.Field[datetime, str, str, Any]):
    """An ISO datetime, or a duration back from now such as 2h or 7d."""

    def to_internal_value(self, data: str) -> datetime:
        try:
            return since.parse_since(str(data), now=timezone.now())
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class EventInput(serializers.Serializer[Any]):
    type = serializers.CharField(max_length=100)
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    source = serializers.CharField(max_length=200, required=False, default="")  # type: ignore[assignment]
    sourceId = serializers.CharField(max_length=200, required=False, default="")
    correlationId = serializers.CharField(max_length=100, required=False, default="")
    occurredAt = serializers.DateTimeField(required=False, default=None)


class EnvelopeOutput(serializers.Serializer[Any]):
    """A published event's envelope (core.envelope.Envelope.as_dict), as workers receive it."""

    eventId = serializers.UUIDField()
    type = serializers.CharField()
    tenantId = serializers.CharField()
    traceId = serializers.CharField()
    spanId = serializers.CharField()
    correlationId = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    sourceId = serializers.CharField()
    occurredAt = serializers.DateTimeField()
    data = serializers.DictField()  # type: ignore[assignment]


class EventCreateView(APIView):
    """POST /api/events: publish a factory event for the caller's tenant."""

    @extend_schema(
        summary="Publish an event",
        request=EventInput,
        responses={202: EnvelopeOutput, **errors(400, 401, 413, 415, 429)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        tenant = tenant_of(request)
        limit = settings.EVENT_TENANT_REQUESTS_PER_SECOND
        if ratelimit.over(EventRate, tenant, limit=limit):  # before the body is read
            raise exceptions.Throttled(
                wait=1, detail=f"Over {limit} events per second for this tenant; retry later."
            )
        body = EventInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        envelope = services.publish_from_api(
            tenant=tenant,
            type=v["type"],
            data=v["data"],
            source=v["source"],
            source_id=v["sourceId"],
            correlation_id=v["correlationId"],
            occurred_at=v["occurredAt"],
        )
        return Response(EnvelopeOutput(envelope.as_dict()).data, status=status.HTTP_202_ACCEPTED)


OVERALL = [health.HEALTHY, health.DEGRADED, health.UNHEALTHY]


class TriggerOutput(serializers.Serializer[Any]):
    description = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    commands = serializers.ListField(child=serializers.CharField())
    schedules = serializers.ListField(child=serializers.CharField())


class WorkerStateOutput(serializers.Serializer[Any]):
    """One worker of the catalog: its declaration and its state now (core.runtime.health)."""

    name = serializers.CharField()
    app = serializers.CharField()
    status = serializers.ChoiceField(choices=[*OVERALL, health.NOT_BUILT])
    built = serializers.BooleanField()
    trigger = TriggerOutput()
    retry = serializers.CharField()
    idempotency = serializers.CharField()
    cluster = serializers.CharField()
    backlog = serializers.IntegerField()
    oldestDueSeconds = serializers.IntegerField()
    inFlight = serializers.IntegerField()
    deadLetters = serializers.IntegerField()
    lastSuccess = serializers.DateTimeField(allow_null=True)
    failuresLastHour = serializers.IntegerField()
    clusterHeartbeat = serializers.DateTimeField(allow_null=True)


class ClusterOutput(serializers.Serializer[Any]):
    name = serializers.CharField()
    clusterId = serializers.CharField()
    host = serializers.CharField()
    status = serializers.CharField()
    workers = serializers.IntegerField()
    lastHeartbeat = serializers.DateTimeField()
    uptimeSeconds = serializers.IntegerField()


class HealthOutput(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=OVERALL)
    checkedAt = serializers.DateTimeField()
    clusters = ClusterOutput(many=True)
    workers = WorkerStateOutput(many=True)


class WorkerHealthView(APIView):
    """GET /api/health/workers. Open to probes (load balancers, Kubernetes): it shows platform
    aggregates and no tenant's data. 503 when unhealthy, so a probe can act on the status alone."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The workers' health",
        responses={
            200: HealthOutput,
            503: OpenApiResponse(HealthOutput, description="Unhealthy: the same report."),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        report = health.report()
        code = 503 if report["status"] == health.UNHEALTHY else 200
        return Response(HealthOutput(report).data, status=code)


class SchemaView(SpectacularAPIView):
    """GET /api/schema: this schema, JSON by default (`?format=yaml` or `Accept:
    application/vnd.oai.openapi` for YAML). Open: it holds no tenant's data."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiYamlRenderer]

    @extend_schema(
        summary="The OpenAPI schema",
        parameters=[
            OpenApiParameter(
                "format", str, enum=["json", "yaml"], description="JSON (the default) or YAML."
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="The OpenAPI 3 schema of every endpoint."
            ),
            (200, "application/vnd.oai.openapi"): OpenApiResponse(
                OpenApiTypes.STR, description="The same, in YAML."
            ),
            404: OpenApiResponse(Error, description="`format` names no format of the schema."),
        },
        auth=[],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)  # type: ignore[no-any-return,no-untyped-call]


class DocsView(SpectacularSwaggerView):
    """GET /api/docs: the schema in Swagger UI, from the platform's own static files (the
    sidecar's), so that it works with no access to a CDN. Open, like the schema."""

    url_name = "api-schema"

    @extend_schema(
        summary="The API's documentation page (Swagger UI)",
        responses={
            (200, "text/html"): OpenApiResponse(
                OpenApiTypes.STR,
                description="An HTML page that reads /api/schema. Authorize with an API key to "
                "try the endpoints from it.",
            )
        },
        auth=[],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)  # type: ignore[no-any-return,no-untyped-call]
