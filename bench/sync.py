"""Incremental sync: records per second from the vendor simulator into stored SyncRecords with
their factory events, beside a plain bulk upsert of the same rows, on PostgreSQL.

The vendor: tests.integrations.vendor_sim as a process of its own (as a vendor is), serving
RECORDS GitHub issues of one repository (each updated at its own second), 100 to a page, over
HTTP on 127.0.0.1 through core.outbound (OUTBOUND_ALLOWED_HOSTS=127.0.0.1).

Timed: one run of a GitHub connection's issues stream the way the worker runs it:
`handler.start_run`, then `dispatch.drain("IntegrationSyncWorker")` until the run ends. Each
message takes up to SYNC_PAGES_PER_MESSAGE (100) pages, fewer past SYNC_MESSAGE_BYTES (8 MiB)
of replies (this bench's 51 pages of 100 small issues are 2.8 MB: one message; GitHub's own
issues, about 4 KB each, would make about 20 pages a message): claim; then, holding no lock, the
requests to the simulator (rate bucket tokens taken ahead, on the limits' own connection, kept
per process), each sent from core.outbound's threads while the page before is parsed, hashed
and made ready to write (its WorkItemCreated events built); then the connection's lock, the
new records by COPY, a WorkItemCreated per record published in bulk (an Event each, by COPY
too, ids counting up per connection: two rows written per record where the anchor writes one;
no message, as no worker takes a WorkItemCreated that names no trace and no webhook
subscribes to it), the checkpoint and the next command, committed with the message's done
mark. Then a second run over the same records, all unchanged (one page re-read, nothing
published), is reported too.

Anchor, in the same run: `core.bulk.upsert` of the same rows (the same columns and JSON data)
into SyncRecord, 100 rows a transaction, as many transactions as the sync had pages, right
after each of --repeat runs (each a fresh connection's); the ratio is the median of each run's
against its upsert. Goal (issue 12): at least half the upsert's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_sync"
WORKER = "IntegrationSyncWorker"


def start_vendor(records: int, workdir: Path) -> tuple[subprocess.Popen, str]:
    """The simulator in its own process, seeded from a state file; returns it and its URL."""
    calls = [{"method": "add_token", "kwargs": {"token": "bench-token"}}]
    for number in range(1, records + 1):
        minute, second = divmod(number, 60)
        hour, minute = divmod(minute, 60)
        calls.append({
            "method": "github_issue",
            "kwargs": {
                "number": number,
                "updated_at": f"2024-05-01T{hour:02d}:{minute:02d}:{second:02d}Z",
                "title": f"Issue {number}: something to fix in the widget",
                "labels": ["bug", "p2"],
            },
        })  # fmt: skip
    state, ready = workdir / "bench-sync-state.json", workdir / "bench-sync-url"
    state.write_text(json.dumps({"calls": calls}))
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.vendor_sim", "--state", str(state),
         "--ready", str(ready)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the vendor simulator did not start")
        time.sleep(0.05)
    return process, ready.read_text()


def sync_run(connection) -> tuple[float, object]:
    from django.utils import timezone

    from core.models import Message
    from core.runtime import dispatch
    from integrations.sync import handler
    from integrations.sync.models import IntegrationRun

    started = time.perf_counter()
    run = handler.start_run(connection=connection, trigger="manual")
    pending = Message.objects.filter(worker=WORKER, state=Message.State.PENDING)
    while pending.filter(due_at__lte=timezone.now()).exists():
        dispatch.drain(WORKER)
    seconds = time.perf_counter() - started
    run = IntegrationRun.objects.get(pk=run.pk)
    if run.status != "succeeded":
        raise SystemExit(f"the run ended {run.status}: {run.error}")
    return seconds, run


def plain_upsert(tenant, connection, rows_per_page: int, pages: int) -> tuple[float, int]:
    """The anchor: the same rows the sync stored, upserted 100 to a transaction."""
    from django.db import transaction
    from django.utils import timezone

    from core import bulk
    from integrations.sync import handler
    from integrations.sync.models import SyncRecord

    stored = list(
        SyncRecord.objects.filter(connection=connection).values_list(
            "external_id", "content_hash", "hash_algorithm", "data", "cursor"
        )
    )
    now = timezone.now()
    rows = [
        (tenant.pk, connection.pk, "anchor", ext, digest, algorithm, json.dumps(data), cursor,
         now, now, "added", None, i, None)
        for i, (ext, digest, algorithm, data, cursor) in enumerate(stored, start=1)
    ]  # fmt: skip
    size = max(1, -(-len(rows) // pages))
    started = time.perf_counter()
    for start in range(0, len(rows), size):
        with transaction.atomic():
            bulk.upsert(
                SyncRecord,
                handler.RECORD_COLUMNS,
                rows[start : start + size],
                unique=handler.UNIQUE,
                update=handler.UPDATED,
            )
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["OUTBOUND_ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ["WEBHOOK_REQUIRE_HTTPS"] = "0"  # the simulator speaks plain HTTP
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    from core.models import Event, Message, Tenant
    from core.runtime import heap
    from integrations.connections import credentials

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    Tenant.objects.filter(slug__startswith="bench-sync").delete()
    tenant = Tenant.objects.create(slug=f"bench-sync-{uuid.uuid4().hex[:8]}", name="bench")
    process, url = start_vendor(args.records, ROOT / "var")

    def connect(number: int):
        connection = credentials.create_connection(
            tenant=tenant,
            provider="github",
            name=f"bench {number}",
            base_url=url,
            config={"owner": "acme", "repo": "app"},
            streams=["issues"],
        )
        credentials.create_credential(connection=connection, secret={"token": "bench-token"})
        return connection

    heap.settle()
    # Each repetition syncs a fresh connection's records, then upserts the same rows as the
    # anchor at once, so the two see the same moment of a shared machine: the ratio is the
    # median of the pairs'.
    timed, anchors = [], []
    for number in range(args.repeat):
        connection = connect(number)
        seconds, run = sync_run(connection)
        timed.append((seconds, run))
        anchors.append(plain_upsert(tenant, connection, 100, run.pages))
        if number == 0:
            again, second = sync_run(connection)
    seconds = statistics.median(t for t, _ in timed)
    run = timed[0][1]
    rate = run.added / seconds
    first = Event.objects.filter(
        tenant_id=tenant.pk, type="WorkItemCreated", source=f"integration:{run.connection_id}"
    )
    published = first.count()
    messages = Message.objects.filter(tenant_id=tenant.pk, event__in=first).count()
    upsert_seconds, rows = statistics.median(t for t, _ in anchors), anchors[0][1]
    upsert_rate = rows / upsert_seconds
    ratio = statistics.median(
        (r.added / t) / (n / u) for (t, r), (u, n) in zip(timed, anchors, strict=True)
    )
    process.terminate()
    process.wait(timeout=10)
    print(f"""
sync: {args.records:,} GitHub issues from the vendor simulator (HTTP on 127.0.0.1), \
100 a page, PostgreSQL; the worker's path in-process; median of {args.repeat} connections' runs
  first run (store + events)            {rate:10,.0f} records/s   {seconds:6.2f} s \
({run.pages} pages, {published:,} WorkItemCreated, {messages:,} messages)
  second run (all unchanged)            {second.requests:10,d} requests    {again:6.2f} s \
({second.unchanged} re-read, {second.added + second.updated} changed)
  plain bulk upsert (anchor)            {upsert_rate:10,.0f} rows/s      {upsert_seconds:6.2f} s
  ratio to the upsert                   {ratio:10.2f}        (goal: >= 0.5)
""")


if __name__ == "__main__":
    main()
