"""Delivering: the signed POSTs of a batch's deliveries and their outcomes; redelivering failed
ones (the admin's and the API's redeliver and recover); marking one dead; pruning old ones.

A batch's deliveries are POSTed concurrently (core.outbound); every attempt is recorded with
each delivery's new state, the subscriptions' health and one WebhookDelivered per success, in a
handful of statements for the whole batch. What a reply means is decisions.outcome's to say."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from time import monotonic

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import bulk, outbound, services
from core.envelope import Envelope, TenantId
from core.models import Message
from core.runtime import queue, registry, replay
from core.runtime.errors import Deferred, PermanentError, TransientError
from core.runtime.registry import RetryPolicy
from integrations import signing
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from integrations.webhooks import QUEUED, WORKER, decisions, prometheus, subscriptions

log = logging.getLogger(__name__)
USER_AGENT = f"worker-platform-webhooks/{settings.PLATFORM_VERSION}"
State = WebhookDelivery.State


# --- Redelivery ------------------------------------------------------------------------------


FAILED = (State.DEAD, State.RETRYING)


def redeliver(*, delivery: WebhookDelivery) -> bool:
    """Send a failed delivery again, now: a dead one's dead letter is replayed, a retrying
    one's retry is brought forward. False if it is not failed (delivered, or on its way)."""
    _ensure_enabled(delivery.subscription)
    return _send_again(delivery.tenant_id, [(delivery.pk, delivery.state)]) == 1


def recover(*, subscription: WebhookSubscription, since: datetime) -> int:
    """Redeliver every failed delivery of the subscription created since `since`; returns how
    many were sent again (a second call finds them on their way and says 0)."""
    _ensure_enabled(subscription)
    failed = subscription.deliveries.filter(created__gte=since, state__in=FAILED)
    # Listed whole before anything is written: no cursor stays open under the writes and the
    # kick (issue 9: a stream of them died with "Cannot operate on a closed database").
    return _send_again(subscription.tenant_id, list(failed.values_list("id", "state")))


def _send_again(tenant_id: TenantId, deliveries: list[tuple[uuid.UUID, str]]) -> int:
    """Bring the deliveries' retries forward and replay their dead letters, in one transaction;
    the worker is kicked once, after it commits. Counted are those this call sent again: not a
    retry already due (a call before brought it forward), nor one being sent at this moment
    (its message leased: its outcome, not this call, decides when it comes next)."""
    if not deliveries:
        return 0
    commands = {decisions.queued_event_id(pk): state for pk, state in deliveries}
    messages = Message.objects.select_related("dead_letter").filter(
        event_id__one_of=set(commands), worker=WORKER, tenant_id=tenant_id
    )
    dead, retrying = [], set()
    for message in messages:
        state = commands[message.event_id]
        if state == State.DEAD and message.state == Message.State.DEAD:
            dead.append(message.dead_letter)
        elif state == State.RETRYING and message.state == Message.State.PENDING:
            retrying.add(message.pk)
    now = timezone.now()
    with transaction.atomic():
        brought = 0
        if retrying:
            brought = (
                Message.objects.filter(
                    id__one_of=retrying, state=Message.State.PENDING, due_at__gt=now
                )
                .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
                .update(due_at=now)
            )
        if brought:
            transaction.on_commit(lambda: queue.kick([WORKER]))
        replayed = replay.replay_all(dead)
    return brought + len(replayed)


def _ensure_enabled(subscription: WebhookSubscription) -> None:
    # Sent to a disabled subscription, it would only be dead-lettered again at once.
    if not subscription.enabled:
        raise ValidationError(
            f"Subscription {subscription.pk} is disabled "
            f"({subscription.disabled_reason or 'by its owner'}): enable it, then redeliver."
        )


# --- Sending ---------------------------------------------------------------------------------


def deliver(envelopes: list[Envelope]) -> dict[uuid.UUID, Exception]:
    """Send the batch's deliveries; return the failures, by the eventId of their command."""
    if not envelopes:
        return {}
    by_delivery = {uuid.UUID(e.data["deliveryId"]): e for e in envelopes}
    owners = dict(
        WebhookDelivery.objects.filter(id__one_of=set(by_delivery)).values_list(
            "id", "subscription_id"
        )
    )
    # The subscriptions first, then their deliveries, the order in which removing one takes
    # them. A retry of a subscription deleted meanwhile, or of a delivery removed with it,
    # ends here quietly: it is handled, not failed.
    held = subscriptions.hold(set(owners.values()))
    kept = [pk for pk in by_delivery if owners.get(pk) in held]
    for pk in by_delivery.keys() - set(kept):
        log.info("delivery %s: its subscription was deleted; not sent", pk)
    deliveries = list(
        WebhookDelivery.objects.select_for_update().filter(id__in=kept).order_by("id")
    )
    _attach_subscriptions(deliveries)
    failures: dict[uuid.UUID, Exception] = {}
    sendable = []
    for delivery in deliveries:
        envelope = by_delivery[delivery.pk]
        envelope.ensure_tenant(delivery.tenant_id)
        if delivery.state not in WebhookDelivery.SENDABLE:
            log.info("delivery %s is %s: not sent again", delivery.pk, delivery.state)
        elif not delivery.subscription.enabled:
            failures[envelope.event_id] = PermanentError(
                f"subscription {delivery.subscription_id} is disabled "
                f"({delivery.subscription.disabled_reason or 'by its owner'}); "
                "enable it, then redeliver"
            )
        else:
            sendable.append(delivery)
    for pk, failure in send(sendable).items():
        failures[by_delivery[pk].event_id] = failure
    return failures


