"""Webhooks delivered by real qclusters, to a real receiver that verifies every signature."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from integrations import services
from integrations.models import WebhookDelivery
from tests.core.test_processes import publish_many, qcluster, wait_until
from tests.integrations.receiver import Answer

pytestmark = pytest.mark.django_db(transaction=True)
WEBHOOK_ENV = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_REQUIRE_HTTPS": "0"}


def stop(*clusters) -> None:
    for cluster in clusters:
        os.kill(cluster.pid, signal.SIGTERM)
    for cluster in clusters:
        cluster.wait(timeout=60)


def subscribe(tenant, receiver) -> None:
    _, secret = services.create_subscription(
        tenant=tenant, url=receiver.url, event_types=["DeploymentPromoted"]
    )
    receiver.secrets.append(secret)


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
