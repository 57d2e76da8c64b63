"""Dead webhook deliveries: grouped and escalated, never re-sent by the retry worker, re-sent
when an operator retries them, resolved when delivered. Against a real receiver."""

from __future__ import annotations

import pytest

from core.models import Event
from integrations.failures import services
from integrations.failures.models import FailureAttempt, IntegrationFailure, Status
from integrations.models import WebhookDelivery
from tests.integrations.failures.support import after, drain, published, sweep
from tests.integrations.receiver import Answer
from tests.integrations.webhooks import come_due, publish, run_worker, subscribe

pytestmark = pytest.mark.django_db


def kill_deliveries(tenant, receiver, count: int, status: int = 500) -> None:
    """Publish `count` events whose deliveries fail all eight attempts, and hand the retry
    worker the IntegrationFailed of each."""
    receiver.default = Answer(status=status)
    for n in range(count):
        publish(tenant, version=f"1.0.{n}")
    run_worker()
    for _ in range(7):
        come_due()
        run_worker()
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"dead"}
    drain()


def test_dead_deliveries_are_grouped_into_one_escalation_and_never_re_sent(tenant, receiver):
    subscription = subscribe(tenant, receiver)
    kill_deliveries(tenant, receiver, 3)
    sent = len(receiver.received)

    failures = list(IntegrationFailure.objects.order_by("first_seen"))
    assert len(failures) == 3
    assert {f.status for f in failures} == {Status.POISONED}
    assert {f.group_key for f in failures} == {f"webhook:{subscription.pk}:500"}
    assert {f.attempts for f in failures} == {8}
    assert all(f.escalated_at for f in failures)
    (alert,) = published("AlertTriggered")
    assert {f.escalated_as for f in failures} == {alert.source_id}
    assert alert.data["groupKey"] == f"integrations:webhook:{subscription.pk}:500"

    for minutes in range(5, 200, 30):
        sweep(after(minutes))
    come_due()
    run_worker()

    assert len(receiver.received) == sent
    assert len(published("AlertTriggered")) == 1


def test_another_reply_status_is_another_group(tenant, receiver):
    subscribe(tenant, receiver)
    kill_deliveries(tenant, receiver, 1, status=500)
    kill_deliveries(tenant, receiver, 1, status=410)

    assert IntegrationFailure.objects.values("group_key").distinct().count() == 2
    assert len(published("AlertTriggered")) == 2


def test_an_operators_retry_redelivers_and_delivery_resolves_the_group(tenant, receiver):
    subscribe(tenant, receiver)
    kill_deliveries(tenant, receiver, 2)
    first, second = IntegrationFailure.objects.order_by("first_seen")
    receiver.default = Answer(status=200)

    services.retry(failure=first, actor="console user ops")
    run_worker()
    sweep(after(5))

    first.refresh_from_db()
    assert first.status == Status.RESOLVED
    assert list(first.attempt_log.values_list("number", "outcome").order_by("number")) == [
        (8, FailureAttempt.Outcome.FAILED),
        (9, FailureAttempt.Outcome.SUCCEEDED),
    ]
    assert published("AlertResolved") == []  # the second is still dead

    services.retry(failure=second, actor="console user ops")
    run_worker()
    sweep(after(10))

    (cleared,) = published("AlertResolved")
    assert cleared.data["triggerKey"] == published("AlertTriggered")[0].data["triggerKey"]
    assert not Event.objects.filter(type="WebhookDeliveryQueued", source="integrations").exists()


def test_a_redelivered_delivery_that_dies_again_is_counted_and_not_escalated_again(
    tenant, receiver
):
    subscribe(tenant, receiver)
    kill_deliveries(tenant, receiver, 1)
    failure = IntegrationFailure.objects.get()

    services.retry(failure=failure, actor="console user ops")
    run_worker()
    for _ in range(8):
        come_due()
        run_worker()
    drain()

    failure.refresh_from_db()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "dead"
    assert (failure.status, failure.attempts) == (Status.POISONED, delivery.attempts)
    assert len(published("AlertTriggered")) == 1
    assert len(published("IntegrationFailed")) == 2