def _attach_subscriptions(deliveries: list[WebhookDelivery]) -> None:
    # One query, and one instance per subscription: its secrets are decrypted once, not once
    # per delivery, and its health sums up all its deliveries' outcomes.
    ids = {d.subscription_id for d in deliveries}
    found = WebhookSubscription.objects.select_related("tenant").in_bulk(list(ids))
    for delivery in deliveries:
        delivery.subscription = found[delivery.subscription_id]


def send(deliveries: list[WebhookDelivery]) -> dict[uuid.UUID, Exception]:
    """POST the deliveries and record the outcomes; returns the failures by delivery id,
    Deferred for those the batch had no time to start (left as they were)."""
    if not deliveries:
        return {}
    states = {d.pk: d.state for d in deliveries}
    # In flight while the POSTs are out; readers outside this transaction see the state before
    # it or the outcome, and a second claimer of the same delivery waits on the row lock.
    WebhookDelivery.objects.filter(id__one_of=set(states)).update(state=State.IN_FLIGHT)
    now = timezone.now()
    # A batch's POSTs must end well within the lease of its messages (a slow endpoint's line
    # can be long): what has not started by then goes back to the queue unattempted.
    deadline = monotonic() + settings.WEBHOOK_BATCH_SECONDS
    replies = outbound.post_all([signed_request(d, now=now) for d in deliveries], deadline=deadline)
    failures: dict[uuid.UUID, Exception] = {}
    sent, replied = [], []
    for delivery, reply in zip(deliveries, replies, strict=True):
        if isinstance(reply, Deferred):
            failures[delivery.pk] = reply
        else:
            sent.append(delivery)
            replied.append(reply)
    bulk.update_rows(WebhookDelivery, ["state"], [(pk, states[pk]) for pk in failures])
    for delivery in sent:
        if states[delivery.pk] == State.DEAD:  # sent again after it died: a new round
            delivery.round_attempts = 0
    outcomes = [_outcome(d, reply, now) for d, reply in zip(sent, replied, strict=True)]
    _record(sent, replied, outcomes, now)
    for delivery, failure in zip(sent, outcomes, strict=True):
        if failure is not None:
            failures[delivery.pk] = failure
    return failures


def signed_request(delivery: WebhookDelivery, *, now: datetime) -> outbound.Request:
    """The POST of one attempt: the stored body, signed for this attempt's timestamp."""
    body = delivery.payload.encode()
    timestamp = int(now.timestamp())
    secrets = delivery.subscription.signing_secrets(now=now)
    return outbound.Request(
        url=delivery.subscription.url,
        body=body,
        headers={
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                secrets=secrets, webhook_id=delivery.webhook_id, timestamp=timestamp, body=body
            ),
            "traceparent": f"00-{delivery.trace_id}-{delivery.span_id}-01",
        },
    )


def _outcome(delivery: WebhookDelivery, reply, now: datetime) -> Exception | None:
    """None for a success; otherwise the failure to report, transient or permanent (see
    decisions.outcome), after disabling the subscription if the reply says so."""
    subscription = delivery.subscription
    decided = decisions.outcome(
        reply,
        failing_since=subscription.failing_since,
        failing_too_long=subscription.failing_too_long(now=now),
        now=timezone.now(),
        retry_cap=settings.WEBHOOK_RETRY_MAX_SECONDS,
    )
    if decided.disable:
        subscriptions.disable(subscription, reason=decided.disable, now=now)
    if decided.delivered:
        return None
    if decided.permanent:
        return PermanentError(decided.failure)
    retry_after = decided.retry_after
    if retry_after is None:
        # The worker's policy, chosen here so that the delivery can show when it comes next.
        retry_after = _policy().delay(delivery.round_attempts + 1).total_seconds()
    return TransientError(decided.failure, retry_after=retry_after)


def _policy() -> RetryPolicy:
    return registry.get(WORKER).retry


