"""Writes of the failures domain: what the worker's handler and the operators (API, console)
do to a failure, through one set of steps: start an attempt (publish its resume command),
settle a failed execution (schedule the next or poison), escalate once, release an escalation.

Every step works on a failure locked by the caller's transaction and returns the envelopes it
wants published; the caller publishes them in the same transaction (core.services), with
event ids derived from (tenant, failureId, what), so that doing a step again publishes nothing
new.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core import services as core_services
from core.envelope import Envelope, TenantId
from core.models import Tenant
from integrations.failures import contract, decisions
from integrations.failures.models import (
    ACTIVE,
    FailureAttempt,
    IntegrationFailure,
    Kind,
    RetryPolicy,
    Status,
)
from integrations.models import WebhookDelivery
from observability.incidents.services import actor_of_key, actor_of_user

__all__ = [
    "Refused",
    "acknowledge",
    "actor_of_key",
    "actor_of_user",
    "ignore",
    "resolve_subject",
    "retry",
    "retry_many",
]

NAMESPACE = uuid.UUID("2b0c8f4e-6a51-4d8e-9f0b-7c1d3e5a9b21")
SOURCE = "integrations"
Outcome = FailureAttempt.Outcome


class Refused(Exception):
    """An operator's action that the failure's state does not allow; says why and what to do."""


def event_id(tenant_id: TenantId, failure_id: str, what: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{tenant_id}|{failure_id}|{what}")


def load_policies() -> dict[tuple[str, str], decisions.Policy]:
    """The database's overrides, all of them: a handful of rows."""
    return {(p.provider, p.kind): p.as_policy() for p in RetryPolicy.objects.all()}


def policy_of(
    failure: IntegrationFailure, overrides: dict[tuple[str, str], decisions.Policy]
) -> decisions.Policy:
    return decisions.resolve_policy(overrides, provider=failure.provider, kind=failure.kind)


def _envelope(
    failure: IntegrationFailure, type: str, data: dict, *, what: str, now: datetime, source_id: str
) -> Envelope:
    return core_services.build_envelope(
        tenant_id=failure.tenant_id,
        type=type,
        data=data,
        source=SOURCE,
        source_id=source_id,
        correlation_id=failure.failure_id[:100],
        occurred_at=now,
        event_id=event_id(failure.tenant_id, failure.failure_id, what),
    )


# --- The steps --------------------------------------------------------------------------------


def start_attempt(
    failure: IntegrationFailure, *, now: datetime, by: str, policy: decisions.Policy
) -> list[Envelope]:
    """Start the next execution of a sync, rotation or outage failure: its resume command, an
    attempt in flight until the policy's attempt timeout."""
    number = failure.attempts + 1
    type, data = contract.command(
        failure.kind, failure_id=failure.failure_id, attempt=number, detail=failure.detail
    )
    FailureAttempt.objects.create(
        failure=failure, number=number, at=now, outcome=Outcome.SENT, by=by[:200]
    )
    failure.attempts = number
    failure.status = Status.RETRYING
    failure.next_attempt_at = now + timedelta(seconds=policy.attempt_timeout)
    failure.status_reason = f"attempt {number} sent: {type}"
    failure.updated = timezone.now()
    return [
        _envelope(
            failure, type, data, what=f"attempt:{number}", now=now, source_id=failure.failure_id
        )
    ]


def settle(
    failure: IntegrationFailure, decision: decisions.Decision, *, now: datetime
) -> list[Envelope]:
    """After a failed execution: the next attempt scheduled, or poisoned and escalated."""
    failure.status_reason = decision.reason[:500]
    failure.updated = timezone.now()
    if decision.retry:
        failure.status = Status.OPEN
        failure.next_attempt_at = decision.at
        return []
    failure.status = Status.POISONED
    failure.next_attempt_at = None
    return escalate(failure, now=now, reason=decision.reason)


def escalate(failure: IntegrationFailure, *, now: datetime, reason: str) -> list[Envelope]:
    """Escalate a poisoned failure, exactly once in its life: one AlertTriggered (source
    "integrations", sourceId its failureId) that IncidentAnalysisWorker opens an incident for.
    A dead webhook delivery joins its group's standing escalation instead, if there is one, so
    that a receiver down for an hour is one alert and not hundreds."""
    if failure.escalated_at is not None:
        return []
    failure.escalated_at = now
    if failure.kind == Kind.WEBHOOK:
        standing = (
            IntegrationFailure.objects.filter(
                tenant_id=failure.tenant_id,
                group_key=failure.group_key,
                status__in=ACTIVE,
                escalated_at__isnull=False,
            )
            .exclude(pk=failure.pk)
            .exclude(escalated_as="")
            .values_list("escalated_as", flat=True)
            .first()
        )
        if standing:
            failure.escalated_as = standing
            return []
    failure.escalated_as = failure.failure_id
    data = decisions.alert_data(failure.escalated(reason=reason), now=now)
    return [
        _envelope(
            failure, "AlertTriggered", data, what="escalated", now=now, source_id=failure.failure_id
        )
    ]


