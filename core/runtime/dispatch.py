"""Dispatch: claim due messages in batches and run them through their worker's handler.

At-least-once, effectively once:
- A claim is a short committed transaction that leases a batch (skip-locked on PostgreSQL):
  it pushes due_at to the end of the lease and stamps a lease token. A consumer that dies
  simply lets its messages come due again.
- The batch is handled in one transaction, each message in a savepoint. The "done" mark is
  written in that same transaction and only where the lease token is still ours, so a handler's
  writes and its mark commit together or not at all, and a consumer whose lease was taken over
  rolls its whole batch back instead of doubling an effect.
- A failure is classified: transient ones come back after full-jitter backoff; permanent ones,
  and transient ones past the worker's attempts, go to the dead letters with every attempt.
- NotYet is no failure: the message is due again at its time, attempts and claims as before
  (a vendor's rate limit, or an open circuit, must not use up healthy work's attempts).
"""

from __future__ import annotations

import logging
import math
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import bulk, telemetry
from core.envelope import Envelope, TenantId, event_as_dict
from core.models import DeadLetter, Event, Failure, HandledKey, Message, WorkerState
from core.runtime import queue, registry, shutdown
from core.runtime.errors import (
    Deferred,
    LeaseLost,
    NotYet,
    PermanentError,
    TenantMismatch,
    TransientError,
    describe,
    is_permanent,
)
from core.runtime.registry import Worker

log = logging.getLogger(__name__)
PENDING, DONE, DEAD = Message.State.PENDING, Message.State.DONE, Message.State.DEAD


class ConsumerLost(PermanentError):
    """The message was claimed again and again without an outcome: it kills its consumer."""


@dataclass
class Outcome:
    handled: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # given back without an outcome: not reached, deferred, or NotYet

    def add(self, other: Outcome) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(slots=True)
class Claimed:
    """A leased message: plain values, not a model, since building models costs more per
    message than the whole no-op handling does."""

    id: int
    tenant_id: TenantId
    attempts: int
    claims: int
    token: uuid.UUID
    envelope: Envelope  # as stored; handle_one validates it


def drain(worker_name: str) -> dict[str, int]:
    """The django-q2 task: handle the worker's due messages for up to DISPATCH_DRAIN_SECONDS.
    While the backlog fills whole batches it asks for help, up to DISPATCH_CONCURRENCY drains
    of one worker at a time; when it leaves with work still due, it hands over."""
    worker = registry.get(worker_name)
    deadline = monotonic() + settings.DISPATCH_DRAIN_SECONDS
    total = Outcome()
    try:
        while monotonic() < deadline and not shutdown.requested():
            batch = claim(worker, limit=worker.claim_size)
            if not batch:
                break
            if len(batch) == worker.claim_size:
                queue.spread(worker_name)
            total.add(run_batch(worker, batch, deadline=deadline))
    finally:
        queue.finish_drain(worker_name)
    return asdict(total)


