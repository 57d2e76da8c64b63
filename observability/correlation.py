"""TelemetryCorrelationWorker's handler: one TelemetryCorrelation snapshot per (tenant, traceId).

The worker subscribes to every public event (the wildcard). An event names traces through
`data["traceId"]` (a string) and/or `data["traceIds"]` (a list): TraceRecorded and
RuntimeSignalDetected today, incidents and feedback later. Anything else that is not a trace
id (not 32 hex digits, all zeros) is ignored; an event naming no trace is handled as a no-op,
before any query, so that the wildcard costs the runtime almost nothing for the rest.

For the traces an event names, the snapshot is recomputed from the stores, never patched from
the event, so that it is the same whichever event triggered it and however often:

- trace: the TraceRecord summary (root, services, span and error counts, status, start and
  end) and up to MAX_ERROR_SPANS of its error spans; null while no span is stored.
- logs: LogRecord rows with that trace_id: their count, a count per OTLP severity range
  (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24, UNSPECIFIED 0),
  and the MAX_LOGS newest (time, severity, body clipped to MAX_BODY_CHARS, service, spanId).
- exemplars: MetricPoint exemplars whose traceId is the trace, newest MAX_EXEMPLARS, with
  their count. No index covers exemplars, so the search is bounded by time on the (tenant,
  time_ns) index: points from EXEMPLAR_LEAD before the trace started (clock skew between
  services) to EXEMPLAR_LAG after it ended (exporters report on an interval); with no
  TraceRecord yet, around the events that named the trace, by EXEMPLAR_LAG either side.
  PostgreSQL matches with jsonb containment (exemplars @> [{"traceId": ...}]); SQLite, which
  has no JSON containment, with LIKE on the JSON text; either way the exemplars are then
  picked from the points in Python by exact traceId.
- events: the platform events (core.models.Event) whose data names the trace: their count and
  the MAX_EVENTS newest (eventId, type, occurredAt, source, and `signal` when the data has
  one). `data.traceId` is an exact JSON key lookup; `data.traceIds` is jsonb containment on
  PostgreSQL and LIKE on the JSON text of the list (the id with its quotes) on SQLite, then
  checked exactly in Python.

Every query is filtered by the envelope's tenant, and rows loaded are checked with
envelope.ensure_tenant. Work is in bulk over all the traces an event names: one query per
store, grouping and window functions rather than a query per trace.

Upsert by (tenant, traceId), serialised per trace: the rows are inserted if missing
(INSERT ... ON CONFLICT DO NOTHING) and locked (SELECT ... FOR UPDATE, in traceId order)
before the stores are read, so two consumers correlating the same trace at once cannot write
a snapshot computed before the other's data was committed over a newer one. A snapshot equal
to the stored one is not written: redelivery and repeats change nothing, not even `updated`.

Left out: the events query has no index on data->>'traceId' in core.Event, so it scans the
tenant's events; at volume core should add an expression index on (tenant_id,
(data->>'traceId')) (and a GIN index for traceIds / MetricPoint.exemplars if those grow).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Q, TextField, Value, When, Window
from django.db.models.fields.json import KT, KeyTransform
from django.db.models.functions import Cast, RowNumber
from django.utils import timezone

from core.envelope import Envelope
from core.models import Event
from observability.models import LogRecord, MetricPoint, Span, TelemetryCorrelation, TraceRecord

MAX_ERROR_SPANS = 20
MAX_LOGS = 20
MAX_BODY_CHARS = 1000
MAX_EXEMPLARS = 50
MAX_EVENTS = 50
EXEMPLAR_LEAD_NS = 5 * 60 * 10**9
EXEMPLAR_LAG_NS = 60 * 60 * 10**9

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SEVERITIES = [  # OTLP SeverityNumber ranges
    (1, 4, "TRACE"),
    (5, 8, "DEBUG"),
    (9, 12, "INFO"),
    (13, 16, "WARN"),
    (17, 20, "ERROR"),
    (21, 24, "FATAL"),
]
_CONTENT = ["trace", "log_count", "logs", "exemplar_count", "exemplars", "event_count", "events"]


def correlate(envelope: Envelope) -> None:
    """TelemetryCorrelationWorker's handler (see the module docstring)."""
    trace_ids = trace_ids_of(envelope.data)
    if not trace_ids:
        return
    with transaction.atomic(savepoint=False):
        rows = _lock(envelope, trace_ids)
        snapshots = snapshot(envelope.tenant_id, trace_ids)
        changed = []
        now = timezone.now()
        for trace_id, row in rows.items():
            content = snapshots[trace_id]
            if {name: getattr(row, name) for name in _CONTENT} == content:
                continue
            for name, value in content.items():
                setattr(row, name, value)
            row.updated = now
            changed.append(row)
        TelemetryCorrelation.objects.bulk_update(changed, [*_CONTENT, "updated"])


