"""Writes of the webhooks domain: subscriptions, matching events to them, and delivering.

WebhookDeliveryWorker receives every public event and the WebhookDeliveryQueued commands that
matching sends it. `handle` splits a batch between the two:

- matching (`fan_out`) writes one WebhookDelivery per matching enabled subscription, and one
  WebhookDeliveryQueued command per delivery, in the transaction that handles the event; both
  have ids derived from (subscription, event), so handling an event twice adds nothing;
- delivering (`deliver`) locks the batch's deliveries, skips those already delivered (the same
  delivery claimed twice waits on the row lock, then finds it delivered), POSTs the rest
  concurrently, and records every attempt. A failed POST is reported to the runtime, which
  retries it with the worker's backoff (or the receiver's Retry-After) and dead-letters it
  after the last attempt; `mark_dead` then marks the delivery dead and publishes
  IntegrationFailed. Replaying the dead letter sends the same delivery, same webhook-id, again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from time import monotonic

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core import bulk, events, outbound
from core import services as core_services
from core.envelope import Envelope
from core.models import Message, Tenant
from core.runtime import queue, registry, replay
from core.runtime.errors import Deferred, PermanentError, TransientError
from core.runtime.registry import RetryPolicy
from integrations import signing
from integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    matches,
    new_secret,
)

log = logging.getLogger(__name__)
WORKER = "WebhookDeliveryWorker"
QUEUED = "WebhookDeliveryQueued"
DELIVERY_NAMESPACE = uuid.UUID("1d0b7f4e-8a43-4c55-b1f2-6a3e2f9c0d17")
USER_AGENT = f"worker-platform-webhooks/{settings.PLATFORM_VERSION}"
State = WebhookDelivery.State


# --- Subscriptions ---------------------------------------------------------------------------


def check_event_types(patterns: list[str]) -> list[str]:
    """Exact names must be public event types; patterns must match at least one."""
    if not patterns:
        raise ValidationError("event_types: name at least one event type, or '*' for all.")
    public = events.public_types()
    for pattern in patterns:
        if not any(matches([pattern], name) for name in public):
            raise ValidationError(
                f"event_types: {pattern!r} matches no event type a webhook can receive. "
                f"Known types: {', '.join(public)}."
            )
    return sorted(set(patterns))


def check_url(url: str) -> str:
    try:
        outbound.check_url(url)
    except outbound.BlockedDestination as exc:
        raise ValidationError(f"url: {exc}") from None
    return url


@transaction.atomic
def create_subscription(
    *, tenant: Tenant, url: str, event_types: list[str], description: str = "", enabled=True
) -> tuple[WebhookSubscription, str]:
    """Create a subscription and return it with its signing secret, shown this once."""
    now = timezone.now()
    subscription = WebhookSubscription.objects.create(
        tenant=tenant,
        url=check_url(url),
        event_types=check_event_types(event_types),
        description=description,
        enabled=enabled,
        secret=new_secret(),
        created=now,
        updated=now,
    )
    return subscription, subscription.secret


@transaction.atomic
def update_subscription(*, subscription: WebhookSubscription, **changes) -> WebhookSubscription:
    """Change url, event_types, description or enabled, and return the subscription as stored.
    It is read again, locked: the decisions (is it being enabled again?) are made on the
    stored row, not on a copy someone changed meanwhile. Only the changed columns are written:
    the worker updates the subscription's health, and a rotation its secrets, meanwhile.
    Raises WebhookSubscription.DoesNotExist once it is deleted."""
    stored = _locked(subscription.pk).defer(*SECRET_FIELDS).get()
    fields = ["updated"]
    if "url" in changes:
        stored.url = check_url(changes["url"])
        fields.append("url")
    if "event_types" in changes:
        stored.event_types = check_event_types(changes["event_types"])
        fields.append("event_types")
    if "description" in changes:
        stored.description = changes["description"]
        fields.append("description")
    if "enabled" in changes:
        set_enabled(stored, changes["enabled"])
        fields += ["enabled", "disabled_reason", "failing_since"]
    stored.updated = timezone.now()
    stored.save(update_fields=fields)
    return stored


def set_enabled(subscription: WebhookSubscription, enabled: bool) -> None:
    if enabled and not subscription.enabled:
        # Re-enabled: a fresh start for the failing-period rule.
        subscription.disabled_reason, subscription.failing_since = "", None
    elif not enabled and subscription.enabled:
        subscription.disabled_reason = "disabled by its owner"
    subscription.enabled = enabled


@transaction.atomic
def rotate_secret(*, subscription: WebhookSubscription) -> tuple[str, datetime]:
    """Issue a new secret; the old one keeps signing beside it for the overlap. Returns the
    new secret and when the old one expires. Raises WebhookSubscription.DoesNotExist once the
    subscription is deleted."""
    now = timezone.now()
    stored = _locked(subscription.pk).get()
    secret = stored.rotate_secret(now=now)
    stored.updated = now
    stored.save(update_fields=["secret", "previous_secret", "previous_secret_expires", "updated"])
    return secret, stored.previous_secret_expires


SECRET_FIELDS = ("secret", "previous_secret")


def _locked(pk: uuid.UUID):
    """The stored subscription, unless deleted, locked for a change of its columns until the
    transaction ends. FOR NO KEY UPDATE: batches sending to it hold it FOR KEY SHARE (see
    _hold), which this does not wait for, nor they for it."""
    return WebhookSubscription.objects.select_for_update(no_key=True).filter(
        pk=pk, deleted__isnull=True
    )


# Deleting: the subscription is marked deleted at once, then removed with its deliveries and
# their attempts. A batch of WebhookDeliveryWorker holds the subscriptions it sends to (FOR KEY
# SHARE, _hold) from before it writes a row that refers to them until it commits, and takes
# none that is marked deleted; removing locks the row first (FOR UPDATE), so it waits for the
# batches that took it before it was marked, and none can start holding it after. So a batch
# never fails at commit on a delivery whose subscription vanished (PostgreSQL checks that
# foreign key at commit), and a delete never fails on a row a batch wrote meanwhile (Django
# collects what to cascade before it deletes). The mark is what keeps the lock from waiting
# forever behind batches that overlap one another.
PURGE_LOCK_SECONDS = 2.0  # how long a delete waits for such batches before leaving it to prune
PRUNE_PURGE_LOCK_SECONDS = 60.0


def delete_subscription(*, subscription: WebhookSubscription) -> None:
    """Delete a subscription: for the API, the admin and the worker at once; its rows as soon
    as no batch still sends to it (now, or at the next prune if a batch holds it longer than
    PURGE_LOCK_SECONDS). Outside a transaction: the mark must be committed before the removal
    waits, or batches starting meanwhile would still take the subscription."""
    now = timezone.now()
    WebhookSubscription.objects.filter(pk=subscription.pk, deleted__isnull=True).update(
        deleted=now, enabled=False, disabled_reason="deleted by its owner", updated=now
    )
    purge(subscription.pk, lock_seconds=PURGE_LOCK_SECONDS)


def purge(pk: uuid.UUID, *, lock_seconds: float) -> bool:
    """Remove a subscription marked deleted, with its deliveries and their attempts. False if
    batches held it for longer than `lock_seconds` (it stays marked, for the next prune)."""
    try:
        with transaction.atomic():
            _lock_timeout(lock_seconds)
            marked = WebhookSubscription.objects.select_for_update().filter(
                pk=pk, deleted__isnull=False
            )
            if marked.values_list("pk", flat=True).first() is None:
                return True  # removed already
            WebhookAttempt.objects.filter(delivery__subscription_id=pk).delete()
            with connection.cursor() as cursor:
                # In SQL: Django's delete() would load every delivery to cascade to attempts,
                # which are gone already.
                cursor.execute(
                    f"DELETE FROM {WebhookDelivery._meta.db_table} WHERE subscription_id = %s",
                    [WebhookSubscription._meta.pk.get_db_prep_value(pk, connection)],
                )
            WebhookSubscription.objects.filter(pk=pk).only("pk").delete()
    except OperationalError as exc:  # the lock's timeout; on SQLite, the busy timeout
        log.warning("subscription %s stays marked deleted until the next prune: %s", pk, exc)
        return False
    return True


def _lock_timeout(seconds: float) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{seconds * 1000:.0f}"])


def _hold(ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Of the subscriptions `ids`, those still there and not marked deleted; on PostgreSQL each
    locked FOR KEY SHARE until the transaction ends: removing it waits for this batch, while
    changes of its other columns (PATCH, health, disabling) do not. In SQL: the ORM knows no
    FOR KEY SHARE (FOR NO KEY UPDATE would make two batches sending to one endpoint wait for
    each other's POSTs). In id order, as every holder takes them. On SQLite a batch holds the
    database's write lock from its start, so nothing is removed under it."""
    if not ids:
        return set()
    ordered = sorted(ids)
    marks = ", ".join(["%s"] * len(ordered))
    lock = " ORDER BY id FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    prepare = WebhookSubscription._meta.pk.get_db_prep_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {WebhookSubscription._meta.db_table} "
            f"WHERE id IN ({marks}) AND deleted IS NULL{lock}",
            [prepare(pk, connection) for pk in ordered],
        )
        return {uuid.UUID(str(row[0])) for row in cursor.fetchall()}


