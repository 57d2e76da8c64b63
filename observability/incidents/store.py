"""Incidents to and from the database, in bulk, for the worker's handler and the operators'
actions: load the working set a decision needs (locked), write what it changed, publish its
transitions. Every query is filtered by the tenant whose event or request is handled.

Concurrency. Two consumers may handle triggers of one group key at once, and each may find no
open incident for it. The partial unique index one_open_incident_per_group_key refuses the
second; so that the second joins the first's incident rather than fail, each handler first
takes a transaction-level advisory lock per (tenant, group key) it will touch, sorted (so two
cannot deadlock), on PostgreSQL: the second waits for the first to commit and then loads the
incident the first opened. The incidents themselves are loaded FOR UPDATE, so an operator's
action and a handler never write one from a stale read. SQLite runs one writing transaction at
a time already. Should the index still refuse a row, the batch fails with a TransientError and
its retry joins the incident that won.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q

from core import bulk, services
from core.envelope import Envelope, TenantId
from core.models import Tenant
from core.runtime.errors import TenantMismatch, TransientError
from observability.incidents import decisions
from observability.incidents.models import (
    OPEN_STATUSES,
    Incident,
    IncidentCounter,
    IncidentTimelineEntry,
    IncidentTrace,
    IncidentTrigger,
    Status,
)
from observability.models import TelemetryCorrelation, TraceRecord

MAX_EVENT_TRIGGER_KEYS = 100  # of an incident, in IncidentOpened / IncidentResolved
SOURCE = "incidents"


# --- Locks -----------------------------------------------------------------------------------


def lock_groups(tenant_id: TenantId, group_keys: Iterable[str]) -> None:
    """Serialise the handlers of one (tenant, group key) on PostgreSQL (see the module
    docstring), in one order."""
    if connection.vendor != "postgresql":
        return
    keys = sorted({_lock_key(tenant_id, key) for key in group_keys})
    if not keys:
        return
    with connection.cursor() as cursor:
        # unnest yields the array in its order, and each row takes its lock as it is scanned.
        cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])


def _lock_key(tenant_id: TenantId, group_key: str) -> int:
    digest = hashlib.blake2b(f"incident:{tenant_id}:{group_key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


# --- Loading ---------------------------------------------------------------------------------


def load_book(tenant_id: TenantId, signals: list[decisions.Signal]) -> decisions.Book:
    """What grouping needs for these signals of one tenant (decisions.Book), locked."""
    keys = {s.trigger_key for s in signals}
    groups = {s.group_key for s in signals}
    traces = {t for s in signals for t in s.trace_ids}
    lock_groups(tenant_id, groups)
    mine = IncidentTrigger.objects.filter(tenant_id=tenant_id)
    open_statuses = set(OPEN_STATUSES)
    named = mine.filter(trigger_key__one_of=keys)
    holding = named.exclude(incident__status=Status.CLOSED)
    # Triggers of these keys linked into another key's open incident by shared traces (those
    # of an incident's own key are found by the incident's).
    joined = mine.filter(
        group_key__one_of=groups, joined_by="traces", incident__status__one_of=open_statuses
    )
    of_groups = Incident.objects.filter(tenant_id=tenant_id, group_key__one_of=groups).exclude(
        status=Status.CLOSED
    )
    # One UNION of index lookups rather than one scan of the tenant's incidents testing each
    # against every source (an OR of subqueries), whose cost grows with the tenant's history.
    wanted = of_groups.values_list("id").union(
        holding.values_list("incident_id"), joined.values_list("incident_id")
    )
    if traces:
        sharing = IncidentTrace.objects.filter(
            tenant_id=tenant_id, trace_id__one_of=traces, incident__status__one_of=open_statuses
        )
        wanted = wanted.union(sharing.values_list("incident_id"))
    ids = {incident_id for (incident_id,) in wanted}
    rows = Incident.objects.filter(tenant_id=tenant_id, id__one_of=ids)
    incidents = load_incidents(
        rows, tenant_id=tenant_id, trigger_keys=keys, linked_groups=groups, trace_ids=traces
    )
    closed = (
        named.filter(incident__status=Status.CLOSED)
        .values("trigger_key")
        .annotate(seen=Max("last_event_at"))
        .order_by()
    )
    return decisions.Book(
        incidents={i.id: i for i in incidents},
        closed_seen={row["trigger_key"]: row["seen"] for row in closed},
    )


def load_incidents(
    rows: Any,
    *,
    tenant_id: TenantId,
    trigger_keys: Collection[str] = (),
    linked_groups: Collection[str] = (),
    trace_ids: Collection[str] = (),
) -> list[decisions.Incident]:
    """Incidents (a queryset of the tenant's) as decisions.Incident, locked, with the triggers
    of `trigger_keys` and those of `linked_groups` linked by traces, their other active
    triggers summed up, and of their lineage the `trace_ids` and a count."""
    found = []
    for row in rows.select_for_update().order_by("id").values("tenant_id", *_INCIDENT_FIELDS):
        if str(row.pop("tenant_id")) != str(tenant_id):  # the tenant guard
            raise TenantMismatch(f"incident {row['id']} is not tenant {tenant_id}'s")
        found.append(_incident(row))
    if not found:
        return []
    by_id = {i.id: i for i in found}
    triggers = IncidentTrigger.objects.filter(incident_id__one_of=set(by_id))
    wanted = Q()
    if trigger_keys:
        wanted |= Q(trigger_key__one_of=set(trigger_keys))
    if linked_groups:
        wanted |= Q(group_key__one_of=set(linked_groups), joined_by="traces")
    named = triggers.filter(wanted) if wanted else None
    for row in named.values("incident_id", *_TRIGGER_FIELDS) if named is not None else ():
        trigger = _trigger(row)
        by_id[row["incident_id"]].triggers[trigger.key] = trigger
    # The other active ones, for the incident's severity and window, summed up: an incident
    # of a storm has thousands, and a batch names few of them.
    others = triggers.filter(state=IncidentTrigger.State.ACTIVE)
    if named is not None:
        others = others.exclude(wanted)
    critical = Count("id", filter=Q(severity=decisions.CRITICAL))
    for row in (
        others.values("incident_id")
        .annotate(n=Count("id"), critical=critical, last=Max("last_event_at"))
        .order_by()
    ):
        by_id[row["incident_id"]].others = decisions.OtherActive(
            count=row["n"],
            severity=decisions.CRITICAL if row["critical"] else decisions.WARNING,
            last_event_at=row["last"],
        )
    lineage = IncidentTrace.objects.filter(incident_id__one_of=set(by_id))
    counts = lineage.values("incident_id").annotate(n=Count("id")).order_by()
    for row in counts:
        by_id[row["incident_id"]].trace_count = row["n"]
    if trace_ids:
        shared = lineage.filter(trace_id__one_of=set(trace_ids)).values_list(
            "incident_id", "trace_id"
        )
        for incident_id, trace_id in shared:
            by_id[incident_id].trace_ids.add(trace_id)
    return found


_INCIDENT_FIELDS = [
    "id", "number", "title", "status", "severity", "group_key", "started_at", "opened_at",
    "last_trigger_at", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by",
    "closed_at", "services", "reopened",
]  # fmt: skip
_TRIGGER_FIELDS = [
    "id", "trigger_key", "group_key", "kind", "name", "service", "state", "severity",
    "joined_by", "first_event_id", "last_event_id", "first_at", "last_event_at", "resolved_at",
    "fired", "reason", "data",
]  # fmt: skip


def _incident(row: dict[str, Any]) -> decisions.Incident:
    return decisions.Incident(**row)


def _trigger(row: dict[str, Any]) -> decisions.Trigger:
    fields = {k: v for k, v in row.items() if k not in ("id", "trigger_key", "incident_id")}
    return decisions.Trigger(pk=row["id"], key=row["trigger_key"], **fields)


def sweep_candidates(tenant_id: TenantId, now: datetime, windows: decisions.Windows) -> Any:
    """The tenant's incidents the sweep at `now` may change: open ones quiet for the group
    window with no active trigger heard from within the resolve timeout, and resolved ones
    past the close delay. decisions.sweep decides on each."""
    spoke = IncidentTrigger.objects.filter(
        incident_id=OuterRef("id"),
        state=IncidentTrigger.State.ACTIVE,
        last_event_at__gt=now - windows.resolve_timeout,
    )
    quiet = Q(status__in=OPEN_STATUSES, last_trigger_at__lte=now - windows.group) & ~Exists(spoke)
    done = Q(status=Status.RESOLVED, resolved_at__lte=now - windows.close_after)
    return Incident.objects.filter(Q(tenant_id=tenant_id) & (quiet | done))


# --- Writing ---------------------------------------------------------------------------------


def save(
    tenant_id: TenantId,
    incidents: Iterable[decisions.Incident],
    outcome: decisions.Outcome,
    *,
    now: datetime,
) -> None:
    """Write what a decision changed: new incidents (numbered here), changed ones, their
    triggers, timeline entries and lineage, in a few statements."""
    incidents = list(incidents)
    new = sorted((i for i in incidents if i.new), key=lambda i: (i.opened_at, str(i.id)))
    _number(tenant_id, new)
    try:
        bulk.insert_rows(
            Incident, INCIDENT_COLUMNS, [_incident_row(tenant_id, i, now) for i in new]
        )
    except IntegrityError as exc:
        raise TransientError(
            "another consumer opened an incident for one of these group keys at the same "
            "moment; on retry the triggers join it"
        ) from exc
    changed = [i for i in incidents if i.changed and not i.new]
    bulk.update_rows(
        Incident,
        INCIDENT_CHANGES,
        [(i.id, *_incident_row(tenant_id, i, now)[_CHANGES_FROM:]) for i in changed],
    )
    triggers = [(i, t) for i in incidents for t in i.triggers.values() if t.changed]
    bulk.insert_rows(
        IncidentTrigger,
        TRIGGER_COLUMNS,
        [_trigger_row(tenant_id, i, t) for i, t in triggers if t.pk is None],
    )
    bulk.update_rows(
        IncidentTrigger,
        TRIGGER_CHANGES,
        [_trigger_changes(t) for _, t in triggers if t.pk is not None],
    )
    _resolve_others(tenant_id, incidents)
    bulk.insert_rows(
        IncidentTimelineEntry,
        TIMELINE_COLUMNS,
        [
            (e.incident_id, e.at, e.kind, e.actor[:200], e.message, json.dumps(e.data))
            for e in outcome.entries
        ],
    )
    _link(tenant_id, outcome.links)
    for incident in incidents:
        incident.new = incident.changed = False
        for trigger in incident.triggers.values():
            trigger.changed = False


INCIDENT_COLUMNS = [
    "id", "tenant_id", "number", "group_key", "started_at", "opened_at", "title", "status",
    "severity", "last_trigger_at", "acknowledged_at", "acknowledged_by", "resolved_at",
    "resolved_by", "closed_at", "services", "reopened", "updated",
]  # fmt: skip
_CHANGES_FROM = INCIDENT_COLUMNS.index("title")  # the columns a change may touch: from here
INCIDENT_CHANGES = INCIDENT_COLUMNS[_CHANGES_FROM:]
TRIGGER_COLUMNS = [
    "incident_id", "tenant_id", "trigger_key", "group_key", "kind", "name", "service",
    "joined_by", "first_event_id", "first_at", "state", "severity", "last_event_id",
    "last_event_at", "resolved_at", "fired", "reason", "data",
]  # fmt: skip
TRIGGER_CHANGES = TRIGGER_COLUMNS[TRIGGER_COLUMNS.index("state") :]
TIMELINE_COLUMNS = ["incident_id", "at", "kind", "actor", "message", "data"]
TRACE_COLUMNS = [
    "incident_id", "tenant_id", "trace_id", "trigger_key", "linked_at", "root_service",
    "root_name", "span_count", "error_count", "log_count",
]  # fmt: skip


def _incident_row(tenant_id: TenantId, i: decisions.Incident, now: datetime) -> bulk.Row:
    return (
        i.id, tenant_id, i.number, i.group_key, i.started_at, i.opened_at, i.title, i.status,
        i.severity, i.last_trigger_at, i.acknowledged_at, i.acknowledged_by, i.resolved_at,
        i.resolved_by, i.closed_at, json.dumps(i.services), i.reopened, now,
    )  # fmt: skip


def _trigger_row(tenant_id: TenantId, i: decisions.Incident, t: decisions.Trigger) -> bulk.Row:
    return (
        i.id, tenant_id, t.key, t.group_key, t.kind, t.name, t.service, t.joined_by,
        t.first_event_id, t.first_at, *_trigger_changes(t)[1:],
    )  # fmt: skip


def _trigger_changes(t: decisions.Trigger) -> bulk.Row:
    return (
        t.pk, t.state, t.severity, t.last_event_id, t.last_event_at, t.resolved_at, t.fired,
        t.reason, json.dumps(t.data),
    )  # fmt: skip


def _resolve_others(tenant_id: TenantId, incidents: list[decisions.Incident]) -> None:
    """The active triggers an incident resolved without loading them (OtherActive): those
    still active that the batch did not name."""
    for incident in incidents:
        at = incident.others.resolved_at
        if at is None or incident.new:
            continue
        IncidentTrigger.objects.filter(
            tenant_id=tenant_id, incident_id=incident.id, state=IncidentTrigger.State.ACTIVE
        ).exclude(trigger_key__one_of=set(incident.triggers)).update(
            state=IncidentTrigger.State.RESOLVED, resolved_at=at
        )
        incident.others = decisions.OtherActive()


def _number(tenant_id: TenantId, new: list[decisions.Incident]) -> None:
    """Give new incidents the tenant's next numbers, in the order they opened: one upsert of
    the tenant's counter, whose row lock makes concurrent consumers take turns."""
    if not new:
        return
    table = IncidentCounter._meta.db_table
    tenant = Tenant._meta.pk
    assert tenant is not None
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, last) VALUES (%s, %s) ON CONFLICT (tenant_id) "
            f"DO UPDATE SET last = {table}.last + excluded.last RETURNING last",
            [tenant.get_db_prep_value(tenant_id, connection), len(new)],
        )
        (last,) = cursor.fetchone()
    for number, incident in enumerate(new, start=last - len(new) + 1):
        incident.number = number


