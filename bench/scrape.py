"""GET /metrics on a database of realistic size: what one scrape costs, in queries and time.

The database (PostgreSQL): MESSAGES handled messages of the thirteen workers with their events
(14 days of EVENT_RETENTION_DAYS at about 2 a second), a backlog of a few thousand pending
messages (some leased) and a hundred dead letters; DELIVERIES webhook deliveries of 20
subscriptions (30 days of WEBHOOK_DELIVERY_RETENTION_DAYS: 98% delivered, the rest retrying or
dead) with an attempt each and one more for the failed ones; the counters of OTLP ingestion and
webhook attempts; clusters' heartbeats. Then ANALYZE and VACUUM (a running database has
statistics and a visibility map).

Timed: GET /metrics through Django's test client with the bearer token (the view, every query,
the rendering), median of 20 after a warm-up; the queries of one scrape are counted and the
slowest named.

    DATABASE_URL=postgres://... .venv/bin/python bench/scrape.py [--messages N] [--deliveries N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Its own database by default: the benchmark truncates the tables it fills.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_scrape"
TOKEN = "bench-scrape-token"
TABLES = [
    "core_message", "core_event", "integrations_webhookattempt", "integrations_webhookdelivery",
    "integrations_webhooksubscription", "core_platformcounter", "core_clusterheartbeat",
    "core_workerstate",
]  # fmt: skip


def fill(tenant_id, *, messages: int, deliveries: int) -> None:
    from django.db import connection

    from core.runtime import registry
    from integrations.models import WebhookSubscription

    workers = [w.name for w in registry.all_workers()]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        # Events and their messages: handled ones, then a backlog (a tenth leased), dead letters.
        cursor.execute(
            """
            INSERT INTO core_event (id, type, tenant_id, trace_id, span_id, correlation_id,
                source, source_id, occurred_at, recorded_at, data, to_worker)
            SELECT gen_random_uuid(), 'TraceRecorded', %s, md5(i::text), left(md5(i::text), 16),
                '', 'otlp', i::text, now() - (i || ' seconds')::interval / 2,
                now() - (i || ' seconds')::interval / 2,
                jsonb_build_object('traceId', md5(i::text), 'spans', i %% 50), ''
            FROM generate_series(1, %s) AS i
            """,
            [tenant_id, messages],
        )
        cursor.execute(
            """
            INSERT INTO core_message (event_id, worker, tenant_id, state, due_at, leased_until,
                attempts, claims, created, handled_at, last_error)
            SELECT id, (%s::text[])[1 + (row_number() OVER () %% %s)], tenant_id,
                CASE WHEN row_number() OVER () <= 3000 THEN 'pending'
                     WHEN row_number() OVER () <= 3100 THEN 'dead' ELSE 'done' END,
                recorded_at,
                CASE WHEN row_number() OVER () <= 300 THEN now() + interval '60 seconds' END,
                0, 0, recorded_at, recorded_at + interval '1 second', ''
            FROM core_event
            """,
            [workers, len(workers)],
        )
        cursor.execute(
            "INSERT INTO core_workerstate (worker, drains, last_success) "
            "SELECT w, 0, now() FROM unnest(%s::text[]) AS w",
            [workers],
        )
        cursor.execute(
            "INSERT INTO core_clusterheartbeat (cluster_id, name, host, pid, started, beat_at) "
            "SELECT gen_random_uuid(), n, 'host-1', 1, now(), now() "
            "FROM unnest(ARRAY['default', 'ingestion', 'reaction']) AS n"
        )
    subscriptions = [
        WebhookSubscription.objects.create(
            tenant_id=tenant_id,
            url=f"https://hooks{i}.example.com/in",
            event_types=["*"],
            secret="whsec_x",
        ).pk
        for i in range(20)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO integrations_webhookdelivery (id, tenant_id, subscription_id, event_id,
                event_type, payload, trace_id, span_id, state, attempts, round_attempts, created,
                last_attempt_at, next_attempt_at, delivered_at, last_status, last_error)
            SELECT gen_random_uuid(), %s, (%s::uuid[])[1 + i %% 20], gen_random_uuid(),
                'TraceRecorded', repeat('{"type": "TraceRecorded", "data": {}} ', 18),
                md5(i::text), left(md5(i::text), 16),
                CASE WHEN i %% 200 = 0 THEN 'dead' WHEN i %% 200 < 4 THEN 'retrying'
                     ELSE 'delivered' END,
                1, 1, now() - (i || ' seconds')::interval * 2.5, now(), NULL, now(), 200, ''
            FROM generate_series(1, %s) AS i
            """,
            [tenant_id, subscriptions, deliveries],
        )
        cursor.execute(
            """
            INSERT INTO integrations_webhookattempt (delivery_id, tenant_id, number, at,
                status_code, latency_ms, error, response_body)
            SELECT id, tenant_id, n, created, CASE WHEN state = 'delivered' THEN 200 ELSE 503 END,
                40, '', 'ok'
            FROM integrations_webhookdelivery,
                generate_series(1, CASE WHEN state = 'delivered' THEN 1 ELSE 2 END) AS n
            """
        )
    counters(deliveries)


def counters(deliveries: int) -> None:
    from django.db import transaction

    from core import prometheus
    from integrations.webhooks import prometheus as webhook_metrics
    from observability import prometheus as ingest_metrics

    counts = {}
    for signal in ("traces", "metrics", "logs"):
        for code in ("200", "400", "401", "413", "429", "503"):
            counts[ingest_metrics.OTLP_REQUESTS, (signal, code)] = 1000
        for outcome in ("accepted", "rejected"):
            counts[ingest_metrics.OTLP_ITEMS, (signal, outcome)] = 500_000
    for outcome in webhook_metrics.OUTCOMES:
        counts[webhook_metrics.ATTEMPTS, (outcome,)] = deliveries // 7
    with transaction.atomic():
        prometheus.add(counts)


def vacuum() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as conn:
        for table in TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["METRICS_BEARER_TOKEN"] = TOKEN
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from core.models import Tenant

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    tenant = Tenant.objects.get_or_create(slug="bench-scrape")[0]
    started = time.perf_counter()
    fill(tenant.pk, messages=args.messages, deliveries=args.deliveries)
    vacuum()
    print(f"filled in {time.perf_counter() - started:.0f} s")

    client = Client(headers={"Authorization": f"Bearer {TOKEN}"}, HTTP_HOST="127.0.0.1")
    assert client.get("/metrics").status_code == 200  # warm-up
    runs = []
    for _ in range(20):
        begun = time.perf_counter()
        response = client.get("/metrics")
        runs.append(time.perf_counter() - begun)
    with CaptureQueriesContext(connection) as queries:
        client.get("/metrics")
    slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
    print(
        f"""
GET /metrics, PostgreSQL: {args.messages:,} messages ({3000:,} pending, 100 dead), \
{args.deliveries:,} webhook deliveries
  one scrape        {statistics.median(runs) * 1000:7.1f} ms  (median of 20; \
min {min(runs) * 1000:.1f}, max {max(runs) * 1000:.1f})
  queries           {len(queries.captured_queries):7}
  the slowest       {float(slowest["time"]) * 1000:7.1f} ms  {slowest["sql"][:90]}...
  reply             {len(response.content):7,} bytes, \
{response.content.count(b"# TYPE")} metric families
"""
    )


if __name__ == "__main__":
    main()
