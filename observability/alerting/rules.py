"""An alert rule as plain values: what it selects, how it groups, what it compares; whether it
is valid; and how the stored windows of its series become one value per instance and window.

Pure: no database, no clock. The API and the admin validate with `validate`; the evaluation
handler, its catch-up, a replayed dead letter and the console's preview turn MetricSeries rows
into `SeriesWindow`s and call `instance_windows`, then observability.alerting.evaluation.

A rule's query reads one field of one metric's windows (observability.aggregation): a window
size (1m, 5m, 1h) and a field that fits the metric's kind (p95 of a gauge means nothing, the
delta of a histogram is not stored). Its series are grouped by label keys, one alert instance
per group, the way each output series of a PromQL expression is one Prometheus alert and each
series of a Grafana query one instance. Within a group the series combine as a PromQL
`sum by`, `min by` or `max by` would: counts, sums, deltas, rates and last values add up, min
and max take the extreme, the mean is weighted by the observations, and percentiles come from
the merged buckets. A ratio (errors / requests) is Σ numerator / Σ denominator per window,
never a mean of ratios; a group with requests and no error series has a ratio of 0, one with
no requests has no value.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

import msgspec

WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
# Percent-change comparisons look this far back.
OFFSETS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "1w": timedelta(weeks=1)}
# Trace ids an instance carries (the exemplars of its breaching windows), as events do.
MAX_TRACE_IDS = 20
# Bounds on the times a rule names. A delay past LOOKBACK would wait for windows the
# aggregation no longer recomputes; a `for` or keep-firing of more than a day is a ticket.
MAX_DELAY = timedelta(hours=1)
MAX_HOLD = timedelta(days=1)
MAX_CADENCE = timedelta(hours=1)


class MetricKind(IntEnum):
    """observability.models.MetricPoint.Kind, by value, without importing Django models."""

    GAUGE = 1
    SUM = 2
    HISTOGRAM = 3
    EXPONENTIAL_HISTOGRAM = 4
    SUMMARY = 5


class Field(StrEnum):
    LAST = "last"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    SUM = "sum"
    DELTA = "delta"
    RATE = "rate"  # delta per second of the window
    P50 = "p50"
    P95 = "p95"
    P99 = "p99"


PERCENTILES = {Field.P50: 0.5, Field.P95: 0.95, Field.P99: 0.99}

# Which fields a window of each kind stores (observability.aggregation's module docstring).
# A gauge's count is its number of points; a histogram's, its observations. A sum's `last` is
# its newest cumulative value (delta sums have none: such windows have no value).
FITS: dict[MetricKind, tuple[Field, ...]] = {
    MetricKind.GAUGE: (Field.LAST, Field.MEAN, Field.MIN, Field.MAX, Field.COUNT),
    MetricKind.SUM: (Field.DELTA, Field.RATE, Field.LAST),
    MetricKind.HISTOGRAM: (
        Field.COUNT, Field.SUM, Field.MEAN, Field.MIN, Field.MAX, Field.P50, Field.P95, Field.P99,
    ),
    MetricKind.EXPONENTIAL_HISTOGRAM: (Field.COUNT, Field.SUM, Field.MEAN, Field.MIN, Field.MAX),
    MetricKind.SUMMARY: (Field.COUNT, Field.SUM, Field.MEAN, Field.P50, Field.P95, Field.P99),
}  # fmt: skip
KIND_NAMES = {
    MetricKind.GAUGE: "a gauge",
    MetricKind.SUM: "a sum",
    MetricKind.HISTOGRAM: "a histogram",
    MetricKind.EXPONENTIAL_HISTOGRAM: "an exponential histogram",
    MetricKind.SUMMARY: "a summary",
}
# Fields whose group value is a sum, so a series absent from a window adds 0 to it.
ADDITIVE = (Field.COUNT, Field.SUM, Field.DELTA, Field.RATE)


class Op(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    def holds(self, value: float, threshold: float) -> bool:
        return OPERATORS[self](value, threshold)

    @property
    def upward(self) -> bool | None:
        """True when larger values breach, False when smaller ones do, None for == and !=."""
        return {Op.GT: True, Op.GE: True, Op.LT: False, Op.LE: False}.get(self)


# Each comparison as a function: the evaluator takes it once per rule (Op.holds per window).
OPERATORS: dict[Op, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


class Comparison(StrEnum):
    STATIC = "static"  # the value itself
    # (value - value `offset` ago) / |value `offset` ago| * 100: "> 50" is "more than 50% up".
    PERCENT_CHANGE = "percent_change"


class NoData(StrEnum):
    """What a window without a value means (anchors §1 "Missing data")."""

    NODATA = "nodata"  # the instance shows NoData; an open alert stays open (Grafana's default)
    ALERTING = "alerting"  # counts as a critical breach
    OK = "ok"  # counts as no breach
    KEEP_LAST = "keep_last"  # nothing changes (Grafana's Keep Last State)
    # As Prometheus 2.42: a value counts for 5 minutes after its window unless a point
    # flagged NO_RECORDED_VALUE ended the series; no value is no breach.
    PROMETHEUS = "prometheus"


@dataclass(frozen=True, slots=True)
class Query:
    """One field of one metric's windows, over the series whose labels match `filters`."""

    metric: str
    window: str = "1m"
    field: Field = Field.LAST
    filters: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Strings from a form or a JSON column become the enum (ValueError if none).
        object.__setattr__(self, "field", Field(self.field))