def disable(subscription: WebhookSubscription, *, reason: str, now: datetime) -> None:
    """Disable a subscription and say so with a SubscriptionDisabled event."""
    updated = WebhookSubscription.objects.filter(pk=subscription.pk, enabled=True).update(
        enabled=False, disabled_reason=reason[:500], updated=now
    )
    subscription.enabled, subscription.disabled_reason = False, reason
    if updated:
        core_services.publish(
            tenant=subscription.tenant,
            type="SubscriptionDisabled",
            data={
                "subscriptionId": str(subscription.pk),
                "url": subscription.url,
                "reason": reason,
            },
            source="webhooks",
            source_id=str(subscription.pk),
        )


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


def _send_again(tenant_id: uuid.UUID, deliveries: list[tuple[uuid.UUID, str]]) -> int:
    """Bring the deliveries' retries forward and replay their dead letters, in one transaction;
    the worker is kicked once, after it commits. Counted are those this call sent again: not a
    retry already due (a call before brought it forward), nor one being sent at this moment
    (its message leased: its outcome, not this call, decides when it comes next)."""
    if not deliveries:
        return 0
    commands = {queued_event_id(pk): state for pk, state in deliveries}
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


# --- The worker ------------------------------------------------------------------------------


def handle(envelopes: list[Envelope]) -> dict[uuid.UUID, Exception]:
    """WebhookDeliveryWorker's batch handler: retries first, then new events."""
    failures = deliver([e for e in envelopes if e.type == QUEUED])
    fan_out([e for e in envelopes if e.type != QUEUED])
    return failures