def release(failure: IntegrationFailure, *, now: datetime, why: str) -> list[Envelope]:
    """A failure left the active states (resolved, ignored): when it was the last active one
    of its escalation, AlertResolved, so that the incident's trigger resolves."""
    if not failure.escalated_as:
        return []
    others = IntegrationFailure.objects.filter(
        tenant_id=failure.tenant_id, escalated_as=failure.escalated_as, status__in=ACTIVE
    ).exclude(pk=failure.pk)
    if others.exists():
        return []
    leader = failure
    if failure.escalated_as != failure.failure_id:
        found = IntegrationFailure.objects.filter(
            tenant_id=failure.tenant_id, failure_id=failure.escalated_as
        ).first()
        leader = found or failure
    data = decisions.resolved_data(leader.escalated(reason=why), now=now, why=why)
    # Its own sourceId: the incident worker dedups on (source, sourceId), which would take it
    # for the AlertTriggered again.
    return [
        core_services.build_envelope(
            tenant_id=failure.tenant_id,
            type="AlertResolved",
            data=data,
            source=SOURCE,
            source_id=f"{leader.failure_id}:resolved"[:200],
            correlation_id=leader.failure_id[:100],
            occurred_at=now,
            event_id=event_id(failure.tenant_id, leader.failure_id, "resolved"),
        )
    ]


def mark_resolved(failure: IntegrationFailure, *, now: datetime, why: str) -> list[Envelope]:
    FailureAttempt.objects.filter(failure=failure, outcome=Outcome.SENT).update(
        outcome=Outcome.SUCCEEDED
    )
    failure.status = Status.RESOLVED
    failure.status_reason = why[:500]
    failure.next_attempt_at = None
    failure.updated = timezone.now()
    return release(failure, now=now, why=why)


def publish(envelopes: list[Envelope]) -> None:
    if envelopes:
        core_services.publish_envelopes(envelopes)


# --- Operators' actions (API, console) --------------------------------------------------------


def _locked(failure: IntegrationFailure) -> IntegrationFailure:
    found = (
        IntegrationFailure.objects.select_for_update()
        .filter(tenant_id=failure.tenant_id, pk=failure.pk)
        .first()
    )
    if found is None:
        raise IntegrationFailure.DoesNotExist(f"failure {failure.pk} is gone")
    return found


def retry(*, failure: IntegrationFailure, actor: str) -> IntegrationFailure:
    """Retry now, whatever the count (an operator's retry is not capped): a sync resumes, a
    rotation resumes its step, an outage re-probes, a dead webhook delivery is redelivered.
    Refused for a resolved failure and for one whose attempt is in flight."""
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(failure)
        if locked.status == Status.RESOLVED:
            raise Refused(f"Failure {locked.failure_id} is resolved: there is nothing to retry.")
        if locked.kind == Kind.WEBHOOK:
            _redeliver(locked, actor=actor, now=now)
            envelopes: list[Envelope] = []
        else:
            if locked.status == Status.RETRYING:
                raise Refused(
                    f"Attempt {locked.attempts} of failure {locked.failure_id} is in flight; "
                    f"wait for its outcome, or until {locked.next_attempt_at:%Y-%m-%d %H:%M:%S} "
                    "UTC when it counts as failed."
                )
            envelopes = start_attempt(
                locked, now=now, by=actor, policy=policy_of(locked, load_policies())
            )
        locked.status_by = actor[:200]
        locked.save()
        publish(envelopes)
    return locked


def _redeliver(failure: IntegrationFailure, *, actor: str, now: datetime) -> None:
    # Imported here: integrations.webhooks imports the runtime, which loads the workers.
    from integrations.webhooks.delivery import redeliver

    delivery_id = failure.detail.get("deliveryId", "")
    pk = uuid_or_none(delivery_id)
    delivery = (
        WebhookDelivery.objects.select_related("subscription")
        .filter(tenant_id=failure.tenant_id, pk=pk)
        .first()
        if pk is not None
        else None
    )
    if delivery is None:
        raise Refused(
            f"Delivery {delivery_id} is gone (its subscription was deleted): there is nothing "
            "to redeliver; ignore the failure."
        )
    try:
        sent = redeliver(delivery=delivery)
    except ValidationError as exc:
        raise Refused(" ".join(exc.messages)) from None
    if not sent:
        raise Refused(
            f"Delivery {delivery_id} is {delivery.state}: only a failed delivery that is not "
            "being sent at this moment is redelivered."
        )
    number = failure.attempts + 1
    FailureAttempt.objects.create(
        failure=failure, number=number, at=now, outcome=Outcome.SENT, by=actor[:200]
    )
    failure.attempts = number
    failure.status = Status.RETRYING
    failure.next_attempt_at = None
    failure.status_reason = f"delivery {delivery_id} redelivered"
    failure.updated = timezone.now()


def uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def acknowledge(*, failure: IntegrationFailure, actor: str) -> bool:
    """Someone is on it: no more automatic retries (a retry by hand still works). False if it
    was acknowledged already; refused for a resolved or ignored one."""
    with transaction.atomic():
        locked = _locked(failure)
        if locked.status == Status.ACKNOWLEDGED:
            return False
        if locked.status in (Status.RESOLVED, Status.IGNORED):
            raise Refused(
                f"Failure {locked.failure_id} is {locked.status}: nothing to acknowledge."
            )
        _set(locked, Status.ACKNOWLEDGED, actor=actor, why=f"acknowledged by {actor}")
        locked.save()
    failure.refresh_from_db()
    return True


def ignore(*, failure: IntegrationFailure, actor: str) -> bool:
    """It needs nothing: no more retries, and its escalation resolves. False if it was
    ignored already; refused for a resolved one."""
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(failure)
        if locked.status == Status.IGNORED:
            return False
        if locked.status == Status.RESOLVED:
            raise Refused(f"Failure {locked.failure_id} is resolved: nothing to ignore.")
        why = f"ignored by {actor}"
        _set(locked, Status.IGNORED, actor=actor, why=why)
        FailureAttempt.objects.filter(failure=locked, outcome=Outcome.SENT).update(
            outcome=Outcome.LOST, error=why
        )
        envelopes = release(locked, now=now, why=why)
        locked.save()
        publish(envelopes)
    failure.refresh_from_db()
    return True


def _set(failure: IntegrationFailure, status: str, *, actor: str, why: str) -> None:
    failure.status = status
    failure.status_by = actor[:200]
    failure.status_reason = why[:500]
    failure.next_attempt_at = None
    failure.updated = timezone.now()


def retry_many(
    *, tenant: Tenant, failures: Iterable[IntegrationFailure], actor: str
) -> tuple[list[IntegrationFailure], dict[str, str]]:
    """Retry each; returns those retried and, by failureId, why the others were not."""
    retried, refused = [], {}
    for failure in failures:
        if failure.tenant_id != tenant.pk:
            continue
        try:
            retried.append(retry(failure=failure, actor=actor))
        except (Refused, IntegrationFailure.DoesNotExist) as exc:
            refused[failure.failure_id] = str(exc)
    return retried, refused


# --- For producers ----------------------------------------------------------------------------


def resolve_subject(
    *, tenant_id: TenantId, kind: str, subject_id: str, at: datetime | None = None
) -> int:
    """The subject works again (a sync completed, a rotation was promoted, a connection is up):
    its active failures of that kind are resolved, their escalations released. Call it in the
    transaction that records the success. Returns how many were resolved."""
    now = at or timezone.now()
    with transaction.atomic():
        found = list(_active(tenant_id, kind=kind, subject_id=subject_id).select_for_update())
        envelopes = []
        for failure in found:  # one by one: the last of an escalation releases it
            envelopes += mark_resolved(failure, now=now, why=f"the {kind} succeeded")
            failure.save()
        publish(envelopes)
    return len(found)


def _active(tenant_id: TenantId, *, kind: str, subject_id: str) -> QuerySet[IntegrationFailure]:
    return IntegrationFailure.objects.filter(
        tenant_id=tenant_id, kind=kind, subject_id=subject_id, status__in=ACTIVE
    )


# --- Pruning ----------------------------------------------------------------------------------

RETENTION_DAYS = 30  # INTEGRATION_FAILURE_RETENTION_DAYS overrides
PRUNE_CHUNK = 1000


def prune(*, now: datetime, **kwargs: object) -> int:
    """The hourly prune (core.runtime.scheduling.pruning): delete failures resolved or ignored
    longer than INTEGRATION_FAILURE_RETENTION_DAYS ago, with their attempts, a chunk at a time.
    Active ones stay however old: they still need someone."""
    from django.conf import settings

    days = getattr(settings, "INTEGRATION_FAILURE_RETENTION_DAYS", RETENTION_DAYS)
    old = IntegrationFailure.objects.filter(
        status__in=(Status.RESOLVED, Status.IGNORED), updated__lt=now - timedelta(days=days)
    )
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:PRUNE_CHUNK]):
        deleted += (
            IntegrationFailure.objects.filter(pk__in=ids)
            .delete()[1]
            .get("failures.IntegrationFailure", 0)
        )
    return deleted
