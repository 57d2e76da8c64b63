"""Metric aggregation: one tenant's raw MetricPoints rolled into 1m, 5m and 1h MetricSeries by
MetricAggregationWorker's handler on PostgreSQL, beside anchors measured in the same run.

The points: SERIES series (gauges; cumulative counters, a few of which restart; cumulative
up-down counters; delta sums; delta and cumulative histograms with 10 bounds, a fifth of their
points with an exemplar), one point every 10 s over MINUTES minutes of one hour, each received
3 s after its time as a live exporter sends them, stored by core.bulk.insert (COPY).

Timed: `observability.aggregation.aggregate`, called in-process (no qcluster; the handler as a
drain runs it: its transaction, its upserts, its MetricAggregated events) for every
ScheduleFired slot that covers the points, in the order the schedules fire them. The figure is
raw points per second to roll every point into all three window sizes: points / (time of the
1m slots + the 5m slots + the 1h slot).

Anchors, under the handler's own session settings:
- GROUP BY: one plain `SELECT ... GROUP BY series_key, window` per window size over the same
  rows (count, sum, min, max, mean): the database's floor for the arithmetic, nothing written;
- COPY: storing the same points (core.bulk.insert);
- write floor: the handler's own MetricSeries rows inserted again, one transaction per slot, by
  INSERT ... SELECT from a copy: what writing the result costs, nothing computed.

Then untimed checks: a row per series and window, gauges equal to the GROUP BY, and a window
run again gives the same rows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Its own database by default: the benchmark truncates the metric tables.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_metrics"
STEP_SECONDS = 10
SECOND = 1_000_000_000
BOUNDS = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0]
GOAL = 100_000  # points/s
# Each kind of series: its share, metric name, unit, OTLP kind and temporality, monotonic.
SERIES_KINDS = {
    "gauge": (0.35, "system.cpu.utilization", "1", 1, 0, False),
    "counter": (0.25, "http.server.requests", "1", 2, 2, True),
    "updown": (0.05, "queue.depth", "1", 2, 2, False),
    "delta_sum": (0.15, "messages.processed", "1", 2, 1, True),
    "delta_histogram": (0.10, "rpc.server.duration", "ms", 3, 1, False),
    "cumulative_histogram": (0.10, "http.server.duration", "ms", 3, 2, False),
}


def hour_start(hours_ago: int) -> datetime:
    """An hour-aligned start in the past, well inside the handler's 24-hour lookback."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours_ago)


# The points


def kinds(n: int) -> list[str]:
    mix = []
    for kind, (share, *_) in SERIES_KINDS.items():
        mix += [kind] * round(n * share)
    return (mix + ["gauge"] * n)[:n]


def make_points(tenant_id, start: datetime, *, series: int, minutes: int) -> list:
    from observability.aggregation import to_ns
    from observability.metrics import series_key
    from observability.models import MetricPoint

    rng = random.Random(7)
    t0, steps = to_ns(start), minutes * 60 // STEP_SECONDS
    rows = []
    for s, kind in enumerate(kinds(series)):
        _, name, unit, otlp_kind, temporality, monotonic = SERIES_KINDS[kind]
        resource = {"service.name": f"svc-{s % 25}", "host.name": f"host-{s % 80}"}
        attributes = {"route": f"/api/v1/r{s}", "status": str(200 + s % 3)}
        identity = {
            "tenant_id": tenant_id,
            "name": name,
            "unit": unit,
            "kind": otlp_kind,
            "temporality": temporality,
            "monotonic": monotonic,
            "series_key": series_key(name, resource, "bench", attributes),
            "resource": resource,
            "scope": "bench",
            "attributes": attributes,
        }
        state = {"start_ns": t0 - 3600 * SECOND, "value": 0.0, "counts": [0] * 11, "sum": 0.0}
        restart_at = rng.randrange(steps) if kind == "counter" and s % 20 == 0 else -1
        for i in range(steps):
            time_ns = t0 + (i * STEP_SECONDS + rng.randint(0, 2)) * SECOND
            point = {
                **identity,
                "time_ns": time_ns,
                "received_at": start + timedelta(seconds=i * STEP_SECONDS + 3),
                **_values(rng, kind, state, time_ns, restart=i == restart_at),
            }
            rows.append(MetricPoint(**point))
    return rows


