"""On call: the operator logs in to the landing page, which says what is wrong and leads to its
detail in a click, reads the worker health page, and creates an API key for a tenant in the
console that the API then takes."""

from __future__ import annotations

import re
import time

import requests
from playwright.sync_api import expect

from core.models import ClusterHeartbeat, DeadLetter
from tests.browser.console import Console
from tests.browser.data import span, traces
from tests.core.test_processes import wait_until

TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"


def test_it_logs_an_operator_in_to_the_landing_page(console: Console, operator):
    console.open("/admin/")
    assert console.path == "/admin/login/"

    console.log_in(operator.username)

    assert console.path == "/admin/"
    page = console.page
    expect(page.locator("#health h2")).to_contain_text("Health: unhealthy")
    expect(page.get_by_text("No cluster is running")).to_be_visible()
    expect(page.locator("#rates")).to_contain_text("The last hour, per minute")
    expect(page.locator("#latest-failures")).to_contain_text("No failure is recorded.")
    expect(page.get_by_role("link", name="Dead letters")).to_be_visible()  # the app list below


def test_it_leads_from_a_workers_backlog_to_the_message_waiting_longest(
    staff_console: Console, api
):
    """No cluster runs: what the API accepted waits for its worker."""
    api.post("/v1/traces", {"resourceSpans": [traces("checkout", span_at("00f067aa0ba902b7"))]})
    staff_console.open("/admin/")
    page = staff_console.page
    row = page.locator("#landing-worker-TraceIngestionWorker")
    expect(row).to_contain_text("unhealthy")

    staff_console.follow(row.get_by_role("link", name="1", exact=True))  # its backlog

    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    staff_console.follow_result()
    expect(page.locator(".field-worker")).to_contain_text("TraceIngestionWorker")
    expect(page.locator(".field-state")).to_contain_text("Pending")


def test_it_shows_clusters_rates_and_the_latest_failures_each_a_click_from_its_detail(
    staff_console: Console, api, receiver, cluster
):
    """A real cluster runs the workers, refusing to deliver to loopback (not allowed there):
    the delivery dead-letters at once."""
    cluster()
    wait_until(ClusterHeartbeat.objects.exists, timeout=60, what="the cluster's heartbeat")
    api.post(
        "/api/webhooks/subscriptions",
        {"url": receiver.url, "eventTypes": ["DeploymentPromoted"]},
        expect=201,
    )
    api.post("/api/events", {"type": "DeploymentPromoted", "data": {}}, expect=202)
    spans = [span_at("00f067aa0ba902b7"), span_at("00f067aa0ba902b8")]
    api.post("/v1/traces", {"resourceSpans": [traces("checkout", *spans)]})
    wait_until(DeadLetter.objects.exists, timeout=60, what="the delivery to be dead-lettered")
    page = staff_console.page

    staff_console.open("/admin/")

    expect(page.locator("#clusters")).to_contain_text("ago")  # its last heartbeat
    rates = page.locator("#rates")
    accepted = rates.get_by_role("row").filter(has_text="Spans accepted")
    chart = accepted.get_by_role("img", name="Spans accepted per minute, the last hour")
    expect(chart).to_be_visible()
    expect(accepted.get_by_role("cell").nth(2)).to_have_text("2")  # in the last hour
    failed = rates.get_by_role("row").filter(has_text="Webhook attempts failed")
    expect(failed).to_contain_text(re.compile(r"blocked: [1-9]"))  # by the outbound guard
    failures = page.locator("#latest-failures").get_by_role("row")
    failure = failures.filter(has_text="refused to connect").first  # the newest
    expect(failure).to_contain_text("WebhookDeliveryWorker")

    staff_console.follow(failure.get_by_role("link", name="open"))  # its dead letter

    assert staff_console.path.startswith("/admin/core/deadletter/")
    expect(page.locator(".field-subject_facts")).to_contain_text(receiver.url)
    staff_console.open("/admin/")
    dead = page.locator("#landing-worker-WebhookDeliveryWorker").get_by_role("link", name="1")
    staff_console.follow(dead)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    for path in ["/admin/core/deadletter/", "/admin/core/event/", "/admin/core/message/"]:
        staff_console.open(path)  # Console checks that the page and its list fit

    staff_console.follow("Home")
    staff_console.follow("Worker health")
    expect(page.get_by_role("heading", name="Worker health")).to_be_visible()
    worker = page.locator("#worker-WebhookDeliveryWorker")
    expect(worker).to_contain_text("degraded")  # a dead letter, but its cluster runs
    expect(worker.get_by_role("link", name="1")).to_be_visible()
    expect(page.locator("#clusters")).to_contain_text("ago")  # the cluster's heartbeat


def test_it_creates_an_api_key_in_the_console_that_the_api_takes(
    staff_console: Console, tenant, web
):
    page = staff_console.page
    staff_console.follow("API keys")
    staff_console.follow("Add API key")
    page.get_by_label("Tenant").select_option(label="acme")
    page.get_by_label("Name").fill("checkout-service")

    staff_console.press("Save")

    expect(page.get_by_role("heading", name="API key created")).to_be_visible()
    key = page.get_by_label("API key").input_value()
    assert key.startswith("pk_")
    assert get(web, "/api/traces", key).status_code == 200

    staff_console.follow("The key's page")  # shown once: never again
    assert key not in page.content()
    expect(page.locator(".field-last_used .readonly")).not_to_have_text("-")
    staff_console.press("Revoke")

    staff_console.expect_message("Revoked")
    assert get(web, "/api/traces", key).status_code == 401


def span_at(span_id: str) -> dict:
    return span(span_id, "GET /cart", trace=TRACE, start=time.time_ns(), ms=3)


def get(base: str, path: str, key: str) -> requests.Response:
    return requests.get(base + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)
