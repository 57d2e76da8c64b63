"""The runtime across real processes: concurrent consumers, and a real qcluster that is
stopped with SIGTERM or killed in the middle of a batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from core import services
from core.models import Message
from core.runtime import dispatch, registry
from tests import workers_for_tests
from tests.conftest import SPAWNED
from tests.effects.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def effect_worker():
    registry.register(workers_for_tests.WORKER)
    yield workers_for_tests.WORKER
    registry.unregister(workers_for_tests.WORKER.name)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def spawn(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "WORKER_MODULES": "tests.workers_for_tests",
        "DATABASE_URL": database_url(),
        "Q_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    SPAWNED.append(process)  # killed after the test if it is left running
    return process


def qcluster(tmp_path: Path, **env: str) -> subprocess.Popen:
    return spawn([sys.executable, "manage.py", "qcluster"], tmp_path / "cluster.log", **env)


def publish_many(tenant, n: int) -> list:
    envelopes = [
        services.build_envelope(tenant_id=tenant.pk, type="DeploymentPromoted", data={"n": i})
        for i in range(n)
    ]
    services.publish_envelopes(envelopes)
    return envelopes


def wait_until(condition, *, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
        time.sleep(0.2)


def messages():
    # EffectWorker's only: the catalog's built wildcard workers get these events too, and the
    # cluster handles theirs alongside.
    return Message.objects.filter(worker="EffectWorker")


def effects_per_event() -> dict:
    return dict(Effect.objects.values_list("event_id").annotate(n=Count("id")))


def assert_each_handled_once(envelopes) -> None:
    counts = effects_per_event()
    assert len(counts) == len(envelopes)
    assert set(counts.values()) == {1}
    assert not messages().exclude(state="done").exists()


def test_it_handles_each_event_once_with_two_consumer_processes(
    postgres, tenant, effect_worker, tmp_path
):
    envelopes = publish_many(tenant, 3000)

    consumers = [
        spawn(
            [sys.executable, "-m", "tests.consume"],
            tmp_path / f"consumer{i}.log",
            DISPATCH_BATCH_SIZE="50",
            EFFECT_SLEEP="0.001",  # long enough that neither finishes before the other starts
        )
        for i in range(2)
    ]
    for consumer in consumers:
        assert consumer.wait(timeout=240) == 0, (tmp_path / "consumer0.log").read_text()

    assert_each_handled_once(envelopes)
    # Both took part: the claims interleaved rather than one consumer doing it all.
    assert Effect.objects.values("pid").distinct().count() == 2


def test_it_drains_within_the_timeout_on_sigterm_and_loses_nothing(tenant, effect_worker, tmp_path):
    envelopes = publish_many(tenant, 400)
    cluster = qcluster(
        tmp_path, EFFECT_SLEEP="0.02", DISPATCH_BATCH_SIZE="100", SHUTDOWN_DRAIN_TIMEOUT="8"
    )
    wait_until(
        lambda: Effect.objects.count() >= 20,
        timeout=60,
        what="the cluster to start",
        log=tmp_path / "cluster.log",
    )

    os.kill(cluster.pid, signal.SIGTERM)
    started = time.monotonic()
    cluster.wait(timeout=30)
    assert time.monotonic() - started < 8 + 3, (tmp_path / "cluster.log").read_text()

    # Whatever it had claimed but not handled was released, not left leased.
    leftover = messages().filter(state="pending")
    assert not leftover.filter(lease_token__isnull=False).exists()
    assert Effect.objects.count() == messages().filter(state="done").count()
    while leftover.exists():
        dispatch.drain("EffectWorker")
    assert_each_handled_once(envelopes)


def test_it_exits_when_sigterm_reaches_its_whole_process_group(tenant, effect_worker, tmp_path):
    # As from a terminal, `kill -- -PGID` or systemd's default KillMode: django-q2's sentinel
    # and workers die of it at once, and the cluster must not wait for them forever.
    envelopes = publish_many(tenant, 200)
    cluster = qcluster(tmp_path, EFFECT_SLEEP="0.01", SHUTDOWN_DRAIN_TIMEOUT="8")
    wait_until(lambda: Effect.objects.exists(), timeout=60, what="the cluster to start")

    os.killpg(cluster.pid, signal.SIGTERM)

    assert cluster.wait(timeout=15) is not None, (tmp_path / "cluster.log").read_text()
    dispatch.drain("EffectWorker")  # what it held comes due again once its lease runs out
    messages().filter(state="pending").update(leased_until=None)
    while messages().filter(state="pending").exists():
        dispatch.drain("EffectWorker")
    assert_each_handled_once(envelopes)


def test_it_loses_nothing_when_the_cluster_is_killed_mid_batch(tenant, effect_worker, tmp_path):
    envelopes = publish_many(tenant, 600)
    env = {
        "EFFECT_SLEEP": "0.01",
        "DISPATCH_BATCH_SIZE": "100",
        "DISPATCH_LEASE_SECONDS": "3",
        "DISPATCH_SWEEP_SECONDS": "1",
    }
    cluster = qcluster(tmp_path, **env)
    wait_until(
        lambda: Effect.objects.count() >= 50,
        timeout=60,
        what="the cluster to start",
        log=tmp_path / "cluster.log",
    )

    os.killpg(cluster.pid, signal.SIGKILL)  # the whole cluster, in the middle of a batch
    cluster.wait(timeout=10)
    assert messages().filter(state="pending").exists()

    restarted = qcluster(tmp_path, **env)
    try:
        wait_until(
            lambda: not messages().filter(state="pending").exists(),
            timeout=120,
            what="the restarted cluster to finish",
        )
    finally:
        os.kill(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=60)

    assert_each_handled_once(envelopes)


def test_it_never_doubles_an_effect_with_two_clusters_on_one_database(
    postgres, tenant, effect_worker, tmp_path
):
    envelopes = publish_many(tenant, 2000)
    env = {"DISPATCH_BATCH_SIZE": "50", "EFFECT_SLEEP": "0.001"}
    clusters = [qcluster(tmp_path, **env), qcluster(tmp_path, **env)]
    try:
        wait_until(
            lambda: not messages().filter(state="pending").exists(),
            timeout=120,
            what="two clusters to finish",
            log=tmp_path / "cluster.log",
        )
    finally:
        for cluster in clusters:
            os.kill(cluster.pid, signal.SIGTERM)
        for cluster in clusters:
            cluster.wait(timeout=60)

    assert_each_handled_once(envelopes)


def test_it_kills_a_cluster_that_does_not_drain_in_time_and_loses_nothing(
    tenant, effect_worker, tmp_path
):
    envelopes = publish_many(tenant, 20)
    cluster = qcluster(
        tmp_path, EFFECT_SLEEP="60", DISPATCH_LEASE_SECONDS="3", SHUTDOWN_DRAIN_TIMEOUT="2"
    )
    wait_until(
        lambda: messages().filter(leased_until__isnull=False).exists(),
        timeout=60,
        what="the cluster to take a batch",
        log=tmp_path / "cluster.log",
    )

    os.kill(cluster.pid, signal.SIGTERM)
    started = time.monotonic()
    cluster.wait(timeout=30)
    # Killed soon after the 2 s drain timeout, not after the handler's minute of sleep (the
    # margin is wide: on a loaded machine the kill and the exit take seconds).
    assert time.monotonic() - started < 20

    time.sleep(3)  # the lease of the killed drain runs out
    while messages().filter(state="pending").exists():
        dispatch.drain("EffectWorker")  # here EFFECT_SLEEP is unset: no sleeping
    assert_each_handled_once(envelopes)
