"""A worker for the NotYet tests that run in other processes: its events say until when their
vendor refuses them (data.until), which crosses the process boundary as the event does.
Loaded there through WORKER_MODULES=tests.core.not_yet_workers."""

import os
from datetime import datetime

from django.utils import timezone

from core.runtime.errors import NotYet
from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker
from tests.effects.models import Effect

NAME = "NotYetWorker"


def wait_or_record(envelope) -> None:
    until = datetime.fromisoformat(envelope.data["until"])
    if timezone.now() < until:
        raise NotYet(until, "the vendor said not before then")
    Effect.objects.create(event_id=envelope.event_id, worker=NAME, pid=os.getpid())


WORKER = Worker(
    name=NAME,
    module=__name__,
    app="tests",
    group="reaction",
    purpose="Record one Effect row per event once its vendor lets it.",
    trigger=Trigger(events=("DeploymentPromoted",), description="test"),
    # One attempt: a wait that spent one would dead-letter the message at once.
    retry=RetryPolicy(max_attempts=1, base_seconds=0.1, cap_seconds=1),
    idempotency=Idempotency("eventId"),
    handler=wait_or_record,
)
