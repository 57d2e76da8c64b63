"""MetricAggregationWorker's handler: roll raw MetricPoint rows into MetricSeries windows.

A ScheduleFired slot of one tenant names a window (1m, 5m or 1h; windowStart inclusive,
windowEnd exclusive, by the points' time_ns). `aggregate` computes that window and every
earlier window of the same size, back to LOOKBACK, that received points since it was last
computed, and publishes one MetricAggregated per window computed.

One row per (tenant, series_key, window, window_start), upserted, so re-running a window gives
the same rows with the same ids; only `computed_at` moves. Per series kind:

- Gauge: count, min, max, mean and last (the value of the newest point), by GROUP BY.
- Sum, delta temporality: `delta` is the sum of the points' values, by GROUP BY.
- Sum, cumulative (or unspecified) temporality: each point is turned into its increase over
  the point before it in the series (the newest point before the window included), by a LAG
  window function in SQL; `delta` is the window's total and `last` the newest value. Runs
  follow the OTLP data model, "Resets and Gaps": a point starts a new run when its start_ns
  differs from the previous point's, or when a monotonic sum's value dropped (start_ns kept).
  The first point of a run contributes:
    - nothing when its start is unknown (start_ns 0, or start_ns == time_ns: "a reset at an
      unknown start time", whose rate contribution the spec puts at zero; later points of the
      run count from it);
    - its whole value when the run began at a known start at or after the previous point's
      time (a "true" reset; the implicit zero at start_ns; a start after the previous point's
      time is also a gap, counted in notes["gaps"]), when it is the first point of the series
      ever stored, or when a monotonic value dropped under the same start (a reset the
      producer did not mark);
    - nothing when its start lies before the previous point's time: two runs overlap (a
      single-writer violation), which notes["overlaps"] counts rather than double-count.
  Any other point contributes value - previous value (negative only for non-monotonic sums).
- Histogram (explicit bounds): bucket counts, count and sum merged over the window's points
  (cumulative points turned into deltas by the same rules, using count as the value); only
  points whose bounds equal the newest point's bounds merge into `buckets`, the others still
  count in count and sum and are counted in notes["boundsChanged"]. min and max are the
  points' own for delta points and first points of runs; for later cumulative points only a
  min or max that changed since the previous point is known to fall in the window.
  p50/p95/p99 are estimated from the merged buckets (see `percentile`).
- Exponential histogram: count, sum, min and max only (no buckets, no percentiles).
- Summary: count and sum as increases (summaries carry no temporality: treated as
  cumulative, which also handles delta-like points, whose start is the previous time); the
  newest point's quantiles in `buckets`, and p50/p95/p99 where it has exactly those.
- Exemplars of every kind: up to MAX_EXEMPLARS per series window, newest first, as stored
  (trace ids kept).

Late points: a window is computed again when one of its points was received
(MetricPoint.received_at) after the window's computed_at, less SETTLE: a point stamped just
before an aggregation but committed just after it is not missed. As each run catches up every
window it finds, only points received since the tenant's last run (less SETTLE) are looked at.
A late point of a cumulative series also changes the increase of the series' next point, so
that point's window is computed again too. Points older than LOOKBACK before the slot are not
re-aggregated.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import (
    Avg,
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
)
from django.utils import timezone

from core.envelope import Envelope
from core.runtime.errors import PermanentError
from core.services import build_envelope, publish_envelopes
from observability.models import MetricPoint, MetricSeries

Kind, Temporality = MetricPoint.Kind, MetricPoint.Temporality
WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
LOOKBACK = timedelta(hours=24)
SETTLE = timedelta(seconds=5)
MAX_EXEMPLARS = 10
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
EVENT_NAMESPACE = uuid.UUID("0b7e9f3c-5d1a-4c55-8f0e-2a6d3c9b7e41")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DISTRIBUTIONS = (Kind.HISTOGRAM, Kind.EXPONENTIAL_HISTOGRAM, Kind.SUMMARY)
VALUE_FIELDS = [
    "window_end", "name", "unit", "kind", "temporality", "monotonic", "resource", "scope",
    "attributes", "points", "delta", "last", "count", "sum", "min", "max", "mean", "buckets",
    "p50", "p95", "p99", "exemplars", "resets", "notes",
]  # fmt: skip


def to_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


@transaction.atomic
def aggregate(envelope: Envelope) -> None:
    """The handler: compute the slot's window and the earlier ones that received points."""
    window, start = _slot(envelope.data)
    now = timezone.now()
    events = []
    for window_start in sorted({*late_windows(envelope.tenant_id, window, start), start}):
        series = aggregate_window(envelope.tenant_id, window, window_start, now=now)
        if series:
            events.append(_event(envelope, window, window_start, series))
    if events:
        publish_envelopes(events)


