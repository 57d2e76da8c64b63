"""Writes of the platform core: tenants, API keys, and publishing events (the outbox)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import bulk, eventdata, events, telemetry
from core.envelope import Envelope, TenantId
from core.models import ApiKey, Event, Failure, Message, Tenant
from core.runtime import queue, registry
from core.runtime.errors import MalformedEnvelope, describe, is_permanent
from core.runtime.registry import Worker


class UnknownEventType(ValidationError):
    pass


class DataTooLarge(ValidationError):
    """An event's data over EVENT_DATA_MAX_BYTES: the API answers 413."""


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
    tenant_id: TenantId,
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
        envelope.validate()  # the type too: once, not again here before it (a sync's thousands)
    except MalformedEnvelope as exc:
        if not events.is_known(type):
            raise UnknownEventType(
                f"Unknown event type {type!r}. Known types: {', '.join(events.public_types())}."
            ) from None
        raise ValidationError(str(exc)) from exc
    return envelope


def publish(
    *, tenant: Tenant, type: str, data: dict[str, Any] | None = None, **fields: Any
) -> Envelope:
    """Publish one event inside the caller's transaction: it exists iff the caller commits."""
    envelope = build_envelope(tenant_id=tenant.pk, type=type, data=data, **fields)
    publish_envelopes([envelope])
    return envelope


def publish_from_api(*, tenant: Tenant, type: str, data: dict[str, Any], **fields: Any) -> Envelope:
    """Publish an event an outside system sent. Only factory events come from outside: the
    platform's own are its word to its workers and subscribers (a forged TraceRecorded or
    SubscriptionDisabled would be believed). Its data must be storable as it is, and bounded
    (EVENT_DATA_MAX_DEPTH, EVENT_DATA_MAX_BYTES), so that the worker is never the first to find
    out that it is not."""
    known = events.catalog().get(type)
    if known is None or known.kind is not events.Kind.FACTORY:
        what = "an unknown event type" if known is None else "one of the platform's own events"
        raise ValidationError(
            f"{type!r} is {what}: outside systems publish factory events only "
            f"({', '.join(events.factory_types())})."
        )
    if found := eventdata.problem(data, max_depth=settings.EVENT_DATA_MAX_DEPTH):
        raise ValidationError(found)
    limit = settings.EVENT_DATA_MAX_BYTES
    if (size := eventdata.size(data)) > limit:
        raise DataTooLarge(f"data is {size} bytes as JSON, over the limit of {limit} bytes.")
    return publish(tenant=tenant, type=type, data=data, **fields)


