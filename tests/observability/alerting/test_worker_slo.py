"""SLO breach evaluation in AlertEvaluationWorker's tick, over stored counter windows."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.models import Event
from observability.alerting import handler, slo
from observability.alerting import services as alerting
from observability.alerting.handler import slo_event_id
from observability.alerting.models import Slo
from observability.incidents.models import Incident
from tests.helpers import drain_all
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


def test_it_catches_up_after_downtime_from_the_oldest_minute_without_skipping(tenant, settings):
    settings.ALERT_CATCH_UP_WINDOWS = 3
    traffic(tenant, [0, 0, 50, 50, 50, 50, 50, 0, 0, 0, 0, 0, 0, 0])
    alerting.create_slo(tenant=tenant, name="checkout availability", spec=spec())
    tick(1)
    aggregate(14, since=1)  # the evaluator was down while these minutes were aggregated

    for i in range(15, 21):  # three minutes a tick, oldest first
        tick(i)

    breached, recovered = slo_events(tenant)
    assert (breached.type, recovered.type) == ("SloBreached", "SloRecovered")
    assert breached.data["windowEnd"] == minute(3).isoformat()
    assert Slo.objects.get().evaluated_at == minute(14)


def test_it_publishes_no_breach_for_an_slo_deleted_while_its_tick_evaluated_it(tenant, monkeypatch):
    traffic(tenant, [0, 0, 50, 50, 50])
    alerting.create_slo(tenant=tenant, name="checkout availability", spec=spec())
    tick(1)
    aggregate(5, since=1)
    read = handler.sli_windows

    def deleted_meanwhile(*args, **kwargs):
        # As a delete that commits while the tick evaluates: its UPDATE then finds no row.
        windows = read(*args, **kwargs)
        Slo.objects.all().delete()
        return windows

    monkeypatch.setattr(handler, "sli_windows", deleted_meanwhile)

    tick(5)

    assert slo_events(tenant) == []


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


def test_it_resolves_the_incident_of_a_breached_slo_that_is_deleted(tenant):
    traffic(tenant, [50, 50])
    objective = alerting.create_slo(tenant=tenant, name="availability", spec=spec())
    tick(1)
    minute_by_minute(2, since=1)
    drain_all("IncidentAnalysisWorker")
    incident = Incident.objects.get(tenant=tenant)
    assert incident.status == "open"

    # The copy from before the breach: the delete reads the rows firing as stored now.
    alerting.delete_slo(objective=objective)
    alerting.delete_slo(objective=objective)  # a retried delete publishes nothing more
    drain_all("IncidentAnalysisWorker")

    breached, recovered = slo_events(tenant)
    assert recovered.type == "SloRecovered"
    transition = slo.RowTransition(
        "SloRecovered", "page-fast", "critical", 14.4, {}, None, minute(2), "", ()
    )
    assert recovered.id == slo_event_id(str(objective.pk), transition)
    assert recovered.data["triggerKey"] == breached.data["triggerKey"]
    assert recovered.data["windowEnd"] == minute(2).isoformat()
    assert recovered.data["reason"] == "the SLO was deleted: row page-fast no longer fires"
    assert set(recovered.data["burnRates"]) == {"1h", "5m"}
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert not Slo.objects.exists()


def test_it_recovers_the_rows_of_an_slo_deleted_in_the_console(tenant, admin_client):
    traffic(tenant, [50, 50])
    objective = alerting.create_slo(tenant=tenant, name="availability", spec=spec())
    tick(1)
    minute_by_minute(2, since=1)

    url = reverse("admin:alerting_slo_delete", args=[objective.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302

    assert [e.type for e in slo_events(tenant)] == ["SloBreached", "SloRecovered"]
    assert not Slo.objects.exists()
