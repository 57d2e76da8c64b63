"""MetricAggregationWorker: raw points rolled into MetricSeries per series and window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from core.models import Event, Message
from core.runtime import dispatch, scheduling
from core.services import build_envelope
from observability import aggregation, aggregation_sql
from observability.metrics import series_key
from observability.models import MetricPoint, MetricSeries

pytestmark = pytest.mark.django_db
Kind, Temporality = MetricPoint.Kind, MetricPoint.Temporality
T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # the 12:00 window; long before any test runs
MINUTE = timedelta(minutes=1)
BOUNDS = [10.0, 50.0, 100.0]


def at(minutes: float = 0, seconds: float = 0) -> int:
    """The time_ns of T0 plus an offset."""
    return aggregation.to_ns(T0 + timedelta(minutes=minutes, seconds=seconds))


def add(tenant, name, time_ns, *, kind=Kind.GAUGE, attributes=None, **fields) -> MetricPoint:
    attributes = attributes or {}
    fields.setdefault("received_at", T0 + timedelta(minutes=2))  # on time, long ago
    return MetricPoint.objects.create(
        tenant=tenant,
        name=name,
        kind=kind,
        series_key=series_key(name, {"service.name": "checkout"}, "tests", attributes),
        resource={"service.name": "checkout"},
        scope="tests",
        attributes=attributes,
        time_ns=time_ns,
        **fields,
    )


def counter(tenant, name, time_ns, value, start_ns, *, monotonic=True, **fields):
    return add(
        tenant,
        name,
        time_ns,
        kind=Kind.SUM,
        temporality=Temporality.CUMULATIVE,
        monotonic=monotonic,
        value=value,
        start_ns=start_ns,
        **fields,
    )


def histogram(tenant, name, time_ns, counts, *, temporality=Temporality.DELTA, **fields):
    return add(
        tenant,
        name,
        time_ns,
        kind=Kind.HISTOGRAM,
        temporality=temporality,
        count=sum(counts),
        buckets={"bounds": fields.pop("bounds", BOUNDS), "counts": counts},
        **fields,
    )


def slot(tenant, schedule="1m", start=T0):
    size = aggregation.WINDOWS[schedule]
    return build_envelope(
        tenant_id=tenant.pk,
        type="ScheduleFired",
        data={
            "schedule": schedule,
            "windowStart": start.isoformat(),
            "windowEnd": (start + size).isoformat(),
        },
    )


def run(tenant, schedule="1m", start=T0) -> None:
    aggregation.aggregate(slot(tenant, schedule, start))


def row(name, start=T0, window="1m", **filters) -> MetricSeries:
    return MetricSeries.objects.get(name=name, window=window, window_start=start, **filters)


def events(tenant=None) -> list[Event]:
    found = Event.objects.filter(type="MetricAggregated").order_by("recorded_at")
    return list(found.filter(tenant=tenant) if tenant else found)


# Gauges and sums


def test_it_keeps_the_last_min_max_and_mean_of_a_gauge(tenant):
    for second, value in [(10, 5.0), (20, 2.0), (30, 9.0), (40, 4.0)]:
        add(tenant, "cpu", at(seconds=second), value=value)

    run(tenant)

    cpu = row("cpu")
    assert (cpu.last, cpu.min, cpu.max, cpu.mean, cpu.count) == (4.0, 2.0, 9.0, 5.0, 4)
    assert (cpu.points, cpu.kind, cpu.window_end) == (4, Kind.GAUGE, T0 + MINUTE)
    assert cpu.attributes == {} and cpu.resource == {"service.name": "checkout"}


def test_it_adds_up_the_values_of_a_delta_sum(tenant):
    for second, value in [(10, 3.0), (30, 4.0), (50, 5.0)]:
        add(tenant, "requests", at(seconds=second), kind=Kind.SUM, value=value,
            temporality=Temporality.DELTA, monotonic=True)  # fmt: skip

    run(tenant)

    assert row("requests").delta == 12.0
    assert row("requests").last is None


def test_it_turns_a_cumulative_counter_into_deltas_across_two_windows(tenant):
    start = at()  # the counter started at 12:00:00
    counter(tenant, "orders", at(seconds=10), 10, start)
    counter(tenant, "orders", at(seconds=40), 15, start)
    counter(tenant, "orders", at(1, 10), 22, start)
    counter(tenant, "orders", at(1, 40), 30, start)

    run(tenant, start=T0)
    run(tenant, start=T0 + MINUTE)

    first, second = row("orders"), row("orders", start=T0 + MINUTE)
    assert (first.delta, first.last) == (15.0, 15.0)  # 10 since its start, then 5
    assert (second.delta, second.last) == (15.0, 30.0)  # over the 12:00:40 point: 7 + 8
    assert first.resets == second.resets == 0


def test_it_counts_a_restarted_counter_from_zero_when_its_start_changes(tenant):
    old, new = at(-60), at(1, 15)
    counter(tenant, "orders", at(0, 50), 100, old)
    counter(tenant, "orders", at(1, 10), 120, old)  # +20
    counter(tenant, "orders", at(1, 20), 5, new)  # restarted at 12:01:15: +5, not -115
    counter(tenant, "orders", at(1, 30), 9, new)  # +4

    run(tenant, start=T0 + MINUTE)

    orders = row("orders", start=T0 + MINUTE)
    assert (orders.delta, orders.last, orders.resets) == (29.0, 9.0, 1)
    assert orders.notes == {"gaps": 1}  # nothing covers 12:01:10 to 12:01:15


def test_it_takes_a_dropped_value_under_the_same_start_as_a_reset_not_a_negative_delta(tenant):
    start = at(-60)
    counter(tenant, "orders", at(0, 50), 100, start)
    counter(tenant, "orders", at(1, 10), 120, start)  # +20
    counter(tenant, "orders", at(1, 20), 3, start)  # dropped: counted from zero, +3
    counter(tenant, "orders", at(1, 30), 7, start)  # +4

    run(tenant, start=T0 + MINUTE)

    orders = row("orders", start=T0 + MINUTE)
    assert (orders.delta, orders.resets) == (27.0, 1)
    assert orders.delta >= 0


def test_it_counts_a_run_after_a_gap_from_its_own_start_and_an_unknown_start_as_zero(tenant):
    counter(tenant, "orders", at(0, 30), 50, at(-60))
    counter(tenant, "orders", at(1, 30), 8, at(1, 20))  # new run after a gap: +8
    counter(tenant, "orders", at(1, 40), 1000, at(1, 40))  # start == time: unknown, +0
    counter(tenant, "orders", at(1, 50), 1004, at(1, 40))  # +4

    run(tenant, start=T0 + MINUTE)

    orders = row("orders", start=T0 + MINUTE)
    assert (orders.delta, orders.last, orders.resets) == (12.0, 1004.0, 2)
    assert orders.notes == {"gaps": 2}


def test_it_keeps_the_last_value_and_the_net_change_of_an_up_down_counter(tenant):
    start = at(-60)
    counter(tenant, "queue.depth", at(0, 30), 10, start, monotonic=False)
    counter(tenant, "queue.depth", at(1, 10), 14, start, monotonic=False)  # +4
    counter(tenant, "queue.depth", at(1, 30), 6, start, monotonic=False)  # -8, not a reset
    counter(tenant, "queue.depth", at(1, 50), 8, start, monotonic=False)  # +2

    run(tenant, start=T0 + MINUTE)

    depth = row("queue.depth", start=T0 + MINUTE)
    assert (depth.last, depth.delta, depth.resets) == (8.0, -2.0, 0)


# Histograms, exponential histograms, summaries


def assert_hand_worked(latency: MetricSeries) -> None:
    # Buckets (-inf,10] (10,50] (50,100] (100,+inf) hold 2, 5, 2, 1: ten observations.
    # p50: rank 5 falls in (10,50], 3 of its 5 past the 2 before: 10 + 40 * 3/5 = 34.
    # p95: rank 9.5 falls in (100,+inf), closed by max 150: 100 + 50 * 0.5/1 = 125.
    # p99: rank 9.9, likewise: 100 + 50 * 0.9/1 = 145.
    assert latency.buckets == {"bounds": BOUNDS, "counts": [2, 5, 2, 1]}
    assert (latency.count, latency.max) == (10, 150.0)
    assert latency.p50 == pytest.approx(34.0)
    assert latency.p95 == pytest.approx(125.0)
    assert latency.p99 == pytest.approx(145.0)


def test_it_merges_histogram_buckets_and_estimates_percentiles_from_them(tenant):
    histogram(tenant, "latency", at(seconds=10), [1, 3, 1, 0], sum=150.0, min=2.0, max=80.0)
    histogram(tenant, "latency", at(seconds=40), [1, 2, 1, 1], sum=300.0, min=4.0, max=150.0)

    run(tenant)

    latency = row("latency")
    assert_hand_worked(latency)
    assert (latency.sum, latency.min) == (450.0, 2.0)


def test_it_merges_the_increases_of_a_cumulative_histogram(tenant):
    start = at(-60)
    fields = {"temporality": Temporality.CUMULATIVE, "start_ns": start}
    histogram(tenant, "latency", at(-1, 30), [1, 1, 0, 0], sum=30, min=2, max=40, **fields)
    histogram(tenant, "latency", at(0, 10), [2, 4, 1, 0], sum=200, min=2, max=80, **fields)
    histogram(tenant, "latency", at(0, 40), [3, 6, 2, 1], sum=480, min=2, max=150, **fields)

    run(tenant)

    latency = row("latency")
    assert_hand_worked(latency)
    assert latency.sum == 450.0
    assert latency.min is None  # unchanged since before the window: not known to be in it


def test_it_merges_only_buckets_with_the_latest_bounds_and_notes_the_others(tenant):
    histogram(tenant, "latency", at(seconds=10), [4, 4, 4], bounds=[5.0, 20.0], sum=99.0)
    histogram(tenant, "latency", at(seconds=40), [1, 2, 1, 1], sum=300.0)

    run(tenant)

    latency = row("latency")
    assert latency.buckets == {"bounds": BOUNDS, "counts": [1, 2, 1, 1]}
    assert (latency.count, latency.sum) == (17, 399.0)
    assert latency.notes == {"boundsChanged": 1}


def test_it_takes_a_bucket_that_dropped_under_the_same_start_as_a_reset(tenant):
    fields = {"temporality": Temporality.CUMULATIVE, "start_ns": at(-60)}
    histogram(tenant, "latency", at(-1, 30), [1, 1, 0, 0], **fields)
    histogram(tenant, "latency", at(0, 10), [3, 4, 1, 0], **fields)  # +[2, 3, 1, 0]
    histogram(tenant, "latency", at(0, 40), [1, 9, 2, 1], **fields)  # 3 -> 1: counted whole

    run(tenant)

    latency = row("latency")
    assert latency.buckets["counts"] == [3, 12, 3, 1]
    assert (latency.count, latency.resets) == (6 + 13, 1)


def test_it_merges_histograms_with_more_buckets_than_it_sums_by_position(tenant):
    bounds = [float(b) for b in range(1, aggregation_sql.SUMMED_BUCKETS + 5)]
    n = len(bounds) + 1
    fields = {"temporality": Temporality.CUMULATIVE, "start_ns": at(-60), "bounds": bounds}
    histogram(tenant, "wide", at(-1, 30), [1] * n, **fields)
    histogram(tenant, "wide", at(0, 10), [2] * n, **fields)
    histogram(tenant, "wide", at(0, 40), [4] * n, **fields)
    histogram(tenant, "wide.delta", at(0, 10), list(range(n)), bounds=bounds)
    histogram(tenant, "wide.delta", at(0, 40), [1] * n, bounds=bounds)

    run(tenant)

    wide = row("wide")
    assert wide.buckets["counts"] == [3] * n
    # p95: rank 0.95 * 63 = 59.85 falls in bucket 19, (19, 20], past the 57 before it.
    assert wide.p95 == pytest.approx(19 + (59.85 - 57) / 3)
    assert row("wide.delta").buckets["counts"] == [i + 1 for i in range(n)]


def test_it_keeps_count_and_sum_of_exponential_histograms_and_the_latest_quantiles(tenant):
    exponential = {"scale": 2, "zeroCount": 0, "positive": {"offset": 0, "counts": [1]}}
    for second, count, total in [(10, 3, 30.0), (40, 2, 12.0)]:
        add(tenant, "rpc", at(seconds=second), kind=Kind.EXPONENTIAL_HISTOGRAM,
            temporality=Temporality.DELTA, count=count, sum=total, buckets=exponential)  # fmt: skip
    start = at(-60)
    add(tenant, "legacy", at(-1, 30), kind=Kind.SUMMARY, count=10, sum=100.0, start_ns=start,
        buckets={"quantiles": [[0.5, 9.0]]})  # fmt: skip
    add(tenant, "legacy", at(0, 30), kind=Kind.SUMMARY, count=14, sum=160.0, start_ns=start,
        buckets={"quantiles": [[0.5, 11.0], [0.99, 40.0]]})  # fmt: skip

    run(tenant)

    rpc, legacy = row("rpc"), row("legacy")
    assert (rpc.count, rpc.sum, rpc.buckets, rpc.p50) == (5, 42.0, None, None)
    assert (legacy.count, legacy.sum) == (4, 60.0)
    assert legacy.buckets == {"quantiles": [[0.5, 11.0], [0.99, 40.0]]}
    assert (legacy.p50, legacy.p95, legacy.p99) == (11.0, None, 40.0)


def test_it_keeps_the_ten_newest_exemplars_with_their_trace_ids(tenant):
    for i in range(12):
        exemplar = {
            "traceId": f"{i + 1:032x}",
            "spanId": f"{i + 1:016x}",
            "value": float(i),
            "timeUnixNano": at(seconds=i),
        }
        add(tenant, "cpu", at(seconds=i), value=float(i), exemplars=[exemplar])

    run(tenant)

    kept = row("cpu").exemplars
    assert [e["traceId"] for e in kept] == [f"{i + 1:032x}" for i in range(11, 1, -1)]
    assert kept[0]["spanId"] == f"{12:016x}"


# Windows, re-runs and late points


def snapshot() -> list[tuple]:
    fields = ["id", "series_key", "window", "window_start", *aggregation_sql.VALUE_FIELDS]
    return list(MetricSeries.objects.order_by("id").values_list(*fields))


def test_it_gives_the_same_rows_when_a_window_runs_again(tenant):
    add(tenant, "cpu", at(seconds=10), value=1.0)
    counter(tenant, "orders", at(seconds=20), 5, at(-60))
    histogram(tenant, "latency", at(seconds=30), [1, 3, 1, 0], sum=150.0, min=2.0, max=80.0)
    run(tenant)
    first = snapshot()

    run(tenant)

    assert snapshot() == first
    assert len(first) == 3


def test_it_aggregates_an_earlier_window_again_when_a_late_point_arrives(tenant):
    add(tenant, "cpu", at(seconds=10), value=1.0)
    add(tenant, "cpu", at(seconds=20), value=3.0)
    run(tenant, start=T0)
    before = row("cpu")
    assert (before.count, before.mean) == (2, 2.0)

    add(tenant, "cpu", at(seconds=30), value=8.0, received_at=timezone.now())  # late
    run(tenant, start=T0 + MINUTE)

    after = row("cpu")
    assert (after.id, after.count, after.mean, after.last) == (before.id, 3, 4.0, 8.0)
    assert after.computed_at > before.computed_at
    assert [e.data["windowStart"] for e in events()] == [T0.isoformat()] * 2


def test_it_leaves_windows_without_late_points_alone(tenant):
    add(tenant, "cpu", at(seconds=10), value=1.0)
    run(tenant, start=T0)
    computed = row("cpu").computed_at

    run(tenant, start=T0 + MINUTE)
    run(tenant, start=T0 + 2 * MINUTE)

    assert row("cpu").computed_at == computed
    assert len(events()) == 1


def test_it_moves_a_cumulative_increase_to_the_window_of_a_late_point(tenant):
    start = at(-60)
    counter(tenant, "orders", at(-1, 30), 10, start)
    counter(tenant, "orders", at(1, 30), 30, start)
    run(tenant, start=T0)
    run(tenant, start=T0 + MINUTE)
    assert row("orders", start=T0 + MINUTE).delta == 20.0

    counter(tenant, "orders", at(0, 30), 25, start, received_at=timezone.now())  # late
    run(tenant, start=T0 + 2 * MINUTE)

    assert row("orders", start=T0).delta == 15.0
    assert row("orders", start=T0 + MINUTE).delta == 5.0  # not 20 again: nothing counted twice


def test_it_aggregates_only_the_points_of_the_window_of_each_schedule(tenant):
    for minute in [0.5, 3.5, 30, 59.99, 60, -0.01]:
        add(tenant, "cpu", at(minute), value=minute)

    run(tenant, "1m", T0)
    run(tenant, "5m", T0)
    run(tenant, "1h", T0)

    assert row("cpu", window="1m").count == 1
    assert row("cpu", window="5m").count == 2
    assert row("cpu", window="1h").count == 4
    assert row("cpu", window="1h").max == 59.99
    # The first run of each schedule also caught up the window before 12:00 (its one point).
    assert row("cpu", start=T0 - MINUTE, window="1m").count == 1
    assert not MetricSeries.objects.filter(window_start__gte=T0 + timedelta(hours=1)).exists()


def test_it_keeps_tenants_apart(tenant, other_tenant):
    start = at(-60)
    counter(other_tenant, "orders", at(-1, 30), 1000, start)  # same series key, other tenant
    counter(tenant, "orders", at(0, 10), 4, start)
    counter(tenant, "orders", at(0, 20), 6, start)
    add(other_tenant, "cpu", at(seconds=10), value=99.0)

    run(tenant)

    assert set(MetricSeries.objects.values_list("tenant_id", flat=True)) == {tenant.pk}
    assert row("orders").delta == 6.0  # the other tenant's 1000 is no baseline of ours
    assert not MetricSeries.objects.filter(name="cpu").exists()
    assert [e.tenant_id for e in events()] == [tenant.pk]


# Events and the worker


def test_it_publishes_metric_aggregated_once_per_window_when_handled_twice(tenant):
    add(tenant, "cpu", at(-1, 10), value=1.0)
    add(tenant, "cpu", at(0, 10), value=2.0)
    add(tenant, "requests", at(0, 20), kind=Kind.SUM, temporality=Temporality.DELTA, value=3.0)
    envelope = slot(tenant)

    aggregation.aggregate(envelope)
    aggregation.aggregate(envelope)

    published = events(tenant)
    assert sorted(e.data["windowStart"] for e in published) == [
        (T0 - MINUTE).isoformat(),
        T0.isoformat(),
    ]
    current = next(e for e in published if e.data["windowStart"] == T0.isoformat())
    assert current.data["series"] == 2 and current.data["metrics"] == ["cpu", "requests"]
    assert current.data["windowEnd"] == (T0 + MINUTE).isoformat()


def test_it_runs_as_the_worker_of_the_schedule_slots(tenant, other_tenant):
    add(tenant, "cpu", at(seconds=10), value=1.0)
    add(other_tenant, "cpu", at(seconds=10), value=2.0)

    for _ in range(2):  # a slot fired twice is one message per tenant
        scheduling.fire("MetricAggregationWorker", "1m", now=T0 + MINUTE + timedelta(seconds=3))
    outcome = dispatch.drain("MetricAggregationWorker")

    assert outcome["handled"] == 2 and outcome["dead"] == 0
    assert row("cpu", tenant=tenant).last == 1.0
    assert row("cpu", tenant=other_tenant).last == 2.0
    assert Message.objects.filter(worker="MetricAggregationWorker", state="done").count() == 2
    assert len(events()) == 2


def test_it_refuses_a_slot_of_an_unknown_schedule_for_good(tenant):
    envelope = build_envelope(
        tenant_id=tenant.pk,
        type="ScheduleFired",
        data={"schedule": "2m", "windowStart": T0.isoformat(), "windowEnd": T0.isoformat()},
    )

    with pytest.raises(aggregation.PermanentError):
        aggregation.aggregate(envelope)


def test_it_estimates_percentiles_within_the_open_buckets(tenant):
    # No min or max known: the first bucket starts at 0, the last ends where it starts.
    histogram(tenant, "low", at(seconds=10), [4, 0, 0, 0])
    histogram(tenant, "high", at(seconds=10), [0, 0, 0, 4])
    histogram(tenant, "empty", at(seconds=10), [0, 0, 0, 0])

    run(tenant)

    assert row("low").p50 == 5.0
    assert row("high").p50 == 100.0
    assert (row("empty").p50, row("empty").buckets["counts"]) == (None, [0, 0, 0, 0])


def test_it_writes_a_window_in_a_handful_of_statements_whatever_its_series(
    tenant, django_assert_max_num_queries
):
    exemplar = {"traceId": "ab" * 16, "spanId": "cd" * 8, "timeUnixNano": at(seconds=30)}
    for i in range(40):
        attributes = {"i": i}
        add(tenant, "cpu", at(seconds=10), value=1.0, attributes=attributes)
        counter(tenant, "orders", at(-1, 20), 2, at(-60), attributes=attributes)
        counter(tenant, "orders", at(seconds=20), 5, at(-60), attributes=attributes)
        histogram(tenant, "latency", at(seconds=30), [1, 3, 1, 0], attributes=attributes,
                  exemplars=[exemplar])  # fmt: skip
    run(tenant, start=T0 - MINUTE)

    # Two to find late windows; one to see whether the window has rows yet, one statement
    # that computes and writes it; the event, whether a webhook wants it, and its message; on
    # PostgreSQL, three for the session settings. Nothing per series.
    with django_assert_max_num_queries(12):
        run(tenant)

    assert MetricSeries.objects.filter(window_start=T0).count() == 120
    assert row("orders", attributes={"i": 7}).delta == 3.0
