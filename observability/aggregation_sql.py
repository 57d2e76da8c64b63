"""The SQL of MetricAggregationWorker's window computation (observability.aggregation).

`window_sql` builds the one statement that computes and stores one window of one tenant, for
PostgreSQL or SQLite: it reads the window's points (and each cumulative series' point before
it), turns them into increases with LAG, groups them per series, merges buckets, estimates
percentiles, keeps exemplars and upserts the MetricSeries rows. The rules it implements are
observability.aggregation's docstring; the handler there decides which windows to compute
and runs it. Built once per database and mode (cached): only the parameters change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from observability.models import MetricPoint, MetricSeries

Kind, Temporality = MetricPoint.Kind, MetricPoint.Temporality
MAX_EXEMPLARS = 10
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
DISTRIBUTIONS = (Kind.HISTOGRAM, Kind.EXPONENTIAL_HISTOGRAM, Kind.SUMMARY)
# The MetricSeries columns a window's computation writes (besides its key and computed_at).
VALUE_FIELDS = [
    "window_end", "name", "unit", "kind", "temporality", "monotonic", "resource", "scope",
    "attributes", "points", "delta", "last", "count", "sum", "min", "max", "mean", "buckets",
    "p50", "p95", "p99", "exemplars", "resets", "notes",
]  # fmt: skip


@dataclass(frozen=True)
class _Dialect:
    """The few JSON, collation and join spellings that differ between PostgreSQL and SQLite."""

    collate: str  # byte order for series keys: cheap comparisons in PostgreSQL's sorts
    uncollate: str  # back to the column's own collation, to join with other series keys
    array_length: str
    type_of: str
    build_object: str
    build_array: str
    elements_sql: str  # {x}: a JSON array, {a}: alias; columns {a}.value and index_sql
    index_sql: str  # the 0-based index of an element of elements_sql
    element_sql: str  # an element as JSON, to aggregate into an array
    indices_sql: str  # {x}: bounds; rows {a}.key from 0 to len(bounds), one per bucket
    aggregate_sql: str  # {x} into a JSON array, {order}: the order (SQLite: input order)
    strip_nulls_sql: str
    json_sql: str  # a JSON value read back from a column
    fingerprint_sql: str  # {x}: columns, comma-separated
    same_sql: str  # {a} equals {b}, NULL equal to NULL
    dropped_sql: str  # {a} and {b}: counts of the same length; some count of a is under b's
    # FROM a series s, to its newest point p before the window ({columns}: p's columns).
    baseline_sql: str
    # Keeps a subquery from being merged into the next, which would evaluate its expressions
    # once per reference there.
    fence: str
    # Computes a small per-series result once: the planner cannot estimate its rows, and a
    # nested loop over it would otherwise compute it again for every outer row.
    materialized: str

    def is_array(self, x: str) -> str:
        return f"{self.type_of}({x}) = 'array'"

    def elements(self, x: str, a: str) -> str:
        return self.elements_sql.format(x=x, a=a)

    def index(self, a: str) -> str:
        return self.index_sql.format(a=a)

    def element(self, a: str) -> str:
        return self.element_sql.format(a=a)

    def indices(self, x: str, a: str) -> str:
        return self.indices_sql.format(x=x, a=a)

    def aggregate(self, x: str, order: str) -> str:
        return self.aggregate_sql.format(x=x, order=order)

    def strip_nulls(self, x: str) -> str:
        return self.strip_nulls_sql.format(x=x)

    def json(self, x: str) -> str:
        return self.json_sql.format(x=x)

    def fingerprint(self, columns: list[str]) -> str:
        return self.fingerprint_sql.format(x=", ".join(columns))

    def same(self, a: str, b: str) -> str:
        return self.same_sql.format(a=a, b=b)

    def dropped(self, a: str, b: str) -> str:
        return self.dropped_sql.format(a=a, b=b)

    def baseline(self, table: str, columns: str) -> str:
        return self.baseline_sql.format(table=table, columns=columns)


_POSTGRESQL = _Dialect(
    collate=' COLLATE "C"',
    uncollate=' COLLATE "default"',
    array_length="jsonb_array_length",
    type_of="jsonb_typeof",
    build_object="jsonb_build_object",
    build_array="jsonb_build_array",
    elements_sql="jsonb_array_elements({x}) WITH ORDINALITY AS {a}(value, ord)",
    index_sql="CAST({a}.ord - 1 AS INTEGER)",
    element_sql="{a}.value",
    indices_sql="generate_series(0, jsonb_array_length({x})) AS {a}(key)",
    aggregate_sql="jsonb_agg({x} ORDER BY {order})",
    strip_nulls_sql="jsonb_strip_nulls({x})",
    json_sql="{x}",
    # 64 bits a row from the values as stored, without rendering them as text.
    fingerprint_sql="hash_record_extended(ROW({x}), 0)",
    same_sql="{a} IS NOT DISTINCT FROM {b}",
    dropped_sql="""EXISTS (SELECT 1 FROM generate_series(0, jsonb_array_length({a}) - 1) AS g(i)
        WHERE CAST({a} ->> g.i AS BIGINT) < CAST({b} ->> g.i AS BIGINT))""",
    # One backward step of the (tenant, series_key, time_ns) index per series.
    baseline_sql="""cumulative s CROSS JOIN LATERAL (
        SELECT {columns} FROM {table} p
        WHERE p.tenant_id = %(tenant)s AND p.series_key = s.series_key AND p.time_ns < %(lo)s
        ORDER BY p.time_ns DESC LIMIT 1
    ) p""",
    fence="OFFSET 0",
    materialized=" MATERIALIZED",
)
_SQLITE = _Dialect(
    collate="",
    uncollate="",
    array_length="json_array_length",
    type_of="json_type",
    build_object="json_object",
    build_array="json_array",
    elements_sql="json_each({x}) AS {a}",
    index_sql="{a}.key",
    element_sql="json({a}.value)",
    indices_sql="json_each(json_insert({x}, '$[#]', 0)) AS {a}",
    aggregate_sql="json_group_array(json({x}))",
    strip_nulls_sql="json_patch('{{}}', {x})",
    json_sql="json({x})",
    fingerprint_sql="json_array({x})",
    same_sql="{a} IS {b}",
    dropped_sql="""EXISTS (SELECT 1 FROM json_each({a}) AS g
        WHERE CAST(g.value AS BIGINT) < CAST({b} ->> g.key AS BIGINT))""",
    baseline_sql="""cumulative s JOIN {table} p ON p.tenant_id = %(tenant)s
        AND p.series_key = s.series_key AND p.time_ns = (
            SELECT MAX(q.time_ns) FROM {table} q
            WHERE q.tenant_id = %(tenant)s AND q.series_key = s.series_key
                AND q.time_ns < %(lo)s
        )""",
    fence="",
    materialized="",
)

# Families of points, each aggregated by its own rules (0: a number point without a value).
GAUGE, DELTA_SUM, CUMULATIVE_SUM, DISTRIBUTION = 1, 2, 3, 4
# What a distribution point adds to its window: nothing, its whole value (a run's start, a
# delta point), its whole value after an unmarked reset, or its increase over the point before.
NOTHING, WHOLE, RESET, INCREASE = 0, 1, 2, 3


def _family(p: str = "") -> str:
    distributions = ", ".join(str(int(k)) for k in DISTRIBUTIONS)
    return f"""CASE
        WHEN {p}kind IN ({distributions}) THEN {DISTRIBUTION}
        WHEN {p}value IS NULL THEN 0
        WHEN {p}kind = {Kind.GAUGE:d} THEN {GAUGE}
        WHEN {p}kind = {Kind.SUM:d} AND {p}temporality = {Temporality.DELTA:d} THEN {DELTA_SUM}
        WHEN {p}kind = {Kind.SUM:d} THEN {CUMULATIVE_SUM}
        ELSE 0 END"""


# The columns of a point that the families' computations read, window or baseline.
_POINT_COLUMNS = [
    "series_key", "kind", "temporality", "monotonic", "start_ns", "time_ns", "value", "count",
    "sum", "min", "max",
]  # fmt: skip
# Per series: the families' results in one shape, for the upsert.
_FOUND_COLUMNS = [
    "series_key", "fam", "points", "delta", "count", "sum", "min", "max", "mean", "resets",
    "gaps", "overlapped", "bounds_changed", "newest_ns",
]  # fmt: skip


@cache
def window_sql(vendor: str, *, upsert: bool = True) -> str:
    """One window of one tenant: INSERT ... SELECT (ON CONFLICT DO UPDATE when `upsert`),
    RETURNING each row's series_key, name, points and a fingerprint of its values (for the
    event's digest). Parameters: tenant, lo and hi (time_ns), window, start, end, now.

    Gauges and delta sums are grouped straight from the window's points; cumulative sums and
    distributions each go through one sort of their own points (and baselines) for LAG."""
    d = _POSTGRESQL if vendor == "postgresql" else _SQLITE
    points, series = MetricPoint._meta.db_table, MetricSeries._meta.db_table
    histogram = f"{Kind.HISTOGRAM:d}"
    columns = ", ".join(_POINT_COLUMNS)
    p_columns = ", ".join(f"p.{c}" for c in _POINT_COLUMNS)
    return f"""
