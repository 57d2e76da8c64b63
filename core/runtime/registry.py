"""The worker registry: each worker of the catalogs is declared once, in its own module.

A declaration names the worker's trigger (event types and/or schedules), its retry policy and
its idempotency key as the seeds give them. A worker whose handler a later issue has not built
yet is still declared; it receives no messages and health shows it as not built.
"""

from __future__ import annotations

import importlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.conf import settings

from core import events
from core.envelope import Envelope

WILDCARD = "*"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2^(n-1)))."""

    max_attempts: int
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    description: str = ""

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_seconds, self.base_seconds * 2.0 ** (attempt - 1))

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> timedelta:
        return timedelta(seconds=(rng or random).uniform(0, self.ceiling(attempt)))

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


@dataclass(frozen=True)
class Schedule:
    """A recurring slot. `minutes` is the cadence; the slot's window is the cadence before it."""

    name: str
    minutes: int

    def window(self) -> timedelta:
        return timedelta(minutes=self.minutes)


@dataclass(frozen=True)
class Trigger:
    events: tuple[str, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    commands: tuple[str, ...] = ()
    description: str = ""

    def matches(self, event_type: str) -> bool:
        if event_type in self.events or event_type in self.commands:
            return True
        return WILDCARD in self.events and not events.catalog()[event_type].internal


# The hooks a worker declares, as the runtime calls them (positional, so that a handler names its
# parameters as it likes); mypy checks every declaration's functions against them.


class Handler(Protocol):
    """Handles one envelope; raises to fail (core.runtime.errors says how)."""

    def __call__(self, envelope: Envelope, /) -> None: ...


class BatchHandler(Protocol):
    """Handles up to the worker's batch_size envelopes at once; may return {eventId: exception}
    for those it handled but whose outcome was a failure it recorded itself."""

    def __call__(self, envelopes: list[Envelope], /) -> Mapping[uuid.UUID, Exception] | None: ...


class OnDead(Protocol):
    """Told, in the transaction that dead-letters one of the worker's messages, why."""

    def __call__(self, envelope: Envelope, reason: str, /) -> None: ...


class Takes(Protocol):
    """At publish: of the envelopes the worker's trigger matched, the eventIds it takes."""

    def __call__(self, envelopes: list[Envelope], /) -> set[uuid.UUID]: ...


class IdempotencyKey(Protocol):
    """The key under which distinct events mean the same thing; None for none."""

    def __call__(self, envelope: Envelope, /) -> str | None: ...


@dataclass(frozen=True)
class Idempotency:
    """How redelivery is made harmless. Every message is handled once per (eventId, handler);
    `key`, when given, also dedups distinct events that mean the same thing (e.g. the same
    (source, sourceId)): the second is marked handled without running the handler."""

    description: str
    key: IdempotencyKey | None = None


def source_key(envelope: Envelope) -> str | None:
    """The (source, sourceId) key, for a worker whose events mean the same thing when their
    producer sends one twice (a retried webhook from a CI system, say): None for an event
    without a sourceId, which nothing else can duplicate."""
    return f"{envelope.source}:{envelope.source_id}" if envelope.source_id else None


@dataclass(frozen=True)
class Worker:
    name: str
    app: str
    group: str  # "ingestion" or "reaction" (seed 000, "Scaling")
    purpose: str
    trigger: Trigger
    retry: RetryPolicy
    idempotency: Idempotency
    module: str
    handler: Handler | None = None
    # A worker whose work is cheaper in bulk (one query for all the traces a hundred events
    # name) declares `batch_handler` instead: it is called with up to `batch_size` envelopes
    # at a time, in one transaction with their "done" marks.
    # A batch handler may also return {eventId: exception} for messages it handled but whose
    # outcome was a failure it has recorded itself (a webhook POST answered 500): those are
    # retried or dead-lettered as if they had raised, without rolling back their writes; a
    # core.runtime.errors.Deferred one is released untouched, for a message it did not get to.
    batch_handler: BatchHandler | None = None
    batch_size: int = 1
    # Called with (envelope, reason) in the transaction that dead-letters one of its messages,
    # so the worker can record the end of its own story (a delivery marked dead).
    on_dead: OnDead | None = None
    # Called at publish with the envelopes its trigger matched; returns the eventIds it takes.
    # For a wildcard worker with nothing to do for most events (webhooks for tenants with no
    # subscription): one query per publish instead of a message per event to claim and mark.
    takes: Takes | None = None

    def __post_init__(self) -> None:
        if self.handler and self.batch_handler:
            raise ValueError(f"{self.name}: declare handler or batch_handler, not both")

    @property
    def built(self) -> bool:
        return self.handler is not None or self.batch_handler is not None

    @property
    def chunk(self) -> int:
        """How many messages one call of the handler takes."""
        return max(1, self.batch_size) if self.batch_handler else 1

    @property
    def claim_size(self) -> int:
        """How many messages a drain claims and commits at once: one call's worth for a batch
        handler (its work is big; one transaction a call keeps locks and results short-lived),
        DISPATCH_BATCH_SIZE for the others."""
        return self.chunk if self.batch_handler else settings.DISPATCH_BATCH_SIZE

    @property
    def cluster(self) -> str:
        if settings.WORKER_CLUSTERS == "split":
            return self.group
        return settings.Q_CLUSTER_NAME

    def dedup_key(self, envelope: Envelope) -> str | None:
        return self.idempotency.key(envelope) if self.idempotency.key else None


_workers: dict[str, Worker] = {}

CATALOG_MODULES = [
    "observability.workers.trace_ingestion",
    "observability.workers.metric_aggregation",
    "observability.workers.alert_evaluation",
    "observability.workers.incident_analysis",
    "observability.workers.cost_anomaly",
    "observability.workers.telemetry_correlation",
    "feedback.workers.feedback_creation",
    "feedback.workers.quality_score",
    "integrations.workers.webhook_delivery",
    "integrations.workers.integration_sync",
    "integrations.workers.credential_rotation",
    "integrations.workers.external_api_health",
    "integrations.workers.integration_retry",
]


def register(worker: Worker) -> Worker:
    unknown = [
        t
        for t in worker.trigger.events + worker.trigger.commands
        if t != WILDCARD and not events.is_known(t)
    ]
    if unknown:
        raise ValueError(f"{worker.name} subscribes to unknown event types {unknown}")
    _workers[worker.name] = worker
    return worker


def unregister(name: str) -> None:
    _workers.pop(name, None)


def load() -> None:
    """Register the WORKER declared by each catalog module (and by WORKER_MODULES)."""
    for module in CATALOG_MODULES + list(settings.WORKER_MODULES):
        register(importlib.import_module(module).WORKER)


def all_workers() -> list[Worker]:
    return list(_workers.values())


def catalog_workers() -> list[Worker]:
    return [w for w in _workers.values() if w.module in CATALOG_MODULES]


def get(name: str) -> Worker:
    try:
        return _workers[name]
    except KeyError:
        raise LookupError(f"no worker named {name!r}; known: {sorted(_workers)}") from None


def subscribers(event_type: str, *, to_worker: str = "") -> list[Worker]:
    """The built workers that receive an event: its addressee, or every matching subscriber."""
    if to_worker:
        worker = get(to_worker)
        return [worker] if worker.built else []
    return [w for w in _workers.values() if w.built and w.trigger.matches(event_type)]
