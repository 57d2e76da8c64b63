"""Health of the thirteen workers (seed 003's health endpoint): selectors only, no writes."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from core.models import Failure, Message, WorkerState
from core.runtime import queue, registry
from core.runtime.registry import Worker

HEALTHY, DEGRADED, UNHEALTHY, NOT_BUILT = "healthy", "degraded", "unhealthy", "not_built"


def worker_counts() -> dict[str, dict[str, int]]:
    """Backlog (due now), in flight (leased) and open dead letters per worker: two queries."""
    now = timezone.now()
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: {"backlog": 0, "in_flight": 0, "dead_letters": 0, "oldest_due_seconds": 0}
    )
    leased = Q(leased_until__gt=now)
    pending = (
        Message.objects.filter(state=Message.State.PENDING)
        .values("worker")
        .annotate(
            backlog=Count("id", filter=Q(due_at__lte=now) & ~leased),
            leased=Count("id", filter=leased),
            oldest_due=Min("due_at", filter=Q(due_at__lte=now) & ~leased),
        )
        .values_list("worker", "backlog", "leased", "oldest_due")
    )
    for worker, backlog, in_flight, oldest_due in pending:
        c = counts[worker]
        c["backlog"], c["in_flight"] = backlog, in_flight
        if oldest_due:
            c["oldest_due_seconds"] = int((now - oldest_due).total_seconds())
    dead = (
        Message.objects.filter(state=Message.State.DEAD)
        .values("worker")
        .annotate(n=Count("id"))
        .values_list("worker", "n")
    )
    for worker, n in dead:
        counts[worker]["dead_letters"] = n
    return {w.name: counts[w.name] for w in registry.all_workers()}


def last_successes() -> dict[str, datetime | None]:
    """When each worker last handled a message successfully (None: never): one query."""
    return dict(WorkerState.objects.values_list("worker", "last_success"))


def report() -> dict[str, Any]:
    now = timezone.now()
    counts = worker_counts()
    failures = dict(
        Failure.objects.filter(at__gte=now - timedelta(hours=1))
        .values_list("worker")
        .annotate(n=Count("id"))
    )
    last_success = last_successes()
    beats = queue.cluster_beats()
    workers = [
        _worker_report(w, counts[w.name], failures.get(w.name, 0), last_success.get(w.name), beats)
        for w in registry.all_workers()
    ]
    statuses = {w["status"] for w in workers}
    overall = UNHEALTHY if UNHEALTHY in statuses else DEGRADED if DEGRADED in statuses else HEALTHY
    if not beats:  # nothing runs schedules, sweeps or drains at all
        overall = UNHEALTHY
    return {
        "status": overall,
        "checkedAt": now.isoformat(),
        "clusters": [_beat_report(b) for b in beats],
        "workers": workers,
    }


def _worker_report(
    worker: Worker,
    counts: dict[str, int],
    failures: int,
    last_success: datetime | None,
    beats: list[queue.ClusterBeat],
) -> dict[str, Any]:
    beat = max((b.last_beat for b in beats if b.name == worker.cluster), default=None)
    status = _status(worker, counts, failures, beat)
    return {
        "name": worker.name,
        "app": worker.app,
        "status": status,
        "built": worker.built,
        "trigger": {
            "description": worker.trigger.description,
            "events": list(worker.trigger.events),
            "commands": list(worker.trigger.commands),
            "schedules": [f"{s.name} (every {s.minutes} min)" for s in worker.trigger.schedules],
        },
        "retry": worker.retry.description,
        "idempotency": worker.idempotency.description,
        "cluster": worker.cluster,
        "backlog": counts["backlog"],
        "oldestDueSeconds": counts["oldest_due_seconds"],
        "inFlight": counts["in_flight"],
        "deadLetters": counts["dead_letters"],
        "lastSuccess": last_success.isoformat() if last_success else None,
        "failuresLastHour": failures,
        "clusterHeartbeat": beat.isoformat() if beat else None,
    }


def _status(worker: Worker, counts: dict[str, int], failures: int, beat: datetime | None) -> str:
    if not worker.built:
        return NOT_BUILT
    waiting = counts["oldest_due_seconds"]
    if beat is None or waiting > settings.HEALTH_BACKLOG_UNHEALTHY_SECONDS:
        return UNHEALTHY
    if counts["dead_letters"] or failures or waiting > settings.HEALTH_BACKLOG_DEGRADED_SECONDS:
        return DEGRADED
    return HEALTHY


def _beat_report(beat: queue.ClusterBeat) -> dict[str, Any]:
    return {
        "name": beat.name,
        "clusterId": beat.cluster_id,
        "host": beat.host,
        "status": beat.status,
        "workers": beat.workers,
        "lastHeartbeat": beat.last_beat.isoformat(),
        "uptimeSeconds": round(beat.uptime_seconds),
    }
