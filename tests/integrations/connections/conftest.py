"""Fixtures of the credential tests: the vendor simulator on loopback, allowed for the test,
with a key (key-0) that the credential's first version holds, behind a generic connection
whose config names the simulator's key API."""

from __future__ import annotations

import pytest

from integrations.connections import credentials
from integrations.connections.models import IntegrationCredential


@pytest.fixture
def vendor(sim):
    sim.add_key(key_id="key-0", token="tok-initial")
    return sim


# A generic JSON API with a key API (the simulator's /api/keys): the one provider that can
# mint keys. GitHub and Jira have none; their credentials rotate by OAuth refresh or by hand.
GENERIC_CONFIG = {
    "path": "/api/items",
    "records_path": "data",
    "verify_path": "/api/me",
    "key_create_path": "/api/keys",
}


@pytest.fixture
def connection(tenant, vendor):
    return credentials.create_connection(
        tenant=tenant,
        provider="generic",
        name="acme/app",
        base_url=vendor.url,
        config=dict(GENERIC_CONFIG),
    )


@pytest.fixture
def github(tenant, vendor):
    return credentials.create_connection(
        tenant=tenant, provider="github", name="acme/github", base_url=vendor.url
    )


@pytest.fixture
def credential(connection):
    """A vendor-key credential whose first version is the vendor's key-0."""
    return credentials.create_credential(
        connection=connection,
        secret={"token": "tok-initial"},
        kind=IntegrationCredential.Kind.API_KEY,
        method=IntegrationCredential.Method.VENDOR_KEY,
        name="deploy key",
    )