@dataclass(frozen=True, slots=True)
class AlertRule:
    """What the evaluator needs of a rule. `id` names it in transition ids (not the revision:
    editing a rule does not page again for a window already evaluated)."""

    id: str
    query: Query
    op: Op
    critical: float
    denominator: Query | None = None  # the value is query / denominator, per window
    group_by: tuple[str, ...] = ()
    warning: float | None = None  # validated to trigger before critical
    # Hysteresis: an open alert resolves only once `op` no longer holds against this (for ">
    # 90, resolve 80", when the value is 80 or less). None: the lowest trigger threshold.
    resolve: float | None = None
    comparison: Comparison = Comparison.STATIC
    offset: str | None = None  # for percent change: a key of OFFSETS
    for_seconds: int = 0
    keep_firing_for_seconds: int = 0
    # How long after a window ends it is evaluated, for late points (Prometheus 2.53's
    # query_offset); the handler's business (due_window), not the evaluator's.
    delay_seconds: int = 0
    cadence_seconds: int = 60  # how often the handler looks for completed windows
    nodata: NoData = NoData.NODATA
    # Flap detection: `flap_changes` or more changes of the condition within the last
    # `flap_window` windows keep an open alert open ("flapping"). 0 turns it off.
    flap_window: int = 10
    flap_changes: int = 4
    # What observability.alerting.evaluation works out of the rule once (its window size,
    # description, times as timedeltas...) and reads at every window: not part of its value.
    derived: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", Op(self.op))
        object.__setattr__(self, "comparison", Comparison(self.comparison))
        object.__setattr__(self, "nodata", NoData(self.nodata))
        object.__setattr__(self, "group_by", tuple(self.group_by))

    @property
    def size(self) -> timedelta:
        return WINDOWS[self.query.window]

    @property
    def lowest_threshold(self) -> float:
        """The threshold that triggers first: warning when there is one, else critical."""
        return self.critical if self.warning is None else self.warning

    def describe(self) -> str:
        """The value as a person reads it: "p95 of http.duration", "delta of errors / delta of
        requests", "change of last of queue.depth since 1d ago"."""
        what = f"{self.query.field} of {self.query.metric}"
        if self.denominator is not None:
            what += f" / {self.denominator.field} of {self.denominator.metric}"
        if self.comparison is Comparison.PERCENT_CHANGE:
            what = f"% change of {what} since {self.offset} ago"
        return what


