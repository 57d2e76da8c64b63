"""GET /metrics: the platform in Prometheus' text exposition format (version 0.0.4), so that a
Prometheus server scrapes it without an OpenTelemetry collector.

Everything is read from the database at the scrape, so every web process answers the same
(there is no per-process counter to sum): gauges from the rows as they are (a worker's backlog,
the deliveries by state), counters from PlatformCounter rows, raised as things happen by
`add` (one upsert after the change commits). A scrape is a handful of queries whatever the
traffic: the workers' figures (core.runtime.health's, the same as /api/health/workers), the
counters, and one query per app that contributes (the `collecting` signal). Names, HELP and
TYPE as Prometheus' conventions have them: `platform_` first, base units in the name,
`_total` on counters.

Off unless METRICS_BEARER_TOKEN is set: then a scrape must send it as a Bearer token.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_safe

from core.models import ClusterHeartbeat, PlatformCounter
from core.runtime import health

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Sent at each scrape with `counters` (every stored counter: stored_counters()); each receiver
# returns the Families of its app, so that an app adds its metrics without core knowing them.
collecting = Signal()


@dataclass(frozen=True)
class Metric:
    """A metric family: its name, type and help, and the names of its labels."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()


Labels = tuple[str, ...]  # the values of a metric's labels, in Metric.labels order


@dataclass(frozen=True)
class Family:
    """A metric with its samples now: the values of its labels, and its value."""

    metric: Metric
    samples: Mapping[Labels, float] = field(default_factory=dict)


# label values -> value, by metric name
Counters = Mapping[str, Mapping[Labels, int]]


# --- counting -----------------------------------------------------------------------------


def add(counts: Mapping[tuple[Metric, Labels], int], *, now: datetime | None = None) -> None:
    """Raise counters, each (metric, label values) by its count, once the current transaction
    commits (at once outside one): what a rolled back transaction did is not counted, and no
    lock is held on a counter row beyond its statement (every request of a signal raises the
    same row). Robust: a failure to count is logged, never the failure of what was counted.
    Counted in the minute of `now` too (the commit's minute by default: see PlatformCounter)."""
    rows = []
    for (metric, values), count in counts.items():
        if metric.type != "counter" or len(values) != len(metric.labels):
            raise ValueError(f"{metric.name} is not a counter with labels {metric.labels}")
        if count:
            rows.append((metric.name, json.dumps(list(values)), count))
    if rows:
        transaction.on_commit(partial(_raise_counters, sorted(rows), now=now), robust=True)


def unix_minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def _raise_counters(rows: list[tuple[str, str, int]], *, now: datetime | None) -> None:
    # One statement, for the counts since the start and the minute's; rows in key order, so
    # that two of them raising the same rows cannot deadlock. A minute's slot counts from zero
    # again when its row still holds the count of an older minute.
    minute = unix_minute(now or timezone.now())
    slot = minute % PlatformCounter.MINUTE_SLOTS
    slotted = sorted(
        (metric, labels, s, m, count)
        for metric, labels, count in rows
        for s, m in [(PlatformCounter.TOTAL, 0), (slot, minute)]
    )
    table = PlatformCounter._meta.db_table
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(slotted))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (metric, labels, slot, minute, value) VALUES {values} "
            "ON CONFLICT (metric, labels, slot) DO UPDATE SET "
            f"value = CASE WHEN {table}.minute = excluded.minute "
            f"THEN {table}.value + excluded.value ELSE excluded.value END, "
            "minute = excluded.minute",
            [value for row in slotted for value in row],
        )


def stored_counters() -> Counters:
    """Every counter's values: one query (a row per metric and label values)."""
    found: dict[str, dict[Labels, int]] = defaultdict(dict)
    totals = PlatformCounter.objects.filter(slot=PlatformCounter.TOTAL)
    for metric, labels, value in totals.values_list("metric", "labels", "value"):
        found[metric][tuple(json.loads(labels))] = value
    return found


# label values -> the counts of each minute, oldest first, by metric name
PerMinute = Mapping[str, Mapping[Labels, list[int]]]


def per_minute(metrics: Iterable[Metric], *, minutes: int, now: datetime) -> PerMinute:
    """The counts of these counters in each of the `minutes` minutes up to `now` (the current
    one, still counting, last), by label values: one query, at most `minutes` rows a series
    (see PlatformCounter; at most MINUTE_SLOTS minutes back)."""
    if not 0 < minutes <= PlatformCounter.MINUTE_SLOTS:
        raise ValueError(f"minutes must be within 1..{PlatformCounter.MINUTE_SLOTS}")
    last = unix_minute(now)
    first = last - minutes + 1
    rows = PlatformCounter.objects.filter(
        metric__in=[m.name for m in metrics],
        slot__gte=0,
        minute__gte=first,
        minute__lte=last,
    ).values_list("metric", "labels", "minute", "value")
    found: dict[str, dict[Labels, list[int]]] = defaultdict(dict)
    for metric, labels, minute, value in rows:
        series = found[metric].setdefault(tuple(json.loads(labels)), [0] * minutes)
        series[minute - first] = value
    return found


