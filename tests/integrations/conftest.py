"""Fixtures of the webhook tests: a live receiver on loopback, allowed for the test."""

from __future__ import annotations

import pytest

from core import services
from tests.integrations.receiver import Receiver


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
def key(tenant):
    return services.issue_api_key(tenant=tenant)


@pytest.fixture
def api(client, key):
    """Call the API as the tenant's owner: api("post", path, body)."""

    def call(method: str, path: str, body=None):
        send = getattr(client, method)
        kwargs = {"headers": {"Authorization": f"Bearer {key}"}}
        if method in ("post", "patch"):  # JSON, as the API takes; no body is an empty one
            kwargs["content_type"] = "application/json"
        if body is not None:
            kwargs["data"] = body
        return send(path, **kwargs)

    return call
