"""Logging in, and the pages an operator reads and the moves made there: worker health, a
trace and where its telemetry leads, a log search, a webhook secret rotated."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Locator, expect

from core.runtime import registry
from tests.browser.console import Console
from tests.browser.data import (
    MS,
    histogram,
    log_record,
    logs,
    metrics,
    roll_up,
    settle,
    span,
    traces,
)


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
    for worker in registry.all_workers():  # the catalog's, built by issue after issue
        expect(staff_console.row(worker.name)).to_contain_text(
            "unhealthy" if worker.built else "not built yet"
        )


# --- A trace ---------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, QUERY, CHARGE = "00f067aa0ba902b7", "00f067aa0ba902b8", "00f067aa0ba902b9"


@pytest.fixture
def checkout(api) -> None:
    """A checkout whose card charge failed: three spans of two services, the payment service's
    log of it, a payment duration with the charge as its exemplar, all correlated, and the
    duration rolled up into its metric window."""
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
    charged = {"traceId": TRACE, "spanId": CHARGE, "asDouble": 20.0}
    duration = histogram(
        # A minute ago: in the window that has just ended, which roll_up computes.
        "payment.duration", time_ns=now - 60 * 10**9, bounds=[10, 50], counts=[1, 2, 0],
        exemplar=charged,
    )  # fmt: skip
    api.post("/v1/metrics", {"resourceMetrics": [metrics("payments", duration)]})
    settle("TraceIngestionWorker", "TelemetryCorrelationWorker")
    roll_up()


def open_trace(console: Console) -> None:
    """From the index, find the trace by its id and open it."""
    console.follow("Trace records")
    console.page.get_by_role("searchbox").fill(TRACE)
    console.press("Search")
    console.follow(TRACE)


def field(console: Console, label: str) -> Locator:
    """A field of a change page, by its label."""
    return console.page.locator(".form-row").filter(
        has=console.page.get_by_text(f"{label}:", exact=True)
    )


def test_it_draws_a_traces_waterfall_and_links_its_spans_and_telemetry(staff_console, checkout):
    page = staff_console.page
    open_trace(staff_console)

    waterfall = page.get_by_role("img", name="Waterfall of 3 spans")
    expect(waterfall).to_be_visible()
    expect(waterfall.locator("[data-span-id]")).to_have_count(3)
    expect(waterfall.locator(f'[data-span-id="{CHARGE}"]')).to_have_class(re.compile("wf-error"))
    spans = page.locator("#spans")
    expect(spans.get_by_role("row")).to_have_count(1 + 3)
    expect(spans.get_by_role("row").filter(has_text="charge card")).to_contain_text(CHARGE)
    expect(staff_console.row("charge card").first).to_contain_text("payments")
    correlated = page.locator("#correlation")
    expect(correlated).to_contain_text("Log records (1)")
    expect(correlated.get_by_role("row").filter(has_text="card declined")).to_contain_text(CHARGE)

    # A row of the waterfall opens its span.
    staff_console.follow(
        waterfall.get_by_role("link").filter(has=page.locator(f'[data-span-id="{CHARGE}"]'))
    )
    expect(field(staff_console, "Span id")).to_contain_text(CHARGE)
    expect(field(staff_console, "Parent span id")).to_contain_text(ROOT)
    expect(field(staff_console, "Log records")).to_contain_text("card declined")
    staff_console.follow(TRACE)
    expect(page.get_by_role("img", name="Waterfall of 3 spans")).to_be_visible()

    staff_console.follow("snapshot")
    expect(page.get_by_text("card declined")).to_be_visible()


def test_it_leads_from_a_trace_to_its_log_records_metric_window_and_events(staff_console, checkout):
    page = staff_console.page
    open_trace(staff_console)
    correlated = page.locator("#correlation")

    # A log record: its page, and back to its trace.
    log_row = correlated.get_by_role("row").filter(has_text="card declined")
    staff_console.follow(log_row.get_by_title("The log record"))
    expect(field(staff_console, "Body")).to_contain_text("card declined")
    expect(field(staff_console, "Span id")).to_contain_text(CHARGE)
    staff_console.follow(TRACE)

    # An exemplar: the metric window its point was rolled up in, which links back.
    exemplar_row = correlated.get_by_role("row").filter(has_text="payment.duration")
    expect(exemplar_row).to_contain_text(CHARGE)
    staff_console.follow(exemplar_row.get_by_role("link", name="payment.duration"))
    expect(
        page.get_by_role("heading", name=re.compile(r"^payment\.duration \(1m\)"))
    ).to_be_visible()
    buckets = page.locator("#buckets")
    expect(buckets.get_by_role("row")).to_have_count(1 + 3)
    expect(buckets.get_by_role("row").filter(has_text="(10, 50]")).to_contain_text("2")
    expect(page.get_by_role("img", name="Counts of the 3 buckets")).to_be_visible()
    expect(field(staff_console, "Values")).to_contain_text("max")
    staff_console.follow(page.locator("#exemplars").get_by_role("link", name=TRACE))
    expect(page.get_by_role("img", name="Waterfall of 3 spans")).to_be_visible()

    # A platform event that named the trace: its page.
    staff_console.follow(correlated.get_by_role("link", name="TraceRecorded"))
    expect(page.get_by_text(TRACE).first).to_be_visible()


# --- Logs ------------------------------------------------------------------------------------


def test_it_finds_a_log_record_by_the_apis_filters_and_leads_to_its_trace(
    staff_console, api, checkout
):
    now = time.time_ns()
    api.post(
        "/v1/logs",
        {
            "resourceLogs": [
                logs(
                    "payments",
                    log_record("card declined twice", time_ns=now, severity=9),  # INFO
                    log_record("card declined by the bank", time_ns=now, severity=13),  # WARN
                ),
                logs("checkout", log_record("card declined, cart kept", time_ns=now)),
            ]
        },
    )
    settle("TraceIngestionWorker")
    page = staff_console.page
    staff_console.follow("Log records")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)

    page.get_by_label("Body has").fill("DECLINED")
    page.get_by_label("Service").fill("payments")
    page.get_by_label("Severity").select_option(label="WARN and above")
    page.get_by_label("Since").fill("1h")
    staff_console.press("Search")

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("card declined by the bank")  # the newest first
    expect(rows.nth(1)).to_contain_text("card declined")
    expect(page.get_by_label("Service")).to_have_value("payments")
    staff_console.follow(rows.nth(1).get_by_role("link", name=TRACE))
    expect(page.get_by_role("img", name="Waterfall of 3 spans")).to_be_visible()


# --- Webhook secrets -------------------------------------------------------------------------


def test_it_rotates_a_subscriptions_secret_and_shows_the_new_one_once(
    staff_console, api, receiver, settings
):
    created = api.post(
        "/api/webhooks/subscriptions",
        {"url": receiver.url, "eventTypes": ["DeploymentPromoted"]},
        expect=201,
    )
    page = staff_console.page
    staff_console.follow("Webhook subscriptions")
    staff_console.follow_result(receiver.url)

    staff_console.follow("Rotate secret…")
    expect(page.locator(".preview-summary")).to_contain_text("shown once")
    staff_console.press("Rotate the secret")

    staff_console.expect_message("Rotated the signing secret")
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_") and secret != created["secret"]
    staff_console.follow("The subscription's page")
    assert secret.removeprefix("whsec_") not in page.content()
    # The subscriber that took the new secret verifies the next delivery with it alone.
    receiver.secrets.append(secret)
    api.post("/api/events", {"type": "DeploymentPromoted", "data": {}}, expect=202)
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = ["127.0.0.1"], False
    settle("WebhookDeliveryWorker")
    (delivery,) = receiver.received
    assert delivery.verified


# --- Every page ------------------------------------------------------------------------------


def test_it_answers_every_console_page_at_a_laptops_width(staff_console, api, receiver, settings):
    """Each list of the index, and the first object of each, with a trace, its logs, metric
    windows (of a long name) and a dead webhook delivery stored: every page answers, without a
    script error, and fits 1440 px unless it is one of WIDE_PAGES (see the run's summary)."""
    now = time.time_ns()
    # Long unbroken values, as real telemetry has them: a URL as a span's name and in a log.
    url = "/cart/" + "0123456789abcdef" * 12 + "?" + "&".join(f"item{n}=sku-{n}" for n in range(20))
    slow = log_record(f"slow: GET {url} took 3 s", trace=TRACE, time_ns=now)
    api.post("/v1/logs", {"resourceLogs": [logs("checkout", slow)]})
    api.post(
        "/v1/traces",
        {
            "resourceSpans": [
                traces("checkout", span(ROOT, f"GET {url}", trace=TRACE, start=now, ms=3))
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
    long_name = "http.server.request.duration." + "very.long.metric.name." * 6
    minute_ago = histogram(
        long_name, time_ns=now - 60 * 10**9, bounds=[5, 10, 25], counts=[1, 1, 0, 1]
    )
    api.post("/v1/metrics", {"resourceMetrics": [metrics("checkout", minute_ago)]})
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = [], False  # refused: dead
    settle("TraceIngestionWorker", "TelemetryCorrelationWorker", "WebhookDeliveryWorker")
    roll_up()

    lists = staff_console.page.locator("#content-main a[href$='/']:not([href$='/add/'])")
    paths = sorted(
        {urlsplit(href).path for href in lists.evaluate_all("as => as.map(a => a.href)")}
    )
    assert len(paths) >= 15, paths
    for path in paths:
        staff_console.open(path)
        if staff_console.page.locator("#result_list tbody a").count():
            staff_console.follow_result()
