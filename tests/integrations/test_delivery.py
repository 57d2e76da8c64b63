"""WebhookDeliveryWorker against a real receiver that verifies with `standardwebhooks`."""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from core.envelope import Envelope
from core.models import DeadLetter, Event, Failure, Message
from core.runtime import dispatch, replay
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from integrations.webhooks.delivery import deliver
from integrations.webhooks.matching import _queued, fan_out
from integrations.webhooks.subscriptions import rotate_secret, update_subscription
from tests.integrations.receiver import Answer
from tests.integrations.webhooks import (
    WORKER,
    come_due,
    fail_eight_times,
    publish,
    run_worker,
    subscribe,
    waits_over,
)

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State


def test_it_delivers_a_signed_event_that_the_receiver_verifies(tenant, receiver):
    subscribe(tenant, receiver)
    envelope = publish(tenant, version="1.2.3")
    run_worker()

    (got,) = receiver.received
    assert got.verified
    assert got.payload["type"] == "DeploymentPromoted"
    assert got.payload["data"]["eventId"] == str(envelope.event_id)
    assert got.payload["data"]["data"] == {"version": "1.2.3"}
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("worker-platform-webhooks/")
    assert got.headers["traceparent"] == f"00-{envelope.trace_id}-{envelope.span_id}-01"
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == State.DELIVERED
    assert got.headers["webhook-id"] == delivery.webhook_id


def test_it_records_every_attempt_with_status_latency_and_body(tenant, receiver):
    receiver.answer(Answer(status=500, body=b"x" * 3000))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    come_due()
    run_worker()

    first, second = WebhookAttempt.objects.order_by("number")
    assert (first.number, first.status_code, second.status_code) == (1, 500, 200)
    assert len(first.response_body) == 1024
    assert first.latency_ms >= 0 and first.at <= second.at
    assert WebhookDelivery.objects.get().state == State.DELIVERED


def test_it_matches_exact_names_and_wildcards_only(tenant, receiver):
    subscribe(tenant, receiver, types=["Incident*"])
    publish(tenant, "IncidentOpened")
    publish(tenant, "IncidentResolved")
    publish(tenant, "DeploymentPromoted")
    run_worker()

    types = sorted(r.payload["type"] for r in receiver.received)
    assert types == ["IncidentOpened", "IncidentResolved"]


def test_it_sends_nothing_to_a_disabled_subscription_or_another_tenant(
    tenant, other_tenant, receiver
):
    subscription = subscribe(tenant, receiver)
    update_subscription(subscription=subscription, enabled=False)
    subscribe(other_tenant, receiver)
    publish(tenant)
    run_worker()

    assert receiver.received == []
    assert not WebhookDelivery.objects.filter(tenant_id=tenant.pk).exists()


def test_it_fans_out_once_when_an_event_is_handled_again(tenant, receiver):
    subscribe(tenant, receiver)
    envelope = publish(tenant)
    fan_out([envelope])
    fan_out([envelope])
    run_worker()

    assert WebhookDelivery.objects.count() == 1
    assert len(receiver.received) == 1


def test_it_retries_with_the_same_webhook_id_and_a_fresh_timestamp(tenant, receiver):
    receiver.answer(Answer(status=503), Answer(status=302))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(2):
        come_due()
        time.sleep(1.01)  # a new second, so a new webhook-timestamp
        run_worker()

    ids = {r.headers["webhook-id"] for r in receiver.received}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert len(receiver.received) == 3 and len(ids) == 1
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert all(r.verified for r in receiver.received)


def test_it_counts_a_redirect_as_a_failure(tenant, receiver):
    receiver.answer(Answer(status=301, headers={"Location": "http://127.0.0.1:1/"}))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_status) == (State.RETRYING, 301)
    assert len(receiver.received) == 1


def retry_message() -> Message:
    return Message.objects.get(worker=WORKER, event__type="WebhookDeliveryQueued")


