"""The provider registry, declared in code (like Nango's providers file): per provider its
base URL, auth, streams with their paging, incremental parameters and deletion detection,
conditional requests, rate-limit policy and headers, retryable statuses, verification request
and probe. Pure: no models, no database, no clock, no sockets.

    from integrations.connections import providers
    github = providers.get("github")
    request = github.first_request("issues", base_url="", checkpoint={}, config={...})
    # ...send it with github.auth_headers(secret) through core.outbound...
    page = github.parse_page("issues", request=request, status=..., headers=..., body=...,
                             checkpoint={}, config={...})
"""

from __future__ import annotations

from integrations.connections.providers.base import (
    HASH_ALGORITHM,
    OutboundRequest,
    Page,
    Provider,
    Record,
    Stream,
)
from integrations.connections.providers.generic import GENERIC
from integrations.connections.providers.github import GITHUB
from integrations.connections.providers.jira import JIRA_CLOUD, JIRA_DATA_CENTER

__all__ = [
    "HASH_ALGORITHM",
    "OutboundRequest",
    "Page",
    "Provider",
    "Record",
    "Stream",
    "all",
    "get",
    "names",
]

_REGISTRY: dict[str, Provider] = {
    provider.name: provider for provider in (GITHUB, JIRA_CLOUD, JIRA_DATA_CENTER, GENERIC)
}


class UnknownProvider(KeyError):
    pass


def get(name: str) -> Provider:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownProvider(
            f"Unknown provider {name!r}. Known providers: {', '.join(sorted(_REGISTRY))}."
        ) from None


def all() -> list[Provider]:
    return list(_REGISTRY.values())


def names() -> list[str]:
    return list(_REGISTRY)
