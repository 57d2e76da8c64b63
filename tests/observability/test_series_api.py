"""GET /api/metrics/series: the caller's rolled-up windows, and only theirs."""

from __future__ import annotations

import math

import pytest
from django.db import connection

from core import services
from observability.models import MetricSeries
from tests.observability.test_metric_aggregation import MINUTE, T0, add, at, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def get(client, key, url: str, **params):
    return client.get(url, params, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def two_windows(tenant):
    for minute, values in [(0, [4.0, 8.0]), (1, [2.0])]:
        for i, value in enumerate(values):
            add(tenant, "queue.size", at(minute, seconds=10 + i), value=value)
        run(tenant, "1m", T0 + minute * MINUTE)


def test_it_returns_series_windows_newest_first(client, key, two_windows):
    body = get(client, key, "/api/metrics/series?name=queue.size&window=1m").json()

    windows = [(s["windowStart"], s["last"], s["max"]) for s in body["results"]]
    assert windows == [
        ((T0 + MINUTE).isoformat().replace("+00:00", "Z"), 2.0, 2.0),
        (T0.isoformat().replace("+00:00", "Z"), 8.0, 8.0),
    ]
    assert body["results"][0]["kind"] == "Gauge"


def test_it_filters_by_since(client, key, two_windows):
    since = (T0 + MINUTE).isoformat()
    body = get(client, key, "/api/metrics/series", name="queue.size", since=since).json()

    assert [s["last"] for s in body["results"]] == [2.0]


def test_it_explains_a_bad_window(client, key):
    response = get(client, key, "/api/metrics/series?window=2m")

    assert response.status_code == 400
    assert "window" in response.json()["details"]


def test_it_never_shows_another_tenants_series(client, key, other_tenant):
    add(other_tenant, "queue.size", at(0, seconds=10), value=1.0)
    run(other_tenant, "1m", T0)

    assert get(client, key, "/api/metrics/series?name=queue.size").json()["results"] == []


def test_it_spells_non_finite_values_as_otlp_json_does(client, key, two_windows):
    # Infinities that IEEE arithmetic makes, or a NaN stored before the metric rules.
    MetricSeries.objects.filter(name="queue.size").update(
        max=math.inf, min=-math.inf, mean=math.nan
    )

    response = get(client, key, "/api/metrics/series?name=queue.size&window=1m")

    assert response.status_code == 200
    figures = {(s["max"], s["min"], s["mean"]) for s in response.json()["results"]}
    nan = "NaN" if connection.vendor == "postgresql" else None  # SQLite stores NaN as NULL
    assert figures == {("Infinity", "-Infinity", nan)}
