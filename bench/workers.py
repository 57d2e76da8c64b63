"""The no-op subscriber the dispatch benchmark measures, and its one-task-per-event anchor.
Loaded in the benchmark's qcluster through WORKER_MODULES=bench.workers."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.envelope import Envelope
from core.models import Message
from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker

EVENT_TYPE = "BuildCompleted"  # the benchmark addresses its events to this worker alone


def noop(envelope: Envelope) -> None:
    pass


WORKER = Worker(
    name="BenchNoopWorker",
    module=__name__,
    app="bench",
    group="reaction",
    purpose="Does nothing; measures the runtime's own cost per event.",
    trigger=Trigger(events=(EVENT_TYPE,), description="benchmark"),
    retry=RetryPolicy(max_attempts=5),
    idempotency=Idempotency("eventId"),
    handler=noop,
)


def one_task(message_id: int) -> None:
    """The anchor: the same no-op work and the same idempotency mark, one django-q2 task per
    event, as a runtime without batching would do it."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .select_related("event")
            .filter(id=message_id, state=Message.State.PENDING)
            .first()
        )
        if message is None:
            return
        noop(Envelope.from_event(message.event))
        Message.objects.filter(id=message_id).update(
            state=Message.State.DONE, handled_at=timezone.now()
        )
