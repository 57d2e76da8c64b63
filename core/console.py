"""The operator's landing page (the admin index): what someone paged at night asks first, each
answer a click from its detail. Selectors only; nothing here writes.

The page is a list of sections (SECTIONS), each a selector and a template:
- health: the overall status and each cluster's heartbeat, and per worker its backlog, oldest
  due message, dead letters, failures of the last hour and last success (core.runtime.health's
  report, the same as GET /api/health/workers: six queries, django-q2's stats in the cache
  among them);
- rates over the last hour, per minute: OTLP items accepted by signal and requests refused,
  webhook attempts by outcome (the counters GET /metrics exposes, read from their minute
  ring: one query, at most sixty rows a series), and events published (one query on the
  events' recorded_at index, reading the last hour's);
- the latest failures: the newest Failure rows, each with its message and dead letter (one
  query, on the primary key);
- incidents: the open and acknowledged ones, critical first and newest first, their counts,
  and the alert instances firing (three queries);
- integrations: connections by status, runs ended in the last hour by outcome, failures still
  open by status, and the connections in error or paused (two queries).

Fourteen queries, whatever the size of the database (tests/core/test_admin.py holds it to that).
A later domain (incidents, connections) appends a section of its own to SECTIONS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.db.models.functions import TruncMinute
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import charts, prometheus
from core.formats import format_count, format_moment
from core.models import Event, Failure, Message
from core.prometheus import Labels, Metric, PerMinute
from core.runtime import health
from integrations.webhooks import prometheus as webhook_metrics
from observability import prometheus as ingest_metrics

MINUTES = 60  # the rates' window: the last hour, a minute a point
LATEST_FAILURES = 10
SPARKLINE_WIDTH, SPARKLINE_HEIGHT = 180, 28  # px
SIGNAL_ITEMS = {"traces": "Spans", "metrics": "Metric points", "logs": "Log records"}


@dataclass(frozen=True)
class Rate:
    """A figure per minute over the window, oldest first (the current minute, still counting,
    last), drawn as a sparkline."""

    name: str
    counts: list[int]
    chart: charts.Sparkline
    url: str | None = None  # where the things counted are listed
    note: str = ""  # what the total is made of, when it is a sum
    error: bool = False  # a count of failures: drawn red when not zero

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def peak(self) -> int:
        return max(self.counts, default=0)

    @property
    def alarming(self) -> bool:
        return self.error and self.total > 0


def rate(
    name: str, counts: Sequence[int], *, url: str | None = None, note: str = "", error: bool = False
) -> Rate:
    color = charts.ERROR_COLOR if error and any(counts) else charts.PALETTE[0]
    return Rate(
        name=name,
        counts=list(counts),
        chart=charts.sparkline(
            list(counts), color=color, width=SPARKLINE_WIDTH, height=SPARKLINE_HEIGHT
        ),
        url=url,
        note=note,
        error=error,
    )


def summed(series: Mapping[Labels, Sequence[int]], minutes: int) -> list[int]:
    """Several series' counts added minute by minute."""
    total = [0] * minutes
    for counts in series.values():
        for i, n in enumerate(counts):
            total[i] += n
    return total


def breakdown(series: Mapping[Labels, Sequence[int]]) -> str:
    """A sum's parts over the window, largest first: "429: 12, 503: 3"."""
    parts = sorted(((sum(c), ", ".join(k)) for k, c in series.items() if sum(c)), reverse=True)
    return ", ".join(f"{label}: {format_count(n)}" for n, label in parts)


def ingest_rates(counts: PerMinute, *, minutes: int) -> list[Rate]:
    """OTLP items accepted per minute by signal, then the requests refused (any reply but 200:
    over a rate, a backlog, undecodable, unauthenticated...)."""
    items = counts.get(ingest_metrics.OTLP_ITEMS.name, {})
    requests = counts.get(ingest_metrics.OTLP_REQUESTS.name, {})
    batches = reverse("admin:observability_telemetrybatch_changelist")
    rates = [
        rate(
            f"{label} accepted",
            items.get((signal, "accepted"), [0] * minutes),
            url=f"{batches}?signal__exact={signal}",
        )
        for signal, label in SIGNAL_ITEMS.items()
    ]
    rejected = {k: c for k, c in items.items() if k[1] == "rejected"}
    refused: dict[Labels, list[int]] = {(k[1],): c for k, c in requests.items() if k[1] != "200"}
    rates.append(
        rate(
            "OTLP requests refused",
            summed(refused, minutes),
            note=breakdown(refused),
            error=True,
        )
    )
    rates.append(
        rate(
            "OTLP items rejected",
            summed(rejected, minutes),
            note=breakdown({(signal,): c for (signal, _), c in rejected.items()}),
            error=True,
        )
    )
    return rates


