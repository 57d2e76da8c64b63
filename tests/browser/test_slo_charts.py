"""An SLO's page draws its budget and burn charts over its period, within the screen."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from observability import aggregation
from observability.alerting import services
from observability.alerting.models import Slo
from tests.browser.console import Console
from tests.browser.data import settle

MINUTE_NS = 60 * 10**9


@pytest.fixture
def availability(api, tenant) -> Slo:
    """http.requests and http.errors of checkout over the last half hour, aggregated (100 a
    minute, 5 of them errors in the last ten), and an SLO of 99.9% on them."""
    now = time.time_ns() // MINUTE_NS * MINUTE_NS

    def counter(name: str, value: float, errors_from: int = 0) -> dict:
        points = [
            {
                "startTimeUnixNano": str(now - (30 - i) * MINUTE_NS),
                "timeUnixNano": str(now - (30 - i) * MINUTE_NS + 10**9),
                "asDouble": value if i >= errors_from else 0.0,
            }
            for i in range(30)
        ]
        body = {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points}
        return {"name": name, "sum": body}

    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}
    metrics = [counter("http.requests", 100.0), counter("http.errors", 5.0, errors_from=20)]
    api.post("/v1/metrics", {"resourceMetrics": [
        {"resource": resource, "scopeMetrics": [{"scope": {"name": "t"}, "metrics": metrics}]}
    ]})  # fmt: skip
    settle("TraceIngestionWorker")
    for i in range(31):
        start = datetime.fromtimestamp((now - (30 - i) * MINUTE_NS) // 10**9, UTC)
        aggregation.aggregate_window(tenant.pk, "1m", start, now=timezone.now())
    spec = {
        "service": "checkout",
        "objective": 0.999,
        "sli": {
            "type": "ratio",
            "events": {"metric": "http.errors"},
            "total": {"metric": "http.requests"},
        },
    }
    return services.create_slo(tenant=tenant, name="availability", spec=spec)


def test_it_draws_an_slos_budget_and_burn_charts(staff_console: Console, availability):
    staff_console.open(f"/admin/alerting/slo/{availability.pk}/change/")

    charts = staff_console.page.locator("#slo-charts")
    expect(charts.locator("svg")).to_have_count(2)
    expect(charts).to_contain_text("Burn rate per alert window")
    expect(charts).to_contain_text("Budget and burn over the last 30d")
    # The half hour of traffic, hour by hour: a dot, or a line of two.
    expect(charts.locator("svg").first.locator("polyline, circle").first).to_be_attached()
