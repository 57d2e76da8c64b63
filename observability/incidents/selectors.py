"""Reads of the incidents domain; every one is scoped to a tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from core.models import Tenant
from observability.incidents import store
from observability.incidents.models import (
    Incident,
    IncidentTimelineEntry,
    IncidentTrace,
    IncidentTrigger,
)

MAX_TRIGGERS = 500  # on an incident's page and in its API detail, the first ones
MAX_TIMELINE = 500  # the newest entries


def incidents(
    *,
    tenant: Tenant,
    status: str = "",
    severity: str = "",
    service: str = "",
    since: datetime | None = None,
) -> QuerySet[Incident]:
    """The tenant's incidents, with their trigger counts; `since` keeps those opened since
    then, `service` those with a trigger on that service."""
    found = counted(Incident.objects.filter(tenant=tenant))
    if status:
        found = found.filter(status=status)
    if severity:
        found = found.filter(severity=severity)
    if service:
        # Through the triggers: a JSON containment test on `services` is PostgreSQL's only.
        on_service = IncidentTrigger.objects.filter(incident=OuterRef("pk"), service=service)
        found = found.filter(Exists(on_service))
    if since is not None:
        found = found.filter(opened_at__gte=since)
    return found


def counted(found: QuerySet[Incident]) -> QuerySet[Incident]:
    """With each incident's trigger counts: `trigger_count`, `active_count`."""
    return found.annotate(
        trigger_count=Count("triggers"),
        active_count=Count("triggers", filter=Q(triggers__state=IncidentTrigger.State.ACTIVE)),
    )


def incident(*, tenant: Tenant, incident_id: str) -> Incident | None:
    """One of the tenant's incidents by its id (a UUID) or its number (42 or #42)."""
    found = incidents(tenant=tenant)
    number = incident_id.strip().removeprefix("#")
    if number.isascii() and number.isdigit():
        return found.filter(number=int(number)).first() if len(number) < 10 else None
    try:
        return found.filter(pk=uuid.UUID(incident_id)).first()
    except ValueError:
        return None


def triggers(incident: Incident) -> QuerySet[IncidentTrigger]:
    return IncidentTrigger.objects.filter(tenant_id=incident.tenant_id, incident=incident).order_by(
        "first_at", "id"
    )


def timeline(incident: Incident, *, limit: int = MAX_TIMELINE) -> list[IncidentTimelineEntry]:
    """The newest `limit` entries, oldest first."""
    newest = IncidentTimelineEntry.objects.filter(incident=incident).order_by("-at", "-id")
    return list(reversed(newest[:limit]))


@dataclass(frozen=True)
class Lineage:
    """A trace behind the incident, with its figures as the correlation has them now."""

    trace_id: str
    trigger_key: str
    linked_at: datetime
    root_service: str
    root_name: str
    span_count: int
    error_count: int
    log_count: int


def lineage(incident: Incident) -> list[Lineage]:
    linked = list(
        IncidentTrace.objects.filter(tenant_id=incident.tenant_id, incident=incident).order_by(
            "linked_at", "id"
        )
    )
    now = store.trace_figures(incident.tenant_id, {t.trace_id for t in linked}) if linked else {}
    found = []
    for link in linked:
        figures = now.get(link.trace_id) or {
            "root_service": link.root_service,
            "root_name": link.root_name,
            "span_count": link.span_count,
            "error_count": link.error_count,
            "log_count": link.log_count,
        }
        found.append(Lineage(link.trace_id, link.trigger_key, link.linked_at, **figures))
    return found
