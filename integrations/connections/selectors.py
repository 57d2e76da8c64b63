"""Reads of connections and credentials; every one is scoped to a tenant."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from core.models import Tenant
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)

STAGED = [CredentialVersion.Stage.PENDING, CredentialVersion.Stage.CURRENT]


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None


def connections(*, tenant: Tenant) -> QuerySet[IntegrationConnection]:
    return IntegrationConnection.objects.filter(tenant_id=tenant.pk)


def connection(*, tenant: Tenant, connection_id: str) -> IntegrationConnection | None:
    pk = _uuid(connection_id)
    return connections(tenant=tenant).filter(pk=pk).first() if pk else None


def credentials(
    *, tenant: Tenant, connection_id: str | None = None
) -> QuerySet[IntegrationCredential]:
    """With their pending and current versions (prefetched, without decrypting anything the
    reply does not need: the secret column is deferred)."""
    found = IntegrationCredential.objects.filter(tenant_id=tenant.pk).prefetch_related(
        Prefetch(
            "versions",
            queryset=CredentialVersion.objects.filter(stage__in=STAGED).defer("secret"),
            to_attr="staged",
        )
    )
    if connection_id is not None:
        pk = _uuid(connection_id)
        found = found.filter(connection_id=pk) if pk else found.none()
    return found


def credential(*, tenant: Tenant, credential_id: str) -> IntegrationCredential | None:
    pk = _uuid(credential_id)
    return credentials(tenant=tenant).filter(pk=pk).first() if pk else None


def versions(*, credential: IntegrationCredential) -> QuerySet[CredentialVersion]:
    return CredentialVersion.objects.filter(
        tenant_id=credential.tenant_id, credential=credential
    ).defer("secret")
