"""The one place that talks to django-q2.

django-q2 is only the executor here: a task drains one worker's due messages in batches, and
the number of drain tasks queued or running per worker is counted, so that a burst of
publishes costs one task, not one per event.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.status import Stat
from django_q.tasks import async_task

from core.models import ClusterHeartbeat, Message, WorkerState
from core.runtime import registry, shutdown

log = logging.getLogger(__name__)

# Drains counted longer ago than this are assumed lost (their tasks died with a cluster).
DRAINS_STALE_AFTER = timedelta(seconds=120)
DRAIN_TASK = "core.runtime.dispatch.drain"


def kick(names: list[str] | set[str]) -> None:
    """Make sure a drain is queued or running for each worker."""
    for name in _take_drain_slots(sorted(names), limit=1):
        _enqueue_drain(name)


def spread(name: str) -> None:
    """A drain found a full batch: queue another one beside it, up to the concurrency cap."""
    if _take_drain_slot(name, limit=settings.DISPATCH_CONCURRENCY):
        _enqueue_drain(name)


def finish_drain(name: str) -> None:
    """Called by a drain as it leaves. It looks for due work only after giving up its slot, so
    an event committed meanwhile is seen either here or by the kick of its publisher."""
    WorkerState.objects.filter(worker=name).update(drains=Greatest(F("drains") - 1, 0))
    if not shutdown.requested() and _has_due(name):
        kick([name])


def forget_drains(names: set[str]) -> None:
    """On a cluster's start: drains counted before may have died with an old cluster."""
    WorkerState.objects.filter(worker__in=names).update(drains=0, drains_changed=None)


def _enqueue_drain(name: str) -> None:
    worker = registry.get(name)
    async_task(
        DRAIN_TASK,
        name,
        cluster=worker.cluster,
        task_name=f"drain {name}",
        broker=_Producer(list_key=worker.cluster or Conf.CLUSTER_NAME),
    )


class _Producer(ORM):  # type: ignore[misc]  # django-q2 has no type hints
    """django-q2's ORM broker as the platform's producers use it: without closing the caller's
    database connection.

    The stock broker calls close_old_connections() on every call outside a transaction, which
    closes a connection older than CONN_MAX_AGE (on SQLite, where it is 0, any connection),
    and with it every cursor its caller has open: a loop over a queryset's .iterator() that
    kicked a worker died with "Cannot operate on a closed database" after its work was
    queued. A producer's connection belongs to its caller, whose own boundaries recycle it:
    a request's end, django-q2's worker before each task, the cluster's sweeper between
    sweeps. The cluster's own broker, which polls in a loop of its own, still closes them."""

    @staticmethod
    def get_connection(list_key: str | None = None) -> Any:  # a QuerySet of OrmQ
        return OrmQ.objects.using(Conf.ORM)


def _take_drain_slots(names: list[str], *, limit: int) -> list[str]:
    """The workers of `names` that got a slot. On PostgreSQL in one statement for them all
    (every publish kicks each of its subscribers; two wildcard workers take every event)."""
    if connection.vendor != "postgresql" or len(names) < 2:
        return [name for name in names if _take_drain_slot(name, limit=limit)]
    now = timezone.now()
    stale = now - DRAINS_STALE_AFTER
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH names AS (SELECT unnest(%s::text[]) AS worker), "
            f"taken AS (UPDATE {_STATE} AS s SET "
            f"drains = CASE WHEN {_STALE} THEN 1 ELSE drains + 1 END, drains_changed = %s "
            f"FROM names WHERE s.worker = names.worker AND (drains < %s OR {_STALE}) "
            "RETURNING s.worker), "
            # A worker's first drain ever: its row does not exist yet.
            f"added AS (INSERT INTO {_STATE} (worker, drains, drains_changed) "
            "SELECT worker, 1, %s FROM names ON CONFLICT DO NOTHING RETURNING worker) "
            "SELECT worker FROM taken UNION ALL SELECT worker FROM added",
            [list(names), stale, now, limit, stale, now],
        )
        return [row[0] for row in cursor.fetchall()]