# Validation


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a rule is refused, by the field to show it beside ("query.field")."""

    field: str
    message: str


def validate(rule: AlertRule, metrics: Mapping[str, MetricKind] | None = None) -> list[Problem]:
    """Every problem of the rule, in form order. `metrics`: the tenant's known metric names and
    kinds; with it, an unknown metric and a field that does not fit its kind are refused."""
    problems = _query_problems("query", rule.query, metrics)
    if rule.denominator is not None:
        problems += _query_problems("denominator", rule.denominator, metrics)
        if rule.denominator.window != rule.query.window:
            problems.append(Problem("denominator.window", "must be the numerator's window size"))
    seen: set[str] = set()
    for key in rule.group_by:
        if not key.strip():
            problems.append(Problem("group_by", "a label key cannot be empty"))
        elif key in seen:
            problems.append(Problem("group_by", f"{key!r} is listed twice"))
        seen.add(key)
    problems += _threshold_problems(rule)
    if rule.comparison is Comparison.PERCENT_CHANGE and rule.offset not in OFFSETS:
        problems.append(Problem("offset", f"a percent change needs one of {', '.join(OFFSETS)}"))
    if rule.comparison is Comparison.STATIC and rule.offset is not None:
        problems.append(Problem("offset", "only a percent-change comparison has an offset"))
    problems += _time_problems(rule)
    if rule.flap_changes < 0:
        problems.append(Problem("flap_changes", "cannot be negative (0 turns it off)"))
    elif rule.flap_changes and rule.flap_changes >= rule.flap_window:
        # n windows hold at most n - 1 changes: such a rule could never be flapping.
        problems.append(Problem("flap_changes", f"must be under flap_window ({rule.flap_window})"))
    return problems


def _query_problems(
    name: str, query: Query, metrics: Mapping[str, MetricKind] | None
) -> list[Problem]:
    problems = []
    if not query.metric.strip():
        problems.append(Problem(f"{name}.metric", "name a metric"))
    elif metrics is not None and query.metric not in metrics:
        problems.append(
            Problem(f"{name}.metric", f"no metric named {query.metric!r} has been received")
        )
    if query.window not in WINDOWS:
        problems.append(Problem(f"{name}.window", f"must be one of {', '.join(WINDOWS)}"))
    kind = metrics.get(query.metric) if metrics is not None else None
    if kind is not None and query.field not in FITS[kind]:
        fits = ", ".join(FITS[kind])
        problems.append(
            Problem(
                f"{name}.field",
                f"{query.field} does not fit {query.metric}, {KIND_NAMES[kind]}: "
                f"choose one of {fits}",
            )
        )
    for key in query.filters:
        if not key.strip():
            problems.append(Problem(f"{name}.filters", "a filter needs a label key"))
    return problems


def _threshold_problems(rule: AlertRule) -> list[Problem]:
    problems = []
    thresholds = {"critical": rule.critical, "warning": rule.warning, "resolve": rule.resolve}
    for name, value in thresholds.items():
        if value is not None and not math.isfinite(value):
            problems.append(Problem(name, "must be a finite number"))
    if problems:
        return problems
    upward = rule.op.upward
    if rule.warning is not None:
        if upward is None:
            problems.append(
                Problem("warning", f"a warning threshold needs <, <=, > or >=, not {rule.op}")
            )
        elif upward and rule.warning >= rule.critical:
            problems.append(
                Problem("warning", f"must be under critical ({rule.critical:g}) to trigger first")
            )
        elif not upward and rule.warning <= rule.critical:
            problems.append(
                Problem("warning", f"must be over critical ({rule.critical:g}) to trigger first")
            )
    if rule.resolve is not None:
        lowest = rule.lowest_threshold
        if upward is None:
            problems.append(
                Problem("resolve", f"a resolve threshold needs <, <=, > or >=, not {rule.op}")
            )
        elif upward and rule.resolve > lowest:
            problems.append(
                Problem(
                    "resolve",
                    f"must be at most {lowest:g}: an alert would resolve while it still breaches",
                )
            )
        elif not upward and rule.resolve < lowest:
            problems.append(
                Problem(
                    "resolve",
                    f"must be at least {lowest:g}: an alert would resolve while it still breaches",
                )
            )
    return problems


def _time_problems(rule: AlertRule) -> list[Problem]:
    problems = []
    bounds = {
        "for_seconds": MAX_HOLD,
        "keep_firing_for_seconds": MAX_HOLD,
        "delay_seconds": MAX_DELAY,
    }
    for name, most in bounds.items():
        seconds = getattr(rule, name)
        if not 0 <= seconds <= most.total_seconds():
            problems.append(Problem(name, f"must be between 0 and {most.total_seconds():.0f}"))
    cadence = rule.cadence_seconds
    if not 60 <= cadence <= MAX_CADENCE.total_seconds() or cadence % 60:
        problems.append(Problem("cadence_seconds", "must be whole minutes, from 1 to 60"))
    return problems


# Instances: labels, keys and groups


def labels_of(resource: Mapping[str, object], attributes: Mapping[str, object]) -> dict[str, str]:
    """A series' labels: its resource attributes and its point attributes (which win on a
    clash, being the more specific), as strings; lists and maps as compact JSON."""
    labels: dict[str, Any] = {**resource, **attributes}
    for key, value in labels.items():
        if not isinstance(value, str):
            labels[key] = _compact(value)
    return labels


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def instance_key(labels: Mapping[str, str]) -> str:
    """The stable fingerprint of an instance's labels (its group's label values)."""
    return _fingerprint(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=65536)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    # Cached: a tick groups every series of every rule, and the same label groups (one per
    # service, say) recur across rules and ticks.
    return hashlib.sha256(_compact(dict(items)).encode()).hexdigest()[:32]


def matches(query: Query, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in query.filters.items())


def group_labels(rule: AlertRule, labels: Mapping[str, str]) -> dict[str, str]:
    """The instance's labels: the group_by keys, "" for a key the series lacks (as
    Alertmanager's `equal` treats a missing label)."""
    return {key: labels.get(key, "") for key in rule.group_by}


