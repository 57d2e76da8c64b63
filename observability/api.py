"""OTLP/HTTP ingestion (opentelemetry-proto docs/specification.md, "OTLP/HTTP").

A plain Django view rather than DRF: the body is protobuf or JSON by Content-Type, maybe
gzipped, and every reply, errors included, must be in the request's encoding.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, pagination, serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import SinceField, paged
from core.auth import ApiKeyAuthentication
from observability import load, otlp, otlp_json, selectors, services
from observability.models import MetricSeries


@method_decorator(csrf_exempt, name="dispatch")
class OtlpView(View):
    """POST /v1/traces, /v1/metrics, /v1/logs. A Bearer API key, as OTLP exporters can send."""

    signal = "traces"
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            media = otlp.media_type(request.headers.get("Content-Type", ""))
        except otlp.OtlpError as exc:  # no encoding of the client's to answer in: JSON
            return _status(otlp.JSON, 415, str(exc))
        try:
            tenant = _tenant(request)
            load.admit(tenant)
            body = _body(request)
            if not self._accept_clean_json(tenant, request, body, media):
                payload = otlp.decode(self.signal, body, media)
                rejections = otlp.validate(self.signal, payload)
                services.accept_request(
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

    def _accept_clean_json(self, tenant, request: HttpRequest, body: bytes, media: str) -> bool:
        """Store a JSON trace request as received when every span in it is valid (the usual
        case, and a quarter of the cost of decoding it into protobuf); False for the rest."""
        if self.signal != "traces" or media != otlp.JSON:
            return False
        clean = otlp_json.clean_traces(body, otlp.time_bounds())
        if clean is None:
            return False
        services.accept_batch(
            tenant=tenant,
            signal=self.signal,
            payload=body,
            encoding=services.Encoding.JSON,
            items=otlp_json.count_spans(clean),
            gzipped=request.body if _encoding(request) == "gzip" else None,
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


def _body(request: HttpRequest) -> bytes:
    """The request body, gunzipped when Content-Encoding says so; the cap applies after
    decompression, so that a small bomb cannot expand past it."""
    cap = settings.OTLP_MAX_BODY_BYTES
    try:
        raw = request.body
    except RequestDataTooBig:
        raise load.Refused(413, f"The body is over the limit of {cap} bytes.") from None
    encoding = _encoding(request)
    if encoding == "identity":
        body = raw
    elif encoding == "gzip":
        body = _gunzip(raw, cap)
    else:
        raise load.Refused(415, f"Unsupported Content-Encoding {encoding!r}: use gzip or none.")
    if len(body) > cap:
        raise load.Refused(413, f"The body is over the limit of {cap} bytes after decompression.")
    return body


def _encoding(request: HttpRequest) -> str:
    return request.headers.get("Content-Encoding", "identity").strip().lower()


def _gunzip(raw: bytes, cap: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, cap + 1)
    except zlib.error as exc:
        raise otlp.OtlpError(f"The body is not valid gzip: {exc}.") from None
    if len(body) > cap or inflater.unconsumed_tail:
        raise load.Refused(413, f"The body is over the limit of {cap} bytes after decompression.")
    return body


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

    def get_status(self, span) -> dict:
        return {"code": span.status_code, "message": span.status_message}


class TracePage(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = ("-start_ns", "-id")


class TraceListView(APIView):
    """GET /api/traces?service=&status=&since=: the caller's traces, newest first, paged."""

    class FilterSerializer(serializers.Serializer):
        service = serializers.CharField(required=False, default="")
        status = serializers.ChoiceField(choices=["ok", "error"], required=False, default="")
        since = SinceField(required=False, default=None)

    def get(self, request):
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.traces(tenant=request.user.tenant, **query.validated_data)
        return paged(self, request, found, pager=TracePage, output=TraceOutput)


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


class TraceDetailView(APIView):
    """GET /api/traces/<traceId>: the TraceRecord with its spans and its correlation (null
    until TelemetryCorrelationWorker has correlated the trace)."""

    def get(self, request, trace_id: str):
        record = selectors.trace(tenant=request.user.tenant, trace_id=trace_id)
        if record is None:
            raise exceptions.NotFound(f"No trace {trace_id} for this tenant (yet).")
        spans = SpanOutput(selectors.spans_of(record), many=True).data
        found = selectors.correlation_of(record)
        correlation = CorrelationOutput(found).data if found is not None else None
        return Response({**TraceOutput(record).data, "spans": spans, "correlation": correlation})


class SeriesOutput(serializers.ModelSerializer):
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


class SeriesPage(pagination.CursorPagination):
    page_size = 200
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = ("-window_start", "-id")


class MetricSeriesView(APIView):
    """GET /api/metrics/series?name=&window=1m|5m|1h&since=: rolled-up windows, newest first."""

    class FilterSerializer(serializers.Serializer):
        name = serializers.CharField(required=False, default="")
        window = serializers.ChoiceField(choices=MetricSeries.Window.values, default="1m")
        since = SinceField(required=False, default=None)

    def get(self, request):
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.metric_series(tenant=request.user.tenant, **query.validated_data)
        return paged(self, request, found, pager=SeriesPage, output=SeriesOutput)