def test_it_waits_as_long_as_retry_after_says_without_spending_an_attempt(tenant, receiver):
    receiver.answer(Answer(status=429, headers={"Retry-After": "120"}))
    subscribe(tenant, receiver)
    publish(tenant)
    before = timezone.now()
    run_worker()

    message = retry_message()
    waited = (message.due_at - before).total_seconds()
    assert 119 <= waited <= 122
    delivery = WebhookDelivery.objects.get()
    assert abs((delivery.next_attempt_at - message.due_at).total_seconds()) < 1
    assert (message.attempts, message.last_error) == (0, "")
    assert not Failure.objects.filter(worker=WORKER).exists()
    assert (delivery.state, delivery.attempts, delivery.round_attempts) == (State.RETRYING, 1, 0)
    assert delivery.last_error.startswith("the endpoint answered 429: waiting until ")
    assert 119 <= delivery.waited_seconds <= 121
    (attempt,) = WebhookAttempt.objects.all()  # the POST is in its history all the same
    assert (attempt.number, attempt.status_code) == (1, 429)


def test_it_waits_after_a_retry_of_the_ladder_without_climbing_it(tenant, receiver):
    receiver.answer(Answer(status=500), Answer(status=429), Answer(status=429))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(3):
        come_due()
        run_worker()

    message = dispatch_message_history()
    assert message == {"attempts": 1, "failures": 1}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.round_attempts) == (State.DELIVERED, 4, 1)
    statuses = list(WebhookAttempt.objects.values_list("status_code", flat=True))
    assert statuses == [500, 429, 429, 200]


def dispatch_message_history() -> dict[str, int]:
    message = retry_message()
    return {
        "attempts": message.attempts,
        "failures": Failure.objects.filter(worker=WORKER).count(),
    }


def test_a_bare_429_waits_the_next_backoff_and_then_longer(tenant, receiver):
    receiver.default = Answer(status=429)
    subscribe(tenant, receiver)
    publish(tenant)
    waits = []
    for _ in range(3):
        before = timezone.now()
        come_due()
        run_worker()
        waits.append(round((retry_message().due_at - before).total_seconds()))

    assert waits == [60, 60, 120]  # the first backoff's ceiling, then doubling the total
    assert retry_message().attempts == 0
    assert WebhookDelivery.objects.get().round_attempts == 0


def test_a_503_with_a_retry_after_longer_than_the_backoff_is_a_wait(tenant, receiver):
    receiver.answer(
        Answer(status=503, headers={"Retry-After": "600"}),  # beyond the first backoff (60 s)
        Answer(status=503, headers={"Retry-After": "30"}),  # within it: a failure, retried
    )
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    assert retry_message().attempts == 0
    waits_over()
    before = timezone.now()
    run_worker()

    message = retry_message()
    assert message.attempts == 1
    assert 29 <= (message.due_at - before).total_seconds() <= 32
    assert WebhookDelivery.objects.get().round_attempts == 1


def test_429s_do_not_use_up_the_eight_attempts(tenant, receiver):
    """Before, each 429 spent an attempt: ten of them and the delivery was dead-lettered."""
    receiver.answer(*[Answer(status=429, headers={"Retry-After": "1"})] * 10)
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(10):
        waits_over()
        run_worker()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.round_attempts) == (State.DELIVERED, 11, 0)
    assert not DeadLetter.objects.exists()
    assert not Event.objects.filter(type="IntegrationFailed").exists()


def test_a_receiver_answering_429_forever_dies_past_the_longest_wait(tenant, receiver, settings):
    settings.WEBHOOK_MAX_WAIT_SECONDS = 600
    receiver.default = Answer(status=429, headers={"Retry-After": "250"})
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(5):
        waits_over()
        run_worker()

    assert len(receiver.received) == 3  # waited 250 s twice; a third wait would pass 600 s
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.round_attempts) == (State.DEAD, 3, 1)
    dead = DeadLetter.objects.get(worker=WORKER)
    assert "WEBHOOK_MAX_WAIT_SECONDS (600 s): given up" in dead.reason
    assert "after waiting 500 s in all" in dead.reason
    failed = Event.objects.get(type="IntegrationFailed")
    assert "WEBHOOK_MAX_WAIT_SECONDS" in failed.data["reason"]