def _values(rng: random.Random, kind: str, state: dict, time_ns: int, *, restart: bool) -> dict:
    """The next point of a series of `kind`, advancing its `state`."""
    if kind == "gauge":
        state["value"] = max(0.0, state["value"] + rng.uniform(-5, 5))
        return {"start_ns": 0, "value": state["value"]}
    if kind in ("counter", "updown"):
        if restart:  # the process restarted: a new run from zero
            state["start_ns"], state["value"] = time_ns - 4 * SECOND, 0.0
        step = rng.randint(0, 50) if kind == "counter" else rng.randint(-10, 10)
        state["value"] += step
        return {"start_ns": state["start_ns"], "value": state["value"]}
    if kind == "delta_sum":
        return {"start_ns": time_ns - STEP_SECONDS * SECOND, "value": float(rng.randint(0, 50))}
    new = [rng.randint(0, 6) for _ in state["counts"]]
    observed = sum(n * b for n, b in zip(new, [*BOUNDS, 6000.0], strict=True))
    if kind == "delta_histogram":
        counts, total, start_ns = new, observed, time_ns - STEP_SECONDS * SECOND
    else:
        state["counts"] = [a + b for a, b in zip(state["counts"], new, strict=True)]
        state["sum"] += observed
        counts, total, start_ns = state["counts"], state["sum"], state["start_ns"]
    return {
        "start_ns": start_ns,
        "count": sum(counts),
        "sum": total,
        "min": 1.0,
        "max": 5500.0,
        "buckets": {"bounds": BOUNDS, "counts": list(counts)},
        "exemplars": [_exemplar(rng, time_ns)] if rng.random() < 0.2 else [],
    }


def _exemplar(rng: random.Random, time_ns: int) -> dict:
    return {
        "traceId": f"{rng.getrandbits(128):032x}",
        "spanId": f"{rng.getrandbits(64):016x}",
        "value": rng.uniform(1, 5000),
        "timeUnixNano": time_ns - rng.randint(0, 9) * SECOND,
        "attributes": {},
    }


def store(rows: list) -> float:
    """COPY the rows into MetricPoint: seconds."""
    from django.db import connection

    from core import bulk
    from observability.metrics import POINT_COLUMNS
    from observability.models import MetricPoint

    started = time.perf_counter()
    bulk.insert(MetricPoint, rows, columns=POINT_COLUMNS)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:  # planner statistics, as autovacuum would have them
        cursor.execute(f"ANALYZE {MetricPoint._meta.db_table}")
    return elapsed


# The handler, slot by slot


