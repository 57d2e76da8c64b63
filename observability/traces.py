"""Projection of OTLP spans into Span rows and TraceRecord views, in bulk.

One call is a handful of statements whatever its size: one query for the spans already stored,
one COPY of the new ones, one upsert of the traces they touch (and, when a trace gains a
service, one update of those traces' service lists).

Spans are read straight into plain tuples (SpanRow), from protobuf (`rows_of_proto`) or from
the OTLP JSON structs of observability.otlp_json (`rows_of_json`); both give the same rows for
the same spans. TraceRecords are merged, not recomputed: the upsert adds each trace's new
spans to what is stored (counts, earliest start, latest end, earliest root span) in SQL, so
two batches of one trace handled at once by two consumers both count, without reading the
trace's spans back.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core import bulk
from core.envelope import TenantId
from observability import otlp, otlp_json
from observability.models import Span, TraceRecord
from observability.vocabulary import STATUS_ERROR

EVENTS_NAMESPACE = uuid.UUID("2b0b5f4e-8c3a-4d38-9d1e-6a0f3c9b7e21")
_encode = msgspec.json.Encoder()


class SpanRow(NamedTuple):
    """A span as stored (the Span columns after tenant_id); JSON columns as JSON text."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: str
    resource: str
    scope: str
    scope_version: str
    scope_attributes: str
    events: str
    links: str


SPAN_COLUMNS = ["tenant_id", *SpanRow._fields]


@dataclass(frozen=True)
class Projected:
    """What a call changed: the traces with new spans, and the new spans worth a signal."""

    traces: set[str]
    error_spans: dict[str, list[str]]  # traceId -> spanIds
    slow_spans: dict[str, list[str]]


def json_text(value) -> str:
    """JSON for a JSON column, from the plain JSON the functions below make."""
    return _encode.encode(value).decode()


def text(value: str) -> str:
    """A string as every database stores it: NUL, which PostgreSQL's text and jsonb cannot
    hold, as U+FFFD (the replacement character), on SQLite too. (Lone surrogates, the other
    strings a database refuses, never get past decoding: see observability.otlp.)"""
    return value.replace("\x00", "\ufffd")


def service_of(resource: dict) -> str:
    return str(resource.get("service.name", ""))[:200]


# --- from protobuf -----------------------------------------------------------------------------