WITH win AS (
    SELECT {columns}, {_histogram_columns(d)}, exemplars, {_family()} AS fam
    FROM {points}
    WHERE tenant_id = %(tenant)s AND time_ns >= %(lo)s AND time_ns < %(hi)s
), cumulative AS (
    SELECT DISTINCT series_key FROM win
    WHERE fam = {CUMULATIVE_SUM}
        OR (fam = {DISTRIBUTION} AND temporality <> {Temporality.DELTA:d})
), base AS (
    -- Each cumulative series' newest point before the window: the first one's baseline.
    SELECT {p_columns}, {_histogram_columns(d, "p.")}, {_family("p.")} AS fam
    FROM {d.baseline(points, p_columns + ", p.buckets")}
), {_plain_sql(d)}, {_sums_sql(d)}, {_distributions_sql(d)}, found AS (
    SELECT {", ".join(_FOUND_COLUMNS)} FROM plain
    UNION ALL SELECT {", ".join(_FOUND_COLUMNS)} FROM sums
    UNION ALL SELECT {", ".join(_FOUND_COLUMNS)} FROM dists
), chosen AS (
    -- One family per series; its identity, `last` and bounds as its newest point has them.
    SELECT f.*, n.name, n.unit, n.kind, n.temporality, n.monotonic, n.resource, n.scope,
        n.attributes, n.value AS newest_value, n.buckets AS newest_buckets,
        CASE WHEN f.fam = {DISTRIBUTION} AND n.kind = {histogram}
            AND {d.is_array("n.buckets -> 'bounds'")} THEN n.buckets -> 'bounds' END AS bounds
    FROM (
        SELECT found.*, ROW_NUMBER() OVER (PARTITION BY series_key ORDER BY fam DESC) AS pick
        FROM found
    ) f
    JOIN {points} n ON n.tenant_id = %(tenant)s AND n.series_key = f.series_key
        AND n.time_ns = f.newest_ns
    WHERE f.pick = 1
), {_histograms_sql(d)}, {_exemplars_sql(d)}
{_upsert_sql(d, series, upsert=upsert)}
"""


def _plain_sql(d: _Dialect) -> str:
    """Gauges and delta sums: GROUP BY alone."""
    return f"""plain AS (
    SELECT series_key, fam, COUNT(*) AS points,
        CASE WHEN fam = {DELTA_SUM} THEN SUM(value) END AS delta,
        CASE WHEN fam = {GAUGE} THEN COUNT(*) END AS count,
        CAST(NULL AS DOUBLE PRECISION) AS sum,
        CASE WHEN fam = {GAUGE} THEN MIN(value) END AS min,
        CASE WHEN fam = {GAUGE} THEN MAX(value) END AS max,
        -- Not AVG: PostgreSQL's AVG of doubles also sums squares (for a variance), which
        -- overflow, failing the statement, from values of about 1e154.
        CASE WHEN fam = {GAUGE} THEN SUM(value) / COUNT(*) END AS mean,
        0 AS resets, 0 AS gaps, 0 AS overlapped, 0 AS bounds_changed,
        MAX(time_ns) AS newest_ns
    FROM win
    WHERE fam IN ({GAUGE}, {DELTA_SUM})
    GROUP BY series_key, fam
)"""


def _sums_sql(d: _Dialect) -> str:
    """Cumulative sums: each point's increase over the one before it (module docstring)."""
    run_start = "(prev_time IS NULL OR start_ns <> prev_start)"
    unknown_start = "(start_ns = 0 OR start_ns >= time_ns)"
    dropped = "(monotonic AND value < prev_value)"
    return f"""sums AS (
    SELECT sk{d.uncollate} AS series_key, {CUMULATIVE_SUM} AS fam, COUNT(*) AS points,
        SUM(CASE
            WHEN {run_start} THEN CASE
                WHEN {unknown_start} THEN 0
                WHEN prev_time IS NOT NULL AND start_ns < prev_time THEN 0  -- an overlap
                ELSE value END
            WHEN {dropped} THEN value
            ELSE value - prev_value
        END) AS delta,
        CAST(NULL AS BIGINT) AS count, CAST(NULL AS DOUBLE PRECISION) AS sum,
        CAST(NULL AS DOUBLE PRECISION) AS min, CAST(NULL AS DOUBLE PRECISION) AS max,
        CAST(NULL AS DOUBLE PRECISION) AS mean,
        SUM(CASE WHEN prev_time IS NOT NULL AND (start_ns <> prev_start OR {dropped})
            THEN 1 ELSE 0 END) AS resets,
        SUM(CASE WHEN prev_time IS NOT NULL AND start_ns <> prev_start
            AND start_ns > prev_time THEN 1 ELSE 0 END) AS gaps,
        SUM(CASE WHEN prev_time IS NOT NULL AND start_ns <> prev_start
            AND NOT {unknown_start} AND start_ns < prev_time THEN 1 ELSE 0 END) AS overlapped,
        0 AS bounds_changed,
        MAX(time_ns) AS newest_ns
    FROM (
        SELECT sk, in_window, monotonic, start_ns, time_ns, value,
            LAG(start_ns) OVER w AS prev_start,
            LAG(time_ns) OVER w AS prev_time,
            LAG(value) OVER w AS prev_value
        FROM (
            SELECT series_key{d.collate} AS sk, 1 AS in_window, monotonic, start_ns,
                time_ns, value
            FROM win WHERE fam = {CUMULATIVE_SUM}
            UNION ALL
            SELECT series_key{d.collate} AS sk, 0 AS in_window, monotonic, start_ns,
                time_ns, value
            FROM base WHERE fam = {CUMULATIVE_SUM}
        ) pts
        WINDOW w AS (PARTITION BY sk ORDER BY time_ns)
    ) steps
    WHERE in_window = 1
    GROUP BY sk
)"""


