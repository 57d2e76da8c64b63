"""Properties of the evaluator over generated rules and windows (Hypothesis): however the
windows are split into calls (live ticks, catch-up chunks, one backtest call), the states and
transitions are the same; evaluating again from the result adds nothing."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from observability.alerting.evaluation import InstanceState, evaluate
from observability.alerting.rules import (
    AlertRule,
    Comparison,
    NoData,
    Op,
    WindowSample,
    validate,
)
from tests.observability.alerting.factories import T0, instance, make_rule, window

HOUR = timedelta(hours=1)
TOKENS = st.one_of(
    st.integers(0, 9).map(float),
    st.sampled_from([None, "stale", "-", "!"]),
)


@st.composite
def rules(draw: st.DrawFn) -> AlertRule:
    op = draw(st.sampled_from(list(Op)))
    critical = float(draw(st.integers(1, 8)))
    warning = resolve = None
    if op.upward is not None and draw(st.booleans()):
        warning = critical + (-2 if op.upward else 2)
    if op.upward is not None and draw(st.booleans()):
        lowest = critical if warning is None else warning
        resolve = lowest + (-draw(st.integers(0, 2)) if op.upward else draw(st.integers(0, 2)))
    flap_window = draw(st.integers(2, 8))
    percent = draw(st.booleans()) and draw(st.booleans())
    rule = make_rule(
        op=op,
        critical=critical * (10 if percent else 1),
        warning=warning and warning * (10 if percent else 1),
        resolve=resolve and resolve * (10 if percent else 1),
        comparison=Comparison.PERCENT_CHANGE if percent else Comparison.STATIC,
        offset="1h" if percent else None,
        for_seconds=draw(st.sampled_from([0, 60, 90, 120, 300])),
        keep_firing_for_seconds=draw(st.sampled_from([0, 60, 150])),
        nodata=draw(st.sampled_from(list(NoData))),
        flap_window=flap_window,
        flap_changes=draw(st.integers(0, flap_window - 1)),
    )
    assert validate(rule) == []
    return rule


def to_samples(tokens, start):
    found = []
    for i, token in enumerate(tokens):
        at = start + (window(i) - T0)
        if token is None:
            continue
        if token == "stale":
            found.append(WindowSample(at, None, stale=True))
        elif token == "-":
            found.append(WindowSample(at, None))
        elif token == "!":
            found.append(WindowSample(at, None, error="cannot combine"))
        else:
            found.append(WindowSample(at, token, trace_ids=(f"{i:032x}",)))
    return tuple(found)


@settings(max_examples=300, deadline=None)
@given(
    rule=rules(),
    tokens=st.lists(TOKENS, min_size=1, max_size=40),
    baseline=st.lists(TOKENS, min_size=40, max_size=40),
    chunk=st.integers(1, 7),
)
def test_it_gives_the_same_result_in_one_call_as_tick_by_tick(rule, tokens, baseline, chunk):
    windows = instance(to_samples(tokens, T0), to_samples(baseline, T0 - HOUR))
    newest = window(len(tokens) - 1)

    at_once = evaluate(rule, windows, newest=newest, start=T0, max_windows=len(tokens))

    state: InstanceState | None = None
    ticked = []
    for i in range(len(tokens)):
        step = evaluate(rule, windows, state, newest=window(i), start=T0)
        assert step.evaluated == 1
        state, ticked = step.state, ticked + list(step.transitions)
    assert state == at_once.state
    assert ticked == list(at_once.transitions)

    # As the handler calls it: each tick with the windows loaded up to its own, oldest first
    # (the newest sample is the window due, where most ticks take the one-window path).
    state, loaded = None, []
    for i in range(len(tokens)):
        upto = instance(to_samples(baseline, T0 - HOUR), to_samples(tokens[: i + 1], T0))
        step = evaluate(rule, upto, state, newest=window(i), start=T0)
        state, loaded = step.state, loaded + list(step.transitions)
    assert state == at_once.state
    assert loaded == list(at_once.transitions)

    state, chunked = None, []
    while True:
        step = evaluate(rule, windows, state, newest=newest, start=T0, max_windows=chunk)
        if not step.evaluated:
            break
        state, chunked = step.state, chunked + list(step.transitions)
    assert state == at_once.state
    assert chunked == list(at_once.transitions)

    again = evaluate(rule, windows, at_once.state, newest=newest)
    assert (again.evaluated, again.transitions, again.state) == (0, (), at_once.state)
    # Every transition id is distinct: no window pages twice for one kind.
    ids = [t.id for t in at_once.transitions]
    assert len(ids) == len(set(ids))
    stored = json.loads(json.dumps(at_once.state.to_json()))
    assert InstanceState.from_json(stored) == at_once.state
