"""The alert evaluator (observability.alerting.evaluation): pure, no database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from observability.alerting.evaluation import (
    InstanceState,
    Kind,
    Severity,
    State,
    evaluate,
    needed_windows,
    outcome_changed,
    reconcile,
    transition_id,
)
from observability.alerting.rules import Comparison, NoData, WindowSample, due_window
from tests.observability.alerting.factories import (
    KEY,
    T0,
    instance,
    make_rule,
    run,
    samples,
    ticks,
    window,
)


def kinds(evaluation):
    return [t.kind for t in evaluation.transitions]


def test_it_fires_after_for_and_resolves():
    result = run(make_rule(for_seconds=120), "50 95 95 95 95 50")

    assert kinds(result) == [Kind.PENDING, Kind.TRIGGERED, Kind.RESOLVED]
    pending, triggered, resolved = result.transitions
    assert pending.window_start == window(1)
    assert triggered.window_start == window(3)  # breached at the ends of windows 1, 2 and 3
    assert (triggered.severity, triggered.value, triggered.threshold) == ("critical", 95, 90)
    assert triggered.event_type == "AlertTriggered"
    assert resolved.event_type == "AlertResolved"
    assert resolved.window_start == window(5)
    assert pending.event_type is None
    assert triggered.reason == "last of queue.depth was 95: > 90 (critical)"
    assert result.state.state is State.NORMAL
    assert result.state.fired_at == window(4)
    assert result.state.resolved_at == window(6)


def test_it_derives_transition_ids_from_rule_instance_window_and_kind():
    triggered = run(make_rule(), "95").transitions[0]

    assert triggered.id == transition_id("rule-1", KEY, window(0), Kind.TRIGGERED)
    assert triggered.id == run(make_rule(), "95").transitions[0].id
    assert triggered.id != transition_id("rule-1", KEY, window(1), Kind.TRIGGERED)


def test_it_gives_the_same_result_evaluating_the_same_windows_again():
    rule = make_rule(for_seconds=60, keep_firing_for_seconds=120)
    before = run(rule, "95 95 50").state
    windows = instance(samples("95 95 50 95 50 50 50 _ 95"))

    first = evaluate(rule, windows, before, newest=window(8))
    again = evaluate(rule, windows, before, newest=window(8))

    assert first == again
    assert evaluate(rule, windows, first.state, newest=window(8)).evaluated == 0


# Missing data, per rule


def test_it_keeps_an_open_alert_open_through_no_data():
    result = run(make_rule(nodata=NoData.NODATA), "95 _ _ 95 _ 50")

    assert kinds(result) == [Kind.TRIGGERED, Kind.NODATA, Kind.FIRING, Kind.NODATA, Kind.RESOLVED]
    nodata = result.transitions[1]
    assert nodata.state is State.NODATA
    assert nodata.severity is Severity.CRITICAL
    assert nodata.reason == "no series of queue.depth in the window"
    # Firing again after no data is the same alert: no second AlertTriggered.
    assert [t.event_type for t in result.transitions].count("AlertTriggered") == 1


def test_it_ends_a_pending_breach_on_no_data():
    states = ticks(make_rule(for_seconds=120, nodata=NoData.NODATA), "95 95 - 95")

    assert [s.state for s in states] == [State.PENDING, State.PENDING, State.NODATA, State.PENDING]
    assert states[3].active_at == window(4)  # the full `for` again


def test_it_takes_no_data_as_critical_when_the_rule_says_alerting():
    result = run(make_rule(nodata=NoData.ALERTING, for_seconds=60), "50 _ _ 95 _ 50")

    assert kinds(result) == [Kind.PENDING, Kind.TRIGGERED, Kind.RESOLVED]
    triggered = result.transitions[1]
    assert triggered.value is None
    assert triggered.reason == (
        "no series of queue.depth in the window, which this rule takes as critical; "
        "still firing (critical)"
    )


def test_it_takes_no_data_as_no_breach_when_the_rule_says_ok():
    result = run(make_rule(nodata=NoData.OK), "95 _ _ 95 _ 50")

    assert kinds(result) == [Kind.TRIGGERED, Kind.RESOLVED, Kind.TRIGGERED, Kind.RESOLVED]


def test_it_changes_nothing_on_no_data_when_the_rule_keeps_the_last_state():
    rule = make_rule(nodata=NoData.KEEP_LAST, for_seconds=120)

    assert kinds(run(rule, "95 _ _ _ 50")) == [Kind.PENDING, Kind.NORMAL]
    assert [s.state for s in ticks(rule, "95 _ _ _")] == [State.PENDING] * 4
    result = run(replace(rule, for_seconds=0), "95 _ _ 95 _ 50")
    assert kinds(result) == [Kind.TRIGGERED, Kind.RESOLVED]


def test_it_counts_a_value_for_five_minutes_with_prometheus_semantics():
    rule = make_rule(nodata=NoData.PROMETHEUS)

    states = ticks(rule, "95 _ _ _ _ _ _")
    assert [s.state for s in states] == [State.FIRING] * 6 + [State.NORMAL]
    assert states[6].reason == "no value of queue.depth in the last 5 min 0 s"
    # A point flagged NO_RECORDED_VALUE ends the series at once.
    assert kinds(run(rule, "95 stale")) == [Kind.TRIGGERED, Kind.RESOLVED]
    # A window with series but no value is NaN to Prometheus: no breach.
    assert kinds(run(rule, "95 - 95")) == [Kind.TRIGGERED, Kind.RESOLVED, Kind.TRIGGERED]


# Thresholds


def test_it_resolves_past_the_resolve_threshold_only():
    result = run(make_rule(resolve=80.0), "95 85 80 85 95")

    assert kinds(result) == [Kind.TRIGGERED, Kind.RESOLVED, Kind.TRIGGERED]
    assert result.transitions[1].window_start == window(2)
    assert result.transitions[1].threshold == 80
    assert result.transitions[1].reason == "last of queue.depth was 80: no longer > 80"


def test_it_pages_a_warning_then_a_severity_increase_then_resolves():
    rule = make_rule(warning=70.0)

    result = run(rule, "75 95 75 95 50")

    assert kinds(result) == [Kind.TRIGGERED, Kind.SEVERITY_INCREASED, Kind.RESOLVED]
    warning, critical, resolved = result.transitions
    assert (warning.severity, warning.threshold) == (Severity.WARNING, 70)
    assert (critical.severity, critical.threshold) == (Severity.CRITICAL, 90)
    assert critical.event_type == "AlertTriggered"
    # Back to warning levels stays critical: swinging does not page again.
    assert (resolved.window_start, resolved.severity) == (window(4), Severity.CRITICAL)


def test_it_holds_each_severity_for_the_for_duration():
    result = run(make_rule(warning=70.0, for_seconds=120), "75 95 95 95 75 50")

    assert kinds(result) == [
        Kind.PENDING,
        Kind.TRIGGERED,
        Kind.SEVERITY_INCREASED,
        Kind.RESOLVED,
    ]
    assert result.transitions[1].severity is Severity.WARNING
    assert result.transitions[1].window_start == window(2)
    assert result.transitions[2].window_start == window(3)


def test_it_compares_below_thresholds():
    rule = make_rule(critical=10.0, warning=20.0, op="<", resolve=25.0)

    result = run(rule, "30 15 5 22 26")

    assert kinds(result) == [Kind.TRIGGERED, Kind.SEVERITY_INCREASED, Kind.RESOLVED]
    assert result.transitions[2].window_start == window(4)


def test_it_keeps_firing_for_keep_firing_for_while_recovering():
    states = ticks(make_rule(keep_firing_for_seconds=120), "95 50 95 50 50 50")

    assert [s.state for s in states] == [
        State.FIRING,
        State.RECOVERING,
        State.FIRING,
        State.RECOVERING,
        State.RECOVERING,
        State.NORMAL,
    ]
    assert kinds(run(make_rule(keep_firing_for_seconds=120), "95 50 95 50 50 50")) == [
        Kind.TRIGGERED,
        Kind.RECOVERING,
        Kind.FIRING,
        Kind.RECOVERING,
        Kind.RESOLVED,
    ]


def test_it_compares_a_percent_change_against_the_offset():
    rule = make_rule(comparison=Comparison.PERCENT_CHANGE, offset="1h", critical=50.0)
    hour_ago = samples("100 100 0", start=T0 - timedelta(hours=1))
    windows = instance(hour_ago, samples("160 120 50 70"))

    result = evaluate(rule, windows, newest=window(3), start=T0)

    assert kinds(result) == [Kind.TRIGGERED, Kind.RESOLVED, Kind.NODATA]
    assert result.transitions[0].value == 60
    assert result.transitions[0].reason == (
        "% change of last of queue.depth since 1h ago was 60: > 50 (critical)"
    )
    assert result.transitions[2].reason == "the value 1h ago was 0"
    assert result.state.reason == "no value 1h ago to compare with"
    assert needed_windows(rule, window(0), window(3)) == (
        (window(0), window(3)),
        (window(0) - timedelta(hours=1), window(3) - timedelta(hours=1)),
    )


def test_it_flags_flapping_and_stays_firing_instead_of_paging_each_change():
    rule = make_rule(flap_window=6, flap_changes=3)
    text = "95 50 95 50 95 50 95 50 50 50 50 50"

    result = run(rule, text)

    assert kinds(result) == [
        Kind.TRIGGERED,
        Kind.RESOLVED,
        Kind.TRIGGERED,
        Kind.FLAPPING,
        Kind.RESOLVED,
    ]
    flapping = result.transitions[3]
    assert flapping.window_start == window(3)
    assert flapping.state is State.FIRING
    assert flapping.reason.startswith("flapping: 3 changes in the last 6 windows")
    assert result.transitions[4].window_start == window(10)  # once it settled
    # Without flap detection, every change pages.
    assert kinds(run(replace(rule, flap_changes=0), text)).count(Kind.TRIGGERED) == 4


def test_it_puts_an_instance_in_error_without_resolving_its_alert():
    result = run(make_rule(), "95 ! 95 50")

    assert kinds(result) == [Kind.TRIGGERED, Kind.ERROR, Kind.FIRING, Kind.RESOLVED]
    error = result.transitions[1]
    assert (error.state, error.reason) == (State.ERROR, "the series cannot be combined")
    assert error.severity is Severity.CRITICAL


def test_it_carries_the_trace_ids_of_the_breaching_windows():
    rule = make_rule(for_seconds=120)
    windows = instance(samples("50 95 95 95 50", trace=True))

    result = evaluate(rule, windows, newest=window(4), start=T0)

    triggered, resolved = result.transitions[1:]
    assert triggered.trace_ids == (f"{3:032x}", f"{2:032x}", f"{1:032x}")
    assert resolved.trace_ids == triggered.trace_ids
    assert result.state.trace_ids == ()


# Catch-up and duplicates


def test_it_catches_up_window_by_window_after_downtime():
    rule = make_rule(for_seconds=60, keep_firing_for_seconds=60)
    text = "50 95 95 50 50 _ 95 95 95 95 50 50 50 95 95 50 50 50 50 50"
    windows = instance(samples(text))
    before = run(rule, "50 95").state

    chunks, state = [], before
    while True:
        step = evaluate(rule, windows, state, newest=window(19), max_windows=5)
        if not step.evaluated:
            break
        chunks.append(step)
        state = step.state

    at_once = evaluate(rule, windows, before, newest=window(19), max_windows=100)
    assert [c.evaluated for c in chunks] == [5, 5, 5, 3]
    assert [c.remaining for c in chunks] == [13, 8, 3, 0]
    assert state == at_once.state
    assert [t for c in chunks for t in c.transitions] == list(at_once.transitions)
    # A duplicate tick publishes nothing new.
    again = evaluate(rule, windows, state, newest=window(19))
    assert (again.evaluated, again.transitions, again.state) == (0, (), state)


def test_it_starts_a_new_instance_at_the_newest_window():
    result = evaluate(make_rule(), instance(samples("95 95 95")), newest=window(2))

    assert result.evaluated == 1
    assert result.transitions[0].window_start == window(2)


def test_it_evaluates_windows_due_after_the_delay():
    rule = make_rule(delay_seconds=30)
    now = T0 + timedelta(minutes=5, seconds=10)

    assert due_window(rule, now, newest_aggregated=window(10)) == window(3)
    assert due_window(rule, now, newest_aggregated=window(2)) == window(2)


# Late data


def test_it_sees_whether_late_data_changes_an_outcome():
    rule = make_rule()
    state = run(rule, "50 60 50 50").state

    unchanged = instance(samples("50 70 50 50"))
    crossing = instance(samples("50 95 50 50"))
    assert outcome_changed(rule, state, unchanged, since=window(1)) is False
    assert outcome_changed(rule, state, crossing, since=window(1)) is True
    long = run(rule, " ".join(["50"] * 15)).state
    assert outcome_changed(rule, long, instance(samples("95")), since=window(0)) is None


def test_it_pages_once_when_late_data_opens_an_alert():
    rule = make_rule(for_seconds=120, nodata=NoData.OK)
    checkpoint = run(rule, "50 50").state  # saved before the late window
    current = evaluate(rule, instance(samples("50 50 _ 95 95")), checkpoint, newest=window(4))
    assert current.state.state is State.PENDING
    late = instance(samples("50 50 95 95 95"))
    assert outcome_changed(rule, current.state, late, since=window(2))

    revised = evaluate(rule, late, checkpoint, newest=window(4))
    published = reconcile(rule, KEY, current.state, revised)

    assert [(t.kind, t.window_start, t.late) for t in published] == [
        (Kind.TRIGGERED, window(4), True)
    ]
    assert published[0].reason.startswith("late data: ")
    assert published[0].id == revised.transitions[-1].id
    # Reconciled again (a replayed late tick), nothing is published twice.
    assert reconcile(rule, KEY, revised.state, revised) == ()


def test_it_resolves_once_when_late_data_closes_an_alert():
    rule = make_rule()
    checkpoint = run(rule, "50").state
    current = evaluate(rule, instance(samples("50 95 95 95")), checkpoint, newest=window(3))

    revised = evaluate(rule, instance(samples("50 50 50 50")), checkpoint, newest=window(3))
    published = reconcile(rule, KEY, current.state, revised)

    assert [(t.kind, t.window_start, t.severity) for t in published] == [
        (Kind.RESOLVED, window(3), Severity.CRITICAL)
    ]


def test_it_publishes_nothing_for_a_late_breach_that_came_and_went():
    rule = make_rule(nodata=NoData.OK)
    checkpoint = run(rule, "50").state
    current = evaluate(rule, instance(samples("50 _ 50")), checkpoint, newest=window(2))

    revised = evaluate(rule, instance(samples("50 95 50")), checkpoint, newest=window(2))

    assert kinds(revised) == [Kind.TRIGGERED, Kind.RESOLVED]  # kept in the history
    assert reconcile(rule, KEY, current.state, revised) == ()


# The state as stored


def test_it_stores_and_loads_the_state_as_json():
    state = run(make_rule(flap_window=6, flap_changes=3, warning=70.0), "95 50 95 50").state
    assert state.flapping and state.recent

    stored = json.loads(json.dumps(state.to_json()))

    assert InstanceState.from_json(stored) == state


def test_it_reads_windows_five_minutes_back_in_prometheus_mode():
    rule = make_rule(nodata=NoData.PROMETHEUS)

    assert needed_windows(rule, window(10), window(12)) == ((window(5), window(12)),)
    assert needed_windows(make_rule(), window(10), window(12)) == ((window(10), window(12)),)


def test_it_ignores_samples_outside_the_windows_it_evaluates():
    rule = make_rule()
    windows = instance(samples("95 95"), (WindowSample(window(5), 10.0),))

    result = evaluate(rule, windows, newest=window(1), start=T0)

    assert result.state.last_window == window(1)
    assert result.state.last_value == 95
