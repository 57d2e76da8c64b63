"""SLO breach evaluation in AlertEvaluationWorker's tick, over stored counter windows."""

from __future__ import annotations

import pytest

from core.models import Event
from observability.alerting import services as alerting
from observability.alerting.models import Slo
from tests.observability.alerting.stored import (
    TRACE,
    Telemetry,
    aggregate,
    minute,
    minute_by_minute,
    tick,
)

pytestmark = pytest.mark.django_db
FAST = {"name": "page-fast", "severity": "page", "burnRate": 14.4, "longWindow": "1h",
        "shortWindow": "5m"}  # fmt: skip


def spec(**overrides):
    body = {
        "service": "checkout",
        "sli": {
            "type": "ratio",
            "events": {"metric": "http.errors", "filters": {"service.name": "checkout"}},
            "total": {"metric": "http.requests", "filters": {"service.name": "checkout"}},
            "counts": "bad",
        },
        "objective": 0.99,
        "period": "30d",
        "rows": [FAST],
    }
    return body | overrides


def slo_events(tenant):
    found = Event.objects.filter(tenant=tenant, type__in=("SloBreached", "SloRecovered"))
    return list(found.order_by("occurred_at"))


def traffic(tenant, errors):
    telemetry = Telemetry(tenant)
    telemetry.counter("http.requests", [100] * len(errors))
    telemetry.counter("http.errors", errors, exemplars=True)
    aggregate(1)


def test_it_publishes_a_breach_when_both_windows_burn_and_a_recovery_when_one_stops(tenant):
    traffic(tenant, [0, 0, 50, 50, 50, 50, 50, 0, 0, 0, 0, 0, 0, 0])
    objective = alerting.create_slo(tenant=tenant, name="checkout availability", spec=spec())
    tick(1)

    minute_by_minute(14, since=1)

    breached, recovered = slo_events(tenant)
    assert (breached.type, recovered.type) == ("SloBreached", "SloRecovered")
    slo_id = str(objective.pk)
    assert breached.data == {
        "triggerKey": f"slo:{slo_id}:page-fast",
        "groupKey": f"slo:{slo_id}",
        "sloId": slo_id,
        "sloName": "checkout availability",
        "service": "checkout",
        "row": "page-fast",
        "severity": "critical",
        "objective": 0.99,
        # The errors of minute 2 over the requests of minutes 0-2: 50/300, in budgets of 1%.
        "burnRates": {"1h": 16.666667, "5m": 16.666667},
        "budgetRemaining": pytest.approx(-15.666667),
        "windowEnd": minute(3).isoformat(),
        "reason": breached.data["reason"],
        "traceIds": [TRACE.format(2)],
    }
    assert (breached.source, breached.source_id) == ("slo", str(breached.id))
    # At the end of minute 10 the 5-minute window holds minute 6's errors only: 50/500 is
    # under 14.4 budgets of 1%.
    assert recovered.data["windowEnd"] == minute(11).isoformat()
    assert "over 5m is back to 10x" in recovered.data["reason"]
    stored = Slo.objects.get()
    assert stored.firing_rows == [] and stored.evaluated_at == minute(14)
    assert stored.status == "ok"


def test_it_publishes_each_breach_once_however_often_it_ticks(tenant):
    traffic(tenant, [50, 50, 50, 50])
    alerting.create_slo(tenant=tenant, name="availability", spec=spec())
    tick(1)
    minute_by_minute(4, since=1)

    tick(4)  # the same slot again: handled once
    aggregate(5, since=4)
    tick(5)

    assert [e.type for e in slo_events(tenant)] == ["SloBreached"]
    assert Slo.objects.get().firing_rows == ["page-fast"]


def test_it_publishes_no_breach_under_the_minimum_of_events(tenant):
    telemetry = Telemetry(tenant)
    telemetry.counter("http.requests", [2, 2, 2])
    telemetry.counter("http.errors", [1, 1, 1])
    aggregate(1)
    alerting.create_slo(tenant=tenant, name="availability", spec=spec(minEvents=100))
    tick(1)

    minute_by_minute(3, since=1)

    assert slo_events(tenant) == []
    assert Slo.objects.get().status == "low_traffic"


def test_it_recovers_a_firing_slo_that_is_deleted(tenant):
    traffic(tenant, [50, 50])
    objective = alerting.create_slo(tenant=tenant, name="availability", spec=spec())
    tick(1)
    minute_by_minute(2, since=1)

    alerting.delete_slo(objective=Slo.objects.get(pk=objective.pk))

    assert [e.type for e in slo_events(tenant)] == ["SloBreached", "SloRecovered"]
