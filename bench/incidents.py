"""Incident storm: 10,000 AlertTriggered across 500 group keys published at once (one
transaction), handled by IncidentAnalysisWorker into exactly 500 incidents on PostgreSQL; beside
the runtime's own cost for the same 10,000 events (the anchor), measured in the same run.

- The events: 500 alert rules on one service each (500 group keys), 20 instances each, in a
  shuffled order, each naming one exemplar trace, as AlertEvaluationWorker publishes them
  (source "alerting", a derived sourceId).
- Timed: from the publishing transaction's commit until the worker has no message pending,
  drained in this process as one consumer drains (core.runtime.dispatch.drain: claims, its
  (source, sourceId) dedup marks, the handler's loads, writes and 500 IncidentOpened, the done
  marks), in batches of INCIDENT_BATCH_SIZE.
- Anchor: the same 10,000 events, addressed to a no-op batch worker with the same batch size
  and the same (source, sourceId) idempotency key, drained the same way: what the runtime
  costs before the handler does anything. Beside it, the same no-op worker without the key:
  the runtime marks each keyed message in a savepoint of its own (dispatch._first_time), a
  cost the handler cannot shrink.
- Then untimed checks: 500 incidents of 20 triggers each, one per group key, numbered 1..500,
  500 IncidentOpened events, no failure.

A warm-up storm of another tenant runs first, then ANALYZE, as a running platform has table
statistics. Its own database by default (it truncates the runtime's and the incidents' tables).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_incidents"
ANCHOR = "BenchIncidentAnchor"
BARE = "BenchIncidentAnchorWithoutKey"
GOAL = 2000  # triggers/s
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def configure() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    from bench.run import configure_environment

    env = configure_environment()
    env.pop("WORKER_MODULES", None)
    os.environ.pop("WORKER_MODULES", None)
    return env


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE core_event, core_message, core_failure, core_deadletter, core_handledkey, "
            "incidents_incident, incidents_incidentcounter, incidents_incidenttrigger, "
            "incidents_incidenttimelineentry, incidents_incidenttrace, "
            "observability_correlatedevent, django_q_ormq, django_q_task CASCADE"
        )


def register_anchor(name: str, batch_size: int, *, keyed: bool) -> None:
    from core.runtime import registry
    from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker, source_key

    registry.register(
        Worker(
            name=name,
            module=__name__,
            app="bench",
            group="reaction",
            purpose="Does nothing with trigger events: the runtime's own cost per event.",
            trigger=Trigger(description="benchmark: addressed its events"),
            retry=RetryPolicy(max_attempts=5),
            idempotency=Idempotency("(source, sourceId)", key=source_key if keyed else None),
            batch_handler=lambda envelopes: None,
            batch_size=batch_size,
        )
    )


def storm(tenant_id, *, triggers: int, keys: int, seed: int) -> list:
    """`triggers` AlertTriggered across `keys` group keys, shuffled."""
    from core.services import build_envelope

    rng = random.Random(seed)
    per_key = triggers // keys
    envelopes = []
    for n in range(keys * per_key):
        rule, instance = f"rule-{n % keys:04d}", f"{n // keys:03d}"
        at = T0 + timedelta(milliseconds=n)
        data = {
            "triggerKey": f"alert:{rule}:{instance}",
            "groupKey": f"alert:{rule}:svc-{n % keys}",
            "ruleId": rule,
            "ruleRevision": 1,
            "ruleName": f"errors of {rule}",
            "instanceKey": instance,
            "labels": {"service.name": f"svc-{n % keys}", "instance": instance},
            "service": f"svc-{n % keys}",
            "severity": "critical" if rng.random() < 0.3 else "warning",
            "value": 0.12,
            "threshold": 0.05,
            "windowStart": (at - timedelta(minutes=1)).isoformat(),
            "windowEnd": at.isoformat(),
            "windowSize": "1m",
            "reason": "error ratio 0.12 > 0.05 over 1m",
            "traceIds": [f"{rng.getrandbits(128):032x}"],
        }
        envelopes.append(
            build_envelope(
                tenant_id=tenant_id,
                type="AlertTriggered",
                data=data,
                occurred_at=at,
                source="alerting",
                source_id=f"{data['triggerKey']}:{at.isoformat()}:firing",
            )
        )
    rng.shuffle(envelopes)
    return envelopes


def publish(envelopes: list, *, to_worker: str = "") -> None:
    from django.db import transaction

    from core.services import publish_envelopes

    with transaction.atomic():
        publish_envelopes(envelopes, to_worker=to_worker)


def drain(worker: str) -> float:
    """Drain the worker in this process until nothing is pending; the seconds it took."""
    from core.models import Message
    from core.runtime import dispatch

    pending = Message.objects.filter(worker=worker, state=Message.State.PENDING)
    started = time.perf_counter()
    while pending.exists():
        dispatch.drain(worker)
    return time.perf_counter() - started


def check(tenant, keys: int, per_key: int) -> None:
    from django.db.models import Count

    from core.models import DeadLetter, Event, Failure
    from observability.incidents.models import Incident, IncidentTrigger

    incidents = Incident.objects.filter(tenant=tenant)
    sizes = set(incidents.annotate(n=Count("triggers")).values_list("n", flat=True))
    problems = []
    if incidents.count() != keys:
        problems.append(f"{incidents.count()} incidents, not {keys}")
    if incidents.values("group_key").distinct().count() != keys:
        problems.append("a group key has more than one incident")
    if sizes != {per_key}:
        problems.append(f"incident sizes {sorted(sizes)}, not {per_key}")
    if sorted(incidents.values_list("number", flat=True)) != list(range(1, keys + 1)):
        problems.append("the numbers are not 1..N")
    if IncidentTrigger.objects.filter(tenant_id=tenant.pk).count() != keys * per_key:
        problems.append("triggers missing")
    opened = Event.objects.filter(tenant_id=tenant.pk, type="IncidentOpened").count()
    if opened != keys:
        problems.append(f"{opened} IncidentOpened, not {keys}")
    if Failure.objects.exists() or DeadLetter.objects.exists():
        problems.append(f"failures: {list(Failure.objects.values_list('error', flat=True)[:3])}")
    if problems:
        raise SystemExit("incident storm: " + "; ".join(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=500)
    args = parser.parse_args()
    if args.triggers % args.keys:
        parser.error("--triggers must be a multiple of --keys")

    env = configure()
    from bench.run import ensure_database

    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from core.models import Tenant
    from core.runtime import registry

    call_command("migrate", interactive=False, verbosity=0)
    reset_tables()
    worker = registry.get("IncidentAnalysisWorker")
    register_anchor(ANCHOR, worker.batch_size, keyed=True)
    register_anchor(BARE, worker.batch_size, keyed=False)
    per_key = args.triggers // args.keys

    warm = Tenant.objects.get_or_create(slug="bench-warm-up")[0]
    publish(storm(warm.pk, triggers=2000, keys=100, seed=1))
    drain(worker.name)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    tenant = Tenant.objects.get_or_create(slug="bench-storm")[0]
    publish(storm(tenant.pk, triggers=args.triggers, keys=args.keys, seed=2), to_worker=ANCHOR)
    anchor = drain(ANCHOR)
    publish(storm(tenant.pk, triggers=args.triggers, keys=args.keys, seed=2), to_worker=BARE)
    bare = drain(BARE)
    events = storm(tenant.pk, triggers=args.triggers, keys=args.keys, seed=3)
    publish(events)
    handled = drain(worker.name)
    check(tenant, args.keys, per_key)

    rate, anchor_rate, bare_rate = (args.triggers / t for t in (handled, anchor, bare))
    print(f"""
incident storm: {args.triggers:,} AlertTriggered across {args.keys} group keys, published in one
transaction; one in-process consumer, batches of {worker.batch_size}, PostgreSQL
  IncidentAnalysisWorker      {rate:10,.0f} triggers/s   ({handled:.1f} s; {args.keys} incidents \
of {per_key} triggers)
  runtime's no-op (anchor)    {anchor_rate:10,.0f} events/s     ({anchor:.1f} s, same batches and \
(source, sourceId) key)
    the same, no key          {bare_rate:10,.0f} events/s     ({bare:.1f} s)
  ratio                       {rate / anchor_rate:10.2f}           (goal: >= {GOAL:,} triggers/s)
incidents: {rate:,.0f} triggers/s (goal {GOAL:,}) vs the runtime's no-op {anchor_rate:,.0f}/s with \
the same key ({bare_rate:,.0f}/s without), ratio {rate / anchor_rate:.2f}
""")


if __name__ == "__main__":
    main()