def _histogram_columns(d: _Dialect, p: str = "") -> str:
    """A histogram point's bounds (as stored) and counts (when an array), read once."""
    histogram = f"{p}kind = {Kind.HISTOGRAM:d}"
    counts = f"{p}buckets -> 'counts'"
    return (
        f"CASE WHEN {histogram} THEN {p}buckets -> 'bounds' END AS bounds, "
        f"CASE WHEN {histogram} AND {d.is_array(counts)} THEN {counts} END AS counts"
    )


def _distributions_sql(d: _Dialect) -> str:
    """Histograms, exponential histograms and summaries: the sums' rules with count as the
    value, plus sum, min, max and what the bucket merge needs, in one pass over one sort: each
    point beside the one before it (LAG) and its series' newest point (LAST_VALUE)."""
    run_start = "(LAG(time_ns) OVER w IS NULL OR start_ns <> LAG(start_ns) OVER w)"
    no_start = (
        "(start_ns = 0 OR start_ns >= time_ns "
        "OR (LAG(time_ns) OVER w IS NOT NULL AND start_ns < LAG(time_ns) OVER w))"
    )
    same_buckets = f"""CASE WHEN counts IS NOT NULL AND LAG(counts) OVER w IS NOT NULL
            AND {d.same("bounds", "LAG(bounds) OVER w")} AND n_counts = LAG(n_counts) OVER w
        THEN 1 ELSE 0 END"""
    # A bucket count dropped under the same start and bounds: a reset the producer did not mark.
    bucket_dropped = (
        "(cumulative = 1 AND run_start = 0 AND count_dropped = 0 AND same_buckets = 1 "
        f"AND {d.dropped('counts', 'prev_counts')})"
    )
    columns = "kind, temporality, start_ns, time_ns, count, sum, min, max, bounds, counts"
    pts = f"""series_key{d.collate} AS sk, {columns},
            CASE WHEN {d.is_array("bounds")} THEN bounds END AS array_bounds,
            CASE WHEN {d.is_array("bounds")} THEN {d.array_length}(bounds) END AS n_bounds,
            {d.array_length}(counts) AS n_counts"""
    window = "PARTITION BY sk ORDER BY time_ns"
    return f"""dsteps AS (
    SELECT sk, in_window, start_ns, time_ns, count, sum, min, max, bounds, counts,
        array_bounds, n_bounds, n_counts,
        LAG(time_ns) OVER w AS prev_time,
        LAG(count) OVER w AS prev_count,
        LAG(sum) OVER w AS prev_sum,
        LAG(min) OVER w AS prev_min,
        LAG(max) OVER w AS prev_max,
        LAG(counts) OVER w AS prev_counts,
        CASE WHEN temporality <> {Temporality.DELTA:d} THEN 1 ELSE 0 END AS cumulative,
        CASE WHEN {run_start} THEN 1 ELSE 0 END AS run_start,
        CASE WHEN start_ns = 0 OR start_ns >= time_ns THEN 1 ELSE 0 END AS unknown_start,
        CASE WHEN COALESCE(count, 0) < COALESCE(LAG(count) OVER w, 0) THEN 1 ELSE 0 END
            AS count_dropped,
        {same_buckets} AS same_buckets,
        -- The series' newest point is a histogram with bounds: its window has buckets, which
        -- take the counts of the points with the same bounds.
        CASE WHEN LAST_VALUE(array_bounds) OVER w IS NOT NULL THEN 1 ELSE 0 END AS bucketed,
        CASE WHEN counts IS NOT NULL AND bounds = LAST_VALUE(array_bounds) OVER w
            AND n_counts = LAST_VALUE(n_bounds) OVER w + 1 THEN 1 ELSE 0 END AS mergeable,
        -- Whether the point's contribution, if any, is its own counts or their increase
        -- (as opposed to nothing, or counts without an increase to take).
        CASE
            WHEN temporality = {Temporality.DELTA:d} THEN 1
            WHEN {run_start} THEN CASE WHEN {no_start} THEN 0 ELSE 1 END
            WHEN COALESCE(count, 0) < COALESCE(LAG(count) OVER w, 0) THEN 1
            ELSE {same_buckets}
        END AS merges
    FROM (
        SELECT {pts}, 1 AS in_window FROM win WHERE fam = {DISTRIBUTION}
        UNION ALL
        SELECT {pts}, 0 AS in_window FROM base WHERE fam = {DISTRIBUTION}
    ) pts
    -- LAG ignores the frame; LAST_VALUE (the series' newest point) needs all of it.
    WINDOW w AS ({window} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
), dflagged AS (
    -- Read by three queries below, so computed once: a point's mode, and whether the merged
    -- buckets take its counts (whole, or less those of the point before it).
    SELECT steps.*,
        CASE WHEN mergeable = 1 AND mode = {INCREASE} AND same_buckets = 1 THEN 1 ELSE 0 END
            AS takes_previous
    FROM (
        SELECT dsteps.*,
            CASE
                WHEN cumulative = 0 THEN {WHOLE}
                WHEN run_start = 1 THEN CASE
                    WHEN unknown_start = 1 THEN {NOTHING}
                    WHEN prev_time IS NOT NULL AND start_ns < prev_time THEN {NOTHING}  -- overlap
                    ELSE {WHOLE} END
                WHEN count_dropped = 1 OR {bucket_dropped} THEN {RESET}
                ELSE {INCREASE}
            END AS mode
        FROM dsteps
    ) steps
), dists AS (
    SELECT sk{d.uncollate} AS series_key, {DISTRIBUTION} AS fam, COUNT(*) AS points,
        CAST(NULL AS DOUBLE PRECISION) AS delta,
        COALESCE(SUM(CASE mode WHEN {NOTHING} THEN NULL
            WHEN {INCREASE} THEN COALESCE(count, 0) - COALESCE(prev_count, 0)
            ELSE COALESCE(count, 0) END), 0) AS count,
        SUM(CASE mode WHEN {NOTHING} THEN NULL WHEN {INCREASE} THEN sum - prev_sum
            ELSE sum END) AS sum,
        -- A cumulative point's min or max is known to fall in the window only if it changed.
        MIN(CASE mode WHEN {NOTHING} THEN NULL
            WHEN {INCREASE} THEN CASE WHEN prev_min IS NULL OR min <> prev_min THEN min END
            ELSE min END) AS min,
        MAX(CASE mode WHEN {NOTHING} THEN NULL
            WHEN {INCREASE} THEN CASE WHEN prev_max IS NULL OR max <> prev_max THEN max END
            ELSE max END) AS max,
        CAST(NULL AS DOUBLE PRECISION) AS mean,
        SUM(CASE WHEN cumulative = 1 AND prev_time IS NOT NULL
            AND (run_start = 1 OR mode = {RESET}) THEN 1 ELSE 0 END) AS resets,
        SUM(CASE WHEN cumulative = 1 AND run_start = 1 AND prev_time IS NOT NULL
            AND start_ns > prev_time THEN 1 ELSE 0 END) AS gaps,
        SUM(CASE WHEN cumulative = 1 AND run_start = 1 AND prev_time IS NOT NULL
            AND unknown_start = 0 AND start_ns < prev_time THEN 1 ELSE 0 END) AS overlapped,
        SUM(CASE WHEN mode <> {NOTHING} AND counts IS NOT NULL AND bucketed = 1
            AND NOT (mergeable = 1 AND merges = 1) THEN 1 ELSE 0 END) AS bounds_changed,
        MAX(time_ns) AS newest_ns
    FROM dflagged
    WHERE in_window = 1
    GROUP BY sk
)"""


