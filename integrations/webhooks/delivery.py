"""Delivering: the signed POSTs of a batch's deliveries and their outcomes; redelivering failed
ones (the admin's and the API's redeliver and recover); marking one dead; pruning old ones.

A batch's deliveries are POSTed concurrently (core.outbound); every attempt is recorded with
each delivery's new state, the subscriptions' health and one WebhookDelivered per success, in a
handful of statements for the whole batch. What a reply means is decisions.outcome's to say.

Each endpoint host of a tenant has a circuit and a rate bucket (integrations.limits, key
limits.keys.webhook_host): before the POSTs, a host's deliveries go only as far as its circuit
permits and its bucket grants; the others are held back with NotYet, due again when the circuit
or the bucket says, their attempts unspent. After them, the host's circuit counts the replies
(a run of 5xx and refused connections opens it) and a 429 or 503 with Retry-After blocks its
bucket until then, so that the host's other deliveries wait instead of failing.

A delivery answered 429 (or 503 with a Retry-After longer than its next backoff) waits too: its
POST is recorded, but it is NotYet, its attempts unspent, due again when the Retry-After or the
host's bucket says, whichever is later (decisions.py says why, and how the waits are bounded:
WEBHOOK_MAX_WAIT_SECONDS)."""

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
from core.runtime.errors import Deferred, NotYet, PermanentError, TransientError
from core.runtime.registry import RetryPolicy
from integrations import signing
from integrations.limits import buckets, circuits, keys
from integrations.limits import decisions as limits
from integrations.limits.store import committing
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
    """POST the deliveries that their hosts' circuits and buckets let go, and record the
    outcomes; returns the failures by delivery id: NotYet for those held back, Deferred for
    those the batch had no time to start (both left as they were)."""
    if not deliveries:
        return {}
    # The batch's limits on one connection of their own, opened once (limits.store).
    with committing():
        going, waiting = _admit(deliveries, now=timezone.now())
        failures: dict[uuid.UUID, Exception] = {d.pk: wait for d, wait in waiting}
        _hold_back(waiting)
        failures.update(_send(going))
    return failures


def _send(deliveries: list[WebhookDelivery]) -> dict[uuid.UUID, Exception]:
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
            delivery.round_attempts, delivery.waited_seconds = 0, 0.0
    after = timezone.now()  # the replies are in: the waits they ask for start now
    blocked = _observe(sent, replied, now=after)
    outcomes = [
        _outcome(d, reply, now, after=after, blocked=blocked.get(host_key(d)))
        for d, reply in zip(sent, replied, strict=True)
    ]
    _record(sent, replied, outcomes, now)
    for delivery, failure in zip(sent, outcomes, strict=True):
        if failure is not None:
            failures[delivery.pk] = failure
    return failures


# --- The hosts' circuits and buckets ------------------------------------------------------------


def host_key(delivery: WebhookDelivery) -> str:
    return keys.webhook_host(delivery.tenant_id, delivery.subscription.url)


def circuit_policy() -> limits.CircuitPolicy:
    """Convoy's defaults for an endpoint (70 % failures of at least 10 calls) over five
    minutes, failing for WEBHOOK_CIRCUIT_SUSTAINED_SECONDS at least: one delivery's retries
    in quick succession (a replay, an operator's recover) do not open it."""
    sustained = getattr(settings, "WEBHOOK_CIRCUIT_SUSTAINED_SECONDS", 30.0)
    return limits.CircuitPolicy(
        window=timedelta(minutes=5),
        minimum_calls=10,
        failure_rate=0.7,
        sustained=timedelta(seconds=sustained),
    )


def _admit(
    deliveries: list[WebhookDelivery], *, now: datetime
) -> tuple[list[WebhookDelivery], list[tuple[WebhookDelivery, NotYet]]]:
    """The deliveries that go now, and those held back with when and why: per host, as many
    as its circuit permits (all, when closed), then as many of those as its bucket grants."""
    hosts: dict[str, list[WebhookDelivery]] = {}
    for delivery in deliveries:
        hosts.setdefault(host_key(delivery), []).append(delivery)
    policy = circuit_policy()
    rate = getattr(settings, "WEBHOOK_HOST_RATE", 1000.0)
    burst = getattr(settings, "WEBHOOK_HOST_BURST", 1000)
    going, waiting = [], []
    for key, group in hosts.items():
        permitted, until = circuits.admit(key=key, want=len(group), now=now, policy=policy)
        why = f"the circuit of {key} is open"
        if permitted:
            granted, next_grant = buckets.take(
                key=key,
                rate=rate,
                burst=burst,
                want=permitted,
                now=now,
                tenant_id=group[0].tenant_id,
            )
            if granted < permitted:
                until, why = next_grant, f"{key} is rate limited"
            permitted = granted
        going += group[:permitted]
        waiting += [(d, NotYet(until or now, why)) for d in group[permitted:]]
    return going, waiting


def _hold_back(waiting: list[tuple[WebhookDelivery, NotYet]]) -> None:
    """Show when the held-back deliveries go next; nothing else of theirs changes."""
    rows = [(d.pk, wait.until) for d, wait in waiting]
    bulk.update_rows(WebhookDelivery, ["next_attempt_at"], rows)
    for delivery, wait in waiting:
        delivery.next_attempt_at = wait.until
        log.info("delivery %s held back until %s: %s", delivery.pk, wait.until, wait.reason)