def trace_ids_of(data) -> list[str]:
    """The trace ids an event's data names, lowercased, valid ones only, sorted."""
    if not isinstance(data, dict):
        return []
    named = data.get("traceIds")
    candidates = list(named) if isinstance(named, list) else []
    candidates.append(data.get("traceId"))
    found = {
        c.lower()
        for c in candidates
        if isinstance(c, str) and _TRACE_ID.match(c.lower()) and set(c) != {"0"}
    }
    return sorted(found)


def _lock(envelope: Envelope, trace_ids: list[str]) -> dict[str, TelemetryCorrelation]:
    tenant_id = envelope.tenant_id
    TelemetryCorrelation.objects.bulk_create(
        [TelemetryCorrelation(tenant_id=tenant_id, trace_id=t) for t in trace_ids],
        ignore_conflicts=True,
    )
    rows = (
        TelemetryCorrelation.objects.select_for_update()
        .filter(tenant_id=tenant_id, trace_id__in=trace_ids)
        .order_by("trace_id")
    )
    locked = {}
    for row in rows:
        envelope.ensure_tenant(row.tenant_id)
        locked[row.trace_id] = row
    return locked


def snapshot(tenant_id, trace_ids: list[str]) -> dict[str, dict]:
    """The content of each trace's TelemetryCorrelation, as the stores have it now, in the
    shape it takes once stored as JSON (so that it compares equal to a stored row)."""
    traces = _traces(tenant_id, trace_ids)
    logs = _logs(tenant_id, trace_ids)
    events = _events(tenant_id, trace_ids)
    windows = {t: _window(traces.get(t), events[t]) for t in trace_ids}
    exemplars = _exemplars(tenant_id, windows)
    found = {}
    for t in trace_ids:
        found[t] = {
            "trace": traces.get(t),
            "log_count": logs[t]["count"],
            "logs": {"bySeverity": logs[t]["bySeverity"], "latest": logs[t]["latest"]},
            "exemplar_count": len(exemplars[t]),
            "exemplars": exemplars[t][:MAX_EXEMPLARS],
            "event_count": len(events[t]),
            "events": events[t][:MAX_EVENTS],
        }
    return _as_stored(found)


