"""The one place that talks to django-q2.

django-q2 is only the executor here: a task drains one worker's due messages in batches.
A burst of publishes queues one drain task per worker, not one task per event: `kick` claims
the worker's kick flag with a conditional UPDATE (as healthchecks' sendalerts claims checks),
and only the caller that flips it enqueues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.status import Stat
from django_q.tasks import async_task

from core.models import WorkerState
from core.runtime import registry

log = logging.getLogger(__name__)

# A kick older than this is assumed lost (its task died with a cluster) and may be redone.
KICK_STALE_AFTER = timedelta(seconds=60)
DRAIN_TASK = "core.runtime.dispatch.drain"


def kick(names: list[str] | set[str]) -> None:
    for name in names:
        if _claim_kick(name):
            worker = registry.get(name)
            async_task(DRAIN_TASK, name, cluster=worker.cluster, task_name=f"drain {name}")


def _claim_kick(name: str) -> bool:
    now = timezone.now()
    idle = Q(kicked_at__isnull=True) | Q(kicked_at__lt=now - KICK_STALE_AFTER)
    claimed = WorkerState.objects.filter(idle, worker=name).update(kicked_at=now)
    if claimed:
        return True
    _, created = WorkerState.objects.get_or_create(worker=name, defaults={"kicked_at": now})
    return created


def clear_kick(name: str) -> None:
    """Called by a drain task before it looks for work, so that no publish can fall between
    the moment it found the queue empty and the moment it let the next kick through."""
    WorkerState.objects.filter(worker=name).update(kicked_at=None)


def ensure_worker_states() -> None:
    WorkerState.objects.bulk_create(
        [WorkerState(worker=w.name) for w in registry.all_workers()], ignore_conflicts=True
    )


@dataclass(frozen=True)
class ClusterBeat:
    name: str
    cluster_id: str
    host: str
    status: str
    workers: int
    last_beat: datetime
    uptime_seconds: float


def cluster_beats() -> list[ClusterBeat]:
    """Live clusters, from the stats django-q2 keeps in the shared cache (they expire within
    seconds of a cluster's last guard cycle)."""
    beats = []
    for stat in Stat.get_all():
        broker = getattr(stat, "broker", None)
        beats.append(
            ClusterBeat(
                name=getattr(broker, "list_key", None) or "?",
                cluster_id=str(stat.cluster_id),
                host=stat.host,
                status=stat.status,
                workers=len(stat.workers),
                last_beat=stat.timestamp,
                uptime_seconds=stat.uptime() if stat.tob else 0.0,
            )
        )
    return beats


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    args: tuple
    minutes: int
    cluster: str | None


def sync_schedules(specs: list[ScheduleSpec], *, prefix: str) -> None:
    """Make the django-q2 Schedule rows whose name starts with `prefix` exactly `specs`:
    created once, updated when the code changes, deleted when no longer declared."""
    wanted = {spec.name: spec for spec in specs}
    Schedule.objects.filter(name__startswith=prefix).exclude(name__in=wanted).delete()
    for spec in specs:
        Schedule.objects.update_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "args": repr(spec.args),
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
                "cluster": spec.cluster,
            },
            create_defaults={
                "func": spec.func,
                "args": repr(spec.args),
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
                "cluster": spec.cluster,
                "next_run": next_boundary(timezone.now(), spec.minutes),
            },
        )


def next_boundary(now: datetime, minutes: int) -> datetime:
    """The next whole multiple of `minutes` since midnight, so 5m slots fall on :00, :05..."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((now - midnight).total_seconds() // 60)
    return midnight + timedelta(minutes=(elapsed // minutes + 1) * minutes)
