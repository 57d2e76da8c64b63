"""A subscription deleted, disabled or changed while WebhookDeliveryWorker sends to it: that
subscription alone is affected, and a batch never fails for a row that vanished under it.

The races are staged with threads, each with its own database connection: a batch's POST is
held at the receiver (a gate) while another transaction deletes or changes the subscription."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core.envelope import Envelope
from core.models import DeadLetter, Event, Message
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks import subscriptions
from integrations.webhooks.delivery import mark_dead, prune
from integrations.webhooks.subscriptions import (
    delete_subscription,
    rotate_secret,
    update_subscription,
)
from tests.core.test_processes import wait_until
from tests.integrations.receiver import Answer, Receiver
from tests.integrations.webhooks import WORKER, come_due, publish, run_worker, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def threads():
    pool = ThreadPoolExecutor(max_workers=4)

    def submit(fn, *args, **kwargs) -> Future:
        def run():
            try:
                return fn(*args, **kwargs)
            finally:
                connection.close()  # the thread's own

        return pool.submit(run)

    yield submit
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gated(webhook_settings):
    """A second receiver, whose next POST is held until the test opens the gate."""
    receiver = Receiver()
    receiver.gate = threading.Event()
    receiver.answer(Answer(gate=receiver.gate))
    yield receiver
    receiver.gate.set()
    receiver.close()


@pytest.fixture
def patient_deletes(monkeypatch):
    # A delete waits this long for the batches holding its subscription before it leaves the
    # removal to the next prune: long enough here for the held POST to be let go.
    monkeypatch.setattr(subscriptions, "PURGE_LOCK_SECONDS", 30)


def waits_or_done(future: Future) -> bool:
    """The other thread finished, or waits for a lock the batch holds (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return future.done() or cursor.fetchone()[0] > 0


def gone(subscription: WebhookSubscription) -> bool:
    return not (
        WebhookSubscription.objects.filter(pk=subscription.pk).exists()
        or WebhookDelivery.objects.filter(subscription_id=subscription.pk).exists()
    )


def assert_all_handled() -> None:
    assert not DeadLetter.objects.exists()
    assert set(Message.objects.filter(worker=WORKER).values_list("state", flat=True)) == {"done"}


def test_it_commits_a_batch_whose_subscription_is_deleted_while_its_posts_are_out(
    postgres, tenant, other_tenant, receiver, gated, threads, patient_deletes
):
    doomed = subscribe(tenant, gated)
    subscribe(other_tenant, receiver)
    publish(tenant)
    publish(other_tenant)  # in the same batch

    batch = threads(run_worker)
    gated.wait_for_arrivals(1)
    deleting = threads(delete_subscription, subscription=doomed)
    wait_until(lambda: waits_or_done(deleting), timeout=30, what="the delete to run")
    gated.gate.set()
    batch.result(timeout=60)  # before: IntegrityError at commit, the whole batch rolled back
    deleting.result(timeout=60)

    assert_all_handled()
    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get(tenant_id=other_tenant.pk).state == "delivered"
    assert gone(doomed)


def test_it_commits_a_retry_whose_subscription_is_deleted_while_it_is_out(
    postgres, tenant, gated, threads, patient_deletes
):
    gated.answers.appendleft(Answer(status=500))  # the first attempt fails; the retry is held
    doomed = subscribe(tenant, gated)
    publish(tenant)
    run_worker()
    assert WebhookDelivery.objects.get().state == "retrying"
    come_due()

    batch = threads(run_worker)
    gated.wait_for_arrivals(2)
    deleting = threads(delete_subscription, subscription=doomed)
    wait_until(lambda: waits_or_done(deleting), timeout=30, what="the delete to run")
    gated.gate.set()
    batch.result(timeout=60)
    deleting.result(timeout=60)  # before: IntegrityError, the attempt written meanwhile

    assert_all_handled()
    assert gone(doomed)


def test_it_removes_at_the_next_prune_what_a_batch_held_past_the_deletes_wait(
    postgres, api, tenant, gated, threads, monkeypatch
):
    monkeypatch.setattr(subscriptions, "PURGE_LOCK_SECONDS", 0.2)
    doomed = subscribe(tenant, gated)
    publish(tenant)
    batch = threads(run_worker)
    gated.wait_for_arrivals(1)

    response = api("delete", f"/api/webhooks/subscriptions/{doomed.pk}")

    assert response.status_code == 204
    assert api("get", f"/api/webhooks/subscriptions/{doomed.pk}").status_code == 404
    assert not gone(doomed)  # the batch still holds it
    gated.gate.set()
    batch.result(timeout=60)
    assert_all_handled()
    prune(now=timezone.now())
    assert gone(doomed)


def test_it_changes_a_subscription_without_waiting_for_the_posts_out_to_it(
    postgres, admin_client, tenant, gated, threads
):
    subscription = subscribe(tenant, gated)
    publish(tenant)
    batch = threads(run_worker)
    gated.wait_for_arrivals(1)

    changing = threads(update_subscription, subscription=subscription, description="moved")
    editing = threads(
        admin_client.post,
        reverse("admin:integrations_webhooksubscription_change", args=[subscription.pk]),
        {"event_types": "DeploymentPromoted", "description": "moved", "_save": "Save"},
    )
    changing.result(timeout=20)  # while the POST is still held
    assert editing.result(timeout=20).status_code == 302
    gated.gate.set()
    batch.result(timeout=60)

    subscription.refresh_from_db()
    assert (subscription.enabled, subscription.description) == (False, "moved")
    assert subscription.disabled_reason == "disabled by its owner"
    assert subscription.last_success is not None  # the batch's health update, kept
    assert WebhookDelivery.objects.get().state == "delivered"
    assert_all_handled()


@pytest.mark.parametrize("removed", [True, False], ids=["removed", "marked-deleted"])
def test_it_ends_the_retries_of_a_deleted_subscription_quietly(tenant, receiver, removed):
    receiver.answer(Answer(status=500))
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    if removed:
        delete_subscription(subscription=subscription)
    else:  # a batch held it: its rows wait for the next prune
        WebhookSubscription.objects.filter(pk=subscription.pk).update(
            deleted=timezone.now(), enabled=False
        )
    come_due()
    run_worker()

    assert len(receiver.received) == 1
    assert_all_handled()


def test_it_tells_nobody_of_a_dead_delivery_whose_subscription_is_deleted(tenant, receiver):
    receiver.answer(Answer(status=500))
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    (command,) = Message.objects.filter(worker=WORKER, state="pending")
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        deleted=timezone.now(), enabled=False
    )

    mark_dead(Envelope.of(command.event), "gave up")

    assert WebhookDelivery.objects.get().state == "retrying"
    assert not Event.objects.filter(type="IntegrationFailed").exists()


def test_it_refuses_to_change_a_subscription_deleted_since_it_was_read(tenant, receiver, api):
    subscription = subscribe(tenant, receiver)
    delete_subscription(subscription=subscription)

    with pytest.raises(WebhookSubscription.DoesNotExist):
        update_subscription(subscription=subscription, enabled=True)
    with pytest.raises(WebhookSubscription.DoesNotExist):
        rotate_secret(subscription=subscription)
    path = f"/api/webhooks/subscriptions/{subscription.pk}"
    assert api("patch", path, {"enabled": True}).status_code == 404
    assert api("post", f"{path}/rotate-secret").status_code == 404
