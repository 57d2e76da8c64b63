"""What vendor health adds to GET /metrics (core.prometheus): each connection's state and its
last probe's latency, read from ConnectionHealth at each scrape (one small query: a row per
connection), and the probes made, by outcome, counted as their windows commit."""

from __future__ import annotations

from typing import Any

from core import prometheus
from core.prometheus import Counters, Family, Labels, Metric
from integrations.health.models import ConnectionHealth, State

STATE = Metric(
    "platform_integration_health_state",
    "gauge",
    "1 for each connection's current health state (unknown, up, pending, degraded, down), 0 "
    "for its other states.",
    ("connection_id", "provider", "state"),
)
LATENCY = Metric(
    "platform_integration_probe_latency_seconds",
    "gauge",
    "Each connection's last probe: seconds until its vendor answered (absent: no answer).",
    ("connection_id", "provider"),
)
PROBES = Metric(
    "platform_integration_probes_total",
    "counter",
    "Probes of vendor APIs made, by outcome: ok (its conditions held), failed (they did not, "
    "or no answer).",
    ("outcome",),
)


def count_probe(*, ok: bool) -> None:
    prometheus.add({(PROBES, ("ok" if ok else "failed",)): 1})


def families(*, counters: Counters, **kwargs: Any) -> list[Family]:
    states: dict[Labels, float] = {}
    latency: dict[Labels, float] = {}
    rows = ConnectionHealth.objects.values_list(
        "connection_id", "connection__provider", "state", "latency_ms"
    )
    for connection_id, provider, state, latency_ms in rows:
        for known in State.values:
            states[(str(connection_id), provider, known)] = float(known == state)
        if latency_ms is not None:
            latency[(str(connection_id), provider)] = latency_ms / 1000
    return [
        Family(STATE, states),
        Family(LATENCY, latency),
        prometheus.counter_family(PROBES, counters, known=[("ok",), ("failed",)]),
    ]
