"""The sync API: thin views over integrations.sync (start a run, list runs, read the records
feed), by the caller's tenant: another tenant's connection is simply not found."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, paged
from core.auth import TenantPrincipal
from core.models import Tenant
from core.openapi import errors
from integrations.connections import selectors as connection_selectors
from integrations.connections.models import IntegrationConnection
from integrations.sync import handler, selectors
from integrations.sync.models import IntegrationRun, SyncRecord, SyncStream

CONNECTION_ID = OpenApiParameter(
    "connection_id", str, OpenApiParameter.PATH, description="The connection's id (a UUID)."
)


class RunConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _tenant(request: Request) -> Tenant:
    assert isinstance(request.user, TenantPrincipal)
    return request.user.tenant


def _connection_or_404(request: Request, connection_id: str) -> IntegrationConnection:
    found = connection_selectors.connection(tenant=_tenant(request), connection_id=connection_id)
    if found is None:
        raise exceptions.NotFound(f"No connection {connection_id} for this tenant.")
    return found


class IntegrationRunOutput(serializers.ModelSerializer):
    connectionId = serializers.UUIDField(source="connection_id")
    checkpointsFrom = serializers.JSONField(source="checkpoints_from")
    checkpointsTo = serializers.JSONField(source="checkpoints_to")
    notModified = serializers.IntegerField(source="not_modified")
    rateLimitedSeconds = serializers.FloatField(source="rate_limited_seconds")
    streams = serializers.ListField(child=serializers.CharField())
    full = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = IntegrationRun
        fields = [
            "id", "connectionId", "trigger", "status", "streams", "stream", "full",
            "checkpointsFrom", "checkpointsTo", "added", "updated", "unchanged", "deleted",
            "pages", "requests", "notModified", "rateLimitedSeconds", "error", "started",
            "finished",
        ]  # fmt: skip


class RunPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-started", "-id")


class SyncNowInput(serializers.Serializer):
    full = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Read every stream from the start (and then delete what it no longer has).",
    )


class SyncNowView(APIView):
    """POST /api/integrations/connections/<id>/sync: start a run now (202 with the run); 409
    while one is running (its id in runId) or when the connection is paused or in error."""

    @extend_schema(
        summary="Sync a connection now",
        parameters=[CONNECTION_ID],
        request=SyncNowInput,
        responses={202: IntegrationRunOutput, **errors(400, 401, 404, 409, 415)},
    )
    def post(self, request: Request, connection_id: str) -> Response:
        connection = _connection_or_404(request, connection_id)
        body = SyncNowInput(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = handler.start_run(
                connection=connection,
                trigger=IntegrationRun.Trigger.MANUAL,
                full=body.validated_data["full"],
            )
        except handler.Busy as exc:
            # The API's error body, and the running run to follow instead.
            busy = {"error": str(exc), "runId": str(exc.run.pk)}
            return Response(busy, status=status.HTTP_409_CONFLICT)
        except handler.NotSyncable as exc:
            raise RunConflict(str(exc)) from None
        return Response(IntegrationRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class RunListView(APIView):
    """GET /api/integrations/connections/<id>/runs: the connection's runs, newest first."""

    pagination_class = RunPage

    @extend_schema(
        summary="List a connection's runs",
        parameters=[CONNECTION_ID],
        responses={200: IntegrationRunOutput(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        connection = _connection_or_404(request, connection_id)
        return paged(
            self, request, selectors.runs(connection=connection), output=IntegrationRunOutput
        )


class SyncRecordMetadata(serializers.Serializer):
    firstSeenAt = serializers.DateTimeField(source="first_seen")
    lastModifiedAt = serializers.DateTimeField(source="last_modified")
    lastAction = serializers.CharField(source="last_action")
    deletedAt = serializers.DateTimeField(source="deleted_at", allow_null=True)
    cursor = serializers.SerializerMethodField(help_text="This change's place in the feed.")
    contentHash = serializers.CharField(source="content_hash")
    hashAlgorithm = serializers.CharField(source="hash_algorithm")
    vendorCursor = serializers.CharField(source="cursor", help_text="The vendor's updated-at.")

    def get_cursor(self, record: SyncRecord) -> str:
        return str(record.change)


class SyncRecordOutput(serializers.Serializer):
    id = serializers.CharField(source="external_id", help_text="The vendor's id.")
    stream = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]  # a field, not Serializer.data
    metadata = SyncRecordMetadata(source="*")


class SyncRecordFeedOutput(serializers.Serializer):
    records = SyncRecordOutput(many=True)
    nextCursor = serializers.CharField(
        help_text="Send it as `cursor` to read the changes after these; the same cursor when "
        "there are none yet."
    )


class RecordFeedView(APIView):
    """GET /api/integrations/connections/<id>/records?stream=&cursor=&filter=&limit=: the
    records changed after `cursor`, oldest change first, each with Nango-style metadata. The
    cursor is the feed's own (a change number, returned as nextCursor even at the end), not
    the API's paging cursor: a consumer keeps it and asks again later for what changed."""

    class FilterSerializer(serializers.Serializer):
        stream = serializers.CharField(required=False, default="", max_length=100)
        cursor = serializers.RegexField(
            r"^\d{1,18}$", required=False, default="0", help_text="A nextCursor; 0: the start."
        )
        filter = serializers.CharField(
            required=False,
            default="",
            help_text="Comma-separated actions to keep: added, updated, deleted.",
        )
        limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)

        def validate_filter(self, value: str) -> list[str]:
            actions = [a.strip() for a in value.split(",") if a.strip()]
            unknown = sorted(set(actions) - set(SyncRecord.Action.values))
            if unknown:
                raise serializers.ValidationError(f"Unknown actions: {', '.join(unknown)}.")
            return actions

    @extend_schema(
        summary="Read a connection's changed records",
        parameters=[CONNECTION_ID, FilterSerializer],
        responses={200: SyncRecordFeedOutput, **errors(400, 401, 404)},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        connection = _connection_or_404(request, connection_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        v: dict[str, Any] = dict(query.validated_data)
        after = int(v["cursor"])
        records = selectors.changes(
            connection=connection,
            after=after,
            stream=v["stream"],
            actions=v["filter"],
            limit=v["limit"],
        )
        last = records[-1].change if records else after
        return Response(SyncRecordFeedOutput({"records": records, "nextCursor": str(last)}).data)


class SyncStreamOutput(serializers.ModelSerializer):
    checkpoint = serializers.JSONField(
        help_text="What the provider saved after the last committed page (its cursor)."
    )
    lastSynced = serializers.DateTimeField(source="last_synced", allow_null=True)
    lastRunId = serializers.UUIDField(source="last_run_id", allow_null=True)

    class Meta:
        model = SyncStream
        fields = ["name", "state", "checkpoint", "lastSynced", "lastRunId", "updated"]


class StreamListView(APIView):
    """GET /api/integrations/connections/<id>/streams: the streams synced so far, with their
    checkpoints."""

    @extend_schema(
        summary="List a connection's streams and their checkpoints",
        parameters=[CONNECTION_ID],
        responses={200: SyncStreamOutput(many=True), **errors(401, 404)},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        connection = _connection_or_404(request, connection_id)
        return Response(SyncStreamOutput(selectors.streams(connection=connection), many=True).data)


STREAM = OpenApiParameter("stream", str, OpenApiParameter.PATH, description="The stream's name.")


class StreamResetView(APIView):
    """POST /api/integrations/connections/<id>/streams/<stream>/reset: forget the stream's
    checkpoint; its next run reads everything again (and may then sweep deletions). Stored
    records stay, so nothing unchanged is published again. 409 while a run is in progress."""

    @extend_schema(
        summary="Reset a stream's checkpoint",
        parameters=[CONNECTION_ID, STREAM],
        request=None,
        responses={200: SyncStreamOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, connection_id: str, stream: str) -> Response:
        connection = _connection_or_404(request, connection_id)
        try:
            found = handler.reset_stream(connection=connection, name=stream)
        except handler.Busy as exc:
            busy = {"error": str(exc), "runId": str(exc.run.pk)}
            return Response(busy, status=status.HTTP_409_CONFLICT)
        except handler.NotSyncable as exc:
            raise exceptions.NotFound(str(exc)) from None
        return Response(SyncStreamOutput(found).data)
