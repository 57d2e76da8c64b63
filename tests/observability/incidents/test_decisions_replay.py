"""decisions.replay, the backtest's entry point: trigger events grouped from no incidents, as
the worker's batches and schedule would have grouped them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from observability.incidents import decisions
from observability.incidents.decisions import Book, Windows
from tests.observability.incidents.factories import T0, alert_data

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


def test_it_replays_opening_resolution_and_reopening_as_apply_does():
    signals = [
        fired(),
        fired(at=T0 + MIN, instance="b"),
        cleared(at=T0 + 5 * MIN),
        cleared(at=T0 + 6 * MIN, instance="b"),
        fired(at=T0 + 20 * MIN),
    ]
    book = Book({})
    applied = decisions.apply(book, signals, WINDOWS)

    incidents, outcome = decisions.replay(signals, WINDOWS, until=T0 + 30 * MIN)

    assert [(t.name, t.count, t.at) for t in outcome.transitions] == [
        (t.name, t.count, t.at) for t in applied.transitions
    ]
    assert [(t.name, t.count) for t in outcome.transitions] == [
        ("opened", 0),
        ("resolved", 0),
        ("opened", 1),
    ]
    (incident,) = incidents
    (applied_incident,) = book.incidents.values()
    assert (incident.status, incident.reopened) == ("open", 1)
    assert sorted(incident.triggers) == sorted(applied_incident.triggers)


def test_it_resolves_by_timeout_at_the_end_of_the_range_as_the_schedule_would():
    signals = [fired()]

    incidents, outcome = decisions.replay(signals, WINDOWS, until=T0 + timedelta(hours=30))

    (incident,) = incidents
    assert incident.status == "resolved"
    assert incident.resolved_at == T0 + timedelta(hours=24)
    assert [t.name for t in outcome.transitions] == ["opened", "resolved"]


def test_it_opens_incidents_in_time_order_whatever_the_order_given():
    signals = [fired(at=T0 + 2 * MIN, rule="r2"), fired(rule="r1")]

    incidents, _ = decisions.replay(signals, WINDOWS, until=T0 + 3 * MIN)

    assert [i.opened_at for i in incidents] == [T0, T0 + 2 * MIN]
    assert all(i.status == "open" for i in incidents)
