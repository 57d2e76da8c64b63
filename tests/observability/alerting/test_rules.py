"""Alert rules as plain values (observability.alerting.rules): validation, instances, and the
values of grouped and ratio queries. Pure, no database."""

from __future__ import annotations

import pytest

from observability.alerting.evaluation import Kind, evaluate
from observability.alerting.rules import (
    Field,
    MetricKind,
    NoData,
    Op,
    Problem,
    Query,
    SeriesWindow,
    bucket_quantile,
    instance_key,
    instance_windows,
    labels_of,
    validate,
)
from tests.observability.alerting.factories import T0, make_rule, window

METRICS = {
    "queue.depth": MetricKind.GAUGE,
    "http.requests": MetricKind.SUM,
    "http.errors": MetricKind.SUM,
    "http.duration": MetricKind.HISTOGRAM,
}


def messages(rule, metrics=METRICS):
    return [(p.field, p.message) for p in validate(rule, metrics)]


def test_it_accepts_a_valid_rule():
    rule = make_rule(warning=70.0, resolve=60.0, for_seconds=300, keep_firing_for_seconds=120)

    assert validate(rule, METRICS) == []


def test_it_refuses_a_warning_that_would_not_trigger_first():
    assert messages(make_rule(warning=95.0)) == [
        ("warning", "must be under critical (90) to trigger first")
    ]
    assert messages(make_rule(op=Op.LT, critical=10.0, warning=5.0)) == [
        ("warning", "must be over critical (10) to trigger first")
    ]
    assert messages(make_rule(op=Op.EQ, warning=5.0)) == [
        ("warning", "a warning threshold needs <, <=, > or >=, not ==")
    ]


def test_it_refuses_a_resolve_threshold_on_the_breaching_side():
    assert messages(make_rule(warning=70.0, resolve=75.0)) == [
        ("resolve", "must be at most 70: an alert would resolve while it still breaches")
    ]
    assert messages(make_rule(op=Op.LE, critical=10.0, resolve=8.0)) == [
        ("resolve", "must be at least 10: an alert would resolve while it still breaches")
    ]


def test_it_refuses_thresholds_that_are_not_numbers():
    assert messages(make_rule(critical=float("nan"))) == [("critical", "must be a finite number")]


def test_it_refuses_an_unknown_metric_and_a_field_that_does_not_fit_its_kind():
    gauge_p95 = make_rule(query=Query("queue.depth", field=Field.P95))
    histogram_delta = make_rule(query=Query("http.duration", field=Field.DELTA))
    unknown = make_rule(query=Query("nope"))

    assert messages(gauge_p95) == [
        (
            "query.field",
            "p95 does not fit queue.depth, a gauge: choose one of last, mean, min, max, count",
        )
    ]
    assert messages(histogram_delta) == [
        (
            "query.field",
            "delta does not fit http.duration, a histogram: choose one of count, sum, mean, "
            "min, max, p50, p95, p99",
        )
    ]
    assert messages(unknown) == [("query.metric", "no metric named 'nope' has been received")]
    assert validate(unknown) == []  # without the tenant's metrics, names are not checked


def test_it_checks_the_denominator_like_the_numerator():
    rule = make_rule(
        query=Query("http.errors", field=Field.DELTA),
        denominator=Query("http.requests", window="5m", field=Field.P95),
    )

    assert messages(rule) == [
        (
            "denominator.field",
            "p95 does not fit http.requests, a sum: choose one of delta, rate, last",
        ),
        ("denominator.window", "must be the numerator's window size"),
    ]


def test_it_refuses_bad_comparisons_times_and_flap_settings():
    rule = make_rule(
        comparison="percent_change",
        for_seconds=-1,
        keep_firing_for_seconds=200_000,
        delay_seconds=7200,
        cadence_seconds=90,
        flap_window=4,
        flap_changes=4,
        group_by=("service.name", "service.name"),
    )

    assert messages(rule) == [
        ("group_by", "'service.name' is listed twice"),
        ("offset", "a percent change needs one of 1h, 1d, 1w"),
        ("for_seconds", "must be between 0 and 86400"),
        ("keep_firing_for_seconds", "must be between 0 and 86400"),
        ("delay_seconds", "must be between 0 and 3600"),
        ("cadence_seconds", "must be whole minutes, from 1 to 60"),
        ("flap_changes", "must be under flap_window (4)"),
    ]
    assert validate(make_rule(offset="1d")) == [
        Problem("offset", "only a percent-change comparison has an offset")
    ]


def test_it_takes_strings_for_its_choices():
    rule = make_rule(op=">=", nodata="prometheus", query=Query("queue.depth", field="max"))

    assert (rule.op, rule.nodata, rule.query.field) == (Op.GE, NoData.PROMETHEUS, Field.MAX)
    with pytest.raises(ValueError):
        make_rule(op="=>")


# Instances


def test_it_fingerprints_labels_whatever_their_order():
    assert instance_key({"a": "1", "b": "2"}) == instance_key({"b": "2", "a": "1"})
    assert instance_key({"a": "1"}) != instance_key({"a": "2"})
    assert len(instance_key({})) == 32


def test_it_labels_a_series_with_its_resource_and_point_attributes():
    labels = labels_of({"service.name": "checkout", "k": 1}, {"route": "/pay", "k": [1, 2]})

    assert labels == {"service.name": "checkout", "route": "/pay", "k": "[1,2]"}


def series(start, service, kind=MetricKind.SUM, **values):
    labels = {"service.name": service, "region": values.pop("region", "eu")}
    return SeriesWindow(start=start, labels=labels, kind=kind, **values)


