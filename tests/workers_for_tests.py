"""Workers for tests that run in other processes (a real qcluster, concurrent consumers).
Loaded there through WORKER_MODULES=tests.workers_for_tests; their behaviour comes from the
environment, as it must cross a process boundary."""

import os
import time

from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker
from tests.effects.models import Effect


def record_effect(envelope) -> None:
    Effect.objects.create(event_id=envelope.event_id, worker="EffectWorker", pid=os.getpid())
    time.sleep(float(os.environ.get("EFFECT_SLEEP", "0")))


WORKER = Worker(
    name="EffectWorker",
    module=__name__,
    app="tests",
    group="reaction",
    purpose="Record one Effect row per handled event.",
    trigger=Trigger(events=("DeploymentPromoted",), description="test"),
    retry=RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1),
    idempotency=Idempotency("eventId"),
    handler=record_effect,
)
