"""OTLP/HTTP ingestion (opentelemetry-proto docs/specification.md, "OTLP/HTTP").

A plain Django view rather than DRF: the body is protobuf or JSON by Content-Type, maybe
gzipped, and every reply, errors included, must be in the request's encoding.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import FloatField
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.views import APIView

from core import tracecontext
from core.api import Pager, SinceField, paged
from core.auth import ApiKeyAuthentication
from core.openapi import errors
from observability import load, otlp, otlp_json, selectors, services
from observability import prometheus as ingest_metrics
from observability.models import MetricSeries, TelemetryBatch


@method_decorator(csrf_exempt, name="dispatch")
class OtlpView(View):
    """POST /v1/traces, /v1/metrics, /v1/logs. A Bearer API key, as OTLP exporters can send."""

    signal = "traces"
    http_method_names = ["post"]
    batch: TelemetryBatch | None = None  # the request as stored, once it is accepted

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.batch = None
        response = super().dispatch(request, *args, **kwargs)
        ingest_metrics.count_request(
            signal=self.signal, code=response.status_code, batch=self.batch
        )
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            media = otlp.media_type(request.headers.get("Content-Type", ""))
        except otlp.OtlpError as exc:  # no encoding of the client's to answer in: JSON
            return _status(otlp.JSON, 415, str(exc))
        try:
            tenant = _tenant(request)
            load.admit(tenant)
            body = _body(request, media)
            if not self._accept_clean_json(tenant, body, media):
                payload = otlp.decode(self.signal, body.payload, media)
                rejections = otlp.validate(self.signal, payload)
                self.batch = services.accept_request(
                    tenant=tenant, signal=self.signal, request=payload, rejections=rejections
                )
                return HttpResponse(
                    otlp.response(self.signal, rejections, media), content_type=media
                )
        except otlp.OtlpError as exc:
            return _status(media, 400, str(exc))
        except load.Refused as exc:
            return _status(media, exc.code, str(exc), retry_after=exc.retry_after)
        return HttpResponse(otlp.response(self.signal, otlp.ACCEPTED, media), content_type=media)

    def _accept_clean_json(self, tenant, body: Body, media: str) -> bool:
        """Store a JSON trace request as received when every span in it is valid (the usual
        case, and a quarter of the cost of decoding it into protobuf); False for the rest."""
        if self.signal != "traces" or media != otlp.JSON:
            return False
        clean = otlp_json.clean_traces(body.payload, otlp.time_bounds())
        if clean is None:
            return False
        self.batch = services.accept_batch(
            tenant=tenant,
            signal=self.signal,
            payload=body.payload,
            encoding=services.Encoding.JSON,
            items=otlp_json.count_spans(clean),
            gzipped=body.gzipped,
        )
        return True


def _tenant(request: HttpRequest):
    try:
        found = ApiKeyAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        raise load.Refused(401, str(exc.detail)) from None
    if found is None:
        raise load.Refused(401, "No API key: send the header 'Authorization: Bearer <API key>'.")
    return found[0].tenant


@dataclass(frozen=True)
class Body:
    """A request's body as checked: `payload` decoded from its Content-Encoding, and `gzipped`
    the body as received when it is one whole gzip member of `payload` (what
    TelemetryBatch.body() reads back, so it can be stored as it is), else None."""

    payload: bytes
    gzipped: bytes | None = None


def _body(request: HttpRequest, media: str) -> Body:
    """The request body (the whole of it: core.wsgi reads it before the view), gunzipped when
    Content-Encoding says so; the cap applies after decompression, so that a small bomb cannot
    expand past it. An empty body is a valid empty protobuf message, but not JSON."""
    cap = settings.OTLP_MAX_BODY_BYTES
    try:
        raw = request.body
    except RequestDataTooBig:
        raise load.Refused(413, f"The body is over the limit of {cap} bytes.") from None
    encoding = _encoding(request)
    if encoding == "identity":
        body = Body(raw)
    elif encoding == "gzip":
        members = _gunzip(raw, cap)
        body = Body(b"".join(members), gzipped=raw if len(members) == 1 else None)
    else:
        raise load.Refused(415, f"Unsupported Content-Encoding {encoding!r}: use gzip or none.")
    if len(body.payload) > cap:
        raise load.Refused(413, f"The body is over the limit of {cap} bytes after decompression.")
    if media == otlp.JSON and not body.payload:
        raise otlp.OtlpError(
            "The body is empty, and an empty body is not JSON: an OTLP JSON request is an object "
            "({} when there is nothing to export)."
        )
    return body


def _encoding(request: HttpRequest) -> str:
    return request.headers.get("Content-Encoding", "identity").strip().lower()


def _gunzip(raw: bytes, cap: int) -> list[bytes]:
    """What each gzip member of `raw` holds (RFC 1952 allows several, one after another, as
    `cat a.gz b.gz` makes), each checked whole: its trailer's CRC and length, no bytes missing.
    At most `cap` bytes in all: a bomb is stopped as it expands, across members too."""
    members, size, rest = [], 0, raw
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            member = inflater.decompress(rest, cap - size + 1)
        except zlib.error as exc:
            raise otlp.OtlpError(f"The body is not valid gzip: {exc}.") from None
        size += len(member)
        if size > cap:
            raise load.Refused(
                413, f"The body is over the limit of {cap} bytes after decompression."
            )
        if not inflater.eof:
            raise otlp.OtlpError(
                "The gzip body is truncated: it ends before the end of its compressed data "
                "and its trailer."
            )
        members.append(member)
        rest = inflater.unused_data
        if not rest:
            return members


def _status(media: str, code: int, message: str, *, retry_after: int | None = None):
    response = HttpResponse(otlp.status_body(message, media, code), status=code, content_type=media)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if code == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


class TraceOutput(serializers.Serializer):
    traceId = serializers.CharField(source="trace_id")
    rootName = serializers.CharField(source="root_name")
    rootService = serializers.CharField(source="root_service")
    services = serializers.ListField(child=serializers.CharField())
    spanCount = serializers.IntegerField(source="span_count")
    errorCount = serializers.IntegerField(source="error_count")
    status = serializers.CharField()
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    durationMs = serializers.FloatField(source="duration_ms")

    def get_start(self, record) -> str:
        return _iso(record.start_ns)

    def get_end(self, record) -> str:
        return _iso(record.end_ns)


class SpanStatusOutput(serializers.Serializer):
    code = serializers.IntegerField(help_text="OTLP's: 0 unset, 1 ok, 2 error.")
    message = serializers.CharField()


class SpanOutput(serializers.Serializer):
    spanId = serializers.CharField(source="span_id")
    parentSpanId = serializers.CharField(source="parent_span_id")
    name = serializers.CharField()
    kind = serializers.IntegerField()
    service = serializers.CharField()
    scope = serializers.CharField()
    scopeVersion = serializers.CharField(source="scope_version")
    scopeAttributes = serializers.DictField(source="scope_attributes")
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    durationMs = serializers.FloatField(source="duration_ms")
    status = serializers.SerializerMethodField()
    attributes = serializers.DictField()
    resource = serializers.DictField()
    events = serializers.ListField()
    links = serializers.ListField()

    def get_start(self, span) -> str:
        return _iso(span.start_ns)

    def get_end(self, span) -> str:
        return _iso(span.end_ns)

    @extend_schema_field(SpanStatusOutput)
    def get_status(self, span) -> dict:
        return {"code": span.status_code, "message": span.status_message}


class TracePage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-start_ns", "-id")


class TraceFilters(serializers.Serializer):
    service = serializers.CharField(required=False, default="")
    status = serializers.ChoiceField(choices=["ok", "error"], required=False, default="")
    since = SinceField(required=False, default=None)


class TraceListView(APIView):
    """GET /api/traces?service=&status=&since=: the caller's traces, newest first, paged."""

    pagination_class = TracePage

    @extend_schema(
        summary="List traces",
        parameters=[TraceFilters],
        responses={200: TraceOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        query = TraceFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.traces(tenant=request.user.tenant, **query.validated_data)
        return paged(self, request, found, output=TraceOutput)


class CorrelationOutput(serializers.Serializer):
    """A TelemetryCorrelation as its snapshot holds it (observability.correlation): the logs,
    exemplars and events are passed on in the worker's shapes, newest first. The snapshot's
    trace summary is left out: the response around it is the TraceRecord itself."""

    logCount = serializers.IntegerField(source="log_count")
    logs = serializers.DictField()  # {"bySeverity": {...}, "latest": [...]}
    exemplarCount = serializers.IntegerField(source="exemplar_count")
    exemplars = serializers.ListField()
    eventCount = serializers.IntegerField(source="event_count")
    events = serializers.ListField()
    updated = serializers.DateTimeField()


class TraceDetailOutput(TraceOutput):
    """A trace with its spans and its correlation: TraceDetailView's reply, which it puts
    together from TraceOutput, SpanOutput and CorrelationOutput."""

    spans = SpanOutput(many=True)
    correlation = CorrelationOutput(
        allow_null=True,
        help_text="Null until TelemetryCorrelationWorker has correlated the trace.",
    )


class TraceDetailView(APIView):
    """GET /api/traces/<traceId>: the TraceRecord with its spans and its correlation (null
    until TelemetryCorrelationWorker has correlated the trace)."""

    @extend_schema(
        summary="A trace, with its spans and correlation",
        parameters=[
            OpenApiParameter(
                "trace_id",
                str,
                OpenApiParameter.PATH,
                description="32 hexadecimal digits, not all zero.",
            )
        ],
        responses={200: TraceDetailOutput, **errors(400, 401, 404)},
    )
    def get(self, request, trace_id: str):
        if not selectors.is_trace_id(trace_id):
            raise exceptions.ParseError(
                f"{trace_id!r} is not a trace id: a trace id is 32 hexadecimal digits."
            )
        record = selectors.trace(tenant=request.user.tenant, trace_id=trace_id)
        if record is None:
            raise exceptions.NotFound(f"No trace {trace_id} for this tenant (yet).")
        spans = SpanOutput(selectors.spans_of(record), many=True).data
        found = selectors.correlation_of(record)
        correlation = CorrelationOutput(found).data if found is not None else None
        return Response({**TraceOutput(record).data, "spans": spans, "correlation": correlation})


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "format": "double"},
            {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
        ]
    }
)
class Double(serializers.FloatField):
    """A double in a reply: NaN and the infinities, which JSON has no number for, as the
    strings OTLP JSON spells them ("NaN", "Infinity", "-Infinity")."""

    def to_representation(self, value: float) -> float | str:  # type: ignore[override]
        return otlp.json_number(float(value))


