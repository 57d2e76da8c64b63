"""Prometheus semantics, with promtool as the oracle.

Each scenario is one threshold rule (op, threshold, `for`, `keep_firing_for`) over a few series
of 1-minute samples with gaps (`_`) and staleness markers (`stale`). The evaluator, with
NoData.PROMETHEUS, gives each instance's state after every window; the scenario becomes a
Prometheus rule and promtool unit tests expecting exactly those states at every evaluation:
`ALERTS{alertstate="pending"|"firing"}` series (pending is invisible to alert_rule_test) and
the firing alerts. One promtool run checks every scenario.

Window i (starting T0 + i minutes, evaluated at its end) is promtool's sample and evaluation
at i minutes: both sides count `for` and keep-firing between evaluations the same way.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from observability.alerting.evaluation import InstanceState, State, evaluate
from observability.alerting.rules import (
    AlertRule,
    InstanceWindows,
    NoData,
    Op,
    Query,
    WindowSample,
    instance_key,
)

PROMTOOL = shutil.which("promtool")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
STEPS = 32

Token = float | str | None  # a value, "stale", or None: no sample (a gap)


@dataclass(frozen=True)
class Scenario:
    name: str
    op: Op
    threshold: float
    for_seconds: int
    keep_firing_for_seconds: int
    series: dict[str, list[Token]]

    def rule(self) -> AlertRule:
        return AlertRule(
            id=self.name,
            query=Query(metric=self.name),
            op=self.op,
            critical=self.threshold,
            for_seconds=self.for_seconds,
            keep_firing_for_seconds=self.keep_firing_for_seconds,
            nodata=NoData.PROMETHEUS,
            flap_changes=0,
        )


def tokens(text: str) -> list[Token]:
    return [None if t == "_" else t if t == "stale" else float(t) for t in text.split()]


# Written to cover each rule of Prometheus's evaluation at least once.
WRITTEN = [
    # A gap shorter than the 5-minute lookback keeps the breach; a longer one ends it.
    Scenario("gaps", Op.GT, 5, 0, 0, {"a": tokens("6 6 _ _ _ _ _ 6 _ _ _ _ _ _ 6 1")}),
    # A staleness marker ends the series at once; a value after it starts it again.
    Scenario("stale", Op.GT, 5, 0, 0, {"a": tokens("6 6 stale 6 6 stale _ _ 6 stale")}),
    # `for`: pending from the first breach; an interrupted breach starts over.
    Scenario("hold", Op.GE, 3, 120, 0, {"a": tokens("3 4 2 3 3 3 3 1 3 3 3")}),
    # A `for` that is not a multiple of the interval fires at the first evaluation past it.
    Scenario("hold90", Op.LT, 2, 90, 0, {"a": tokens("1 1 1 1 5 1 1 5 1 1 1")}),
    # keep_firing_for, through a gap, a returning breach, and a staleness marker.
    Scenario(
        "keep",
        Op.GT,
        5,
        60,
        180,
        {
            "a": tokens("6 6 6 1 1 6 1 1 1 1 1 6 6 stale _ _ _ _ 6 6 6"),
            "b": tokens("9 _ _ _ _ _ _ _ _ _ 9 9 stale 9 9 9 1"),
        },
    ),
    Scenario("keep150", Op.EQ, 4, 0, 150, {"a": tokens("4 0 0 0 0 4 0 4 _ _ _ _ _ _ _ 0")}),
    Scenario("differs", Op.NE, 0, 60, 60, {"a": tokens("0 1 1 0 1 0 0 1 1 1 stale 1")}),
]


def random_scenarios(count: int, seed: int) -> list[Scenario]:
    rng = random.Random(seed)
    scenarios = []
    for n in range(count):
        series = {}
        for instance in "abc"[: rng.randint(1, 3)]:
            values: list[Token] = []
            while len(values) < STEPS:
                roll = rng.random()
                if roll < 0.12:  # a gap of 1 to 8 windows
                    values += [None] * rng.randint(1, 8)
                elif roll < 0.17:
                    values.append("stale")
                else:
                    values += [float(rng.randint(0, 9))] * rng.randint(1, 4)
            series[instance] = values[:STEPS]
        scenarios.append(
            Scenario(
                name=f"random{n}",
                op=rng.choice(list(Op)),
                threshold=float(rng.randint(1, 8)),
                for_seconds=rng.choice([0, 0, 60, 90, 120, 180, 300]),
                keep_firing_for_seconds=rng.choice([0, 0, 60, 120, 150, 300]),
                series=series,
            )
        )
    return scenarios


def states(scenario: Scenario, instance: str) -> list[State]:
    """The instance's state after each window, evaluating one window at a time."""
    rule = scenario.rule()
    samples = tuple(
        WindowSample(T0 + i * MINUTE, None if token == "stale" else token, stale=token == "stale")
        for i, token in enumerate(scenario.series[instance])
        if token is not None
    )
    windows = InstanceWindows(instance_key({"instance": instance}), {"instance": instance}, samples)
    state: InstanceState | None = None
    result = []
    for i in range(STEPS):
        state = evaluate(rule, windows, state, newest=T0 + i * MINUTE, start=T0).state
        result.append(state.state)
    # One call over every window agrees with the ticks.
    newest = T0 + (STEPS - 1) * MINUTE
    assert evaluate(rule, windows, newest=newest, start=T0, max_windows=STEPS).state == state
    return result


