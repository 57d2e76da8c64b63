"""Logging in, and the pages an operator reads: worker health, a trace."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.browser.console import Console
from tests.browser.data import MS, log_record, logs, settle, span, traces


def test_it_sends_a_visitor_to_the_login_form_and_lets_a_staff_member_in(console, operator):
    console.open("/admin/")
    assert console.path == "/admin/login/"

    console.log_in(operator.username, "not the password")
    expect(console.page.locator(".errornote")).to_contain_text(
        "Please enter the correct username and password"
    )

    console.log_in(operator.username)
    assert console.path == "/admin/"
    expect(console.page.get_by_role("link", name="Worker health")).to_be_visible()
    expect(console.page.get_by_role("button", name="Log out")).to_be_visible()


def test_it_shows_every_worker_and_that_no_cluster_runs(staff_console: Console):
    staff_console.follow("Worker health")

    page = staff_console.page
    expect(page.get_by_role("heading", name="Worker health")).to_be_visible()
    expect(page.get_by_text("Overall: unhealthy")).to_be_visible()
    expect(page.get_by_text("No cluster is running")).to_be_visible()
    workers = page.get_by_role("table").filter(has_text="Retry policy").get_by_role("row")
    expect(workers).to_have_count(1 + 13)  # the header, then the catalog's thirteen
    expect(staff_console.row("WebhookDeliveryWorker")).to_contain_text("unhealthy")
    expect(staff_console.row("IncidentAnalysisWorker")).to_contain_text("not built yet")


# --- A trace ---------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, QUERY, CHARGE = "00f067aa0ba902b7", "00f067aa0ba902b8", "00f067aa0ba902b9"


def test_it_draws_a_traces_waterfall_and_links_its_spans_and_telemetry(staff_console, api):
    now = time.time_ns()
    declined = log_record("card declined", trace=TRACE, span_id=CHARGE, time_ns=now + 10 * MS)
    api.post("/v1/logs", {"resourceLogs": [logs("payments", declined)]})
    api.post(
        "/v1/traces",
        {
            "resourceSpans": [
                traces(
                    "checkout",
                    span(ROOT, "GET /cart", trace=TRACE, start=now, ms=40),
                    span(QUERY, "SELECT cart", parent=ROOT, trace=TRACE, start=now + 2 * MS, ms=5),
                ),
                traces(
                    "payments",
                    span(
                        CHARGE,
                        "charge card",
                        parent=ROOT,
                        trace=TRACE,
                        start=now + 9 * MS,
                        ms=20,
                        error=True,
                    ),
                ),
            ]
        },
    )
    settle("TraceIngestionWorker", "TelemetryCorrelationWorker")
    page = staff_console.page

    staff_console.follow("Trace records")
    page.get_by_role("searchbox").fill(TRACE)
    staff_console.press("Search")
    staff_console.follow(TRACE)

    waterfall = page.get_by_role("img", name="Waterfall of 3 spans")
    expect(waterfall).to_be_visible()
    expect(waterfall.locator("[data-span-id]")).to_have_count(3)
    expect(waterfall.locator(f'[data-span-id="{CHARGE}"]')).to_have_class(re.compile("wf-error"))
    spans = page.locator("#spans")
    expect(spans.get_by_role("row")).to_have_count(1 + 3)
    expect(staff_console.row("charge card")).to_contain_text("payments")
    correlated = page.locator("#correlation")
    expect(correlated).to_contain_text("Log records (1)")
    expect(correlated.get_by_role("row").filter(has_text="card declined")).to_contain_text(CHARGE)

    staff_console.follow(spans.get_by_role("link", name="charge card"))
    expect(page.get_by_text(CHARGE, exact=True)).to_be_visible()  # the span's own page
    staff_console.follow(TRACE)
    expect(page.get_by_role("img", name="Waterfall of 3 spans")).to_be_visible()

    staff_console.follow("snapshot")
    expect(page.get_by_text("card declined")).to_be_visible()


# --- Every page ------------------------------------------------------------------------------


def test_it_answers_every_console_page_at_a_laptops_width(staff_console, api, receiver, settings):
    """Each list of the index, and the first object of each, with a trace, its logs and a dead
    webhook delivery stored: every page answers, without a script error, and fits 1440 px
    unless it is one of WIDE_PAGES (see the run's summary)."""
    now = time.time_ns()
    api.post(
        "/v1/logs",
        {"resourceLogs": [logs("checkout", log_record("slow", trace=TRACE, time_ns=now))]},
    )
    api.post(
        "/v1/traces",
        {
            "resourceSpans": [
                traces("checkout", span(ROOT, "GET /cart", trace=TRACE, start=now, ms=3))
            ]
        },
    )
    api.post(
        "/api/webhooks/subscriptions",
        {"url": receiver.url, "eventTypes": ["DeploymentPromoted"]},
        expect=201,
    )
    api.post(
        "/api/events", {"type": "DeploymentPromoted", "data": {"service": "checkout"}}, expect=202
    )
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = [], False  # refused: dead
    settle("TraceIngestionWorker", "TelemetryCorrelationWorker", "WebhookDeliveryWorker")

    lists = staff_console.page.locator("#content-main a[href$='/']:not([href$='/add/'])")
    paths = sorted(
        {urlsplit(href).path for href in lists.evaluate_all("as => as.map(a => a.href)")}
    )
    assert len(paths) >= 15, paths
    for path in paths:
        staff_console.open(path)
        if staff_console.page.locator("#result_list tbody a").count():
            staff_console.follow_result()