def _record(deliveries, replies, outcomes, now: datetime) -> None:
    """Every attempt, each delivery's new state, the subscriptions' health, and one
    WebhookDelivered per success: a handful of statements for the whole batch."""
    attempts, delivered, changed = [], [], {}
    for delivery, reply, failure in zip(deliveries, replies, outcomes, strict=True):
        delivery.attempts += 1
        attempts.append(_attempt(delivery, reply, now))
        delivery.last_attempt_at = now
        delivery.last_status = reply.status if isinstance(reply, outbound.Reply) else None
        subscription = delivery.subscription
        if failure is None:
            delivery.state, delivery.delivered_at, delivery.last_error = (
                State.DELIVERED,
                reply.finished,
                "",
            )
            delivery.next_attempt_at = None
            subscription.last_success, subscription.failing_since = reply.finished, None
            delivered.append(delivery)
        else:
            delivery.state, delivery.last_error = State.RETRYING, str(failure)[:2000]
            delivery.round_attempts += 1
            delivery.next_attempt_at = decisions.next_attempt(failure, now)
            subscription.failing_since = subscription.failing_since or now
        changed[subscription.pk] = subscription
    bulk.insert(WebhookAttempt, attempts, columns=ATTEMPT_COLUMNS)
    prometheus.count_attempts(replies)
    bulk.update_rows(
        WebhookDelivery,
        DELIVERY_OUTCOME_FIELDS,
        [(d.pk, *(getattr(d, f) for f in DELIVERY_OUTCOME_FIELDS)) for d in deliveries],
    )
    # In one order, so that two batches updating the same subscriptions cannot deadlock.
    health = ["last_success", "failing_since"]
    bulk.update_rows(
        WebhookSubscription,
        health,
        sorted((s.pk, s.last_success, s.failing_since) for s in changed.values()),
    )
    services.publish_envelopes([_delivered_event(d) for d in delivered])


ATTEMPT_COLUMNS = [
    "delivery_id", "tenant_id", "number", "at", "status_code", "latency_ms", "error",
    "response_body",
]  # fmt: skip
DELIVERY_OUTCOME_FIELDS = [
    "state", "attempts", "round_attempts", "last_attempt_at", "last_status", "delivered_at",
    "next_attempt_at", "last_error",
]  # fmt: skip


def _attempt(delivery: WebhookDelivery, reply, now: datetime) -> WebhookAttempt:
    attempt = WebhookAttempt(
        delivery=delivery, tenant_id=delivery.tenant_id, number=delivery.attempts, at=now
    )
    if isinstance(reply, outbound.Reply):
        attempt.status_code = reply.status
        attempt.latency_ms = round(reply.seconds * 1000)
        attempt.response_body = reply.body.decode(errors="replace")
    else:
        attempt.error = decisions.describe(reply)[:2000]
    return attempt


def _delivered_event(delivery: WebhookDelivery) -> Envelope:
    return services.build_envelope(
        tenant_id=delivery.tenant_id,
        type="WebhookDelivered",
        data={
            "deliveryId": str(delivery.pk),
            "subscriptionId": str(delivery.subscription_id),
            "eventId": str(delivery.event_id),
            "eventType": delivery.event_type,
            "attempts": delivery.attempts,
        },
        event_id=decisions.delivered_event_id(delivery.pk, delivery.attempts),
        trace_id=delivery.trace_id,
        span_id=delivery.span_id,
        source="webhooks",
        source_id=str(delivery.pk),
    )


# --- Dead, and pruned ------------------------------------------------------------------------


def mark_dead(envelope: Envelope, reason: str) -> None:
    """The runtime dead-lettered one of the worker's messages. For a delivery: it is dead, and
    IntegrationFailed says so."""
    delivery_pk = envelope.data.get("deliveryId")
    if envelope.type != QUEUED or not delivery_pk:
        return
    mine = WebhookDelivery.objects.filter(pk=delivery_pk, tenant_id=envelope.tenant_id)
    subscription_id = mine.values_list("subscription_id", flat=True).first()
    # Its subscription first, as everywhere: one deleted has nothing left to mark or tell.
    if subscription_id is None or not subscriptions.hold({subscription_id}):
        return
    if not mine.update(state=State.DEAD, last_error=reason[:2000], next_attempt_at=None):
        return
    delivery = mine.select_related("subscription__tenant").get()
    services.publish(
        tenant=delivery.subscription.tenant,
        type="IntegrationFailed",
        data={
            "kind": "webhook",
            "deliveryId": str(delivery.pk),
            "subscriptionId": str(delivery.subscription_id),
            "url": delivery.subscription.url,
            "eventId": str(delivery.event_id),
            "eventType": delivery.event_type,
            "attempts": delivery.attempts,
            "reason": reason,
        },
        trace_id=delivery.trace_id,
        span_id=delivery.span_id,
        source="webhooks",
        source_id=str(delivery.pk),
    )


PRUNE_CHUNK = 1000


def prune(*, now: datetime, **kwargs) -> int:
    """Delete delivered deliveries (and their attempts) older than
    WEBHOOK_DELIVERY_RETENTION_DAYS, a chunk at a time; failed ones stay until they are
    delivered or their subscription is deleted, so that they can still be recovered. And
    remove the subscriptions deleted while a batch held them."""
    marked = WebhookSubscription.objects.filter(deleted__isnull=False)
    for pk in list(marked.values_list("pk", flat=True)):
        subscriptions.purge(pk, lock_seconds=subscriptions.PRUNE_PURGE_LOCK_SECONDS)
    cutoff = now - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    old = WebhookDelivery.objects.filter(state=State.DELIVERED, created__lt=cutoff)
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:PRUNE_CHUNK]):
        WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
        deleted += WebhookDelivery.objects.filter(id__in=ids).delete()[0]
    return deleted