# Series windows into instance windows


class SeriesWindow(msgspec.Struct, frozen=True, gc=False):
    """One stored MetricSeries row, as far as rules read it. `stale`: the series' newest point
    in the window carried no value (OTLP NO_RECORDED_VALUE, Prometheus's staleness marker):
    the series ended there.

    This and the two below are msgspec structs left out of the cyclic garbage collector
    (`gc=False`: they hold only strings, numbers and tuples or maps of them, so no cycle): a
    tick builds tens of thousands, and the collector's passes over them cost a sixth of it."""

    start: datetime
    labels: Mapping[str, str]
    kind: MetricKind
    last: float | None = None
    delta: float | None = None
    count: float | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    bounds: tuple[float, ...] = ()  # histogram buckets, merged over the window
    counts: tuple[int, ...] = ()
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    stale: bool = False
    trace_ids: tuple[str, ...] = ()


class WindowSample(msgspec.Struct, frozen=True, gc=False):
    """One instance's value for one window (ends at start + the rule's window size). `value`
    None: the window had series but no value (no observations, no requests for a ratio).
    `error`: the value could not be computed, and why."""

    start: datetime
    value: float | None
    stale: bool = False
    error: str = ""
    trace_ids: tuple[str, ...] = ()


class InstanceWindows(msgspec.Struct, frozen=True, gc=False):
    key: str
    labels: Mapping[str, str]
    samples: tuple[WindowSample, ...]  # by start, oldest first


def instance_windows(
    rule: AlertRule,
    numerator: Iterable[SeriesWindow],
    denominator: Iterable[SeriesWindow] = (),
) -> dict[str, InstanceWindows]:
    """Group the windows of the rule's series (already of its metric and window size) into
    instances, keyed by instance_key, each with one sample per window that had a series."""
    labels: dict[str, dict[str, str]] = {}
    top = _grouped(rule, rule.query, numerator, labels)
    instances: dict[str, list[WindowSample]] = {}
    if rule.denominator is None:
        for (key, start), rows in sorted(top.items()):
            instances.setdefault(key, []).append(_sample(rule, start, rows, None))
    else:
        bottom = _grouped(rule, rule.denominator, denominator, labels)
        for key, start in sorted({*top, *bottom}):
            instances.setdefault(key, []).append(
                _sample(rule, start, top.get((key, start)), bottom.get((key, start)))
            )
    return {
        key: InstanceWindows(key=key, labels=labels[key], samples=tuple(samples))
        for key, samples in instances.items()
    }


def _grouped(
    rule: AlertRule,
    query: Query,
    rows: Iterable[SeriesWindow],
    labels: dict[str, dict[str, str]],
) -> dict[tuple[str, datetime], list[SeriesWindow]]:
    groups: dict[tuple[str, datetime], list[SeriesWindow]] = {}
    by = rule.group_by
    (only,) = by if len(by) == 1 else ("",)  # one key, most rules: no list built per series
    for row in rows:
        found = row.labels
        if query.filters and not matches(query, found):
            continue
        # group_labels' values
        values = (found.get(only, ""),) if only else tuple([found.get(k, "") for k in by])
        key = _group_key(by, values)
        if key not in labels:
            labels[key] = dict(zip(by, values, strict=True))
        group = groups.get((key, row.start))
        if group is None:
            groups[(key, row.start)] = [row]
        else:
            group.append(row)
    return groups


@functools.lru_cache(maxsize=65536)
def _group_key(by: tuple[str, ...], values: tuple[str, ...]) -> str:
    # Cached: a tick groups every series of every rule, and the same groups (one per service,
    # say) recur across rules and ticks.
    return instance_key(dict(zip(by, values, strict=True)))


def _sample(
    rule: AlertRule,
    start: datetime,
    top: Sequence[SeriesWindow] | None,
    bottom: Sequence[SeriesWindow] | None,
) -> WindowSample:
    if rule.denominator is None and top is not None and len(top) == 1:
        # One series of one query (most samples): its own staleness and exemplars.
        row = top[0]
        stale = row.stale
        trace_ids = tuple(dict.fromkeys(row.trace_ids))[:MAX_TRACE_IDS] if row.trace_ids else ()
    else:
        stale = all(row.stale for row in (*(top or ()), *(bottom or ())))
        trace_ids = _trace_ids(row.trace_ids for row in top or ())
    try:
        value = _combine(rule, rule.query, top)
        if rule.denominator is not None:
            total = _combine(rule, rule.denominator, bottom)
            if value is None and top is None and rule.query.field in ADDITIVE:
                value = 0.0  # requests but no error series: no errors
            value = None if value is None or not total else value / total
    except ValueError as error:
        return WindowSample(start, None, stale=stale, error=str(error), trace_ids=trace_ids)
    return WindowSample(start, value, stale=stale, trace_ids=trace_ids)


