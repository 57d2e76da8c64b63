"""`make bench`: the platform's benchmarks, each figure printed beside its anchor from the same run.

These machines are shared and noisy: compare the ratios, not the absolute numbers.

dispatch: events handled per second through a no-op subscriber on PostgreSQL by a real qcluster
(batched claiming), beside one django-q2 task per event doing the same no-op work and the same
idempotency mark. In both, the work is committed in one transaction while the cluster is
idle and running, and the clock runs from that commit until every message is marked done.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench"


def configure_environment() -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-a-secret"),
        "LOCAL_ENV_FILE": "",  # production's settings, not a `make run` checkout's (DEBUG=1)
        "DATABASE_URL": os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        "WORKER_MODULES": "bench.workers",
        "Q_WORKERS": os.environ.get("Q_WORKERS", "2"),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return env


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    time.sleep(4)  # let the cluster fork its workers and go idle before the clock starts
    return cluster


def stop_cluster(cluster: subprocess.Popen) -> None:
    os.kill(cluster.pid, signal.SIGTERM)
    try:
        cluster.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(cluster.pid, signal.SIGKILL)


def wait_done(worker: str, n: int, *, started, timeout: float) -> float:
    """Seconds from `started` to the last message's mark. Polls the pending side, which the
    partial index keeps small, so that watching costs the machine next to nothing."""
    from django.db.models import Max

    from core.models import Message

    pending = Message.objects.filter(worker=worker, state=Message.State.PENDING)
    deadline = time.monotonic() + timeout
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{worker}: {pending.count()} of {n} not done after {timeout}s")
        time.sleep(0.1)
    done = Message.objects.filter(worker=worker, state=Message.State.DONE)
    assert done.count() == n, f"{worker}: {done.count()} of {n} done"
    return (done.aggregate(last=Max("handled_at"))["last"] - started).total_seconds()


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE core_event, core_message, core_failure, core_deadletter, "
            "core_handledkey, django_q_ormq, django_q_task CASCADE"
        )


def tenant():
    from core.models import Tenant

    return Tenant.objects.get_or_create(slug="bench")[0]


def envelopes(n: int, event_type: str) -> list:
    from core.services import build_envelope

    tenant_id = tenant().pk
    return [build_envelope(tenant_id=tenant_id, type=event_type, data={"n": i}) for i in range(n)]


def bench_batched(n: int) -> float:
    from django.db import transaction
    from django.utils import timezone

    from bench.workers import EVENT_TYPE, WORKER
    from core.services import publish_envelopes

    batch = envelopes(n, EVENT_TYPE)
    with transaction.atomic():
        # Addressed to the no-op worker alone: the wildcard TelemetryCorrelationWorker would
        # take the same events and share the cluster with it.
        publish_envelopes(batch, to_worker=WORKER.name)
    started = timezone.now()  # committed: the on-commit kick has queued the drain
    return n / wait_done(WORKER.name, n, started=started, timeout=600)


def bench_one_task_per_event(n: int) -> float:
    from django.db import transaction
    from django.utils import timezone
    from django_q.tasks import async_task

    from core.models import Event, Message

    # Stored directly, addressed to no built worker: no drain runs, only the tasks below.
    batch = envelopes(n, "TestRunCompleted")
    Event.objects.bulk_create(
        [Event(id=e.event_id, type=e.type, tenant_id=e.tenant_id, trace_id=e.trace_id,
               span_id=e.span_id, occurred_at=e.occurred_at, data=e.data) for e in batch]
    )  # fmt: skip
    Message.objects.bulk_create(
        [Message(event_id=e.event_id, worker="BenchAnchor", tenant_id=e.tenant_id) for e in batch]
    )
    ids = list(Message.objects.filter(worker="BenchAnchor").values_list("id", flat=True))
    with transaction.atomic():
        for message_id in ids:
            async_task("bench.workers.one_task", message_id)
    started = timezone.now()
    return n / wait_done("BenchAnchor", n, started=started, timeout=900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--anchor-events", type=int, default=3000)
    args = parser.parse_args()

    env = configure_environment()
    ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    reset_tables()
    log = ROOT / "var" / "bench-cluster.log"
    cluster = start_cluster(env, log)
    try:
        batched = bench_batched(args.events)
        anchor = bench_one_task_per_event(args.anchor_events)
    finally:
        stop_cluster(cluster)
    print(f"""
dispatch: no-op subscriber, PostgreSQL, one qcluster with {env["Q_WORKERS"]} workers
  batched claiming       {batched:10,.0f} events/s   ({args.events:,} events)
  one task per event     {anchor:10,.0f} events/s   ({args.anchor_events:,} events, anchor)
  ratio                  {batched / anchor:10.1f}x         (goal: >= 5x and >= 5,000 events/s)
""")


if __name__ == "__main__":
    main()
