"""What a tick takes from one evaluate call: each changed window's transitions with the state
after it (the checkpoint the history keeps), as window-by-window calls give them; what the
evaluator works out once per rule, never carried to another rule; one series' samples as a
group's; and the handler's binary reads, equal to Django's."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observability.alerting.evaluation import InstanceState, Kind, State, evaluate
from observability.alerting.rules import MAX_TRACE_IDS, MetricKind, SeriesWindow, instance_windows
from observability.alerting.windows import plain_rows
from observability.models import MetricSeries
from tests.observability.alerting.factories import T0, instance, make_rule, run, samples, window
from tests.observability.alerting.test_evaluation_properties import TOKENS, rules, to_samples

HOUR = timedelta(hours=1)


@settings(max_examples=200, deadline=None)
@given(
    rule=rules(),
    tokens=st.lists(TOKENS, min_size=1, max_size=30),
    baseline=st.lists(TOKENS, min_size=40, max_size=40),
)
def test_it_gives_each_changed_windows_state_as_one_call_per_window_would(rule, tokens, baseline):
    windows = instance(to_samples(tokens, T0), to_samples(baseline, T0 - HOUR))
    newest = window(len(tokens) - 1)

    at_once = evaluate(rule, windows, newest=newest, start=T0, max_windows=len(tokens))

    state: InstanceState | None = None
    expected = []
    for i in range(len(tokens)):
        step = evaluate(rule, windows, state, newest=window(i), start=T0)
        state = step.state
        if step.transitions:
            expected.append((step.transitions, step.state))
        assert step.steps == (((step.transitions, step.state),) if step.transitions else ())
    assert list(at_once.steps) == expected
    assert [t for transitions, _ in at_once.steps for t in transitions] == list(at_once.transitions)


def test_it_evaluates_a_changed_rule_by_its_own_thresholds_and_times():
    rule = make_rule(for_seconds=120)
    assert [t.kind for t in run(rule, "95 95 95").transitions] == [Kind.PENDING, Kind.TRIGGERED]

    lower = dataclasses.replace(rule, critical=50.0, for_seconds=0)
    result = run(lower, "60 60 60")

    assert [t.kind for t in result.transitions] == [Kind.TRIGGERED]
    assert result.state.reason == "last of queue.depth was 60: > 50 (critical)"
    # What the evaluator worked out of a rule is no part of its value.
    assert rule == dataclasses.replace(rule) and "derived" not in repr(rule)


def test_it_describes_a_rule_per_rule_not_per_call():
    first = run(make_rule(), "95").state
    second = run(make_rule(query=dataclasses.replace(make_rule().query, metric="jobs")), "95")

    assert first.reason == "last of queue.depth was 95: > 90 (critical)"
    assert second.state.reason == "last of jobs was 95: > 90 (critical)"


def test_it_keeps_one_series_exemplars_once_each_and_at_most_as_many_as_a_group():
    repeated = tuple(f"{i % 25:032x}" for i in range(40))
    series = SeriesWindow(
        start=T0,
        labels={"service.name": "checkout"},
        kind=MetricKind.GAUGE,
        last=95.0,
        stale=True,
        trace_ids=repeated,
    )
    twin = msgspec.structs.replace(series, last=None, stale=True, trace_ids=())

    alone = instance_windows(make_rule(), [series])
    grouped = instance_windows(make_rule(), [series, twin])

    (one,) = alone.values()
    (two,) = grouped.values()
    assert one.samples[0].trace_ids == tuple(f"{i:032x}" for i in range(MAX_TRACE_IDS))
    assert one.samples[0].trace_ids == two.samples[0].trace_ids
    assert (one.samples[0].value, one.samples[0].stale) == (95.0, True)
    assert (two.samples[0].value, two.samples[0].stale) == (95.0, True)


def test_it_stays_normal_window_after_window_without_a_transition():
    result = run(make_rule(flap_changes=3), "10 20 30 40")

    assert result.transitions == () and result.steps == ()
    assert result.state.state is State.NORMAL
    assert result.state.reason == "last of queue.depth was 40"
    assert [o.breached for o in result.state.recent] == [False] * 4


@pytest.mark.django_db
def test_it_reads_the_windows_columns_as_djangos_own_query_does(tenant):
    MetricSeries.objects.create(
        tenant=tenant,
        series_key="k",
        window="1m",
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
        name="queue.depth",
        kind=1,
        temporality=0,
        points=3,
        last=95.5,
        count=3,
        min=-1.25,
        max=1e300,
        mean=None,
        computed_at=T0 + timedelta(minutes=1, seconds=7),
    )
    rows = MetricSeries.objects.filter(tenant=tenant).values_list(
        "id", "tenant_id", "window_start", "kind", "points", "last", "count", "min", "max",
        "mean", "computed_at", "monotonic",
    )  # fmt: skip

    read = list(plain_rows(rows))

    assert read == list(rows)
    assert [str(value.tzinfo) for value in (read[0][2], read[0][10])] == ["UTC", "UTC"]


def test_it_marks_every_window_of_a_steady_run_in_order():
    result = evaluate(
        make_rule(), instance(samples("1 2 3")), newest=window(2), start=T0, max_windows=2
    )

    assert (result.evaluated, result.remaining) == (2, 1)
    assert [o.start for o in result.state.recent] == [window(0), window(1)]