def claim(worker: Worker, *, limit: int) -> list[Claimed]:
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        due = (
            Message.objects.filter(worker=worker.name, state=PENDING, due_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        ids = list(due[:limit])
        if not ids:
            return []
        Message.objects.filter(id__one_of=set(ids)).update(
            leased_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
            lease_token=token,
            claims=F("claims") + 1,
        )
    rows = Message.objects.filter(id__one_of=set(ids)).order_by("id").values_list(*_CLAIMED)
    return [_claimed(row, token) for row in rows]


_CLAIMED = [
    "id",
    "tenant_id",
    "attempts",
    "claims",
    "event_id",
    "event__type",
    "event__tenant_id",
    "event__trace_id",
    "event__span_id",
    "event__occurred_at",
    "event__data",
    "event__correlation_id",
    "event__source",
    "event__source_id",
]


def _claimed(row: tuple[Any, ...], token: uuid.UUID) -> Claimed:
    id_, tenant_id, attempts, claims, *event = row
    return Claimed(id_, tenant_id, attempts, claims, token, Envelope(*event))


def run_batch(worker: Worker, batch: list[Claimed], *, deadline: float = math.inf) -> Outcome:
    """Handle a claimed batch. Past the deadline, or on shutdown, it stops between messages
    and releases the rest: so a batch of slow messages cannot outlive django-q2's timeout
    (which would kill it and count every message in it as a lost claim)."""
    token = batch[0].token
    try:
        with transaction.atomic():
            return _handle_batch(worker, batch, token, deadline)
    except LeaseLost as exc:
        log.warning("%s: %s; the batch was rolled back and released", worker.name, exc)
        return Outcome(released=release(batch, token))


def _handle_batch(
    worker: Worker, batch: list[Claimed], token: uuid.UUID, deadline: float
) -> Outcome:
    done: list[Claimed] = []
    failed: list[FailedMessage] = []
    waiting: list[Waiting] = []
    forget: set[uuid.UUID] = set()
    pending = list(batch)
    size = worker.chunk
    while pending:
        ran, failure, reported = _run_together(worker, pending, deadline, size)
        if failure is None:
            # What a batch handler reported (a failure, a wait, a message it did not get to)
            # kept its idempotency key with the others' writes: forgotten, so that the message
            # is handled when it comes back rather than found done already.
            forget = {message.envelope.event_id for message, _, _ in reported}
            done, pending = pending[:ran], pending[ran:]
            deferred = [m for m, exc, _ in reported if isinstance(exc, Deferred)]
            waiting.extend((m, exc) for m, exc, _ in reported if isinstance(exc, NotYet))
            failed.extend(r for r in reported if not isinstance(r[1], Deferred | NotYet))
            pending += deferred
            break
        if failure.position is None:
            # A batch handler failed on several messages at once: run them one at a time, so
            # that only the one that fails is retried.
            size = 1
            continue
        # The savepoint took the whole group down with the failing message: record it, and
        # run the ones before it again together with the ones after it.
        index = ran + failure.position
        if isinstance(failure.error, NotYet):  # rolled back with its savepoint
            waiting.append((pending[index], failure.error))
        else:
            failed.append((pending[index], failure.error, failure.trace))
        pending = pending[:index] + pending[index + 1 :]
    if forget and worker.idempotency.key is not None:
        HandledKey.objects.filter(worker=worker.name, event_id__in=forget).delete()
    outcome = Outcome(released=release(pending, token) if pending else 0)
    outcome.released += put_off(worker, waiting, token)
    unfinished = {message.id for message, _, _ in failed} | {m.id for m in pending}
    unfinished |= {message.id for message, _ in waiting}
    done_ids = [m.id for m in done if m.id not in unfinished]
    _mark_done(worker, done_ids, token)
    outcome.handled = len(done_ids)
    for message, exc, trace in failed:
        dead = record_failure(worker, message, exc, trace, token=token)
        outcome.dead += dead
        outcome.retried += not dead
    return outcome


# A message that failed, with its error and the error's traceback ("" when it was reported).
FailedMessage = tuple[Claimed, BaseException, str]
# A message that is not due yet, and the NotYet that says until when.
Waiting = tuple[Claimed, NotYet]


class _Failed(Exception):
    """A failure in a group of messages: its error, and the position in the failing call's
    messages of the one it belongs to (None when a batch handler failed on several)."""

    def __init__(self, position: int | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.position, self.error, self.trace = position, error, traceback.format_exc()


def _run_together(
    worker: Worker, messages: list[Claimed], deadline: float, size: int
) -> tuple[int, _Failed | None, list[FailedMessage]]:
    """Run messages in one savepoint, not one each: a savepoint is two round trips, more than
    a no-op handler costs. The handler is called with `size` messages at a time. Returns how
    many ran, the failure if a call failed (then the savepoint rolled back all of them; the
    failing call's messages start at the count returned), and the failures batch handlers
    reported without raising. Stops early on shutdown or past the deadline."""
    ran, reported = 0, list[FailedMessage]()
    try:
        with transaction.atomic():
            while ran < len(messages) and not (shutdown.requested() or monotonic() > deadline):
                chunk = messages[ran : ran + size]
                reported.extend(_handle_chunk(worker, chunk))
                ran += len(chunk)
    except _Failed as failed:  # every failure is recorded, never lost
        return ran, failed, []
    return ran, None, reported


def _handle_chunk(worker: Worker, chunk: list[Claimed]) -> list[FailedMessage]:
    if worker.batch_handler is None:
        try:
            handle_one(worker, chunk[0])
        except Exception as exc:
            raise _Failed(0, exc) from exc
        return []
    keys: list[str | None] = []
    for position, message in enumerate(chunk):
        try:
            _check(message)
            keys.append(worker.dedup_key(message.envelope))
        except Exception as exc:
            raise _Failed(position, exc) from exc
    try:
        admitted = _first_times(worker, [m.envelope for m in chunk], keys)
    except Exception as exc:
        raise _Failed(None, exc) from exc
    if not admitted:
        return []
    envelopes = [chunk[p].envelope for p in admitted]
    try:
        with telemetry.batch_span(worker.name, envelopes):
            failures = worker.batch_handler(envelopes) or {}
    except Exception as exc:
        raise _Failed(admitted[0] if len(admitted) == 1 else None, exc) from exc
    return [
        (chunk[p], failures[chunk[p].envelope.event_id], "")
        for p in admitted
        if chunk[p].envelope.event_id in failures
    ]


def handle_one(worker: Worker, message: Claimed) -> None:
    _check(message)
    with telemetry.handler_span(worker.name, message.envelope):
        if _first_time_of(worker, message.envelope) and worker.handler is not None:
            worker.handler(message.envelope)


def _check(message: Claimed) -> None:
    """What makes a message unfit for any handler: a bad envelope, another tenant's, or one
    that keeps killing its consumer."""
    envelope = message.envelope
    envelope.validate()
    if message.tenant_id != envelope.tenant_id:
        raise TenantMismatch(
            f"message is addressed to tenant {message.tenant_id}, "
            f"envelope says {envelope.tenant_id}"
        )
    lost = message.claims - 1 - message.attempts
    if lost >= settings.DISPATCH_MAX_LOST_CLAIMS:
        raise ConsumerLost(
            f"claimed {lost} times without an outcome (the consumer crashed, was killed or "
            "timed out while handling it)"
        )


def _first_time_of(worker: Worker, envelope: Envelope) -> bool:
    """False when the worker's own idempotency key says another event did this already."""
    key = worker.dedup_key(envelope)
    if key and not _first_time(worker, envelope, key):
        log.info("%s: %s already handled under key %r", worker.name, envelope.event_id, key)
        return False
    return True


def _first_times(
    worker: Worker, envelopes: Sequence[Envelope], keys: Sequence[str | None]
) -> list[int]:
    """The positions of the envelopes that are the first of their worker's idempotency key
    (or have none), recording their keys: one INSERT ... ON CONFLICT DO NOTHING RETURNING for
    the batch, where a savepoint and an INSERT per message cost more than most handlers. A key
    twice in the batch is the first one's; one that another consumer is writing waits for its
    transaction, as the unique index makes every INSERT of it do."""

    def ident(envelope: Envelope, key: str) -> tuple[uuid.UUID, str]:
        return uuid.UUID(str(envelope.tenant_id)), key[:255]

    first: dict[tuple[uuid.UUID, str], int] = {}  # (tenant, key): the position that may have it
    for position, (envelope, key) in enumerate(zip(envelopes, keys, strict=True)):
        if key:
            first.setdefault(ident(envelope, key), position)
    now = timezone.now()
    rows = [
        (tenant, worker.name, key, envelopes[position].event_id, now)
        for (tenant, key), position in first.items()
    ]
    columns = ["tenant_id", "worker", "key", "event_id", "created"]
    inserted = bulk.insert_new(HandledKey, columns, rows, returning=["tenant_id", "key"])
    # SQLite returns a UUID as 32 hex digits, PostgreSQL as a UUID: compare them as UUIDs.
    fresh = {(uuid.UUID(str(tenant)), key) for tenant, key in inserted}
    admitted = []
    for position, (envelope, key) in enumerate(zip(envelopes, keys, strict=True)):
        if not key or (first[ident(envelope, key)] == position and ident(envelope, key) in fresh):
            admitted.append(position)
        else:
            log.info("%s: %s already handled under key %r", worker.name, envelope.event_id, key)
    return admitted


def _first_time(worker: Worker, envelope: Envelope, key: str) -> bool:
    try:
        with transaction.atomic():
            HandledKey.objects.create(
                tenant_id=envelope.tenant_id,
                worker=worker.name,
                key=key[:255],
                event_id=envelope.event_id,
            )
    except IntegrityError:
        return False
    return True


def _mark_done(worker: Worker, ids: list[int], token: uuid.UUID) -> None:
    if not ids:
        return
    now = timezone.now()
    marked = Message.objects.filter(id__one_of=set(ids), lease_token=token, state=PENDING).update(
        state=DONE, handled_at=now, leased_until=None, lease_token=None, last_error=""
    )
    if marked != len(ids):
        raise LeaseLost(f"{len(ids) - marked} of {len(ids)} messages were re-claimed")
    # After the commit: written inside the batch, the worker's one WorkerState row would stay
    # locked for the whole batch, and every publisher's kick (an UPDATE of that row) would wait.
    transaction.on_commit(lambda: _note_success(worker.name, now))


def _note_success(name: str, at: datetime) -> None:
    if not WorkerState.objects.filter(worker=name).update(last_success=at):
        WorkerState.objects.get_or_create(worker=name, defaults={"last_success": at})


def record_failure(
    worker: Worker, message: Claimed, exc: BaseException, trace: str, *, token: uuid.UUID
) -> bool:
    """Log the attempt, then schedule the retry or dead-letter the message. True if dead."""
    now = timezone.now()
    attempt = message.attempts + 1
    permanent = is_permanent(exc)
    error = describe(exc)
    Failure.objects.create(
        message_id=message.id,
        worker=worker.name,
        tenant_id=message.tenant_id,
        attempt=attempt,
        at=now,
        permanent=permanent,
        error=error,
        traceback=trace,
    )
    dead = permanent or worker.retry.gives_up_after(attempt)
    mine = Message.objects.filter(id=message.id, lease_token=token, state=PENDING)
    if dead:
        updated = mine.update(
            state=DEAD, attempts=attempt, leased_until=None, lease_token=None, last_error=error
        )
    else:
        delay = _retry_delay(worker, exc, attempt)
        updated = mine.update(
            due_at=now + delay,
            attempts=attempt,
            leased_until=None,
            lease_token=None,
            last_error=error,
        )
    if not updated:
        raise LeaseLost(f"message {message.id} was re-claimed")
    if dead:
        reason = error if permanent else f"gave up after {attempt} attempts; last: {error}"
        _dead_letter(worker, message, reason)
        if worker.on_dead:
            worker.on_dead(message.envelope, reason)
    log.log(
        logging.ERROR if dead else logging.WARNING,
        "%s: attempt %s of %s failed: %s",
        worker.name,
        attempt,
        message.envelope.event_id,
        error,
    )
    return dead


def _retry_delay(worker: Worker, exc: BaseException, attempt: int) -> timedelta:
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return timedelta(seconds=exc.retry_after)
    return worker.retry.delay(attempt)


def _dead_letter(worker: Worker, message: Claimed, reason: str) -> None:
    attempts = [f.as_dict() for f in Failure.objects.filter(message_id=message.id).order_by("at")]
    event = Event.objects.get(id=message.envelope.event_id)
    DeadLetter.objects.update_or_create(
        message_id=message.id,
        defaults={
            "worker": worker.name,
            "tenant_id": message.tenant_id,
            "event_type": event.type,
            "envelope": event_as_dict(event),
            "reason": reason,
            "attempts": attempts,
            "created": timezone.now(),
            "replayed_at": None,
        },
    )


def put_off(worker: Worker, waiting: list[Waiting], token: uuid.UUID) -> int:
    """Make messages due again when their NotYet says, as if never claimed: attempts as they
    were, the claim not counted as a lost one (claims is decremented as by release), no
    Failure row. One UPDATE per distinct time, since a batch waiting on one vendor shares it."""
    if not waiting:
        return 0
    now = timezone.now()
    by_time: dict[datetime, set[int]] = {}
    for message, wait in waiting:
        by_time.setdefault(max(wait.until, now), set()).add(message.id)
        log.info(
            "%s: %s not yet, due again at %s: %s",
            worker.name,
            message.envelope.event_id,
            max(wait.until, now).isoformat(),
            wait.reason or "no reason given",
        )
    updated = 0
    for due_at, ids in by_time.items():
        updated += Message.objects.filter(id__one_of=ids, lease_token=token, state=PENDING).update(
            due_at=due_at, leased_until=None, lease_token=None, claims=F("claims") - 1
        )
    if updated != len(waiting):
        raise LeaseLost(f"{len(waiting) - updated} of {len(waiting)} messages were re-claimed")
    return updated


def release(messages: list[Claimed], token: uuid.UUID) -> int:
    """Give claimed messages back for immediate redelivery; the claim did not count."""
    return Message.objects.filter(
        id__one_of={m.id for m in messages}, lease_token=token, state=PENDING
    ).update(leased_until=None, lease_token=None, claims=F("claims") - 1)
