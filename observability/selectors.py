"""Reads of the observability app; every one is scoped to a tenant (filter_logs filters what
its caller scoped)."""

from __future__ import annotations

import json
import re
from datetime import datetime

from django.db import connection
from django.db.models import Func, QuerySet, TextField

from core.models import Tenant
from core.tracecontext import is_trace_id
from observability.models import (
    LogRecord,
    MetricSeries,
    Span,
    TelemetryCorrelation,
    TraceRecord,
)
from observability.vocabulary import ERROR_SEVERITY, SEVERITY_NAMES


def traces(
    *, tenant: Tenant, service: str = "", status: str = "", since: datetime | None = None
) -> QuerySet[TraceRecord]:
    found = TraceRecord.objects.filter(tenant=tenant)
    if service:
        # Any span of the trace, not just its root: a trace "touches" every service it crossed,
        # which its record's services list holds (no scan of the spans). SQLite has no JSON
        # containment: there the list's text is searched for the quoted name.
        if connection.features.supports_json_field_contains:
            found = found.filter(services__contains=[service])
        else:
            found = found.filter(services__icontains=json.dumps(service))
    if status:
        found = found.filter(status=status)
    if since:
        found = found.filter(start_ns__gte=_unix_ns(since))
    return found


def _unix_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, within the int64 that spans are stored in (years 1677 to
    2262): a time beyond that range is as good as its end, and the database refuses more."""
    return max(-(2**63), min(2**63 - 1, int(moment.timestamp() * 1e9)))


def trace(*, tenant: Tenant, trace_id: str) -> TraceRecord | None:
    """The tenant's trace; None for an id that is not one (nothing else reaches the query:
    a NUL, say, which PostgreSQL refuses)."""
    if not is_trace_id(trace_id):
        return None
    return TraceRecord.objects.filter(tenant=tenant, trace_id=trace_id.lower()).first()


def spans_of(record: TraceRecord) -> QuerySet[Span]:
    return Span.objects.filter(tenant_id=record.tenant_id, trace_id=record.trace_id).order_by(
        "start_ns", "span_id"
    )


def correlation_of(record: TraceRecord) -> TelemetryCorrelation | None:
    """The trace's TelemetryCorrelation snapshot, None until TelemetryCorrelationWorker has
    correlated it. By the record's tenant as well as its trace id: another tenant may have a
    trace with the same id, and its snapshot is not this one's."""
    return TelemetryCorrelation.objects.filter(
        tenant_id=record.tenant_id, trace_id=record.trace_id
    ).first()


def metric_series(
    *, tenant: Tenant, name: str = "", window: str = "1m", since: datetime | None = None
) -> QuerySet[MetricSeries]:
    found = MetricSeries.objects.filter(tenant=tenant, window=window)
    if name:
        found = found.filter(name=name)
    if since:
        found = found.filter(window_start__gte=since)
    return found


def logs(
    *,
    tenant: Tenant,
    trace_id: str = "",
    service: str = "",
    severity: int = 0,
    since: datetime | None = None,
    q: str = "",
) -> QuerySet[LogRecord]:
    """The tenant's log records that pass the filters (see filter_logs)."""
    return filter_logs(
        LogRecord.objects.filter(tenant=tenant),
        trace_id=trace_id,
        service=service,
        severity=severity,
        since=since,
        q=q,
    )


def filter_logs(
    found: QuerySet[LogRecord],
    *,
    trace_id: str = "",
    service: str = "",
    severity: int = 0,
    since: datetime | None = None,
    q: str = "",
) -> QuerySet[LogRecord]:
    """Log records of `found` (the API's: one tenant's; the admin's: every tenant's) by trace,
    by service (resource service.name, exactly), from a minimum SeverityNumber on (a record
    without one, 0, passes no minimum), with a time at or after `since`, and whose body holds
    `q` in any case. Newest first is the pager's order, (time_ns, id) descending.

    `q` has no index: bodies are checked one by one, so a search reads the records that the
    other filters and `since` leave (README, "Sending telemetry", has the figures)."""
    if trace_id:
        found = found.filter(trace_id=trace_id.lower())
    if service:
        found = found.filter(service=service)
    if severity:
        found = found.filter(severity_number__gte=severity)
    if severity > ERROR_SEVERITY:
        # The errors' partial index (log_errors) by its own condition: SQLite uses a partial
        # index only when the query repeats its WHERE term (PostgreSQL sees that >= 21 implies
        # >= 17). FATAL among a million records: 796 ms without the term, 27 ms with it.
        found = found.filter(severity_number__gte=ERROR_SEVERITY)
    if since:
        found = found.filter(time_ns__gte=_unix_ns(since))
    if q:
        found = found.alias(body_text=BodyText("body")).filter(body_text__icontains=q)
    return found


class BodyText(Func):
    """A log record's body as the text to search: a string body as it is (unescaped, unlike
    its JSON), any other value as its JSON text."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(%(expressions)s #>> '{}')", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="json_extract(%(expressions)s, '$')", **extra
        )


_SEVERITY_NUMBER = re.compile(r"[0-9]{1,2}")


def severity_floor(text: str) -> int:
    """The minimum SeverityNumber that `text` names: a severity's name in any case (WARN,
    error, FATAL2) or a number from 1 to 24. ValueError says what is accepted."""
    value = text.strip().upper()
    if _SEVERITY_NUMBER.fullmatch(value) and 1 <= int(value) <= max(SEVERITY_NAMES.values()):
        return int(value)
    if value in SEVERITY_NAMES:
        return SEVERITY_NAMES[value]
    raise ValueError(
        f"{text!r} is not a severity: a name (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, or one "
        "of their finer levels such as ERROR2) or a SeverityNumber from 1 to 24."
    )
