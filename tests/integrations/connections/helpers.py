"""Run CredentialRotationWorker as the runtime does, and read what it left."""

from __future__ import annotations

from django.utils import timezone

from core.models import Event, Message
from core.runtime import dispatch
from integrations.connections.models import CredentialVersion

WORKER = "CredentialRotationWorker"


def run_worker(times: int = 4) -> None:
    """Drain what is due now, a few times: a rotation's second step is a message of its own."""
    for _ in range(times):
        dispatch.drain(WORKER)


def come_due() -> None:
    Message.objects.filter(worker=WORKER, state=Message.State.PENDING).update(
        due_at=timezone.now(), leased_until=None
    )


def stages(credential) -> dict[str, str]:
    """{rotation token: stage} of a credential's versions."""
    return dict(
        CredentialVersion.objects.filter(credential=credential).values_list(
            "rotation_token", "stage"
        )
    )


def events(type: str) -> list[Event]:
    return list(Event.objects.filter(type=type).order_by("recorded_at"))