# The first buckets are summed position by position (cheap: no row per bucket); a histogram
# with more buckets than this (OpenTelemetry SDKs' default has 16) has the rest unnested.
SUMMED_BUCKETS = 16


def _histograms_sql(d: _Dialect) -> str:
    """The merged buckets of each histogram series, and its percentile estimates from the
    buckets that hold their ranks (see the module docstring)."""
    sums = ", ".join(f"SUM({_taken(i)})" for i in range(SUMMED_BUCKETS))
    holds = " OR ".join(_holds(q) for q in PERCENTILES.values())
    estimates = ", ".join(
        f"MAX(CASE WHEN {_holds(q)} THEN lower_edge + (upper_edge - lower_edge) "
        f"* (({_rank(q)} - before) / n) END) AS {name}"
        for name, q in PERCENTILES.items()
    )
    past = f"{d.index('e')} >= {SUMMED_BUCKETS}"
    return f"""summed AS{d.materialized} (
    SELECT sk{d.uncollate} AS series_key, {d.build_array}({sums}) AS sums
    FROM dflagged
    WHERE in_window = 1 AND mergeable = 1 AND merges = 1
    GROUP BY sk
), overflow AS{d.materialized} (
    SELECT series_key, i, SUM(n) AS n FROM (
        SELECT sk{d.uncollate} AS series_key, {d.index("e")} AS i,
            CAST(e.value AS BIGINT) AS n
        FROM dflagged, {d.elements("counts", "e")}
        WHERE in_window = 1 AND mergeable = 1 AND merges = 1
            AND n_counts > {SUMMED_BUCKETS} AND {past}
        UNION ALL
        SELECT sk{d.uncollate} AS series_key, {d.index("e")} AS i,
            -CAST(e.value AS BIGINT) AS n
        FROM dflagged, {d.elements("prev_counts", "e")}
        WHERE in_window = 1 AND takes_previous = 1 AND n_counts > {SUMMED_BUCKETS} AND {past}
    ) cells
    GROUP BY series_key, i
), slots AS (
    SELECT h.series_key, ix.key AS i, h.bounds, h.min AS low, h.max AS high,
        COALESCE(CAST(c.sums ->> ix.key AS BIGINT), o.n, 0) AS n
    FROM chosen h CROSS JOIN {d.indices("h.bounds", "ix")}
    LEFT JOIN summed c ON c.series_key = h.series_key
    LEFT JOIN overflow o ON o.series_key = h.series_key AND o.i = ix.key
    WHERE h.bounds IS NOT NULL
), ranked AS (
    SELECT series_key, i, n, bounds, low, high,
        CAST(SUM(n) OVER (PARTITION BY series_key ORDER BY i) - n AS DOUBLE PRECISION)
            AS before,
        CAST(SUM(n) OVER (PARTITION BY series_key) AS DOUBLE PRECISION) AS total
    FROM slots
), histo AS{d.materialized} (
    SELECT series_key, {d.aggregate("n", "i")} AS counts
    FROM (SELECT series_key, i, n FROM ranked ORDER BY series_key, i) r
    GROUP BY series_key
), holding AS (
    -- At most one bucket per percentile, clamped to the window's min and max.
    SELECT series_key, CAST(n AS DOUBLE PRECISION) AS n, before, total,
        CASE WHEN low IS NULL THEN lower_bound WHEN lower_bound IS NULL THEN low
            WHEN low > lower_bound THEN low ELSE lower_bound END AS lower_edge,
        CASE WHEN high IS NULL THEN upper_bound WHEN upper_bound IS NULL THEN high
            WHEN high < upper_bound THEN high ELSE upper_bound END AS upper_edge
    FROM (
        SELECT ranked.*,
            CASE WHEN i > 0 THEN CAST(bounds ->> (i - 1) AS DOUBLE PRECISION) END
                AS lower_bound,
            CASE WHEN i < {d.array_length}(bounds) THEN CAST(bounds ->> i AS DOUBLE PRECISION)
                END AS upper_bound
        FROM ranked
        WHERE n > 0 AND ({holds}) {d.fence}
    ) r {d.fence}
), opened AS (
    -- An open first bucket starts at 0 (or at its upper edge, if negative).
    SELECT series_key, n, before, total, upper_edge,
        CASE WHEN lower_edge IS NOT NULL THEN lower_edge WHEN upper_edge IS NULL THEN NULL
            WHEN upper_edge < 0.0 THEN upper_edge ELSE 0.0 END AS lower_edge
    FROM holding {d.fence}
), edges AS (
    -- An open last bucket ends where it starts.
    SELECT series_key, n, before, total, COALESCE(upper_edge, lower_edge) AS upper_edge,
        CASE WHEN COALESCE(upper_edge, lower_edge) < lower_edge
            THEN COALESCE(upper_edge, lower_edge) ELSE lower_edge END AS lower_edge
    FROM opened {d.fence}
), estimates AS{d.materialized} (
    SELECT series_key, {estimates}
    FROM edges
    GROUP BY series_key
)"""


