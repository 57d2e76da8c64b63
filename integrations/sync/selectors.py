"""Reads of the sync: a connection's runs and its records feed, always by tenant."""

from __future__ import annotations

from django.db.models import QuerySet

from integrations.connections.models import IntegrationConnection
from integrations.sync.models import IntegrationRun, SyncRecord, SyncStream


def runs(*, connection: IntegrationConnection) -> QuerySet[IntegrationRun]:
    return IntegrationRun.objects.filter(tenant_id=connection.tenant_id, connection=connection)


def streams(*, connection: IntegrationConnection) -> QuerySet[SyncStream]:
    return SyncStream.objects.filter(tenant_id=connection.tenant_id, connection=connection)


def changes(
    *,
    connection: IntegrationConnection,
    after: int,
    stream: str = "",
    actions: list[str] | None = None,
    limit: int = 100,
) -> list[SyncRecord]:
    """The records changed after change number `after`, in the order they changed (Nango's
    records feed: a consumer keeps the last number it handled and asks again from it)."""
    found = SyncRecord.objects.filter(
        tenant_id=connection.tenant_id, connection=connection, change__gt=after
    )
    if stream:
        found = found.filter(stream=stream)
    if actions:
        found = found.filter(last_action__in=actions)
    return list(found.order_by("change")[:limit])