def _as_stored(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


# Traces


def _traces(tenant_id, trace_ids: list[str]) -> dict[str, dict]:
    records = TraceRecord.objects.filter(tenant_id=tenant_id, trace_id__in=trace_ids)
    found = {}
    for r in records:
        found[r.trace_id] = {
            "rootName": r.root_name,
            "rootService": r.root_service,
            "services": r.services,
            "spanCount": r.span_count,
            "errorCount": r.error_count,
            "status": r.status,
            "startTimeUnixNano": r.start_ns,
            "endTimeUnixNano": r.end_ns,
            "durationMs": r.duration_ms,
            "errorSpans": [],
        }
    errors = _first_per_trace(
        Span.objects.filter(tenant_id=tenant_id, trace_id__in=list(found), status_code=2),
        order=("start_ns", "span_id"),
        limit=MAX_ERROR_SPANS,
    ).values_list("trace_id", "span_id", "name", "service", "status_message")
    for trace_id, span_id, name, service, message in errors:
        found[trace_id]["errorSpans"].append(
            {"spanId": span_id, "name": name, "service": service, "statusMessage": message}
        )
    return found


def _first_per_trace(queryset, *, order: tuple[str, ...], limit: int):
    """The first `limit` rows of each trace in `order`: one query with a window function."""
    ranked = queryset.annotate(
        rank=Window(RowNumber(), partition_by=[F("trace_id")], order_by=list(order))
    )
    return ranked.filter(rank__lte=limit).order_by("trace_id", "rank")


# Logs


def _logs(tenant_id, trace_ids: list[str]) -> dict[str, dict]:
    found = {t: {"count": 0, "bySeverity": {}, "latest": []} for t in trace_ids}
    records = LogRecord.objects.filter(tenant_id=tenant_id, trace_id__in=trace_ids)
    level = Case(
        *[
            When(severity_number__gte=lo, severity_number__lte=hi, then=Value(name))
            for lo, hi, name in _SEVERITIES
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
    latest = _first_per_trace(
        records, order=("-time_ns", "-observed_ns", "record_key"), limit=MAX_LOGS
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
    for trace_id, time_ns, observed_ns, number, text, body, service, span_id in latest:
        found[trace_id]["latest"].append(
            {
                "timeUnixNano": time_ns or observed_ns,
                "severityNumber": number,
                "severityText": text,
                "severity": _severity(number),
                "body": body[:MAX_BODY_CHARS] if isinstance(body, str) else body,
                "service": service,
                "spanId": span_id,
            }
        )
    return found


def _severity(number: int) -> str:
    return next((name for lo, hi, name in _SEVERITIES if lo <= number <= hi), "UNSPECIFIED")


# Events


def _events(tenant_id, trace_ids: list[str]) -> dict[str, list[dict]]:
    """Every event naming each trace, newest first (by occurredAt, then eventId)."""
    wanted = set(trace_ids)
    named = Q(data__traceId__in=trace_ids)
    queryset = Event.objects.filter(tenant_id=tenant_id)
    if connection.features.supports_json_field_contains:
        for t in trace_ids:
            named |= Q(data__traceIds__contains=[t])
    else:
        queryset = queryset.annotate(listed=Cast(KeyTransform("traceIds", "data"), TextField()))
        for t in trace_ids:
            named |= Q(listed__contains=f'"{t}"')
    rows = queryset.filter(named).values_list(
        "id",
        "type",
        "occurred_at",
        "source",
        KT("data__traceId"),
        KeyTransform("traceIds", "data"),
        KT("data__signal"),
    )
    found = defaultdict(list)
    for event_id, type_, occurred_at, source, one, many, signal in rows:
        entry = {
            "eventId": str(event_id),
            "type": type_,
            "occurredAt": occurred_at,
            "source": source,
        }
        if signal:
            entry["signal"] = signal
        for t in _named(one, many) & wanted:
            found[t].append(entry)
    for entries in found.values():
        entries.sort(key=lambda e: (e["occurredAt"], e["eventId"]), reverse=True)
    return {t: found.get(t, []) for t in trace_ids}


def _named(one, many) -> set[str]:
    named = [one, *many] if isinstance(many, list) else [one]
    return {t.lower() for t in named if isinstance(t, str)}


# Exemplars


def _window(trace: dict | None, events: list[dict]) -> tuple[int, int] | None:
    """The time_ns range of the points that may hold the trace's exemplars."""
    if trace is not None:
        lo, hi = trace["startTimeUnixNano"], trace["endTimeUnixNano"]
        return lo - EXEMPLAR_LEAD_NS, hi + EXEMPLAR_LAG_NS
    if not events:
        return None
    times = [_ns(e["occurredAt"]) for e in events]
    return min(times) - EXEMPLAR_LAG_NS, max(times) + EXEMPLAR_LAG_NS


def _ns(at) -> int:
    return int(at.timestamp()) * 10**9 + at.microsecond * 1000


def _exemplars(tenant_id, windows: dict[str, tuple[int, int] | None]) -> dict[str, list[dict]]:
    """Every exemplar pointing at each trace, newest first."""
    found: dict[str, list[dict]] = {t: [] for t in windows}
    windows = {t: w for t, w in windows.items() if w is not None}
    if not windows:
        return found
    points = MetricPoint.objects.filter(tenant_id=tenant_id)
    contains = connection.features.supports_json_field_contains
    if not contains:
        points = points.annotate(text=Cast("exemplars", TextField()))
    named = Q()
    for t, (lo, hi) in windows.items():
        match = Q(exemplars__contains=[{"traceId": t}]) if contains else Q(text__contains=t)
        named |= Q(time_ns__gte=lo, time_ns__lte=hi) & match
    rows = points.filter(named).values_list("name", "unit", "series_key", "time_ns", "exemplars")
    for name, unit, series_key, time_ns, exemplars in rows:
        for exemplar in exemplars:
            t = str(exemplar.get("traceId", "")).lower()
            if t not in windows or not windows[t][0] <= time_ns <= windows[t][1]:
                continue
            found[t].append(
                {
                    "metric": name,
                    "unit": unit,
                    "seriesKey": series_key,
                    "spanId": exemplar.get("spanId", ""),
                    "value": exemplar.get("value"),
                    "timeUnixNano": int(exemplar.get("timeUnixNano") or time_ns),
                    "pointTimeUnixNano": time_ns,
                }
            )
    for exemplars in found.values():
        exemplars.sort(
            key=lambda e: (e["timeUnixNano"], e["seriesKey"], e["spanId"], e["pointTimeUnixNano"]),
            reverse=True,
        )
    return found
