"""The keys of buckets and circuits, one way to spell each: a connection's, a credential's, a
vendor host's (platform-wide), and a webhook endpoint host's, which is per tenant: one
tenant's failing or throttling endpoint on a shared host (a SaaS's webhook intake) must not
hold back another tenant's."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from core.envelope import TenantId


def connection(connection_id: uuid.UUID | str) -> str:
    return f"connection:{connection_id}"


def credential(credential_id: uuid.UUID | str) -> str:
    return f"credential:{credential_id}"


def host(hostname: str) -> str:
    return f"host:{hostname.lower().rstrip('.')}"


def webhook_host(tenant_id: TenantId, url: str) -> str:
    """A tenant's webhook endpoints on one host (with its port, when not the scheme's own)."""
    parts = urlsplit(url)
    name = (parts.hostname or "").lower().rstrip(".")
    if parts.port:
        name = f"{name}:{parts.port}"
    return f"tenant:{tenant_id}:host:{name}"


def tenant_of(key: str) -> uuid.UUID | None:
    """The tenant a key names itself (a webhook host's), else None."""
    if key.startswith("tenant:"):
        try:
            return uuid.UUID(key.split(":", 2)[1])
        except ValueError:
            return None
    return None