def delivery_rates(counts: PerMinute, *, minutes: int) -> list[Rate]:
    """Webhook attempts per minute: those answered 2xx, and the others by outcome."""
    attempts = counts.get(webhook_metrics.ATTEMPTS.name, {})
    deliveries = reverse("admin:integrations_webhookdelivery_changelist")
    failed = {k: c for k, c in attempts.items() if k != ("2xx",)}
    return [
        rate(
            "Webhook attempts delivered (2xx)",
            attempts.get(("2xx",), [0] * minutes),
            url=deliveries + "?state__exact=delivered",
        ),
        rate(
            "Webhook attempts failed",
            summed(failed, minutes),
            url=deliveries + "?state__exact=retrying",
            note=breakdown(failed),
            error=True,
        ),
    ]


def minute_index(moment: datetime, *, first: int) -> int:
    return prometheus.unix_minute(moment) - first


def events_per_minute(*, now: datetime, minutes: int) -> list[int]:
    """Events published in each minute of the window (one query on recorded_at's index)."""
    first = prometheus.unix_minute(now) - minutes + 1
    since = datetime.fromtimestamp(first * 60, tz=now.tzinfo)
    rows = (
        Event.objects.filter(recorded_at__gte=since, recorded_at__lte=now)
        .annotate(minute=TruncMinute("recorded_at"))
        .values("minute")
        .annotate(n=Count("id"))
        .values_list("minute", "n")
    )
    counts = [0] * minutes
    for minute, n in rows:
        i = minute_index(minute, first=first)
        if 0 <= i < minutes:
            counts[i] += n
    return counts


COUNTED: tuple[Metric, ...] = (
    ingest_metrics.OTLP_ITEMS,
    ingest_metrics.OTLP_REQUESTS,
    webhook_metrics.ATTEMPTS,
)


def rates(*, now: datetime, minutes: int = MINUTES) -> dict[str, list[Rate]]:
    """The landing page's rates, by section: two queries."""
    counts = prometheus.per_minute(COUNTED, minutes=minutes, now=now)
    events = rate(
        "Events published",
        events_per_minute(now=now, minutes=minutes),
        url=reverse("admin:core_event_changelist"),
    )
    return {
        "Ingestion": ingest_rates(counts, minutes=minutes),
        "Delivery": [*delivery_rates(counts, minutes=minutes), events],
    }


@dataclass(frozen=True)
class LatestFailure:
    at: datetime
    worker: str
    event_type: str
    attempt: int
    permanent: bool
    error: str
    message_url: str
    dead_letter_url: str | None  # while the message is dead


def latest_failures(limit: int = LATEST_FAILURES) -> list[LatestFailure]:
    """The newest failed attempts of any worker: one query, newest id first (ids are taken in
    the order attempts fail; no index on `at` alone, and none is needed for this)."""
    failures = Failure.objects.select_related("message__event", "message__dead_letter").order_by(
        "-id"
    )[:limit]
    latest = []
    for failure in failures:
        message = failure.message
        dead_letter = getattr(message, "dead_letter", None)
        latest.append(
            LatestFailure(
                at=failure.at,
                worker=failure.worker,
                event_type=message.event.type,
                attempt=failure.attempt,
                permanent=failure.permanent,
                error=failure.error.strip().partition("\n")[0],
                message_url=reverse("admin:core_message_change", args=[message.pk]),
                dead_letter_url=(
                    reverse("admin:core_deadletter_change", args=[dead_letter.pk])
                    if dead_letter is not None and message.state == Message.State.DEAD
                    else None
                ),
            )
        )
    return latest