def _taken(i: int) -> str:
    """What a point adds to merged bucket i: its count there, less the point before's when
    the point adds the increase over it."""
    previous = f"CAST(prev_counts ->> {i} AS BIGINT)"
    return (
        f"CAST(counts ->> {i} AS BIGINT) - CASE WHEN takes_previous = 1 THEN {previous} ELSE 0 END"
    )


def _rank(q: float) -> str:
    return f"(CAST({q!r} AS DOUBLE PRECISION) * total)"


def _holds(q: float) -> str:
    """The bucket a rank falls in: the one non-empty bucket with fewer observations before it
    than the rank and at least as many up to its end (counts are never negative)."""
    return f"(n > 0 AND before < {_rank(q)} AND before + n >= {_rank(q)})"


def _exemplars_sql(d: _Dialect) -> str:
    """Up to MAX_EXEMPLARS per series, newest first (by their time, then trace and span)."""
    return f"""ex AS (
    SELECT win.series_key, {d.element("e")} AS exemplar,
        ROW_NUMBER() OVER (PARTITION BY win.series_key ORDER BY
            COALESCE(CAST(NULLIF(NULLIF(CAST(e.value ->> 'timeUnixNano' AS TEXT), ''), '0')
                AS NUMERIC), win.time_ns) DESC,
            COALESCE(e.value ->> 'traceId', ''){d.collate} DESC,
            COALESCE(e.value ->> 'spanId', ''){d.collate} DESC,
            win.time_ns DESC, {d.index("e")}) AS rank
    FROM win, {d.elements("win.exemplars", "e")}
    WHERE win.exemplars <> '[]'
), exs AS{d.materialized} (
    SELECT series_key, {d.aggregate("exemplar", "rank")} AS exemplars
    FROM (SELECT * FROM ex WHERE rank <= {MAX_EXEMPLARS} ORDER BY series_key, rank) top
    GROUP BY series_key
)"""


