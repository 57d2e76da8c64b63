"""Writes of the alerting domain, shared by the API and the admin: rules (every save a
revision), silences and SLOs, each validated by the same pure functions whoever writes; and the
pruning of old state history.

A rule whose selection changes (its queries or its grouping), or that is disabled or deleted,
forgets its instances: they would no longer be evaluated. Those with an open alert publish
AlertResolved first, saying why, so that their incidents do not wait for a timeout; an SLO
disabled or deleted while rows fire publishes SloRecovered for each.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.models import Tenant
from core.services import build_envelope, publish_envelopes
from observability.alerting import setting, silences, slo, specs
from observability.alerting.models import (
    AlertInstance,
    AlertRule,
    AlertRuleRevision,
    AlertStateChange,
    Silence,
    Slo,
)
from observability.alerting.windows import histogram_bounds, metric_kinds

RETIRE_NAMESPACE = uuid.UUID("f1d6a0b2-7c3e-4d58-9a41-6e2b8c0d7f13")
SELECTION = ("query", "denominator", "groupBy")
PRUNE_CHUNK = 5000


class Refused(ValueError):
    """What the writer must fix, each problem by the spec path or field it concerns."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items()))
        self.problems = dict(problems)


def _refuse_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        found: dict[str, list[str]] = {}
        for name, message in problems:
            found.setdefault(name, []).append(message)
        raise Refused(found)


# Rules


def rule_problems(
    tenant: Tenant, spec: Any, group_key: str, *, rule_id: str = "draft"
) -> list[tuple[str, str]]:
    """Everything wrong with a rule's spec and group key, for this tenant's metrics: an unknown
    metric, a field that does not fit its kind, a threshold that cannot trigger first."""
    try:
        rule = specs.rule_of(rule_id, spec)
    except specs.SpecError as exc:
        return [(p.field, p.message) for p in exc.problems]
    metrics = metric_kinds(tenant.pk, specs.metrics_of(rule))
    found = [(p.field, p.message) for p in specs.rule_problems(rule_id, spec, metrics)]
    found += [("groupKey", m) for m in specs.group_key_problems(group_key, rule.group_by)]
    return found


def normalized(spec: Any) -> dict[str, Any]:
    """A valid spec with every field written out (the stored form)."""
    return specs.rule_spec(specs.rule_of("draft", spec))


@transaction.atomic
def create_rule(
    *,
    tenant: Tenant,
    name: str,
    spec: Any,
    description: str = "",
    enabled: bool = True,
    group_key: str = specs.DEFAULT_GROUP_KEY,
    actor: str = "",
) -> AlertRule:
    problems = rule_problems(tenant, spec, group_key)
    if AlertRule.objects.filter(tenant=tenant, name=name).exists():
        problems.append(("name", f"a rule named {name!r} exists already"))
    _refuse_if(problems)
    now = timezone.now()
    rule = AlertRule.objects.create(
        tenant=tenant,
        name=name,
        description=description,
        enabled=enabled,
        spec=normalized(spec),
        group_key=group_key,
        created=now,
        created_by=actor,
        updated=now,
        updated_by=actor,
    )
    _revision(rule, actor)
    return rule


@transaction.atomic
def update_rule(*, rule: AlertRule, actor: str = "", **changes: Any) -> AlertRule:
    """Change a rule (name, description, enabled, spec, group_key): a new revision."""
    locked = AlertRule.objects.select_for_update().get(pk=rule.pk, tenant_id=rule.tenant_id)
    spec = changes.get("spec", locked.spec)
    group_key = changes.get("group_key", locked.group_key)
    problems = rule_problems(locked.tenant, spec, group_key, rule_id=str(locked.pk))
    name = changes.get("name", locked.name)
    if (
        name != locked.name
        and AlertRule.objects.filter(tenant_id=locked.tenant_id, name=name).exists()
    ):
        problems.append(("name", f"a rule named {name!r} exists already"))
    _refuse_if(problems)
    spec = normalized(spec)
    selection_changed = any(spec.get(k) != locked.spec.get(k) for k in SELECTION)
    enabled = changes.get("enabled", locked.enabled)
    if selection_changed or not enabled:
        why = "the rule was disabled" if not enabled else "the rule's selection changed"
        retire_instances(locked, why)
    locked.name = name
    locked.description = changes.get("description", locked.description)
    locked.enabled = enabled
    locked.spec = spec
    locked.group_key = group_key
    locked.revision += 1
    locked.updated = timezone.now()
    locked.updated_by = actor
    if selection_changed:
        locked.last_window = None
    locked.save()
    _revision(locked, actor)
    return locked


