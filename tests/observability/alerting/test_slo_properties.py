"""Properties of the SLO math over generated minutes of traffic: sums do not care how events
are cut into windows or in which order windows arrive, a burn lies between its windows'
extremes, more errors never put a fire out, and applying a tick's transitions leaves nothing
for the same tick to do."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from observability.alerting import slo
from observability.alerting.slo import AlertRow, RatioSli, Selector, SliWindow, Slo

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ROWS = (
    AlertRow("page-fast", "page", 14.4, timedelta(hours=1), timedelta(minutes=5)),
    AlertRow("page-slow", "page", 6.0, timedelta(hours=6), timedelta(minutes=30)),
    AlertRow("ticket", "ticket", 1.0, timedelta(hours=3), timedelta(minutes=15)),
)
SPEC = Slo(
    service="checkout",
    sli=RatioSli(Selector("errors"), Selector("requests")),
    objective=0.99,
    rows=ROWS,
    min_events=20,
)


@st.composite
def minute_counts(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Up to 7 hours of minutes: (bad, total), bursts of errors and quiet stretches."""
    length = draw(st.integers(1, 420))
    totals = draw(st.lists(st.integers(0, 200), min_size=length, max_size=length))
    shares = draw(st.lists(st.sampled_from([0, 0, 0.01, 0.2, 0.9]), min_size=1, max_size=8))
    return [(round(t * shares[i * len(shares) // length]), t) for i, t in enumerate(totals)]


def minutes(counts: list[tuple[int, int]]) -> list[SliWindow]:
    first = AT - len(counts) * MINUTE
    return [
        SliWindow(first + i * MINUTE, first + (i + 1) * MINUTE, bad, total)
        for i, (bad, total) in enumerate(counts)
    ]


def firing(status: slo.SloStatus) -> set[str]:
    return {r.row.name for r in status.rows if r.state == "burning"}


@settings(max_examples=150, deadline=None)
@given(minute_counts(), st.randoms(use_true_random=False))
def test_it_gives_the_same_answer_however_the_windows_are_ordered(counts, draw):
    windows = minutes(counts)
    shuffled = draw.sample(windows, len(windows))

    assert slo.status(SPEC, shuffled, AT) == slo.status(SPEC, windows, AT)
    assert slo.evaluate_rows(SPEC, shuffled, AT, {"ticket"}) == slo.evaluate_rows(
        SPEC, windows, AT, {"ticket"}
    )


@settings(max_examples=150, deadline=None)
@given(minute_counts())
def test_it_gives_the_same_burns_for_five_minute_windows_as_for_their_minutes(counts):
    # Sums over windows do not depend on how the events were cut into windows (an average of
    # the windows' ratios would).
    counts = counts[: len(counts) // 5 * 5]
    fives = [
        SliWindow(
            AT - (len(counts) - i) * MINUTE,
            AT - (len(counts) - i - 5) * MINUTE,
            sum(b for b, _ in counts[i : i + 5]),
            sum(t for _, t in counts[i : i + 5]),
        )
        for i in range(0, len(counts), 5)
    ]

    by_minute, by_five = slo.status(SPEC, minutes(counts), AT), slo.status(SPEC, fives, AT)

    assert by_five.burn_rates == by_minute.burn_rates
    assert by_five.budget_remaining == by_minute.budget_remaining
    assert [r.state for r in by_five.rows] == [r.state for r in by_minute.rows]


@settings(max_examples=150, deadline=None)
@given(minute_counts())
def test_it_keeps_each_burn_between_its_windows_extremes(counts):
    status = slo.status(SPEC, minutes(counts), AT)

    for burn in status.burns:
        inside = [(b, t) for b, t in counts[-burn.window // MINUTE :] if t > 0]
        if burn.ratio is None:
            assert not inside
            continue
        ratios = [b / t for b, t in inside]
        assert min(ratios) - 1e-12 <= burn.ratio <= max(ratios) + 1e-12


@settings(max_examples=150, deadline=None)
@given(minute_counts(), st.data())
def test_it_never_puts_a_fire_out_for_more_errors(counts, data):
    minute = data.draw(st.integers(0, len(counts) - 1))
    bad, total = counts[minute]
    worse = [*counts]
    worse[minute] = (data.draw(st.integers(bad, total)), total)

    before = slo.status(SPEC, minutes(counts), AT)
    after = slo.status(SPEC, minutes(worse), AT)

    assert firing(before) <= firing(after)
    for b, a in zip(before.burns, after.burns, strict=True):
        assert b.rate is None or (a.rate is not None and a.rate >= b.rate)


@settings(max_examples=150, deadline=None)
@given(
    minute_counts(),
    st.sets(st.sampled_from([r.name for r in ROWS])),
    st.sampled_from([0, 0, 3, 20, 60]),
)
def test_it_leaves_nothing_to_do_once_a_ticks_transitions_are_applied(counts, previous, gone):
    # The newest `gone` minutes never arrived: the metric is absent from the short windows.
    windows = minutes(counts)[: len(counts) - gone]
    transitions = slo.evaluate_rows(SPEC, windows, AT, previous)
    now_firing = slo.firing_after(previous, transitions)

    assert slo.evaluate_rows(SPEC, windows, AT, now_firing) == []
    status = slo.status(SPEC, windows, AT)
    for row in status.rows:
        # A row fires when both windows burn, clears when one does not, and holds when the
        # data cannot decide.
        if row.state == "burning":
            assert row.row.name in now_firing
        elif row.state == "ok":
            assert row.row.name not in now_firing
        else:
            assert (row.row.name in now_firing) == (row.row.name in previous)


@settings(max_examples=150, deadline=None)
@given(minute_counts())
def test_it_spends_the_budget_at_the_period_burn_and_runs_out_at_the_hours(counts):
    status = slo.status(SPEC, minutes(counts), AT)
    hour = status.burn_rates["1h"]

    if status.period.rate is None:
        assert status.budget_remaining is None
        return
    assert status.budget_remaining == 1 - status.period.rate
    if status.exhaustion is None:
        assert not hour
    elif status.budget_remaining <= 0:
        assert status.exhaustion == timedelta(0)
    else:
        assert hour
        # Spending the remaining budget at the hour's burn rate takes exactly `exhaustion`.
        spent = hour * (status.exhaustion / SPEC.period)
        assert abs(spent - status.budget_remaining) < 1e-6


@settings(max_examples=100, deadline=None)
@given(
    st.floats(0.5, 0.99999, allow_nan=False),
    st.floats(0.01, 2000, allow_nan=False),
)
def test_it_accepts_only_rows_whose_threshold_some_error_ratio_exceeds(objective, burn_rate):
    row = AlertRow("row", "page", burn_rate, timedelta(hours=1), timedelta(minutes=5))
    spec = replace(SPEC, objective=objective, rows=(row,))
    accepted = slo.validate(spec) == []

    # Every event bad in both windows: the worst a row can see.
    windows = minutes([(100, 100)] * 60)
    fires = slo.status(spec, windows, AT).rows[0].state == "burning"
    assert accepted == fires
