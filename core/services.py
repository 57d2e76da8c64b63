"""Writes of the platform core: tenants, API keys, and publishing events (the outbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import events, telemetry
from core.envelope import Envelope
from core.models import ApiKey, Event, Message, Tenant
from core.runtime import queue, registry
from core.runtime.errors import MalformedEnvelope


class UnknownEventType(ValidationError):
    pass


def create_tenant(*, slug: str, name: str = "") -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean()
    tenant.save()
    return tenant


def issue_api_key(*, tenant: Tenant, name: str = "") -> str:
    """Create an API key and return its plain text, the only time anyone sees it."""
    _, plain = ApiKey.issue(tenant=tenant, name=name)
    return plain


def build_envelope(
    *,
    tenant_id: uuid.UUID,
    type: str,
    data: dict[str, Any] | None = None,
    source: str = "",
    source_id: str = "",
    correlation_id: str = "",
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    trace_id: str = "",
    span_id: str = "",
) -> Envelope:
    """A checked envelope; an unknown type or a bad field is a ValidationError naming it."""
    if not events.is_known(type):
        raise UnknownEventType(
            f"Unknown event type {type!r}. Known types: {', '.join(events.public_types())}."
        )
    if not (trace_id and span_id):
        trace_id, span_id = telemetry.current_ids()
    envelope = Envelope(
        event_id=event_id or uuid.uuid4(),
        type=type,
        tenant_id=tenant_id,
        trace_id=trace_id,
        span_id=span_id,
        occurred_at=occurred_at or timezone.now(),
        data=data if data is not None else {},
        correlation_id=correlation_id,
        source=source,
        source_id=source_id,
    )
    try:
        envelope.validate()
    except MalformedEnvelope as exc:
        raise ValidationError(str(exc)) from exc
    return envelope


def publish(*, tenant: Tenant, type: str, data: dict[str, Any] | None = None, **fields) -> Envelope:
    """Publish one event inside the caller's transaction: it exists iff the caller commits."""
    envelope = build_envelope(tenant_id=tenant.pk, type=type, data=data, **fields)
    publish_envelopes([envelope])
    return envelope


def publish_from_api(*, tenant: Tenant, type: str, **fields) -> Envelope:
    """Outside systems publish factory events; the platform's internal types are not theirs."""
    known = events.catalog().get(type)
    if known is not None and known.internal:
        raise ValidationError(
            f"{type!r} is internal to the platform and cannot be published from outside. "
            f"Publishable types: {', '.join(events.public_types())}."
        )
    return publish(tenant=tenant, type=type, **fields)


def send(
    *, tenant: Tenant, worker: str, type: str, data: dict[str, Any] | None = None, **fields
) -> Envelope:
    """Address a command or a schedule slot to one worker instead of every subscriber."""
    envelope = build_envelope(tenant_id=tenant.pk, type=type, data=data, **fields)
    publish_envelopes([envelope], to_worker=worker)
    return envelope


@transaction.atomic
def publish_envelopes(envelopes: list[Envelope], *, to_worker: str = "") -> None:
    """Store envelopes and one message per subscribed worker, in bulk. Re-publishing an
    eventId already stored is a no-op, which makes deterministic ids (schedule slots) safe."""
    rows = [_event_row(e, to_worker) for e in envelopes]
    Event.objects.bulk_create(rows, ignore_conflicts=True)
    messages, kicked = [], set()
    for envelope in envelopes:
        for worker in registry.subscribers(envelope.type, to_worker=to_worker):
            messages.append(
                Message(
                    event_id=envelope.event_id, worker=worker.name, tenant_id=envelope.tenant_id
                )
            )
            kicked.add(worker.name)
    Message.objects.bulk_create(messages, ignore_conflicts=True, batch_size=2000)
    if kicked:
        transaction.on_commit(lambda: queue.kick(kicked))


def _event_row(envelope: Envelope, to_worker: str) -> Event:
    return Event(
        id=envelope.event_id,
        type=envelope.type,
        tenant_id=envelope.tenant_id,
        trace_id=envelope.trace_id,
        span_id=envelope.span_id,
        correlation_id=envelope.correlation_id,
        source=envelope.source,
        source_id=envelope.source_id,
        occurred_at=envelope.occurred_at,
        data=envelope.data,
        to_worker=to_worker,
    )