@transaction.atomic
def delete_rule(*, rule: AlertRule) -> None:
    retire_instances(rule, "the rule was deleted")
    AlertRule.objects.filter(pk=rule.pk, tenant_id=rule.tenant_id).delete()


def _revision(rule: AlertRule, actor: str) -> None:
    AlertRuleRevision.objects.create(
        rule=rule,
        tenant_id=rule.tenant_id,
        revision=rule.revision,
        name=rule.name,
        description=rule.description,
        enabled=rule.enabled,
        spec=rule.spec,
        group_key=rule.group_key,
        created=rule.updated,
        created_by=actor,
    )


def retire_instances(rule: AlertRule, why: str) -> int:
    """Forget the rule's instances; those whose open alert the outside world heard of publish
    AlertResolved first. Returns how many were resolved."""
    from observability.alerting.handler import retirement_data

    instances = AlertInstance.objects.filter(tenant_id=rule.tenant_id, rule=rule)
    envelopes = []
    for instance in instances.exclude(notified=""):
        event_id = uuid.uuid5(
            RETIRE_NAMESPACE, f"{rule.pk}|{instance.instance_key}|{rule.revision}|{why}"
        )
        envelopes.append(
            build_envelope(
                tenant_id=rule.tenant_id,
                type="AlertResolved",
                data=retirement_data(rule, instance, why),
                source="alerting",
                source_id=str(event_id),
                event_id=event_id,
            )
        )
    publish_envelopes(envelopes)
    instances.delete()
    return len(envelopes)


# Silences


def silence_problems(
    matchers: Any, starts_at: datetime | None, ends_at: datetime | None, comment: str, author: str
) -> list[tuple[str, str]]:
    found = [(p.field, p.message) for p in silences.validate(matchers, starts_at, ends_at)]
    if not comment.strip():
        found.append(("comment", "say why: a silence without a reason is a mystery later"))
    if not author.strip():
        found.append(("createdBy", "say who silences"))
    return found


def create_silence(
    *,
    tenant: Tenant,
    matchers: Any,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
) -> Silence:
    _refuse_if(silence_problems(matchers, starts_at, ends_at, comment, created_by))
    return Silence.objects.create(
        tenant=tenant,
        matchers=[m.as_json() for m in silences.matchers_of(matchers)],
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
    )


@transaction.atomic
def update_silence(*, silence: Silence, **changes: Any) -> Silence:
    locked = Silence.objects.select_for_update().get(pk=silence.pk, tenant_id=silence.tenant_id)
    for name in ("matchers", "starts_at", "ends_at", "created_by", "comment"):
        if name in changes:
            setattr(locked, name, changes[name])
    _refuse_if(
        silence_problems(
            locked.matchers, locked.starts_at, locked.ends_at, locked.comment, locked.created_by
        )
    )
    locked.matchers = [m.as_json() for m in silences.matchers_of(locked.matchers)]
    locked.updated = timezone.now()
    locked.save()
    return locked


def delete_silence(*, silence: Silence) -> None:
    Silence.objects.filter(pk=silence.pk, tenant_id=silence.tenant_id).delete()


# SLOs


def slo_problems(tenant: Tenant, spec: Any) -> list[tuple[str, str]]:
    try:
        objective = specs.slo_of(spec)
    except specs.SpecError as exc:
        return [(p.field, p.message) for p in exc.problems]
    bounds = None
    if isinstance(objective.sli, slo.LatencySli):
        bounds = histogram_bounds(tenant.pk, objective.sli.histogram)
    found = [(p.field, p.message) for p in specs.slo_problems(spec, bounds)]
    kinds = metric_kinds(tenant.pk, specs.slo_metrics(objective))
    for metric in specs.slo_metrics(objective):
        if metric and metric not in kinds:
            found.append(("sli", f"no metric named {metric!r} has been received"))
    return found


