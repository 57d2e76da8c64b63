"""A rule's preview, called as the API and the admin call it: the triggers the live tick would
have published and the incidents IncidentAnalysisWorker would have made of them."""

from __future__ import annotations

import pytest

from observability.alerting import preview
from observability.alerting import services as alerting
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


def silence(tenant, starts_at, ends_at, service="checkout"):
    matchers = [{"label": "service.name", "op": "=", "value": service}]
    return alerting.create_silence(
        tenant=tenant,
        matchers=matchers,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by="tests",
        comment="maintenance",
    )


def test_it_opens_no_incident_for_an_instance_silenced_over_the_range(tenant, stored):
    held = silence(tenant, minute(0), minute(10))
    silence(tenant, minute(0), minute(10), service="search")  # another service's: holds nothing

    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(9))

    (instance,) = found.instances
    assert instance.triggers == [] and found.incidents == []
    assert instance.silenced == (str(held.pk),)
    # Still evaluated, and shown with its states.
    assert [(i.state, i.severity, i.start) for i in instance.intervals if i.state == "firing"] == [
        ("firing", "warning", minute(1)),
        ("firing", "critical", minute(2)),
        ("firing", "critical", minute(7)),
    ]


def test_it_triggers_a_silenced_instance_still_firing_when_its_silence_ends(tenant):
    Telemetry(tenant).gauge("queue.depth", [95, 95, 95, 95, 50], service="checkout")
    aggregate(5)
    # Holds the first window's trigger (heard at its end, minute 1), not the second's.
    silence(tenant, minute(0), minute(2))

    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(5))

    triggered, resolved = found.triggers
    assert triggered.event_type == "AlertTriggered"
    assert triggered.transition.window_end == minute(2)  # when the silence ended
    assert "held back by a silence" in triggered.data["reason"]
    assert (resolved.event_type, resolved.transition.window_end) == ("AlertResolved", minute(5))
    (incident,) = found.incidents
    assert incident.changes == [("opened", minute(2)), ("resolved", minute(5))]


def test_it_holds_back_only_what_happens_while_the_silence_is_active(tenant, stored):
    unsilenced = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(9))
    silence(tenant, minute(3), minute(4))  # a minute: window 2's end, its critical trigger

    found = preview.preview(tenant.pk, rule_of("r", SPEC), minute(0), minute(9))

    # Evaluated in runs around the silence, to the same states as in one run.
    assert [i.intervals for i in found.instances] == [i.intervals for i in unsilenced.instances]
    assert [
        (t.event_type, t.data["severity"], t.transition.window_end) for t in found.triggers
    ] == [
        ("AlertTriggered", "warning", minute(2)),
        ("AlertResolved", "critical", minute(4)),
        ("AlertTriggered", "critical", minute(8)),
        ("AlertResolved", "critical", minute(9)),
    ]
    assert len(unsilenced.triggers) == 5  # with window 2's critical trigger
