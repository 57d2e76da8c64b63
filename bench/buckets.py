"""Rate buckets: acquires per second by several processes on one bucket, beside a plain
single-row UPDATE by as many processes in the same run; and a check that a bucket shared by
them never grants more than it allows.

- Timed: PROCESSES processes (default 4) each call integrations.limits.buckets.acquire on one
  key for SECONDS, outside any transaction as a caller outside a batch does (one conditional
  UPDATE ... RETURNING per grant, autocommit). The rate (10^6/s) and burst are set so high that
  the bucket is not the limit: what is measured is the statement and the row everyone
  contends for.
- Anchor: the same processes, the same seconds, each running `UPDATE limits_ratebucket SET
  grants = grants + 1 WHERE key = %s` on one row of the same table: the least any shared
  counter in the database costs.
- Checked: the processes hammer a bucket of 200/s with a burst of 20 for SECONDS; the grants
  they count, and the row's count, never exceed burst + rate · elapsed.
- Shown too: one process acquiring inside a transaction, as a handler does, through the
  limits' own connection, kept between calls (integrations.limits.store).

Its own database by default (platform_bench_buckets); DATABASE_URL overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_buckets"
GOAL = 0.5
LIMITED_RATE, LIMITED_BURST = 200.0, 20


# --- One process's part --------------------------------------------------------------------


def hammer(mode: str, key: str, seconds: float, start_at: float) -> dict[str, float]:
    """Run `mode` on `key` from `start_at` (time.time()) for `seconds`; count what was done."""
    import django

    django.setup()
    from django.db import connection, transaction

    from integrations.limits import buckets
    from integrations.limits.models import RateBucket

    table = RateBucket._meta.db_table
    connection.ensure_connection()
    time.sleep(max(0.0, start_at - time.time()))
    tries = granted = 0
    began = time.time()
    started = time.monotonic()
    end = started + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < end:
            tries += 1
            if mode == "acquire":
                granted += buckets.acquire(key=key, rate=1e6, burst=1_000_000) is None
            elif mode == "limited":
                granted += buckets.acquire(key=key, rate=LIMITED_RATE, burst=LIMITED_BURST) is None
            elif mode == "in-transaction":
                with transaction.atomic():
                    granted += buckets.acquire(key=key, rate=1e6, burst=1_000_000) is None
            else:
                cursor.execute(f"UPDATE {table} SET grants = grants + 1 WHERE key = %s", [key])
                granted += cursor.rowcount
    return {"tries": tries, "granted": granted, "began": began, "ended": time.time()}


def run(mode: str, key: str, processes: int, seconds: float) -> tuple[float, dict[str, float]]:
    """`processes` processes running `mode` at once; (ops per second, the totals)."""
    start_at = time.time() + 2.0  # every process connected and waiting before the clock
    argv = [sys.executable, __file__, "--part", mode, key, str(seconds), str(start_at)]
    parts = [
        subprocess.Popen(argv, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    results = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in parts]
    # From the first process's start to the last one's end: a process that started late
    # (a slow import) lengthens the span the others ran in.
    totals = {
        "tries": sum(r["tries"] for r in results),
        "granted": sum(r["granted"] for r in results),
        "seconds": max(r["ended"] for r in results) - min(r["began"] for r in results),
    }
    return totals["granted"] / totals["seconds"], totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--part", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    sys.path.insert(0, str(ROOT))
    from bench.run import configure_environment, ensure_database

    env = configure_environment()
    os.environ.pop("WORKER_MODULES", None)
    if args.part:
        mode, key, seconds, start_at = args.part
        print(json.dumps(hammer(mode, key, float(seconds), float(start_at))))
        return
    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    from integrations.limits import buckets
    from integrations.limits.models import RateBucket

    call_command("migrate", interactive=False, verbosity=0)
    RateBucket.objects.all().delete()
    run_id = uuid.uuid4().hex[:8]
    keys = {mode: f"host:bench-{mode}-{run_id}" for mode in ("acquire", "plain", "limited")}
    for key in keys.values():  # the rows exist before the clock: no first-use insert timed
        buckets.acquire(key=key, rate=1e6, burst=1_000_000)

    n, seconds = args.processes, args.seconds
    acquires, acquired = run("acquire", keys["acquire"], n, seconds)
    plain, _ = run("plain", keys["plain"], n, seconds)
    _, limited = run("limited", keys["limited"], n, seconds)
    inside, _ = run("in-transaction", f"host:bench-inside-{run_id}", 1, min(seconds, 2.0))

    row = RateBucket.objects.get(key=keys["limited"])
    # Quiet before the run, the bucket held its burst at most: the burst and the rate over
    # the run's span bound what it may grant (10 ms of slack for the processes' clocks).
    elapsed = limited["seconds"]
    allowed = LIMITED_BURST + LIMITED_RATE * (elapsed + 0.01)
    granted = row.grants - 1  # less the one that created the row
    fair = granted == limited["granted"] and granted <= allowed
    print(f"""
buckets: {n} processes on one bucket for {seconds:.0f} s each, PostgreSQL
  GCRA acquire (one conditional UPDATE)  {acquires:10,.0f} acquires/s  ({acquired["granted"]:,.0f} granted, every one)
  plain single-row UPDATE                {plain:10,.0f} updates/s   (anchor)
  ratio                                  {acquires / plain:10.2f}             (goal: >= {GOAL})
  in a handler's transaction, 1 process  {inside:10,.0f} acquires/s  (the limits' own connection, kept)
  limited bucket {LIMITED_RATE:.0f}/s, burst {LIMITED_BURST}: {granted:,} granted of {limited["tries"]:,} tries in {elapsed:.1f} s; at most {allowed:,.0f} allowed: {"OK" if fair else "TOO MANY"}
""")  # noqa: E501
    if not fair:
        sys.exit(1)


if __name__ == "__main__":
    main()
