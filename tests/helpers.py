"""Small helpers shared by the test modules."""

from __future__ import annotations

from core.models import Message
from core.runtime import dispatch


def drain_all(worker: str) -> None:
    """Run the worker's drains until none of its messages is pending, as a cluster would."""
    while Message.objects.filter(worker=worker, state=Message.State.PENDING).exists():
        dispatch.drain(worker)
