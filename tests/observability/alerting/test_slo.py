"""SLO math (observability.alerting.slo): sums over windows, the workbook's burn-rate table,
budget and exhaustion, latency SLIs from buckets, low traffic, absent data, refused rows,
breach and recovery, and a cross-check of the firing rows against promtool."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from observability.alerting import slo
from observability.alerting.slo import (
    WORKBOOK_ROWS,
    AlertRow,
    LatencySli,
    RatioSli,
    Selector,
    SliWindow,
    Slo,
)

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAYS_30 = timedelta(days=30)
REQUESTS = RatioSli(
    events=Selector("http.server.errors", {"service.name": "checkout"}),
    total=Selector("http.server.requests", {"service.name": "checkout"}),
)
FAST = AlertRow("page-fast", "page", 14.4, HOUR, timedelta(minutes=5))


def checkout(**changes: object) -> Slo:
    spec = Slo(service="checkout", sli=REQUESTS, objective=0.999)
    return replace(spec, **changes)


def minutes(counts: list[tuple[float, float]], *, end: datetime = AT) -> list[SliWindow]:
    """1m windows of (bad, total), the last one ending at `end`."""
    first = end - len(counts) * MINUTE
    return [
        SliWindow(first + i * MINUTE, first + (i + 1) * MINUTE, bad, total)
        for i, (bad, total) in enumerate(counts)
    ]


def row(status: slo.SloStatus, name: str) -> slo.RowStatus:
    return next(r for r in status.rows if r.row.name == name)


# Sums, never averages


def test_it_sums_events_over_windows_rather_than_averaging_their_ratios():
    # A busy minute without errors, then a quiet one with half its 10 requests failing.
    windows = minutes([(0, 1000), (5, 10)])
    status = slo.status(checkout(objective=0.99, rows=()), windows, AT)

    assert status.period.ratio == pytest.approx(5 / 1010)
    assert status.sli == pytest.approx(1 - 5 / 1010)
    average_of_ratios = (0 / 1000 + 5 / 10) / 2
    assert average_of_ratios == 0.25  # what Sloth's 30-day SLI would say: 50x the budget
    assert status.burn_rates["1h"] == pytest.approx(5 / 1010 / 0.01)  # 0.5x, not 25x


def test_it_reads_the_workbook_table_on_a_30_day_period():
    consumed = [r.budget_consumed(DAYS_30) for r in WORKBOOK_ROWS]
    assert consumed == pytest.approx([0.02, 0.05, 0.10, 0.10])
    assert [(r.burn_rate, r.long_window, r.short_window) for r in WORKBOOK_ROWS] == [
        (14.4, HOUR, timedelta(minutes=5)),
        (6.0, timedelta(hours=6), timedelta(minutes=30)),
        (3.0, timedelta(days=1), timedelta(hours=2)),
        (1.0, timedelta(days=3), timedelta(hours=6)),
    ]
    assert [r.event_severity for r in WORKBOOK_ROWS] == [
        "critical",
        "critical",
        "warning",
        "warning",
    ]


def test_it_burns_14_4x_when_an_hour_spends_2_percent_of_a_30_day_budget():
    spec = checkout()  # 99.9%: a 30-day budget of 0.1% of events
    # 2% of the budget in one hour: an error ratio of 0.02 * 720 h * 0.001 = 1.44%.
    windows = minutes([(144, 10_000)] * 60)
    status = slo.status(spec, windows, AT)

    assert status.burn_rates["1h"] == pytest.approx(14.4)
    # On the line does not fire (Sloth's `>`); a single error more does.
    assert row(status, "page-fast").state == "ok"
    hotter = minutes([(144, 10_000)] * 59 + [(145, 10_000)])
    assert row(slo.status(spec, hotter, AT), "page-fast").state == "burning"


def test_it_estimates_when_the_budget_runs_out_at_the_last_hours_burn():
    spec = checkout(objective=0.99)
    # Ten days without errors, then an hour failing 10%: half the period's budget is spent.
    quiet = SliWindow(AT - timedelta(days=10), AT - HOUR, 0, 114_000)
    status = slo.status(spec, [quiet, *minutes([(10, 100)] * 60)], AT)

    assert status.budget_remaining == pytest.approx(0.5)
    assert status.burn_rates["1h"] == pytest.approx(10)
    # Half of a 30-day budget at 10x lasts 1.5 days.
    assert status.exhaustion is not None
    assert status.exhaustion.total_seconds() == pytest.approx(timedelta(days=1.5).total_seconds())


def test_it_says_the_budget_is_overspent_and_gone():
    status = slo.status(checkout(objective=0.99), minutes([(3, 100)] * 60), AT)

    assert status.budget_remaining == pytest.approx(-2)
    assert status.exhaustion == timedelta(0)


def test_it_estimates_no_exhaustion_without_errors():
    status = slo.status(checkout(), minutes([(0, 100)] * 60), AT)

    assert status.budget_remaining == 1
    assert status.exhaustion is None
    assert status.state == "ok"


# Latency SLIs


BOUNDS = [0.1, 0.25, 0.5, 1.0]
COUNTS = [50, 30, 15, 4, 1]  # (…, 0.1], (0.1, 0.25], (0.25, 0.5], (0.5, 1], (1, …)


def test_it_counts_good_latencies_from_the_buckets_up_to_the_bound():
    assert slo.good_and_total(BOUNDS, COUNTS, 0.25) == (80, 100)
    assert slo.good_and_total(BOUNDS, COUNTS, 1.0) == (99, 100)

    sli = LatencySli(Selector("http.server.duration"), 0.25)
    window = slo.latency_window(sli, AT - MINUTE, AT, bounds=BOUNDS, counts=COUNTS)
    assert window == SliWindow(AT - MINUTE, AT, 20, 100)


def test_it_leaves_out_a_window_whose_buckets_have_no_boundary_at_the_bound():
    sli = LatencySli(Selector("http.server.duration"), 0.3)

    assert slo.good_and_total(BOUNDS, COUNTS, 0.3) is None
    assert slo.latency_window(sli, AT - MINUTE, AT, bounds=BOUNDS, counts=COUNTS) is None
    assert slo.good_and_total(BOUNDS, COUNTS[:-1], 0.25) is None  # buckets not fitting bounds


def test_it_refuses_a_latency_bound_that_is_no_bucket_boundary():
    spec = checkout(sli=LatencySli(Selector("http.server.duration"), 0.3))

    problems = slo.validate(spec, histogram_bounds=BOUNDS)

    assert [p.field for p in problems] == ["sli"]
    assert "0.3 is not a bucket boundary" in problems[0].message
    assert "0.1, 0.25, 0.5, 1" in problems[0].message
    on_a_boundary = replace(spec, sli=LatencySli(Selector("http.server.duration"), 0.25))
    assert slo.validate(on_a_boundary, histogram_bounds=BOUNDS) == []


def test_it_names_the_slow_exemplars_as_bad_events():
    exemplars = [
        {"traceId": "a" * 32, "value": 0.9},
        {"traceId": "b" * 32, "value": 0.1},
        {"traceId": "c" * 32, "value": 0.25},  # at the bound: good
        {"traceId": "a" * 32, "value": 1.2},
        {"value": 2.0},
    ]
    assert slo.slow_trace_ids(exemplars, 0.25) == ("a" * 32,)


def test_it_turns_good_counts_into_bad_ones_and_clamps_counters_that_disagree():
    good = RatioSli(Selector("ok"), Selector("all"), counts="good")

    assert slo.ratio_window(good, AT - MINUTE, AT, events=97, total=100).bad == 3
    # A late point left more successes than requests in this window: no negative errors.
    assert slo.ratio_window(good, AT - MINUTE, AT, events=120, total=100).bad == 0
    assert slo.ratio_window(REQUESTS, AT - MINUTE, AT, events=120, total=100).bad == 100


# Low traffic and absent data


def test_it_does_not_fire_on_low_traffic():
    spec = checkout(rows=(FAST,), min_events=100)
    # Five failures out of ten requests in the last hour: 500x, but ten requests.
    windows = minutes([(1, 2)] * 5)

    status = slo.status(spec, windows, AT)

    assert status.state == "low_traffic"
    assert row(status, "page-fast").state == "low_traffic"
    assert slo.evaluate_rows(spec, windows, AT, set()) == []
    # Nor does it clear a firing row: too few events to say the fire is out.
    assert slo.evaluate_rows(spec, minutes([(0, 2)] * 5), AT, {"page-fast"}) == []


def test_it_treats_a_window_without_events_as_low_traffic():
    status = slo.status(checkout(rows=(FAST,)), minutes([(0, 0)] * 60), AT)

    assert status.state == "low_traffic"
    assert status.sli is None
    assert status.budget_remaining is None


def test_it_says_there_is_no_data_without_windows_in_the_period():
    old = minutes([(0, 100)], end=AT - timedelta(days=31))

    status = slo.status(checkout(), old, AT)

    assert status.state == "no_data"
    assert status.sli is None
    assert "30d" in status.reason


def test_it_says_the_metric_is_absent_when_the_short_windows_are_empty():
    spec = checkout(rows=(FAST,))
    # Burning hard until ten minutes ago, then nothing arrives.
    windows = minutes([(50, 100)] * 50, end=AT - timedelta(minutes=10))

    status = slo.status(spec, windows, AT)

    assert status.state == "absent"
    assert "last 5m" in status.reason
    assert row(status, "page-fast").state == "absent"
    # The row that was firing keeps firing: silence is not a recovery.
    assert slo.evaluate_rows(spec, windows, AT, {"page-fast"}) == []
    assert slo.evaluate_rows(spec, windows, AT, set()) == []


# Validation


def test_it_refuses_rows_that_can_never_fire():
    # At 90%, the budget is 10% of events: nothing burns faster than 10x.
    problems = slo.validate(checkout(objective=0.9))

    assert [p.field for p in problems] == ["rows"]
    assert problems[0].message.startswith("row 'page-fast': a burn rate of 14.4x needs 144%")
    assert "under 10x" in problems[0].message


def test_it_refuses_a_row_that_needs_every_event_to_fail():
    # At 50%, 2x needs 100% errors, and the comparison is strict.
    problems = slo.validate(checkout(objective=0.5))

    assert [p.message.split(":")[0] for p in problems] == [
        "row 'page-fast'",
        "row 'page-slow'",
        "row 'ticket-fast'",
    ]
    two = AlertRow("double", "ticket", 2, HOUR, timedelta(minutes=5))
    assert len(slo.validate(checkout(objective=0.5, rows=(two,)))) == 1
    assert slo.validate(checkout(objective=0.5, rows=(replace(two, burn_rate=1.9),))) == []


def test_it_accepts_the_workbook_rows_at_usual_objectives():
    for objective in (0.95, 0.99, 0.999, 0.9999):
        for period in slo.PERIODS:
            assert slo.validate(checkout(objective=objective, period=period)) == []


def test_it_refuses_rows_with_windows_the_wrong_way_round():
    rows = (
        AlertRow("backwards", "page", 2, timedelta(minutes=5), HOUR),
        AlertRow("same", "page", 2, HOUR, HOUR),
        AlertRow("seconds", "ticket", 2, HOUR, timedelta(seconds=90)),
        AlertRow("too-long", "ticket", 1, timedelta(days=31), HOUR),
        AlertRow("Bad Name", "ticket", 0, HOUR, MINUTE),
        AlertRow("page-fast", "page", 14.4, HOUR, MINUTE),
        AlertRow("page-fast", "page", 14.4, HOUR, MINUTE),
    )

    messages = [p.message for p in slo.validate(checkout(rows=rows))]

    assert messages == [
        "row 'backwards': the short window must be shorter than the long window",
        "row 'same': the short window must be shorter than the long window",
        "row 'seconds': the short window must be a whole number of minutes",
        "row 'too-long': the long window must not be longer than the period",
        "row 'Bad Name': the name must be lowercase letters, digits and dashes (up to 40)",
        "row 'Bad Name': the burn rate must be a number above 0",
        "row 'page-fast' is named twice",
    ]


def test_it_refuses_objectives_and_periods_it_cannot_use():
    problems = slo.validate(checkout(objective=99.9, period=timedelta(days=7), service=" "))

    assert [(p.field, p.message) for p in problems] == [
        ("objective", "the objective must be a fraction above 0 and under 1 (99.9% is 0.999)"),
        ("period", "the period must be 28d or 30d (rolling)"),
        ("service", "name the service the SLO is for"),
    ]
    assert [p.field for p in slo.validate(checkout(objective=1.0))] == ["objective"]
    assert [p.field for p in slo.validate(checkout(min_events=-1))] == ["min_events"]


def test_it_refuses_overlapping_windows():
    windows = [SliWindow(AT - HOUR, AT, 0, 60), SliWindow(AT - MINUTE, AT, 0, 1)]

    with pytest.raises(ValueError, match="overlap"):
        slo.status(checkout(), windows, AT)


# Breach and recovery


def incident(start: int, stop: int, length: int = 180) -> list[tuple[float, float]]:
    """Minutes of 100 requests, half failing from minute `start` to `stop`."""
    return [(50, 100) if start <= m < stop else (0, 100) for m in range(length)]


def test_it_breaches_page_rows_as_critical_when_both_windows_burn():
    counts = incident(100, 130)
    windows = minutes(counts)

    transitions = slo.evaluate_rows(checkout(), windows, AT - timedelta(minutes=50), set())

    assert [(t.kind, t.row, t.severity) for t in transitions] == [
        ("SloBreached", "page-fast", "critical"),
        ("SloBreached", "page-slow", "critical"),
        ("SloBreached", "ticket-fast", "warning"),
        ("SloBreached", "ticket-slow", "warning"),
    ]
    fast = transitions[0]
    assert fast.burn_rates == pytest.approx({"1h": 250, "5m": 500})
    assert fast.threshold == 14.4
    assert fast.window_end == AT - timedelta(minutes=50)
    assert fast.reason.startswith("checkout is burning its error budget at 250x over 1h")
    assert "page row page-fast: 2% of the 30d budget in 1h" in fast.reason


def test_it_does_not_fire_on_a_blip_the_long_window_does_not_feel():
    spec = checkout(objective=0.99, rows=(FAST,))
    # Two bad minutes in a clean hour: the 5m window burns 20x, the hour only 1.7x.
    windows = minutes([(0, 100)] * 58 + [(50, 100)] * 2)

    status = slo.status(spec, windows, AT)

    assert status.burn_rates == pytest.approx({"5m": 20, "1h": 100 / 6000 / 0.01})
    assert row(status, "page-fast").state == "ok"
    assert slo.evaluate_rows(spec, windows, AT, set()) == []


def test_it_recovers_as_soon_as_the_short_window_clears():
    spec = checkout()
    windows = minutes(incident(100, 130))
    stopped = AT - timedelta(minutes=50)  # the errors stop at minute 130

    firing = slo.firing_after(set(), slo.evaluate_rows(spec, windows, stopped, set()))
    assert firing == {"page-fast", "page-slow", "ticket-fast", "ticket-slow"}
    # Four minutes later the 5m window still holds a bad minute.
    assert slo.evaluate_rows(spec, windows, stopped + timedelta(minutes=4), firing) == []
    recovered = slo.evaluate_rows(spec, windows, stopped + timedelta(minutes=5), firing)

    # The hour still burns 250x; the page clears on its short window all the same.
    assert [(t.kind, t.row, t.severity) for t in recovered] == [
        ("SloRecovered", "page-fast", "critical")
    ]
    assert recovered[0].burn_rates == pytest.approx({"1h": 250, "5m": 0})
    assert recovered[0].reason.startswith(
        "checkout's burn rate over 5m is back to 0x, at or under 14.4x"
    )
    # page-slow's 30m window clears half an hour after the errors stopped.
    later = slo.evaluate_rows(spec, windows, stopped + timedelta(minutes=30), firing)
    assert [t.row for t in later] == ["page-fast", "page-slow"]


def test_it_carries_the_newest_bad_trace_ids_of_the_long_window_at_most_20():
    windows = [
        replace(w, trace_ids=(f"{i:032x}", f"{i + 1:032x}"))
        for i, w in enumerate(minutes(incident(0, 60, 60)))
    ]

    (transition,) = slo.evaluate_rows(checkout(rows=(FAST,)), windows, AT, set())

    assert len(transition.trace_ids) == 20
    assert transition.trace_ids[:3] == (f"{59:032x}", f"{60:032x}", f"{58:032x}")
    assert len(set(transition.trace_ids)) == 20


def test_it_gives_the_same_transitions_for_the_same_input_in_any_order():
    spec = checkout()
    windows = minutes(incident(100, 130))
    at = AT - timedelta(minutes=50)
    shuffled = random.Random(11).sample(windows, len(windows))

    first = slo.evaluate_rows(spec, windows, at, set())

    assert slo.evaluate_rows(spec, windows, at, set()) == first
    assert slo.evaluate_rows(spec, shuffled, at, set()) == first
    assert slo.status(spec, shuffled, at) == slo.status(spec, windows, at)


def test_it_ignores_windows_after_the_evaluation_instant():
    spec = checkout()
    windows = minutes(incident(100, 130))
    at = AT - timedelta(minutes=50)

    before = slo.status(spec, [w for w in windows if w.end <= at], at)

    assert slo.status(spec, windows, at) == before


def test_it_writes_the_event_data_of_the_contract():
    spec = checkout()
    (transition, *_) = slo.evaluate_rows(
        spec, minutes(incident(100, 130)), AT - timedelta(minutes=50), set()
    )

    data = slo.event_data(spec, transition, slo_id="5c0", slo_name="checkout availability")

    assert data == {
        "triggerKey": "slo:5c0:page-fast",
        "groupKey": "slo:5c0",
        "sloId": "5c0",
        "sloName": "checkout availability",
        "service": "checkout",
        "row": "page-fast",
        "severity": "critical",
        "objective": 0.999,
        "burnRates": {"1h": 250.0, "5m": 500.0},
        "budgetRemaining": data["budgetRemaining"],
        "windowEnd": "2026-03-01T11:10:00+00:00",
        "reason": transition.reason,
        "traceIds": [],
    }
    # 30 bad minutes in 130: 1500 of 13,000 events bad, 115x a 0.1% budget.
    assert data["budgetRemaining"] == pytest.approx(1 - 1500 / 13_000 / 0.001)
    json.dumps(data)


def test_it_labels_windows_as_prometheus_writes_them():
    labels = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d", "90s"]
    windows = [slo.parse_window(label) for label in labels[:-1]]

    assert [slo.window_label(w) for w in windows] == labels[:-1]
    assert slo.window_label(timedelta(seconds=90)) == "90s"
    with pytest.raises(ValueError, match="not a window"):
        slo.parse_window("1w")


# The cross-check: Sloth-style rules run by promtool fire on the same minutes


def test_it_fires_on_the_same_minutes_as_promtool_with_sloth_style_rules(tmp_path: Path):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is absent: `apt-get install prometheus` (Debian) to run this test")
    # Minutes without gaps: on absent data the two differ on purpose (Prometheus resolves a
    # firing alert, a row here holds; see the module's docstring).
    rows = (FAST, AlertRow("page-slow", "page", 6.0, timedelta(hours=6), timedelta(minutes=30)))
    spec = checkout(objective=0.99, rows=rows)
    counts = _bursty_minutes(480)
    # The sample at minute i holds window [i - 1, i): a [W - 1s] range takes the W/1m samples
    # of the windows in [t - W, t), in Prometheus 2.42 as here.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    windows = minutes(counts, end=epoch + (len(counts) - 1) * MINUTE)
    expected = {
        (minute, r.row.name): r.state == "burning"
        for minute in range(1, len(counts))
        for r in slo.status(spec, windows, epoch + minute * MINUTE).rows
    }
    assert any(expected.values()) and not all(expected.values())
    (tmp_path / "rules.yml").write_text(json.dumps(_sloth_rules(spec)))
    (tmp_path / "test.yml").write_text(json.dumps(_promtool_test(spec, counts, expected)))

    run = subprocess.run(
        ["promtool", "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def _bursty_minutes(length: int) -> list[tuple[float, float]]:
    draw = random.Random(42)
    bursts = [(60, 100, 0.3), (200, 215, 0.5), (300, 420, 0.08), (440, 449, 0.9)]
    counts = []
    for minute in range(length):
        total = draw.randint(50, 150)
        share = next((s for a, b, s in bursts if a <= minute < b), 0.002)
        counts.append((float(sum(draw.random() < share for _ in range(total))), float(total)))
    return counts


def _alert_name(row: AlertRow) -> str:
    return "SloBurn" + "".join(part.title() for part in row.name.split("-"))


def _sloth_rules(spec: Slo) -> dict[str, object]:
    sizes = sorted({w for r in spec.rows for w in (r.long_window, r.short_window)})
    records = [
        {
            "record": f"slo:sli_error:ratio_rate{slo.window_label(size)}",
            "expr": f"sum(sum_over_time(slo_bad[{int(size.total_seconds()) - 1}s]))"
            f" / sum(sum_over_time(slo_total[{int(size.total_seconds()) - 1}s]))",
        }
        for size in sizes
    ]
    alerts = [
        {
            "alert": _alert_name(r),
            "expr": " and ".join(
                f"(slo:sli_error:ratio_rate{slo.window_label(w)}"
                f" > ({r.burn_rate!r} * (1 - {spec.objective!r})))"
                for w in (r.short_window, r.long_window)
            ),
            "labels": {"severity": r.event_severity},
        }
        for r in spec.rows
    ]
    return {"groups": [{"name": "slo", "interval": "1m", "rules": records + alerts}]}


def _promtool_test(
    spec: Slo, counts: list[tuple[float, float]], expected: dict[tuple[int, str], bool]
) -> dict[str, object]:
    def values(index: int) -> str:
        return " ".join(f"{c[index]:g}" for c in counts)

    tests = [
        {
            "eval_time": f"{minute}m",
            "alertname": _alert_name(r),
            "exp_alerts": [{"exp_labels": {"severity": r.event_severity}}] if firing else [],
        }
        for (minute, name), firing in sorted(expected.items())
        for r in spec.rows
        if r.name == name
    ]
    return {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": "slo_bad", "values": values(0)},
                    {"series": "slo_total", "values": values(1)},
                ],
                "alert_rule_test": tests,
            }
        ],
    }
