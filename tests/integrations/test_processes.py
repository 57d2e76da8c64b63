"""Webhooks delivered by real qclusters, to a real receiver that verifies every signature."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest
from django.utils import timezone
from django_q.models import Failure as QueueFailure

from core.envelope import Envelope
from core.models import DeadLetter
from core.services import build_envelope, publish_envelopes
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks.delivery import prune
from integrations.webhooks.subscriptions import create_subscription, delete_subscription
from tests.core.test_processes import publish_many, qcluster, wait_until
from tests.integrations.receiver import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)
WEBHOOK_ENV = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_REQUIRE_HTTPS": "0"}


def stop(*clusters) -> None:
    for cluster in clusters:
        os.kill(cluster.pid, signal.SIGTERM)
    for cluster in clusters:
        cluster.wait(timeout=60)


def subscribe(tenant, receiver) -> WebhookSubscription:
    subscription, secret = create_subscription(
        tenant=tenant, url=receiver.url, event_types=["DeploymentPromoted"]
    )
    receiver.secrets.append(secret)
    return subscription


def delivered() -> int:
    return WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED).count()


def test_a_running_cluster_delivers_each_published_event_once(tenant, receiver, tmp_path):
    receiver.answer(*[Answer(status=503, headers={"Retry-After": "1"})] * 5)
    subscribe(tenant, receiver)
    cluster = qcluster(tmp_path, **WEBHOOK_ENV)
    try:
        publish_many(tenant, 200)
        wait_until(
            lambda: delivered() == 200,
            timeout=90,
            what="200 deliveries",
            log=tmp_path / "cluster.log",
        )
    finally:
        stop(cluster)

    ids = Counter(r.headers["webhook-id"] for r in receiver.received if r.verified)
    assert len(ids) == 200
    assert all(r.verified for r in receiver.received)
    assert len(receiver.received) == 205  # five 503s, each retried once after its Retry-After


def test_two_clusters_on_one_database_never_deliver_twice(postgres, tenant, receiver, tmp_path):
    receiver.default = Answer(delay=0.02)
    subscribe(tenant, receiver)
    clusters = [qcluster(tmp_path, **WEBHOOK_ENV, DISPATCH_CONCURRENCY="4") for _ in range(2)]
    try:
        publish_many(tenant, 600)
        wait_until(
            lambda: delivered() == 600,
            timeout=120,
            what="600 deliveries",
            log=tmp_path / "cluster.log",
        )
    finally:
        stop(*clusters)

    ids = Counter(r.headers["webhook-id"] for r in receiver.received)
    assert len(ids) == 600 and set(ids.values()) == {1}


def test_deleting_a_subscription_mid_drain_affects_that_subscription_alone(
    postgres, tenant, other_tenant, webhook_settings, tmp_path
):
    """Two tenants' events fanned out by a real cluster; one tenant's subscription deleted while
    its deliveries go out, three times over. Before: the batch failed at commit on the vanished
    subscription and was rolled back after its POSTs (drains failed, events dead-lettered, the
    other tenant's webhooks POSTed twice)."""
    receiver = Receiver()
    receiver.default = Answer(delay=0.01)  # a batch's POSTs take a while
    kept = subscribe(other_tenant, receiver)
    cluster = qcluster(tmp_path, **WEBHOOK_ENV)
    try:
        for round_ in range(1, 4):
            doomed = subscribe(tenant, receiver)
            mine = WebhookDelivery.objects.filter(subscription=doomed)
            theirs = WebhookDelivery.objects.filter(subscription=kept, state="delivered")
            publish_envelopes(
                [envelope(t, round_, n) for n in range(300) for t in (tenant, other_tenant)]
            )
            wait_until(lambda m=mine: m.count() > 50, timeout=60, what="deliveries under way")
            delete_subscription(subscription=doomed)
            wait_until(
                lambda t=theirs, r=round_: t.count() == 300 * r,
                timeout=120,
                what="the other tenant's deliveries",
                log=tmp_path / "cluster.log",
            )
    finally:
        stop(cluster)
        receiver.close()

    assert not QueueFailure.objects.exists()  # no failed drain
    assert not DeadLetter.objects.exists()
    theirs = Counter(
        r.headers["webhook-id"]
        for r in receiver.received
        if r.payload["data"]["tenantId"] == str(other_tenant.pk)
    )
    assert len(theirs) == 900 and set(theirs.values()) == {1}
    prune(now=timezone.now())  # what a batch still held when it was deleted
    assert not WebhookSubscription.objects.filter(tenant=tenant).exists()
    assert not WebhookDelivery.objects.filter(tenant_id=tenant.pk).exists()


def envelope(tenant, round_: int, n: int) -> Envelope:
    return build_envelope(
        tenant_id=tenant.pk, type="DeploymentPromoted", data={"r": round_, "n": n}
    )
