"""TelemetryCorrelationWorker's batch handler: one TelemetryCorrelation snapshot per (tenant,
traceId).

The worker receives every public event (the wildcard) and the internal TelemetryLinked that
log and metric ingestion publish when stored records or exemplars name traces. An event names
traces through `data["traceId"]` (a string) and/or `data["traceIds"]` (a list):
TraceRecorded and RuntimeSignalDetected today, incidents and feedback later. Anything else
that is not a trace id (not 32 hex digits, all zeros) is ignored; an event naming no trace
is not taken at publish (`takes`): it never becomes a message of the worker.

The handler takes a batch of events (up to the worker's batch size) and works on all the
traces they name at once, per tenant: one query per store, grouping and window functions,
not a query per trace or per event. For each trace the snapshot is recomputed from the stores,
never patched from the event, so it is the same whichever events triggered it and however
often:

- trace: the TraceRecord summary (root, services, span and error counts, status, start and
  end) and up to MAX_ERROR_SPANS of its error spans; null while no span is stored.
- logs: LogRecord rows with that trace_id: their count, a count per OTLP severity range
  (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24, UNSPECIFIED 0),
  and the MAX_LOGS newest (time, severity, body clipped to MAX_BODY_CHARS, service, spanId).
- exemplars: MetricExemplar rows of the trace (written with their metric points), their
  count and the MAX_EXEMPLARS newest.
- events: the public events that named the trace, recorded by this worker as it handles them
  (CorrelatedEvent): their count and the MAX_EVENTS newest (eventId, type, occurredAt, source,
  and `signal` when the data has one). They outlive the retention of core's event store.

Every query is filtered by the envelope's tenant, and rows loaded are checked with
envelope.ensure_tenant.

Upsert by (tenant, traceId), serialised per trace (a transaction-level advisory lock per
trace on PostgreSQL, taken in traceId order before the stores are read), so two consumers
correlating the same trace at once cannot write a snapshot computed before the other's data
was committed over a newer one. A snapshot equal to the stored one is not written: redelivery
and repeats change nothing, not even `updated`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Case, CharField, Count, F, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core import bulk, events
from core.envelope import Envelope, TenantId
from core.tracecontext import is_trace_id
from observability.models import (
    CorrelatedEvent,
    LogRecord,
    MetricExemplar,
    Span,
    TelemetryCorrelation,
    TraceRecord,
)
from observability.vocabulary import SEVERITIES, severity_name

MAX_ERROR_SPANS = 20
MAX_LOGS = 20
MAX_BODY_CHARS = 1000
MAX_EXEMPLARS = 50
MAX_EVENTS = 50

_CONTENT = ["trace", "log_count", "logs", "exemplar_count", "exemplars", "event_count", "events"]
_JSON = {"trace", "logs", "exemplars", "events"}


def correlate(envelopes: list[Envelope]) -> None:
    """TelemetryCorrelationWorker's batch handler (see the module docstring)."""
    by_tenant: dict = defaultdict(list)
    for envelope in envelopes:
        if trace_ids_of(envelope.data):
            by_tenant[envelope.tenant_id].append(envelope)
    for named in by_tenant.values():
        _correlate_tenant(named)


def takes(envelopes: list[Envelope]) -> set[uuid.UUID]:
    """At publish: the events whose data names a trace. The handler does nothing for the
    others, so they never become messages of the worker: a synced page's thousand
    WorkItemCreated would otherwise be a thousand more rows to write, claim and mark, each a
    no-op."""
    return {e.event_id for e in envelopes if trace_ids_of(e.data)}


def _correlate_tenant(envelopes: list[Envelope]) -> None:
    tenant_id = envelopes[0].tenant_id
    _record_events(envelopes)
    trace_ids = sorted({t for e in envelopes for t in trace_ids_of(e.data)})
    _serialise(tenant_id, trace_ids)
    stored = _stored(envelopes[0], trace_ids)
    snapshots = snapshot(tenant_id, trace_ids)
    now = timezone.now()
    changed = [
        _row(tenant_id, trace_id, content, now)
        for trace_id, content in snapshots.items()
        if stored.get(trace_id) != content
    ]
    bulk.upsert(
        TelemetryCorrelation,
        ["tenant_id", "trace_id", *_CONTENT, "created", "updated"],
        changed,
        unique=["tenant_id", "trace_id"],
        update=[*_CONTENT, "updated"],
    )


def _row(tenant_id: TenantId, trace_id: str, content: dict, now) -> tuple:
    values = [json.dumps(content[name]) if name in _JSON else content[name] for name in _CONTENT]
    return (tenant_id, trace_id, *values, now, now)


