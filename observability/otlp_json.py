"""OTLP JSON trace requests the cheap way: typed structs, checked, and stored as they came.

An OTLP JSON request of 512 spans is a few hundred kilobytes of small objects: building the
protobuf message from them (otlp.decode: json.loads and json_format.ParseDict) costs about
150 µs a span, most of the web tier's time. Most requests are plain and valid, though, and for
those the web tier needs to know only that: `clean_traces` decodes the body with msgspec into
the structs below (about 6 µs a span, with the JSON types checked; bench/otlp_decode.py) and
answers whether every span is one that otlp.validate would keep untouched. If so, the body is
stored as received and TraceIngestionWorker decodes it again the same way
(observability.traces.rows_of_json). If not, or if the body uses any form the structs do not
take (snake_case keys, enum names, enum numbers that validate rejects, nulls, unknown fields,
int64 strings that are not plain decimals, NaN, lone surrogates, ...), it returns None and the
request goes the reference way (otlp.decode, otlp.validate), which decides and words every
problem. (A NUL it takes, as the reference way does: the projection stores it as U+FFFD.)

So this path is conservative by construction: it never accepts what the reference path would
refuse or change, and what it accepts projects to the same rows (tests/observability compare
the two on the golden files and on mutated requests). These two are the only decoders of OTLP
JSON: the rules are enforced here and in otlp.validate, nowhere else.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta, Struct
from msgspec.structs import astuple

from core.tracecontext import is_span_id, is_trace_id
from observability.vocabulary import SPAN_KIND, STATUS_CODE, OtlpEnum

_DEEPEST = 20  # AnyValue nesting this path takes; deeper ones go the reference way

# msgspec checks the JSON types, and the integer ranges, as it decodes (in C): a value outside
# them fails the decode, and the request goes the reference way. Patterns it would check by
# calling Python's re for each value, which is slower than the checks below, and the worker
# decodes the stored body again: so ids and decimal strings are checked by _check_request, in
# the web tier only.
Nanos = Annotated[int, Meta(ge=0)] | str  # a number, or a decimal string (fixed64: _nanos)
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | str
UInt32 = Annotated[int, Meta(ge=0, lt=2**32)]


def _enum(enum: OtlpEnum):
    """An enum's numbers (validate rejects the others; names go the reference way)."""
    return Annotated[int, Meta(ge=min(enum.numbers), le=max(enum.numbers))]


if TYPE_CHECKING:  # the bounds are for msgspec, at run time
    SpanKind = int
    StatusCode = int
else:
    SpanKind = _enum(SPAN_KIND)
    StatusCode = _enum(STATUS_CODE)


class _Base(Struct, rename="camel", forbid_unknown_fields=True, gc=False):
    """gc=False: a request is a tree (no cycles), and its hundreds of thousands of objects
    would otherwise set off the cyclic collector many times a request."""


class AnyValue(_Base):
    string_value: str | None = None
    bool_value: bool | None = None
    int_value: Int64 | None = None
    double_value: float | None = None
    array_value: ArrayValue | None = None
    kvlist_value: KeyValueList | None = None
    bytes_value: str | None = None


class KeyValue(_Base):
    key: str = ""
    value: AnyValue | None = None


class ArrayValue(_Base):
    values: list[AnyValue] = []


class KeyValueList(_Base):
    values: list[KeyValue] = []


class Status(_Base):
    message: str = ""
    code: StatusCode = 0


class Event(_Base):
    time_unix_nano: Nanos = 0
    name: str = ""
    attributes: list[KeyValue] = []
    dropped_attributes_count: UInt32 = 0


class Link(_Base):
    trace_id: str = ""
    span_id: str = ""
    trace_state: str = ""
    attributes: list[KeyValue] = []
    dropped_attributes_count: UInt32 = 0
    flags: UInt32 = 0


class Span(_Base):
    trace_id: str = ""
    span_id: str = ""
    name: str = ""
    start_time_unix_nano: Nanos = 0
    end_time_unix_nano: Nanos = 0
    trace_state: str = ""
    parent_span_id: str = ""
    flags: UInt32 = 0
    kind: SpanKind = 0
    attributes: list[KeyValue] = []
    dropped_attributes_count: UInt32 = 0
    events: list[Event] = []
    dropped_events_count: UInt32 = 0
    links: list[Link] = []
    dropped_links_count: UInt32 = 0
    status: Status | None = None


class Scope(_Base):
    name: str = ""
    version: str = ""
    attributes: list[KeyValue] = []
    dropped_attributes_count: UInt32 = 0