def takes(envelopes: list[Envelope]) -> set[uuid.UUID]:
    """At publish: the events some enabled subscription of their tenant wants. The others
    never become messages of WebhookDeliveryWorker: most events (every TraceRecorded) belong
    to tenants with no webhook for them. In SQL: it runs in every publish, and the ORM's
    query building cost as much as the rest of a single-event publish (measured)."""
    tenants = {e.tenant_id for e in envelopes}
    table = WebhookSubscription._meta.db_table
    marks = ", ".join(["%s"] * len(tenants))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tenant_id, event_types FROM {table} WHERE enabled AND tenant_id IN ({marks})",
            [Tenant._meta.pk.get_db_prep_value(t, connection) for t in tenants],
        )
        wanted = defaultdict(list)
        for tenant_id, patterns in cursor.fetchall():
            patterns = json.loads(patterns) if isinstance(patterns, str) else patterns
            wanted[uuid.UUID(str(tenant_id))].extend(patterns)
    return {e.event_id for e in envelopes if matches(wanted[e.tenant_id], e.type)}


def delivery_id(subscription_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}:{event_id}")


def queued_event_id(delivery_pk: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"queued:{delivery_pk}")


def fan_out(envelopes: list[Envelope]) -> None:
    """Match events to subscriptions and make their first attempts at once, in this batch: a
    delivery that lands needs nothing more, and one that fails gets a WebhookDeliveryQueued
    command, due when its retry is, that carries it along the retry ladder from there."""
    if not envelopes:
        return
    subscriptions = defaultdict(list)
    tenants = {e.tenant_id for e in envelopes}
    for s in WebhookSubscription.objects.select_related("tenant").filter(
        tenant_id__in=tenants, enabled=True
    ):
        subscriptions[s.tenant_id].append(s)
    matched = [
        (subscription, envelope)
        for envelope in envelopes
        for subscription in subscriptions[envelope.tenant_id]
        if subscription.wants(envelope.type) and not _about(subscription, envelope)
    ]
    # Held before a delivery refers to them, until the batch commits: one deleted meanwhile
    # gets nothing, and none can be removed under the batch (see delete_subscription).
    held = _hold({subscription.pk for subscription, _ in matched})
    now = timezone.now()
    deliveries, sources = [], {}
    for subscription, envelope in matched:
        if subscription.pk in held:
            delivery = _new_delivery(subscription, envelope, now)
            deliveries.append(delivery)
            sources[delivery.pk] = envelope
    deliveries = _not_stored(deliveries)
    if not deliveries:
        return
    bulk.insert_rows(
        WebhookDelivery,
        DELIVERY_COLUMNS,
        [tuple(getattr(d, c) for c in DELIVERY_COLUMNS) for d in deliveries],
    )
    failures = _send(deliveries)
    retries = []
    for delivery in deliveries:
        failure = failures.get(delivery.pk)
        if failure is not None:
            command = _queued(delivery.pk, sources[delivery.pk])
            retries.append((command, failure, delivery.next_attempt_at or now))
    _queue_retries(retries)


