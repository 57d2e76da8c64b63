"""Fixtures of the sync tests: a GitHub connection with a token to the vendor simulator
(tests/integrations/conftest.py's `sim`)."""

from __future__ import annotations

import pytest

from core.models import Message
from core.runtime import dispatch
from integrations.connections import credentials

WORKER = "IntegrationSyncWorker"


@pytest.fixture
def github(tenant, sim):
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="app issues",
        base_url=sim.url,
        config={"owner": "acme", "repo": "app", "per_page": 2},
        streams=["issues"],
    )
    credentials.create_credential(connection=connection, secret={"token": "ghp-good"})
    return connection


def drain() -> None:
    """Handle every due page of every run, as the cluster would."""
    while Message.objects.filter(
        worker=WORKER, state=Message.State.PENDING, due_at__lte=_now()
    ).exists():
        dispatch.drain(WORKER)


def _now():
    from django.utils import timezone

    return timezone.now()


def time_passes() -> None:
    """What waiting out a vendor's Retry-After or reset does to the rate buckets (kept by
    integrations.limits on a connection that commits at once), and to the pages waiting on
    them: due now."""
    from integrations.limits.models import RateBucket
    from integrations.limits.store import committing

    with committing() as db:
        RateBucket.objects.using(db.alias).update(blocked_until=0, tat=0)
    Message.objects.filter(worker=WORKER, state=Message.State.PENDING).update(due_at=_now())
