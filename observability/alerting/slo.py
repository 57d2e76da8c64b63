"""SLOs: the error budget and multiwindow, multi-burn-rate breaches, as pure functions.

Plain values in, plain values out: no database, no clock. The SLO handler, catch-up, a
replayed dead letter and the console's status page all call `status` and `evaluate_rows` with
the windows they loaded and the instant they evaluate at, so they cannot disagree.

The arithmetic follows the SRE workbook's "Alerting on SLOs" (../shared/anchors/alerting.md
§5). The error budget is B = 1 - objective; the burn rate over a span is its error ratio / B,
so burning at 1x spends exactly the budget in the period. An alert row fires when BOTH its long
window (significance) and its short window (recency: the row clears soon after the errors
stop) burn above its rate; rows are OR-ed.

The input is one SliWindow per stored aggregation window: the window's bad and total event
counts, summed over the SLI's series by the caller. Every ratio here is Σbad / Σtotal over the
windows of a span, never an average of the windows' ratios: Sloth's 30-day SLI averages
5-minute ratios, so a quiet night's window weighs as much as the peak hour's. Windows must not
overlap, and a window counts in a span only when it lies wholly inside it (its counts cannot be
split), so a caller evaluating a 5m window passes 1m or 5m windows aligned with `at`.

Where the tools fall short, this module decides:
- Rows that can never fire are refused: a burn rate at or above 1/B needs an error ratio of at
  least 100% (kcp-dev/kcp-glbc#287: 14.4x at a 50% objective).
- Low traffic: each of a row's windows needs `min_events` events (and at least one) before the
  row can fire or clear; a handful of requests with one failure is not a page (pyrra#1602).
- Absent data: no window in one of a row's spans decides nothing either. A firing row keeps
  firing while the data cannot decide, instead of resolving on silence the way Prometheus
  does (alertmanager#2264, prometheus#17482); `status` names the state so the console and an
  absent-data alert can say so (Pyrra's SLOMetricAbsent).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from core.formats import format_value

DAY = timedelta(days=1)
PERIODS = (timedelta(days=28), timedelta(days=30))
# "Time to exhaustion" is estimated at the burn of the last hour: recent enough to show a
# fire, long enough not to swing on one minute's errors.
EXHAUSTION_WINDOW = timedelta(hours=1)
# Aggregation windows are 1m at the finest: a span must be whole minutes to be summed.
GRAIN = timedelta(minutes=1)
MAX_TRACE_IDS = 20
ROW_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")

Severity = Literal["page", "ticket"]
EventSeverity = Literal["critical", "warning"]
RowState = Literal["burning", "ok", "low_traffic", "absent"]
SloState = Literal["no_data", "absent", "breaching", "low_traffic", "ok"]
TransitionKind = Literal["SloBreached", "SloRecovered"]


# The specification


@dataclass(frozen=True)
class Selector:
    """The series of one metric whose attributes include all of `filters`."""

    metric: str
    filters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RatioSli:
    """Events counted by `events` over all events counted by `total` (two counters). `counts`
    says whether `events` counts the bad events (errors) or the good ones (successes)."""

    events: Selector
    total: Selector
    counts: Literal["bad", "good"] = "bad"


@dataclass(frozen=True)
class LatencySli:
    """Good events are the histogram's observations at or under `bound` (in the metric's unit),
    counted from its buckets: `bound` must be one of the histogram's bucket boundaries."""

    histogram: Selector
    bound: float


@dataclass(frozen=True)
class AlertRow:
    """One row of the burn-rate table: fire when both windows burn above `burn_rate`."""

    name: str  # in the trigger key "slo:<sloId>:<name>": lowercase letters, digits, dashes
    severity: Severity
    burn_rate: float
    long_window: timedelta
    short_window: timedelta

    @property
    def event_severity(self) -> EventSeverity:
        return "critical" if self.severity == "page" else "warning"

    def budget_consumed(self, period: timedelta) -> float:
        """The share of the period's budget spent when the long window burns at the row's
        rate: 14.4 x 1h / 720h = 2%."""
        return self.burn_rate * (self.long_window / period)