def _not_stored(deliveries: list[WebhookDelivery]) -> list[WebhookDelivery]:
    if not deliveries:
        return []
    # An event handled again (a replayed dead letter) matches the same deliveries, already
    # stored, and perhaps delivered: they are not sent again.
    stored = set(
        WebhookDelivery.objects.filter(id__one_of={d.pk for d in deliveries}).values_list(
            "id", flat=True
        )
    )
    return [d for d in deliveries if d.pk not in stored]


def _queue_retries(retries: list[tuple[Envelope, Exception, datetime]]) -> None:
    deferred = [command for command, failure, _ in retries if isinstance(failure, Deferred)]
    attempted = [r for r in retries if not isinstance(r[1], Deferred)]
    core_services.publish_envelopes(deferred, to_worker=WORKER)  # not attempted: due now
    core_services.send_retries(worker=WORKER, failed=attempted)


def _about(subscription: WebhookSubscription, envelope: Envelope) -> bool:
    # The platform's news about a subscription's own failures is not sent to it: it is the
    # endpoint that fails, and each failure would make one more.
    return envelope.data.get("subscriptionId") == str(subscription.pk)


DELIVERY_COLUMNS = [
    "id", "tenant_id", "subscription_id", "event_id", "event_type", "payload", "trace_id",
    "span_id", "state", "attempts", "round_attempts", "created", "next_attempt_at", "last_error",
]  # fmt: skip


def _new_delivery(
    subscription: WebhookSubscription, envelope: Envelope, now: datetime
) -> WebhookDelivery:
    body = {
        "type": envelope.type,
        "timestamp": envelope.occurred_at.isoformat(),
        "data": envelope.as_dict(),
    }
    return WebhookDelivery(
        id=delivery_id(subscription.pk, envelope.event_id),
        tenant_id=envelope.tenant_id,
        subscription=subscription,
        event_id=envelope.event_id,
        event_type=envelope.type,
        payload=json.dumps(body, separators=(",", ":")),
        trace_id=envelope.trace_id,
        span_id=envelope.span_id,
        state=State.PENDING,
        attempts=0,
        round_attempts=0,
        created=now,
        next_attempt_at=now,
        last_error="",
    )


def _queued(delivery_pk: uuid.UUID, envelope: Envelope) -> Envelope:
    return core_services.build_envelope(
        tenant_id=envelope.tenant_id,
        type=QUEUED,
        data={"deliveryId": str(delivery_pk)},
        event_id=queued_event_id(delivery_pk),
        trace_id=envelope.trace_id,
        span_id=envelope.span_id,
        correlation_id=envelope.correlation_id,
        source="webhooks",
        source_id=str(delivery_pk),
    )


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
    held = _hold(set(owners.values()))
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
    for pk, failure in _send(sendable).items():
        failures[by_delivery[pk].event_id] = failure
    return failures


def _attach_subscriptions(deliveries: list[WebhookDelivery]) -> None:
    # One query, and one instance per subscription: its secrets are decrypted once, not once
    # per delivery, and its health sums up all its deliveries' outcomes.
    ids = {d.subscription_id for d in deliveries}
    subscriptions = WebhookSubscription.objects.select_related("tenant").in_bulk(list(ids))
    for delivery in deliveries:
        delivery.subscription = subscriptions[delivery.subscription_id]


def _send(deliveries: list[WebhookDelivery]) -> dict[uuid.UUID, Exception]:
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


