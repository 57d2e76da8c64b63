"""GET /api/logs on a realistic table: the first page of each kind of query, timed.

The table: RECORDS log records (1,000,000 by default) of one tenant over the last 7 days (the
default TELEMETRY_RETENTION_DAYS), from 12 services, with the severities (1% ERROR, 0.01%
FATAL), bodies (text and a few structured ones), attributes and trace ids of a service's
everyday logs, stored by core.bulk (COPY on PostgreSQL) in time order, as they arrive; a rare
word ("quokka") in 5 records, at random times. Then ANALYZE, as a running platform has table
statistics.

Timed: the query the view runs for a first page (observability.selectors.logs, ordered and
cut as observability.api.LogPage does: 100 rows and one more), median of 5 after a warm-up,
for each filter alone and for `q` with and without the filters that bound it. A page is as
fast as the rows the database reads to fill it: an indexed filter (traceId, the newest
records) reads a page; a filter checked row by row (severity, q) reads until a page matches,
and a rare `q` without `since` reads every record of the tenant.

`--trigram` (PostgreSQL) times the same queries again with a pg_trgm GIN index on the body's
text, and what that index costs when records are written: COPY of 100,000 more records with
and without it.

    DATABASE_URL=postgres://... .venv/bin/python bench/logs.py [--records N] [--trigram]
    env -u DATABASE_URL .venv/bin/python bench/logs.py      # SQLite, in var/bench-logs.sqlite3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Its own database by default: the benchmark truncates the log table.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_logs"
SQLITE_PATH = ROOT / "var" / "bench-logs.sqlite3"
DAY_NS = 86_400 * 10**9
SERVICES = [
    "checkout", "cart", "payments", "catalog", "search", "accounts", "shipping", "email",
    "recommendations", "ads", "frontend", "inventory",
]  # fmt: skip
RARE = "quokka"
COLUMNS = [
    "tenant_id", "record_key", "time_ns", "observed_ns", "severity_number", "severity_text",
    "body", "attributes", "resource", "service", "scope", "event_name", "trace_id", "span_id",
    "received_at",
]  # fmt: skip
# (severity number, text, share, body templates)
KINDS = [
    (5, "DEBUG", 0.15, ["cache hit for key product:{n}", "sql: SELECT * FROM items WHERE id={n}"]),
    (
        9,
        "INFO",
        0.80,
        [
            "GET /api/orders/{n} 200 in {ms}ms",
            "POST /api/cart/items 201 in {ms}ms",
            "user {n} signed in from 10.0.{ms}.7",
            "order {n} shipped via carrier DHL",
            "{json}",
        ],
    ),
    (13, "WARN", 0.04, ["retrying call to inventory (attempt 2): {ms}ms", "slow query: {ms}ms"]),
    (
        17,
        "ERROR",
        0.0099,
        [
            "payment declined for order {n}: insufficient funds",
            "TimeoutError: upstream did not answer within 30s (order {n})",
        ],
    ),
    (21, "FATAL", 0.0001, ["out of memory: killing worker {n}"]),
]
PAGE = 100


def resource(service: str) -> str:
    return json.dumps(
        {
            "service.name": service,
            "service.version": "1.4.2",
            "deployment.environment": "production",
            "host.name": f"{service}-7d9f8c-x2k4p",
            "telemetry.sdk.language": "python",
        }
    )


def make_rows(tenant_id, n: int, *, now_ns: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    resources = {s: resource(s) for s in SERVICES}
    weights = [k[2] for k in KINDS]
    rare_at = set(rng.sample(range(n), 5)) if seed == 1 else set()
    rows = []
    # Records arrive about in time order, and are stored so: the table's order on disk follows
    # time_ns, which the (tenant, time_ns) index reads newest first.
    times = sorted(now_ns - rng.randrange(7 * DAY_NS) for _ in range(n))
    for i, time_ns in enumerate(times):
        number, text, _, templates = rng.choices(KINDS, weights)[0]
        service = SERVICES[min(int(rng.expovariate(0.35)), len(SERVICES) - 1)]
        template = rng.choice(templates)
        values = {"n": rng.randrange(10**6), "ms": rng.randrange(1, 3000)}
        if template == "{json}":
            body = {"event": "checkout.completed", "orderId": values["n"], "amount": 42.5}
        else:
            body = template.format(**values)
        if i in rare_at:
            body = f"{body} ({RARE} seen)"
        traced = rng.random() < 0.6
        attributes = {"code.function": "handle", "thread.name": f"worker-{i % 8}"}
        rows.append(
            (
                tenant_id,
                f"{seed:02d}{i:062d}",
                time_ns,
                time_ns + 1_000_000,
                number,
                text,
                json.dumps(body),
                json.dumps(attributes),
                resources[service],
                service,
                "app.logging",
                "",
                rng.randbytes(16).hex() if traced else "",
                rng.randbytes(8).hex() if traced else "",
                "2026-12-01T00:00:00Z",
            )
        )
    return rows


def store(rows: list[tuple]) -> float:
    from django.db import transaction

    from core import bulk
    from observability.models import LogRecord

    started = time.perf_counter()
    for i in range(0, len(rows), 20_000):
        with transaction.atomic():
            bulk.insert_rows(LogRecord, COLUMNS, rows[i : i + 20_000])
    return time.perf_counter() - started


def queries(tenant, *, trace_id: str) -> dict[str, dict]:
    from django.utils import timezone

    now = timezone.now()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    return {
        "no filter": {},
        "traceId": {"trace_id": trace_id},
        "service (a common one)": {"service": "checkout"},
        "service (the rarest, ~0.5%)": {"service": SERVICES[-1]},
        "severity=ERROR (1%)": {"severity": 17},
        "severity=FATAL (0.01%)": {"severity": 21},
        "q common (declined, 0.5%)": {"q": "DECLINED"},
        "q rare, since=1h": {"q": RARE, "since": hour},
        "q rare, since=24h": {"q": RARE, "since": day},
        "q rare, service, since=24h": {"q": RARE, "service": "checkout", "since": day},
        "q rare, traceId": {"q": RARE, "trace_id": trace_id},
        "q rare, no since (all 7 days)": {"q": RARE},
    }


def first_page(tenant, filters: dict) -> int:
    from observability import selectors
    from observability.api import LogPage

    found = selectors.logs(tenant=tenant, **filters).order_by(*LogPage.ordering)
    return len(list(found[: PAGE + 1]))


def timed(tenant, filters: dict) -> tuple[float, int]:
    rows = first_page(tenant, filters)  # warm-up
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        first_page(tenant, filters)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), rows


def report(tenant, trace_id: str, title: str) -> None:
    print(f"\n{title}")
    for name, filters in queries(tenant, trace_id=trace_id).items():
        seconds, rows = timed(tenant, filters)
        print(f"  {name:34} {seconds * 1000:9.1f} ms   {rows:4} rows")


def analyze() -> None:
    from django.db import connection

    from observability.models import LogRecord

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {LogRecord._meta.db_table}")


def trigram(tenant, trace_id: str, now_ns: int) -> None:
    from django.db import connection

    more = make_rows(tenant.pk, 100_000, now_ns=now_ns, seed=2)
    without = store(more)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM observability_logrecord WHERE record_key LIKE '02%%'")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX bench_log_body_trgm ON observability_logrecord "
            "USING gin (upper(body #>> '{}') gin_trgm_ops)"
        )
        built = time.perf_counter() - started
    analyze()
    with_index = store(more)
    print(
        f"\npg_trgm GIN index on the body: built in {built:.1f} s; COPY of 100,000 more "
        f"records {100_000 / without:,.0f} records/s without it, {100_000 / with_index:,.0f} "
        "with it"
    )
    report(tenant, trace_id, "the same queries with the trigram index")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX bench_log_body_trgm")
        cursor.execute("DELETE FROM observability_logrecord WHERE record_key LIKE '02%%'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--trigram", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    sqlite = "DATABASE_URL" not in os.environ
    if sqlite:
        SQLITE_PATH.parent.mkdir(exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}"
    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)
    if not sqlite:
        ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from core.models import Tenant
    from observability.models import LogRecord

    call_command("migrate", interactive=False, verbosity=0)
    tenant = Tenant.objects.get_or_create(slug="bench-logs")[0]
    now_ns = time.time_ns()
    if LogRecord.objects.filter(tenant=tenant).count() != args.records:
        LogRecord.objects.all()._raw_delete(LogRecord.objects.db)
        rows = make_rows(tenant.pk, args.records, now_ns=now_ns, seed=1)
        seconds = store(rows)
        print(f"stored {args.records:,} records in {seconds:.0f} s")
    analyze()
    trace_id = (
        LogRecord.objects.filter(tenant=tenant).exclude(trace_id="").values_list("trace_id")[0][0]
    )
    report(tenant, trace_id, f"{args.records:,} log records, {connection.vendor}: first page")
    if args.trigram and connection.vendor == "postgresql":
        trigram(tenant, trace_id, now_ns)


if __name__ == "__main__":
    main()