def any_value(value):
    """An OTLP AnyValue (protobuf) as plain JSON: strings as text() has them, bytes as hex, and
    doubles that are not finite as OTLP JSON spells them ("NaN", "Infinity", "-Infinity")."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return text(value.string_value)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "double_value":
        return otlp.json_number(value.double_value)
    return getattr(value, kind)


def attributes(pairs: Iterable) -> dict:
    return {text(pair.key): any_value(pair.value) for pair in pairs}


def rows_of_proto(request) -> Iterator[SpanRow]:
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = service_of(resource)
        resource_json = json_text(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            name, version = text(scope.name[:200]), text(scope.version[:100])
            scope_attributes = json_text(attributes(scope.attributes))
            for span in scope_spans.spans:
                yield SpanRow(
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.parent_span_id.hex(),
                    text(span.name[:500]),
                    span.kind,
                    service,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    text(span.status.message),
                    json_text(attributes(span.attributes)),
                    resource_json,
                    name,
                    version,
                    scope_attributes,
                    json_text([_event(e) for e in span.events]),
                    json_text([_link(link) for link in span.links]),
                )


def _event(event) -> dict:
    return {
        "name": text(event.name),
        "timeUnixNano": event.time_unix_nano,
        "attributes": attributes(event.attributes),
    }


def _link(link) -> dict:
    return {
        "traceId": link.trace_id.hex(),
        "spanId": link.span_id.hex(),
        "attributes": attributes(link.attributes),
    }


# --- from OTLP JSON structs --------------------------------------------------------------------


def json_any_value(value: otlp_json.AnyValue | None):
    """An OTLP AnyValue (JSON struct) as plain JSON, as any_value gives it from protobuf."""
    if value is None:
        return None
    if value.string_value is not None:
        return text(value.string_value)
    if value.bool_value is not None:
        return value.bool_value
    if value.int_value is not None:
        return otlp_json.integer(value.int_value)
    if value.double_value is not None:
        return otlp.json_number(value.double_value)
    if value.array_value is not None:
        return [json_any_value(v) for v in value.array_value.values]
    if value.kvlist_value is not None:
        return json_attributes(value.kvlist_value.values)
    if value.bytes_value is not None:
        return otlp_json.bytes_of(value.bytes_value).hex()
    return None


def json_attributes(pairs: list[otlp_json.KeyValue]) -> dict:
    found = {}
    for pair in pairs:
        value = pair.value
        # The usual attribute, a string, without the calls.
        found[text(pair.key)] = (
            text(value.string_value)
            if value is not None and value.string_value is not None
            else json_any_value(value)
        )
    return found


def rows_of_json(request: otlp_json.TracesRequest) -> Iterator[SpanRow]:
    for resource_spans in request.resource_spans:
        resource = json_attributes(
            resource_spans.resource.attributes if resource_spans.resource else []
        )
        service = service_of(resource)
        resource_json = json_text(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope or otlp_json.Scope()
            name, version = text(scope.name[:200]), text(scope.version[:100])
            scope_attributes = json_text(json_attributes(scope.attributes))
            for span in scope_spans.spans:
                status = span.status
                yield SpanRow(
                    span.trace_id.lower(),
                    span.span_id.lower(),
                    span.parent_span_id.lower(),
                    text(span.name[:500]),
                    span.kind,
                    service,
                    otlp_json.integer(span.start_time_unix_nano),
                    otlp_json.integer(span.end_time_unix_nano),
                    status.code if status else 0,
                    text(status.message) if status else "",
                    json_text(json_attributes(span.attributes)),
                    resource_json,
                    name,
                    version,
                    scope_attributes,
                    json_text([_json_event(e) for e in span.events]),
                    json_text([_json_link(link) for link in span.links]),
                )


def _json_event(event: otlp_json.Event) -> dict:
    return {
        "name": text(event.name),
        "timeUnixNano": otlp_json.integer(event.time_unix_nano),
        "attributes": json_attributes(event.attributes),
    }


def _json_link(link: otlp_json.Link) -> dict:
    return {
        "traceId": link.trace_id.lower(),
        "spanId": link.span_id.lower(),
        "attributes": json_attributes(link.attributes),
    }


# --- projection --------------------------------------------------------------------------------


def project(tenant_id: TenantId, rows: Iterable[SpanRow]) -> Projected:
    """Store the spans not stored yet and merge them into their traces' TraceRecords."""
    new = _not_stored(tenant_id, _dedup(rows))
    bulk.insert_rows(Span, SPAN_COLUMNS, [(tenant_id, *row) for row in new])
    merge_trace_records(tenant_id, new)
    slow_ns = settings.TRACE_SLOW_SPAN_MS * 1_000_000
    return Projected(
        traces={row.trace_id for row in new},
        error_spans=_by_trace(s for s in new if s.status_code == STATUS_ERROR),
        slow_spans=_by_trace(s for s in new if s.end_ns - s.start_ns > slow_ns),
    )


def _dedup(rows: Iterable[SpanRow]) -> list[SpanRow]:
    """A batch may carry one span twice; the first copy wins, as in the database."""
    unique: dict[tuple[str, str], SpanRow] = {}
    for row in rows:
        unique.setdefault((row.trace_id, row.span_id), row)
    return list(unique.values())


def _not_stored(tenant_id: TenantId, rows: list[SpanRow]) -> list[SpanRow]:
    if not rows:
        return []
    stored = set(
        Span.objects.filter(tenant_id=tenant_id, trace_id__one_of={row.trace_id for row in rows})
        .values_list("trace_id", "span_id")
        .order_by()
    )
    if not stored:
        return rows
    return [row for row in rows if (row.trace_id, row.span_id) not in stored]