def _observe(
    deliveries: list[WebhookDelivery], replies: list, *, now: datetime
) -> dict[str, datetime]:
    """Count the replies in their hosts' circuits, and let a Retry-After block the host's
    bucket; returns until when each blocked host's bucket is blocked."""
    slow_after = getattr(settings, "WEBHOOK_SLOW_SECONDS", 5.0)
    counts: dict[str, dict[str, int]] = {}
    tenants, reasons = {}, {}
    blocked: dict[str, datetime] = {}
    for delivery, reply in zip(deliveries, replies, strict=True):
        key = host_key(delivery)
        tenants[key] = delivery.tenant_id
        verdict = decisions.availability(reply, slow_after=slow_after)
        if verdict is not None:
            counts.setdefault(key, {}).setdefault(verdict, 0)
            counts[key][verdict] += 1
        if verdict == decisions.FAILED:
            reasons[key] = decisions.describe(reply)
        if isinstance(reply, outbound.Reply) and reply.status in (429, 503):
            until = buckets.observe(
                key=key,
                headers=reply.headers,
                status=reply.status,
                policy=limits.WEBHOOK,
                now=now,
            )
            if until is not None:
                blocked[key] = max(until, blocked.get(key, until))
    policy = circuit_policy()
    for key, seen in counts.items():
        for verdict in (decisions.OK, decisions.SLOW, decisions.FAILED):
            if not seen.get(verdict):
                continue
            circuits.record(
                key=key,
                ok=verdict != decisions.FAILED,
                slow=verdict == decisions.SLOW,
                count=seen[verdict],
                tenant_id=tenants[key],
                reason=reasons.get(key, ""),
                policy=policy,
            )
    return blocked


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


def _outcome(
    delivery: WebhookDelivery,
    reply,
    now: datetime,
    *,
    after: datetime,
    blocked: datetime | None,
) -> Exception | None:
    """None for a success; otherwise the failure to report, transient or permanent (see
    decisions.outcome), after disabling the subscription if the reply says so, or NotYet for
    a wait (`blocked`: until when the host's bucket is, `after`: when the replies were in)."""
    subscription = delivery.subscription
    policy = _policy()
    decided = decisions.outcome(
        reply,
        failing_since=subscription.failing_since,
        failing_too_long=subscription.failing_too_long(now=now),
        now=after,
        retry_cap=settings.WEBHOOK_RETRY_MAX_SECONDS,
        next_backoff=policy.ceiling(delivery.round_attempts + 1),
    )
    if decided.disable:
        subscriptions.disable(subscription, reason=decided.disable, now=now)
    if decided.delivered:
        return None
    if decided.permanent:
        return PermanentError(decided.failure)
    if decided.wait:
        return _wait(delivery, decided, policy, after=after, blocked=blocked)
    retry_after = decided.retry_after
    if retry_after is None:
        # The worker's policy, chosen here so that the delivery can show when it comes next.
        retry_after = policy.delay(delivery.round_attempts + 1).total_seconds()
    return TransientError(decided.failure, retry_after=retry_after)


def _wait(
    delivery: WebhookDelivery,
    decided: decisions.Outcome,
    policy: RetryPolicy,
    *,
    after: datetime,
    blocked: datetime | None,
) -> Exception:
    """The receiver asked for time: NotYet until the wait ends (its Retry-After, or the
    host's bucket if blocked longer), or, past the round's limit, a permanent failure that
    says so."""
    seconds = decisions.wait_seconds(
        said=decided.retry_after,
        waited=delivery.waited_seconds,
        floor=policy.ceiling(delivery.round_attempts + 1),
        cap=settings.WEBHOOK_RETRY_MAX_SECONDS,
    )
    until = after + timedelta(seconds=seconds)
    if blocked is not None and blocked > until:
        until, seconds = blocked, (blocked - after).total_seconds()
    limit = max_wait_seconds(policy)
    waited = delivery.waited_seconds
    if decisions.waited_too_long(waited=waited, wait=seconds, limit=limit):
        return PermanentError(
            f"{decided.failure} after waiting {waited:.0f} s in all for this endpoint; another "
            f"{seconds:.0f} s would pass WEBHOOK_MAX_WAIT_SECONDS ({limit:.0f} s): given up"
        )
    return NotYet(
        until,
        f"{decided.failure}: waiting until {until.isoformat()}, no attempt spent "
        f"({waited + seconds:.0f} of {limit:.0f} s of waiting used)",
    )


def max_wait_seconds(policy: RetryPolicy) -> float:
    """How long a round's waits may add up to: WEBHOOK_MAX_WAIT_SECONDS, by default the span of
    the retry schedule."""
    configured = getattr(settings, "WEBHOOK_MAX_WAIT_SECONDS", None)
    return float(configured) if configured is not None else decisions.retry_span(policy)


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
        elif isinstance(failure, NotYet):  # a wait: nothing of the ladder spent, not failing
            delivery.state, delivery.last_error = State.RETRYING, str(failure)[:2000]
            delivery.next_attempt_at = failure.until
            delivery.waited_seconds += max(0.0, (failure.until - reply.finished).total_seconds())
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
    "next_attempt_at", "last_error", "waited_seconds",
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
            # IntegrationFailed's contract (integrations.failures.contract): the delivery is
            # the failure; its attempt count tells a death after a recovery from the first.
            "failureId": str(delivery.pk),
            "attempt": delivery.attempts,
            "error": reason,
            "status": delivery.last_status,
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
