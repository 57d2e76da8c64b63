"""Schedules are code: the registry's schedules become django-q2 Schedule rows on every migrate.

A schedule slot does not run a worker directly: `fire` sends each tenant a ScheduleFired message
addressed to the worker, with an eventId derived from (worker, schedule, tenant, slot). The slot
then has the same retries, dead letters, tracing and tenant guard as any event, and firing the
same slot twice (two clusters, a restart) adds nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from core.models import ClusterHeartbeat, Event, HandledKey, Message, Tenant
from core.runtime import queue, registry

log = logging.getLogger(__name__)
PREFIX = "platform:"
# Sent by the hourly prune with `now`: apps delete what they keep only for a while.
pruning = Signal()
SLOT_NAMESPACE = uuid.UUID("6f1c7d0e-3f6b-4c1e-9a57-0c2b8e5d4a10")


def desired_schedules() -> list[queue.ScheduleSpec]:
    specs = []
    for worker in registry.all_workers():
        if not worker.built:
            continue
        for schedule in worker.trigger.schedules:
            specs.append(
                queue.ScheduleSpec(
                    name=f"{PREFIX}{worker.name}:{schedule.name}",
                    func="core.runtime.scheduling.fire",
                    args=(worker.name, schedule.name),
                    minutes=schedule.minutes,
                    cluster=_schedule_cluster(worker.cluster),
                )
            )
    # Split clusters leave the default cluster, which alone runs cluster-less schedules, idle.
    maintenance = "reaction" if settings.WORKER_CLUSTERS == "split" else None
    specs.append(
        queue.ScheduleSpec(
            name=f"{PREFIX}prune",
            func="core.runtime.scheduling.prune",
            args=(),
            minutes=60,
            cluster=maintenance,
        )
    )
    return specs


def _schedule_cluster(cluster: str) -> str | None:
    # django-q2 gives schedules without a cluster to the default cluster.
    return None if cluster == settings.Q_CLUSTER_NAME else cluster


def sync() -> None:
    queue.sync_schedules(desired_schedules(), prefix=PREFIX)
    queue.ensure_worker_states()


def sync_after_migrate(**kwargs: Any) -> None:
    sync()


def slot_of(now: datetime, minutes: int) -> datetime:
    """The slot a firing belongs to: the latest whole multiple of `minutes` at or before now."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((now - midnight).total_seconds() // 60)
    return midnight + timedelta(minutes=elapsed // minutes * minutes)


def slot_event_id(
    worker_name: str, schedule_name: str, tenant_id: object, slot: datetime
) -> uuid.UUID:
    """The eventId of a schedule's slot (its end) for a tenant: a slot fired twice is one event,
    and a reader can tell whether a worker handled a slot without asking the schedule."""
    return uuid.uuid5(
        SLOT_NAMESPACE, f"{worker_name}|{schedule_name}|{tenant_id}|{slot.isoformat()}"
    )


def fire(worker_name: str, schedule_name: str, *, now: datetime | None = None) -> int:
    """Send the slot to every tenant. Returns the number of tenants it was sent to."""
    from core.services import build_envelope, publish_envelopes

    worker = registry.get(worker_name)
    schedule = next((s for s in worker.trigger.schedules if s.name == schedule_name), None)
    if schedule is None:  # a Schedule row left behind by an older release
        declared = [s.name for s in worker.trigger.schedules]
        raise LookupError(
            f"{worker_name} declares no schedule {schedule_name!r}; it has {declared}"
        )
    slot = slot_of(now or timezone.now(), schedule.minutes)
    data = {
        "schedule": schedule.name,
        "windowStart": (slot - schedule.window()).isoformat(),
        "windowEnd": slot.isoformat(),
    }
    envelopes = [
        build_envelope(
            tenant_id=tenant_id,
            type="ScheduleFired",
            data=data,
            source=f"schedule:{worker.name}:{schedule.name}",
            source_id=slot.isoformat(),
            event_id=slot_event_id(worker.name, schedule.name, tenant_id, slot),
            occurred_at=slot,
        )
        for tenant_id in Tenant.objects.values_list("id", flat=True)
    ]
    publish_envelopes(envelopes, to_worker=worker.name)
    return len(envelopes)


def _cluster_workers(cluster: str) -> set[str]:
    return {w.name for w in registry.all_workers() if w.cluster == cluster and w.built}


def sweep(cluster: str) -> list[str]:
    """Kick the workers of a cluster that have due messages nobody is draining: retries whose
    backoff ran out, leases of dead consumers, kicks lost with a cluster."""
    names = _cluster_workers(cluster)
    due = set(
        Message.objects.filter(
            state=Message.State.PENDING, due_at__lte=timezone.now(), worker__in=names
        )
        .values_list("worker", flat=True)
        .distinct()
    )
    queue.kick(due)
    return sorted(due)


def recover(cluster: str) -> list[str]:
    """On a cluster's start: drain tasks queued before may have died with an old cluster (the
    broker would only give them back after its retry period), so count afresh and kick."""
    queue.forget_drains(_cluster_workers(cluster))
    return sweep(cluster)


def prune(*, now: datetime | None = None) -> int:
    """Delete events past EVENT_RETENTION_DAYS whose messages are all handled. Dead and
    pending ones stay: they are the dead-letter store and the backlog."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.EVENT_RETENTION_DAYS)
    unfinished = Message.objects.filter(~Q(state=Message.State.DONE)).values("event_id")
    old = Event.objects.filter(recorded_at__lt=cutoff).exclude(id__in=unfinished)
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:5000]):
        deleted += Event.objects.filter(id__in=ids).delete()[1].get("core.Event", 0)
    HandledKey.objects.filter(created__lt=cutoff).delete()
    ClusterHeartbeat.objects.filter(beat_at__lt=cutoff).delete()
    log.info("pruned %s events older than %s", deleted, cutoff)
    pruning.send(sender=prune, now=now or timezone.now())
    return deleted
