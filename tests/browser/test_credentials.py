"""On call for credentials: "Rotate now" pressed in the console, the rotation carried out by
CredentialRotationWorker against a vendor on loopback, the new version current on the page,
and the secret on no page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from integrations.connections import credentials
from integrations.connections.models import IntegrationCredential
from tests.browser.console import Console
from tests.browser.data import settle
from tests.integrations.vendor_sim import VendorSim


@pytest.fixture
def vendor(settings):
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = ["127.0.0.1"], False
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    vendor = VendorSim().start()
    vendor.add_key(key_id="key-0", token="tok-initial")
    yield vendor
    vendor.close()


@pytest.fixture
def credential(tenant, vendor) -> IntegrationCredential:
    # A generic API whose config names the simulator's key API: GitHub and Jira have none.
    connection = credentials.create_connection(
        tenant=tenant,
        provider="generic",
        name="acme/checkout",
        base_url=vendor.url,
        config={"path": "/api/items", "verify_path": "/api/me", "key_create_path": "/api/keys"},
    )
    return credentials.create_credential(
        connection=connection,
        secret={"token": "tok-initial"},
        kind=IntegrationCredential.Kind.API_KEY,
        method=IntegrationCredential.Method.VENDOR_KEY,
        name="checkout deploy key",
    )


def test_it_rotates_a_credential_from_its_page(staff_console: Console, credential, vendor):
    page = staff_console.page
    staff_console.open("/admin/connections/integrationcredential/")
    staff_console.follow_result("checkout deploy key")
    staff_console.press("Rotate now")
    staff_console.expect_message("the current one stays current until then")
    expect(staff_console.row("pending")).to_have_count(1)

    settle("CredentialRotationWorker")
    staff_console.open(page.url)
    expect(staff_console.row("previous")).to_contain_text("initial")
    expect(staff_console.row("current")).to_contain_text("key-1")
    assert "tok-initial" not in page.content()
    assert vendor.token_of("key-1") not in page.content()
    expect(page.get_by_role("button", name="Roll back", exact=True)).to_be_visible()
