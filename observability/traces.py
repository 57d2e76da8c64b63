"""Projection of OTLP spans into Span rows and TraceRecord views, in bulk.

One batch is a handful of statements whatever its size: one query for the spans already
stored, one bulk insert, three aggregate queries and one bulk upsert for the traces touched.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Max, Min, Q

from core import bulk
from observability.models import Span, TraceRecord

ERROR = 2
EVENTS_NAMESPACE = uuid.UUID("2b0b5f4e-8c3a-4d38-9d1e-6a0f3c9b7e21")


@dataclass(frozen=True)
class Projected:
    """What a batch changed: the traces with new spans, and the new spans worth a signal."""

    traces: set[str]
    error_spans: dict[str, list[str]]  # traceId -> spanIds
    slow_spans: dict[str, list[str]]


def any_value(value):
    """An OTLP AnyValue as plain JSON."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs: Iterable) -> dict:
    return {pair.key: any_value(pair.value) for pair in pairs}


def spans_of(tenant_id, request) -> list[Span]:
    rows = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            rows += [_span(tenant_id, s, resource, service, scope) for s in scope_spans.spans]
    return rows


def _span(tenant_id, span, resource: dict, service: str, scope: str) -> Span:
    return Span(
        tenant_id=tenant_id,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name[:500],
        kind=span.kind,
        service=service[:200],
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=span.status.code,
        status_message=span.status.message,
        attributes=attributes(span.attributes),
        resource=resource,
        scope=scope[:200],
        events=[_event(e) for e in span.events],
        links=[_link(link) for link in span.links],
    )


def _event(event) -> dict:
    return {
        "name": event.name,
        "timeUnixNano": event.time_unix_nano,
        "attributes": attributes(event.attributes),
    }


def _link(link) -> dict:
    return {
        "traceId": link.trace_id.hex(),
        "spanId": link.span_id.hex(),
        "attributes": attributes(link.attributes),
    }


def project(tenant_id, request) -> Projected:
    rows = _dedup(spans_of(tenant_id, request))
    new = _not_stored(tenant_id, rows)
    bulk.insert(Span, new, columns=SPAN_COLUMNS)
    touched = {row.trace_id for row in new}
    refresh_trace_records(tenant_id, touched)
    slow_ns = settings.TRACE_SLOW_SPAN_MS * 1_000_000
    return Projected(
        traces=touched,
        error_spans=_by_trace(s for s in new if s.status_code == ERROR),
        slow_spans=_by_trace(s for s in new if s.end_ns - s.start_ns > slow_ns),
    )


SPAN_COLUMNS = [
    "tenant_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "attributes",
    "resource",
    "scope",
    "events",
    "links",
]


def _dedup(rows: list[Span]) -> list[Span]:
    """A batch may carry one span twice; the first copy wins, as in the database."""
    unique: dict[tuple[str, str], Span] = {}
    for row in rows:
        unique.setdefault((row.trace_id, row.span_id), row)
    return list(unique.values())


def _not_stored(tenant_id, rows: list[Span]) -> list[Span]:
    traces = {row.trace_id for row in rows}
    stored = set(
        Span.objects.filter(tenant_id=tenant_id, trace_id__in=traces).values_list(
            "trace_id", "span_id"
        )
    )
    return [row for row in rows if (row.trace_id, row.span_id) not in stored]


def _by_trace(spans: Iterable[Span]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for span in spans:
        found[span.trace_id].append(span.span_id)
    return dict(found)


def refresh_trace_records(tenant_id, trace_ids: set[str]) -> None:
    """Recompute the TraceRecord of each trace from all its stored spans (spans of one trace
    arrive in several batches, from several services, in any order)."""
    if not trace_ids:
        return
    spans = Span.objects.filter(tenant_id=tenant_id, trace_id__in=trace_ids)
    totals = spans.values("trace_id").annotate(
        span_count=Count("id"),
        error_count=Count("id", filter=Q(status_code=ERROR)),
        start_ns=Min("start_ns"),
        end_ns=Max("end_ns"),
    )
    roots = {
        trace_id: (name, service)
        for trace_id, name, service in spans.filter(parent_span_id="")
        .order_by("start_ns")
        .values_list("trace_id", "name", "service")
    }
    services: dict[str, list[str]] = defaultdict(list)
    for trace_id, service in spans.values_list("trace_id", "service").distinct():
        if service:
            services[trace_id].append(service)
    records = [_record(tenant_id, t, roots.get(t["trace_id"]), services) for t in totals]
    TraceRecord.objects.bulk_create(
        records,
        update_conflicts=True,
        unique_fields=["tenant", "trace_id"],
        update_fields=[
            "root_name",
            "root_service",
            "services",
            "span_count",
            "error_count",
            "start_ns",
            "end_ns",
            "status",
            "updated",
        ],
    )


def _record(tenant_id, totals: dict, root: tuple | None, services: dict) -> TraceRecord:
    root_name, root_service = root or ("", "")
    return TraceRecord(
        tenant_id=tenant_id,
        trace_id=totals["trace_id"],
        root_name=root_name,
        root_service=root_service,
        services=sorted(services.get(totals["trace_id"], [])),
        span_count=totals["span_count"],
        error_count=totals["error_count"],
        start_ns=totals["start_ns"],
        end_ns=totals["end_ns"],
        status="error" if totals["error_count"] else "ok",
    )


def event_id(batch_id, *parts: str) -> uuid.UUID:
    """Events a batch publishes have ids derived from it: handling it again adds none."""
    return uuid.uuid5(EVENTS_NAMESPACE, "|".join([str(batch_id), *parts]))
