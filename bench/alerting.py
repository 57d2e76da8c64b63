"""Alert evaluation: one tenant's AlertEvaluationWorker tick over RULES rules and RULES x
SERVICES alert instances (1,000 rules over 20,000 instances by default) for one minute's
windows, on PostgreSQL, beside the plain query that reads the same windows.

The windows: one gauge metric per rule, one series per service (service.name), stored as
MetricSeries rows of 1-minute windows, each series at its own level (0 to 100) give or take 2
from one minute to the next, with an exemplar; each rule is `last > 90`, grouped by
service.name: a tenth of the instances fire, and the few near 90 trigger or resolve as they
cross it, as a live system's alerts come and go.

Timed: `observability.alerting.handler.evaluate_rules`, in-process, in one transaction as a
drain runs it (load the rules, their instances and the windows in bulk, evaluate each instance,
write the instances, insert the state changes, publish AlertTriggered and AlertResolved). A
first tick creates the instances (untimed); the figure is the ticks after it, one new minute
each: instances evaluated per second, and the share of a minute one tick takes.

Anchor, in the same run: the plain query that reads the same minute's windows (every column
the handler reads, all rows fetched), rows per second, run right after each tick; the ratio is
the median of each tick's against its read (on a shared machine, a tick and the read beside it
see the same load). Goals (issue 11): a minute's evaluation
in under 10% of the minute, at least a third of the read's rate.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_alerting"
MINUTE = timedelta(minutes=1)
TRACE = "{:032x}"


def minute_start(minutes_ago: int) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


def store_windows(tenant_id, start: datetime, *, rules: int, services: int, seed: int) -> int:
    """One minute's MetricSeries rows: one per rule's metric and service (untimed)."""
    from observability.models import MetricPoint, MetricSeries

    levels, noise = random.Random(0), random.Random(seed)
    rows = []
    for r in range(rules):
        for s in range(services):
            value = levels.uniform(0, 100) + noise.uniform(-2, 2)
            rows.append(
                MetricSeries(
                    tenant_id=tenant_id,
                    series_key=f"{r:05d}-{s:03d}",
                    window="1m",
                    window_start=start,
                    window_end=start + MINUTE,
                    name=f"bench.queue.{r}",
                    unit="1",
                    kind=MetricPoint.Kind.GAUGE,
                    temporality=0,
                    monotonic=False,
                    resource={"service.name": f"service-{s}"},
                    scope="bench",
                    attributes={},
                    points=6,
                    last=value,
                    count=6,
                    min=value,
                    max=value,
                    mean=value,
                    exemplars=[{"traceId": TRACE.format(noise.getrandbits(128)), "value": value}],
                    notes={},
                    computed_at=start + MINUTE,
                )
            )
    MetricSeries.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def make_rules(tenant, rules: int) -> None:
    from observability.alerting import specs
    from observability.alerting.models import AlertRule
    from observability.alerting.rules import AlertRule as Rule
    from observability.alerting.rules import Field, Op, Query

    AlertRule.objects.bulk_create(
        AlertRule(
            tenant=tenant,
            name=f"queue {r} too deep",
            spec=specs.rule_spec(
                Rule(
                    id="",
                    query=Query(metric=f"bench.queue.{r}", window="1m", field=Field.LAST),
                    op=Op.GT,
                    critical=90.0,
                    group_by=("service.name",),
                )
            ),
        )
        for r in range(rules)
    )


def tick(tenant_id, at: datetime) -> float:
    from django.db import transaction

    from core.services import build_envelope
    from observability.alerting.handler import evaluate_rules

    envelope = build_envelope(
        tenant_id=tenant_id,
        type="ScheduleFired",
        data={
            "schedule": "cadence",
            "windowStart": (at - MINUTE).isoformat(),
            "windowEnd": at.isoformat(),
        },
        event_id=uuid.uuid4(),
    )
    started = time.perf_counter()
    with transaction.atomic():
        evaluate_rules(envelope, at)
    return time.perf_counter() - started


def read(tenant_id, start: datetime) -> tuple[float, int]:
    """The anchor: the same minute's windows read plainly, every column the handler reads."""
    from django.db import transaction

    from observability.alerting.windows import COLUMNS
    from observability.models import MetricSeries

    started = time.perf_counter()
    with transaction.atomic():
        rows = list(
            MetricSeries.objects.filter(tenant_id=tenant_id, window="1m", window_start=start)
            .order_by("window_start")
            .values_list("window", *COLUMNS)
        )
    return time.perf_counter() - started, len(rows)


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE observability_metricseries, alerting_alertrule, alerting_alertinstance, "
            "alerting_alertstatechange, alerting_alertrulerevision, core_event, core_message, "
            "core_failure, core_deadletter, core_handledkey CASCADE"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    from core.models import Event, Tenant
    from observability.alerting.models import AlertInstance

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    reset_tables()
    tenant = Tenant.objects.get_or_create(slug="bench-alerting")[0]
    make_rules(tenant, args.rules)
    first = minute_start(args.ticks + 2)
    for i in range(args.ticks + 1):
        store_windows(tenant.pk, first + i * MINUTE, rules=args.rules, services=args.services,
                      seed=i)  # fmt: skip
    # As a qcluster's worker process runs the tick: after core.runtime.heap.settle (start-up
    # frozen, the collector's young generation every 50,000 allocations, not Python's 700).
    from core.runtime import heap

    heap.settle()
    tick(tenant.pk, first + MINUTE)  # creates the instances
    instances = AlertInstance.objects.filter(tenant=tenant).count()
    # Each tick beside a read, so the two see the same moment of a shared machine: the ratio
    # is the median of the pairs' ratios.
    spent, reads = [], []
    for i in range(1, args.ticks + 1):
        spent.append(tick(tenant.pk, first + (i + 1) * MINUTE))
        reads.append(read(tenant.pk, first + i * MINUTE))
    seconds = statistics.median(spent)
    read_seconds, rows = statistics.median(r[0] for r in reads), reads[0][1]
    rate, read_rate = instances / seconds, rows / read_seconds
    ratio = statistics.median(
        (instances / s) / (n / r) for s, (r, n) in zip(spent, reads, strict=True)
    )
    published = Event.objects.filter(type__in=("AlertTriggered", "AlertResolved")).count()
    print(f"""
alerting: {args.rules:,} rules over {instances:,} instances ({args.services} services each), \
one tenant, PostgreSQL;
the tick in-process, one minute's windows each, median of {args.ticks} ticks, each beside a read \
({published:,} events published in all)
  evaluation tick (handler)            {rate:10,.0f} instances/s   {seconds:6.2f} s a minute \
({seconds / 60:.1%} of it; goal < 10%)
  plain read of the windows (anchor)   {read_rate:10,.0f} rows/s        {read_seconds:6.2f} s
  ratio to the read                    {ratio:10.2f}        (goal: >= 0.33)
""")


if __name__ == "__main__":
    main()
