"""OTLP/HTTP payloads: decode, validate and answer them.

Pure functions over the generated OTLP protobuf classes; no models, no database. The HTTP layer
calls them in this order::

    media = media_type(request.content_type)            # OtlpError -> 400 (or 415)
    export = decode("traces", body, media)              # OtlpError -> 400
    rejections = validate("traces", export)             # drops invalid items in place
    ...store what is left of `export`...
    return response("traces", rejections, media)        # 200, partial success if any rejected

and ``status_body(message, media, code)`` for the body of 4xx/5xx replies.

Encodings (opentelemetry-proto docs/specification.md, "OTLP/HTTP"):

- ``application/x-protobuf``: the proto3 binary encoding of Export<Signal>ServiceRequest.
- ``application/json``: the proto3 JSON mapping with the OTLP deviations ("JSON Protobuf
  Encoding"): traceId/spanId/parentSpanId are hex strings (case-insensitive), not base64, in
  spans, span links, log records and metric exemplars; enum values are integers; keys are
  lowerCamelCase; unknown fields are ignored; 64-bit integers are decimal strings, and numbers are
  accepted too. As a lenient receiver, this module also accepts enum names and the original
  snake_case keys (the spec forbids senders to use them); what it writes is strictly OTLP JSON.
- An empty body is an empty request (the spec: an empty request SHOULD get a success reply).

Validation (what ``validate`` rejects, counts and removes; see the spec's "Partial Success"):

- Spans: traceId must be 16 bytes and not all zero, spanId 8 bytes and not all zero (trace.proto
  calls such ids invalid); parentSpanId empty or 8 bytes (an all-zero one is taken for "no
  parent" and cleared); name non-empty; startTimeUnixNano and endTimeUnixNano set, end >= start,
  both within the sane range. A span link whose ids are invalid is dropped from its span and
  counted in the span's droppedLinksCount (the span itself is kept).
- Metrics (items are data points): a metric without a name rejects all its points; a sum,
  histogram or exponential histogram whose aggregationTemporality is UNSPECIFIED (0, which
  metrics.proto says MUST not be used) rejects all its points. A point is rejected when its
  timeUnixNano is 0 or outside the sane range; a number point without a value (neither asInt nor
  asDouble) unless its flags say NO_RECORDED_VALUE; a histogram point whose bucketCounts do not
  have one more entry than explicitBounds (both may be empty), whose explicitBounds are not
  strictly increasing, whose bucketCounts do not add up to count, or whose sum is negative; an
  exponential histogram point whose zeroCount and bucket counts do not add up to count, or whose
  sum is negative; a summary point whose sum is negative, with a quantile outside [0, 1] or a
  negative value at a quantile. (Counts are unsigned in the proto, so "negative count" can only
  happen in JSON, where decode refuses it.) A metric with no data at all (none of gauge, sum,
  histogram, exponentialHistogram, summary) holds zero points: it is removed and not counted.
  Exemplar ids that are invalid are cleared (exemplar ids are optional).
- Logs: timeUnixNano and observedTimeUnixNano may each be 0 ("unknown or missing", logs.proto).
  A record is rejected when it has a non-zero timestamp and none of its non-zero timestamps is
  within the sane range; if one is in range and the other is not, the other is cleared to 0.
  traceId/spanId are optional on log records and logs.proto says receivers SHOULD treat an
  invalid one as "not associated with a trace/span": so an invalid traceId (wrong length or all
  zero) clears traceId and spanId, an invalid spanId clears spanId, and the record is kept.
- The sane range for timestamps is from 2000-01-01T00:00:00Z to one day after now (``now_ns``):
  it catches seconds or milliseconds sent where nanoseconds are expected.
- Envelopes (ResourceX, ScopeX) that hold no item after validation are removed (the spec's
  "Empty Telemetry Envelopes": receivers MAY ignore them).
- Positions in messages are the indexes in the request as received (before any removal).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from binascii import unhexlify
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    EntityRef,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SIGNALS = ("traces", "metrics", "logs")
JSON = "application/json"
PROTOBUF = "application/x-protobuf"

ExportRequest = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest

_REQUESTS = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
_RESPONSES = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}
_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}
_NOUNS = {"traces": "span", "metrics": "data point", "logs": "log record"}

# Timestamps before this are taken for seconds or milliseconds sent as nanoseconds.
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
FUTURE_NS = 86_400 * 10**9  # how far ahead of now a timestamp may lie (clock skew)
_SHOWN = 5  # problems spelled out in a partial-success message

# HTTP status -> google.rpc.Code for Status.code. The spec does not use Status.code (a server
# MAY omit it); this follows the OpenTelemetry Collector's mapping (internal/httphelper), and
# maps 413 to RESOURCE_EXHAUSTED, which gRPC servers return for an oversized message.
_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 12,  # UNIMPLEMENTED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,  # INVALID_ARGUMENT
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 14,  # UNAVAILABLE
}
_UNKNOWN = 2

_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_HEX = re.compile(r"[0-9a-fA-F]*")
_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK


class OtlpError(ValueError):
    """A payload that cannot be decoded: the HTTP layer answers 400 with str(error), which must
    say what was wrong (e.g. 'invalid JSON at line 1 column 5', 'traceId of span 3 of scopeSpans
    0 of resourceSpans 0 is not hex', 'unsupported content type text/plain: use
    application/json or application/x-protobuf')."""


@dataclass(frozen=True)
class Rejections:
    """How many spans/data points/log records validate() rejected, and why ("" when none)."""

    count: int
    message: str


# --- media types -------------------------------------------------------------------------------


def media_type(content_type_header: str) -> str:
    """The OTLP encoding named by a Content-Type header: JSON or PROTOBUF.

    Parameters (``; charset=utf-8``) and case are ignored. Anything else raises OtlpError.
    """
    media = (content_type_header or "").split(";", 1)[0].strip().lower()
    if media in (JSON, PROTOBUF):
        return media
    if not media:
        raise OtlpError(f"missing content type: use {JSON} or {PROTOBUF}")
    raise OtlpError(f"unsupported content type {media}: use {JSON} or {PROTOBUF}")


def _check_media(media: str) -> None:
    if media not in (JSON, PROTOBUF):
        raise OtlpError(f"unsupported content type {media}: use {JSON} or {PROTOBUF}")


def _check_signal(signal: str) -> None:
    if signal not in SIGNALS:
        raise ValueError(f"unknown OTLP signal {signal!r}: expected one of {', '.join(SIGNALS)}")


# --- decoding and encoding ---------------------------------------------------------------------


def decode(signal: str, body: bytes, media: str) -> ExportRequest:
    """The Export<Signal>ServiceRequest in ``body``, encoded as ``media`` (JSON or PROTOBUF)."""
    _check_signal(signal)
    _check_media(media)
    request = _REQUESTS[signal]()
    name = request.DESCRIPTOR.name
    if not body:
        return request
    if media == PROTOBUF:
        try:
            request.ParseFromString(bytes(body))
        except (DecodeError, RecursionError) as error:
            raise OtlpError(f"invalid protobuf: the body is not an {name} ({error})") from None
        return request

    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise OtlpError(
            f"invalid JSON: the body is not UTF-8 (byte {error.start} is {body[error.start]:#x})"
        ) from None
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as error:
        raise OtlpError(
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise OtlpError("invalid JSON: nested too deeply") from None
    if not isinstance(tree, dict):
        raise OtlpError(
            f"invalid OTLP JSON: the body must be a JSON object (an {name}), not {_json_kind(tree)}"
        )
    if signal == "traces":
        try:
            return _traces_from_json(tree)
        except _UNSURE:
            pass  # json_format decides, and words the error if there is one
    return _parse_dict(signal, tree)


def _parse_dict(signal: str, tree: dict) -> ExportRequest:
    """The request in the OTLP JSON ``tree``, by json_format.ParseDict: the reference decoder,
    and the one that words every error. It rewrites the ids of ``tree`` in place."""
    request = _REQUESTS[signal]()
    name = request.DESCRIPTOR.name
    for holder, where in _id_holders(signal, tree):
        _hex_ids_to_base64(holder, where)
    try:
        json_format.ParseDict(tree, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, OverflowError) as error:
        raise OtlpError(f"invalid OTLP JSON for an {name}: {_parse_error(error)}") from None
    except RecursionError:
        raise OtlpError(f"invalid OTLP JSON for an {name}: nested too deeply") from None
    except SystemError as error:
        # upb's fields_by_name.get fails this way on a key it cannot encode: a lone surrogate,
        # when a string with one stands where an object should (json_format iterates it).
        cause = error.__cause__ or error
        raise OtlpError(f"invalid OTLP JSON for an {name}: {_parse_error(cause)}") from None
    return request


def encode_request(signal: str, request: ExportRequest, media: str) -> bytes:
    """``request`` encoded as ``media``; JSON is OTLP JSON (hex ids, lowerCamelCase, int enums)."""
    _check_signal(signal)
    _check_media(media)
    if media == PROTOBUF:
        return request.SerializeToString()
    tree = json_format.MessageToDict(request, use_integers_for_enums=True)
    for holder, _ in _id_holders(signal, tree):
        for json_name, _ in _ID_FIELDS:
            if json_name in holder:
                holder[json_name] = base64.b64decode(holder[json_name]).hex()
    return _dumps(tree)


def _dumps(tree: dict) -> bytes:
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _parse_error(error: Exception) -> str:
    """json_format's "Failed to parse a field: Failed to parse b field: why." as "a.b: why"."""
    text = str(error)
    path = re.findall(r"Failed to parse (\w+) field: ", text)
    reason = re.sub(r"^(Failed to parse \w+ field: )+", "", text)
    reason = re.sub(r"\s+at [\w.\[\]]+\.?$", "", reason).rstrip(".")
    return f"{'.'.join(path)}: {reason}" if path else reason


def _items(parent: dict, *keys: str) -> Iterator[tuple[int, dict]]:
    """(index, object) for the objects in the list under any of ``keys`` (shape errors are left
    for ParseDict to report)."""
    for key in keys:
        children = parent.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                if isinstance(child, dict):
                    yield index, child


_METRIC_DATA_KEYS = (
    ("gauge",),
    ("sum",),
    ("histogram",),
    ("exponentialHistogram", "exponential_histogram"),
    ("summary",),
)


def _id_holders(signal: str, tree: dict) -> Iterator[tuple[dict, str]]:
    """Every object of an OTLP JSON tree that carries trace/span ids, with its position."""
    if signal == "traces":
        for r, resource in _items(tree, "resourceSpans", "resource_spans"):
            for s, scope in _items(resource, "scopeSpans", "scope_spans"):
                for i, span in _items(scope, "spans"):
                    where = f"span {i} of scopeSpans {s} of resourceSpans {r}"
                    yield span, where
                    for k, link in _items(span, "links"):
                        yield link, f"link {k} of {where}"
    elif signal == "logs":
        for r, resource in _items(tree, "resourceLogs", "resource_logs"):
            for s, scope in _items(resource, "scopeLogs", "scope_logs"):
                for i, record in _items(scope, "logRecords", "log_records"):
                    yield record, f"logRecord {i} of scopeLogs {s} of resourceLogs {r}"
    else:
        for r, resource in _items(tree, "resourceMetrics", "resource_metrics"):
            for s, scope in _items(resource, "scopeMetrics", "scope_metrics"):
                for m, metric in _items(scope, "metrics"):
                    where = f"metric {m} of scopeMetrics {s} of resourceMetrics {r}"
                    for keys in _METRIC_DATA_KEYS:
                        for key in keys:
                            data = metric.get(key)
                            if not isinstance(data, dict):
                                continue
                            for p, point in _items(data, "dataPoints", "data_points"):
                                for e, exemplar in _items(point, "exemplars"):
                                    yield exemplar, f"exemplar {e} of dataPoint {p} of {where}"


def _hex_ids_to_base64(holder: dict, where: str) -> None:
    """OTLP JSON ids are hex; the protobuf JSON parser wants base64 for bytes fields."""
    for json_name, proto_name in _ID_FIELDS:
        for key in (json_name, proto_name):
            if key not in holder or holder[key] is None:
                continue
            value = holder[key]
            if not isinstance(value, str):
                kind = _json_kind(value)
                raise OtlpError(f"{json_name} of {where} must be a hex string, not {kind}")
            if not _HEX.fullmatch(value):
                raise OtlpError(f"{json_name} of {where} is not hex: {value[:40]!r}")
            if len(value) % 2:
                raise OtlpError(f"{json_name} of {where} has an odd number of hex digits")
            holder[key] = base64.b64encode(binascii.unhexlify(value)).decode("ascii")


# --- the fast JSON path for traces -------------------------------------------------------------
#
# json_format.ParseDict costs about 300 µs a span; this builds the same ExportTraceServiceRequest
# straight from the dicts of json.loads in about 15 (8 attributes a span; bench/otlp_decode.py
# measures it beside ParseDict and ParseFromString). It is exact by construction: it
# decodes only what it is sure ParseDict would decode to the same message, and for anything else
# (a JSON shape error, a value in an unusual form, a key spelled both ways, ...) it raises one of
# _UNSURE, and decode() hands the tree to ParseDict, which decides and words the error. So errors
# and rare forms cost what they did; only their speed differs. What it takes as is:
#
# - keys in lowerCamelCase or snake_case (an object with a key it does not know, or a
#   snake_case key, is first renamed to lowerCamelCase; unknown keys are ignored);
# - ids as hex strings (binascii.unhexlify accepts exactly what _hex_ids_to_base64 does);
# - 64/32-bit integers as JSON numbers or decimal strings (int(), as ParseDict calls it; a value
#   out of the field's range makes the setter raise ValueError); enums as numbers or names;
# - doubles as finite numbers; bools as true/false; bytes as base64 (ParseDict's own expression);
# - null as "not set", as ParseDict has it (it clears the field).
#
# What it leaves to ParseDict: JSON numbers with a fraction or exponent for integers, numbers or
# "NaN"/"Infinity" as strings for doubles, enums as strings of digits or unknown names, a
# message or list of the wrong JSON type, null in a list, an object with two values for AnyValue,
# nesting near ParseDict's depth limit, and keys that look like extensions ("[...]").


class _Unsure(Exception):
    """The fast path cannot be sure to decode this exactly as ParseDict would."""


# Everything the fast path may raise on input it does not take: ValueError covers the setters'
# "Value out of range", int(), binascii (hex, base64) and UnicodeEncodeError (lone surrogates);
# TypeError a JSON value of the wrong type given to a setter.
_UNSURE = (_Unsure, ValueError, TypeError, OverflowError, AttributeError, KeyError, RecursionError)
_DEEPEST_ANY_VALUE = 90  # ParseDict refuses messages nested deeper than 100


class _Fields:
    """The JSON keys of one message type: the lowerCamelCase names the fast path reads (``camel``),
    every spelling of them mapped to lowerCamelCase, and every key ParseDict would read."""

    __slots__ = ("camel", "known", "spellings")

    def __init__(self, message_class, handled: str) -> None:
        fields = message_class.DESCRIPTOR.fields
        self.camel = frozenset(handled.split())
        self.spellings = {}
        for field in fields:
            if field.json_name in self.camel:
                self.spellings[field.json_name] = self.spellings[field.name] = field.json_name
        self.known = (
            frozenset(self.spellings) | {f.name for f in fields} | {f.json_name for f in fields}
        )
        if self.camel - self.spellings.keys():
            missing = sorted(self.camel - self.spellings.keys())
            raise LookupError(f"{message_class.__name__} has no field {missing}")


_REQUEST_FIELDS = _Fields(ExportTraceServiceRequest, "resourceSpans")
_RESOURCE_SPANS_FIELDS = _Fields(ResourceSpans, "resource scopeSpans schemaUrl")
_RESOURCE_FIELDS = _Fields(Resource, "attributes droppedAttributesCount entityRefs")
_ENTITY_REF_FIELDS = _Fields(EntityRef, "schemaUrl type idKeys descriptionKeys")
_SCOPE_SPANS_FIELDS = _Fields(ScopeSpans, "scope spans schemaUrl")
_SCOPE_FIELDS = _Fields(InstrumentationScope, "name version attributes droppedAttributesCount")
_SPAN_FIELDS = _Fields(
    Span,
    "traceId spanId traceState parentSpanId flags name kind startTimeUnixNano endTimeUnixNano "
    "attributes droppedAttributesCount events droppedEventsCount links droppedLinksCount status",
)
_EVENT_FIELDS = _Fields(Span.Event, "timeUnixNano name attributes droppedAttributesCount")
_LINK_FIELDS = _Fields(
    Span.Link, "traceId spanId traceState attributes droppedAttributesCount flags"
)
_STATUS_FIELDS = _Fields(Status, "message code")
_KEY_VALUE_FIELDS = _Fields(KeyValue, "key value keyStrindex")
_ANY_VALUE_FIELDS = _Fields(
    AnyValue,
    "stringValue boolValue intValue doubleValue arrayValue kvlistValue bytesValue "
    "stringValueStrindex",
)
_VALUES_FIELDS = _Fields(ArrayValue, "values")  # ArrayValue and KeyValueList alike
_SPAN_KINDS = {value.name: value.number for value in Span.SpanKind.DESCRIPTOR.values}
_STATUS_CODES = {value.name: value.number for value in Status.StatusCode.DESCRIPTOR.values}
# _hex_ids_to_base64 checks these keys of a link too, though a link has no parent.
_LINK_PARENT_KEYS = ("parentSpanId", "parent_span_id")


def _renamed(tree: dict, fields: _Fields) -> dict:
    """``tree`` with its keys in lowerCamelCase and without the keys ParseDict ignores."""
    renamed = {}
    for key, value in tree.items():
        name = fields.spellings.get(key)
        if name is None:
            # A field this path does not read (a newer proto), or an "[extension]": ParseDict's.
            if key in fields.known or key.startswith("["):
                raise _Unsure(key)
            if fields is _LINK_FIELDS and key in _LINK_PARENT_KEYS and value is not None:
                unhexlify(value)  # as _hex_ids_to_base64 would check it
            continue
        if name in renamed:  # spelled both ways: ParseDict takes the last one
            raise _Unsure(key)
        renamed[name] = value
    return renamed


def _object(tree, fields: _Fields) -> dict:
    if type(tree) is not dict:
        raise _Unsure(tree)
    return tree if tree.keys() <= fields.camel else _renamed(tree, fields)


def _list(items) -> list:
    if type(items) is not list:
        raise _Unsure(items)
    return items


def _int(value) -> int:
    """An int from a JSON number or decimal string, as ParseDict's _ConvertInteger has it."""
    kind = type(value)
    if kind is int:
        return value
    if kind is str and " " not in value:
        return int(value)
    raise _Unsure(value)


def _enum(value, names: dict[str, int]) -> int:
    if type(value) is int:
        return value  # an open enum: ParseDict keeps numbers it does not know
    number = names.get(value) if type(value) is str else None
    if number is None:
        raise _Unsure(value)
    return number


def _traces_from_json(tree: dict) -> ExportTraceServiceRequest:
    """The ExportTraceServiceRequest in the OTLP JSON ``tree``, as ParseDict (after
    _hex_ids_to_base64) makes it; raises one of _UNSURE when not sure. ``tree`` is not changed."""
    request = ExportTraceServiceRequest()
    tree = _object(tree, _REQUEST_FIELDS)
    items = tree.get("resourceSpans")
    if items is not None:
        add = request.resource_spans.add
        for item in _list(items):
            _resource_spans(_object(item, _RESOURCE_SPANS_FIELDS), add())
    return request


def _resource_spans(tree: dict, message: ResourceSpans) -> None:
    value = tree.get("resource")
    if value is not None:
        resource = message.resource
        resource.SetInParent()
        value = _object(value, _RESOURCE_FIELDS)
        items = value.get("attributes")
        if items is not None:
            _attributes(items, resource.attributes, 4)
        count = value.get("droppedAttributesCount")
        if count is not None:
            resource.dropped_attributes_count = _int(count)
        items = value.get("entityRefs")
        if items is not None:
            _entity_refs(items, resource.entity_refs)
    value = tree.get("schemaUrl")
    if value is not None:
        message.schema_url = value
    items = tree.get("scopeSpans")
    if items is not None:
        add = message.scope_spans.add
        for item in _list(items):
            _scope_spans(_object(item, _SCOPE_SPANS_FIELDS), add())


def _entity_refs(items, repeated) -> None:
    add = repeated.add
    for item in _list(items):
        item = _object(item, _ENTITY_REF_FIELDS)
        ref = add()
        for name, field in (("schemaUrl", "schema_url"), ("type", "type")):
            value = item.get(name)
            if value is not None:
                setattr(ref, field, value)
        for name, field in (("idKeys", "id_keys"), ("descriptionKeys", "description_keys")):
            values = item.get(name)
            if values is not None:
                if None in _list(values):
                    raise _Unsure(values)  # ParseDict: "null is not allowed ..."
                getattr(ref, field).extend(values)


def _scope_spans(tree: dict, message: ScopeSpans) -> None:
    value = tree.get("scope")
    if value is not None:
        scope = message.scope
        scope.SetInParent()
        value = _object(value, _SCOPE_FIELDS)
        text = value.get("name")
        if text is not None:
            scope.name = text
        text = value.get("version")
        if text is not None:
            scope.version = text
        items = value.get("attributes")
        if items is not None:
            _attributes(items, scope.attributes, 5)
        count = value.get("droppedAttributesCount")
        if count is not None:
            scope.dropped_attributes_count = _int(count)
    value = tree.get("schemaUrl")
    if value is not None:
        message.schema_url = value
    items = tree.get("spans")
    if items is not None:
        _spans(items, message.spans)


def _spans(items, repeated) -> None:
    add = repeated.add
    camel = _SPAN_FIELDS.camel
    for tree in _list(items):
        if type(tree) is not dict:
            raise _Unsure(tree)
        if not tree.keys() <= camel:
            tree = _renamed(tree, _SPAN_FIELDS)
        span = add()
        get = tree.get
        value = get("traceId")
        if value is not None:
            span.trace_id = unhexlify(value)
        value = get("spanId")
        if value is not None:
            span.span_id = unhexlify(value)
        value = get("parentSpanId")
        if value is not None:
            span.parent_span_id = unhexlify(value)
        value = get("traceState")
        if value is not None:
            span.trace_state = value
        value = get("flags")
        if value is not None:
            span.flags = value if type(value) is int else _int(value)
        value = get("name")
        if value is not None:
            span.name = value
        value = get("kind")
        if value is not None:
            span.kind = value if type(value) is int else _enum(value, _SPAN_KINDS)
        value = get("startTimeUnixNano")
        if value is not None:
            if type(value) is str and " " not in value:
                value = int(value)  # the usual form: a decimal string
            span.start_time_unix_nano = value if type(value) is int else _int(value)
        value = get("endTimeUnixNano")
        if value is not None:
            if type(value) is str and " " not in value:
                value = int(value)  # the usual form: a decimal string
            span.end_time_unix_nano = value if type(value) is int else _int(value)
        value = get("attributes")
        if value is not None:
            _attributes(value, span.attributes, 5)
        value = get("droppedAttributesCount")
        if value is not None:
            span.dropped_attributes_count = _int(value)
        value = get("events")
        if value is not None:
            _events(value, span.events)
        value = get("droppedEventsCount")
        if value is not None:
            span.dropped_events_count = _int(value)
        value = get("links")
        if value is not None:
            _links(value, span.links)
        value = get("droppedLinksCount")
        if value is not None:
            span.dropped_links_count = _int(value)
        value = get("status")
        if value is not None:
            status = span.status
            status.SetInParent()
            value = _object(value, _STATUS_FIELDS)
            text = value.get("message")
            if text is not None:
                status.message = text
            code = value.get("code")
            if code is not None:
                status.code = _enum(code, _STATUS_CODES)


def _events(items, repeated) -> None:
    add = repeated.add
    for tree in _list(items):
        tree = _object(tree, _EVENT_FIELDS)
        event = add()
        value = tree.get("timeUnixNano")
        if value is not None:
            event.time_unix_nano = _int(value)
        value = tree.get("name")
        if value is not None:
            event.name = value
        value = tree.get("attributes")
        if value is not None:
            _attributes(value, event.attributes, 6)
        value = tree.get("droppedAttributesCount")
        if value is not None:
            event.dropped_attributes_count = _int(value)


def _links(items, repeated) -> None:
    add = repeated.add
    for tree in _list(items):
        tree = _object(tree, _LINK_FIELDS)
        link = add()
        value = tree.get("traceId")
        if value is not None:
            link.trace_id = unhexlify(value)
        value = tree.get("spanId")
        if value is not None:
            link.span_id = unhexlify(value)
        value = tree.get("traceState")
        if value is not None:
            link.trace_state = value
        value = tree.get("attributes")
        if value is not None:
            _attributes(value, link.attributes, 6)
        value = tree.get("droppedAttributesCount")
        if value is not None:
            link.dropped_attributes_count = _int(value)
        value = tree.get("flags")
        if value is not None:
            link.flags = _int(value)


def _attributes(items, repeated, depth: int) -> None:
    """Fill ``repeated`` with the KeyValues in ``items``; ``depth`` is theirs as ParseDict counts
    it (the request is 1)."""
    add = repeated.add
    for tree in _list(items):
        if type(tree) is not dict:
            raise _Unsure(tree)
        key = tree.get("key")
        value = tree.get("value")
        if key is None or value is None or len(tree) != 2:
            _key_value(tree, add(), depth)
            continue
        attribute = add()  # {"key": ..., "value": ...}, the usual attribute
        attribute.key = key
        if type(value) is dict and len(value) == 1:  # the usual AnyValues, inline
            ((name, scalar),) = value.items()
            kind = type(scalar)
            if name == "stringValue" and kind is str:
                attribute.value.string_value = scalar
                continue
            if name == "intValue" and (kind is int or kind is str):
                if kind is str:
                    scalar = int(scalar) if " " not in scalar else _int(scalar)
                attribute.value.int_value = scalar
                continue
            if name == "boolValue" and kind is bool:
                attribute.value.bool_value = scalar
                continue
            if name == "doubleValue" and kind is float and scalar - scalar == 0.0:
                attribute.value.double_value = scalar
                continue
        _any_value(value, attribute.value, depth + 1)


def _key_value(tree: dict, attribute: KeyValue, depth: int) -> None:
    tree = _object(tree, _KEY_VALUE_FIELDS)
    key = tree.get("key")
    if key is not None:
        attribute.key = key
    value = tree.get("value")
    if value is not None:
        _any_value(value, attribute.value, depth + 1)
    index = tree.get("keyStrindex")
    if index is not None:
        attribute.key_strindex = _int(index)


def _any_value(tree, message: AnyValue, depth: int) -> None:
    if type(tree) is not dict or depth > _DEEPEST_ANY_VALUE:
        raise _Unsure(tree)
    plain = False
    if len(tree) == 1:
        ((name, value),) = tree.items()
        plain = value is not None and name in _ANY_VALUE_FIELDS.camel
    if not plain:  # snake_case, unknown keys, nulls, no key or several
        values = [
            (name, value)
            for name, value in _renamed(tree, _ANY_VALUE_FIELDS).items()
            if value is not None  # null clears a field that is not set: a no-op
        ]
        if not values:
            message.SetInParent()
            return
        if len(values) > 1:
            raise _Unsure(tree)  # ParseDict: "should not have multiple "value" oneof fields"
        ((name, value),) = values
    if name == "stringValue":
        message.string_value = value
    elif name == "intValue":
        message.int_value = value if type(value) is int else _int(value)
    elif name == "boolValue":
        if type(value) is not bool:
            raise _Unsure(value)
        message.bool_value = value
    elif name == "doubleValue":
        kind = type(value)
        if kind is int:
            value = float(value)
        elif kind is not float or value - value != 0.0:  # NaN and infinities: ParseDict's
            raise _Unsure(value)
        message.double_value = value
    elif name == "arrayValue":
        array = message.array_value
        array.SetInParent()
        values = _object(value, _VALUES_FIELDS).get("values")
        if values is not None:
            add = array.values.add
            for item in _list(values):
                _any_value(item, add(), depth + 2)
    elif name == "kvlistValue":
        kvlist = message.kvlist_value
        kvlist.SetInParent()
        values = _object(value, _VALUES_FIELDS).get("values")
        if values is not None:
            _attributes(values, kvlist.values, depth + 2)
    elif name == "bytesValue":
        if type(value) is not str:
            raise _Unsure(value)
        encoded = value.encode("utf-8")  # as ParseDict decodes bytes
        message.bytes_value = base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    else:  # stringValueStrindex
        message.string_value_strindex = _int(value)


# --- validation --------------------------------------------------------------------------------


ACCEPTED = Rejections(0, "")


def time_bounds(now_ns: int | None = None) -> tuple[int, int]:
    """The sane range for timestamps (see the module docstring)."""
    now = time.time_ns() if now_ns is None else now_ns
    return EARLIEST_NS, now + FUTURE_NS


def validate(signal: str, request: ExportRequest, *, now_ns: int | None = None) -> Rejections:
    """Reject the invalid spans/data points/log records of ``request``: remove them in place
    (what is kept is exactly what is valid), and say how many and why. See the module docstring
    for the rules."""
    _check_signal(signal)
    bounds = time_bounds(now_ns)
    check = {"traces": _validate_traces, "metrics": _validate_metrics, "logs": _validate_logs}
    rejected, total, problems = check[signal](request, bounds)
    if not rejected:
        return ACCEPTED
    noun = _NOUNS[signal]
    shown = "; ".join(problems[:_SHOWN])
    more = len(problems) - _SHOWN
    tail = f"; and {more} more problem{'s' if more != 1 else ''}" if more > 0 else ""
    return Rejections(rejected, f"rejected {rejected} of {_plural(total, noun)}: {shown}{tail}")


def _remove(repeated, indexes: list[int]) -> None:
    for index in reversed(indexes):
        del repeated[index]


def _prune(repeated, children: str) -> None:
    """Remove the envelopes of ``repeated`` whose ``children`` list is empty."""
    _remove(repeated, [i for i, item in enumerate(repeated) if not len(getattr(item, children))])


def _id_problem(name: str, value: bytes, size: int) -> str | None:
    if not value:
        return f"{name} is missing"
    if len(value) != size:
        return f"{name} has {len(value)} bytes, not {size}"
    if not any(value):
        return f"{name} is all zero"
    return None


def _valid_id(value: bytes, size: int) -> bool:
    return len(value) == size and any(value)


def _time_problem(name: str, value: int, bounds: tuple[int, int]) -> str | None:
    if not value:
        return f"{name} is missing (0)"
    if value < bounds[0]:
        return (
            f"{name} {value} is before 2000-01-01 (timestamps are nanoseconds since the Unix epoch)"
        )
    if value > bounds[1]:
        return f"{name} {value} is more than a day in the future"
    return None


def _validate_traces(request, bounds):
    rejected = total = 0
    problems: list[str] = []
    for r, resource in enumerate(request.resource_spans):
        for s, scope in enumerate(resource.scope_spans):
            bad = []
            for i, span in enumerate(scope.spans):
                total += 1
                found = _span_problems(span, bounds)
                if found:
                    bad.append(i)
                    problems.append(
                        f"span {i} of scopeSpans {s} of resourceSpans {r}: {', '.join(found)}"
                    )
                    continue
                if span.parent_span_id and not any(span.parent_span_id):
                    span.parent_span_id = b""  # an all-zero parent means "root"
                invalid_links = [
                    k
                    for k, link in enumerate(span.links)
                    if not (_valid_id(link.trace_id, 16) and _valid_id(link.span_id, 8))
                ]
                _remove(span.links, invalid_links)
                span.dropped_links_count += len(invalid_links)
            _remove(scope.spans, bad)
            rejected += len(bad)
        _prune(resource.scope_spans, "spans")
    _prune(request.resource_spans, "scope_spans")
    return rejected, total, problems


def _span_problems(span, bounds) -> list[str]:
    found = [
        _id_problem("traceId", span.trace_id, 16),
        _id_problem("spanId", span.span_id, 8),
    ]
    if span.parent_span_id and len(span.parent_span_id) != 8:
        found.append(f"parentSpanId has {len(span.parent_span_id)} bytes, not 8")
    if not span.name:
        found.append("name is empty")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    found.append(_time_problem("startTimeUnixNano", start, bounds))
    found.append(_time_problem("endTimeUnixNano", end, bounds))
    if start and end and end < start:
        found.append("endTimeUnixNano is before startTimeUnixNano")
    return [problem for problem in found if problem]


_TEMPORAL = ("sum", "histogram", "exponential_histogram")


def _validate_metrics(request, bounds):
    rejected = total = 0
    problems: list[str] = []
    for r, resource in enumerate(request.resource_metrics):
        for s, scope in enumerate(resource.scope_metrics):
            doomed = []
            for m, metric in enumerate(scope.metrics):
                named = f" ({metric.name})" if metric.name else ""
                where = f"metric {m}{named} of scopeMetrics {s} of resourceMetrics {r}"
                kind = metric.WhichOneof("data")
                if kind is None:
                    doomed.append(m)  # no data at all: zero points, nothing to keep
                    continue
                data = getattr(metric, kind)
                points = data.data_points
                total += len(points)
                whole = None
                if not metric.name:
                    whole = "name is empty"
                elif kind in _TEMPORAL and not data.aggregation_temporality:
                    whole = (
                        "aggregationTemporality is unspecified (0): use 1 (delta) or 2 (cumulative)"
                    )
                if whole:
                    if len(points):
                        rejected += len(points)
                        problems.append(
                            f"{where}: {whole}, so its {_plural(len(points), 'data point')} "
                            f"{'are' if len(points) != 1 else 'is'} rejected"
                        )
                    doomed.append(m)
                    continue
                bad = []
                for p, point in enumerate(points):
                    found = _point_problems(kind, point, bounds)
                    if found:
                        bad.append(p)
                        problems.append(f"dataPoint {p} of {where}: {', '.join(found)}")
                    elif kind != "summary":
                        for exemplar in point.exemplars:
                            _disassociate(exemplar)
                _remove(points, bad)
                rejected += len(bad)
                if not len(points):
                    doomed.append(m)
            _remove(scope.metrics, doomed)
        _prune(resource.scope_metrics, "metrics")
    _prune(request.resource_metrics, "scope_metrics")
    return rejected, total, problems


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _point_problems(kind: str, point, bounds) -> list[str]:
    found = [_time_problem("timeUnixNano", point.time_unix_nano, bounds)]
    if kind in ("gauge", "sum"):
        if point.WhichOneof("value") is None and not point.flags & _NO_RECORDED_VALUE:
            found.append("has no value (asInt or asDouble)")
    elif kind == "histogram":
        counts, edges = point.bucket_counts, point.explicit_bounds
        if (len(counts) or len(edges)) and len(counts) != len(edges) + 1:
            found.append(
                f"bucketCounts has {len(counts)} entries but explicitBounds has {len(edges)}: "
                f"expected {len(edges) + 1} bucket counts"
            )
        if any(edges[i] >= edges[i + 1] for i in range(len(edges) - 1)):
            found.append("explicitBounds are not strictly increasing")
        if len(counts) and sum(counts) != point.count:
            found.append(f"count is {point.count} but bucketCounts add up to {sum(counts)}")
        if point.HasField("sum") and point.sum < 0:
            found.append(f"sum is negative ({point.sum})")
    elif kind == "exponential_histogram":
        buckets = point.zero_count + sum(point.positive.bucket_counts)
        buckets += sum(point.negative.bucket_counts)
        if buckets != point.count:
            found.append(
                f"count is {point.count} but zeroCount and the bucket counts add up to {buckets}"
            )
        if point.HasField("sum") and point.sum < 0:
            found.append(f"sum is negative ({point.sum})")
    else:  # summary
        if point.sum < 0:
            found.append(f"sum is negative ({point.sum})")
        for q in point.quantile_values:
            if not 0.0 <= q.quantile <= 1.0:
                found.append(f"quantile {q.quantile} is outside [0, 1]")
            elif q.value < 0:
                found.append(f"the value at quantile {q.quantile} is negative ({q.value})")
    return [problem for problem in found if problem]


def _disassociate(item) -> None:
    """Clear optional trace/span ids that are invalid (the item is not tied to a trace)."""
    if item.trace_id and not _valid_id(item.trace_id, 16):
        item.trace_id = b""
        item.span_id = b""
    if item.span_id and not _valid_id(item.span_id, 8):
        item.span_id = b""


def _in_range(value: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _validate_logs(request, bounds):
    rejected = total = 0
    problems: list[str] = []
    for r, resource in enumerate(request.resource_logs):
        for s, scope in enumerate(resource.scope_logs):
            bad = []
            for i, record in enumerate(scope.log_records):
                total += 1
                stamps = {
                    "timeUnixNano": record.time_unix_nano,
                    "observedTimeUnixNano": record.observed_time_unix_nano,
                }
                set_stamps = {name: value for name, value in stamps.items() if value}
                if set_stamps and not any(_in_range(v, bounds) for v in set_stamps.values()):
                    bad.append(i)
                    found = [_time_problem(name, v, bounds) for name, v in set_stamps.items()]
                    problems.append(
                        f"logRecord {i} of scopeLogs {s} of resourceLogs {r}: {', '.join(found)}"
                    )
                    continue
                if not _in_range(record.time_unix_nano, bounds):
                    record.time_unix_nano = 0
                if not _in_range(record.observed_time_unix_nano, bounds):
                    record.observed_time_unix_nano = 0
                _disassociate(record)
            _remove(scope.log_records, bad)
            rejected += len(bad)
        _prune(resource.scope_logs, "log_records")
    _prune(request.resource_logs, "scope_logs")
    return rejected, total, problems


# --- responses ---------------------------------------------------------------------------------


def _serialize(message: Message, media: str) -> bytes:
    _check_media(media)
    if media == PROTOBUF:
        return message.SerializeToString()
    return _dumps(json_format.MessageToDict(message, use_integers_for_enums=True))


def response(signal: str, rejections: Rejections, media: str) -> bytes:
    """The body of the 200 reply: an empty Export<Signal>ServiceResponse (JSON ``{}``) when
    nothing was rejected, else one whose partialSuccess carries the count and the message."""
    _check_signal(signal)
    reply = _RESPONSES[signal]()
    if rejections.count:
        setattr(reply.partial_success, _REJECTED_FIELD[signal], rejections.count)
        reply.partial_success.error_message = rejections.message
    return _serialize(reply, media)


def status_body(message: str, media: str, code: int) -> bytes:
    """The body of a 4xx/5xx reply: a google.rpc.Status (spec, OTLP/HTTP "Failures"), with the
    message; for 400 ("Bad Data") its details hold a google.rpc.BadRequest describing it."""
    status = status_pb2.Status(code=_GRPC_CODES.get(code, _UNKNOWN), message=message)
    if code == 400:
        bad_request = error_details_pb2.BadRequest()
        bad_request.field_violations.add(description=message)
        status.details.add().Pack(bad_request)
    return _serialize(status, media)
