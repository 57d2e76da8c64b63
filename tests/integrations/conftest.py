"""Fixtures of the integrations tests: a live webhook receiver and the vendor simulator on
loopback, allowed for the test, and the API as a tenant's owner and as another tenant's."""

from __future__ import annotations

import pytest

from core import services
from tests.integrations.receiver import Receiver
from tests.integrations.vendor_sim import VendorSim


@pytest.fixture
def webhook_settings(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    return settings


@pytest.fixture
def receiver(webhook_settings):
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def sim(settings):
    """The vendor simulator (tests/integrations/vendor_sim.py) in a thread, allowed as an
    outbound target, with a GitHub token (ghp-good) and a Jira user (ann@example.com and
    her API token, jira-token)."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    vendor = VendorSim().start()
    vendor.add_token(token="ghp-good")
    vendor.add_basic(user="ann@example.com", password="jira-token")
    yield vendor
    vendor.close()


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def caller(client, key: str):
    """Call the API with `key`: call("post", path, body)."""

    def call(method: str, path: str, body=None):
        kwargs = {"headers": {"Authorization": f"Bearer {key}"}}
        if method in ("post", "patch", "put"):  # JSON, as the API takes; no body is an empty one
            kwargs["content_type"] = "application/json"
        if body is not None:
            kwargs["data"] = body
        return getattr(client, method)(path, **kwargs)

    return call


@pytest.fixture
def api(client, key):
    """Call the API as the tenant's owner: api("post", path, body)."""
    return caller(client, key)


@pytest.fixture
def other_api(client, other_tenant):
    """Call the API as another tenant's owner."""
    return caller(client, services.issue_api_key(tenant=other_tenant))