def trace_ids_of(data) -> list[str]:
    """The trace ids an event's data names, lowercased, valid ones only, sorted."""
    if not isinstance(data, dict):
        return []
    named = data.get("traceIds")
    if not named and not data.get("traceId"):  # most events (every synced record's): none
        return []
    candidates = list(named) if isinstance(named, list) else []
    candidates.append(data.get("traceId"))
    found = {c.lower() for c in candidates if is_trace_id(c)}
    return sorted(found)


def _record_events(envelopes: list[Envelope]) -> None:
    """Remember which public events named which traces (internal ones, such as
    TelemetryLinked, only ask for a recompute)."""
    catalog = events.catalog()
    links = [
        (
            e.tenant_id,
            trace_id,
            e.event_id,
            e.type,
            e.occurred_at,
            e.source[:200],
            str(e.data.get("signal") or "")[:32],
        )
        for e in envelopes
        if not catalog[e.type].internal
        for trace_id in trace_ids_of(e.data)
    ]
    bulk.insert_new(CorrelatedEvent, _LINK_COLUMNS, links)


_LINK_COLUMNS = ["tenant_id", "trace_id", "event_id", "type", "occurred_at", "source", "signal"]


def _serialise(tenant_id: TenantId, trace_ids: list[str]) -> None:
    """Two consumers correlating one trace at once must not write a snapshot computed before
    the other's data committed over a newer one: on PostgreSQL each takes a transaction lock
    per (tenant, trace), in one order (sorted) so that they cannot deadlock. Advisory locks
    write nothing, where locking rows would insert and update each. SQLite runs one writing
    transaction at a time already."""
    if connection.vendor != "postgresql" or not trace_ids:
        return
    keys = sorted(_lock_key(tenant_id, t) for t in trace_ids)
    with connection.cursor() as cursor:
        # unnest yields the array in its order, and each row takes its lock as it is scanned.
        cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])