def slots(start: datetime, minutes: int) -> list[tuple[str, datetime]]:
    """The ScheduleFired slots (window, windowStart) covering the points, in firing order:
    by window end, the shorter window first when two end together."""
    from observability.aggregation import WINDOWS

    found = []
    for window, size in WINDOWS.items():
        n = -(-timedelta(minutes=minutes) // size)  # windows holding a point: ceiling
        found += [(window, start + k * size) for k in range(n)]
    return sorted(found, key=lambda s: (s[1] + WINDOWS[s[0]], WINDOWS[s[0]]))


def fire(tenant_id, window: str, window_start: datetime) -> None:
    from core.services import build_envelope
    from observability import aggregation

    end = window_start + aggregation.WINDOWS[window]
    data = {
        "schedule": window,
        "windowStart": window_start.isoformat(),
        "windowEnd": end.isoformat(),
    }
    aggregation.aggregate(build_envelope(tenant_id=tenant_id, type="ScheduleFired", data=data))


def roll_up(tenant_id, start: datetime, minutes: int) -> dict[str, float]:
    """Seconds spent in the handler per window size."""
    from observability.aggregation import WINDOWS

    spent = dict.fromkeys(WINDOWS, 0.0)
    for window, window_start in slots(start, minutes):
        started = time.perf_counter()
        fire(tenant_id, window, window_start)
        spent[window] += time.perf_counter() - started
    return spent


# The anchors

_GROUP_BY = """
SELECT series_key, (time_ns - %(origin)s) / %(size)s AS w,
    COUNT(*), SUM(value), MIN(value), MAX(value), AVG(value), SUM(count), SUM(sum)
FROM observability_metricpoint
WHERE tenant_id = %(tenant)s AND time_ns >= %(lo)s AND time_ns < %(hi)s
GROUP BY series_key, w
"""


def group_by(tenant_id, start: datetime, minutes: int) -> tuple[float, dict]:
    """One plain GROUP BY per window size over the same rows: seconds (the median of three
    passes), and the 1m groups to check gauges with."""
    from django.db import connection, transaction

    from observability.aggregation import EPOCH, STATEMENT_SETTINGS, WINDOWS, to_ns

    lo = to_ns(start)
    params = {"origin": lo, "tenant": tenant_id, "lo": lo, "hi": lo + minutes * 60 * SECOND}
    passes, minute_groups = [], {}
    with transaction.atomic(), connection.cursor() as cursor:
        for name, value in STATEMENT_SETTINGS.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        for _ in range(3):
            started = time.perf_counter()
            for window, size in WINDOWS.items():
                cursor.execute(_GROUP_BY, {**params, "size": to_ns(EPOCH + size)})
                rows = cursor.fetchall()
                if window == "1m":
                    minute_groups = {(r[0], r[1]): r for r in rows}
            passes.append(time.perf_counter() - started)
    return statistics.median(passes), minute_groups


_SERIES_COLUMNS = (
    'tenant_id, series_key, "window", window_start, window_end, computed_at, name, unit, kind, '
    "temporality, monotonic, resource, scope, attributes, points, delta, last, count, sum, "
    "min, max, mean, buckets, p50, p95, p99, exemplars, resets, notes"
)


def write_floor(tenant_id) -> float:
    """The handler's MetricSeries rows written again, one transaction per window as the
    handler does, from a copy: seconds. Leaves the same rows (with new ids) behind."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE series_copy AS SELECT {_SERIES_COLUMNS} "
            "FROM observability_metricseries WHERE tenant_id = %s",
            [tenant_id],
        )
        cursor.execute('SELECT DISTINCT "window", window_start FROM series_copy')
        windows = cursor.fetchall()
        cursor.execute("DELETE FROM observability_metricseries WHERE tenant_id = %s", [tenant_id])
    elapsed = 0.0
    for window, window_start in windows:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO observability_metricseries ({_SERIES_COLUMNS}) "
                f"SELECT {_SERIES_COLUMNS} FROM series_copy "
                'WHERE "window" = %s AND window_start = %s',
                [window, window_start],
            )
        elapsed += time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE series_copy")
    return elapsed


# Checks, untimed: the figure means nothing if the rows are wrong


def check(tenant_id, start: datetime, minutes: int, series: int, minute_groups: dict) -> int:
    """A row per series and window; gauges agree with the GROUP BY; a window computed again
    gives the same rows. Returns the number of MetricSeries rows."""
    import math

    from observability.aggregation import WINDOWS
    from observability.aggregation_sql import VALUE_FIELDS
    from observability.models import MetricPoint, MetricSeries

    rows = MetricSeries.objects.filter(tenant_id=tenant_id)
    expected = sum(series * -(-minutes * 60 // int(s.total_seconds())) for s in WINDOWS.values())
    assert rows.count() == expected, f"{rows.count()} MetricSeries rows, not {expected}"
    for row in rows.filter(window="1m", kind=MetricPoint.Kind.GAUGE).iterator():
        w = (row.window_start - start) // timedelta(minutes=1)
        _, _, count, _, low, high, mean, _, _ = minute_groups[(row.series_key, w)]
        assert (row.count, row.min, row.max) == (count, low, high), row
        assert math.isclose(row.mean, mean, rel_tol=1e-12), row
    window, window_start = slots(start, minutes)[-1]
    again = rows.filter(window=window, window_start=window_start).order_by("id")
    fields = ["id", "series_key", *VALUE_FIELDS]
    before = list(again.values_list(*fields))
    fire(tenant_id, window, window_start)
    assert list(again.values_list(*fields)) == before, "re-running a window changed its rows"
    return expected


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE observability_metricpoint, observability_metricseries, core_event, "
            "core_message, core_failure, core_deadletter, core_handledkey, django_q_ormq "
            "CASCADE"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=10, choices=range(1, 61))
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)  # the no-op benchmark worker has no part here
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    from core.models import Tenant

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    reset_tables()
    tenant = Tenant.objects.get_or_create(slug="bench-metrics")[0]
    start = hour_start(hours_ago=3)
    points = make_points(tenant.pk, start, series=args.series, minutes=args.minutes)
    n = len(points)
    copy = n / store(points)
    group_seconds, minute_groups = group_by(tenant.pk, start, args.minutes)
    spent = roll_up(tenant.pk, start, args.minutes)
    rows = check(tenant.pk, start, args.minutes, args.series, minute_groups)
    written = n / write_floor(tenant.pk)
    rate, grouped = n / sum(spent.values()), n / group_seconds
    each = "  ".join(f"{w} {n / s:,.0f}/s" for w, s in spent.items())
    print(f"""
metrics: {n:,} points ({args.series:,} series, one every {STEP_SECONDS} s for {args.minutes} min: \
gauges, counters,
up-down counters, delta sums, delta and cumulative histograms), one tenant, PostgreSQL; the
handler in-process for {len(slots(start, args.minutes))} ScheduleFired slots, {rows:,} \
MetricSeries rows
  rolled into 1m + 5m + 1h (handler)    {rate:10,.0f} points/s   ({each})
  GROUP BY per window size (anchor)     {grouped:10,.0f} points/s
  COPY of the points (anchor)           {copy:10,.0f} points/s
  the result rows written (write floor) {written:10,.0f} points/s
  ratio to GROUP BY                     {rate / grouped:10.2f}        (goal: >= {GOAL:,} points/s)
""")


if __name__ == "__main__":
    main()
