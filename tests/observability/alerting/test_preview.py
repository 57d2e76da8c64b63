"""A rule's preview, called as the API and the admin call it: the triggers the live tick would
have published and the incidents IncidentAnalysisWorker would have made of them."""

from __future__ import annotations

import pytest

from observability.alerting import preview
from observability.alerting.specs import rule_of
from tests.observability.alerting.stored import Telemetry, aggregate, minute

pytestmark = pytest.mark.django_db
SPEC = {
    "query": {"metric": "queue.depth", "window": "1m", "field": "last"},
    "groupBy": ["service.name"],
    "op": ">",
    "warning": 70,
    "critical": 90,
    "flapChanges": 0,
}


@pytest.fixture
def stored(tenant):
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [50, 80, 95, 50, 50, 50, 50, 95, 50], service="checkout")
    aggregate(9)
    return telemetry


def test_it_raises_one_incidents_severity_when_a_warning_turns_critical(tenant, stored):
    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(5))

    assert [(t.event_type, t.data["severity"]) for t in found.triggers] == [
        ("AlertTriggered", "warning"),
        ("AlertTriggered", "critical"),
        ("AlertResolved", "critical"),
    ]
    (incident,) = found.incidents
    assert (incident.status, incident.severity) == ("resolved", "critical")
    assert [name for name, _ in incident.changes] == ["opened", "resolved"]


def test_it_reopens_the_incident_a_trigger_comes_back_to_within_the_reopen_window(
    tenant, stored, settings
):
    settings.INCIDENT_REOPEN_WINDOW_SECONDS = 600
    named = preview.Named(name="queue", group_key="q:{service}", revision=4)

    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(9), named)

    (incident,) = found.incidents
    assert (incident.title, incident.group_key, incident.reopened) == (
        "queue on checkout",
        "q:checkout",
        1,
    )
    assert [(name, at) for name, at in incident.changes] == [
        ("opened", minute(2)),
        ("resolved", minute(4)),
        ("opened", minute(8)),
        ("resolved", minute(9)),
    ]
    assert found.triggers[0].data["ruleRevision"] == 4


def test_it_opens_a_new_incident_past_the_reopen_window(tenant, stored, settings):
    settings.INCIDENT_REOPEN_WINDOW_SECONDS = 60

    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(9))

    assert [(i.number, i.status) for i in found.incidents] == [(1, "resolved"), (2, "resolved")]
