"""IntegrationRetryWorker's handler (integrations/workers/integration_retry.py declares the
worker): an IntegrationFailed is recorded on its failure and settled (the next attempt
scheduled, or poisoned and escalated); the tenant's five-minute ScheduleFired sweeps its due
failures (each gets its resume command), its attempts in flight past their timeout (counted as
failed) and its recovered webhook deliveries (resolved).

The data contract of IntegrationFailed and of the resume commands is in
integrations.failures.contract. Decisions are made at the event's time (a report's occurredAt,
a slot's windowEnd), never the clock's, so a redelivered or replayed message decides the same;
and every event published has an id derived from (failure, what), so it publishes nothing new.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.envelope import Envelope, TenantId
from core.runtime.errors import PermanentError
from integrations.failures import contract, decisions, services
from integrations.failures.models import (
    ACTIVE,
    FailureAttempt,
    IntegrationFailure,
    Kind,
    Status,
)
from integrations.models import WebhookDelivery

log = logging.getLogger(__name__)
SCHEDULE = "ScheduleFired"
SWEEP_LIMIT = 500  # failures a slot starts at most; the rest are due at the next slot
Outcome = FailureAttempt.Outcome


def handle(envelope: Envelope) -> None:
    if envelope.type == SCHEDULE:
        sweep(envelope.tenant_id, slot_time(envelope))
        return
    try:
        report = contract.parse(envelope.data)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    record(envelope.tenant_id, report, at=envelope.occurred_at)


def slot_time(envelope: Envelope) -> datetime:
    try:
        end = datetime.fromisoformat(str(envelope.data.get("windowEnd")))
    except ValueError:
        return envelope.occurred_at
    return end if end.tzinfo is not None else envelope.occurred_at


def record(tenant_id: TenantId, report: contract.Report, *, at: datetime) -> IntegrationFailure:
    """Record one reported failed execution on its failure (created at its first report) and
    settle it. A report of an execution already counted changes nothing."""
    overrides = services.load_policies()
    with transaction.atomic():
        failure = (
            IntegrationFailure.objects.select_for_update()
            .filter(tenant_id=tenant_id, failure_id=report.failure_id)
            .first()
        )
        number = max(1, report.attempt)
        if failure is None:
            failure = _new(tenant_id, report, number=number, at=at)
        elif not _counted(failure, report, number=number, at=at):
            log.info("failure %s: attempt %s already counted", report.failure_id, number)
            return failure
        envelopes = []
        # An operator's word stands: an acknowledged or ignored failure records the attempt.
        if failure.status not in (Status.ACKNOWLEDGED, Status.IGNORED):
            decision = decisions.decide(
                services.policy_of(failure, overrides),
                kind=failure.kind,
                attempts=failure.attempts,
                error_class=failure.error_class,
                now=at,
                retry_after=report.retry_after,
            )
            envelopes = services.settle(failure, decision, now=at)
        failure.save()
        services.publish(envelopes)
    return failure


def _new(tenant_id: TenantId, report: contract.Report, *, number: int, at: datetime):
    failure = IntegrationFailure.objects.create(
        tenant_id=tenant_id,
        failure_id=report.failure_id,
        kind=report.kind,
        provider=report.provider,
        subject_id=report.subject_id,
        subject=report.subject,
        detail=report.detail,
        error_class=report.error_class,
        error=report.error,
        status_code=report.status,
        attempts=number,
        group_key=decisions.group_key(
            kind=report.kind,
            subject_id=report.subject_id,
            error_class=report.error_class,
            status=report.status,
        )[:500],
        first_seen=at,
        last_seen=at,
    )
    FailureAttempt.objects.create(
        failure=failure,
        number=number,
        at=at,
        outcome=Outcome.FAILED,
        error=report.error,
        by="report",
    )
    return failure


def _counted(
    failure: IntegrationFailure, report: contract.Report, *, number: int, at: datetime
) -> bool:
    """Count a reported execution on a known failure: the outcome of the attempt in flight, or
    a later one (a webhook delivery redelivered from its own page). False if it was counted."""
    row = FailureAttempt.objects.filter(failure=failure, number=number).first()
    if number <= failure.attempts and (row is None or row.outcome != Outcome.SENT):
        return False
    if row is None:
        FailureAttempt.objects.create(
            failure=failure,
            number=number,
            at=at,
            outcome=Outcome.FAILED,
            error=report.error,
            by="report",
        )
    else:
        row.outcome, row.error = Outcome.FAILED, report.error
        row.save(update_fields=["outcome", "error"])
    # An earlier attempt still in flight will not report now: a later one did.
    FailureAttempt.objects.filter(failure=failure, outcome=Outcome.SENT, number__lt=number).update(
        outcome=Outcome.LOST, error=f"superseded by attempt {number}"
    )
    failure.attempts = max(failure.attempts, number)
    failure.error, failure.error_class = report.error, report.error_class
    failure.status_code = report.status
    failure.detail = {**failure.detail, **report.detail}
    failure.last_seen = max(failure.last_seen, at)
    return True


def sweep(tenant_id: TenantId, now: datetime) -> None:
    """A slot of the tenant's schedule: due failures get their next attempt, attempts in flight
    past their timeout count as failed, recovered webhook deliveries resolve their failures."""
    overrides = services.load_policies()
    with transaction.atomic():
        due = (
            IntegrationFailure.objects.filter(
                tenant_id=tenant_id,
                status__in=(Status.OPEN, Status.RETRYING),
                next_attempt_at__lte=now,
            )
            .exclude(kind=Kind.WEBHOOK)
            .order_by("next_attempt_at")
        )
        if connection.features.has_select_for_update_skip_locked:
            # Another slot's sweep, or an operator's retry, has those: they are theirs.
            due = due.select_for_update(skip_locked=True)
        envelopes = []
        for failure in list(due[:SWEEP_LIMIT]):
            policy = services.policy_of(failure, overrides)
            if failure.status == Status.RETRYING:
                _lost(failure, policy, now=now)
                decision = decisions.decide(
                    policy,
                    kind=failure.kind,
                    attempts=failure.attempts,
                    error_class=failure.error_class,
                    now=now,
                )
                envelopes += services.settle(failure, decision, now=now)
            else:
                envelopes += services.start_attempt(failure, now=now, by="schedule", policy=policy)
            failure.save()
        envelopes += _delivered(tenant_id, now=now)
        services.publish(envelopes)


def _lost(failure: IntegrationFailure, policy: decisions.Policy, *, now: datetime) -> None:
    why = f"no outcome reported within {policy.attempt_timeout:g} s"
    FailureAttempt.objects.filter(failure=failure, outcome=Outcome.SENT).update(
        outcome=Outcome.LOST, error=why
    )
    failure.last_seen = max(failure.last_seen, now)


def _delivered(tenant_id: TenantId, *, now: datetime) -> list[Envelope]:
    """Webhook failures whose delivery was delivered since (an operator recovered it, here or
    on the subscription's page): resolved."""
    failures = {
        f.detail.get("deliveryId", ""): f
        for f in IntegrationFailure.objects.filter(
            Q(tenant_id=tenant_id, kind=Kind.WEBHOOK, status__in=ACTIVE)
        )
    }
    ids = [services.uuid_or_none(pk) for pk in failures]
    delivered = WebhookDelivery.objects.filter(
        tenant_id=tenant_id,
        pk__in=[pk for pk in ids if pk is not None],
        state=WebhookDelivery.State.DELIVERED,
    ).values_list("pk", flat=True)
    envelopes = []
    for pk in delivered:
        failure = failures[str(pk)]
        envelopes += services.mark_resolved(failure, now=now, why="the delivery was delivered")
        failure.updated = timezone.now()
        failure.save()
    return envelopes