def with_times(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The health report speaks ISO 8601 for machines; a page shows ages, so it needs
    datetimes: `key` becomes `keyAt` as well."""
    return {**row, **{f"{key}At": parse_datetime(row[key]) if row[key] else None for key in keys}}


# The position of "due" among the columns of the list of messages (core.admin.MessageAdmin),
# counted from 0: Django's admin sorts a list by a column's position. tests/core/test_admin.py
# checks that the message due longest ago comes first.
DUE_COLUMN = 5


def pending_url(worker: str) -> str:
    """A worker's pending messages, the one due longest ago first: its backlog, and the message
    that has waited longest at the top (ascending by due_at, an order the message_due index
    reads as it is)."""
    query = urlencode({"worker": worker, "state__exact": "pending", "o": str(DUE_COLUMN)})
    return f"{reverse('admin:core_message_changelist')}?{query}"


def health_section(now: datetime) -> dict[str, Any]:
    """The overall status, each cluster's heartbeat and each built worker's queue: six queries
    (core.runtime.health's report)."""
    report = health.report()
    workers = [with_times(w, "lastSuccess", "clusterHeartbeat") for w in report["workers"]]
    return {
        "status": report["status"],
        "checked_at": parse_datetime(report["checkedAt"]),
        "clusters": [with_times(c, "lastHeartbeat") for c in report["clusters"]],
        "workers": [{**w, "pendingUrl": pending_url(w["name"])} for w in workers if w["built"]],
        "not_built": [w["name"] for w in workers if not w["built"]],
    }


def rates_section(now: datetime) -> dict[str, Any]:
    return {"groups": rates(now=now)}


def failures_section(now: datetime) -> dict[str, Any]:
    return {"failures": latest_failures()}


LATEST_INCIDENTS = 20


def incidents_section(now: datetime) -> dict[str, Any]:
    """The open and acknowledged incidents of every tenant, critical first and newest first
    within a severity, each linked to its page; their counts by status and severity; and the
    alert instances firing now (recovering ones, still firing for keep_firing_for, apart).
    Three queries."""
    # The domains' models, imported when the page is drawn: core is loaded before their apps.
    from observability.alerting.models import AlertInstance
    from observability.incidents.models import OPEN_STATUSES, Incident, Severity

    unresolved = Incident.objects.filter(status__in=OPEN_STATUSES)
    critical_first = Case(When(severity=Severity.CRITICAL, then=0), default=1)
    latest = unresolved.select_related("tenant").order_by(critical_first, "-opened_at", "id")
    counts = {
        (row["status"], row["severity"]): row["n"]
        for row in unresolved.values("status", "severity").annotate(n=Count("id")).order_by()
    }
    instances = AlertInstance.objects.aggregate(
        firing=Count("id", filter=Q(state_name="firing")),
        recovering=Count("id", filter=Q(state_name="recovering")),
    )
    found = [
        {
            "number": i.number,
            "title": i.title,
            "tenant": i.tenant.name,
            "severity": i.severity,
            "status": i.status,
            "opened_at": format_moment(i.opened_at),
            "services": ", ".join(i.services),
            "url": reverse("admin:incidents_incident_change", args=[i.pk]),
        }
        for i in latest[:LATEST_INCIDENTS]
    ]
    listing = reverse("admin:incidents_incident_changelist")
    firing = reverse("admin:alerting_alertinstance_changelist")
    return {
        "incidents": found,
        "counts": [
            {
                "status": status,
                "severity": severity,
                "n": counts.get((status, severity), 0),
                "url": f"{listing}?{urlencode({'status': status, 'severity': severity})}",
            }
            for status in OPEN_STATUSES
            for severity in (Severity.CRITICAL, Severity.WARNING)
        ],
        "unresolved": sum(counts.values()),
        "firing": instances["firing"],
        "recovering": instances["recovering"],
        "firing_url": f"{firing}?state_name__exact=firing",
        "recovering_url": f"{firing}?state_name__exact=recovering",
    }


LATEST_TROUBLED = 10  # connections in error or paused, listed by name


def integrations_section(now: datetime) -> dict[str, Any]:
    """The integrations: connections by status (active, paused, error), the runs that ended in
    the last hour by how (succeeded, failed, paused), and the failures still open
    (integrations.failures: open, retrying, poisoned, acknowledged), each figure a link to
    those rows; and the connections in error or paused, error first, with their reasons. Two
    queries: the three counts as one UNION, and the connections listed."""
    from integrations.connections.models import IntegrationConnection
    from integrations.failures.models import ACTIVE, IntegrationFailure
    from integrations.sync.models import IntegrationRun

    since = now - timedelta(minutes=MINUTES)
    Status, Ended = IntegrationConnection.Status, IntegrationRun.Status
    ended = (Ended.SUCCEEDED, Ended.FAILED, Ended.PAUSED)

    def grouped(rows: QuerySet[Any], kind: str) -> QuerySet[Any]:
        """(kind, status, n) for each status of `rows`."""
        counted: QuerySet[Any] = (
            rows.order_by()
            .values("status")
            .annotate(kind=Value(kind), n=Count("pk"))
            .values_list("kind", "status", "n")
        )
        return counted

    counted = grouped(IntegrationConnection.objects.all(), "connection").union(
        grouped(IntegrationRun.objects.filter(finished__gte=since, status__in=ended), "run"),
        grouped(IntegrationFailure.objects.filter(status__in=ACTIVE), "failure"),
        all=True,
    )
    counts = {(kind, status): n for kind, status, n in counted}
    troubled_statuses = (Status.ERROR, Status.PAUSED)
    troubled = IntegrationConnection.objects.filter(status__in=troubled_statuses)
    error_first = Case(When(status=Status.ERROR, then=0), default=1)
    listed = troubled.select_related("tenant").order_by(error_first, "name", "id")
    connections = reverse("admin:connections_integrationconnection_changelist")
    runs = reverse("admin:sync_integrationrun_changelist")
    failures = reverse("admin:failures_integrationfailure_changelist")
    in_window = {"finished__gte": since.isoformat()}

    def figure(kind: str, status: str, url: str, *, alarming: bool = False) -> dict[str, Any]:
        n = counts.get((kind, status), 0)
        return {"status": status, "n": n, "url": url, "alarming": alarming and n > 0}

    return {
        "connections": [
            figure(
                "connection",
                status,
                f"{connections}?{urlencode({'status__exact': status})}",
                alarming=status == Status.ERROR,
            )
            for status in (Status.ACTIVE, Status.PAUSED, Status.ERROR)
        ],
        "runs": [
            figure(
                "run",
                status,
                f"{runs}?{urlencode({'status__exact': status, **in_window})}",
                alarming=status == Ended.FAILED,
            )
            for status in ended
        ],
        "failures": [
            figure(
                "failure",
                status,
                f"{failures}?{urlencode({'status__exact': status})}",
                alarming=True,
            )
            for status in ACTIVE
        ],
        "open_failures": sum(counts.get(("failure", status), 0) for status in ACTIVE),
        "troubled": [
            {
                "name": c.name,
                "provider": c.provider,
                "tenant": c.tenant.name,
                "status": c.status,
                "reason": c.status_reason,
                "updated": format_moment(c.updated),
                "url": reverse("admin:connections_integrationconnection_change", args=[c.pk]),
            }
            for c in listed[:LATEST_TROUBLED]
        ],
        "troubled_count": sum(counts.get(("connection", s), 0) for s in troubled_statuses),
    }


@dataclass(frozen=True)
class Section:
    """A part of the landing page: its `id` (the page's anchor), its `template` (rendered with
    what `context` selects, given the moment the page is drawn) and the app whose models one
    must be allowed to see to be shown it."""

    id: str
    template: str
    context: Callable[[datetime], Mapping[str, Any]]
    app: str = "core"


# The landing page, top to bottom. A domain with something for the operator on call
# (incidents open, connections failing) appends its own Section: a selector and a template.
SECTIONS: list[Section] = [
    Section("health", "admin/core/landing/health.html", health_section),
    Section("rates", "admin/core/landing/rates.html", rates_section),
    Section("latest-failures", "admin/core/landing/failures.html", failures_section),
    Section("incidents", "admin/core/landing/incidents.html", incidents_section, app="incidents"),
    Section(
        "integrations",
        "admin/core/landing/integrations.html",
        integrations_section,
        app="connections",
    ),
]


@dataclass(frozen=True)
class Drawn:
    id: str
    html: str


def landing(request: HttpRequest, *, now: datetime | None = None) -> list[Drawn]:
    """The sections this user may see, drawn."""
    now = now or timezone.now()
    return [
        Drawn(section.id, render_to_string(section.template, section.context(now), request))
        for section in SECTIONS
        if request.user.has_module_perms(section.app)
    ]