# The SRE workbook's table (Table 5-8, with Sloth's 1d/2h ticket row): 2%, 5%, 10% and 10% of a
# 30-day budget. The burn rates are kept as they are on a 28-day period too (where they spend
# 2.1%, 5.4%, 10.7% and 10.7%) rather than rescaled to the same percentages as Sloth does: a
# burn rate means the same speed whatever the period, and a rescaled slow ticket row would
# fire at 0.93x, a pace that leaves budget over at the end of the period.
WORKBOOK_ROWS = (
    AlertRow("page-fast", "page", 14.4, timedelta(hours=1), timedelta(minutes=5)),
    AlertRow("page-slow", "page", 6.0, timedelta(hours=6), timedelta(minutes=30)),
    AlertRow("ticket-fast", "ticket", 3.0, timedelta(days=1), timedelta(hours=2)),
    AlertRow("ticket-slow", "ticket", 1.0, timedelta(days=3), timedelta(hours=6)),
)


@dataclass(frozen=True)
class Slo:
    service: str
    sli: RatioSli | LatencySli
    objective: float  # a fraction: 0.999 for 99.9%
    period: timedelta = timedelta(days=30)  # rolling
    rows: tuple[AlertRow, ...] = WORKBOOK_ROWS
    min_events: int = 0  # per row window, before the row may fire or clear

    @property
    def budget(self) -> float:
        """The error budget, as a ratio of events allowed to be bad."""
        return 1 - self.objective


# Validation


@dataclass(frozen=True)
class Problem:
    """Why a specification is refused, for the field it concerns ("rows" for a row, which the
    message names)."""

    field: str
    message: str


def validate(slo: Slo, *, histogram_bounds: Sequence[float] | None = None) -> list[Problem]:
    """Everything wrong with `slo`, empty when it can be saved. `histogram_bounds`, when the
    caller knows the latency histogram's current bucket boundaries, checks the bound is one."""
    problems = _objective_problems(slo.objective)
    if slo.period not in PERIODS:
        periods = " or ".join(window_label(p) for p in PERIODS)
        problems.append(Problem("period", f"the period must be {periods} (rolling)"))
    if not slo.service.strip():
        problems.append(Problem("service", "name the service the SLO is for"))
    if isinstance(slo.min_events, bool) or slo.min_events < 0:
        problems.append(Problem("min_events", "the minimum of events must be 0 or more"))
    problems += _sli_problems(slo.sli, histogram_bounds)
    names = [row.name for row in slo.rows]
    for row in slo.rows:
        problems += [Problem("rows", f"row {row.name!r}: {m}") for m in _row_problems(slo, row)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("rows", f"row {name!r} is named twice"))
    return problems


def _objective_problems(objective: float) -> list[Problem]:
    if not math.isfinite(objective) or not 0 < objective < 1:
        hint = ""
        if math.isfinite(objective) and 1 < objective < 100:
            # 99.9 typed for 99.9%: say what was meant rather than only "out of range".
            hint = f" ({format_value(objective)}% is {format_value(objective / 100)})"
        return [Problem("objective", f"the objective must be a fraction above 0 and under 1{hint}")]
    return []


def _sli_problems(sli: RatioSli | LatencySli, bounds: Sequence[float] | None) -> list[Problem]:
    if isinstance(sli, RatioSli):
        problems = [
            Problem("sli", f"name the metric counting the {what} events")
            for what, selector in ((sli.counts, sli.events), ("total", sli.total))
            if not selector.metric.strip()
        ]
        if sli.counts not in ("bad", "good"):
            problems.append(Problem("sli", "the events counted are either bad or good"))
        return problems
    problems = []
    if not sli.histogram.metric.strip():
        problems.append(Problem("sli", "name the latency histogram"))
    if not math.isfinite(sli.bound):
        problems.append(Problem("sli", "the latency bound must be a number"))
    elif bounds is not None and sli.bound not in bounds:
        # Refused, not interpolated (Sloth and Pyrra select an `le` bucket too): counts read
        # inside a bucket would assume its observations spread evenly, and a budget spent on
        # that guess could page or stay silent on observations nobody counted.
        listed = ", ".join(format_value(b) for b in bounds)
        problems.append(
            Problem(
                "sli",
                f"the latency bound {format_value(sli.bound)} is not a bucket boundary of the "
                f"histogram; choose one of: {listed}",
            )
        )
    return problems


