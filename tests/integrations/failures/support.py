"""Helpers of the failures tests: report a failure as a producer would, run the sweep."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from core import services as core_services
from core.models import Event, Message
from core.runtime import dispatch, scheduling
from integrations.failures import contract
from integrations.failures.models import IntegrationFailure

WORKER = "IntegrationRetryWorker"
# A slot boundary (the sweep's five-minute slots): times from here are slot times.
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
CONNECTION = str(uuid.UUID(int=1))
CREDENTIAL = str(uuid.UUID(int=2))


def report(tenant, *, at: datetime = T0, **fields) -> IntegrationFailure:
    """Publish IntegrationFailed as a producer would and let the worker handle it."""
    fields.setdefault("failure_id", "f-1")
    fields.setdefault("kind", "sync")
    fields.setdefault("error", "503 Service Unavailable")
    if fields["kind"] in ("sync", "outage"):
        fields.setdefault("connectionId", CONNECTION)
    if fields["kind"] == "rotation":
        fields.setdefault("credentialId", CREDENTIAL)
        fields.setdefault("rotationToken", "tok-1")
    data = contract.failed_data(**fields)
    core_services.publish(tenant=tenant, type="IntegrationFailed", data=data, occurred_at=at)
    drain()
    return IntegrationFailure.objects.get(tenant=tenant, failure_id=fields["failure_id"])


def drain(worker: str = "IntegrationRetryWorker") -> None:
    """Handle what is due; every message must succeed (a failure would come back later)."""
    dispatch.drain(worker)
    failed = Message.objects.filter(worker=worker).exclude(state=Message.State.DONE)
    assert not failed.filter(attempts__gt=0).exists(), list(failed.values("last_error"))


def sweep(at: datetime) -> None:
    """The five-minute slot at `at` (a slot time) for every tenant, handled."""
    scheduling.fire(WORKER, "sweep", now=at)
    drain()


def after(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def published(type: str) -> list[Event]:
    return list(Event.objects.filter(type=type).order_by("recorded_at", "id"))
