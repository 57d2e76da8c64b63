"""An outage end to end, with real processes: the vendor simulator as a process of its own
answers 503 to everything; ExternalApiHealthWorker's probes, run by a real qcluster, take the
connection pending, then down, which opens its circuit and its host's webhook circuit; a sync
of the connection and a webhook delivery to that host are held back (NotYet), their attempts
unspent; the vendor comes back, the probes bring the connection up and close both circuits,
and the sync completes and the webhook is delivered. One IntegrationFailed for the outage, one
ConnectionHealthChanged per important transition, nothing dead-lettered.

The probe windows are the schedule's slots fired with explicit times (scheduling.fire(now=)),
an hour ahead so that no slot or re-probe of the real clock is newer than them (latest wins),
and drained by the cluster's real consumers: a minute per window would make it a five-minute
test. Once the circuits close, the held-back messages are due at once (the health worker
resumes them), not when the open period they were put off for would have ended."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from core import services
from core.models import DeadLetter, Event, Failure, Message
from core.runtime import scheduling
from integrations.connections import credentials
from integrations.health.decisions import DOWN, PENDING, UP
from integrations.health.models import ConnectionHealth, ProbeResult
from integrations.limits import keys
from integrations.limits.models import Circuit
from integrations.models import WebhookAttempt, WebhookDelivery
from integrations.sync import handler as sync
from integrations.sync.models import IntegrationRun, SyncRecord
from integrations.webhooks.subscriptions import create_subscription
from tests.core.test_processes import ROOT, qcluster, wait_until
from tests.integrations.test_processes import stop
from tests.integrations.vendor_sim import SimClient

pytestmark = pytest.mark.django_db(transaction=True)
HEALTH, SYNC, WEBHOOKS = "ExternalApiHealthWorker", "IntegrationSyncWorker", "WebhookDeliveryWorker"
ENV = {
    "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_REQUIRE_HTTPS": "0",
    "DISPATCH_SWEEP_SECONDS": "1",
}
ISSUES = 3
T0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1)


@pytest.fixture
def vendor(tmp_path, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    calls = [{"method": "add_token", "kwargs": {"token": "t"}}]
    calls += [
        {"method": "github_issue", "kwargs": {"number": n, "updated_at": f"2024-05-01T10:0{n}:00Z"}}
        for n in range(1, ISSUES + 1)
    ]
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


def probe_window(connection, minute: int, *, log) -> ConnectionHealth:
    """Fire the probe slot at T0 + minute and wait for the cluster to apply it."""
    window = T0 + timedelta(minutes=minute)
    scheduling.fire(HEALTH, "probe", now=window)
    wait_until(
        lambda: ConnectionHealth.objects.filter(connection=connection, window=window).exists(),
        timeout=20,
        what=f"the probe window {window}",
        log=log,
    )
    return ConnectionHealth.objects.get(connection=connection)


def circuit(key: str) -> str:
    return Circuit.objects.filter(key=key).values_list("state", flat=True).first() or "closed"


def waiting(worker: str, type_: str) -> Message:
    return Message.objects.get(worker=worker, event__type=type_)


def test_an_outage_holds_sync_and_webhooks_back_without_spending_attempts(tenant, vendor, tmp_path):
    log = tmp_path / "cluster.log"
    # The test fires the slots itself: the real clock's come in a day (the cluster keeps an
    # existing row's next run), so that no cadence starts a sync and no probe slot of its own
    # runs while the test does.
    scheduling.sync()
    Schedule.objects.update(next_run=timezone.now() + timedelta(days=1))
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="app",
        base_url=vendor.url,
        config={"owner": "acme", "repo": "app", "per_page": 20},
        streams=["issues"],
    )
    credentials.create_credential(connection=connection, secret={"token": "t"})
    # An endpoint on the vendor's own host (the simulator's control path answers 200).
    create_subscription(
        tenant=tenant, url=f"{vendor.url}/_sim/log", event_types=["DeploymentPromoted"]
    )
    connection_key = keys.connection(connection.pk)
    webhook_key = keys.webhook_host(tenant.pk, vendor.url)

    vendor.fail(status=503, times=1_000_000)  # the vendor goes down
    cluster = qcluster(tmp_path, **ENV)
    try:
        assert probe_window(connection, 0, log=log).state == PENDING
        assert probe_window(connection, 1, log=log).state == PENDING
        assert probe_window(connection, 2, log=log).state == DOWN
        assert (circuit(connection_key), circuit(webhook_key)) == ("open", "open")

        # While it is down: a sync of the connection and a webhook to its host.
        run = sync.start_run(connection=connection, trigger="manual")
        services.publish(tenant=tenant, type="DeploymentPromoted", data={"version": "9"})
        wait_until(
            lambda: (
                Message.objects.filter(
                    worker=WEBHOOKS, event__type="WebhookDeliveryQueued"
                ).exists()
                and waiting(SYNC, "IntegrationSyncRequested").due_at > timezone.now()
                and waiting(SYNC, "IntegrationSyncRequested").state == "pending"
            ),
            timeout=30,
            what="the sync and the delivery to be held back",
            log=log,
        )
        held = [
            waiting(SYNC, "IntegrationSyncRequested"),
            waiting(WEBHOOKS, "WebhookDeliveryQueued"),
        ]
        assert [(m.state, m.attempts) for m in held] == [("pending", 0), ("pending", 0)]
        # Each due when its circuit's open period ends.
        opened = dict(Circuit.objects.values_list("key", "open_until"))
        assert [m.due_at for m in held] == [opened[connection_key], opened[webhook_key]]
        assert all(m.due_at > timezone.now() for m in held)
        delivery = WebhookDelivery.objects.get()
        assert (delivery.attempts, delivery.round_attempts) == (0, 0)
        assert delivery.next_attempt_at == held[1].due_at
        assert not WebhookAttempt.objects.exists()
        assert vendor.log("/issues") == []  # the sync called nothing
        assert IntegrationRun.objects.get(pk=run.pk).status == "running"

        # The vendor comes back: two good windows bring it up and close both circuits.
        vendor.clear_faults()
        assert probe_window(connection, 3, log=log).state == DOWN
        assert probe_window(connection, 4, log=log).state == UP
        assert (circuit(connection_key), circuit(webhook_key)) == ("closed", "closed")

        # What the circuits held back is due now, not when their open period would have ended.
        resumed = Message.objects.filter(pk__in=[m.pk for m in held])
        assert all(m.due_at <= timezone.now() for m in resumed)
        wait_until(
            lambda: (
                IntegrationRun.objects.get(pk=run.pk).status != "running"
                and WebhookDelivery.objects.get().state == "delivered"
            ),
            timeout=30,
            what="the sync to complete and the webhook to be delivered",
            log=log,
        )
    finally:
        stop(cluster)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert SyncRecord.objects.filter(connection=connection).count() == ISSUES
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.round_attempts) == (1, 0)
    assert list(WebhookAttempt.objects.values_list("status_code", flat=True)) == [200]
    for message in Message.objects.filter(worker__in=[SYNC, WEBHOOKS]):
        assert message.attempts == 0, message
    assert not Failure.objects.filter(worker__in=[SYNC, WEBHOOKS]).exists()
    assert not DeadLetter.objects.exists()
    failed = Event.objects.filter(type="IntegrationFailed")
    assert [e.data["kind"] for e in failed] == ["outage"]
    changes = Event.objects.filter(type="ConnectionHealthChanged").order_by("recorded_at")
    assert [(e.data["from"], e.data["to"]) for e in changes] == [(PENDING, DOWN), (DOWN, UP)]
    assert ProbeResult.objects.filter(connection=connection).count() == 5  # the test's windows