def _lock_key(tenant_id: TenantId, trace_id: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}:{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _stored(envelope: Envelope, trace_ids: list[str]) -> dict[str, dict]:
    """The content of the snapshots stored for these traces."""
    rows = TelemetryCorrelation.objects.filter(
        tenant_id=envelope.tenant_id, trace_id__one_of=set(trace_ids)
    ).values("tenant_id", "trace_id", *_CONTENT)
    found = {}
    for row in rows:
        envelope.ensure_tenant(row.pop("tenant_id"))
        found[row.pop("trace_id")] = row
    return found


def snapshot(tenant_id: TenantId, trace_ids: list[str]) -> dict[str, dict]:
    """The content of each trace's TelemetryCorrelation, as the stores have it now, in the
    shape it takes once stored as JSON (so that it compares equal to a stored row)."""
    traces = _traces(tenant_id, trace_ids)
    logs = _logs(tenant_id, trace_ids)
    exemplars = _exemplars(tenant_id, trace_ids)
    named = _events(tenant_id, trace_ids)
    found = {}
    for t in trace_ids:
        found[t] = {
            "trace": traces.get(t),
            "log_count": logs[t]["count"],
            "logs": {"bySeverity": logs[t]["bySeverity"], "latest": logs[t]["latest"]},
            "exemplar_count": exemplars[t][0],
            "exemplars": exemplars[t][1],
            "event_count": named[t][0],
            "events": named[t][1],
        }
    return _as_stored(found)


def _as_stored(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _first_per_trace(queryset, *, order: Iterable, limit: int):
    """The first `limit` rows of each trace in `order`: one query with a window function."""
    ranked = queryset.annotate(
        rank=Window(RowNumber(), partition_by=[F("trace_id")], order_by=list(order))
    )
    return ranked.filter(rank__lte=limit).order_by("trace_id", "rank")


def _counts(queryset) -> dict[str, int]:
    rows = queryset.values("trace_id").annotate(n=Count("id")).order_by()
    return {row["trace_id"]: row["n"] for row in rows}


# Traces


_RECORD_FIELDS = [
    "trace_id", "root_name", "root_service", "services", "span_count", "error_count", "status",
    "start_ns", "end_ns",
]  # fmt: skip


def _traces(tenant_id: TenantId, trace_ids: list[str]) -> dict[str, dict]:
    records = TraceRecord.objects.filter(
        tenant_id=tenant_id, trace_id__one_of=set(trace_ids)
    ).values_list(*_RECORD_FIELDS)
    found = {}
    for trace_id, name, service, services, spans, errors, status, start, end in records:
        found[trace_id] = {
            "rootName": name,
            "rootService": service,
            "services": services,
            "spanCount": spans,
            "errorCount": errors,
            "status": status,
            "startTimeUnixNano": start,
            "endTimeUnixNano": end,
            "durationMs": (end - start) / 1e6,
            "errorSpans": [],
        }
    failing = [t for t, trace in found.items() if trace["errorCount"]]
    errors = _first_per_trace(
        Span.objects.filter(tenant_id=tenant_id, trace_id__one_of=set(failing), status_code=2),
        order=("start_ns", "span_id"),
        limit=MAX_ERROR_SPANS,
    ).values_list("trace_id", "span_id", "name", "service", "status_message")
    for trace_id, span_id, name, service, message in errors if failing else ():
        found[trace_id]["errorSpans"].append(
            {"spanId": span_id, "name": name, "service": service, "statusMessage": message}
        )
    return found


# Logs


def _logs(tenant_id: TenantId, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        t: {"count": 0, "bySeverity": {}, "latest": []} for t in trace_ids
    }
    records = LogRecord.objects.filter(tenant_id=tenant_id, trace_id__one_of=set(trace_ids))
    level = Case(
        *[
            When(severity_number__gte=lo, severity_number__lte=hi, then=Value(name))
            for lo, hi, name in SEVERITIES
        ],
        default=Value("UNSPECIFIED"),
        output_field=CharField(),
    )
    counts = (
        records.annotate(level=level)
        .values("trace_id", "level")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("trace_id", "level", "n")
    )
    for trace_id, name, n in counts:
        found[trace_id]["count"] += n
        found[trace_id]["bySeverity"][name] = n
    logged = [t for t, entry in found.items() if entry["count"]]
    latest = _first_per_trace(
        records.filter(trace_id__one_of=set(logged)),
        order=("-time_ns", "-observed_ns", "record_key"),
        limit=MAX_LOGS,
    ).values_list(
        "trace_id",
        "time_ns",
        "observed_ns",
        "severity_number",
        "severity_text",
        "body",
        "service",
        "span_id",
    )
    for trace_id, time_ns, observed_ns, number, text, body, service, span_id in (
        latest if logged else ()
    ):
        found[trace_id]["latest"].append(
            {
                "timeUnixNano": time_ns or observed_ns,
                "severityNumber": number,
                "severityText": text,
                "severity": severity_name(number),
                "body": body[:MAX_BODY_CHARS] if isinstance(body, str) else body,
                "service": service,
                "spanId": span_id,
            }
        )
    return found


# Exemplars


def _exemplars(tenant_id: TenantId, trace_ids: list[str]) -> dict[str, tuple[int, list[dict]]]:
    """Each trace's exemplar count and its newest exemplars."""
    stored = MetricExemplar.objects.filter(tenant_id=tenant_id, trace_id__one_of=set(trace_ids))
    counts = _counts(stored)
    found: dict[str, list[dict]] = defaultdict(list)
    newest = _first_per_trace(
        stored.filter(trace_id__one_of=set(counts)),
        order=("-time_ns", "series_key", "span_id", "-point_time_ns"),
        limit=MAX_EXEMPLARS,
    ).values_list("trace_id", "name", "unit", "series_key", "span_id", "value", "time_ns",
                  "point_time_ns")  # fmt: skip
    for trace_id, name, unit, key, span_id, value, time_ns, point_ns in newest if counts else ():
        found[trace_id].append(
            {
                "metric": name,
                "unit": unit,
                "seriesKey": key,
                "spanId": span_id,
                "value": value,
                "timeUnixNano": time_ns,
                "pointTimeUnixNano": point_ns,
            }
        )
    return {t: (counts.get(t, 0), found.get(t, [])) for t in trace_ids}


# Events


def _events(tenant_id: TenantId, trace_ids: list[str]) -> dict[str, tuple[int, list[dict]]]:
    """Each trace's count of events that named it, and the newest of them."""
    stored = CorrelatedEvent.objects.filter(tenant_id=tenant_id, trace_id__one_of=set(trace_ids))
    counts = _counts(stored)
    found: dict[str, list[dict]] = defaultdict(list)
    newest = _first_per_trace(
        stored.filter(trace_id__one_of=set(counts)),
        order=("-occurred_at", "-event_id"),
        limit=MAX_EVENTS,
    ).values_list("trace_id", "event_id", "type", "occurred_at", "source", "signal")
    for trace_id, event_id, type_, occurred_at, source, signal in newest if counts else ():
        entry = {
            "eventId": str(event_id),
            "type": type_,
            "occurredAt": occurred_at,
            "source": source,
        }
        if signal:
            entry["signal"] = signal
        found[trace_id].append(entry)
    return {t: (counts.get(t, 0), found.get(t, [])) for t in trace_ids}
