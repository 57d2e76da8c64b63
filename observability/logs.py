"""OTLP log records into LogRecord rows, once each, in bulk. Strings are stored as
observability.traces.text has them (NUL as U+FFFD), bodies and attributes as any_value."""

from __future__ import annotations

import hashlib
import json

from core import bulk
from core.envelope import TenantId
from observability.models import LogRecord
from observability.traces import any_value, attributes, service_of, text

RECORD_COLUMNS = [
    "tenant_id", "record_key", "time_ns", "observed_ns", "severity_number", "severity_text",
    "body", "attributes", "resource", "service", "scope", "event_name", "trace_id", "span_id",
    "received_at",
]  # fmt: skip


def records_of(tenant_id: TenantId, request) -> list[LogRecord]:
    rows = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = text(scope_logs.scope.name)
            rows += [_record(tenant_id, r, resource, scope) for r in scope_logs.log_records]
    return rows


def _record(tenant_id: TenantId, record, resource: dict, scope: str) -> LogRecord:
    row = LogRecord(
        tenant_id=tenant_id,
        time_ns=record.time_unix_nano,
        observed_ns=record.observed_time_unix_nano,
        severity_number=record.severity_number,
        severity_text=text(record.severity_text[:32]),
        body=any_value(record.body) if record.HasField("body") else None,
        attributes=attributes(record.attributes),
        resource=resource,
        service=service_of(resource),
        scope=scope[:200],
        event_name=text(record.event_name[:200]),
        trace_id=record.trace_id.hex(),
        span_id=record.span_id.hex(),
    )
    row.record_key = _key(row, record)
    return row


def _key(row: LogRecord, record) -> str:
    """The same record sent again has the same key; two records differing in anything don't."""
    identity = [row.resource, row.scope, record.SerializeToString(deterministic=True).hex()]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def store(tenant_id: TenantId, request) -> set[str]:
    """Store the batch's records not stored yet; returns the traces the new ones name."""
    rows = list({r.record_key: r for r in records_of(tenant_id, request)}.values())
    stored = set(
        LogRecord.objects.filter(
            tenant_id=tenant_id, record_key__in=[r.record_key for r in rows]
        ).values_list("record_key", flat=True)
    )
    new = [r for r in rows if r.record_key not in stored]
    bulk.insert(LogRecord, new, columns=RECORD_COLUMNS)
    return {r.trace_id for r in new if r.trace_id}