def _slot(data: dict) -> tuple[str, datetime]:
    window = data.get("schedule")
    if window not in WINDOWS:
        raise PermanentError(f"schedule {window!r} is none of {sorted(WINDOWS)}")
    start, end = (_moment(data[k]) for k in ("windowStart", "windowEnd"))
    if end - start != WINDOWS[window]:
        raise PermanentError(f"window {start} to {end} does not last {window}")
    return window, start


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Which windows to compute again


def late_windows(tenant_id, window: str, start: datetime) -> set[datetime]:
    """The windows before `start`, within LOOKBACK, with points received since they were
    computed, and the windows of the next points of late cumulative points."""
    size = WINDOWS[window]
    horizon = start - (LOOKBACK // size) * size
    origin, size_ns = to_ns(horizon), to_ns(EPOCH + size)
    ours = MetricSeries.objects.filter(tenant_id=tenant_id, window=window)
    last_run = ours.aggregate(at=Max("computed_at"))["at"]
    points = MetricPoint.objects.filter(
        tenant_id=tenant_id, time_ns__gte=origin, time_ns__lt=to_ns(start)
    )
    if last_run is not None:
        points = points.filter(received_at__gt=last_run - SETTLE)
    received = dict(
        points.annotate(
            bucket=ExpressionWrapper(
                (F("time_ns") - origin) / size_ns, output_field=BigIntegerField()
            )
        )
        .values("bucket")
        .annotate(received=Max("received_at"))
        .values_list("bucket", "received")
    )
    if not received:
        return set()
    starts = {horizon + bucket * size: at for bucket, at in received.items()}
    computed = dict(
        ours.filter(window_start__in=list(starts))
        .values("window_start")
        .annotate(at=Max("computed_at"))
        .values_list("window_start", "at")
    )
    late = {ws for ws, at in starts.items() if ws not in computed or at > computed[ws] - SETTLE}
    # A late cumulative point changes the increase of the point after it in its series.
    following = (
        points.filter(kind__in=(Kind.SUM, *DISTRIBUTIONS))
        .exclude(temporality=Temporality.DELTA)
        .annotate(
            next_ns=Subquery(
                MetricPoint.objects.filter(
                    tenant_id=tenant_id,
                    series_key=OuterRef("series_key"),
                    time_ns__gt=OuterRef("time_ns"),
                )
                .order_by("time_ns")
                .values("time_ns")[:1]
            )
        )
        .filter(next_ns__lt=to_ns(start))
        .values_list("time_ns", "next_ns")
    )
    for time_ns, next_ns in following:
        if horizon + (time_ns - origin) // size_ns * size in late:
            late.add(horizon + (next_ns - origin) // size_ns * size)
    return late


# One window


def aggregate_window(tenant_id, window: str, start: datetime, *, now: datetime) -> list[dict]:
    """Compute and store one window's series; returns their values, by series_key."""
    end = start + WINDOWS[window]
    lo, hi = to_ns(start), to_ns(end)
    series: dict[str, dict] = {}
    newest: dict[str, int] = {}
    _gauges_and_delta_sums(tenant_id, lo, hi, series, newest)
    _cumulative_sums(tenant_id, lo, hi, series, newest)
    _distributions(tenant_id, lo, hi, series, newest)
    stored = MetricSeries.objects.filter(tenant_id=tenant_id, window=window, window_start=start)
    if not series:
        stored.delete()
        return []
    _identities(newest, series)
    _exemplars(tenant_id, lo, hi, series)
    rows = []
    for key in sorted(series):
        values = {**_EMPTY, **series[key], "window_end": end}
        rows.append(
            MetricSeries(
                tenant_id=tenant_id,
                series_key=key,
                window=window,
                window_start=start,
                computed_at=now,
                **values,
            )
        )
    MetricSeries.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["tenant", "series_key", "window", "window_start"],
        update_fields=[*VALUE_FIELDS, "computed_at"],
    )
    stored.exclude(computed_at=now).delete()  # series no longer in the window
    return [{"series_key": row.series_key, **_values(row)} for row in rows]


_EMPTY = {
    "delta": None, "last": None, "count": None, "sum": None, "min": None, "max": None,
    "mean": None, "buckets": None, "p50": None, "p95": None, "p99": None, "exemplars": [],
    "resets": 0, "notes": {},
}  # fmt: skip


def _values(row: MetricSeries) -> dict:
    return {name: getattr(row, name) for name in VALUE_FIELDS if name != "window_end"}


def _gauges_and_delta_sums(tenant_id, lo: int, hi: int, series: dict, newest: dict) -> None:
    in_window = MetricPoint.objects.filter(
        tenant_id=tenant_id, time_ns__gte=lo, time_ns__lt=hi, value__isnull=False
    )
    newest_point = Subquery(
        in_window.filter(series_key=OuterRef("series_key")).order_by("-time_ns").values("id")[:1]
    )
    stats = (
        in_window.filter(Q(kind=Kind.GAUGE) | Q(kind=Kind.SUM, temporality=Temporality.DELTA))
        .values("series_key", "kind")
        .annotate(
            points=Count("id"),
            total=Sum("value"),
            low=Min("value"),
            high=Max("value"),
            mean=Avg("value"),
            newest=newest_point,
        )
    )
    for row in stats:
        key = row["series_key"]
        newest[key] = row["newest"]
        if row["kind"] == Kind.GAUGE:
            series[key] = {
                "points": row["points"],
                "count": row["points"],
                "min": row["low"],
                "max": row["high"],
                "mean": row["mean"],
            }
        else:
            series[key] = {"points": row["points"], "delta": row["total"]}


# Points of the window, and each of their series' newest point before it (the baseline that
# the first cumulative point of the window is an increase over).
_WITH_BASELINE = """
WITH win AS (
    SELECT {columns} FROM {table}
    WHERE tenant_id = %s AND {kinds} AND time_ns >= %s AND time_ns < %s
), base AS (
    SELECT {p_columns} FROM (SELECT DISTINCT series_key FROM win) s
    JOIN {table} p ON p.tenant_id = %s AND p.series_key = s.series_key AND p.time_ns = (
        SELECT MAX(q.time_ns) FROM {table} q
        WHERE q.tenant_id = %s AND q.series_key = s.series_key AND q.time_ns < %s
    )
    WHERE {p_kinds}
), pts AS (
    SELECT win.*, 1 AS in_window FROM win UNION ALL SELECT base.*, 0 AS in_window FROM base
)
"""

# The increase each cumulative point contributes, as the module docstring sets out.
_CUMULATIVE_SUMS = """
, steps AS (
    SELECT id, series_key, monotonic, start_ns, time_ns, value, in_window,
        LAG(start_ns) OVER w AS prev_start,
        LAG(time_ns) OVER w AS prev_time,
        LAG(value) OVER w AS prev_value,
        ROW_NUMBER() OVER (PARTITION BY series_key ORDER BY time_ns DESC) AS newest
    FROM pts
    WINDOW w AS (PARTITION BY series_key ORDER BY time_ns)
), runs AS (
    SELECT *,
        CASE
            WHEN prev_time IS NULL OR start_ns <> prev_start THEN 1
            WHEN monotonic AND value < prev_value THEN 2
            ELSE 0
        END AS run_start,
        CASE WHEN start_ns = 0 OR start_ns >= time_ns THEN 1 ELSE 0 END AS unknown_start
    FROM steps
)
SELECT series_key,
    COUNT(*),
    SUM(CASE
        WHEN run_start = 0 THEN value - prev_value
        WHEN run_start = 2 THEN value
        WHEN unknown_start = 1 THEN 0
        WHEN prev_time IS NULL OR start_ns >= prev_time THEN value
        ELSE 0
    END),
    MAX(CASE WHEN newest = 1 THEN id END),
    SUM(CASE WHEN run_start > 0 AND prev_time IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN run_start = 1 AND prev_time IS NOT NULL AND start_ns > prev_time
        THEN 1 ELSE 0 END),
    SUM(CASE WHEN run_start = 1 AND prev_time IS NOT NULL AND unknown_start = 0
        AND start_ns < prev_time THEN 1 ELSE 0 END)
FROM runs
WHERE in_window = 1
GROUP BY series_key
"""


def _with_baseline(columns: list[str], kinds: str) -> str:
    return _WITH_BASELINE.format(
        table=MetricPoint._meta.db_table,
        columns=", ".join(columns),
        p_columns=", ".join(f"p.{c}" for c in columns),
        kinds=kinds.format(p=""),
        p_kinds=kinds.format(p="p."),
    )


def _cumulative_sums(tenant_id, lo: int, hi: int, series: dict, newest: dict) -> None:
    tenant = _tenant_param(tenant_id)
    columns = ["id", "series_key", "monotonic", "start_ns", "time_ns", "value"]
    kinds = (
        f"{{p}}kind = {Kind.SUM:d} AND {{p}}temporality <> {Temporality.DELTA:d} "
        "AND {p}value IS NOT NULL"
    )
    head = _with_baseline(columns, kinds)
    with connection.cursor() as cursor:
        cursor.execute(head + _CUMULATIVE_SUMS, [tenant, lo, hi, tenant, tenant, lo])
        for key, points, delta, newest_id, resets, gaps, overlaps in cursor.fetchall():
            newest[key] = newest_id
            series[key] = {
                "points": points,
                "delta": delta,
                "resets": resets,
                "notes": _notes(gaps=gaps, overlaps=overlaps),
            }


def _tenant_param(tenant_id):
    field = MetricPoint._meta.get_field("tenant").target_field
    return field.get_db_prep_value(tenant_id, connection)


def _notes(**counts: int) -> dict:
    return {name: n for name, n in counts.items() if n}


# Histograms, exponential histograms and summaries: few rows per series, merged in Python.

_DISTRIBUTION_FIELDS = [
    "id", "series_key", "kind", "temporality", "start_ns", "time_ns", "count", "sum", "min",
    "max", "buckets",
]  # fmt: skip


def _distributions(tenant_id, lo: int, hi: int, series: dict, newest: dict) -> None:
    in_window = list(
        MetricPoint.objects.filter(
            tenant_id=tenant_id, kind__in=DISTRIBUTIONS, time_ns__gte=lo, time_ns__lt=hi
        )
        .order_by("series_key", "time_ns")
        .values(*_DISTRIBUTION_FIELDS)
    )
    if not in_window:
        return
    cumulative = {p["series_key"] for p in in_window if p["temporality"] != Temporality.DELTA}
    baselines = {}
    if cumulative:
        before = MetricPoint.objects.filter(
            tenant_id=tenant_id, series_key=OuterRef("series_key"), time_ns__lt=lo
        ).order_by("-time_ns")
        window_series = MetricPoint.objects.filter(
            tenant_id=tenant_id, kind__in=DISTRIBUTIONS, time_ns__gte=lo, time_ns__lt=hi
        ).exclude(temporality=Temporality.DELTA)
        baselines = {
            p["series_key"]: p
            for p in MetricPoint.objects.filter(
                tenant_id=tenant_id,
                kind__in=DISTRIBUTIONS,
                series_key__in=window_series.values("series_key"),
                time_ns=Subquery(before.values("time_ns")[:1]),
            ).values(*_DISTRIBUTION_FIELDS)
        }
    by_series = defaultdict(list)
    for point in in_window:
        by_series[point["series_key"]].append(point)
    for key, points in by_series.items():
        newest[key] = points[-1]["id"]
        series[key] = _distribution(baselines.get(key), points)


def _distribution(baseline: dict | None, points: list[dict]) -> dict:
    latest = points[-1]
    bounds = (latest["buckets"] or {}).get("bounds") if latest["kind"] == Kind.HISTOGRAM else None
    merged = [0] * (len(bounds) + 1) if bounds is not None else None
    count, total, low, high = 0, None, None, None
    resets = gaps = overlaps = bounds_changed = 0
    previous = baseline
    for point in points:
        part = _increase(previous, point)
        previous = point
        if part["reset"]:
            resets += 1
        gaps += part["gap"]
        overlaps += part["overlap"]
        if part["contribution"] is None:
            continue
        c = part["contribution"]
        count += c["count"] or 0
        if c["sum"] is not None:
            total = (total or 0.0) + c["sum"]
        if c["min"] is not None:
            low = c["min"] if low is None else min(low, c["min"])
        if c["max"] is not None:
            high = c["max"] if high is None else max(high, c["max"])
        if merged is not None and c["counts"] is not None:
            if c["bounds"] == bounds and len(c["counts"]) == len(merged):
                merged = [a + b for a, b in zip(merged, c["counts"], strict=True)]
            else:
                bounds_changed += 1
    values = {
        "points": len(points),
        "count": count,
        "sum": total,
        "min": low,
        "max": high,
        "resets": resets,
        "notes": _notes(gaps=gaps, overlaps=overlaps, boundsChanged=bounds_changed),
    }
    if merged is not None:
        values["buckets"] = {"bounds": bounds, "counts": merged}
        for name, q in PERCENTILES.items():
            values[name] = percentile(bounds, merged, q, low=low, high=high)
    elif latest["kind"] == Kind.SUMMARY:
        quantiles = (latest["buckets"] or {}).get("quantiles", [])
        values["buckets"] = {"quantiles": quantiles}
        exact = dict(quantiles)
        for name, q in PERCENTILES.items():
            values[name] = exact.get(q)
    return values


def _increase(previous: dict | None, point: dict) -> dict:
    """What a distribution point adds to its window: the Sum rules, with count as the value.
    Returns {"contribution": {count, sum, min, max, bounds, counts} or None, "reset", "gap",
    "overlap"}."""
    whole = _whole(point)
    step = {"contribution": whole, "reset": False, "gap": 0, "overlap": 0}
    if point["temporality"] == Temporality.DELTA:
        return step
    unknown_start = point["start_ns"] == 0 or point["start_ns"] >= point["time_ns"]
    if previous is None or point["start_ns"] != previous["start_ns"]:
        step["reset"] = previous is not None
        if previous is not None and point["start_ns"] > previous["time_ns"]:
            step["gap"] = 1
        if unknown_start:
            step["contribution"] = None
        elif previous is not None and point["start_ns"] < previous["time_ns"]:
            step["contribution"], step["overlap"] = None, 1
        return step
    before = _whole(previous)
    if (point["count"] or 0) < (before["count"] or 0) or (
        whole["counts"] is not None
        and whole["bounds"] == before["bounds"]
        and len(whole["counts"]) == len(before["counts"] or ())
        and any(a < b for a, b in zip(whole["counts"], before["counts"], strict=True))
    ):
        step["reset"] = True  # the count dropped under the same start: counted from zero
        return step
    same_buckets = (
        whole["counts"] is not None
        and whole["bounds"] == before["bounds"]
        and len(whole["counts"]) == len(before["counts"] or ())
    )
    step["contribution"] = {
        "count": (point["count"] or 0) - (previous["count"] or 0),
        "sum": _minus(point["sum"], previous["sum"]),
        "min": point["min"] if point["min"] != previous["min"] else None,
        "max": point["max"] if point["max"] != previous["max"] else None,
        # Bounds changed under the same start: no bucket increase to take; counted as such.
        "bounds": whole["bounds"] if same_buckets else None,
        "counts": (
            [a - b for a, b in zip(whole["counts"], before["counts"], strict=True)]
            if same_buckets
            else whole["counts"]
        ),
    }
    return step


def _whole(point: dict) -> dict:
    buckets = point["buckets"] or {}
    histogram = point["kind"] == Kind.HISTOGRAM and "counts" in buckets
    return {
        "count": point["count"],
        "sum": point["sum"],
        "min": point["min"],
        "max": point["max"],
        "bounds": buckets.get("bounds") if histogram else None,
        "counts": [int(c) for c in buckets["counts"]] if histogram else None,
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def percentile(
    bounds: list[float],
    counts: list[int],
    q: float,
    *,
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    """Estimate the q-quantile of an explicit-bounds histogram by linear interpolation.

    Bucket i holds the observations in (bounds[i-1], bounds[i]]; the first bucket is open
    below and the last open above. The rank is q * total count; the estimate is the bucket
    holding that rank, entered at its lower edge and left at its upper edge, the rank's share
    of the bucket's count along the way: lower + (upper - lower) * (rank - before) / count.
    Edges are clamped to the observed min and max when known; an open first bucket without a
    min starts at 0 (or at its upper bound if that is negative), an open last bucket without
    a max ends where it starts. None for an empty histogram.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    before = 0
    for i, n in enumerate(counts):
        if n <= 0 or before + n < rank:
            before += n
            continue
        lower = bounds[i - 1] if i > 0 else None
        upper = bounds[i] if i < len(bounds) else None
        if low is not None:
            lower = low if lower is None else max(lower, low)
        if high is not None:
            upper = high if upper is None else min(upper, high)
        if lower is None:
            lower = min(0.0, upper) if upper is not None else None
        if upper is None:
            upper = lower
        if lower is None:
            return None
        lower = min(lower, upper)
        return lower + (upper - lower) * (rank - before) / n
    return None


# Identity and exemplars


def _identities(newest: dict[str, int], series: dict[str, dict]) -> None:
    rows = MetricPoint.objects.filter(id__in=newest.values()).values(
        "series_key", "name", "unit", "kind", "temporality", "monotonic", "resource", "scope",
        "attributes", "value",
    )  # fmt: skip
    for row in rows:
        values = series[row.pop("series_key")]
        value = row.pop("value")
        values.update(row)
        if row["kind"] == Kind.GAUGE or (
            row["kind"] == Kind.SUM and row["temporality"] != Temporality.DELTA
        ):
            values["last"] = value


def _exemplars(tenant_id, lo: int, hi: int, series: dict[str, dict]) -> None:
    rows = (
        MetricPoint.objects.filter(tenant_id=tenant_id, time_ns__gte=lo, time_ns__lt=hi)
        .exclude(exemplars=[])
        .values_list("series_key", "time_ns", "exemplars")
    )
    found = defaultdict(list)
    for key, time_ns, exemplars in rows:
        for exemplar in exemplars:
            at = int(exemplar.get("timeUnixNano") or time_ns)
            found[key].append(
                (at, exemplar.get("traceId", ""), exemplar.get("spanId", ""), exemplar)
            )
    for key, exemplars in found.items():
        if key in series:
            exemplars.sort(key=lambda e: e[:3], reverse=True)
            series[key]["exemplars"] = [e[3] for e in exemplars[:MAX_EXEMPLARS]]


# The event


def _event(envelope: Envelope, window: str, start: datetime, series: list[dict]) -> Envelope:
    computation = _digest(series)
    return build_envelope(
        tenant_id=envelope.tenant_id,
        type="MetricAggregated",
        data={
            "window": window,
            "windowStart": start.isoformat(),
            "windowEnd": (start + WINDOWS[window]).isoformat(),
            "series": len(series),
            "points": sum(s["points"] for s in series),
            "metrics": sorted({s["name"] for s in series}),
            "computation": computation,
        },
        source="MetricAggregationWorker",
        source_id=f"{window}|{start.isoformat()}",
        correlation_id=envelope.correlation_id or str(envelope.event_id),
        event_id=uuid.uuid5(
            EVENT_NAMESPACE, f"{envelope.tenant_id}|{window}|{start.isoformat()}|{computation}"
        ),
    )


def _digest(series: list[dict]) -> str:
    """A fingerprint of a window's result: the same rows give the same event id."""
    text = json.dumps(_normal(series), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _normal(value):
    """Floats to 12 significant digits, so that summation order cannot change a digest."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value
