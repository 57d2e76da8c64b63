"""Rules and windows for the evaluator's tests, written compactly: `samples("6 6 _ stale 3")`
is one sample per minute from T0, `_` a window without a series, `stale` a window whose series
ended (NO_RECORDED_VALUE), `-` a window with a series but no value, `!` an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from observability.alerting.evaluation import Evaluation, InstanceState, evaluate
from observability.alerting.rules import (
    AlertRule,
    Field,
    InstanceWindows,
    Op,
    Query,
    WindowSample,
    instance_key,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
LABELS = {"service.name": "checkout"}
KEY = instance_key(LABELS)


def make_rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "id": "rule-1",
        "query": Query(metric="queue.depth", window="1m", field=Field.LAST),
        "op": Op.GT,
        "critical": 90.0,
        "group_by": ("service.name",),
        "flap_changes": 0,
    }
    return AlertRule(**(fields | overrides))


def samples(text: str, *, start: datetime = T0, trace: bool = False) -> tuple[WindowSample, ...]:
    found = []
    for i, token in enumerate(text.split()):
        at = start + i * MINUTE
        if token == "_":
            continue
        if token == "stale":
            found.append(WindowSample(at, None, stale=True))
        elif token == "-":
            found.append(WindowSample(at, None))
        elif token == "!":
            found.append(WindowSample(at, None, error="the series cannot be combined"))
        else:
            trace_ids = (f"{i:032x}",) if trace else ()
            found.append(WindowSample(at, float(token), trace_ids=trace_ids))
    return tuple(found)


def instance(*groups: tuple[WindowSample, ...]) -> InstanceWindows:
    return InstanceWindows(KEY, LABELS, tuple(s for group in groups for s in group))


def window(i: int) -> datetime:
    return T0 + i * MINUTE


def run(rule: AlertRule, text: str, previous: InstanceState | None = None) -> Evaluation:
    """Every window of `text` in one call, from T0."""
    count = len(text.split())
    windows = instance(samples(text))
    return evaluate(rule, windows, previous, newest=window(count - 1), start=T0, max_windows=count)


def ticks(rule: AlertRule, text: str) -> list[InstanceState]:
    """The state after each window, one call per window."""
    windows, state, states = instance(samples(text)), None, []
    for i in range(len(text.split())):
        state = evaluate(rule, windows, state, newest=window(i), start=T0).state
        states.append(state)
    return states
