"""Matching: which events a subscription wants, and the deliveries they become.

`takes` answers at publish which events some enabled subscription wants at all, so that the
others never become messages of WebhookDeliveryWorker. `fan_out` writes a WebhookDelivery per
matching subscription and makes each first attempt at once, in the batch that handles the
event; one that fails gets a WebhookDeliveryQueued command that carries it along the retry
ladder from there."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime

from django.db import connection
from django.utils import timezone

from core import bulk, services
from core.envelope import Envelope
from core.models import Tenant
from core.runtime.errors import Deferred, NotYet
from integrations.models import WebhookDelivery, WebhookSubscription, matches
from integrations.webhooks import QUEUED, WORKER, decisions, delivery, subscriptions
from integrations.webhooks.decisions import is_about

State = WebhookDelivery.State


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


def fan_out(envelopes: list[Envelope]) -> None:
    """Match events to subscriptions and make their first attempts at once, in this batch: a
    delivery that lands needs nothing more, and one that fails gets a WebhookDeliveryQueued
    command, due when its retry is, that carries it along the retry ladder from there."""
    if not envelopes:
        return
    enabled = defaultdict(list)
    tenants = {e.tenant_id for e in envelopes}
    for s in WebhookSubscription.objects.select_related("tenant").filter(
        tenant_id__in=tenants, enabled=True
    ):
        enabled[s.tenant_id].append(s)
    matched = [
        (subscription, envelope)
        for envelope in envelopes
        for subscription in enabled[envelope.tenant_id]
        if subscription.wants(envelope.type) and not is_about(subscription.pk, envelope.data)
    ]
    # Held before a delivery refers to them, until the batch commits: one deleted meanwhile
    # gets nothing, and none can be removed under the batch (subscriptions.delete_subscription).
    held = subscriptions.hold({subscription.pk for subscription, _ in matched})
    now = timezone.now()
    deliveries, sources = [], {}
    for subscription, envelope in matched:
        if subscription.pk in held:
            new = _new_delivery(subscription, envelope, now)
            deliveries.append(new)
            sources[new.pk] = envelope
    deliveries = _not_stored(deliveries)
    if not deliveries:
        return
    bulk.insert_rows(
        WebhookDelivery,
        DELIVERY_COLUMNS,
        [tuple(getattr(d, c) for c in DELIVERY_COLUMNS) for d in deliveries],
    )
    failures = delivery.send(deliveries)
    retries: list[tuple[Envelope, BaseException, datetime]] = []
    for new in deliveries:
        failure = failures.get(new.pk)
        if failure is not None:
            command = _queued(new.pk, sources[new.pk])
            retries.append((command, failure, new.next_attempt_at or now))
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


def _queue_retries(retries: list[tuple[Envelope, BaseException, datetime]]) -> None:
    deferred = [command for command, failure, _ in retries if isinstance(failure, Deferred)]
    # Held back by the host's circuit or rate: not attempted, due when it says.
    waiting = {c.event_id: (f.until, 0) for c, f, _ in retries if isinstance(f, NotYet)}
    attempted = [r for r in retries if not isinstance(r[1], Deferred | NotYet)]
    services.publish_envelopes(deferred, to_worker=WORKER)  # not attempted: due now
    services.publish_envelopes(
        [c for c, _, _ in retries if c.event_id in waiting], to_worker=WORKER, due=waiting
    )
    services.send_retries(worker=WORKER, failed=attempted)


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
        id=decisions.delivery_id(subscription.pk, envelope.event_id),
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
    return services.build_envelope(
        tenant_id=envelope.tenant_id,
        type=QUEUED,
        data={"deliveryId": str(delivery_pk)},
        event_id=decisions.queued_event_id(delivery_pk),
        trace_id=envelope.trace_id,
        span_id=envelope.span_id,
        correlation_id=envelope.correlation_id,
        source="webhooks",
        source_id=str(delivery_pk),
    )
