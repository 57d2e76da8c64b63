"""Helpers shared by the webhook tests: subscribe a receiver, publish, run the worker."""

from __future__ import annotations

from django.utils import timezone

from core import services as core_services
from core.models import Message
from core.runtime import dispatch
from integrations.limits.models import RateBucket
from integrations.limits.store import committing
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks.subscriptions import create_subscription
from tests.integrations.receiver import Answer

WORKER = "WebhookDeliveryWorker"


def subscribe(tenant, receiver, types=("DeploymentPromoted",), url=None) -> WebhookSubscription:
    """Subscribe the receiver, and hand it the secret, as its owner would."""
    subscription, secret = create_subscription(
        tenant=tenant, url=url or receiver.url, event_types=list(types)
    )
    receiver.secrets.append(secret)
    return subscription


def publish(tenant, type="DeploymentPromoted", **data):
    return core_services.publish(tenant=tenant, type=type, data=data or {"version": "1.2.3"})


def run_worker() -> None:
    """Drain what is due now: matching (with first attempts), then retries that came due."""
    dispatch.drain(WORKER)
    dispatch.drain(WORKER)


def come_due() -> None:
    """Skip the wait before the next retry, as if its time had come."""
    Message.objects.filter(worker=WORKER, state=Message.State.PENDING).update(due_at=timezone.now())


def waits_over() -> None:
    """As come_due, and the endpoint hosts' buckets, blocked by a Retry-After, are free again:
    the wait the receiver asked for is over."""
    come_due()
    # Where the buckets are written: on PostgreSQL inside the test's transaction, a connection
    # of their own that commits at once (integrations.limits.store).
    with committing() as db:
        buckets = RateBucket.objects.using(db.alias)
        buckets.filter(key__startswith="tenant:").update(blocked_until=0)


def fail_eight_times(tenant, receiver) -> None:
    """Publish one event whose delivery fails all eight attempts; the receiver then recovers."""
    receiver.default = Answer(status=500)
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    for _ in range(7):
        come_due()
        run_worker()
    receiver.default = Answer(status=200)
    assert WebhookDelivery.objects.get().state == WebhookDelivery.State.DEAD
