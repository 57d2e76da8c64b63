"""On call for integrations, past "sync now": a failed sync on the failures page retried by hand
and resolved by the run it started; failures acknowledged, ignored and retried in bulk from the
list; a vendor's 429 seen on the rate buckets page and on the run; the runs and the stored
records found through the lists' filters and search. Each move as an operator makes it, then
what the page shows and what the database holds."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from core.models import Event
from integrations.connections import credentials
from integrations.connections.models import IntegrationConnection
from integrations.failures.models import IntegrationFailure, RetryPolicy, Status
from integrations.limits.models import RateBucket
from integrations.models import WebhookDelivery
from integrations.sync.models import IntegrationRun, SyncRecord
from tests.browser.console import Console
from tests.browser.data import integration_failure, settle
from tests.integrations.receiver import Answer
from tests.integrations.vendor_sim import VendorSim
from tests.integrations.webhooks import publish, run_worker, subscribe

TOKEN = "ghp-browser-failures-token"
FAILURES = "/admin/failures/integrationfailure/"
# The one time format of the console (core.formats), wherever a page shows a time.
MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@pytest.fixture
def sim(settings):
    # The outbound guard allows the simulator in this process, where the workers run.
    settings.OUTBOUND_ALLOWED_HOSTS = settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    vendor = VendorSim().start()
    vendor.add_token(token=TOKEN)
    for number in range(1, 4):
        vendor.github_issue(number=number, updated_at=f"2024-05-01T10:0{number}:00Z")
    yield vendor
    vendor.close()


def github_connection(tenant, sim: VendorSim, name: str) -> IntegrationConnection:
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name=name,
        base_url=sim.url,
        config={"owner": "acme", "repo": "app"},
        streams=["issues"],
    )
    credentials.create_credential(connection=connection, secret={"token": TOKEN})
    return connection


@pytest.fixture
def connection(tenant, sim) -> IntegrationConnection:
    return github_connection(tenant, sim, "acme/app issues")


def sync_now(console: Console, connection: IntegrationConnection) -> None:
    console.open(f"/admin/connections/integrationconnection/{connection.pk}/change/")
    console.press("Sync now")
    console.expect_message("its pages are read by IntegrationSyncWorker")


def field(console: Console, name: str):
    """A read-only field of a change page."""
    return console.page.locator(f"div.field-{name} .readonly")


def test_it_retries_a_failed_sync_from_its_page_and_the_run_resolves_it(
    staff_console: Console, connection, sim
):
    page = staff_console.page
    sim.fail(status=422, body={"message": "Validation Failed"}, times=1)
    sync_now(staff_console, connection)
    settle("IntegrationSyncWorker", "IntegrationRetryWorker")  # the run fails, and is reported
    failure = IntegrationFailure.objects.get()
    assert failure.status == Status.POISONED  # a 4xx: not retried by itself

    staff_console.open(FAILURES)
    staff_console.follow(staff_console.row("acme/app issues").get_by_role("link"))
    expect(field(staff_console, "status")).to_have_text("Poisoned")
    expect(field(staff_console, "error")).to_contain_text("422")
    expect(field(staff_console, "first_seen")).to_have_text(MOMENT)

    staff_console.press("Retry now")

    staff_console.expect_message(f"Retried failure {failure.failure_id}.")
    expect(field(staff_console, "status")).to_have_text("Retrying")
    expect(field(staff_console, "status_by")).to_have_text("console user operator")
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)  # one in flight
    failure.refresh_from_db()
    assert (failure.status, failure.attempts) == (Status.RETRYING, 2)  # the run, then this

    settle("IntegrationSyncWorker", "IntegrationRetryWorker")  # the resumed run succeeds
    staff_console.open(page.url)
    expect(field(staff_console, "status")).to_have_text("Resolved")
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)
    failure.refresh_from_db()
    assert failure.status == Status.RESOLVED
    statuses = IntegrationRun.objects.order_by("started").values_list("status", flat=True)
    assert list(statuses) == ["failed", "succeeded"]


def test_it_acknowledges_a_failure_and_then_ignores_it(staff_console: Console, connection):
    page = staff_console.page
    integration_failure(connection, failure_id="f-503", error="503 Service Unavailable", status=503)
    staff_console.open(FAILURES)
    row = staff_console.row("f-503")
    expect(row).to_contain_text("Open")
    expect(row).to_contain_text(MOMENT)  # its next attempt, and when it was last seen
    staff_console.follow_result("f-503")
    policy = page.locator("div.field-policy_panel")
    expect(policy).to_contain_text("2 min 0 s")  # its initial interval, as durations read
    expect(policy).to_contain_text("auth, permanent")  # classes it does not retry

    staff_console.press("Acknowledge")

    staff_console.expect_message("Acknowledged failure f-503.")
    expect(field(staff_console, "status")).to_have_text("Acknowledged")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    failure = IntegrationFailure.objects.get(failure_id="f-503")
    assert (failure.status, failure.status_by) == (Status.ACKNOWLEDGED, "console user operator")

    staff_console.press("Ignore")

    staff_console.expect_message("Ignored failure f-503.")
    expect(field(staff_console, "status")).to_have_text("Ignored")
    expect(page.get_by_role("button", name="Ignore")).to_have_count(0)
    assert IntegrationFailure.objects.get(failure_id="f-503").status == Status.IGNORED
    staff_console.open(f"{FAILURES}?status__exact=ignored")
    expect(page.locator("#result_list tbody").get_by_role("row")).to_have_count(1)
    expect(staff_console.row("f-503")).to_be_visible()


def test_it_retries_failures_in_bulk_from_the_list_after_saying_what_it_would_do(
    staff_console: Console, tenant, connection, sim
):
    page = staff_console.page
    other = github_connection(tenant, sim, "acme/web issues")
    integration_failure(connection, failure_id="app-old", error="502 Bad Gateway", status=502)
    sync_now(staff_console, connection)
    settle("IntegrationSyncWorker", "IntegrationRetryWorker")  # app-old resolved by this run
    integration_failure(connection, failure_id="app-503", error="503 Unavailable", status=503)
    integration_failure(other, failure_id="web-503", error="503 Unavailable", status=503)
    requested = Event.objects.filter(type="IntegrationSyncRequested")
    before = requested.count()
    staff_console.open(FAILURES)

    staff_console.run_action("Retry selected failures now", "app-old", "app-503", "web-503")

    expect(page.get_by_text("2 of 3 selected failures would be retried now.")).to_be_visible()
    expect(staff_console.row("app-old")).to_contain_text("nothing: it is resolved")
    expect(staff_console.row("web-503")).to_contain_text("resume the sync from its checkpoint")
    assert requested.count() == before  # nothing done before it is confirmed

    staff_console.press("Retry them")

    staff_console.expect_message("2 retried")
    assert requested.count() == before + 2
    by_id = dict(IntegrationFailure.objects.values_list("failure_id", "status"))
    assert by_id == {"app-old": "resolved", "app-503": "retrying", "web-503": "retrying"}
    expect(staff_console.row("web-503")).to_contain_text("Retrying")

    settle("IntegrationSyncWorker", "IntegrationRetryWorker")
    staff_console.open(f"{FAILURES}?status__exact=resolved")
    expect(page.locator("#result_list tbody").get_by_role("row")).to_have_count(3)
    assert set(IntegrationFailure.objects.values_list("status", flat=True)) == {"resolved"}


def test_it_shows_a_vendors_429_on_the_rate_buckets_page_and_on_the_run(
    staff_console: Console, connection, sim
):
    page = staff_console.page
    sim.fail(status=429, headers={"Retry-After": "120"}, body={"message": "slow down"}, times=1)
    sync_now(staff_console, connection)
    settle("IntegrationSyncWorker")  # the 429: the run waits, no attempt spent
    (bucket,) = RateBucket.objects.exclude(blocked_until=0)

    staff_console.open("/admin/limits/ratebucket/")
    row = staff_console.row("acme/app issues")  # named, not only by its key's id
    expect(row).to_contain_text(MOMENT)  # blocked until
    expect(row).to_contain_text(f"0.0 of {bucket.burst}")
    expect(row).to_contain_text("1.39/s (5,000/h)")  # GitHub's 5,000 an hour
    staff_console.follow(row.get_by_role("link"))
    expect(page.get_by_role("heading", name=bucket.key)).to_be_visible()
    expect(field(staff_console, "blocked")).to_have_text(MOMENT)
    expect(field(staff_console, "blocked_reason")).to_contain_text("429")
    expect(field(staff_console, "updated")).to_have_text(MOMENT)

    staff_console.open("/admin/sync/integrationrun/?status__exact=running")
    staff_console.follow_result()
    expect(field(staff_console, "status")).to_have_text("Running")
    expect(field(staff_console, "rate_limited")).to_have_text(re.compile(r"^(1 min 59|2 min 0) s$"))
    expect(field(staff_console, "started")).to_have_text(MOMENT)


def test_it_finds_runs_and_records_through_the_lists_filters_and_search(
    staff_console: Console, connection, sim
):
    page = staff_console.page
    sync_now(staff_console, connection)
    settle("IntegrationSyncWorker")

    staff_console.open("/admin/sync/integrationrun/")
    staff_console.follow(page.get_by_role("link", name="Succeeded", exact=True))
    rows = page.locator("#result_list tbody").get_by_role("row")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("3 added, 0 updated, 0 unchanged, 0 deleted")
    expect(rows).to_contain_text(MOMENT)
    staff_console.open("/admin/sync/integrationrun/?status__exact=failed")
    expect(page.get_by_text("0 integration runs")).to_be_visible()

    staff_console.open("/admin/sync/syncstream/")
    row = staff_console.row("acme/app issues")
    expect(row).to_contain_text("since=2024-05-01T10:03:00Z")  # its checkpoint
    expect(row).to_contain_text(MOMENT)  # last synced

    staff_console.open("/admin/limits/circuit/")  # its calls went through a closed circuit
    expect(staff_console.row("connection acme/app issues")).to_contain_text("Closed")

    staff_console.open("/admin/sync/syncrecord/")
    staff_console.follow(page.get_by_role("link", name="issues", exact=True))  # the stream filter
    expect(page.locator("#result_list tbody").get_by_role("row")).to_have_count(3)
    searched = SyncRecord.objects.order_by("id").first().external_id
    page.locator("#searchbar").fill(searched)
    staff_console.press("Search")
    rows = page.locator("#result_list tbody").get_by_role("row")
    expect(rows).to_have_count(1)
    staff_console.follow_result(searched)
    expect(field(staff_console, "external_id")).to_have_text(searched)
    expect(field(staff_console, "first_seen")).to_have_text(MOMENT)
    expect(field(staff_console, "last_modified")).to_have_text(MOMENT)
    expect(page.locator("div.field-data_json")).to_contain_text('"number"')


def test_it_shows_how_long_a_webhook_delivery_waited_on_its_receivers_429(
    staff_console: Console, tenant, receiver, settings
):
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = ["127.0.0.1"], False
    receiver.answer(Answer(status=429, headers={"Retry-After": "125"}))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()  # the receiver asks for 125 s: the delivery waits, no attempt spent

    staff_console.open("/admin/integrations/webhookdelivery/")
    row = staff_console.row("DeploymentPromoted")
    expect(row).to_contain_text("waited 2 min 5 s")
    expect(row).to_contain_text(MOMENT)  # created, and its next attempt
    staff_console.follow_result()
    expect(field(staff_console, "waited")).to_have_text("2 min 5 s, no attempt spent")
    expect(field(staff_console, "round_attempts")).to_have_text("0")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.round_attempts) == ("retrying", 0)


def test_it_overrides_a_retry_policy_and_a_failures_page_follows_it(
    staff_console: Console, connection
):
    page = staff_console.page
    integration_failure(connection, failure_id="f-503", error="503 Unavailable", status=503)
    staff_console.open("/admin/failures/retrypolicy/add/")
    page.get_by_label("Provider").fill("github")
    page.get_by_label("Kind").select_option("sync")
    page.get_by_label("Initial interval seconds").fill("30")
    page.get_by_label("Maximum attempts").fill("3")

    staff_console.press("Save")

    staff_console.expect_message("was added successfully")
    row = staff_console.row("github: sync")
    expect(row).to_contain_text("30 s, then 2 times longer each time, at most 50 min 0 s")
    expect(row).to_contain_text("auth, permanent")
    expect(row).to_contain_text(MOMENT)
    policy = RetryPolicy.objects.get()
    assert (policy.provider, policy.initial_interval_seconds, policy.maximum_attempts) == (
        "github",
        30,
        3,
    )
    staff_console.open(FAILURES)
    staff_console.follow_result("f-503")
    panel = page.locator("div.field-policy_panel")
    expect(panel).to_contain_text("30 s")
    expect(panel).to_contain_text("50 min 0 s")
