"""Replay dead letters through the same idempotent path as any delivery.

Replaying puts the message back to pending with fresh attempts, by a conditional UPDATE on
state=dead: a second replay of the same message finds it pending or done and does nothing, so
replaying twice has the effect of replaying once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core.models import DeadLetter, Message
from core.runtime import queue


@dataclass(frozen=True)
class ReplayFilter:
    worker: str | None = None
    tenant_slug: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    limit: int | None = None


def open_dead_letters(f: ReplayFilter) -> QuerySet[DeadLetter]:
    qs = DeadLetter.objects.filter(replayed_at__isnull=True, message__state=Message.State.DEAD)
    if f.worker:
        qs = qs.filter(worker=f.worker)
    if f.tenant_slug:
        qs = qs.filter(tenant__slug=f.tenant_slug)
    if f.event_type:
        qs = qs.filter(event_type=f.event_type)
    if f.since:
        qs = qs.filter(created__gte=f.since)
    qs = qs.order_by("created", "id")
    return qs[: f.limit] if f.limit else qs


def would_replay(message_state: str) -> bool:
    """Whether replaying a dead letter whose message is in this state sends it back to its
    worker: only a message still dead (replay_all's conditional UPDATE). Otherwise it was
    replayed already, and is pending again or handled."""
    return message_state == Message.State.DEAD


def replay(dead_letter: DeadLetter) -> bool:
    """Send one dead letter back to its worker. False if it was already replayed."""
    return bool(replay_all([dead_letter]))


def replay_all(dead_letters: Iterable[DeadLetter]) -> set[int]:
    """Send dead letters back to their workers, in one transaction, and kick each worker once
    after it commits (not once a letter). Returns the ids of the letters replayed; the others
    had been replayed already. Callers pass a list, not a queryset's iterator: these writes
    and kicks do not belong under a cursor that is still open."""
    now = timezone.now()
    replayed, workers = set(), set()
    with transaction.atomic():
        for dead_letter in dead_letters:
            # would_replay's rule, decided by the row itself under concurrent replays.
            revived = Message.objects.filter(
                id=dead_letter.message_id, state=Message.State.DEAD
            ).update(
                state=Message.State.PENDING,
                due_at=now,
                attempts=0,
                claims=0,
                leased_until=None,
                lease_token=None,
            )
            if revived:
                DeadLetter.objects.filter(id=dead_letter.id).update(
                    replayed_at=now, replays=F("replays") + 1
                )
                replayed.add(dead_letter.id)
                workers.add(dead_letter.worker)
        if workers:
            transaction.on_commit(lambda: queue.kick(workers))
    return replayed
