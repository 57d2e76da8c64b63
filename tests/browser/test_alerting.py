"""Rule editing in the console: a threshold that cannot trigger first is refused beside its
field, the draft is previewed over the stored windows, then saved; and the alerting pages an
operator reads (rules, instances, silences, SLOs) fit the screen."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from observability import aggregation
from observability.alerting.models import AlertRule
from tests.browser.console import Console
from tests.browser.data import settle

MINUTE_NS = 60 * 10**9


@pytest.fixture
def queue(api, tenant) -> None:
    """queue.depth of checkout over the last half hour, aggregated: 50, then 95."""
    now = time.time_ns() // MINUTE_NS * MINUTE_NS
    points = [
        {"timeUnixNano": str(now - (30 - i) * MINUTE_NS + 10**9), "asDouble": 50.0 + 45 * (i >= 10)}
        for i in range(30)
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}
    metric = {"name": "queue.depth", "gauge": {"dataPoints": points}}
    api.post("/v1/metrics", {"resourceMetrics": [
        {"resource": resource, "scopeMetrics": [{"scope": {"name": "t"}, "metrics": [metric]}]}
    ]})  # fmt: skip
    settle("TraceIngestionWorker")
    for i in range(31):
        start = datetime.fromtimestamp((now - (30 - i) * MINUTE_NS) // 10**9, UTC)
        aggregation.aggregate_window(tenant.pk, "1m", start, now=timezone.now())


def test_it_refuses_previews_and_saves_a_rule(staff_console: Console, queue):
    page = staff_console.page
    staff_console.open("/admin/alerting/alertrule/add/")
    page.locator("#id_tenant").select_option(index=1)
    page.locator("#id_name").fill("queue too deep")
    page.locator("#id_metric").fill("queue.depth")
    page.locator("#id_group_by").fill("service.name")
    page.locator("#id_critical").fill("90")
    page.locator("#id_warning").fill("95")
    page.locator("#id_preview_range").select_option("1h")

    staff_console.press("Save")

    warning_row = page.locator(".field-warning")
    expect(warning_row).to_contain_text("must be under critical (90) to trigger first")
    assert not AlertRule.objects.exists()

    page.locator("#id_warning").fill("80")
    staff_console.press("Preview")

    preview = page.locator("#rule-preview")
    expect(preview).to_contain_text("service.name=checkout")
    expect(preview.locator("svg")).to_have_count(1)
    assert not AlertRule.objects.exists()

    staff_console.press("Save")

    staff_console.expect_message("was added successfully")
    assert AlertRule.objects.get().revision == 1
    for path in ("alertrule", "alertinstance", "silence", "slo", "silence/add", "slo/add"):
        staff_console.open(f"/admin/alerting/{path}/")
