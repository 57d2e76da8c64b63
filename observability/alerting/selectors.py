"""Reads of the alerting domain for the API and the admin. Every one names the tenant, so
another tenant's rule, instance, silence or SLO is simply not found."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet

from core.models import Tenant
from observability.alerting.models import (
    AlertInstance,
    AlertRule,
    AlertRuleRevision,
    AlertStateChange,
    Silence,
    Slo,
)
from observability.alerting.slo import SliWindow
from observability.alerting.slo import Slo as SloSpec
from observability.alerting.windows import newest_aggregated, sli_windows

MINUTE = timedelta(minutes=1)
# The most instances a silence preview lists.
MAX_MATCHED = 500


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError):
        return None


def rules(*, tenant: Tenant, enabled: bool | None = None, health: str = "") -> QuerySet[AlertRule]:
    found = AlertRule.objects.filter(tenant=tenant).annotate(
        firing_count=Count("instances", filter=Q(instances__state_name="firing"))
    )
    if enabled is not None:
        found = found.filter(enabled=enabled)
    if health:
        found = found.filter(health=health)
    return found


def rule(*, tenant: Tenant, rule_id: str) -> AlertRule | None:
    pk = _uuid(rule_id)
    return None if pk is None else rules(tenant=tenant).filter(pk=pk).first()


def revisions(rule: AlertRule) -> QuerySet[AlertRuleRevision]:
    return AlertRuleRevision.objects.filter(tenant_id=rule.tenant_id, rule=rule)


def instances(
    *,
    tenant: Tenant,
    rule_id: str = "",
    state: str = "",
    severity: str = "",
    service: str = "",
    silenced: bool | None = None,
) -> QuerySet[AlertInstance]:
    found = AlertInstance.objects.filter(tenant_id=tenant.pk).select_related("rule")
    if rule_id:
        pk = _uuid(rule_id)
        found = found.filter(rule_id=pk) if pk else found.none()
    if state:
        found = found.filter(state_name=state)
    if severity:
        found = found.filter(severity=severity)
    if service:
        found = found.filter(**{"labels__service.name": service})
    if silenced is not None:
        found = found.filter(silenced=silenced)
    return found


def changes(
    *, tenant: Tenant, rule_id: str = "", instance_key: str = "", since: datetime | None = None
) -> QuerySet[AlertStateChange]:
    found = AlertStateChange.objects.filter(tenant_id=tenant.pk).select_related("rule")
    if rule_id:
        pk = _uuid(rule_id)
        found = found.filter(rule_id=pk) if pk else found.none()
    if instance_key:
        found = found.filter(instance_key=instance_key)
    if since is not None:
        found = found.filter(window_end__gte=since)
    return found


def silences(*, tenant: Tenant, state: str = "", now: datetime) -> QuerySet[Silence]:
    found = Silence.objects.filter(tenant=tenant)
    if state == "active":
        found = found.filter(starts_at__lte=now, ends_at__gt=now)
    elif state == "pending":
        found = found.filter(starts_at__gt=now)
    elif state == "expired":
        found = found.filter(ends_at__lte=now)
    return found


def silence(*, tenant: Tenant, silence_id: str) -> Silence | None:
    pk = _uuid(silence_id)
    return None if pk is None else Silence.objects.filter(tenant=tenant, pk=pk).first()


def slos(*, tenant: Tenant, service: str = "", status: str = "") -> QuerySet[Slo]:
    found = Slo.objects.filter(tenant=tenant)
    if service:
        found = found.filter(service=service)
    if status:
        found = found.filter(status=status)
    return found


def slo(*, tenant: Tenant, slo_id: str) -> Slo | None:
    pk = _uuid(slo_id)
    return None if pk is None else Slo.objects.filter(tenant=tenant, pk=pk).first()


def slo_windows(
    objective: Slo, spec: SloSpec, *, now: datetime, span: timedelta = timedelta(0)
) -> tuple[datetime, list[SliWindow]]:
    """The instant an SLO is read at (the end of the newest minute the aggregation completed
    for its tenant; `now`, to the minute, when none) and its stored SLI windows for a status
    at every instant of the `span` before it (slo.status over them)."""
    now = now.replace(second=0, microsecond=0)
    newest = newest_aggregated(objective.tenant_id, "1m", now - MINUTE)
    at = newest + MINUTE if newest is not None else now
    return at, sli_windows(objective.tenant_id, spec, at - span, at)
