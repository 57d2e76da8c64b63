"""On call for an integration: "Sync now" pressed on a connection's page in the console, the
run carried out by IntegrationSyncWorker against the vendor simulator on loopback, then the
run with its counts, the stream's checkpoint and the stored records on the console's pages,
and the landing page counting the run."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from core.models import Message
from core.runtime import scheduling
from integrations.connections import credentials
from integrations.connections.models import IntegrationConnection
from tests.browser.console import Console
from tests.browser.data import settle
from tests.integrations.vendor_sim import VendorSim

TOKEN = "ghp-browser-token"


@pytest.fixture
def sim(settings):
    # The outbound guard allows the simulator in this process, where the worker runs.
    settings.OUTBOUND_ALLOWED_HOSTS = settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    vendor = VendorSim().start()
    vendor.add_token(token=TOKEN)
    for number in range(1, 6):
        vendor.github_issue(number=number, updated_at=f"2024-05-01T10:0{number}:00Z")
    yield vendor
    vendor.close()


@pytest.fixture
def connection(tenant, sim) -> IntegrationConnection:
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="acme/app issues",
        base_url=sim.url,
        config={"owner": "acme", "repo": "app", "per_page": 2},
        streams=["issues"],
    )
    credentials.create_credential(connection=connection, secret={"token": TOKEN})
    return connection


def test_it_syncs_a_connection_now_from_its_page(staff_console: Console, connection):
    page = staff_console.page
    staff_console.open("/admin/connections/integrationconnection/")
    staff_console.follow_result("acme/app issues")
    expect(page.locator("#connection-credentials")).to_be_visible()
    expect(page.get_by_text("No run yet.")).to_be_visible()

    staff_console.press("Sync now")

    staff_console.expect_message("its pages are read by IntegrationSyncWorker")
    runs = page.locator("#connection-runs")
    expect(runs.get_by_role("row").filter(has_text="manual")).to_contain_text("running")
    staff_console.press("Sync now")  # while it runs: nothing started, and it says so
    staff_console.expect_message("of this connection is still running")
    expect(runs.locator("tbody").get_by_role("row")).to_have_count(1)

    settle("IntegrationSyncWorker")
    staff_console.open(page.url)

    row = runs.locator("tbody").get_by_role("row")
    expect(row).to_contain_text("succeeded")
    # added, updated, unchanged, deleted, pages: five issues on pages of two.
    expect(row.locator("td.conn-num")).to_have_text(["5", "0", "3", "0", "4"])
    streams = page.locator("#connection-streams")
    expect(streams).to_contain_text("since=2024-05-01T10:05:00Z")
    assert TOKEN not in page.content()

    staff_console.follow(streams.get_by_role("link", name="its records"))
    expect(page.locator("#result_list tbody").get_by_role("row")).to_have_count(5)
    expect(staff_console.row("added").first).to_be_visible()

    staff_console.open("/admin/")
    section = page.locator("#integrations")
    expect(section.get_by_role("link", name="1 active")).to_be_visible()
    staff_console.follow(section.get_by_role("link", name="1 succeeded"))
    staff_console.follow_result()
    expect(page.get_by_text("Checkpoints from")).to_be_visible()
    expect(page.locator("div.field-added .readonly")).to_have_text("5")


def test_it_isolates_a_connection_so_its_sync_waits_until_the_circuit_is_closed(
    staff_console: Console, connection, sim
):
    page = staff_console.page
    scheduling.fire("ExternalApiHealthWorker", "probe", now=timezone.now())
    settle("ExternalApiHealthWorker")  # probed once: the connection is on the health board
    staff_console.open("/admin/health/connectionhealth/")
    staff_console.follow_result("acme/app issues")

    staff_console.press("Isolate")

    staff_console.expect_message("its calls wait until the circuit is closed")
    expect(page.locator("div.field-breaker .readonly")).to_contain_text("isolated")
    health_page = page.url
    staff_console.open(f"/admin/connections/integrationconnection/{connection.pk}/change/")
    staff_console.press("Sync now")
    settle("IntegrationSyncWorker")  # the run waits on the circuit: no call, no attempt spent
    assert not sim.log("/issues")
    message = Message.objects.get(worker="IntegrationSyncWorker", state="pending")
    assert message.attempts == 0 and message.due_at > timezone.now()

    staff_console.open(health_page)
    staff_console.press("Close circuit")  # and what it held back is due at once

    staff_console.expect_message("Closed the circuit")
    settle("IntegrationSyncWorker")
    staff_console.open(f"/admin/connections/integrationconnection/{connection.pk}/change/")
    expect(page.locator("#connection-runs tbody").get_by_role("row")).to_contain_text("succeeded")
    assert sim.log("/issues")
