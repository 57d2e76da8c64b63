"""Grouping, severity, resolution, timeouts and the operators' actions, as pure decisions: no
database, no clock."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from observability.incidents import decisions
from observability.incidents.decisions import Book, Windows
from tests.observability.incidents.factories import (
    RULE,
    T0,
    TRACE_A,
    TRACE_B,
    TRACE_C,
    alert_data,
    slo_data,
)

WINDOWS = Windows(
    group=timedelta(hours=1),
    reopen=timedelta(minutes=30),
    resolve_timeout=timedelta(hours=24),
    close_after=timedelta(hours=24),
)
MIN = timedelta(minutes=1)


def fired(at=T0, **fields) -> decisions.Signal:
    return decisions.signal_of("AlertTriggered", uuid.uuid4(), at, alert_data(**fields))


def cleared(at=T0, **fields) -> decisions.Signal:
    return decisions.signal_of("AlertResolved", uuid.uuid4(), at, alert_data(**fields))


def run(book: Book, *signals: decisions.Signal) -> decisions.Outcome:
    outcome = decisions.apply(book, signals, WINDOWS)
    for incident in book.incidents.values():  # as the handler leaves them once written
        incident.new = incident.changed = False
        if incident.number is None:
            incident.number = len(book.incidents)
    return outcome


def only(book: Book) -> decisions.Incident:
    (incident,) = book.incidents.values()
    return incident


def transitions(outcome: decisions.Outcome) -> list[str]:
    return [f"{t.name}#{t.count}" for t in outcome.transitions]


# Reading events


def test_it_reads_the_contracts_alert_and_slo_events():
    alert = fired(traces=(TRACE_A.upper(), "not-a-trace", TRACE_A))
    slo = decisions.signal_of("SloRecovered", uuid.uuid4(), T0, slo_data(severity="ticket"))

    assert (alert.kind, alert.fired, alert.severity, alert.service) == (
        "alert",
        True,
        "critical",
        "checkout",
    )
    assert alert.trace_ids == (TRACE_A,)
    assert alert.started_at == T0 - MIN  # the breaching window's start
    assert (slo.kind, slo.fired, slo.severity, slo.group_key) == (
        "slo",
        False,
        "warning",
        "slo:7d1e3b5f-2222-4d4c-8b88-1d3c9f6e5b21",
    )


def test_it_derives_the_keys_the_contract_defaults_to():
    data = alert_data()
    del data["triggerKey"], data["groupKey"]

    signal = decisions.signal_of("AlertTriggered", uuid.uuid4(), T0, data)

    assert signal.trigger_key == f"alert:{data['ruleId']}:i-1"
    assert signal.group_key == f"alert:{data['ruleId']}:checkout"


def test_it_refuses_an_event_that_names_no_trigger():
    with pytest.raises(ValueError, match="names no triggerKey"):
        decisions.signal_of("SloBreached", uuid.uuid4(), T0, {"severity": "critical"})


def test_it_keeps_two_long_keys_apart_once_shortened():
    head = "k" * 600

    first, second = decisions.stored_key(head + "a"), decisions.stored_key(head + "b")

    assert len(first) == len(second) == decisions.KEY_CHARS
    assert first != second


# Grouping


def test_it_opens_an_incident_titled_after_its_first_trigger():
    book = Book({})

    outcome = run(book, fired(traces=(TRACE_A,)))

    incident = only(book)
    assert incident.title == "checkout errors on checkout"
    assert (incident.status, incident.severity, incident.services) == (
        "open",
        "critical",
        ["checkout"],
    )
    assert transitions(outcome) == ["opened#0"]
    assert [e.kind for e in outcome.entries] == ["opened"]
    assert [link.trace_id for link in outcome.links] == [TRACE_A]


def test_it_joins_triggers_of_one_group_key_into_the_open_incident():
    book = Book({})

    outcome = run(
        book,
        fired(instance="eu-1"),
        fired(instance="eu-2", at=T0 + MIN),
        fired(instance="us-1", at=T0 + 50 * MIN),
    )

    incident = only(book)
    assert set(incident.triggers) == {
        f"alert:{alert_data()['ruleId']}:{name}" for name in ("eu-1", "eu-2", "us-1")
    }
    assert transitions(outcome) == ["opened#0"]


def test_it_keeps_taking_triggers_while_one_of_them_still_fires():
    # An alert that keeps firing sends no new event: hours later, it is still that incident.
    book = Book({})
    run(book, fired(instance="eu-1"))

    outcome = run(book, fired(instance="eu-2", at=T0 + timedelta(hours=6)))

    assert len(only(book).triggers) == 2
    assert not outcome.transitions


def test_it_opens_separate_incidents_for_separate_group_keys():
    book = Book({})

    run(book, fired(service="checkout"), fired(service="search", instance="s-1"))

    assert sorted(i.title for i in book.incidents.values()) == [
        "checkout errors on checkout",
        "checkout errors on search",
    ]


def test_it_links_a_trigger_that_shares_a_trace_with_an_open_incident():
    book = Book({})
    run(book, fired(traces=(TRACE_A, TRACE_B)))

    outcome = run(book, fired(service="payments", instance="p-1", traces=(TRACE_B, TRACE_C)))

    incident = only(book)
    linked = incident.triggers[f"alert:{alert_data()['ruleId']}:p-1"]
    assert linked.joined_by == "traces"
    assert incident.services == ["checkout", "payments"]
    assert [e.kind for e in outcome.entries] == ["linked"]
    assert TRACE_B in outcome.entries[0].message
    assert [link.trace_id for link in outcome.links] == [TRACE_C]


def test_it_joins_a_trigger_to_the_incident_its_group_key_was_linked_into():
    book = Book({})
    run(book, fired(traces=(TRACE_A,)))
    run(book, fired(service="payments", instance="p-1", traces=(TRACE_A,)))

    run(book, fired(service="payments", instance="p-2", at=T0 + MIN))

    assert len(book.incidents) == 1


def test_it_reopens_a_resolved_incident_within_the_reopen_window():
    book = Book({})
    run(book, fired())
    run(book, cleared(at=T0 + 5 * MIN))

    outcome = run(book, fired(at=T0 + 25 * MIN))

    incident = only(book)
    assert (incident.status, incident.reopened, incident.resolved_at) == ("open", 1, None)
    assert transitions(outcome) == ["opened#1"]
    assert outcome.entries[0].kind == "reopened"
    assert "20 min" in outcome.entries[0].message


def test_it_opens_a_new_incident_past_the_reopen_window():
    book = Book({})
    run(book, fired())
    run(book, cleared(at=T0 + 5 * MIN))

    outcome = run(book, fired(at=T0 + 36 * MIN))

    assert len(book.incidents) == 2
    assert transitions(outcome) == ["opened#0"]


def test_it_never_reopens_a_closed_incident():
    book = Book({})
    run(book, fired())
    run(book, cleared(at=T0 + 5 * MIN))
    decisions.sweep(book.incidents.values(), T0 + timedelta(days=2), WINDOWS)

    run(book, fired(at=T0 + timedelta(days=2, minutes=1)))

    assert sorted(i.status for i in book.incidents.values()) == ["closed", "open"]


# Severity


def test_it_takes_the_severity_of_its_highest_active_trigger():
    book = Book({})
    run(book, fired(instance="a", severity="warning"))
    assert only(book).severity == "warning"

    run(book, fired(instance="b", severity="critical", at=T0 + MIN))
    assert only(book).severity == "critical"

    outcome = run(book, cleared(instance="b", at=T0 + 2 * MIN))
    assert only(book).severity == "warning"
    assert [e.kind for e in outcome.entries] == ["trigger_resolved", "severity"]


def test_it_raises_a_triggers_severity_when_the_same_trigger_fires_higher():
    book = Book({})
    run(book, fired(severity="warning"))

    outcome = run(book, fired(severity="critical", at=T0 + MIN))

    incident = only(book)
    (trigger,) = incident.triggers.values()
    assert (trigger.severity, incident.severity) == ("critical", "critical")
    assert "raised from warning to critical" in outcome.entries[0].message
    assert not outcome.transitions


# Resolution


def test_it_resolves_when_its_last_trigger_resolves_and_not_before():
    book = Book({})
    run(book, fired(instance="a"), fired(instance="b", at=T0 + MIN))

    first = run(book, cleared(instance="a", at=T0 + 5 * MIN))
    assert only(book).status == "open"
    assert not first.transitions

    last = run(book, cleared(instance="b", at=T0 + 6 * MIN))
    incident = only(book)
    assert (incident.status, incident.resolved_at, incident.resolved_by) == (
        "resolved",
        T0 + 6 * MIN,
        "system",
    )
    assert transitions(last) == ["resolved#0"]


def test_it_ignores_a_resolution_of_a_trigger_it_never_saw():
    book = Book({})

    outcome = run(book, cleared())

    assert not book.incidents
    assert outcome.ignored[0][1] == "its trigger is in no incident"


def test_it_resolves_an_incident_whose_triggers_went_quiet_past_the_resolve_timeout():
    book = Book({})
    run(book, fired())

    early = decisions.sweep(book.incidents.values(), T0 + timedelta(hours=23), WINDOWS)
    late = decisions.sweep(book.incidents.values(), T0 + timedelta(hours=25), WINDOWS)

    assert not early.transitions
    incident = only(book)
    assert (incident.status, incident.resolved_by) == ("resolved", "timeout")
    assert incident.resolved_at == T0 + timedelta(hours=24)  # when it timed out, not the sweep
    assert transitions(late) == ["resolved#0"]
    assert "no event for 1 d" in late.entries[0].message


def test_it_resolves_a_timed_out_incident_before_a_new_trigger_of_its_key_opens_another():
    book = Book({})
    run(book, fired(instance="a"))

    outcome = run(book, fired(instance="b", at=T0 + timedelta(hours=30)))

    assert sorted(i.status for i in book.incidents.values()) == ["open", "resolved"]
    assert transitions(outcome) == ["resolved#0", "opened#0"]


def test_it_closes_a_resolved_incident_after_the_close_delay():
    book = Book({})
    run(book, fired())
    run(book, cleared(at=T0 + MIN))

    outcome = decisions.sweep(book.incidents.values(), T0 + timedelta(days=1, minutes=1), WINDOWS)

    incident = only(book)
    assert (incident.status, incident.closed_at) == ("closed", T0 + timedelta(days=1, minutes=1))
    assert [e.kind for e in outcome.entries] == ["closed"]


# Redelivery and late events


def test_it_ignores_an_event_it_has_handled_already():
    book = Book({})
    signal = fired()
    run(book, signal)

    outcome = run(book, signal)

    assert outcome.ignored == [(signal.event_id, "handled already")]
    assert not (outcome.entries or outcome.transitions or outcome.links)


def test_it_ignores_an_event_older_than_what_its_trigger_has_seen():
    book = Book({})
    run(book, fired(), cleared(at=T0 + 5 * MIN))

    outcome = run(book, fired(at=T0 + MIN))  # a late copy of an earlier firing

    assert only(book).status == "resolved"
    assert outcome.ignored[0][1] == "older than its trigger's latest event"


def test_it_derives_the_same_ids_for_the_same_transitions():
    signal = fired()
    first, second = Book({}), Book({})

    one, two = run(first, signal), run(second, signal)

    assert [t.event_id for t in one.transitions] == [t.event_id for t in two.transitions]
    assert only(first).id == only(second).id


# Operators


def test_it_acknowledges_an_open_incident_once_and_refuses_a_resolved_one():
    book = Book({})
    run(book, fired())
    incident = only(book)

    first = decisions.acknowledge(incident, actor="console user ann", at=T0 + MIN)
    again = decisions.acknowledge(incident, actor="console user bob", at=T0 + 2 * MIN)

    assert (incident.status, incident.acknowledged_by) == ("acknowledged", "console user ann")
    assert [e.actor for e in first.entries] == ["console user ann"]
    assert not again.entries
    decisions.resolve(incident, actor="console user ann", at=T0 + 3 * MIN)
    with pytest.raises(decisions.Refused, match="is resolved"):
        decisions.acknowledge(incident, actor="console user ann", at=T0 + 4 * MIN)


def test_it_resolves_an_incident_and_its_triggers_for_an_operator_once():
    book = Book({})
    run(book, fired())
    incident = only(book)

    first = decisions.resolve(incident, actor="API key pk_1", at=T0 + MIN)
    again = decisions.resolve(incident, actor="API key pk_1", at=T0 + 2 * MIN)

    assert (incident.status, incident.resolved_by) == ("resolved", "API key pk_1")
    assert all(not t.active for t in incident.triggers.values())
    assert transitions(first) == ["resolved#0"]
    assert not again.transitions and not again.entries


def test_it_records_a_firing_from_before_an_operators_resolve_without_reopening():
    book = Book({})
    run(book, fired(instance="a"))
    incident = only(book)
    decisions.resolve(incident, actor="console user ann", at=T0 + 10 * MIN)

    # Fired at T0 + 5 min, while the incident was open; delivered after the resolve.
    outcome = run(book, fired(at=T0 + 5 * MIN, instance="b", traces=(TRACE_A,)))

    assert len(book.incidents) == 1
    assert (incident.status, incident.reopened) == ("resolved", 0)
    assert not outcome.transitions
    late = incident.triggers["alert:" + RULE + ":b"]
    assert (late.state, late.resolved_at) == ("resolved", T0 + 10 * MIN)
    assert [link.trace_id for link in outcome.links] == [TRACE_A]
    assert "before this incident was resolved" in outcome.entries[0].message


def test_it_still_reopens_for_a_firing_after_an_operators_resolve():
    book = Book({})
    run(book, fired())
    incident = only(book)
    decisions.resolve(incident, actor="console user ann", at=T0 + 10 * MIN)

    outcome = run(book, fired(at=T0 + 11 * MIN, instance="b"))

    assert (incident.status, incident.reopened) == ("open", 1)
    assert transitions(outcome) == ["opened#1"]


def test_it_reopens_an_acknowledged_incident_unacknowledged():
    book = Book({})
    run(book, fired())
    incident = only(book)
    decisions.acknowledge(incident, actor="console user ann", at=T0 + MIN)
    decisions.resolve(incident, actor="console user ann", at=T0 + 2 * MIN)

    run(book, fired(at=T0 + 10 * MIN))

    assert (incident.status, incident.acknowledged_at) == ("open", None)