def test_the_longest_wait_is_the_retry_schedules_span_by_default(tenant, receiver):
    receiver.default = Answer(status=429)
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(12):
        come_due()
        run_worker()

    # Bare 429s wait 60, 60, 120, ... 3840 s: 7680 s in all passes 7620 s (the span of
    # eight attempts' backoff, 60 s doubling) at the eighth wait.
    assert len(receiver.received) == 8
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == State.DEAD
    assert delivery.waited_seconds == pytest.approx(3840, abs=2)
    assert "WEBHOOK_MAX_WAIT_SECONDS (7620 s)" in DeadLetter.objects.get().reason


def test_a_redelivered_dead_delivery_starts_its_waiting_afresh(tenant, receiver, settings):
    settings.WEBHOOK_MAX_WAIT_SECONDS = 100
    receiver.answer(*[Answer(status=429, headers={"Retry-After": "60"})] * 3)
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    waits_over()
    run_worker()
    assert WebhookDelivery.objects.get().state == State.DEAD

    assert replay.replay(DeadLetter.objects.get(worker=WORKER)) is True
    waits_over()
    run_worker()  # a 429 again: a new round may wait
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.waited_seconds) == (State.RETRYING, pytest.approx(60, abs=2))
    waits_over()
    run_worker()

    assert WebhookDelivery.objects.get().state == State.DELIVERED


def test_it_backs_off_along_the_policy_between_attempts(tenant, receiver):
    receiver.default = Answer(status=500)
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for attempt in range(2, 5):
        come_due()
        before = timezone.now()
        run_worker()
        message = Message.objects.get(worker=WORKER, event__type="WebhookDeliveryQueued")
        ceiling = min(6 * 3600, 60 * 2 ** (attempt - 1))
        assert 0 <= (message.due_at - before).total_seconds() <= ceiling + 1
    assert WebhookDelivery.objects.get().round_attempts == 4


def test_it_dead_letters_after_eight_attempts_and_publishes_integration_failed(tenant, receiver):
    receiver.default = Answer(status=500)
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(7):
        come_due()
        run_worker()

    assert len(receiver.received) == 8
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == (State.DEAD, 8)
    dead = DeadLetter.objects.get(worker=WORKER)
    assert "gave up after 8 attempts" in dead.reason
    assert [a["attempt"] for a in dead.attempts] == list(range(1, 9))
    assert dead.envelope["data"] == {"deliveryId": str(delivery.pk)}
    failed = Event.objects.get(type="IntegrationFailed")
    assert failed.data["deliveryId"] == str(delivery.pk)
    assert failed.data["subscriptionId"] == str(subscription.pk)
    assert failed.data["attempts"] == 8


def test_it_delivers_a_replayed_dead_letter_once_with_the_same_webhook_id(tenant, receiver):
    fail_eight_times(tenant, receiver)
    dead = DeadLetter.objects.get(worker=WORKER)

    assert replay.replay(dead) is True
    assert replay.replay(dead) is False  # twice has the effect of once
    run_worker()
    run_worker()

    assert len(receiver.received) == 9
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.round_attempts) == (State.DELIVERED, 9, 0)


