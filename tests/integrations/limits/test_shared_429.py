"""A vendor's 429 met by two real processes that share one rate bucket.

Two webhook delivery processes (tests/integrations/limits/deliverer.py: the runtime's own claim
and batch, driven one command at a time, so that the test knows which process did what) POST a
tenant's deliveries to the vendor simulator, which answers the first one 429 with
Retry-After: 2. The process that got it blocks the host's bucket; the other, which never saw
the 429, holds its deliveries back too, through the bucket alone. From the simulator's own log:
nothing reaches it before the reset, no attempt is spent, and every delivery lands once after
it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.utils import timezone

from core.models import DeadLetter, Failure, Message
from core.services import build_envelope, publish_envelopes
from integrations.limits import keys
from integrations.limits.models import RateBucket
from integrations.models import WebhookDelivery
from integrations.webhooks.subscriptions import create_subscription
from tests.core.test_processes import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)
WORKER = "WebhookDeliveryWorker"
RETRY_AFTER = 2  # seconds: the whole test waits it out once
BATCH = 5  # deliveries a step takes (WEBHOOK_BATCH_SIZE)
EVENTS = 20  # published after the 429, besides the one that met it
PATH = "/hooks/acme"


class Deliverer:
    """One deliverer process; `do(command)` answers its outcome counts."""

    def __init__(self, log: Path) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "LOG_LEVEL": "WARNING",
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "WEBHOOK_REQUIRE_HTTPS": "0",
            "WEBHOOK_BATCH_SIZE": str(BATCH),
        }
        self.log = log
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integrations.limits.deliverer"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # it exited

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def answer(self) -> str:
        try:
            line = self.lines.get(timeout=60)
        except queue.Empty:
            line = ""
        if not line:
            raise AssertionError(f"the deliverer did not answer\n{self.log.read_text()[-3000:]}")
        return line

    def do(self, command: str) -> dict[str, int]:
        self.send(command)
        return json.loads(self.answer())

    def close(self) -> None:
        if self.process.poll() is None:
            self.send("quit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def together(*deliverers: Deliverer, command: str) -> list[dict[str, int]]:
    """The same command to every process at once; their answers."""
    for deliverer in deliverers:
        deliverer.send(command)
    return [json.loads(deliverer.answer()) for deliverer in deliverers]


@pytest.fixture
def deliverers(tmp_path):
    started = [Deliverer(tmp_path / f"deliverer{n}.log") for n in range(2)]
    try:
        for deliverer in started:
            assert deliverer.answer() == "ready"
        yield started
    finally:
        for deliverer in started:
            deliverer.close()


def publish(tenant, numbers) -> None:
    publish_envelopes(
        [
            build_envelope(tenant_id=tenant.pk, type="DeploymentPromoted", data={"n": n})
            for n in numbers
        ]
    )


def queued():
    """The retries of deliveries: each held back or answered 429 gets one."""
    return Message.objects.filter(worker=WORKER, event__type="WebhookDeliveryQueued")


def test_it_holds_both_processes_back_until_the_vendors_reset_without_spending_attempts(
    tenant, sim, deliverers
):
    first, second = deliverers
    url = sim.url + PATH
    create_subscription(tenant=tenant, url=url, event_types=["DeploymentPromoted"])
    sim.fail(status=429, headers={"Retry-After": str(RETRY_AFTER)}, path=PATH)
    # Then accepted: the simulator has no webhook intake of its own, so a standing "fault"
    # answers the POSTs 200.
    sim.fail(status=200, times=10**6, path=PATH)

    # The first process meets the 429.
    publish(tenant, [0])
    assert first.do("step")["handled"] == 1
    (limited,) = sim.log(PATH)
    assert limited.status == 429
    bucket = RateBucket.objects.get(key=keys.webhook_host(tenant.pk, url))
    reset = bucket.blocked_until_at
    assert reset is not None and reset.timestamp() >= limited.at + RETRY_AFTER
    answered = WebhookDelivery.objects.get()
    assert (answered.attempts, answered.round_attempts, answered.last_status) == (1, 0, 429)
    assert list(queued().values_list("attempts", "due_at")) == [(0, reset)]

    # Both take new deliveries at once: the second process never saw the 429, and holds its
    # batch back all the same, as the first does.
    publish(tenant, range(1, EVENTS + 1))
    steps = together(first, second, command="step")
    assert [step["handled"] for step in steps] == [BATCH, BATCH]
    assert len(sim.log(PATH)) == 1  # nothing sent
    held = WebhookDelivery.objects.exclude(pk=answered.pk)
    assert held.count() == 2 * BATCH
    assert set(held.values_list("attempts", "next_attempt_at")) == {(0, reset)}
    assert set(queued().values_list("attempts", "due_at")) == {(0, reset)}

    # The reset passes (the processes would find the retries due then by themselves; this
    # test's processes only move when told): both drain everything.
    time.sleep(max(0.0, (reset - timezone.now()).total_seconds()) + 0.05)
    together(first, second, command="drain")

    log = sim.log(PATH)
    after = log[1:]
    assert len(log) == EVENTS + 2  # the 429, its delivery again, and each new one once
    assert {r.status for r in after} == {200}
    # Nothing reached the vendor before the reset it gave, by its own clock, nor before the
    # bucket's (the first process's clock: the same machine's).
    assert min(r.at for r in after) >= limited.at + RETRY_AFTER
    assert min(r.at for r in after) >= reset.timestamp()
    ids = Counter(r.headers["webhook-id"] for r in after)
    assert len(ids) == EVENTS + 1 and set(ids.values()) == {1}
    assert limited.headers["webhook-id"] in ids

    deliveries = WebhookDelivery.objects.all()
    assert {d.state for d in deliveries} == {WebhookDelivery.State.DELIVERED}
    assert sorted(d.attempts for d in deliveries) == [1] * EVENTS + [2]  # POSTs, the 429's too
    assert {d.round_attempts for d in deliveries} == {0}  # none spent of the retry ladder
    mine = Message.objects.filter(worker=WORKER)
    assert set(mine.values_list("state", "attempts")) == {(Message.State.DONE, 0)}
    assert queued().count() == 1 + 2 * BATCH
    assert not DeadLetter.objects.exists()
    assert not Failure.objects.filter(worker=WORKER).exists()
    assert RateBucket.objects.get(pk=bucket.pk).grants == EVENTS + 2