def _outcome(delivery, reply, now: datetime) -> Exception | None:
    """None for a success; otherwise the failure to report, transient or permanent."""
    subscription = delivery.subscription
    if isinstance(reply, outbound.Reply) and 200 <= reply.status < 300:
        return None
    if isinstance(reply, outbound.BlockedDestination):
        return PermanentError(f"refused to connect: {reply}")
    if isinstance(reply, outbound.Reply) and reply.status == 410:
        reason = "the endpoint answered 410 Gone"
        disable(subscription, reason=reason, now=now)
        return PermanentError(f"{reason}; the subscription was disabled")
    if subscription.failing_since and subscription.failing_too_long(now=now):
        reason = f"no successful delivery since {subscription.failing_since.isoformat()}"
        disable(subscription, reason=reason, now=now)
        return PermanentError(f"{_describe(reply)}; {reason}: the subscription was disabled")
    retry_after = _retry_after(reply) if isinstance(reply, outbound.Reply) else None
    if retry_after is None:
        # The worker's policy, chosen here so that the delivery can show when it comes next.
        retry_after = _policy().delay(delivery.round_attempts + 1).total_seconds()
    return TransientError(_describe(reply), retry_after=retry_after)


def _policy() -> RetryPolicy:
    return registry.get(WORKER).retry


def _describe(reply) -> str:
    if isinstance(reply, outbound.Reply):
        return f"the endpoint answered {reply.status}"
    return f"{type(reply).__name__}: {reply}"


def _retry_after(reply: outbound.Reply) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date), for 429 and 503."""
    if reply.status not in (429, 503):
        return None
    value = {k.lower(): v for k, v in reply.headers.items()}.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), settings.WEBHOOK_RETRY_MAX_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = (when - timezone.now()).total_seconds()
    return max(0.0, min(seconds, settings.WEBHOOK_RETRY_MAX_SECONDS))


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
            delivery.next_attempt_at = _next_attempt(failure, now)
            subscription.failing_since = subscription.failing_since or now
        changed[subscription.pk] = subscription
    bulk.insert(WebhookAttempt, attempts, columns=ATTEMPT_COLUMNS)
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
    core_services.publish_envelopes([_delivered_event(d) for d in delivered])


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
        attempt.error = _describe(reply)[:2000]
    return attempt


def _next_attempt(failure: Exception, now: datetime) -> datetime | None:
    if isinstance(failure, TransientError) and failure.retry_after is not None:
        return now + timedelta(seconds=failure.retry_after)
    return None  # the runtime's backoff decides; the message's due time shows it


def _delivered_event(delivery: WebhookDelivery) -> Envelope:
    return core_services.build_envelope(
        tenant_id=delivery.tenant_id,
        type="WebhookDelivered",
        data={
            "deliveryId": str(delivery.pk),
            "subscriptionId": str(delivery.subscription_id),
            "eventId": str(delivery.event_id),
            "eventType": delivery.event_type,
            "attempts": delivery.attempts,
        },
        event_id=uuid.uuid5(DELIVERY_NAMESPACE, f"delivered:{delivery.pk}:{delivery.attempts}"),
        trace_id=delivery.trace_id,
        span_id=delivery.span_id,
        source="webhooks",
        source_id=str(delivery.pk),
    )


def mark_dead(envelope: Envelope, reason: str) -> None:
    """The runtime dead-lettered one of the worker's messages. For a delivery: it is dead, and
    IntegrationFailed says so."""
    if envelope.type != QUEUED:
        return
    mine = WebhookDelivery.objects.filter(
        pk=envelope.data.get("deliveryId"), tenant_id=envelope.tenant_id
    )
    subscription_id = mine.values_list("subscription_id", flat=True).first()
    # Its subscription first, as everywhere: one deleted has nothing left to mark or tell.
    if subscription_id is None or not _hold({subscription_id}):
        return
    if not mine.update(state=State.DEAD, last_error=reason[:2000], next_attempt_at=None):
        return
    delivery = mine.select_related("subscription__tenant").get()
    core_services.publish(
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
        purge(pk, lock_seconds=PRUNE_PURGE_LOCK_SECONDS)
    cutoff = now - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    old = WebhookDelivery.objects.filter(state=State.DELIVERED, created__lt=cutoff)
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:PRUNE_CHUNK]):
        WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
        deleted += WebhookDelivery.objects.filter(id__in=ids).delete()[0]
    return deleted
