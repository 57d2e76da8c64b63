"""On call for an incident: found from the console's index, read (its timeline, triggers and
the traces behind it), acknowledged, resolved, then commented on, from its page."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.console import Console
from tests.browser.data import settle, span, traces
from tests.observability.incidents.factories import T0, WORKER, fire

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


@pytest.fixture
def incident(api, tenant) -> None:
    """An alert on checkout whose breach names a stored trace, and a second, lesser one: one
    incident of two triggers."""
    api.post(
        "/v1/traces",
        {"resourceSpans": [traces("checkout", span(ROOT, "GET /cart", trace=TRACE,
                                                   start=time.time_ns(), ms=40, error=True))]},
    )  # fmt: skip
    fire(tenant, instance="eu-1", traces=(TRACE,))
    fire(tenant, instance="eu-2", severity="warning", at=T0 + timedelta(minutes=1))
    settle("TraceIngestionWorker", WORKER)


def test_it_acknowledges_resolves_and_comments_on_an_incident_from_its_page(
    staff_console: Console, incident
):
    page = staff_console.page
    # The model's row of the index's app list (its app's caption reads the same).
    staff_console.follow(
        staff_console.row("Incidents").get_by_role("link", name="Incidents", exact=True)
    )
    expect(staff_console.row("checkout errors on checkout")).to_contain_text("Open")
    staff_console.follow_result("#1")
    expect(page.get_by_text("Opened by checkout errors on checkout (critical)")).to_be_visible()
    expect(page.locator("#incident-triggers").get_by_role("row")).to_have_count(1 + 2)

    staff_console.press("Acknowledge")

    staff_console.expect_message("Acknowledged incident #1.")
    timeline = page.locator("#incident-timeline")
    expect(timeline.get_by_role("row").last).to_contain_text("console user operator")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)

    staff_console.press("Resolve")

    staff_console.expect_message("Resolved incident #1.")
    expect(timeline.get_by_role("row").last).to_contain_text("Resolved")
    expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
    expect(page.locator("#incident-triggers")).not_to_contain_text("active")

    page.get_by_label("Comment").fill("Rolled back checkout 4.2; errors gone.")
    staff_console.press("Comment")

    staff_console.expect_message("Commented on incident #1.")
    last = timeline.get_by_role("row").last
    expect(last).to_contain_text("Comment")
    expect(last).to_contain_text("console user operator")
    expect(last).to_contain_text("Rolled back checkout 4.2; errors gone.")

    staff_console.follow(TRACE)  # the lineage: the trace behind it, its waterfall
    expect(page.get_by_text("GET /cart").first).to_be_visible()