def _link(tenant_id: TenantId, links: list[decisions.Link]) -> None:
    """Link traces to incidents with their figures as the correlation has them now (or the
    TraceRecord, before the correlation worker has been by)."""
    if not links:
        return
    figures = trace_figures(tenant_id, {link.trace_id for link in links})
    empty = {"root_service": "", "root_name": "", "span_count": 0, "error_count": 0,
             "log_count": 0}  # fmt: skip
    rows = []
    for link in links:
        f = figures.get(link.trace_id, empty)
        rows.append(
            (
                link.incident_id, tenant_id, link.trace_id, link.trigger_key, link.at,
                f["root_service"], f["root_name"], f["span_count"], f["error_count"],
                f["log_count"],
            )
        )  # fmt: skip
    # The decision links only traces its incident does not hold, so COPY (twice as fast as an
    # INSERT of the storm's 500 links a batch); should a consumer linking a trace by shared
    # traces, whose group key this one has not locked, have stored one meanwhile, the rows go
    # again skipping those stored.
    try:
        with transaction.atomic():
            bulk.insert_rows(IncidentTrace, TRACE_COLUMNS, rows)
    except IntegrityError:
        bulk.insert_new(IncidentTrace, TRACE_COLUMNS, rows)


def trace_figures(tenant_id: TenantId, trace_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Per trace: root service and span, spans, errors and logs, from TelemetryCorrelation
    where the worker has correlated it, else from the TraceRecord (no logs then)."""
    found: dict[str, dict[str, Any]] = {}
    correlated = TelemetryCorrelation.objects.filter(
        tenant_id=tenant_id, trace_id__one_of=trace_ids
    ).values_list("trace_id", "trace", "log_count")
    for trace_id, trace, log_count in correlated:
        if trace is None:  # correlated from logs before any span arrived
            found[trace_id] = {"root_service": "", "root_name": "", "span_count": 0,
                               "error_count": 0, "log_count": log_count}  # fmt: skip
            continue
        found[trace_id] = {
            "root_service": str(trace.get("rootService") or "")[:200],
            "root_name": str(trace.get("rootName") or "")[:500],
            "span_count": int(trace.get("spanCount") or 0),
            "error_count": int(trace.get("errorCount") or 0),
            "log_count": log_count,
        }
    missing = {t for t in trace_ids if t not in found or not found[t]["span_count"]}
    if missing:
        records = TraceRecord.objects.filter(
            tenant_id=tenant_id, trace_id__one_of=missing
        ).values_list("trace_id", "root_service", "root_name", "span_count", "error_count")
        for trace_id, service, name, spans, errors in records:
            logs = found.get(trace_id, {}).get("log_count", 0)
            found[trace_id] = {"root_service": service, "root_name": name[:500],
                               "span_count": spans, "error_count": errors,
                               "log_count": logs}  # fmt: skip
    return found


# --- Publishing ------------------------------------------------------------------------------


def publish(tenant_id: TenantId, transitions: list[decisions.Transition]) -> list[Envelope]:
    """IncidentOpened and IncidentResolved, once per transition: their event ids derive from
    (incident, transition, count), so publishing one again adds nothing. The incident's
    trigger keys and traces are read as stored now, after the writes."""
    if not transitions:
        return []
    ids = {t.incident_id for t in transitions}
    numbers = dict(Incident.objects.filter(id__one_of=ids).values_list("id", "number"))
    keys: dict[uuid.UUID, list[str]] = defaultdict(list)
    for incident_id, key in (
        IncidentTrigger.objects.filter(incident_id__one_of=ids)
        .order_by("first_at", "id")
        .values_list("incident_id", "trigger_key")
    ):
        if len(keys[incident_id]) < MAX_EVENT_TRIGGER_KEYS:
            keys[incident_id].append(key)
    traces: dict[uuid.UUID, list[str]] = defaultdict(list)
    for incident_id, trace_id in (
        IncidentTrace.objects.filter(incident_id__one_of=ids)
        .order_by("linked_at", "id")
        .values_list("incident_id", "trace_id")
    ):
        traces[incident_id].append(trace_id)
    envelopes = [
        services.build_envelope(
            tenant_id=tenant_id,
            type=t.event_type,
            data=event_data(t, numbers[t.incident_id], keys[t.incident_id], traces[t.incident_id]),
            event_id=t.event_id,
            source=SOURCE,
            source_id=f"{t.incident_id}:{t.name}:{t.count}",
            correlation_id=str(t.incident_id),
            occurred_at=t.at,
        )
        for t in transitions
    ]
    services.publish_envelopes(envelopes)
    return envelopes


def event_data(
    transition: decisions.Transition, number: int, trigger_keys: list[str], trace_ids: list[str]
) -> dict[str, Any]:
    """The contract's IncidentOpened / IncidentResolved data."""
    s = transition.snapshot
    return {
        "incidentId": str(transition.incident_id),
        "number": number,
        "title": s["title"],
        "severity": s["severity"],
        "status": s["status"],
        "groupKey": s["groupKey"],
        "services": s["services"],
        "triggerKeys": trigger_keys,
        "traceIds": trace_ids,
        "openedAt": s["openedAt"],
        "resolvedAt": s["resolvedAt"],
    }
