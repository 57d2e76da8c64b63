"""IncidentAnalysisWorker through the runtime: trigger events published, drained as a cluster
drains them, incidents written and IncidentOpened / IncidentResolved published once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from core.models import DeadLetter, Event, Message
from core.runtime import registry, scheduling
from observability.incidents import decisions, handler, services
from observability.incidents.models import (
    Incident,
    IncidentTimelineEntry,
    IncidentTrace,
    IncidentTrigger,
)
from observability.models import TelemetryCorrelation, TraceRecord
from tests.observability.incidents.factories import (
    T0,
    TRACE_A,
    TRACE_B,
    TRACE_C,
    WORKER,
    alert_data,
    clear,
    envelope,
    fire,
    handle,
    publish,
    slo_data,
)

pytestmark = pytest.mark.django_db
MIN = timedelta(minutes=1)


def incident_events(type: str = "") -> list[Event]:
    found = Event.objects.filter(type__startswith="Incident").order_by("occurred_at", "type")
    return list(found.filter(type=type) if type else found)


def counts() -> tuple[int, ...]:
    return (
        Incident.objects.count(),
        IncidentTrigger.objects.count(),
        IncidentTimelineEntry.objects.count(),
        IncidentTrace.objects.count(),
        Event.objects.count(),
    )


def test_it_is_built_as_a_batch_handler_with_a_schedule():
    worker = registry.get(WORKER)

    assert worker.batch_handler is handler.handle
    assert [s.name for s in worker.trigger.schedules] == ["5m"]


def test_it_opens_an_incident_and_publishes_incident_opened_once(tenant):
    fire(tenant, instance="eu-1", traces=(TRACE_A,))
    fire(tenant, instance="eu-2", severity="warning", at=T0 + MIN, traces=(TRACE_B,))

    handle()

    incident = Incident.objects.get()
    assert (incident.number, incident.title, incident.status, incident.severity) == (
        1,
        "checkout errors on checkout",
        "open",
        "critical",
    )
    assert incident.started_at == T0 - MIN
    (opened,) = incident_events()
    assert opened.type == "IncidentOpened"
    assert opened.id == decisions.transition_event_id(incident.pk, "opened", 0)
    assert opened.data == {
        "incidentId": str(incident.pk),
        "number": 1,
        "title": "checkout errors on checkout",
        "severity": "critical",
        "status": "open",
        "groupKey": incident.group_key,
        "services": ["checkout"],
        "triggerKeys": [alert_data(instance=i)["triggerKey"] for i in ("eu-1", "eu-2")],
        "traceIds": [TRACE_A, TRACE_B],
        "openedAt": T0.isoformat(),
        "resolvedAt": None,
    }
    # A public event: the wildcard correlation worker records it against its traces.
    assert Message.objects.filter(event=opened, worker="TelemetryCorrelationWorker").exists()


def test_it_resolves_when_every_trigger_resolves_and_publishes_incident_resolved(tenant):
    fire(tenant, instance="eu-1")
    fire(tenant, instance="eu-2", at=T0 + MIN)
    handle()

    clear(tenant, instance="eu-1", at=T0 + 5 * MIN)
    handle()
    assert Incident.objects.get().status == "open"

    clear(tenant, instance="eu-2", at=T0 + 6 * MIN)
    handle()
    incident = Incident.objects.get()
    assert (incident.status, incident.resolved_at, incident.resolved_by) == (
        "resolved",
        T0 + 6 * MIN,
        "system",
    )
    resolved = incident_events("IncidentResolved")
    assert [e.id for e in resolved] == [decisions.transition_event_id(incident.pk, "resolved", 0)]
    assert resolved[0].data["resolvedAt"] == (T0 + 6 * MIN).isoformat()
    assert set(IncidentTrigger.objects.values_list("state", flat=True)) == {"resolved"}


def test_it_reopens_with_an_event_id_of_its_own(tenant):
    fire(tenant)
    clear(tenant, at=T0 + 2 * MIN)
    fire(tenant, at=T0 + 10 * MIN)

    handle()

    incident = Incident.objects.get()
    assert (incident.status, incident.reopened) == ("open", 1)
    assert [(e.type, e.id) for e in incident_events()] == [
        ("IncidentOpened", decisions.transition_event_id(incident.pk, "opened", 0)),
        ("IncidentResolved", decisions.transition_event_id(incident.pk, "resolved", 0)),
        ("IncidentOpened", decisions.transition_event_id(incident.pk, "opened", 1)),
    ]


def test_it_keeps_an_operators_resolve_when_an_earlier_firing_arrives_after_it(tenant):
    fire(tenant, instance="a")
    handle()
    incident = Incident.objects.get()
    services.resolve(incident=incident, actor="console user ann")
    # Fired while the incident was open (T0 + 5 min), delivered after the operator resolved.
    fire(tenant, at=T0 + 5 * MIN, instance="b")

    handle()

    incident.refresh_from_db()
    assert (incident.status, incident.reopened) == ("resolved", 0)
    late = IncidentTrigger.objects.get(trigger_key__endswith=":b")
    assert (late.incident_id, late.state) == (incident.pk, "resolved")
    assert [e.type for e in incident_events()] == ["IncidentOpened", "IncidentResolved"]


def test_it_changes_nothing_and_publishes_nothing_when_the_same_events_come_again(tenant):
    envelopes = [
        envelope(tenant, "AlertTriggered", alert_data(instance="a", traces=(TRACE_A,))),
        envelope(tenant, "AlertTriggered", alert_data(instance="b"), at=T0 + MIN),
        envelope(tenant, "AlertResolved", alert_data(instance="a"), at=T0 + 2 * MIN),
    ]
    with transaction.atomic():
        handler.handle(envelopes)
    before = counts()
    incident = Incident.objects.values().get()

    with transaction.atomic():
        handler.handle(envelopes)  # redelivered, or a dead letter replayed
        handler.handle(list(reversed(envelopes)))

    assert counts() == before
    assert Incident.objects.values().get() == incident


def test_it_handles_a_trigger_event_sent_twice_under_one_source_id_once(tenant):
    data = alert_data()
    publish(tenant, "AlertTriggered", data, source_id="alert:r:i:w1:firing")
    publish(tenant, "AlertTriggered", data, source_id="alert:r:i:w1:firing")

    handle()

    assert IncidentTrigger.objects.get().fired == 1
    assert len(incident_events()) == 1


def test_it_groups_slo_breaches_by_slo(tenant):
    publish(tenant, "SloBreached", slo_data(row="page-fast"))
    publish(tenant, "SloBreached", slo_data(row="ticket-slow", severity="warning"), at=T0 + MIN)
    handle()

    incident = Incident.objects.get()
    assert incident.title == "SLO checkout availability burning error budget on checkout"
    assert incident.triggers.count() == 2

    publish(tenant, "SloRecovered", slo_data(row="page-fast"), at=T0 + 5 * MIN)
    handle()
    incident.refresh_from_db()
    assert (incident.status, incident.severity) == ("open", "warning")


def test_it_links_a_trigger_of_another_key_that_shares_a_trace(tenant):
    fire(tenant, traces=(TRACE_A, TRACE_B))
    handle()

    fire(tenant, service="payments", instance="p-1", at=T0 + MIN, traces=(TRACE_B,))
    handle()

    incident = Incident.objects.get()
    assert incident.services == ["checkout", "payments"]
    assert incident.triggers.get(service="payments").joined_by == "traces"
    assert incident.timeline.filter(kind="linked").exists()


def test_it_enriches_the_lineage_from_the_correlation_and_the_trace_record(tenant):
    TraceRecord.objects.create(
        tenant=tenant, trace_id=TRACE_A, root_name="GET /cart", root_service="checkout",
        services=["checkout"], span_count=4, error_count=1, start_ns=1, end_ns=2, status="error",
    )  # fmt: skip
    TelemetryCorrelation.objects.create(
        tenant=tenant,
        trace_id=TRACE_B,
        trace={"rootService": "payments", "rootName": "charge", "spanCount": 3, "errorCount": 2},
        log_count=7,
    )
    fire(tenant, traces=(TRACE_A, TRACE_B, TRACE_C))

    handle()

    lineage = {
        t.trace_id: (t.root_service, t.span_count, t.error_count, t.log_count)
        for t in IncidentTrace.objects.all()
    }
    assert lineage == {
        TRACE_A: ("checkout", 4, 1, 0),
        TRACE_B: ("payments", 3, 2, 7),
        TRACE_C: ("", 0, 0, 0),  # not stored yet
    }


def test_it_resolves_by_timeout_and_closes_through_its_schedule(tenant):
    fire(tenant)
    handle()

    scheduling.fire(WORKER, "5m", now=T0 + timedelta(hours=23))
    handle()
    assert Incident.objects.get().status == "open"

    scheduling.fire(WORKER, "5m", now=T0 + timedelta(hours=24, minutes=5))
    scheduling.fire(WORKER, "5m", now=T0 + timedelta(hours=24, minutes=5))  # a second cluster
    handle()
    incident = Incident.objects.get()
    assert (incident.status, incident.resolved_by) == ("resolved", "timeout")
    assert len(incident_events("IncidentResolved")) == 1

    scheduling.fire(WORKER, "5m", now=T0 + timedelta(hours=48, minutes=5))
    handle()
    incident.refresh_from_db()
    assert (incident.status, incident.closed_at) == ("closed", T0 + timedelta(hours=48))


def test_it_dead_letters_an_event_that_names_no_trigger_and_handles_the_others(tenant):
    bad = publish(
        tenant, "AlertTriggered", {"severity": "critical", "triggerKey": ""}, source_id="x"
    )
    fire(tenant)

    handle()

    assert Incident.objects.count() == 1
    letter = DeadLetter.objects.get()
    assert letter.envelope["eventId"] == str(bad.event_id)
    assert "names no triggerKey" in letter.reason


def test_it_numbers_incidents_per_tenant_and_keeps_tenants_apart(tenant, other_tenant):
    fire(tenant, service="checkout")
    fire(tenant, service="search", instance="s-1", at=T0 + MIN)
    fire(other_tenant, service="checkout")  # the same keys, another tenant
    handle()

    assert sorted(Incident.objects.values_list("tenant__slug", "number")) == [
        ("acme", 1),
        ("acme", 2),
        ("globex", 1),
    ]
    clear(other_tenant, service="checkout", at=T0 + 5 * MIN)
    handle()
    assert dict(Incident.objects.values_list("tenant__slug", "status").filter(number=1)) == {
        "acme": "open",
        "globex": "resolved",
    }


def test_it_holds_one_open_incident_per_group_key_in_the_database(tenant):
    fire(tenant)
    handle()
    incident = Incident.objects.get()
    fields = {
        "tenant": tenant, "title": "t", "severity": "warning", "group_key": incident.group_key,
        "started_at": T0, "opened_at": T0, "last_trigger_at": T0,
    }  # fmt: skip

    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(number=2, **fields)
    Incident.objects.create(number=3, status="resolved", **fields)  # closed or resolved: many
    Incident.objects.create(number=4, status="closed", **fields)


def test_it_keeps_the_severity_of_triggers_a_batch_does_not_name(tenant):
    fire(tenant, instance="a", severity="critical")
    handle()
    fire(tenant, instance="b", severity="warning", at=T0 + MIN)
    handle()
    assert Incident.objects.get().severity == "critical"  # a's, though this batch named b

    clear(tenant, instance="a", at=T0 + 2 * MIN)
    handle()
    assert Incident.objects.get().severity == "warning"  # b's, though this batch named a


def test_it_resolves_the_triggers_a_timeout_did_not_name(tenant):
    fire(tenant, instance="a")
    fire(tenant, instance="b", at=T0 + MIN)
    handle()

    scheduling.fire(WORKER, "5m", now=T0 + timedelta(days=2))
    handle()

    assert set(IncidentTrigger.objects.values_list("state", "resolved_at")) == {
        ("resolved", T0 + MIN + timedelta(hours=24))
    }


def test_it_joins_a_trigger_to_the_incident_its_group_key_was_linked_into(tenant):
    fire(tenant, traces=(TRACE_A,))
    handle()
    fire(tenant, service="payments", instance="p-1", at=T0 + MIN, traces=(TRACE_A,))
    handle()

    fire(tenant, service="payments", instance="p-2", at=T0 + 2 * MIN)  # no trace shared
    handle()

    incident = Incident.objects.get()
    assert incident.triggers.filter(service="payments").count() == 2