def _by_trace(spans: Iterable[SpanRow]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for span in spans:
        found[span.trace_id].append(span.span_id)
    return dict(found)


@dataclass
class _Summary:
    """What a call's new spans add to one trace."""

    spans: int = 0
    errors: int = 0
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    root: SpanRow | None = None
    services: set[str] = field(default_factory=set)

    def add(self, row: SpanRow) -> None:
        self.spans += 1
        self.errors += row.status_code == STATUS_ERROR
        self.start_ns = min(self.start_ns, row.start_ns)
        self.end_ns = max(self.end_ns, row.end_ns)
        if row.service:
            self.services.add(row.service)
        if not row.parent_span_id and (self.root is None or _earlier(row, self.root)):
            self.root = row


def _earlier(a: SpanRow, b: SpanRow) -> bool:
    """The root of a trace is its earliest span without a parent (the smaller id on a tie)."""
    return (a.start_ns, a.span_id) < (b.start_ns, b.span_id)


def summarize(rows: Iterable[SpanRow]) -> dict[str, _Summary]:
    found: dict[str, _Summary] = defaultdict(_Summary)
    for row in rows:
        found[row.trace_id].add(row)
    return found


# The merge, in SQL that PostgreSQL and SQLite both speak. A new root wins when the stored
# record has none, or when it starts earlier (or at the same time with a smaller span id).
_NEW_ROOT = (
    "(excluded.root_span_id <> '' AND ({t}.root_span_id = ''"
    " OR excluded.root_start_ns < {t}.root_start_ns"
    " OR (excluded.root_start_ns = {t}.root_start_ns"
    " AND excluded.root_span_id < {t}.root_span_id)))"
)
_RECORD_COLUMNS = [
    "tenant_id", "trace_id", "root_span_id", "root_name", "root_service", "root_start_ns",
    "services", "span_count", "error_count", "start_ns", "end_ns", "status", "updated",
]  # fmt: skip


def _merge_sql(source: str) -> str:
    table = TraceRecord._meta.db_table
    new_root = _NEW_ROOT.format(t=table)
    root = ", ".join(
        f"{c} = CASE WHEN {new_root} THEN excluded.{c} ELSE {table}.{c} END"
        for c in ("root_span_id", "root_name", "root_service", "root_start_ns")
    )
    return (
        f"INSERT INTO {table} ({', '.join(_RECORD_COLUMNS)}) {source} "
        f"ON CONFLICT (tenant_id, trace_id) DO UPDATE SET {root}, "
        f"span_count = {table}.span_count + excluded.span_count, "
        f"error_count = {table}.error_count + excluded.error_count, "
        f"start_ns = CASE WHEN excluded.start_ns < {table}.start_ns "
        f"THEN excluded.start_ns ELSE {table}.start_ns END, "
        f"end_ns = CASE WHEN excluded.end_ns > {table}.end_ns "
        f"THEN excluded.end_ns ELSE {table}.end_ns END, "
        f"status = CASE WHEN {table}.error_count + excluded.error_count > 0 "
        f"THEN 'error' ELSE 'ok' END, "
        f"updated = excluded.updated "
        f"RETURNING id, trace_id, services"
    )


def merge_trace_records(tenant_id: TenantId, rows: list[SpanRow]) -> None:
    """Add new spans to their traces' TraceRecords, inserting the records of new traces. The
    upsert locks each record it touches until commit, so a concurrent merge of the same trace
    waits and then adds to what this one wrote."""
    summaries = summarize(rows)
    now = timezone.now()
    # One lock order for all consumers (by traceId): two merges cannot deadlock.
    records = [_record_row(tenant_id, t, summaries[t], now) for t in sorted(summaries)]
    stored = []
    for source, params in bulk.row_sources(TraceRecord, _RECORD_COLUMNS, records):
        with connection.cursor() as cursor:
            cursor.execute(_merge_sql(source), params)
            stored += cursor.fetchall()
    _add_services(summaries, stored)


def _record_row(tenant_id: TenantId, trace_id: str, summary: _Summary, now) -> tuple:
    root = summary.root
    return (
        tenant_id,
        trace_id,
        root.span_id if root else "",
        root.name if root else "",
        root.service if root else "",
        root.start_ns if root else 0,
        json_text(sorted(summary.services)),
        summary.spans,
        summary.errors,
        summary.start_ns,
        summary.end_ns,
        "error" if summary.errors else "ok",
        now,
    )


def _add_services(summaries: dict[str, _Summary], stored: list[tuple]) -> None:
    """The upsert keeps a stored record's services: add the ones this call brought. The
    record is locked by the upsert, so nobody changes its services in between."""
    grown = []
    for record_id, trace_id, services in stored:
        known = set(_as_list(services))
        if summaries[trace_id].services - known:
            record = TraceRecord(id=record_id)
            record.services = sorted(known | summaries[trace_id].services)
            grown.append(record)
    TraceRecord.objects.bulk_update(grown, ["services"])


def _as_list(value) -> list:
    """A JSON column as the cursor returns it: decoded on PostgreSQL, text on SQLite."""
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def event_id(batch_id, *parts: str) -> uuid.UUID:
    """Events a batch publishes have ids derived from it: handling it again adds none."""
    return uuid.uuid5(EVENTS_NAMESPACE, "|".join([str(batch_id), *parts]))