def promtool_files(scenarios: list[Scenario]) -> tuple[dict[str, object], dict[str, object]]:
    rules = {
        "groups": [
            {
                "name": "scenarios",
                "rules": [
                    {
                        "alert": s.name,
                        "expr": f"{s.name} {s.op} {s.threshold:g}",
                        "for": f"{s.for_seconds}s",
                        "keep_firing_for": f"{s.keep_firing_for_seconds}s",
                    }
                    for s in scenarios
                ],
            }
        ]
    }
    input_series, alert_tests, expr_tests = [], [], []
    for s in scenarios:
        per_instance = {instance: states(s, instance) for instance in s.series}
        for instance, values in s.series.items():
            input_series.append(
                {
                    "series": f'{s.name}{{instance="{instance}"}}',
                    "values": " ".join(_token(t) for t in values),
                }
            )
        for i in range(STEPS):
            now = {instance: found[i] for instance, found in per_instance.items()}
            firing = sorted(k for k, st in now.items() if st in (State.FIRING, State.RECOVERING))
            alert_tests.append(
                {
                    "eval_time": f"{i}m",
                    "alertname": s.name,
                    "exp_alerts": [{"exp_labels": {"instance": k}} for k in firing],
                }
            )
            expr_tests.append(
                {
                    "expr": f'ALERTS{{alertname="{s.name}"}}',
                    "eval_time": f"{i}m",
                    "exp_samples": [
                        {
                            "labels": _alerts_series(s.name, st, k),
                            "value": 1,
                        }
                        for k, st in sorted(now.items())
                        if st is not State.NORMAL
                    ],
                }
            )
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",  # promtool 2.42 has no default (anchors §2)
                "input_series": input_series,
                "alert_rule_test": alert_tests,
                "promql_expr_test": expr_tests,
            }
        ],
    }
    return rules, tests


def _token(token: Token) -> str:
    if token is None:
        return "_"
    return token if isinstance(token, str) else f"{token:g}"


def _alerts_series(alertname: str, state: State, instance: str) -> str:
    alertstate = "pending" if state is State.PENDING else "firing"
    return f'ALERTS{{alertname="{alertname}", alertstate="{alertstate}", instance="{instance}"}}'


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_it_computes_the_pending_and_firing_intervals_promtool_computes(tmp_path):
    version = subprocess.run(
        [PROMTOOL, "--version"], capture_output=True, text=True, check=True
    ).stdout
    if "version 2." not in version:
        # Prometheus 3 reads ranges and lookbacks left-open (anchors §2): another oracle.
        pytest.skip(f"the oracle is Prometheus 2.42's promtool, not {version.splitlines()[0]}")
    scenarios = WRITTEN + random_scenarios(40, seed=11)
    # Every state Prometheus has, and the evaluator's recovering, is in the scenarios.
    seen = {st for s in scenarios for instance in s.series for st in states(s, instance)}
    assert {State.NORMAL, State.PENDING, State.FIRING, State.RECOVERING} <= seen
    rules, tests = promtool_files(scenarios)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))

    run = subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, (run.stdout + run.stderr)[:6000]
    assert "SUCCESS" in run.stdout
