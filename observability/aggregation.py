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
  (cumulative points turned into deltas by the same rules, using count as the value; a
  bucket count that dropped under the same start and bounds is a reset too); only
  points whose bounds equal the newest point's bounds merge into `buckets`, the others still
  count in count and sum and are counted in notes["boundsChanged"]. min and max are the
  points' own for delta points and first points of runs; for later cumulative points only a
  min or max that changed since the previous point is known to fall in the window.
  p50/p95/p99 are estimated from the merged buckets by linear interpolation: bucket i holds
  the observations in (bounds[i-1], bounds[i]], the first open below, the last open above.
  The rank is q * total count; the estimate is in the first non-empty bucket whose count
  reaches the rank, entered at its lower edge and left at its upper edge, the rank's share of
  the bucket's count along the way: lower + (upper - lower) * (rank - before) / count. Edges
  are clamped to the window's min and max when known; an open first bucket without a min
  starts at 0 (or at its upper bound if that is negative), an open last bucket without a max
  ends where it starts. None for an empty histogram.
- Exponential histogram: count, sum, min and max only (no buckets, no percentiles).
- Summary: count and sum as increases (summaries carry no temporality: treated as
  cumulative, which also handles delta-like points, whose start is the previous time); the
  newest point's quantiles in `buckets`, and p50/p95/p99 where it has exactly those.
- Exemplars of every kind: up to MAX_EXEMPLARS per series window, newest first, as stored
  (trace ids kept).

The database does the arithmetic, in one statement per window that observability.aggregation_sql
builds: it reads the window's points (and each cumulative series' point before it), turns them
into increases with LAG, groups them per series, merges buckets, estimates percentiles, keeps
exemplars and upserts the rows. It never runs in parallel, and each series' floats are added
in one order (time order for cumulative sums and distributions, the points' stored order for
gauges and delta sums), so re-running a window over the same points gives the same floats.
A series whose points changed kind within a window is reported as one of them, distributions
first, then cumulative sums, delta sums and gauges.

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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Subquery,
)
from django.utils import timezone

from core.envelope import Envelope, TenantId
from core.runtime.errors import PermanentError
from core.services import build_envelope, publish_envelopes
from observability.aggregation_sql import DISTRIBUTIONS, window_sql
from observability.models import MetricPoint, MetricSeries

Kind, Temporality = MetricPoint.Kind, MetricPoint.Temporality
WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
LOOKBACK = timedelta(hours=24)
SETTLE = timedelta(seconds=5)
EVENT_NAMESPACE = uuid.UUID("0b7e9f3c-5d1a-4c55-8f0e-2a6d3c9b7e41")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class Computed:
    """What one window's computation wrote, for its MetricAggregated event."""

    series: int
    points: int
    metrics: list[str]
    computation: str  # a digest of the rows' values: the same rows give the same event id


@transaction.atomic
def aggregate(envelope: Envelope) -> None:
    """The handler: compute the slot's window and the earlier ones that received points."""
    window, start = _slot(envelope.data)
    now = timezone.now()
    events = []
    with _statement_settings():
        for window_start in sorted({*late_windows(envelope.tenant_id, window, start), start}):
            computed = aggregate_window(envelope.tenant_id, window, window_start, now=now)
            if computed:
                events.append(_event(envelope, window, window_start, computed))
    if events:
        publish_envelopes(events)


# PostgreSQL settings while the handler runs, local to its transaction and put back after. JIT
# would compile each window's statement, which takes seconds (its estimates of JSON rows are
# rough, so its cost looks huge) to save nothing on thousands of rows; and a window's points
# sorted in memory need more than the default 4MB (about 250 bytes a point).
STATEMENT_SETTINGS = {"jit": "off", "work_mem": "64MB"}


@contextmanager
def _statement_settings() -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    names = list(STATEMENT_SETTINGS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names)
        previous = cursor.fetchone()
        _set(cursor, dict(zip(names, STATEMENT_SETTINGS.values(), strict=True)))
    yield
    # Not in a finally: after an error the transaction rolls back, and the settings with it.
    with connection.cursor() as cursor:
        _set(cursor, dict(zip(names, previous, strict=True)))


def _set(cursor, settings: dict[str, str]) -> None:
    cursor.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in settings),
        [x for pair in settings.items() for x in pair],
    )


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


def late_windows(tenant_id: TenantId, window: str, start: datetime) -> set[datetime]:
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


def aggregate_window(
    tenant_id: TenantId, window: str, start: datetime, *, now: datetime
) -> Computed | None:
    """Compute and store one window's series in one statement; None when it has no points."""
    end = start + WINDOWS[window]
    ops = connection.ops
    params = {
        "tenant": _tenant_param(tenant_id),
        "lo": to_ns(start),
        "hi": to_ns(end),
        "window": window,
        "start": ops.adapt_datetimefield_value(start),
        "end": ops.adapt_datetimefield_value(end),
        "now": ops.adapt_datetimefield_value(now),
    }
    stored = MetricSeries.objects.filter(tenant_id=tenant_id, window=window, window_start=start)
    # A window computed for the first time has no rows to update: a plain INSERT spares every
    # row the conflict check. (A concurrent first run then fails on the unique constraint, a
    # transient error, and its retry updates.)
    fresh = not stored.exists()
    with connection.cursor() as cursor:
        cursor.execute(window_sql(connection.vendor, upsert=not fresh), params)
        rows = sorted(cursor.fetchall())
    if not fresh:
        stored.exclude(computed_at=now).delete()  # series no longer in the window
    if not rows:
        return None
    digest = hashlib.sha256()
    for key, _, _, fingerprint in rows:
        digest.update(f"{key}|{fingerprint}\n".encode())
    return Computed(
        series=len(rows),
        points=sum(points for _, _, points, _ in rows),
        metrics=sorted({name for _, name, _, _ in rows}),
        computation=digest.hexdigest()[:32],
    )


def _tenant_param(tenant_id: TenantId):
    field = MetricPoint._meta.get_field("tenant").target_field
    return field.get_db_prep_value(tenant_id, connection)


# The event


def _event(envelope: Envelope, window: str, start: datetime, computed: Computed) -> Envelope:
    return build_envelope(
        tenant_id=envelope.tenant_id,
        type="MetricAggregated",
        data={
            "window": window,
            "windowStart": start.isoformat(),
            "windowEnd": (start + WINDOWS[window]).isoformat(),
            "series": computed.series,
            "points": computed.points,
            "metrics": computed.metrics,
            "computation": computed.computation,
        },
        source="MetricAggregationWorker",
        source_id=f"{window}|{start.isoformat()}",
        correlation_id=envelope.correlation_id or str(envelope.event_id),
        event_id=uuid.uuid5(
            EVENT_NAMESPACE,
            f"{envelope.tenant_id}|{window}|{start.isoformat()}|{computed.computation}",
        ),
    )