def test_it_groups_series_into_instances_by_label_keys():
    rule = make_rule(query=Query("http.requests", field=Field.RATE))
    rows = [
        series(window(0), "checkout", delta=60.0, region="eu"),
        series(window(0), "checkout", delta=120.0, region="us"),
        series(window(0), "cart", delta=6.0),
        series(window(1), "cart", delta=12.0, trace_ids=("a" * 32,)),
    ]

    instances = instance_windows(rule, rows)

    checkout = instances[instance_key({"service.name": "checkout"})]
    cart = instances[instance_key({"service.name": "cart"})]
    assert checkout.labels == {"service.name": "checkout"}
    assert [(s.start, s.value) for s in checkout.samples] == [(window(0), 3.0)]
    assert [(s.start, s.value, s.trace_ids) for s in cart.samples] == [
        (window(0), 0.1, ()),
        (window(1), 0.2, ("a" * 32,)),
    ]


def test_it_selects_series_by_their_filters():
    rule = make_rule(
        query=Query("http.requests", field=Field.DELTA, filters={"region": "us"}), group_by=()
    )
    rows = [
        series(window(0), "checkout", delta=1.0),
        series(window(0), "cart", delta=2.0, region="us"),
    ]

    (only,) = instance_windows(rule, rows).values()

    assert only.labels == {}
    assert only.samples[0].value == 2.0


def test_it_combines_gauges_by_extremes_and_weighted_means():
    rows = [
        series(window(0), "checkout", MetricKind.GAUGE, min=1.0, max=5.0, mean=2.0, count=3),
        series(window(0), "checkout", MetricKind.GAUGE, min=0.5, max=4.0, mean=4.0, count=1),
    ]

    def value(field):
        rule = make_rule(query=Query("queue.depth", field=field))
        (only,) = instance_windows(rule, rows).values()
        return only.samples[0].value

    assert (value(Field.MIN), value(Field.MAX), value(Field.MEAN)) == (0.5, 5.0, 2.5)


def test_it_merges_histogram_buckets_for_a_groups_percentiles():
    common = {"kind": MetricKind.HISTOGRAM, "bounds": (0.1, 0.5, 1.0)}
    rows = [
        series(window(0), "checkout", counts=(50, 40, 10, 0), min=0.01, max=0.9, **common),
        series(window(0), "checkout", counts=(0, 0, 80, 20), min=0.6, max=2.0, **common),
        series(window(0), "cart", p95=0.42, counts=(1, 0, 0, 0), **common),
    ]
    rule = make_rule(query=Query("http.duration", field=Field.P95))

    instances = instance_windows(rule, rows)

    checkout = instances[instance_key({"service.name": "checkout"})].samples[0]
    cart = instances[instance_key({"service.name": "cart"})].samples[0]
    # Rank 190 of 200 falls in the open last bucket: from 1.0 to the max, 2.0.
    assert checkout.value == pytest.approx(1.0 + (2.0 - 1.0) * (190 - 180) / 20)
    assert cart.value == 0.42  # one series: its stored estimate


def test_it_puts_a_group_whose_buckets_differ_in_error():
    rows = [
        series(window(0), "checkout", MetricKind.HISTOGRAM, bounds=(1.0,), counts=(1, 1)),
        series(window(0), "checkout", MetricKind.HISTOGRAM, bounds=(2.0,), counts=(1, 1)),
    ]
    rule = make_rule(query=Query("http.duration", field=Field.P99))

    (only,) = instance_windows(rule, rows).values()

    assert only.samples[0].value is None
    assert only.samples[0].error.startswith(
        "the group's 2 series of http.duration have different (or no) histogram buckets"
    )


def test_it_estimates_quantiles_as_the_aggregation_does():
    assert bucket_quantile(0.5, (1.0, 2.0), (0, 4, 0)) == 1.5
    assert bucket_quantile(0.5, (1.0, 2.0), (4, 0, 0)) == 0.5  # open first bucket from 0
    assert bucket_quantile(0.5, (1.0, 2.0), (0, 0, 4)) == 2.0  # open last bucket: its start
    assert bucket_quantile(0.5, (1.0,), (0, 0)) is None


def test_it_evaluates_a_ratio_of_sums_per_window():
    rule = make_rule(
        query=Query("http.errors", field=Field.DELTA),
        denominator=Query("http.requests", field=Field.DELTA),
        critical=0.05,
        nodata=NoData.NODATA,
    )
    errors = [
        series(window(0), "checkout", delta=4.0, trace_ids=("e" * 32,)),
        series(window(0), "checkout", delta=2.0, region="us"),
    ]
    requests = [
        series(window(0), "checkout", delta=60.0),
        series(window(0), "checkout", delta=40.0, region="us"),
        series(window(0), "cart", delta=50.0),
        series(window(0), "search", delta=0.0),
    ]

    instances = instance_windows(rule, errors, requests)

    def sample(service):
        return instances[instance_key({"service.name": service})].samples[0]

    assert sample("checkout").value == pytest.approx(0.06)  # Σ errors / Σ requests
    assert sample("cart").value == 0.0  # requests without an error series: no errors
    assert sample("search").value is None  # no requests: no ratio
    checkout = instances[instance_key({"service.name": "checkout"})]
    result = evaluate(rule, checkout, newest=T0, start=T0)
    assert [t.kind for t in result.transitions] == [Kind.TRIGGERED]
    assert result.transitions[0].trace_ids == ("e" * 32,)
    assert result.transitions[0].reason == (
        "delta of http.errors / delta of http.requests was 0.06: > 0.05 (critical)"
    )