def send(
    *,
    tenant: Tenant,
    worker: str,
    type: str,
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> Envelope:
    """Address a command or a schedule slot to one worker instead of every subscriber."""
    envelope = build_envelope(tenant_id=tenant.pk, type=type, data=data, **fields)
    publish_envelopes([envelope], to_worker=worker)
    return envelope


@transaction.atomic(savepoint=False)  # nothing to roll back to: the caller's fails whole
def publish_envelopes(
    envelopes: list[Envelope],
    *,
    to_worker: str = "",
    due: dict[uuid.UUID, tuple[datetime, int]] | None = None,
    plain_data: bool = False,
) -> None:
    """Store envelopes and one message per subscribed worker, in bulk. Re-publishing an
    eventId already stored is a no-op, which makes deterministic ids (schedule slots) safe.
    `due` ({eventId: (due_at, failed attempts)}) starts a message later in its ladder.
    `plain_data`: the caller vouches that every envelope's data holds JSON's own types only
    (str, int, float, bool, None, lists and dicts of them: decoded from JSON, as a sync's
    records are), so msgspec encodes it, in a seventh of json.dumps's time. msgspec would also
    encode what json.dumps refuses (a UUID, a datetime; NaN as null), which is why the caller
    must vouch; anything msgspec cannot encode goes to json.dumps, which refuses it."""
    if not envelopes:
        return
    now = timezone.now()
    encode = _plain_json if plain_data else json.dumps
    rows = [_event_row(e, to_worker, now, encode) for e in envelopes]
    bulk.insert_new(Event, EVENT_COLUMNS, rows)
    messages, kicked = [], set()
    addressed = _addressees(envelopes, to_worker)
    for envelope in envelopes:
        due_at, attempts = (due or {}).get(envelope.event_id, (now, 0))
        for worker in addressed[envelope.event_id]:
            messages.append(_message_row(envelope, worker.name, now, due_at, attempts))
            kicked.add(worker.name)
    bulk.insert_new(Message, MESSAGE_COLUMNS, messages)
    if kicked:
        transaction.on_commit(lambda: queue.kick(kicked))


def _addressees(envelopes: list[Envelope], to_worker: str) -> dict[uuid.UUID, list[Worker]]:
    """The workers each envelope goes to: its addressee, or the subscribers of its type that
    take it (a worker's `takes` decides for all the envelopes at once)."""
    # Per type, not per envelope: a synced page publishes a thousand events of one type, and
    # asking the registry for each (every worker's trigger) cost 43 ms of the 537 ms that
    # publishing a 5,000-record sync took (measured; bench/sync.py).
    by_type: dict[str, list[Worker]] = {}
    for e in envelopes:
        if e.type not in by_type:
            by_type[e.type] = registry.subscribers(e.type, to_worker=to_worker)
    addressed = {e.event_id: by_type[e.type] for e in envelopes}
    if to_worker:
        return addressed
    choosy = {w.name: w for ws in by_type.values() for w in ws if w.takes is not None}
    for worker in choosy.values():
        assert worker.takes is not None
        types = {t for t, ws in by_type.items() if any(w is worker for w in ws)}
        offered = [e for e in envelopes if e.type in types]
        taken = worker.takes(offered)
        for envelope in offered:
            if envelope.event_id not in taken:
                addressed[envelope.event_id] = [
                    w for w in addressed[envelope.event_id] if w is not worker
                ]
    return addressed


def send_retries(*, worker: str, failed: list[tuple[Envelope, BaseException, datetime]]) -> None:
    """Commands for work a worker attempted once already, itself, and that failed: each
    message starts at its second attempt, due when given, with the first failure recorded as
    the runtime would have (a webhook's first POST, sent as its event was matched)."""
    if not failed:
        return
    publish_envelopes(
        [envelope for envelope, _, _ in failed],
        to_worker=worker,
        due={envelope.event_id: (due_at, 1) for envelope, _, due_at in failed},
    )
    ids = dict(
        Message.objects.filter(
            event_id__one_of={e.event_id for e, _, _ in failed}, worker=worker
        ).values_list("event_id", "id")
    )
    now = timezone.now()
    Failure.objects.bulk_create(
        Failure(
            message_id=ids[envelope.event_id],
            worker=worker,
            tenant_id=envelope.tenant_id,
            attempt=1,
            at=now,
            permanent=is_permanent(exc),
            error=describe(exc),
        )
        for envelope, exc, _ in failed
    )
    errors = [(ids[envelope.event_id], describe(exc)) for envelope, exc, _ in failed]
    bulk.update_rows(Message, ["last_error"], errors)


EVENT_COLUMNS = [
    "id", "type", "tenant_id", "trace_id", "span_id", "correlation_id", "source", "source_id",
    "occurred_at", "recorded_at", "data", "to_worker",
]  # fmt: skip
MESSAGE_COLUMNS = [
    "event_id", "worker", "tenant_id", "state", "due_at", "attempts", "claims", "created",
    "last_error",
]  # fmt: skip


def _event_row(
    envelope: Envelope, to_worker: str, now: datetime, encode: Callable[[Any], str] = json.dumps
) -> bulk.Row:
    e = envelope
    return (
        e.event_id, e.type, e.tenant_id, e.trace_id, e.span_id, e.correlation_id, e.source,
        e.source_id, e.occurred_at, now, encode(e.data), to_worker,
    )  # fmt: skip


# msgspec encodes a synced issue's event data in 0.5 us against json.dumps's 3.5 (measured);
# it also encodes what json.dumps refuses (a UUID, a datetime), hence only for plain data.
_msgspec_json = msgspec.json.Encoder()


def _plain_json(data: Any) -> str:
    try:
        return _msgspec_json.encode(data).decode()
    except (TypeError, msgspec.EncodeError):  # not plain after all: as json.dumps says
        return json.dumps(data)


def _message_row(
    envelope: Envelope, worker: str, now: datetime, due_at: datetime, attempts: int
) -> bulk.Row:
    return (
        envelope.event_id,
        worker,
        envelope.tenant_id,
        Message.State.PENDING,
        due_at,
        attempts,
        0,
        now,
        "",
    )