def test_it_never_sends_a_delivered_delivery_again(tenant, receiver):
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    delivery = WebhookDelivery.objects.get()
    event = Envelope.from_event(Event.objects.get(type="DeploymentPromoted"))

    # A command for a delivery already delivered (a lease that ran out, a duplicate command).
    failures = deliver([_queued(delivery.pk, event)])

    assert failures == {}
    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_it_disables_the_subscription_on_410(tenant, receiver):
    receiver.answer(Answer(status=410))
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()

    subscription.refresh_from_db()
    assert not subscription.enabled
    assert "410" in subscription.disabled_reason
    assert WebhookDelivery.objects.get().state == State.DEAD
    disabled = Event.objects.get(type="SubscriptionDisabled")
    assert disabled.data["subscriptionId"] == str(subscription.pk)
    publish(tenant)
    run_worker()
    assert len(receiver.received) == 1


def test_it_disables_a_subscription_failing_longer_than_the_period(tenant, receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 3600
    receiver.default = Answer(status=500)
    subscription = subscribe(tenant, receiver)
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        failing_since=timezone.now() - timezone.timedelta(hours=2)
    )
    publish(tenant)
    run_worker()

    subscription.refresh_from_db()
    assert not subscription.enabled
    assert "no successful delivery since" in subscription.disabled_reason
    assert Event.objects.filter(type="SubscriptionDisabled").count() == 1


def test_a_success_clears_the_failing_period(tenant, receiver):
    receiver.answer(Answer(status=500))
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    subscription.refresh_from_db()
    assert subscription.failing_since is not None

    come_due()
    run_worker()
    subscription.refresh_from_db()
    assert subscription.failing_since is None and subscription.last_success is not None


def test_it_times_out_a_receiver_that_does_not_answer(tenant, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.answer(Answer(delay=1.0))
    subscribe(tenant, receiver)
    publish(tenant)
    # One drain (matching and the first attempt), not run_worker's two: the retry's full
    # jitter starts at 0, so a second drain, on a slow machine, now and then found it due.
    dispatch.drain(WORKER)

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and "Timeout" in attempt.error
    assert WebhookDelivery.objects.get().state == State.RETRYING


def test_it_refuses_at_delivery_time_an_address_no_longer_allowed(tenant, receiver, settings):
    subscription = subscribe(tenant, receiver, url=receiver.url.replace("127.0.0.1", "localhost"))
    settings.WEBHOOK_ALLOWED_HOSTS = []
    publish(tenant)
    run_worker()

    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == State.DEAD
    assert "127.0.0.1" in delivery.last_error
    assert subscription.pk


def test_a_slow_receiver_does_not_hold_up_a_fast_one(tenant, receiver, settings):
    from tests.integrations.receiver import Receiver

    settings.WEBHOOK_PER_ENDPOINT_CONCURRENCY = 2
    slow = Receiver()
    try:
        slow.default = Answer(delay=1.0)
        subscribe(tenant, slow)
        subscribe(tenant, receiver)
        for n in range(8):
            publish(tenant, n=n)
        run_worker()

        assert len(receiver.received) == len(slow.received) == 8
        # Every fast delivery landed before the slow receiver answered its first one...
        assert max(r.at for r in receiver.received) < min(r.at for r in slow.received)
        # ...while the slow one was sent 2 at a time: four rounds of a second.
        answered = sorted(r.at for r in slow.received)
        assert answered[-1] - answered[0] >= 2.7
    finally:
        slow.close()


def test_it_signs_with_both_secrets_during_a_rotation_overlap(tenant, receiver, settings):
    subscription = subscribe(tenant, receiver)
    old = receiver.secrets.pop()
    new, _ = rotate_secret(subscription=subscription)
    publish(tenant)
    run_worker()

    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver holding either one verifies it
        receiver.secrets = [secret]
        assert receiver.verify(got.body, got.headers) is not None


def test_it_signs_with_the_new_secret_only_after_the_overlap(tenant, receiver, settings):
    settings.WEBHOOK_SECRET_OVERLAP_SECONDS = 0
    subscription = subscribe(tenant, receiver)
    old = receiver.secrets.pop()
    rotate_secret(subscription=subscription)
    publish(tenant)
    run_worker()

    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    receiver.secrets = [old]
    assert receiver.verify(got.body, got.headers) is None


def test_it_keeps_the_secret_encrypted_at_rest(tenant, receiver):
    from django.db import connection

    subscription = subscribe(tenant, receiver)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM integrations_webhooksubscription WHERE id = %s",
            [subscription.pk.hex if connection.vendor == "sqlite" else subscription.pk],
        )
        (stored,) = cursor.fetchone()
    stored = bytes(stored).decode() if not isinstance(stored, str) else stored
    assert "whsec_" not in stored and subscription.secret not in stored