def _upsert_sql(d: _Dialect, table: str, *, upsert: bool) -> str:
    percentiles = ", ".join(_percentile_column(d, name, q) for name, q in PERCENTILES.items())
    notes = (
        f"{d.build_object}('gaps', NULLIF(c.gaps, 0), 'overlaps', NULLIF(c.overlapped, 0), "
        "'boundsChanged', NULLIF(c.bounds_changed, 0))"
    )
    updates = ", ".join(f"{f} = excluded.{f}" for f in [*VALUE_FIELDS, "computed_at"])
    on_conflict = (
        f'ON CONFLICT (tenant_id, series_key, "window", window_start) DO UPDATE SET {updates}'
    )
    return f"""INSERT INTO {table} (tenant_id, series_key, "window", window_start, window_end,
    computed_at, name, unit, kind, temporality, monotonic, resource, scope, attributes, points,
    delta, last, count, sum, min, max, mean, buckets, p50, p95, p99, exemplars, resets, notes)
SELECT %(tenant)s, c.series_key, %(window)s, %(start)s, %(end)s, %(now)s,
    c.name, c.unit, c.kind, c.temporality, c.monotonic, c.resource, c.scope, c.attributes,
    c.points, c.delta,
    CASE WHEN c.kind = {Kind.GAUGE:d}
        OR (c.kind = {Kind.SUM:d} AND c.temporality <> {Temporality.DELTA:d})
        THEN c.newest_value END,
    c.count, c.sum, c.min, c.max, c.mean,
    CASE WHEN h.series_key IS NOT NULL
            THEN {d.build_object}('bounds', {d.json("c.bounds")}, 'counts', {d.json("h.counts")})
        WHEN c.fam = {DISTRIBUTION} AND c.kind = {Kind.SUMMARY:d}
            THEN {d.build_object}('quantiles', {d.json(_QUANTILES)})
    END,
    {percentiles},
    {d.json("COALESCE(x.exemplars, '[]')")},
    c.resets,
    {d.strip_nulls(notes)}
FROM chosen c
LEFT JOIN histo h ON h.series_key = c.series_key
LEFT JOIN estimates pe ON pe.series_key = c.series_key
LEFT JOIN exs x ON x.series_key = c.series_key
WHERE TRUE
{on_conflict if upsert else ""}
RETURNING series_key, name, points, {_fingerprint(d)}"""