def counter_family(metric: Metric, counters: Counters, *, known: Iterable[Labels] = ()) -> Family:
    """A counter's family from the stored counters, with 0 for the label values in `known`
    that nothing has raised yet (a series that exists from the start has a rate from the
    start; Prometheus' advice)."""
    samples: dict[Labels, float] = dict.fromkeys(known, 0)
    samples.update(counters.get(metric.name, {}))
    return Family(metric, samples)


# --- the platform's own figures -------------------------------------------------------------

WORKER_BACKLOG = Metric(
    "platform_worker_backlog_messages",
    "gauge",
    "Messages due now and not leased, by worker.",
    ("worker",),
)
WORKER_IN_FLIGHT = Metric(
    "platform_worker_in_flight_messages",
    "gauge",
    "Messages leased by a consumer now, by worker.",
    ("worker",),
)
WORKER_DEAD_LETTERS = Metric(
    "platform_worker_dead_letter_messages",
    "gauge",
    "Dead-lettered messages not replayed since, by worker.",
    ("worker",),
)
WORKER_OLDEST_DUE = Metric(
    "platform_worker_oldest_due_age_seconds",
    "gauge",
    "How long the oldest message due and not leased has waited, by worker (0 with none).",
    ("worker",),
)
WORKER_LAST_SUCCESS = Metric(
    "platform_worker_last_success_timestamp_seconds",
    "gauge",
    "When the worker last handled a message successfully, in Unix time (absent: never).",
    ("worker",),
)
CLUSTER_HEARTBEAT = Metric(
    "platform_cluster_last_heartbeat_timestamp_seconds",
    "gauge",
    "When a qcluster of that name last beat, in Unix time.",
    ("cluster",),
)


def worker_families() -> list[Family]:
    """The workers' figures as /api/health/workers has them (health.worker_counts: two
    queries), their last success and the clusters' heartbeats (a query each)."""
    counts = health.worker_counts()
    by_worker: dict[Metric, dict[Labels, float]] = {
        metric: {(name,): float(c[key]) for name, c in counts.items()}
        for metric, key in [
            (WORKER_BACKLOG, "backlog"),
            (WORKER_IN_FLIGHT, "in_flight"),
            (WORKER_DEAD_LETTERS, "dead_letters"),
            (WORKER_OLDEST_DUE, "oldest_due_seconds"),
        ]
    }
    successes: dict[Labels, float] = {
        (name,): moment.timestamp()
        for name, moment in health.last_successes().items()
        if moment is not None and name in counts
    }
    beats: dict[Labels, float] = {
        (name,): beat.timestamp()
        for name, beat in ClusterHeartbeat.objects.values("name")
        .annotate(beat=Max("beat_at"))
        .values_list("name", "beat")
    }
    return [
        *(Family(metric, samples) for metric, samples in by_worker.items()),
        Family(WORKER_LAST_SUCCESS, successes),
        Family(CLUSTER_HEARTBEAT, beats),
    ]


def collect() -> list[Family]:
    """Every family the platform exposes, the workers' first, then each app's."""
    families = worker_families()
    counters = stored_counters()
    for _receiver, found in collecting.send(sender=collect, counters=counters):
        families.extend(cast(list[Family], found))
    return families


# --- the text format ------------------------------------------------------------------------


def render(families: Iterable[Family]) -> str:
    """The exposition text (format 0.0.4): per family its HELP and TYPE, then its samples,
    sorted by label values so that two scrapes of the same figures read the same."""
    lines = []
    for family in families:
        metric = family.metric
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for values, value in sorted(family.samples.items()):
            pairs = zip(metric.labels, values, strict=True)
            labels = ",".join(f'{name}="{_escape_label(v)}"' for name, v in pairs)
            series = f"{metric.name}{{{labels}}}" if labels else metric.name
            lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


# --- the view -------------------------------------------------------------------------------


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """GET /metrics with `Authorization: Bearer <METRICS_BEARER_TOKEN>`. Without the setting
    the endpoint does not exist (404): no token can open it, so 403 would promise what no
    credential gives, and a probe learns nothing. A wrong or missing token: 401, as RFC 6750
    has it, which Prometheus shows as the scrape's error."""
    token: str = settings.METRICS_BEARER_TOKEN
    if not token:
        return HttpResponseNotFound(
            "Not found: /metrics is off; set METRICS_BEARER_TOKEN to turn it on.\n",
            content_type="text/plain; charset=utf-8",
        )
    if not _bearer_matches(request.headers.get("Authorization", ""), token):
        response = HttpResponse(
            "Send the header 'Authorization: Bearer <METRICS_BEARER_TOKEN>'.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(collect()), content_type=CONTENT_TYPE)


def _bearer_matches(header: str, token: str) -> bool:
    """Whether the header is `Bearer <token>`; in constant time, lengths too (digests of
    both are compared, not the texts)."""
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(_digest(given.strip()), _digest(token))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