def _row_problems(slo: Slo, row: AlertRow) -> list[str]:
    problems = []
    if not ROW_NAME.match(row.name):
        problems.append("the name must be lowercase letters, digits and dashes (up to 40)")
    if row.severity not in ("page", "ticket"):
        problems.append("the severity must be page or ticket")
    for label, window in (("long", row.long_window), ("short", row.short_window)):
        if window <= timedelta(0) or window % GRAIN:
            problems.append(f"the {label} window must be a whole number of minutes")
    if row.short_window >= row.long_window:
        problems.append("the short window must be shorter than the long window")
    if row.long_window > slo.period:
        problems.append("the long window must not be longer than the period")
    if not math.isfinite(row.burn_rate) or row.burn_rate <= 0:
        problems.append("the burn rate must be a number above 0")
    elif not _objective_problems(slo.objective) and row.burn_rate * slo.budget >= 1:
        # The error ratio it needs is at least 1: no span can have more bad events than
        # events, and the comparison is strict (Sloth's `>`), so the row could never fire.
        problems.append(
            f"a burn rate of {format_value(row.burn_rate)}x needs "
            f"{format_value(row.burn_rate * slo.budget * 100)}% of events bad at an objective "
            f"of {format_value(slo.objective * 100)}%, so it can never fire; the highest "
            f"possible burn rate is under {format_value(1 / slo.budget)}x"
        )
    return problems


# Windows in


@dataclass(frozen=True)
class SliWindow:
    """One aggregation window [start, end) of the SLI: its bad and total events, summed over
    the SLI's series, and the trace ids of exemplars of bad events in it."""

    start: datetime
    end: datetime
    bad: float
    total: float
    trace_ids: tuple[str, ...] = ()


def ratio_window(
    sli: RatioSli,
    start: datetime,
    end: datetime,
    *,
    events: float,
    total: float,
    trace_ids: Sequence[str] = (),
) -> SliWindow:
    """A window of a ratio SLI from its two counters' increases (MetricSeries.delta, summed
    over the matching series)."""
    bad = events if sli.counts == "bad" else total - events
    # The two counters are aggregated apart: a late point on one of them can leave a window
    # with more errors (or successes) than requests. Clamping keeps the window's ratio within
    # [0, 1] with the counts it does have, rather than a negative or >100% error ratio.
    total = max(total, 0.0)
    return SliWindow(start, end, min(max(bad, 0.0), total), total, tuple(trace_ids))


def latency_window(
    sli: LatencySli,
    start: datetime,
    end: datetime,
    *,
    bounds: Sequence[float],
    counts: Sequence[float],
    trace_ids: Sequence[str] = (),
) -> SliWindow | None:
    """A window of a latency SLI from a histogram window (MetricSeries.buckets: `bounds` and
    len(bounds) + 1 `counts`, merged over the matching series); None when the window's
    histogram has no boundary at the SLI's bound (its bounds changed), which the window then
    cannot tell, so it is left out like an absent one."""
    good_total = good_and_total(bounds, counts, sli.bound)
    if good_total is None:
        return None
    good, total = good_total
    return SliWindow(start, end, total - good, total, tuple(trace_ids))


def good_and_total(
    bounds: Sequence[float], counts: Sequence[float], bound: float
) -> tuple[float, float] | None:
    """(observations <= bound, all observations) of a histogram: bucket i holds the
    observations in (bounds[i-1], bounds[i]], so the good ones fill the buckets up to the one
    whose upper boundary is `bound`. None when `bound` is no boundary, or the buckets do not
    fit the bounds. The total is the buckets' sum, not the window's `count`: a point whose
    bounds changed counts in `count` but in no bucket, and good and total must count the same
    observations."""
    if len(counts) != len(bounds) + 1 or bound not in bounds:
        return None
    last_good = list(bounds).index(bound)
    return math.fsum(counts[: last_good + 1]), math.fsum(counts)


def slow_trace_ids(exemplars: Iterable[Mapping[str, object]], bound: float) -> tuple[str, ...]:
    """The trace ids of a latency histogram's exemplars (MetricSeries.exemplars) that are bad
    events: observations above the bound."""
    ids = []
    for exemplar in exemplars:
        value, trace_id = exemplar.get("value"), exemplar.get("traceId")
        if isinstance(value, int | float) and value > bound and isinstance(trace_id, str):
            ids.append(trace_id)
    return tuple(dict.fromkeys(ids))