def test_the_body_is_the_same_bytes_on_every_attempt(tenant, receiver):
    receiver.answer(Answer(status=500))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    come_due()
    run_worker()

    first, second = receiver.received
    assert first.body == second.body
    assert json.loads(first.body)["type"] == "DeploymentPromoted"


def test_it_prunes_delivered_deliveries_past_retention_and_keeps_failed_ones(tenant, receiver):
    receiver.answer(Answer(status=200), Answer(status=500))
    subscribe(tenant, receiver)
    publish(tenant, n=1)
    publish(tenant, n=2)
    run_worker()
    old = timezone.now() - timezone.timedelta(days=31)
    WebhookDelivery.objects.update(created=old)

    from core.runtime import scheduling

    scheduling.prune()

    assert list(WebhookDelivery.objects.values_list("state", flat=True)) == [State.RETRYING]
    assert WebhookAttempt.objects.count() == 1


def test_it_reuses_connections_to_an_endpoint(tenant, receiver):
    subscribe(tenant, receiver)
    for n in range(20):
        publish(tenant, n=n)
    run_worker()

    ports = {r.client_port for r in receiver.received}
    assert len(receiver.received) == 20
    assert len(ports) <= 8  # at most WEBHOOK_PER_ENDPOINT_CONCURRENCY connections


def test_it_puts_back_unattempted_what_a_batch_had_no_time_to_send(tenant, receiver, settings):
    settings.WEBHOOK_PER_ENDPOINT_CONCURRENCY = 1
    settings.WEBHOOK_BATCH_SECONDS = 0.2
    receiver.default = Answer(delay=0.3)
    subscribe(tenant, receiver)
    for n in range(3):
        publish(tenant, n=n)
    dispatch.drain(WORKER)  # matching
    dispatch.drain(WORKER)  # one POST a batch, the others back to the queue each time

    assert len(receiver.received) == 3
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {(State.DELIVERED, 1)}
    queued = Message.objects.filter(worker=WORKER, event__type="WebhookDeliveryQueued")
    assert set(queued.values_list("state", "attempts")) == {("done", 0)}
    assert not Failure.objects.exists()


def test_a_receiver_trickling_its_reply_cannot_hold_the_worker(tenant, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.answer(Answer(body=b"x" * 5000, trickle=0.05))
    subscribe(tenant, receiver)
    publish(tenant)
    started = time.monotonic()
    run_worker()

    assert time.monotonic() - started < 3  # not 5,000 x 50 ms
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 200 and 0 < len(attempt.response_body) < 1024
    assert WebhookDelivery.objects.get().state == State.DELIVERED


def test_it_takes_no_message_for_events_no_subscription_wants(tenant, other_tenant, receiver):
    subscribe(tenant, receiver, types=["Incident*"])
    # Events that name a trace, which TelemetryCorrelationWorker takes (it takes no others).
    trace = {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736"}
    wanted = publish(tenant, "IncidentOpened", **trace)
    unwanted = publish(tenant, "DeploymentPromoted", **trace)
    elsewhere = publish(other_tenant, "IncidentOpened", **trace)

    mine = Message.objects.filter(worker=WORKER)
    assert list(mine.values_list("event_id", flat=True)) == [wanted.event_id]
    for envelope in (unwanted, elsewhere):  # the other subscribers still get theirs
        assert Message.objects.filter(event_id=envelope.event_id).exists()