@transaction.atomic
def create_slo(
    *, tenant: Tenant, name: str, spec: Any, enabled: bool = True, actor: str = ""
) -> Slo:
    problems = slo_problems(tenant, spec)
    if Slo.objects.filter(tenant=tenant, name=name).exists():
        problems.append(("name", f"an SLO named {name!r} exists already"))
    _refuse_if(problems)
    objective = specs.slo_of(spec)
    return Slo.objects.create(
        tenant=tenant,
        name=name,
        service=objective.service,
        enabled=enabled,
        spec=specs.slo_spec(objective),
        created_by=actor,
    )


@transaction.atomic
def update_slo(*, objective: Slo, **changes: Any) -> Slo:
    locked = Slo.objects.select_for_update().get(pk=objective.pk, tenant_id=objective.tenant_id)
    spec = changes.get("spec", locked.spec)
    problems = slo_problems(locked.tenant, spec)
    name = changes.get("name", locked.name)
    if name != locked.name and Slo.objects.filter(tenant_id=locked.tenant_id, name=name).exists():
        problems.append(("name", f"an SLO named {name!r} exists already"))
    _refuse_if(problems)
    parsed = specs.slo_of(spec)
    enabled = changes.get("enabled", locked.enabled)
    spec = specs.slo_spec(parsed)
    if not enabled or spec != locked.spec:
        recover_rows(locked, "the SLO was disabled" if not enabled else "the SLO was changed")
        locked.firing_rows = []
    locked.name, locked.enabled, locked.spec, locked.service = name, enabled, spec, parsed.service
    locked.updated = timezone.now()
    locked.save()
    return locked


@transaction.atomic
def delete_slo(*, objective: Slo) -> None:
    # The rows firing as stored now, locked: the caller's copy may predate the tick that
    # started them firing, and a second delete of the same SLO finds nothing to recover.
    locked = Slo.objects.select_for_update().filter(pk=objective.pk, tenant_id=objective.tenant_id)
    for current in locked:
        recover_rows(current, "the SLO was deleted")
    locked.delete()


def recover_rows(objective: Slo, why: str) -> None:
    """SloRecovered for each firing row, because the SLO stops being evaluated: the handler's
    data (slo.event_data) and event id (handler.slo_event_id), said at the SLO's last evaluated
    instant, so that a retried change publishes nothing new. The caller holds the row's lock
    and publishes in the transaction of the change."""
    from observability.alerting.handler import slo_event_id

    if not objective.firing_rows:
        return
    parsed = specs.slo_of(objective.spec)
    rows = {row.name: row for row in parsed.rows}
    at = objective.evaluated_at or timezone.now()
    rates = objective.burn_rates or {}
    envelopes = []
    for name in objective.firing_rows:
        row = rows.get(name)
        spans = (row.long_window, row.short_window) if row else ()
        labels = [slo.window_label(w) for w in spans]
        transition = slo.RowTransition(
            kind="SloRecovered",
            row=name,
            severity=row.event_severity if row else "critical",
            threshold=row.burn_rate if row else 0.0,
            burn_rates={k: rates[k] for k in labels if rates.get(k) is not None},
            budget_remaining=objective.budget_remaining,
            window_end=at,
            reason=f"{why}: row {name} no longer fires",
            trace_ids=(),
        )
        data = slo.event_data(parsed, transition, slo_id=str(objective.pk), slo_name=objective.name)
        event_id = slo_event_id(str(objective.pk), transition)
        envelopes.append(
            build_envelope(
                tenant_id=objective.tenant_id,
                type="SloRecovered",
                data=data,
                source="slo",
                source_id=str(event_id),
                event_id=event_id,
            )
        )
    publish_envelopes(envelopes)


# History


def prune_history(*, now: datetime | None = None, **kwargs: Any) -> int:
    """Delete state changes older than ALERT_HISTORY_RETENTION_DAYS (the hourly prune)."""
    cutoff = (now or timezone.now()) - timedelta(days=setting("ALERT_HISTORY_RETENTION_DAYS"))
    old = AlertStateChange.objects.filter(recorded_at__lt=cutoff)
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:PRUNE_CHUNK]):
        deleted += AlertStateChange.objects.filter(id__in=ids).delete()[0]
    return deleted