class _Windows:
    """The windows sorted by time, to sum any span [at - size, at) with two bisections."""

    def __init__(self, windows: Iterable[SliWindow]) -> None:
        self.windows = sorted(windows, key=lambda w: (w.start, w.end))
        for before, after in zip(self.windows, self.windows[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"windows overlap: {before.start}-{before.end} and {after.start}")
        if any(w.end <= w.start for w in self.windows):
            raise ValueError("a window ends before it starts")
        self.starts = [w.start for w in self.windows]
        # Non-overlapping windows sorted by start are sorted by end too.
        self.ends = [w.end for w in self.windows]

    def within(self, at: datetime, size: timedelta) -> list[SliWindow]:
        lo = bisect_left(self.starts, at - size)
        hi = bisect_right(self.ends, at)
        return self.windows[lo:hi]

    def burn(self, slo: Slo, at: datetime, size: timedelta) -> Burn:
        inside = self.within(at, size)
        # fsum: exact, so the same counts in any order give the same float.
        bad = math.fsum(w.bad for w in inside)
        total = math.fsum(w.total for w in inside)
        return Burn(size, len(inside), bad, total, slo.budget)


# Status


@dataclass(frozen=True)
class Burn:
    """The events over one span ending at the evaluation instant."""

    window: timedelta
    windows: int  # aggregation windows found in the span
    bad: float
    total: float
    budget: float

    @property
    def label(self) -> str:
        return window_label(self.window)

    @property
    def ratio(self) -> float | None:
        """Σbad / Σtotal; None without events."""
        return self.bad / self.total if self.total > 0 else None

    @property
    def rate(self) -> float | None:
        """The burn rate: the error ratio in units of the budget."""
        ratio = self.ratio
        return None if ratio is None else ratio / self.budget


@dataclass(frozen=True)
class RowStatus:
    row: AlertRow
    state: RowState
    long: Burn
    short: Burn

    @property
    def threshold_ratio(self) -> float:
        return _threshold(self.long.budget, self.row)


@dataclass(frozen=True)
class SloStatus:
    at: datetime
    state: SloState
    reason: str
    period: Burn
    sli: float | None  # Σgood / Σtotal over the period; None without events
    budget_remaining: float | None  # a fraction of the period's budget; negative when overspent
    # One per window the rows use, and EXHAUSTION_WINDOW, shortest first.
    burns: tuple[Burn, ...]
    exhaustion: timedelta | None  # at the last hour's burn; None when not burning
    rows: tuple[RowStatus, ...]

    @property
    def burn_rates(self) -> dict[str, float | None]:
        return {burn.label: burn.rate for burn in self.burns}


def status(slo: Slo, windows: Iterable[SliWindow], at: datetime) -> SloStatus:
    """The SLO at `at`: its SLI and budget over the period, the burn of every window the rows
    use, each row's state, and the SLO's state."""
    return _status(slo, _Windows(windows), at)


def _status(slo: Slo, indexed: _Windows, at: datetime) -> SloStatus:
    period = indexed.burn(slo, at, slo.period)
    sizes = sorted({EXHAUSTION_WINDOW, *(w for r in slo.rows for w in _spans(r))})
    burns = {size: indexed.burn(slo, at, size) for size in sizes}
    rows = tuple(_row_status(slo, row, burns) for row in slo.rows)
    remaining = _budget_remaining(period)
    state, reason = _state(slo, period, rows)
    return SloStatus(
        at=at,
        state=state,
        reason=reason,
        period=period,
        sli=None if period.ratio is None else 1 - period.ratio,
        budget_remaining=remaining,
        burns=tuple(burns.values()),
        exhaustion=_exhaustion(remaining, burns[EXHAUSTION_WINDOW].rate, slo.period),
        rows=rows,
    )


def _spans(row: AlertRow) -> tuple[timedelta, timedelta]:
    return row.long_window, row.short_window


def _threshold(budget: float, row: AlertRow) -> float:
    # The error ratio above which the row burns, computed as Sloth's rules write it
    # (`> (14.4 * (1 - 0.999))`), so a ratio on the line compares as in Prometheus.
    return row.burn_rate * budget


def _row_status(slo: Slo, row: AlertRow, burns: Mapping[timedelta, Burn]) -> RowStatus:
    long, short = burns[row.long_window], burns[row.short_window]
    return RowStatus(row, _row_state(slo, row, long, short), long, short)


def _row_state(slo: Slo, row: AlertRow, long: Burn, short: Burn) -> RowState:
    if long.windows == 0 or short.windows == 0:
        return "absent"
    if min(long.total, short.total) < max(slo.min_events, 1):
        return "low_traffic"
    # Both, not either: the long window alone would keep paging for an hour after a fix; the
    # short one alone would page on a five-minute blip that spent under 0.2% of the budget.
    burning = all(_over(b, row) for b in (long, short))
    return "burning" if burning else "ok"


def _over(burn: Burn, row: AlertRow) -> bool:
    return burn.total > 0 and burn.bad / burn.total > _threshold(burn.budget, row)


def _budget_remaining(period: Burn) -> float | None:
    # 1 - the period's burn rate: a period burning at 1x spends exactly its budget. Computed
    # from the events seen so far, so a new SLO is judged on its days, not on empty ones.
    rate = period.rate
    return None if rate is None else 1 - rate


def _exhaustion(remaining: float | None, rate: float | None, period: timedelta) -> timedelta | None:
    """How long the remaining budget lasts at `rate` (a burn of 1 spends the whole budget in
    one period). An estimate: in a rolling period old errors also leave the budget."""
    if remaining is None or rate is None or rate <= 0:
        return None
    if remaining <= 0:
        return timedelta(0)
    return period * (remaining / rate)


def _state(slo: Slo, period: Burn, rows: Sequence[RowStatus]) -> tuple[SloState, str]:
    service = slo.service
    if period.windows == 0:
        return "no_data", f"no window of {service}'s SLI in the last {window_label(slo.period)}"
    absent = [r for r in rows if r.state == "absent"]
    if absent:
        gone = min(b.window for r in absent for b in (r.short, r.long) if b.windows == 0)
        return "absent", (
            f"no window of {service}'s SLI in the last {window_label(gone)}: the metric is absent, "
            f"so rows {_names(absent)} cannot fire or clear"
        )
    burning = [r for r in rows if r.state == "burning"]
    if burning:
        return "breaching", f"{service} is burning its error budget: rows {_names(burning)}"
    quiet = [r for r in rows if r.state == "low_traffic"]
    if quiet:
        return "low_traffic", (
            f"under {max(slo.min_events, 1)} events in a window of rows {_names(quiet)}: "
            "too few to fire or clear"
        )
    return "ok", f"{service} is within its burn rates"


def _names(rows: Sequence[RowStatus]) -> str:
    return ", ".join(r.row.name for r in rows)


# Transitions


@dataclass(frozen=True)
class RowTransition:
    """A row that started firing (SloBreached) or cleared (SloRecovered) at `window_end`."""

    kind: TransitionKind
    row: str
    severity: EventSeverity
    threshold: float  # the row's burn rate
    burn_rates: dict[str, float]  # the row's long and short windows: {"1h": 15.2, "5m": 16.0}
    budget_remaining: float | None
    window_end: datetime
    reason: str
    trace_ids: tuple[str, ...]  # exemplars of bad events in the long window, newest first


def evaluate_rows(
    slo: Slo,
    windows: Iterable[SliWindow],
    at: datetime,
    previous_firing_rows: Collection[str],
) -> list[RowTransition]:
    """The rows that start or stop firing at `at`, in the SLO's row order. A row fires when
    both its windows burn above its rate and clears when one of them no longer does; a row
    whose windows are absent or under the minimum of events changes nothing either way."""
    indexed = _Windows(windows)
    current = _status(slo, indexed, at)
    transitions = []
    for row in current.rows:
        was_firing = row.row.name in previous_firing_rows
        if row.state == "burning" and not was_firing:
            kind: TransitionKind = "SloBreached"
        elif row.state == "ok" and was_firing:
            kind = "SloRecovered"
        else:
            continue
        transitions.append(_transition(slo, kind, row, current, indexed))
    return transitions


def firing_after(
    previous_firing_rows: Collection[str], transitions: Iterable[RowTransition]
) -> frozenset[str]:
    """The rows firing once `transitions` are applied: what the caller keeps for next time."""
    firing = set(previous_firing_rows)
    for transition in transitions:
        if transition.kind == "SloBreached":
            firing.add(transition.row)
        else:
            firing.discard(transition.row)
    return frozenset(firing)


def _transition(
    slo: Slo, kind: TransitionKind, row: RowStatus, current: SloStatus, indexed: _Windows
) -> RowTransition:
    long, short = row.long, row.short
    rates = {b.label: b.bad / b.total / b.budget for b in (long, short)}
    return RowTransition(
        kind=kind,
        row=row.row.name,
        severity=row.row.event_severity,
        threshold=row.row.burn_rate,
        burn_rates=rates,
        budget_remaining=current.budget_remaining,
        window_end=current.at,
        reason=_transition_reason(slo, kind, row, rates),
        trace_ids=_trace_ids(indexed.within(current.at, row.row.long_window)),
    )


def _transition_reason(
    slo: Slo, kind: TransitionKind, row: RowStatus, rates: Mapping[str, float]
) -> str:
    long, short = row.long.label, row.short.label
    limit = f"{format_value(row.row.burn_rate)}x"
    if kind == "SloBreached":
        spent = format_value(row.row.budget_consumed(slo.period) * 100, 3)
        return (
            f"{slo.service} is burning its error budget at {_x(rates[long])} over {long} and "
            f"{_x(rates[short])} over {short}, above {limit} ({row.row.severity} row "
            f"{row.row.name}: {spent}% of the {window_label(slo.period)} budget in {long})"
        )
    cleared = long if _over(row.short, row.row) else short
    return (
        f"{slo.service}'s burn rate over {cleared} is back to {_x(rates[cleared])}, at or "
        f"under {limit} (row {row.row.name}; {long}: {_x(rates[long])}, "
        f"{short}: {_x(rates[short])})"
    )


def _x(rate: float) -> str:
    return f"{format_value(rate, 3)}x"


def _trace_ids(windows: Sequence[SliWindow]) -> tuple[str, ...]:
    # The newest windows first: the bad events closest to the breach explain it best.
    ids = (trace_id for window in reversed(windows) for trace_id in window.trace_ids)
    return tuple(dict.fromkeys(ids))[:MAX_TRACE_IDS]


def event_data(
    slo: Slo, transition: RowTransition, *, slo_id: str, slo_name: str
) -> dict[str, object]:
    """The SloBreached or SloRecovered event's data (notes/issue11_contract.md)."""
    return {
        "triggerKey": f"slo:{slo_id}:{transition.row}",
        "groupKey": f"slo:{slo_id}",
        "sloId": slo_id,
        "sloName": slo_name,
        "service": slo.service,
        "row": transition.row,
        "severity": transition.severity,
        "objective": slo.objective,
        # Rounded: 0.0144 / (1 - 0.999) is 14.399999999999986 in floats.
        "burnRates": {label: round(rate, 6) for label, rate in transition.burn_rates.items()},
        "budgetRemaining": (
            None if transition.budget_remaining is None else round(transition.budget_remaining, 6)
        ),
        "windowEnd": transition.window_end.isoformat(),
        "reason": transition.reason,
        "traceIds": list(transition.trace_ids),
    }


# Window lengths as text ("5m", "1h", "3d"): the labels of burn rates, as Prometheus writes them


UNITS = (
    ("d", DAY),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
)


def window_label(window: timedelta) -> str:
    """The window in its largest whole unit: 30m, 6h, 1d, 30d."""
    for suffix, unit in UNITS:
        if window and not window % unit:
            return f"{window // unit}{suffix}"
    return f"{window.total_seconds():g}s"


def parse_window(text: str) -> timedelta:
    """A window label back to its length; ValueError for anything else."""
    match = re.fullmatch(r"([1-9][0-9]{0,5})([smhd])", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a window such as 5m, 1h or 3d")
    units = dict(UNITS)
    return int(match.group(1)) * units[match.group(2)]