_QUANTILES = "COALESCE(c.newest_buckets -> 'quantiles', '[]')"


def _percentile_column(d: _Dialect, name: str, q: float) -> str:
    """A histogram's estimate, or a summary's quantile q when its newest point has it (the
    last one listed, if twice)."""
    exact = (
        f"(SELECT CAST(e.value ->> 1 AS DOUBLE PRECISION) "
        f"FROM {d.elements(_QUANTILES, 'e')} "
        f"WHERE CAST(e.value ->> 0 AS DOUBLE PRECISION) = CAST({q!r} AS DOUBLE PRECISION) "
        f"ORDER BY {d.index('e')} DESC LIMIT 1)"
    )
    return (
        f"CASE WHEN h.series_key IS NOT NULL THEN pe.{name} "
        f"WHEN c.fam = {DISTRIBUTION} AND c.kind = {Kind.SUMMARY:d} THEN {exact} END"
    )


def _fingerprint(d: _Dialect) -> str:
    """A fingerprint of a row's stored values, for the event's digest. The floats need no
    rounding: the statement is never parallel and each sum takes its points in one order (scan
    order for gauges and delta sums, time order for the others), so the same points give the
    same floats. The identity's resource, scope and attributes are in series_key (a digest of
    them)."""
    skipped = ("window_end", "resource", "scope", "attributes")
    return d.fingerprint([name for name in VALUE_FIELDS if name not in skipped])
