"""`manage.py qcluster`: django-q2's cluster, with a bounded drain on SIGTERM and recovery on start.

django-q2 on its own waits for its workers without a limit when stopped. Here SIGTERM first
raises the platform's shutdown flag, which drain tasks check between messages (they finish the
message in hand, commit, and release the rest of their batch); if the cluster is still not down
after SHUTDOWN_DRAIN_TIMEOUT, its processes are killed, and the leases of whatever they held
run out, so every message is redelivered (seed 002: bounded drain, dead-consumer recovery).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from django import db
from django.conf import settings
from django.utils import timezone
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

from core import telemetry
from core.runtime import heap, queue, scheduling, shutdown

log = logging.getLogger(__name__)


class Command(qcluster.Command):  # type: ignore[misc]  # django-q2 has no type hints
    help = "Starts a worker cluster (django-q2) that drains within SHUTDOWN_DRAIN_TIMEOUT."

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("cluster_name"):
            # django-q2 reads the name from the environment when its Conf is first imported.
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster_name = os.environ.get("Q_CLUSTER_NAME", settings.Q_CLUSTER_NAME)
        shutdown.install()  # before the forks, so every worker process shares the flag
        scheduling.sync()
        cluster = Cluster()
        stop = _graceful_stop(cluster)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # The forks must not share this process's database connection (a child closing it
        # would close it for the parent too).
        db.connections.close_all()
        heap.settle()  # before the forks: the workers inherit the frozen start-up objects
        if settings.QCLUSTER_NICE:
            os.nice(settings.QCLUSTER_NICE)  # the workers inherit it too
        if shutdown.requested():  # stopped while it was getting ready: nothing to drain
            return
        cluster.start()
        if options.get("run_once"):
            cluster.stop()
            return
        if shutdown.requested() and cluster.stop_event and not cluster.stop_event.is_set():
            # A stop that came before the sentinel existed had nothing to stop: stop it now.
            cluster.stop()
            return
        telemetry.start_runtime_metrics()
        # The sweeper has a thread of its own, so that the main thread, which handles SIGTERM,
        # is never stuck in a database call (on SQLite a writer can wait for a long batch).
        threading.Thread(target=_sweep, args=(cluster, cluster_name), daemon=True).start()
        while cluster.sentinel.is_alive():
            time.sleep(0.5)
        queue.forget_beat(cluster.cluster_id)


def _sweep(cluster: Cluster, cluster_name: str) -> None:
    """Retries whose backoff ran out and leases of dead consumers come due without anyone
    publishing: look for them every DISPATCH_SWEEP_SECONDS, and say the cluster is alive."""
    started = timezone.now()
    scheduling.recover(cluster_name)
    while cluster.sentinel.is_alive() and not shutdown.requested():
        # Between sweeps, nothing of this thread's is open on its connection: the place to
        # drop one past CONN_MAX_AGE, or broken while the database was away.
        db.close_old_connections()
        try:
            queue.beat(cluster_id=cluster.cluster_id, name=cluster_name, started=started)
            scheduling.sweep(cluster_name)
        except Exception:  # the database may be away for a moment; the next sweep retries
            log.exception("sweep failed")
        time.sleep(settings.DISPATCH_SWEEP_SECONDS)
    db.connections.close_all()


def _graceful_stop(cluster: Cluster) -> Callable[[int, FrameType | None], None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        if shutdown.requested():
            return
        log.info("draining: at most %ss", settings.SHUTDOWN_DRAIN_TIMEOUT)
        shutdown.request()
        if cluster.sentinel is None:
            return  # not started yet: handle() sees the request and stops it once it has
        sentinel_pid = cluster.sentinel.pid
        threading.Thread(target=_kill_after_timeout, args=(sentinel_pid,), daemon=True).start()
        # Not in the handler itself: when the signal went to the whole process group (a
        # terminal, `kill -- -PGID`, systemd's default KillMode), django-q2's sentinel dies of
        # it at once, and Cluster.stop() then waits forever for the dead sentinel to take its
        # stop event. The main loop leaves as soon as the sentinel is gone, either way.
        threading.Thread(target=cluster.stop, daemon=True).start()

    return stop


def _kill_after_timeout(sentinel_pid: int | None) -> None:
    time.sleep(settings.SHUTDOWN_DRAIN_TIMEOUT)
    if sentinel_pid is None:
        return
    pids = [*_descendants(sentinel_pid), sentinel_pid]
    log.warning("drain timed out after %ss; killing %s", settings.SHUTDOWN_DRAIN_TIMEOUT, pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Children of a process, recursively, from /proc (Linux)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            children += [child, *_descendants(child)]
    return children