class ScopeSpans(_Base):
    scope: Scope | None = None
    spans: list[Span] = []
    schema_url: str = ""


class Resource(_Base):
    attributes: list[KeyValue] = []
    dropped_attributes_count: UInt32 = 0


class ResourceSpans(_Base):
    resource: Resource | None = None
    scope_spans: list[ScopeSpans] = []
    schema_url: str = ""


class TracesRequest(_Base):
    resource_spans: list[ResourceSpans] = []


_decoder = msgspec.json.Decoder(TracesRequest)


class Unsure(ValueError):
    """This path cannot vouch for the request: the reference path must decide. (A ValueError:
    should a stored body ever fail the worker's decode, retrying cannot help.)"""


def decode_traces(body: bytes) -> TracesRequest:
    """The request in `body`; raises Unsure for anything the structs do not take."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise Unsure(str(exc)) from None


def clean_traces(body: bytes, bounds: tuple[int, int]) -> TracesRequest | None:
    """The request, if every span in it is valid as it stands (otlp.validate would neither
    reject nor change anything), else None."""
    try:
        request = decode_traces(body)
        _check_request(request, bounds)
    except Unsure:
        return None
    return request


def count_spans(request: TracesRequest) -> int:
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def integer(value: int | str) -> int:
    """An integer field that may be a decimal string, as an int (its pattern was checked)."""
    return value if type(value) is int else int(value)


def bytes_of(value: str) -> bytes:
    """A bytesValue's base64, decoded as the protobuf JSON parser decodes it."""
    encoded = value.encode("utf-8")
    return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))


# --- the check: what otlp.validate would keep untouched, and what otlp.decode reads alike -----


def _check_request(request: TracesRequest, bounds: tuple[int, int]) -> None:
    for resource_spans in request.resource_spans:
        if resource_spans.resource is not None:
            _check_attributes(resource_spans.resource.attributes, 0)
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope is not None:
                _check_attributes(scope_spans.scope.attributes, 0)
            for span in scope_spans.spans:
                _check_span(span, bounds)


def _check_span(span: Span, bounds: tuple[int, int]) -> None:
    """validate rejects a span with bad ids, no name or bad times, clears an all-zero parent
    and drops links with bad ids: none of that is this path's to take."""
    if not (is_trace_id(span.trace_id) and is_span_id(span.span_id) and span.name):
        raise Unsure("ids or name")
    if span.parent_span_id and not is_span_id(span.parent_span_id):
        raise Unsure("parentSpanId")
    start, end = _nanos(span.start_time_unix_nano), _nanos(span.end_time_unix_nano)
    if not bounds[0] <= start <= end <= bounds[1]:
        raise Unsure("times")
    _check_attributes(span.attributes, 0)
    for event in span.events:
        _nanos(event.time_unix_nano)
        _check_attributes(event.attributes, 0)
    for link in span.links:
        if not (is_trace_id(link.trace_id) and is_span_id(link.span_id)):
            raise Unsure("link ids")
        _check_attributes(link.attributes, 0)


def _nanos(value: int | str) -> int:
    if isinstance(value, int):
        if value >= 2**64:  # not a fixed64 (msgspec takes no bound beyond int64's)
            raise Unsure(value)
        return value
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise Unsure(value)  # int() would also take " 1", "+1", "1_0"
    return int(value)


def _check_int64(value: int | str) -> None:
    if type(value) is str:
        digits = value[1:] if value[:1] == "-" else value
        # 18 digits are always in range; longer strings go the reference way.
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):
            raise Unsure(value)


def _check_attributes(pairs: list[KeyValue], depth: int) -> None:
    for pair in pairs:
        value = pair.value
        if value is None:
            continue
        if value.string_value is not None and astuple(value).count(None) == 6:
            continue  # the usual attribute, a string
        _check_value(value, depth)


def _check_value(value: AnyValue, depth: int) -> None:
    text, flag, integer, double, array, kvlist, data = astuple(value)
    if (text, flag, integer, double, array, kvlist, data).count(None) < 6:
        raise Unsure("several values")  # the reference parser refuses a oneof set twice
    if text is not None or flag is not None:
        return
    if depth >= _DEEPEST:
        raise Unsure("nested too deeply")
    if integer is not None:
        _check_int64(integer)
    elif double is not None and double - double != 0.0:
        raise Unsure("not finite")
    elif array is not None:
        for item in array.values:
            _check_value(item, depth + 1)
    elif kvlist is not None:
        _check_attributes(kvlist.values, depth + 1)
    elif data is not None:
        try:
            bytes_of(data)
        except (binascii.Error, ValueError):
            raise Unsure("bytes") from None
