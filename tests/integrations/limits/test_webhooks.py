"""Webhook deliveries through their host's circuit and rate bucket: a host that is down, or
that answers 429 with Retry-After, holds its deliveries back without spending their attempts,
and they go out once it recovers. Against a real receiver; transactional, as the limits are
written on a connection of their own that commits at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter, Failure, Message
from integrations.limits import keys
from integrations.limits.models import Circuit, RateBucket
from integrations.models import WebhookDelivery
from tests.integrations.receiver import Answer
from tests.integrations.webhooks import WORKER, come_due, publish, run_worker, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def retries():
    return Message.objects.filter(worker=WORKER, event__type="WebhookDeliveryQueued")


def delivered() -> int:
    return WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED).count()


def test_it_stops_sending_to_a_host_that_is_down_without_spending_attempts(
    tenant, receiver, settings
):
    settings.WEBHOOK_CIRCUIT_SUSTAINED_SECONDS = 0  # the tests' minute is a few milliseconds
    receiver.default = Answer(status=503)
    subscribe(tenant, receiver)
    for n in range(10):
        publish(tenant, n=n)
    run_worker()

    key = keys.webhook_host(tenant.pk, receiver.url)
    circuit = Circuit.objects.get(key=key)
    assert (circuit.state, circuit.tenant_id, len(receiver.received)) == ("open", tenant.pk, 10)
    assert "10 of 10 calls failed" in circuit.reason

    for n in range(10, 15):  # new events while it is open, and the retries come due
        publish(tenant, n=n)
    come_due()
    run_worker()

    assert len(receiver.received) == 10  # nothing more was sent
    assert sorted(retries().values_list("attempts", flat=True)) == [0] * 5 + [1] * 10
    assert set(retries().values_list("due_at", flat=True)) == {circuit.open_until}
    assert Failure.objects.filter(worker=WORKER).count() == 10
    shown = set(WebhookDelivery.objects.values_list("next_attempt_at", flat=True))
    assert shown == {circuit.open_until}

    # The break is over and the host is back: three trial deliveries close the circuit, and
    # the rest follow.
    receiver.default = Answer(status=200)
    Circuit.objects.filter(key=key).update(open_until=timezone.now())
    come_due()
    run_worker()
    assert Circuit.objects.get(key=key).state == "closed"
    assert delivered() == 3
    come_due()
    run_worker()

    assert delivered() == 15 and len(receiver.received) == 25
    assert not DeadLetter.objects.exists()
    assert sorted(retries().values_list("attempts", flat=True)) == [0] * 5 + [1] * 10


def test_it_holds_a_hosts_deliveries_back_after_a_429_with_retry_after(tenant, receiver):
    receiver.answer(Answer(status=429, headers={"Retry-After": "120"}))
    subscribe(tenant, receiver)
    before = timezone.now()
    publish(tenant, n=0)
    run_worker()

    key = keys.webhook_host(tenant.pk, receiver.url)
    blocked = RateBucket.objects.get(key=key).blocked_until_at
    assert before + timedelta(seconds=119) <= blocked <= timezone.now() + timedelta(seconds=121)

    for n in range(1, 4):
        publish(tenant, n=n)
    run_worker()

    assert len(receiver.received) == 1  # the three new ones waited, unsent
    by_attempts = sorted(retries().values_list("attempts", "due_at"))
    assert [a for a, _ in by_attempts] == [0, 0, 0, 0]  # the 429 itself spent none either
    assert {due for _, due in by_attempts} == {blocked}
    assert not Failure.objects.filter(worker=WORKER).exists()
    answered = WebhookDelivery.objects.get(attempts=1)  # the one POSTed: its 429 in history
    assert (answered.round_attempts, answered.next_attempt_at) == (0, blocked)

    # Two minutes later.
    RateBucket.objects.filter(key=key).update(blocked_until=0)
    come_due()
    run_worker()

    assert delivered() == 4 and len(receiver.received) == 5
    assert not DeadLetter.objects.exists()


def test_it_paces_a_host_to_its_rate(tenant, receiver, settings):
    settings.WEBHOOK_HOST_RATE = 1  # one a second after a burst of three
    settings.WEBHOOK_HOST_BURST = 3
    subscribe(tenant, receiver)
    for n in range(5):
        publish(tenant, n=n)
    run_worker()

    assert len(receiver.received) == 3
    waiting = sorted(retries().values_list("attempts", "due_at"))
    assert [a for a, _ in waiting] == [0, 0]
    assert all(due > timezone.now() for _, due in waiting)
    assert not Failure.objects.exists()