class SeriesOutput(serializers.ModelSerializer):
    # Metric values are stored finite (observability.metrics), but a float column can hold
    # what arithmetic makes of them, and rows stored before that rule.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        FloatField: Double,
    }
    seriesKey = serializers.CharField(source="series_key")
    windowStart = serializers.DateTimeField(source="window_start")
    windowEnd = serializers.DateTimeField(source="window_end")
    kind = serializers.CharField(source="get_kind_display")
    temporality = serializers.CharField(source="get_temporality_display")

    class Meta:
        model = MetricSeries
        fields = [
            "name", "unit", "seriesKey", "window", "windowStart", "windowEnd", "kind",
            "temporality", "monotonic", "resource", "scope", "attributes", "points", "delta",
            "last", "count", "sum", "min", "max", "mean", "buckets", "p50", "p95", "p99",
            "exemplars", "resets", "notes",
        ]  # fmt: skip


class SeriesPage(Pager):
    page_size = 200
    max_page_size = 1000
    ordering = ("-window_start", "-id")


class SeriesFilters(serializers.Serializer):
    name = serializers.CharField(required=False, default="")
    window = serializers.ChoiceField(choices=MetricSeries.Window.values, default="1m")
    since = SinceField(required=False, default=None)


class MetricSeriesView(APIView):
    """GET /api/metrics/series?name=&window=1m|5m|1h&since=: rolled-up windows, newest first."""

    pagination_class = SeriesPage

    @extend_schema(
        summary="List metric series windows",
        parameters=[SeriesFilters],
        responses={200: SeriesOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        query = SeriesFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.metric_series(tenant=request.user.tenant, **query.validated_data)
        return paged(self, request, found, output=SeriesOutput)


@extend_schema_field(
    {
        "type": "string",
        "description": "A severity name (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, perhaps with "
        "a digit: WARN2) or a SeverityNumber (1 to 24): records from it up.",
    }
)
class SeverityField(serializers.Field[int, str, str, Any]):
    """A minimum severity: a name (WARN, error, FATAL2) or a SeverityNumber (1 to 24), as the
    SeverityNumber it starts from."""

    def to_internal_value(self, data: str) -> int:
        try:
            return selectors.severity_floor(str(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: int) -> str:
        return str(value)


@extend_schema_field({"type": "string", "pattern": "^[0-9a-fA-F]{32}$"})
class TraceIdField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not tracecontext.is_trace_id(text):
            raise serializers.ValidationError(
                f"{text!r} is not a trace id: a trace id is 32 hexadecimal digits, not all zero."
            )
        return text.lower()


class LogFilters(serializers.Serializer):
    """The filters of GET /api/logs (and of the admin's list of logs, which reads its query
    with this serializer too): validated_data is selectors.filter_logs' keyword arguments."""

    traceId = TraceIdField(source="trace_id", required=False, default="")
    service = serializers.CharField(max_length=200, required=False, default="")
    severity = SeverityField(required=False, default=0)
    since = SinceField(required=False, default=None)
    q = serializers.CharField(max_length=200, required=False, default="")


class LogOutput(serializers.Serializer):
    time = serializers.SerializerMethodField()
    observedTime = serializers.SerializerMethodField()
    severityNumber = serializers.IntegerField(source="severity_number")
    severityText = serializers.CharField(source="severity_text")
    body = serializers.JSONField()
    attributes = serializers.DictField()
    resource = serializers.DictField()
    service = serializers.CharField()
    scope = serializers.CharField()
    eventName = serializers.CharField(source="event_name")
    traceId = serializers.SerializerMethodField()
    spanId = serializers.SerializerMethodField()
    trace = serializers.SerializerMethodField()

    def get_time(self, record) -> str | None:
        return _iso(record.time_ns) if record.time_ns else None  # 0: unknown (OTLP)

    def get_observedTime(self, record) -> str | None:
        return _iso(record.observed_ns) if record.observed_ns else None

    def get_traceId(self, record) -> str | None:
        return record.trace_id or None

    def get_spanId(self, record) -> str | None:
        return record.span_id or None

    def get_trace(self, record) -> str | None:
        """Where the record's trace is: its link in the API, null for a record of no trace."""
        return reverse("api-trace", args=[record.trace_id]) if record.trace_id else None


class LogPage(Pager):
    page_size = 100
    max_page_size = 1000
    ordering = ("-time_ns", "-id")


class LogListView(APIView):
    """GET /api/logs?traceId=&service=&severity=&since=&q=: the caller's log records, newest
    first, paged; each with the link to its trace."""

    pagination_class = LogPage

    @extend_schema(
        summary="Search log records",
        parameters=[LogFilters],
        responses={200: LogOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        query = LogFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.logs(tenant=request.user.tenant, **query.validated_data)
        return paged(self, request, found, output=LogOutput)