def _trace_ids(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for trace_ids in groups:
        for trace_id in trace_ids:
            seen.setdefault(trace_id)
    return tuple(seen)[:MAX_TRACE_IDS]


# The column an additive field (or `last`) sums over a group's series.
SUMMED = {
    Field.COUNT: "count",
    Field.SUM: "sum",
    Field.DELTA: "delta",
    Field.LAST: "last",
    Field.RATE: "delta",
}


def _combine(rule: AlertRule, query: Query, rows: Sequence[SeriesWindow] | None) -> float | None:
    """One group's value of the query's field in one window; ValueError when the series cannot
    be combined (the instance goes to its error state with the message)."""
    if not rows:
        return None
    name = query.field
    column = SUMMED.get(name)
    if column is not None:
        if len(rows) == 1:
            value = getattr(rows[0], column)
            if value is None:
                return None
            total = math.fsum((value,))
        else:
            values = [v for row in rows if (v := getattr(row, column)) is not None]
            if not values:
                return None
            total = math.fsum(values)
        return total / rule.size.total_seconds() if name is Field.RATE else total
    if name in (Field.MIN, Field.MAX):
        values = [v for row in rows if (v := getattr(row, str(name))) is not None]
        return (min if name is Field.MIN else max)(values) if values else None
    if name is Field.MEAN:
        return _mean(rows)
    return _percentile(query, PERCENTILES[name], rows)


def _mean(rows: Sequence[SeriesWindow]) -> float | None:
    """Weighted by observations: a gauge's mean times its points, a distribution's sum."""
    weighted, count = [], 0.0
    for row in rows:
        if not row.count:
            continue
        if row.mean is not None:
            weighted.append(row.mean * row.count)
        elif row.sum is not None:
            weighted.append(row.sum)
        else:
            continue
        count += row.count
    return math.fsum(weighted) / count if count else None


def _percentile(query: Query, q: float, rows: Sequence[SeriesWindow]) -> float | None:
    if len(rows) == 1:
        stored: float | None = getattr(rows[0], str(query.field))
        return stored
    if any(not row.bounds or row.bounds != rows[0].bounds for row in rows):
        raise ValueError(
            f"the group's {len(rows)} series of {query.metric} have different (or no) histogram"
            f" buckets, so their {query.field} cannot be combined: group by more labels"
        )
    counts = [sum(column) for column in zip(*(row.counts for row in rows), strict=True)]
    lows = [row.min for row in rows if row.min is not None]
    highs = [row.max for row in rows if row.max is not None]
    return bucket_quantile(
        q,
        rows[0].bounds,
        counts,
        low=min(lows) if len(lows) == len(rows) else None,
        high=max(highs) if len(highs) == len(rows) else None,
    )


def bucket_quantile(
    q: float,
    bounds: Sequence[float],
    counts: Sequence[int],
    *,
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    """The q-quantile of merged histogram buckets, estimated as observability.aggregation does
    (bucket i holds (bounds[i-1], bounds[i]]; linear within the bucket holding the rank; edges
    clamped to the observed min and max; an open first bucket from 0, an open last one ends
    where it starts). None for an empty histogram."""
    total = sum(counts)
    rank = q * total
    before = 0
    for i, n in enumerate(counts):
        if n > 0 and before < rank <= before + n:
            lower = bounds[i - 1] if i > 0 else None
            upper = bounds[i] if i < len(bounds) else None
            if low is not None:
                lower = low if lower is None else max(lower, low)
            if high is not None:
                upper = high if upper is None else min(upper, high)
            if lower is None:
                lower = None if upper is None else (upper if upper < 0 else 0.0)
            if lower is None:
                return None
            upper = lower if upper is None else upper
            lower = min(lower, upper)
            return lower + (upper - lower) * ((rank - before) / n)
        before += n
    return None


def due_window(rule: AlertRule, now: datetime, newest_aggregated: datetime) -> datetime:
    """The start of the newest window a tick at `now` evaluates: the newest whose end is at
    least the rule's delay ago, and no newer than the newest window aggregated."""
    size = rule.size
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    end = epoch + ((now - timedelta(seconds=rule.delay_seconds) - epoch) // size) * size
    return min(end - size, newest_aggregated)