def _take_drain_slot(name: str, *, limit: int) -> bool:
    """A conditional UPDATE, as healthchecks' sendalerts claims checks: of all the processes
    that try at once, only as many as there are free slots succeed. In SQL: every publish
    kicks its subscribers, and the ORM's Case/When and get_or_create cost several times the
    statements themselves (measured: 3.4 ms of CPU a kick, 0.15 ms this way)."""
    moment = timezone.now()
    now = connection.ops.adapt_datetimefield_value(moment)
    stale = connection.ops.adapt_datetimefield_value(moment - DRAINS_STALE_AFTER)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_STATE} SET drains = CASE WHEN {_STALE} THEN 1 ELSE drains + 1 END, "
            f"drains_changed = %s WHERE worker = %s AND (drains < %s OR {_STALE})",
            [stale, now, name, limit, stale],
        )
        if cursor.rowcount:
            return True
        # Its first drain ever: the row does not exist yet.
        cursor.execute(
            f"INSERT INTO {_STATE} (worker, drains, drains_changed) VALUES (%s, 1, %s) "
            "ON CONFLICT DO NOTHING RETURNING worker",
            [name, now],
        )
        return cursor.fetchone() is not None


_STATE = WorkerState._meta.db_table
_STALE = "(drains_changed IS NULL OR drains_changed < %s)"


def _has_due(name: str) -> bool:
    now = timezone.now()
    return (
        Message.objects.filter(worker=name, state=Message.State.PENDING, due_at__lte=now)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .exists()
    )


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


def beat(*, cluster_id: uuid.UUID, name: str, started: datetime) -> None:
    ClusterHeartbeat.objects.update_or_create(
        cluster_id=cluster_id,
        defaults={
            "name": name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": started,
            "beat_at": timezone.now(),
        },
    )


def forget_beat(cluster_id: uuid.UUID) -> None:
    ClusterHeartbeat.objects.filter(cluster_id=cluster_id).delete()


def cluster_beats() -> list[ClusterBeat]:
    """Live clusters: those whose heartbeat is recent, with the status and pool size that
    django-q2 keeps for them in the shared cache."""
    now = timezone.now()
    alive_since = now - timedelta(seconds=max(15, 3 * settings.DISPATCH_SWEEP_SECONDS))
    stats = {str(stat.cluster_id): stat for stat in Stat.get_all()}
    beats = []
    for row in ClusterHeartbeat.objects.filter(beat_at__gte=alive_since).order_by("name"):
        stat = stats.get(str(row.cluster_id))
        beats.append(
            ClusterBeat(
                name=row.name,
                cluster_id=str(row.cluster_id),
                host=row.host,
                status=stat.status if stat else "Unknown",
                workers=len(stat.workers) if stat else 0,
                last_beat=row.beat_at,
                uptime_seconds=(now - row.started).total_seconds(),
            )
        )
    return beats


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    args: tuple[str, ...]
    minutes: int
    cluster: str | None


def sync_schedules(specs: list[ScheduleSpec], *, prefix: str) -> None:
    """Make the django-q2 Schedule rows whose name starts with `prefix` exactly `specs`:
    created once, updated when the code changes, deleted when no longer declared."""
    wanted = {spec.name: spec for spec in specs}
    Schedule.objects.filter(name__startswith=prefix).exclude(name__in=wanted).delete()
    existing = {s.name: s for s in Schedule.objects.filter(name__in=wanted)}
    for spec in specs:
        row = existing.get(spec.name) or Schedule(name=spec.name)
        if row.pk is None or row.minutes != spec.minutes:
            # A new cadence starts at its next boundary, not at the old cadence's next run.
            row.next_run = next_boundary(timezone.now(), spec.minutes)
        row.func, row.args, row.cluster = spec.func, repr(spec.args), spec.cluster
        row.schedule_type, row.minutes, row.repeats = Schedule.MINUTES, spec.minutes, -1
        row.save()


def next_boundary(now: datetime, minutes: int) -> datetime:
    """The next whole multiple of `minutes` since midnight, so 5m slots fall on :00, :05..."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((now - midnight).total_seconds() // 60)
    return midnight + timedelta(minutes=(elapsed // minutes + 1) * minutes)
