"""The integration failures API: thin views over integrations.failures' selectors and services,
with input and output serializers. Every lookup is by the caller's tenant, so another tenant's
failure is simply not found. A failure is named by its id (a UUID) or its failureId."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, paged
from core.auth import TenantPrincipal
from core.openapi import errors
from integrations.failures import selectors, services
from integrations.failures.models import (
    ErrorClass,
    FailureAttempt,
    IntegrationFailure,
    Kind,
    Status,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class FailureOutput(serializers.ModelSerializer[IntegrationFailure]):
    failureId = serializers.CharField(source="failure_id")
    subjectId = serializers.CharField(
        source="subject_id", help_text="The connection, credential or webhook subscription."
    )
    detail = serializers.DictField(
        child=serializers.CharField(),
        help_text="The ids a resume needs: connectionId, credentialId, rotationToken, "
        "subscriptionId, deliveryId, url.",
    )
    errorClass = serializers.ChoiceField(source="error_class", choices=ErrorClass.choices)
    statusCode = serializers.IntegerField(
        source="status_code", allow_null=True, help_text="The vendor's HTTP status, if any."
    )
    nextAttemptAt = serializers.DateTimeField(
        source="next_attempt_at",
        allow_null=True,
        help_text="Open: when the next attempt starts. Retrying: when the attempt in flight "
        "counts as failed if it reports nothing.",
    )
    statusReason = serializers.CharField(source="status_reason")
    statusBy = serializers.CharField(source="status_by", help_text="Who last acted on it.")
    groupKey = serializers.CharField(source="group_key")
    firstSeen = serializers.DateTimeField(source="first_seen")
    lastSeen = serializers.DateTimeField(source="last_seen")
    escalatedAt = serializers.DateTimeField(source="escalated_at", allow_null=True)
    escalatedAs = serializers.CharField(
        source="escalated_as",
        help_text="The failureId whose AlertTriggered speaks for it (its own, or its group's).",
    )

    class Meta:
        model = IntegrationFailure
        fields = [
            "id", "failureId", "kind", "provider", "subjectId", "subject", "detail",
            "errorClass", "error", "statusCode", "attempts", "status", "statusReason",
            "statusBy", "nextAttemptAt", "groupKey", "firstSeen", "lastSeen", "escalatedAt",
            "escalatedAs", "updated",
        ]  # fmt: skip


class FailureAttemptOutput(serializers.ModelSerializer[FailureAttempt]):
    by = serializers.CharField(help_text='"report", "schedule", or the operator who retried.')

    class Meta:
        model = FailureAttempt
        fields = ["number", "at", "outcome", "error", "by"]


class FailureDetailOutput(FailureOutput):
    """A failure with its attempts (the newest MAX_ATTEMPTS_SHOWN, oldest first)."""

    attemptLog = FailureAttemptOutput(source="attempt_list", many=True)

    class Meta(FailureOutput.Meta):
        fields = [*FailureOutput.Meta.fields, "attemptLog"]


class FailurePage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-first_seen", "-id")


class FailureFilters(serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=Status.choices, required=False, default="", allow_blank=True
    )
    kind = serializers.ChoiceField(
        choices=Kind.choices, required=False, default="", allow_blank=True
    )


FAILURE_ID = OpenApiParameter(
    "failure_id",
    str,
    OpenApiParameter.PATH,
    description="The failure's id (a UUID), or its failureId.",
)


def _principal(request: Request) -> TenantPrincipal:
    assert isinstance(request.user, TenantPrincipal)  # IsTenant let no one else in
    return request.user


def _failure_or_404(request: Request, failure_id: str) -> IntegrationFailure:
    found = selectors.failure(tenant=_principal(request).tenant, failure_id=failure_id)
    if found is None:
        raise exceptions.NotFound(
            f"No integration failure {failure_id} for this tenant: name it by its id or its "
            "failureId (GET /api/integrations/failures lists them)."
        )
    return found


def _actor(request: Request) -> str:
    return services.actor_of_key(_principal(request).key)


class FailureListView(APIView):
    """GET /api/integrations/failures?status=&kind=: the caller's failures, the newest first,
    paged."""

    pagination_class = FailurePage

    @extend_schema(
        summary="List integration failures",
        parameters=[FailureFilters],
        responses={200: FailureOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = FailureFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.failures(tenant=_principal(request).tenant, **query.validated_data)
        return paged(self, request, found, output=FailureOutput)


class FailureDetailView(APIView):
    """GET /api/integrations/failures/<id>: a failure with its attempts."""

    @extend_schema(
        summary="An integration failure",
        parameters=[FAILURE_ID],
        responses={200: FailureDetailOutput, **errors(401, 404)},
    )
    def get(self, request: Request, failure_id: str) -> Response:
        failure: Any = _failure_or_404(request, failure_id)
        failure.attempt_list = selectors.attempts(failure)
        return Response(FailureDetailOutput(failure).data)


class RetryView(APIView):
    """POST /api/integrations/failures/<id>/retry: retry now, beyond the cap if need be: a sync
    resumes from its checkpoint, a rotation from its step, an outage re-probes, a dead webhook
    delivery is redelivered. 409 for a resolved failure, or one whose attempt is in flight."""

    @extend_schema(
        summary="Retry an integration failure now",
        parameters=[FAILURE_ID],
        request=None,
        responses={202: FailureOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, failure_id: str) -> Response:
        failure = _failure_or_404(request, failure_id)
        try:
            retried = services.retry(failure=failure, actor=_actor(request))
        except services.Refused as exc:
            raise Conflict(str(exc)) from None
        return Response(FailureOutput(retried).data, status=status.HTTP_202_ACCEPTED)


class AcknowledgeView(APIView):
    """POST /api/integrations/failures/<id>/acknowledge: someone is on it; no more automatic
    retries (a retry by hand still works). Again changes nothing; 409 for a resolved or ignored
    failure."""

    @extend_schema(
        summary="Acknowledge an integration failure",
        parameters=[FAILURE_ID],
        request=None,
        responses={200: FailureOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, failure_id: str) -> Response:
        failure = _failure_or_404(request, failure_id)
        try:
            services.acknowledge(failure=failure, actor=_actor(request))
        except services.Refused as exc:
            raise Conflict(str(exc)) from None
        return Response(FailureOutput(failure).data)


class IgnoreView(APIView):
    """POST /api/integrations/failures/<id>/ignore: it needs nothing; no more retries, and its
    escalation (the incident's trigger) resolves. Again changes nothing; 409 for a resolved
    failure."""

    @extend_schema(
        summary="Ignore an integration failure",
        parameters=[FAILURE_ID],
        request=None,
        responses={200: FailureOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, failure_id: str) -> Response:
        failure = _failure_or_404(request, failure_id)
        try:
            services.ignore(failure=failure, actor=_actor(request))
        except services.Refused as exc:
            raise Conflict(str(exc)) from None
        return Response(FailureOutput(failure).data)


class BulkRetryInput(serializers.Serializer[Any]):
    ids = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=500,
        help_text="Failures by id or failureId; or leave it out and filter by status and kind.",
    )
    status = serializers.ChoiceField(
        choices=[Status.OPEN, Status.POISONED, Status.ACKNOWLEDGED, Status.IGNORED],
        required=False,
        allow_blank=True,
        default="",
    )
    kind = serializers.ChoiceField(
        choices=Kind.choices, required=False, allow_blank=True, default=""
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("ids") and not attrs.get("status"):
            raise serializers.ValidationError(
                "Name the failures: `ids`, or a `status` (and a `kind`) to retry all of them."
            )
        return attrs


class BulkRetryOutput(serializers.Serializer[Any]):
    retried = serializers.ListField(child=serializers.CharField(), help_text="Their failureIds.")
    refused = serializers.DictField(
        child=serializers.CharField(), help_text="Why the others were not retried, by failureId."
    )
    notFound = serializers.ListField(
        child=serializers.CharField(), help_text="Named ids that are no failure of this tenant."
    )


BULK_LIMIT = 500


class BulkRetryView(APIView):
    """POST /api/integrations/failures/bulk-retry {"ids": [...]} or {"status": "poisoned",
    "kind": "sync"}: retry each now (at most 500 a call), as POST .../<id>/retry would."""

    @extend_schema(
        summary="Retry many integration failures now",
        request=BulkRetryInput,
        responses={202: BulkRetryOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = BulkRetryInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        tenant = _principal(request).tenant
        not_found: list[str] = []
        if v.get("ids"):
            named = []
            for failure_id in dict.fromkeys(v["ids"]):
                found = selectors.failure(tenant=tenant, failure_id=failure_id)
                if found is None:
                    not_found.append(failure_id)
                else:
                    named.append(found)
        else:
            found_all = selectors.failures(tenant=tenant, status=v["status"], kind=v["kind"])
            named = list(found_all.order_by("first_seen")[:BULK_LIMIT])
        retried, refused = services.retry_many(tenant=tenant, failures=named, actor=_actor(request))
        reply = {
            "retried": [f.failure_id for f in retried],
            "refused": refused,
            "notFound": not_found,
        }
        return Response(BulkRetryOutput(reply).data, status=status.HTTP_202_ACCEPTED)
