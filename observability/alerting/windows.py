"""Loading the stored MetricSeries windows that rules and SLOs read, in bulk, for one tenant.

The evaluation handler, the rule preview and the SLO status all load through here and hand
plain values (rules.SeriesWindow, slo.SliWindow) to the pure functions. Every query names the
tenant: a tick for one tenant never reads another's series.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Max, Q, QuerySet, TextField
from django.db.models.functions import Cast
from msgspec.structs import replace

from core.envelope import TenantId
from core.models import Message
from core.runtime import scheduling
from observability.alerting import rules, slo
from observability.alerting.rules import MetricKind, SeriesWindow
from observability.models import MetricPoint, MetricSeries

AGGREGATION = "MetricAggregationWorker"
# How far back a tick looks for the newest window the aggregation completed.
NEWEST_LOOKBACK = 10
COLUMNS = (
    "name", "window_start", "kind", "temporality", "resource", "attributes", "points", "last",
    "delta", "count", "sum", "min", "max", "mean", "buckets", "p50", "p95", "p99", "exemplars",
)  # fmt: skip
JSON_COLUMNS = ("resource", "attributes", "buckets", "exemplars")
# SLO spans up to this long are read from 1-minute windows; longer ones (a day, the period)
# from hourly windows, their start rounded up to the hour (under 1/24 of a day's span).
FINE_SPAN = timedelta(hours=6)
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Want:
    """The windows of one metric and size whose starts lie in [first, last]."""

    window: str
    metric: str
    first: datetime
    last: datetime


def series_windows(
    tenant_id: TenantId, wants: Iterable[Want], *, ends: Iterable[tuple[str, str]] = ()
) -> dict[tuple[str, str], list[SeriesWindow]]:
    """The stored windows wanted, by (window size, metric), oldest first, in one query. For
    the (window size, metric) pairs in `ends` (rules with Prometheus semantics), windows in
    which a series ended are marked stale (`staleness_markers`)."""
    ranges: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for want in wants:
        key = (want.window, want.metric)
        lo, hi = ranges.get(key, (want.first, want.last))
        ranges[key] = (min(lo, want.first), max(hi, want.last))
    if not ranges:
        return {}
    # Metrics read over the same range (every live rule, usually) share one term.
    terms: dict[tuple[str, datetime, datetime], list[str]] = defaultdict(list)
    for (window, metric), (lo, hi) in ranges.items():
        terms[(window, lo, hi)].append(metric)
    where = Q()
    for (window, lo, hi), metrics in terms.items():
        where |= Q(window=window, name__in=metrics, window_start__gte=lo, window_start__lte=hi)
    # The JSON columns come as text, decoded by msgspec: Django's json.loads of four columns
    # of every row, with its timestamp parsing (plain_rows), was a third of a tick.
    texts = {f"{c}_text": Cast(c, TextField()) for c in JSON_COLUMNS}
    columns = [f"{c}_text" if c in JSON_COLUMNS else c for c in COLUMNS]
    rows = (
        MetricSeries.objects.filter(where, tenant_id=tenant_id)
        .annotate(**texts)
        .order_by("window_start")
        .values_list("window", *columns)
    )
    decode = msgspec.json.decode
    spots = [COLUMNS.index(c) for c in JSON_COLUMNS]
    found: dict[tuple[str, str], list[SeriesWindow]] = defaultdict(list)
    for window, *row in plain_rows(rows):
        for i in spots:
            if row[i] is not None:
                row[i] = decode(row[i])
        found[(window, row[0])].append(series_window(row))
    for key in set(ends) & set(ranges):
        markers = staleness_markers(tenant_id, *key, *ranges[key])
        if markers:
            found[key] = _ended(found.get(key, []), markers)
    return found


def plain_rows(rows: QuerySet[Any, tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """A values_list queryset's rows, in chunks, as its iterator() gives them. On PostgreSQL
    without Django's converters, which parse every timestamp in Python (a tick reads tens of
    thousands): the cursor asks for binary results, which psycopg loads in C (timestamps as
    aware datetimes in the connection's time zone, UTC as Django sets it, equal to Django's;
    numbers without parsing their text: measured, a third less CPU for a tick's windows than
    text). The rows must need no other converter (no JSON column: cast those to text). The
    query goes to psycopg's cursor itself, so Django's query log does not list it."""
    if connection.vendor != "postgresql":
        yield from rows.iterator(chunk_size=5000)
        return
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # filtered on an empty list: no query, as iterator() does
        return
    with connection.chunked_cursor() as cursor, connection.wrap_database_errors:
        # Django's cursor binds parameters client-side, which psycopg allows with binary
        # results only when asked for them here, by execute's own argument.
        cursor.cursor.execute(sql, params, binary=True)
        while chunk := cursor.fetchmany(5000):
            yield from chunk


def staleness_markers(
    tenant_id: TenantId, window: str, metric: str, first: datetime, last: datetime
) -> dict[tuple[datetime, str], SeriesWindow]:
    """The windows (starts first..last) in which a series of the metric ended: its newest point
    in the window was flagged NO_RECORDED_VALUE (stored without a value), Prometheus's
    staleness marker. The aggregation leaves such points out of its windows (a window of only
    such points has no row), so they are read from the points, by (start, labels as JSON)."""
    size = rules.WINDOWS[window]
    lo, hi = _ns(first), _ns(last + size)
    number_kinds = (MetricPoint.Kind.GAUGE, MetricPoint.Kind.SUM)
    nulls = MetricPoint.objects.filter(
        tenant_id=tenant_id,
        name=metric,
        kind__in=number_kinds,
        value__isnull=True,
        time_ns__gte=lo,
        time_ns__lt=hi,
    ).values_list("series_key", "time_ns", "kind", "resource", "attributes")
    ended: dict[tuple[str, int], tuple[int, Any, Any, Any]] = {}
    size_ns = _ns(EPOCH + size)
    for key, time_ns, kind, resource, attributes in nulls:
        slot = (key, time_ns // size_ns)
        if slot not in ended or ended[slot][0] < time_ns:
            ended[slot] = (time_ns, kind, resource, attributes)
    if not ended:
        return {}
    valued = MetricPoint.objects.filter(
        tenant_id=tenant_id,
        series_key__in={key for key, _ in ended},
        value__isnull=False,
        time_ns__gte=lo,
        time_ns__lt=hi,
    ).values_list("series_key", "time_ns")
    newest: dict[tuple[str, int], int] = {}
    for key, time_ns in valued:
        slot = (key, time_ns // size_ns)
        newest[slot] = max(newest.get(slot, 0), time_ns)
    markers = {}
    for (key, bucket), (time_ns, kind, resource, attributes) in ended.items():
        if newest.get((key, bucket), -1) > time_ns:
            continue  # a value came after it: the series went on
        start = EPOCH + bucket * size
        labels = rules.labels_of(resource or {}, attributes or {})
        markers[(start, _labels_key(labels))] = SeriesWindow(
            start=start, labels=labels, kind=MetricKind(kind), stale=True
        )
    return markers


def _ended(
    windows: list[SeriesWindow], markers: dict[tuple[datetime, str], SeriesWindow]
) -> list[SeriesWindow]:
    """The windows with those in which their series ended marked stale, and a window of its
    own for a series whose only point in it was the marker."""
    rest = dict(markers)
    found = []
    for w in windows:
        marker = rest.pop((w.start, _labels_key(w.labels)), None)
        found.append(replace(w, stale=True) if marker is not None else w)
    return sorted([*found, *rest.values()], key=lambda w: w.start)


def _labels_key(labels: Mapping[str, str]) -> str:
    return json.dumps(labels, sort_keys=True)


def _ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def series_window(row: Sequence[Any]) -> SeriesWindow:
    """One MetricSeries row (COLUMNS) as the rules read it."""
    (
        _, start, kind, temporality, resource, attributes, points, last, delta, count, total,
        low, high, mean, buckets, p50, p95, p99, exemplars,
    ) = row  # fmt: skip
    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    if isinstance(buckets, dict) and "bounds" in buckets:
        bounds, counts = tuple(buckets["bounds"]), tuple(buckets["counts"])
    # A series whose newest point in the window carried no value (OTLP NO_RECORDED_VALUE) has
    # no `last`: it ended there. Delta sums never have one.
    ends = kind == MetricKind.GAUGE or (
        kind == MetricKind.SUM and temporality != MetricPoint.Temporality.DELTA
    )
    return SeriesWindow(
        start=start,
        labels=rules.labels_of(resource or {}, attributes or {}),
        kind=_KINDS.get(kind) or MetricKind(kind),
        last=last,
        delta=delta,
        count=count,
        sum=total,
        min=low,
        max=high,
        mean=mean,
        bounds=bounds,
        counts=counts,
        p50=p50,
        p95=p95,
        p99=p99,
        stale=ends and last is None and points > 0,
        trace_ids=trace_ids_of(exemplars),
    )


# A stored kind's enum member by a dict lookup: calling the enum class, once per window read,
# costs a Python call each.
_KINDS = {kind.value: kind for kind in MetricKind}


def trace_ids_of(exemplars: Any) -> tuple[str, ...]:
    if not isinstance(exemplars, list):
        return ()
    found: dict[str, None] = {}
    for exemplar in exemplars:
        if isinstance(exemplar, dict):
            trace_id = exemplar.get("traceId")
            if isinstance(trace_id, str) and trace_id:
                found[trace_id] = None
    return tuple(found)


def metric_kinds(tenant_id: TenantId, names: Iterable[str]) -> dict[str, MetricKind]:
    """The kinds of the tenant's metrics among `names` that have stored windows, as their
    newest window has them: what a rule is validated against."""
    kinds: dict[str, MetricKind] = {}
    rows = (
        MetricSeries.objects.filter(tenant_id=tenant_id, name__in=set(names))
        .order_by("name", "-window_start")
        .values_list("name", "kind")
    )
    for name, kind in rows.iterator():
        kinds.setdefault(name, MetricKind(kind))
    return kinds


def histogram_bounds(tenant_id: TenantId, selector: slo.Selector) -> list[float] | None:
    """The bucket boundaries of the newest window of a latency SLI's histogram, or None when
    it has none stored yet."""
    rows = MetricSeries.objects.filter(
        tenant_id=tenant_id, name=selector.metric, kind=MetricPoint.Kind.HISTOGRAM
    ).order_by("-window_start")
    for resource, attributes, buckets in rows.values_list("resource", "attributes", "buckets")[:50]:
        labels = rules.labels_of(resource or {}, attributes or {})
        if _selected(selector.filters, labels) and isinstance(buckets, dict):
            return list(buckets.get("bounds") or [])
    return None


# The newest window the aggregation completed


def slot_event_id(tenant_id: TenantId, window: str, slot: datetime) -> uuid.UUID:
    """The eventId core.runtime.scheduling.fire gives the aggregation's slot of `window`
    ending at `slot`."""
    return scheduling.slot_event_id(AGGREGATION, window, tenant_id, slot)


def newest_aggregated(tenant_id: TenantId, window: str, due: datetime) -> datetime | None:
    """The start of the newest window of this size, at or before `due`, that the aggregation
    has completed for the tenant: the newest whose slot it handled, or, as a window is written
    in one transaction, the newest with stored series. None when neither is within
    NEWEST_LOOKBACK windows: nothing to evaluate yet."""
    size = rules.WINDOWS[window]
    starts = [due - i * size for i in range(NEWEST_LOOKBACK)]
    ids = {slot_event_id(tenant_id, window, start + size): start for start in starts}
    handled = Message.objects.filter(
        event_id__in=list(ids), worker=AGGREGATION, state=Message.State.DONE
    ).values_list("event_id", flat=True)
    found = [ids[event_id] for event_id in handled]
    stored = MetricSeries.objects.filter(
        tenant_id=tenant_id, window=window, window_start__lte=due, window_start__gte=starts[-1]
    ).aggregate(newest=Max("window_start"))["newest"]
    if stored is not None:
        found.append(stored)
    return max(found, default=None)


# SLO windows


def sli_windows(
    tenant_id: TenantId, objective: slo.Slo, first_at: datetime, last_at: datetime
) -> list[slo.SliWindow]:
    """The SLI's windows for evaluating at every instant from first_at to last_at: 1-minute
    windows over the last FINE_SPAN before first_at and after, hourly ones before that back to
    a period before first_at. Each window sums its matching series."""
    fine_from = _floor_hour(first_at - FINE_SPAN)
    coarse_from = _floor_hour(first_at - objective.period)
    metrics = _sli_metrics(objective.sli)
    where = Q(window="1m", window_start__gte=fine_from, window_start__lt=last_at) | Q(
        window="1h", window_start__gte=coarse_from, window_start__lt=fine_from
    )
    rows = (
        MetricSeries.objects.filter(where, tenant_id=tenant_id, name__in=metrics)
        .order_by("window_start")
        .values_list(
            "window", "window_start", "window_end", "name", "resource", "attributes", "delta",
            "buckets", "exemplars",
        )
    )  # fmt: skip
    sums: dict[tuple[datetime, datetime], list[float]] = {}
    traces: dict[tuple[datetime, datetime], list[str]] = defaultdict(list)
    sli = objective.sli
    for _, start, end, name, resource, attributes, delta, buckets, exemplars in rows.iterator(
        chunk_size=5000
    ):
        labels = rules.labels_of(resource or {}, attributes or {})
        span = (start, end)
        if isinstance(sli, slo.RatioSli):
            for i, selector in enumerate((sli.events, sli.total)):
                if name == selector.metric and _selected(selector.filters, labels):
                    sums.setdefault(span, [0.0, 0.0])[i] += delta or 0.0
                    if i == 0 and sli.counts == "bad" and delta:
                        traces[span].extend(trace_ids_of(exemplars))
        elif name == sli.histogram.metric and _selected(sli.histogram.filters, labels):
            if not isinstance(buckets, dict) or "bounds" not in buckets:
                continue
            counted = slo.good_and_total(buckets["bounds"], buckets["counts"], sli.bound)
            if counted is None:
                continue
            good, total = counted
            bad_total = sums.setdefault(span, [0.0, 0.0])
            bad_total[0] += total - good
            bad_total[1] += total
            traces[span].extend(slo.slow_trace_ids(exemplars or [], sli.bound))
    windows = []
    for (start, end), (events, total) in sums.items():
        ids = tuple(dict.fromkeys(traces.get((start, end), ())))[: slo.MAX_TRACE_IDS]
        if isinstance(sli, slo.RatioSli):
            windows.append(
                slo.ratio_window(sli, start, end, events=events, total=total, trace_ids=ids)
            )
        else:
            windows.append(slo.SliWindow(start, end, events, total, ids))
    return windows


def _sli_metrics(sli: slo.RatioSli | slo.LatencySli) -> list[str]:
    if isinstance(sli, slo.RatioSli):
        return [sli.events.metric, sli.total.metric]
    return [sli.histogram.metric]


def _selected(filters: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in filters.items())


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)
