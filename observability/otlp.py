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
  An enum value that is neither an int32 nor a known name (an unknown name, 1.5, true, 2**40)
  is read as NOT_AN_ENUM, for validate to reject its item, where the protobuf JSON parser would
  read it as some other value (an unknown name as 0, 1.5 and true as 1, 2**40 as 0).
- Strings: a lone surrogate in JSON ("\\ud800", valid JSON but not Unicode) is bad data (400),
  as invalid UTF-8 is in protobuf, whose decoder refuses the whole message. NUL (U+0000) is
  Unicode and OTLP allows it: it is decoded, and the projections store it as U+FFFD (the
  replacement character) on both databases, since PostgreSQL's text and jsonb cannot hold it.
- Doubles may be NaN or ±Infinity (OTLP JSON: "NaN", "Infinity", "-Infinity"). In AnyValues
  (attributes, log bodies) the projections store them as those strings (JSON and jsonb have no
  number for them); a metric value that is not finite, or beyond ±MAX_MAGNITUDE, is stored as
  no value (observability.metrics says why). ``json_number`` spells them the same way in JSON
  replies.
- An empty body is an empty request (the spec: an empty request SHOULD get a success reply).

Validation (what ``validate`` rejects, counts and removes; see the spec's "Partial Success"):

- Spans: traceId must be 16 bytes and not all zero, spanId 8 bytes and not all zero (trace.proto
  calls such ids invalid); parentSpanId empty or 8 bytes (an all-zero one is taken for "no
  parent" and cleared); name non-empty; startTimeUnixNano and endTimeUnixNano set, end >= start,
  both within the sane range; kind a SpanKind (0 to 5) and status.code a StatusCode (0 to 2).
  A span link whose ids are invalid is dropped from its span and counted in the span's
  droppedLinksCount (the span itself is kept).
- Metrics (items are data points): a metric without a name, or with a name longer than
  MAX_METRIC_NAME characters, rejects all its points; a sum, histogram or exponential histogram
  whose aggregationTemporality is UNSPECIFIED (0, which metrics.proto says MUST not be used) or
  not an AggregationTemporality at all rejects all its points. A point is rejected when its
  timeUnixNano is 0 or outside the sane range, or its startTimeUnixNano after that range; a
  number point without a value (neither asInt nor asDouble) unless its flags say
  NO_RECORDED_VALUE; a histogram, exponential histogram or summary point whose count is over
  MAX_COUNT (the column is signed); a histogram point whose bucketCounts do not have one more
  entry than explicitBounds (both may be empty), whose explicitBounds are not all finite
  numbers within ±MAX_MAGNITUDE (the buckets below the first bound and above the last are
  implied; observability.metrics says why the magnitude) or not strictly increasing,
  whose bucketCounts do not add up to count, or whose sum is negative; an exponential histogram
  point whose zeroCount and bucket counts do not add up to count, or whose sum is negative; a
  summary point whose sum is negative, with a quantile outside [0, 1] or a negative value at a
  quantile. (Counts are unsigned in the proto, so "negative count" can only happen in JSON,
  where decode refuses it.) A metric with no data at all (none of gauge, sum, histogram,
  exponentialHistogram, summary) holds zero points: it is removed and not counted. Exemplar ids
  that are invalid are cleared (exemplar ids are optional), and so is an exemplar's
  timeUnixNano outside the sane range (its point's time stands in).
- Logs: timeUnixNano and observedTimeUnixNano may each be 0 ("unknown or missing", logs.proto).
  A record is rejected when it has a non-zero timestamp and none of its non-zero timestamps is
  within the sane range, or when its severityNumber is not a SeverityNumber (0 to 24); if one
  timestamp is in range and the other is not, the other is cleared to 0.
  traceId/spanId are optional on log records and logs.proto says receivers SHOULD treat an
  invalid one as "not associated with a trace/span": so an invalid traceId (wrong length or all
  zero) clears traceId and spanId, an invalid spanId clears spanId, and the record is kept.
- The sane range for timestamps is from 2000-01-01T00:00:00Z to one day after now (``now_ns``):
  it catches seconds or milliseconds sent where nanoseconds are expected.
- Envelopes (ResourceX, ScopeX) that hold no item after validation are removed (the spec's
  "Empty Telemetry Envelopes": receivers MAY ignore them).
- Positions in messages are the indexes in the request as received (before any removal).

What validate keeps is storable as it stands (the worker must never be the first to find out
that it is not): times and counts fit the signed 64-bit columns, enums the small-integer ones,
names the character columns (longer span names, scopes and units are cut to fit; a metric's
name is its identity, so it is not); NUL and non-finite numbers are stored as said above.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
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

from observability.vocabulary import (
    AGGREGATION_TEMPORALITY,
    NOT_AN_ENUM,
    SEVERITY_NUMBER,
    SPAN_KIND,
    STATUS_CODE,
    OtlpEnum,
)

SIGNALS = ("traces", "metrics", "logs")
JSON = "application/json"
PROTOBUF = "application/x-protobuf"

ExportRequest = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest

_REQUESTS: dict[str, type[ExportRequest]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
ExportResponse = (
    ExportTraceServiceResponse | ExportMetricsServiceResponse | ExportLogsServiceResponse
)
_RESPONSES: dict[str, type[ExportResponse]] = {
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
# Where the database's columns end: a metric's name (the instrument name's limit in the
# OpenTelemetry API too) and a count (a signed 64-bit column, where the proto's is unsigned).
MAX_METRIC_NAME = 255
MAX_COUNT = 2**63 - 1
# The largest magnitude of a metric value that is aggregated (observability.metrics): sums and
# interpolations of such values stay within a double, where PostgreSQL fails on overflow.
MAX_MAGNITUDE = 1e300

# HTTP status -> google.rpc.Code for Status.code. The spec does not use Status.code (a server
# MAY omit it); this follows the OpenTelemetry Collector's mapping (internal/httphelper), and
# maps 413 to RESOURCE_EXHAUSTED, which gRPC servers return for an oversized message.
_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 12,  # UNIMPLEMENTED
    405: 12,  # UNIMPLEMENTED
    408: 4,  # DEADLINE_EXCEEDED
    411: 3,  # INVALID_ARGUMENT
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
    return _parse_dict(signal, tree)


def _parse_dict(signal: str, tree: dict) -> ExportRequest:
    """The request in the OTLP JSON ``tree``, by json_format.ParseDict: the reference decoder,
    and the one that words every error. It rewrites the ids and enums of ``tree`` in place."""
    request = _REQUESTS[signal]()
    name = request.DESCRIPTOR.name
    for holder, where in _id_holders(signal, tree):
        _hex_ids_to_base64(holder, where)
    for holder, keys, enum in _enum_holders(signal, tree):
        _read_enum(holder, keys, enum)
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


def json_number(value: float) -> float | str:
    """A double as OTLP JSON (proto3's JSON mapping) writes it: itself when finite, else the
    string "NaN", "Infinity" or "-Infinity", since JSON has no number for them."""
    if value - value == 0.0:  # finite (inf - inf and nan - nan are NaN)
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


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


def _parse_error(error: BaseException) -> str:
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


# --- enums -------------------------------------------------------------------------------------


# The enums (OtlpEnum) are OTLP's vocabulary: observability.vocabulary.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_DECIMAL = re.compile(r"-?[0-9]+")


def _enum_holders(signal: str, tree: dict) -> Iterator[tuple[dict, tuple[str, ...], OtlpEnum]]:
    """Every object of an OTLP JSON tree that carries an enum, with the key's spellings."""
    if signal == "traces":
        for _, resource in _items(tree, "resourceSpans", "resource_spans"):
            for _, scope in _items(resource, "scopeSpans", "scope_spans"):
                for _, span in _items(scope, "spans"):
                    yield span, ("kind",), SPAN_KIND
                    if isinstance(span.get("status"), dict):
                        yield span["status"], ("code",), STATUS_CODE
    elif signal == "logs":
        for _, resource in _items(tree, "resourceLogs", "resource_logs"):
            for _, scope in _items(resource, "scopeLogs", "scope_logs"):
                for _, record in _items(scope, "logRecords", "log_records"):
                    yield record, ("severityNumber", "severity_number"), SEVERITY_NUMBER
    else:
        keys = ("aggregationTemporality", "aggregation_temporality")
        for _, resource in _items(tree, "resourceMetrics", "resource_metrics"):
            for _, scope in _items(resource, "scopeMetrics", "scope_metrics"):
                for _, metric in _items(scope, "metrics"):
                    for spellings in _METRIC_DATA_KEYS:
                        for key in spellings:
                            if isinstance(metric.get(key), dict):
                                yield metric[key], keys, AGGREGATION_TEMPORALITY


def _read_enum(holder: dict, keys: tuple[str, ...], enum: OtlpEnum) -> None:
    """Replace an enum value of ``holder`` by the number it names, or by NOT_AN_ENUM."""
    for key in keys:
        value = holder.get(key)
        if value is not None:
            holder[key] = _enum_number(value, enum)


def _enum_number(value, enum: OtlpEnum) -> int:
    kind = type(value)
    number = None
    if kind is int:
        number = value
    elif kind is float and value.is_integer():
        number = int(value)
    elif kind is str:
        number = enum.names.get(value)
        if number is None and _DECIMAL.fullmatch(value):
            number = int(value)
    return number if number is not None and _INT32_MIN <= number <= _INT32_MAX else NOT_AN_ENUM


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
    found.append(SPAN_KIND.problem("kind", span.kind))
    found.append(STATUS_CODE.problem("status.code", span.status.code))
    return [problem for problem in found if problem]


_TEMPORAL = ("sum", "histogram", "exponential_histogram")


def _validate_metrics(request, bounds):
    rejected = total = 0
    problems: list[str] = []
    for r, resource in enumerate(request.resource_metrics):
        for s, scope in enumerate(resource.scope_metrics):
            doomed = []
            for m, metric in enumerate(scope.metrics):
                named = f" ({_clipped(metric.name)})" if metric.name else ""
                where = f"metric {m}{named} of scopeMetrics {s} of resourceMetrics {r}"
                kind = metric.WhichOneof("data")
                if kind is None:
                    doomed.append(m)  # no data at all: zero points, nothing to keep
                    continue
                data = getattr(metric, kind)
                points = data.data_points
                total += len(points)
                whole = _metric_problem(metric, kind, data)
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
                            if not _in_range(exemplar.time_unix_nano, bounds):
                                exemplar.time_unix_nano = 0  # its point's time stands in
                _remove(points, bad)
                rejected += len(bad)
                if not len(points):
                    doomed.append(m)
            _remove(scope.metrics, doomed)
        _prune(resource.scope_metrics, "metrics")
    _prune(request.resource_metrics, "scope_metrics")
    return rejected, total, problems


def _clipped(name: str, size: int = 60) -> str:
    return name if len(name) <= size else f"{name[: size - 1]}…"


def _metric_problem(metric, kind: str, data) -> str | None:
    """What rejects every point of a metric, if anything."""
    if not metric.name:
        return "name is empty"
    if len(metric.name) > MAX_METRIC_NAME:
        return f"name is longer than {MAX_METRIC_NAME} characters"
    if kind not in _TEMPORAL:
        return None
    if not data.aggregation_temporality:
        return "aggregationTemporality is unspecified (0): use 1 (delta) or 2 (cumulative)"
    return AGGREGATION_TEMPORALITY.problem("aggregationTemporality", data.aggregation_temporality)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _point_problems(kind: str, point, bounds) -> list[str]:
    found = [_time_problem("timeUnixNano", point.time_unix_nano, bounds)]
    if point.start_time_unix_nano > bounds[1]:
        found.append(
            f"startTimeUnixNano {point.start_time_unix_nano} is more than a day in the future"
        )
    if kind != "gauge" and kind != "sum" and point.count > MAX_COUNT:
        found.append(f"count {point.count} is more than {MAX_COUNT} (2^63 - 1)")
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
        if not all(-MAX_MAGNITUDE <= edge <= MAX_MAGNITUDE for edge in edges):  # NaN is not
            found.append(
                f"explicitBounds are not all finite numbers within ±{MAX_MAGNITUDE:g} "
                "(the open buckets below the first and above the last are implied)"
            )
        elif any(edges[i] >= edges[i + 1] for i in range(len(edges) - 1)):
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
                found = []
                if set_stamps and not any(_in_range(v, bounds) for v in set_stamps.values()):
                    found = [_time_problem(name, v, bounds) for name, v in set_stamps.items()]
                severity = SEVERITY_NUMBER.problem("severityNumber", record.severity_number)
                if severity:
                    found.append(severity)
                if found:
                    bad.append(i)
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


def _utf8(message: str) -> str:
    """A message as a proto string can hold it: one that quotes what a client sent may hold a
    lone surrogate (JSON's "\\ud800"), which is written as that escape."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def response(signal: str, rejections: Rejections, media: str) -> bytes:
    """The body of the 200 reply: an empty Export<Signal>ServiceResponse (JSON ``{}``) when
    nothing was rejected, else one whose partialSuccess carries the count and the message."""
    _check_signal(signal)
    reply = _RESPONSES[signal]()
    if rejections.count:
        setattr(reply.partial_success, _REJECTED_FIELD[signal], rejections.count)
        reply.partial_success.error_message = _utf8(rejections.message)
    return _serialize(reply, media)


def status_body(message: str, media: str, code: int) -> bytes:
    """The body of a 4xx/5xx reply: a google.rpc.Status (spec, OTLP/HTTP "Failures"), with the
    message; for 400 ("Bad Data") its details hold a google.rpc.BadRequest describing it."""
    message = _utf8(message)
    status = status_pb2.Status(code=_GRPC_CODES.get(code, _UNKNOWN), message=message)
    if code == 400:
        bad_request = error_details_pb2.BadRequest()
        bad_request.field_violations.add(description=message)
        status.details.add().Pack(bad_request)
    return _serialize(status, media)
