"""A sync run by a real qcluster against the simulator as a process of its own, the cluster
killed (SIGKILL) in the middle of the run and started again: every record stored once, every
event published once, the run's counts exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from core.models import Event
from integrations.connections import credentials
from integrations.sync import handler
from integrations.sync.models import IntegrationRun, SyncRecord
from tests.core.test_processes import ROOT, qcluster, wait_until
from tests.integrations.vendor_sim import SimClient

pytestmark = pytest.mark.django_db(transaction=True)
ISSUES = 600
ENV = {
    "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "DISPATCH_LEASE_SECONDS": "5",
    "DISPATCH_SWEEP_SECONDS": "1",
    "SYNC_PAGES_PER_MESSAGE": "5",  # the run's 30 pages in six commits, so a kill falls between
}


@pytest.fixture
def vendor(tmp_path, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    calls = [{"method": "add_token", "kwargs": {"token": "t"}}]
    calls += [
        {
            "method": "github_issue",
            "kwargs": {"number": n, "updated_at": f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}Z"},
        }
        for n in range(1, ISSUES + 1)
    ]
    # Every page a little slow, so that the kill lands in the middle of the run.
    calls.append(
        {
            "method": "fail",
            "kwargs": {"status": 0, "delay": 0.05, "times": 10_000, "path": "/issues"},
        }
    )
    state, ready = tmp_path / "vendor.json", tmp_path / "vendor.url"
    state.write_text(json.dumps({"calls": calls}))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.vendor_sim", "--state", str(state),
         "--ready", str(ready)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(ready.exists, timeout=30, what="the vendor simulator")
    yield SimClient(ready.read_text())
    process.terminate()
    process.wait(timeout=10)


def test_a_killed_cluster_resumes_the_run_from_its_last_committed_page(tenant, vendor, tmp_path):
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="app",
        base_url=vendor.url,
        config={"owner": "acme", "repo": "app", "per_page": 20},
        streams=["issues"],
    )
    credentials.create_credential(connection=connection, secret={"token": "t"})
    run = handler.start_run(connection=connection, trigger="manual")
    cluster = qcluster(tmp_path, **ENV)
    try:
        wait_until(
            lambda: 0 < SyncRecord.objects.count() < ISSUES,
            timeout=60,
            what="the first pages to commit",
            log=tmp_path / "cluster.log",
        )
    finally:  # the whole cluster, in the middle of the run (or left running by a failure)
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(timeout=10)
    stored_at_kill = SyncRecord.objects.count()
    assert IntegrationRun.objects.get(pk=run.pk).status == "running"

    restarted = qcluster(tmp_path, **ENV)
    try:
        wait_until(
            lambda: IntegrationRun.objects.get(pk=run.pk).status != "running",
            timeout=120,
            what="the restarted cluster to finish the run",
            log=tmp_path / "cluster.log",
        )
    finally:
        os.kill(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=60)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert stored_at_kill < ISSUES
    assert SyncRecord.objects.count() == ISSUES
    assert (run.added, run.updated, run.deleted) == (ISSUES, 0, 0)
    assert Event.objects.filter(type="WorkItemCreated").count() == ISSUES
    assert Event.objects.filter(type="IntegrationRunCompleted").count() == 1
    numbers = sorted(r.data["number"] for r in SyncRecord.objects.all())
    assert numbers == list(range(1, ISSUES + 1))
