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
    pager: type[Pager],
    output: type[serializers.BaseSerializer[Any]],
) -> Response:
    """One page of `found`, each row through the `output` serializer, with the pager's links:
    the one way the API pages."""
    paginator = pager()
    page = paginator.paginate_queryset(found, request, view=view)
    return paginator.get_paginated_response(output(page, many=True).data)


class SinceField(serializers.Field[datetime, str, str, Any]):
    """An ISO datetime, or a duration back from now such as 2h or 7d."""

    def to_internal_value(self, data: str) -> datetime:
        try:
            return since.parse_since(str(data), now=timezone.now())
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class EventCreateView(APIView):
    """POST /api/events: publish a factory event for the caller's tenant."""

    class InputSerializer(serializers.Serializer[Any]):
        type = serializers.CharField(max_length=100)
        data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
        source = serializers.CharField(max_length=200, required=False, default="")  # type: ignore[assignment]
        sourceId = serializers.CharField(max_length=200, required=False, default="")
        correlationId = serializers.CharField(max_length=100, required=False, default="")
        occurredAt = serializers.DateTimeField(required=False, default=None)

    def post(self, request: Request) -> Response:
        tenant = tenant_of(request)
        limit = settings.EVENT_TENANT_REQUESTS_PER_SECOND
        if ratelimit.over(EventRate, tenant, limit=limit):  # before the body is read
            raise exceptions.Throttled(
                wait=1, detail=f"Over {limit} events per second for this tenant; retry later."
            )
        body = self.InputSerializer(data=request.data)
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
        return Response(envelope.as_dict(), status=status.HTTP_202_ACCEPTED)


class WorkerHealthView(APIView):
    """GET /api/health/workers. Open to probes (load balancers, Kubernetes): it shows platform
    aggregates and no tenant's data. 503 when unhealthy, so a probe can act on the status alone."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        report = health.report()
        code = 503 if report["status"] == health.UNHEALTHY else 200
        return Response(report, status=code)
