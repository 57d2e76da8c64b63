"""Span ingestion end to end: HTTP POST of 512-span OTLP JSON batches to a real gunicorn, until
every TraceRecord is committed by a real qcluster, on PostgreSQL; beside COPY of the same span
rows into PostgreSQL (the physical limit of the store), measured in the same run.

Also the accept latency (p50/p99) of those requests while the workers are busy.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
SPANS_PER_BATCH = 512
PORT = 8391


def span_batch(rng: random.Random, now_ns: int, *, spans: int = SPANS_PER_BATCH) -> bytes:
    """64 traces of 8 spans (for 512), 8 attributes each, like an instrumented web service."""
    items = []
    for _ in range(spans // 8):
        trace_id = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64):016x}"
        for i in range(8):
            span_id = root if i == 0 else f"{rng.getrandbits(64):016x}"
            start = now_ns + i * 1_000_000
            items.append(
                {
                    "traceId": trace_id,
                    "spanId": span_id,
                    "parentSpanId": "" if i == 0 else root,
                    "name": "GET /cart" if i == 0 else f"SELECT cart_{i}",
                    "kind": 2 if i == 0 else 3,
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + rng.randint(1, 50) * 1_000_000),
                    "status": {"code": 2 if rng.random() < 0.02 else 1},
                    "attributes": [
                        {"key": f"attr.{k}", "value": {"stringValue": f"value-{k}"}}
                        for k in range(6)
                    ]
                    + [
                        {"key": "http.status_code", "value": {"intValue": "200"}},
                        {"key": "db.rows", "value": {"intValue": str(rng.randint(0, 100))}},
                    ],
                }
            )
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "checkout"}},
                            {"key": "host.name", "value": {"stringValue": "web-1"}},
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "bench"}, "spans": items}],
                }
            ]
        }
    ).encode()


def serve(env: dict, log: Path) -> list[subprocess.Popen]:
    with log.open("ab") as out:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "gunicorn.conf.py",  # production's: 2 processes of 4 threads by default
                "--bind",
                f"127.0.0.1:{PORT}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    time.sleep(5)
    return [web, cluster]


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        os.kill(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def post_all(batches: list[bytes], key: str, clients: int) -> list[float]:
    latencies, lock, todo = [], threading.Lock(), list(batches)

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not todo:
                    return
                body = todo.pop()
            started = time.perf_counter()
            response = session.post(
                f"http://127.0.0.1:{PORT}/v1/traces",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                timeout=60,
            )
            response.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def wait_done(worker: str, timeout: float):
    """When the worker's last message was handled, once none is pending."""
    from django.db.models import Max

    from core.models import Message

    pending = Message.objects.filter(worker=worker, state="pending")
    deadline = time.monotonic() + timeout
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{worker} not done after {timeout}s")
        time.sleep(0.2)
    done = Message.objects.filter(worker=worker, state="done")
    return done.aggregate(last=Max("handled_at"))["last"]


def warm_up(batches: list[bytes], key: str) -> None:
    """A running platform has table statistics; a freshly truncated one has none, and the
    planner guesses (it read whole tables for index lookups). Ingest a few batches, then
    ANALYZE, as autovacuum would within a minute of a real start."""
    from django.db import connection

    post_all(batches, key, clients=4)
    wait_done("TraceIngestionWorker", timeout=300)
    wait_done("TelemetryCorrelationWorker", timeout=300)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def probe_latency(batches: list[bytes], key: str) -> list[float]:
    """Accept latency while the workers are busy: a backlog is posted first, and while the
    cluster works it off, one client posts one request at a time."""
    post_all(batches[: len(batches) // 2], key, clients=4)
    return post_all(batches[len(batches) // 2 :], key, clients=1)


def copy_anchor(tenant_id, batches: list[bytes]) -> float:
    """COPY the same span rows into a scratch copy of the span table: spans per second."""
    from django.db import connection

    from observability import otlp_json, traces

    rows = []
    for body in batches:
        rows += [(tenant_id, *r) for r in traces.rows_of_json(otlp_json.decode_traces(body))]
    columns = traces.SPAN_COLUMNS
    buffer = io.StringIO()
    for values in rows:
        buffer.write("\t".join(_copy_text(v) for v in values) + "\n")
    data = buffer.getvalue()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_span_copy")
        cursor.execute("CREATE TABLE bench_span_copy (LIKE observability_span INCLUDING ALL)")
        started = time.perf_counter()
        with cursor.copy(f"COPY bench_span_copy ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write(data)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_span_copy")
    return len(rows) / elapsed


def _copy_text(value) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    batches_n = int(os.environ.get("BENCH_BATCHES", "200"))
    env = configure_environment()
    env.pop("WORKER_MODULES", None)
    os.environ.pop("WORKER_MODULES", None)
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from core import services
    from core.models import Tenant

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE core_event, core_message, core_failure, core_deadletter, "
            "core_handledkey, observability_span, observability_tracerecord, "
            "observability_telemetrycorrelation, observability_correlatedevent, "
            "observability_telemetrybatch, "
            "django_q_ormq, django_q_task CASCADE"
        )
    tenant = Tenant.objects.get_or_create(slug="bench")[0]
    key = services.issue_api_key(tenant=tenant, name="bench")
    rng, now_ns = random.Random(1), time.time_ns()
    batches = [span_batch(rng, now_ns) for _ in range(batches_n)]
    warm, probes = (
        [span_batch(rng, now_ns) for _ in range(16)],
        [span_batch(rng, now_ns) for _ in range(120)],
    )
    spans = batches_n * SPANS_PER_BATCH
    processes = serve(
        {**os.environ, **env, "OTLP_TENANT_REQUESTS_PER_SECOND": "0"},
        ROOT / "var" / "bench-ingest.log",
    )
    try:
        warm_up(warm, key)
        started = timezone.now()
        latencies = post_all(batches, key, clients=4)
        ingested = wait_done("TraceIngestionWorker", timeout=900)
        correlated = wait_done("TelemetryCorrelationWorker", timeout=900)
        probed = probe_latency(probes, key)
    finally:
        stop(processes)
    end_to_end = spans / (ingested - started).total_seconds()
    with_correlation = spans / (correlated - started).total_seconds()
    anchor = copy_anchor(tenant.pk, batches[:50])
    p50, p99 = _percentiles(latencies)
    busy50, busy99 = _percentiles(probed)
    print(f"""
spans: {batches_n} OTLP JSON requests of {SPANS_PER_BATCH} spans, 4 clients, gunicorn.conf.py and
one qcluster (2 workers) on PostgreSQL, on the same machine
  end to end (POST -> TraceRecords)  {end_to_end:10,.0f} spans/s
  COPY of the same rows (anchor)     {anchor:10,.0f} spans/s
  ratio                              {end_to_end / anchor:10.2f}       (goal: >= 25,000 spans/s)
  ... and correlated (TelemetryCorrelation of every trace)  {with_correlation:,.0f} spans/s
accept latency p50 / p99 (goal: p99 < 100 ms while the workers are busy)
  one request at a time, workers busy  {busy50 * 1000:6.0f} / {busy99 * 1000:.0f} ms
  4 clients at once, saturated         {p50 * 1000:6.0f} / {p99 * 1000:.0f} ms
""")


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    return statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]


if __name__ == "__main__":
    main()
