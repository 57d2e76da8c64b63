"""Outbound webhooks end to end: events published on PostgreSQL, fanned out and POSTed by a real
qcluster to a local receiver that answers 200 after 50 ms; beside the same signed payloads
POSTed one at a time from one thread to the same receiver (the anchor), in the same run.

- The receiver is its own process (asyncio, a minimal HTTP/1.1 keep-alive server) listening on
  one port per subscription. Before the clock starts it is hammered alone, to show it is not
  the bottleneck. It checks a sample of signatures with the public `standardwebhooks` library.
- One tenant has ENDPOINTS subscriptions, each to its own receiver port and its own event type;
  the events cycle through those types, so every event makes exactly one delivery. A single
  endpoint would be capped at WEBHOOK_PER_ENDPOINT_CONCURRENCY x 50 ms (160/s per process), by
  design: several endpoints are how 500 deliveries/s arise.
- Events are published the ordinary way (every subscriber of a public event gets it, so the
  wildcard TelemetryCorrelationWorker shares the cluster, as it does in production).
- Throughput: the events committed in one transaction while the cluster is idle; the clock runs
  from that commit until every WebhookDelivery is seen delivered.
- Latency: one event per transaction at a paced rate, from several publisher processes (as from
  web workers); publish -> delivered is measured from the commit of each event, both to
  `delivered_at` (stamped by the worker when it had read the reply) and to the moment the
  receiver answered the delivery's POST (the summary line uses this one). Then the same with
  10 events per transaction (--per-commit): single-event publishes cost the publishers 2-3 ms
  of CPU each, on the same two cores as the cluster.
- Each phase prints the CPU it took (cluster, receiver, this database's PostgreSQL backends,
  the benchmark with its publishers, the whole machine): the machines are shared and noisy.

The qcluster gets WEBHOOK_ALLOWED_HOSTS=127.0.0.1 and WEBHOOK_REQUIRE_HTTPS=0; any other setting
(Q_WORKERS, DISPATCH_CONCURRENCY, WEBHOOK_CONCURRENCY, ...) comes from the caller's environment
and is printed. Logs: var/bench-webhooks*.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform_bench_webhooks"
# Public factory events only the two wildcard workers receive; one per subscription.
EVENT_TYPES = [
    "DeploymentPromoted", "DeploymentStarted", "DeploymentFailed", "BuildCompleted",
    "BuildFailed", "ReleasePublished", "PullRequestMerged", "WorkItemCreated",
    "WorkItemUpdated", "TestRunCompleted",
]  # fmt: skip
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


# --- The receiver (its own process: `webhooks.py --serve N`) ---------------------------------


class Receiver:
    """Answers every POST with 200 after `delay` seconds, on keep-alive connections. Records
    when it answered each webhook-id, and verifies one signed request in `verify_every`."""

    def __init__(self, delay: float, verify_every: int) -> None:
        self.delay, self.verify_every = delay, verify_every
        self.secrets: dict[int, str] = {}  # port -> the subscription's signing secret
        self.requests = self.signed = self.verified = self.bad = 0
        self.answered: dict[str, float] = {}

    async def connection(self, reader, writer) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head[:-4].split(b"\r\n")
                method, path, _ = request_line.split(b" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode()] = value.strip().decode()
                length = int(headers.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                if method == b"GET" and path == b"/stats":
                    writer.write(self._json(self.stats()))
                elif method == b"POST" and path == b"/secrets":
                    self.secrets = {int(k): v for k, v in json.loads(body).items()}
                    writer.write(self._json({}))
                else:
                    await asyncio.sleep(self.delay)
                    self._note(port, headers, body)
                    writer.write(REPLY)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _note(self, port: int, headers: dict, body: bytes) -> None:
        self.requests += 1
        webhook_id = headers.get("webhook-id")
        if webhook_id is None:
            return  # the hammer's unsigned requests
        self.answered[webhook_id] = time.time()
        self.signed += 1
        if self.signed % self.verify_every == 0 and port in self.secrets:
            from standardwebhooks import Webhook, WebhookVerificationError

            try:
                Webhook(self.secrets[port]).verify(body, headers)
                self.verified += 1
            except WebhookVerificationError:
                self.bad += 1

    def stats(self) -> dict:
        """Counters since the last call, then reset."""
        stats = {
            "requests": self.requests,
            "signed": self.signed,
            "verified": self.verified,
            "bad_signatures": self.bad,
            "answered": self.answered,
        }
        self.requests = self.signed = self.verified = self.bad = 0
        self.answered = {}
        return stats

    @staticmethod
    def _json(value) -> bytes:
        body = json.dumps(value).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body


def serve(ports: int, delay: float, verify_every: int) -> None:
    """Listen on `ports` free ports of 127.0.0.1 and print them, as one JSON line."""

    async def main() -> None:
        receiver = Receiver(delay, verify_every)
        servers = [
            await asyncio.start_server(receiver.connection, "127.0.0.1", 0, backlog=1024)
            for _ in range(ports)
        ]
        print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def start_receiver(ports: int, delay: float, verify_every: int, log: Path):
    with log.open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(ports), "--delay", str(delay),
             "--verify-every", str(verify_every)],
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )  # fmt: skip
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the receiver did not start; see {log}")
    return process, json.loads(line)


def receiver_call(port: int, method: str, path: str, body: dict | None = None) -> dict:
    import requests

    response = requests.request(method, f"http://127.0.0.1:{port}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def hammer(ports: list[int], *, connections: int, seconds: float, body: bytes) -> tuple:
    """The receiver alone, from a cheap asyncio client: requests/s and latency p50/p99."""

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        stop_at, latencies = loop.time() + seconds, []
        request = (
            b"POST /hooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

        async def client(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while loop.time() < stop_at:
                started = loop.time()
                writer.write(request)
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                latencies.append(loop.time() - started)
            writer.close()

        await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(connections)))
        return latencies

    latencies = asyncio.run(run())
    return len(latencies) / seconds, *_percentiles(latencies)


# --- CPU accounting, from /proc --------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _procs():
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        yield comm, int(fields[2]), (int(fields[11]) + int(fields[12])) / TICK, cmdline


def cpu_snapshot(cluster_pgid: int, receiver_pid: int, database: str) -> dict[str, float]:
    """CPU seconds used so far by the cluster (its process group), the receiver, this process,
    and the PostgreSQL backends connected to the benchmark's database; and the machine's."""
    used = {"cluster": 0.0, "receiver": 0.0, "postgres": 0.0}
    for comm, pgrp, seconds, cmdline in _procs():
        if pgrp == cluster_pgid:
            used["cluster"] += seconds
        elif pgrp == receiver_pid:
            used["receiver"] += seconds
        elif comm == "postgres" and f" {database} ".encode() in cmdline:
            used["postgres"] += seconds
    times = os.times()
    # This process, and its children once reaped: the latency run's publisher processes.
    used["bench"] = times.user + times.system + times.children_user + times.children_system
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    used["machine"] = (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait
    used["wall"] = time.monotonic()
    return used


def cpu_line(before: dict, after: dict) -> str:
    spent = {k: after[k] - before[k] for k in before}
    wall = spent.pop("wall")
    parts = [f"{k} {v / wall:.2f}" for k, v in spent.items()]
    return f"CPU cores busy over {wall:.1f} s: " + ", ".join(parts) + f" (of {os.cpu_count()})"


# --- The platform side -----------------------------------------------------------------------


def configure() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    from bench.run import configure_environment

    env = configure_environment()
    env.pop("WORKER_MODULES", None)  # bench.workers' no-op subscriber would take BuildCompleted
    os.environ.pop("WORKER_MODULES", None)
    env["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    env["WEBHOOK_REQUIRE_HTTPS"] = "0"
    os.environ.update(env)
    return env


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE core_event, core_message, core_failure, core_deadletter, core_handledkey, "
            "integrations_webhookattempt, integrations_webhookdelivery, "
            "integrations_webhooksubscription, observability_correlatedevent, "
            "django_q_ormq, django_q_task CASCADE"
        )


def subscribe(tenant, ports: list[int]) -> list:
    from integrations.webhooks.subscriptions import create_subscription

    return [
        create_subscription(
            tenant=tenant,
            url=f"http://127.0.0.1:{port}/hooks/{i}",
            event_types=[EVENT_TYPES[i]],
            description=f"bench endpoint {i}",
        )[0]
        for i, port in enumerate(ports)
    ]


def envelope(tenant_id, i: int, endpoints: int):
    from core.services import build_envelope

    # A deployment-sized payload (about 600 bytes signed).
    return build_envelope(
        tenant_id=tenant_id,
        type=EVENT_TYPES[i % endpoints],
        data={
            "n": i,
            "service": "checkout",
            "environment": "production",
            "version": f"2.{i // 1000}.{i % 1000}",
            "commit": f"{i:040x}",
            "actor": "release-bot",
            "url": f"https://ci.example.com/pipelines/{i}",
        },
        source="bench",
        source_id=str(i),
    )


def publish_all(envelopes: list) -> float:
    """Publish in one transaction; the time of its commit."""
    from django.db import transaction

    from core.services import publish_envelopes

    committed = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.time()))  # before the kick's
        publish_envelopes(envelopes)
    return committed[0]


def wait_delivered(n: int, *, timeout: float) -> float:
    """Poll until n deliveries are delivered; the time it saw them. Stops on a failure."""
    from integrations.models import WebhookDelivery

    State = WebhookDelivery.State
    deliveries = WebhookDelivery.objects.all()
    deadline = time.monotonic() + timeout
    while True:
        delivered = deliveries.filter(state=State.DELIVERED).count()
        if delivered >= n:
            return time.time()
        failed = deliveries.filter(state__in=[State.RETRYING, State.DEAD]).first()
        if failed is not None:
            raise SystemExit(f"delivery {failed.pk} failed: {failed.last_error}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{delivered} of {n} deliveries delivered after {timeout}s")
        time.sleep(0.05)


def clear_deliveries() -> None:
    from integrations.models import WebhookAttempt, WebhookDelivery

    WebhookAttempt.objects.all().delete()
    WebhookDelivery.objects.all().delete()


def bench_throughput(tenant, n: int, endpoints: int) -> tuple[float, float]:
    """Deliveries/s from the commit of n events until the last delivery is seen delivered."""
    batch = [envelope(tenant.pk, i, endpoints) for i in range(n)]
    committed = publish_all(batch)
    seen = wait_delivered(n, timeout=600)
    return n / (seen - committed), seen - committed


def bench_latency(
    tenant,
    rate: float,
    seconds: float,
    endpoints: int,
    receiver_port: int,
    publishers: int,
    per_commit: int = 1,
):
    """`per_commit` events per transaction at `rate` events/s for `seconds`, from `publishers`
    processes (as from that many web workers: a publish costs several milliseconds of CPU, more
    than one process can spend 200 times a second); publish -> delivered percentiles."""
    import multiprocessing

    from django.db import connections

    from integrations.models import WebhookDelivery

    n = round(rate * seconds)
    start = time.time() + 1.0  # after the forks
    connections.close_all()  # the children must not share this process's connection
    pool = multiprocessing.get_context("fork").Pool(publishers, initializer=_default_sigterm)
    try:
        shares = pool.starmap(
            _publish_share,
            [
                (
                    tenant.pk,
                    range(k * per_commit, n, publishers * per_commit),
                    rate,
                    start,
                    endpoints,
                    per_commit,
                    n,
                )
                for k in range(publishers)
            ],
        )
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()  # the workers leave when the queue runs dry
    finally:
        pool.join()
    committed = {event_id: at for share, _ in shares for event_id, at in share.items()}
    costs = [cost for _, share in shares for cost in share]  # (wall, cpu) of each publish
    stamps = sorted(committed.values())
    achieved = (n - 1) / (stamps[-1] - stamps[0])
    wait_delivered(n, timeout=600)
    answered = receiver_call(receiver_port, "GET", "/stats")["answered"]
    to_row, to_answer = [], []
    for event_id, delivery_id, delivered_at in WebhookDelivery.objects.values_list(
        "event_id", "id", "delivered_at"
    ):
        to_row.append(delivered_at.timestamp() - committed[event_id])
        to_answer.append(answered[f"msg_{delivery_id.hex}"] - committed[event_id])
    walls, cpus = zip(*costs, strict=True)
    publish = (*_percentiles(walls), statistics.mean(cpus))
    return achieved, _percentiles(to_row), _percentiles(to_answer), publish


def _default_sigterm() -> None:
    # Not the parent's handler (a Python-level exit): terminate() must end a worker at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _publish_share(
    tenant_id, firsts: range, rate: float, start: float, endpoints: int, per_commit: int, n: int
):
    """A publisher process: events first..first+per_commit-1 in one transaction, due at
    start + first / rate; returns when each committed, and what each publish cost (wall, CPU)."""
    from django.db import connection, transaction

    from core.services import publish_envelopes

    committed, costs = {}, []

    def stamp(event_ids) -> None:
        now = time.time()
        for event_id in event_ids:
            committed[event_id] = now

    try:
        for first in firsts:
            pause = start + first / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            started, cpu = time.perf_counter(), time.thread_time()
            batch = [
                envelope(tenant_id, i, endpoints) for i in range(first, min(first + per_commit, n))
            ]
            ids = [e.event_id for e in batch]
            with transaction.atomic():
                transaction.on_commit(lambda ids=ids: stamp(ids))  # before the kick's
                publish_envelopes(batch)
            costs.append((time.perf_counter() - started, time.thread_time() - cpu))
    finally:
        connection.close()
    return committed, costs


def anchor_one_at_a_time(n: int) -> float:
    """The same payloads, signed and POSTed serially from this thread through core.outbound."""
    from django.utils import timezone

    from core import outbound
    from integrations.models import WebhookDelivery
    from integrations.webhooks.delivery import signed_request

    deliveries = list(WebhookDelivery.objects.select_related("subscription")[:n])
    started = time.perf_counter()
    for delivery in deliveries:
        request = signed_request(delivery, now=timezone.now())
        reply = outbound.post(request.url, body=request.body, headers=request.headers)
        assert reply.status == 200, reply
    return len(deliveries) / (time.perf_counter() - started)


def warm_up(tenant, endpoints: int, n: int) -> None:
    """A running platform has table statistics; a freshly truncated one has none and the
    planner guesses. Deliver a few hundred, then ANALYZE, as autovacuum would."""
    from django.db import connection

    publish_all([envelope(tenant.pk, i, endpoints) for i in range(n)])
    wait_delivered(n, timeout=300)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    from bench import run

    cluster = run.start_cluster(env, log)
    if cluster.poll() is not None:
        raise SystemExit(f"the qcluster exited ({cluster.returncode}); see {log}")
    return cluster


def stop(process: subprocess.Popen | None, *, grace: float) -> None:
    """SIGTERM, then SIGKILL to the whole process group (the cluster's forked workers too)."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _percentiles(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=8, help=f"<= {len(EVENT_TYPES)}")
    parser.add_argument("--rate", type=float, default=200, help="events/s of the latency run")
    parser.add_argument("--seconds", type=float, default=25, help="length of the latency run")
    parser.add_argument("--publishers", type=int, default=4, help="processes of the latency run")
    parser.add_argument(
        "--per-commit", type=int, default=10, help="events per transaction, second latency run"
    )
    parser.add_argument("--anchor", type=int, default=100, help="one-at-a-time deliveries")
    parser.add_argument("--delay", type=float, default=0.05, help="the receiver's answer time")
    parser.add_argument("--verify-every", type=int, default=10)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.delay, args.verify_every)
    if not 1 <= args.endpoints <= len(EVENT_TYPES):
        parser.error(f"--endpoints: 1 to {len(EVENT_TYPES)}")

    env = configure()
    from bench.run import ensure_database

    ensure_database(env["DATABASE_URL"])
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from core.models import Tenant
    from core.runtime import registry

    batch = registry.get("WebhookDeliveryWorker").batch_size
    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    reset_tables()
    tenant = Tenant.objects.get_or_create(slug="bench")[0]
    (ROOT / "var").mkdir(exist_ok=True)
    receiver = cluster = None
    # SIGTERM (as from `timeout`) unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        receiver, ports = start_receiver(
            args.endpoints, args.delay, args.verify_every, ROOT / "var" / "bench-webhooks.log"
        )
        control = ports[0]
        subscriptions = subscribe(tenant, ports)
        secrets = {p: s.secret for p, s in zip(ports, subscriptions, strict=True)}
        receiver_call(control, "POST", "/secrets", secrets)
        sample = envelope(tenant.pk, 0, 1).as_dict()
        body = json.dumps({"type": "x", "timestamp": "t", "data": sample}).encode()
        alone = hammer(ports, connections=128, seconds=3, body=body)
        receiver_call(control, "GET", "/stats")

        cluster = start_cluster(env, ROOT / "var" / "bench-webhooks-cluster.log")
        warm_up(tenant, args.endpoints, 400)
        anchor = anchor_one_at_a_time(args.anchor)
        clear_deliveries()
        receiver_call(control, "GET", "/stats")

        before = cpu_snapshot(cluster.pid, receiver.pid, database)
        throughput, took = bench_throughput(tenant, args.deliveries, args.endpoints)
        cpu_throughput = cpu_line(before, cpu_snapshot(cluster.pid, receiver.pid, database))
        checked = receiver_call(control, "GET", "/stats")
        clear_deliveries()

        before = cpu_snapshot(cluster.pid, receiver.pid, database)
        achieved, (p50, p99), (a50, a99), publish = bench_latency(
            tenant, args.rate, args.seconds, args.endpoints, control, args.publishers
        )
        cpu_latency = cpu_line(before, cpu_snapshot(cluster.pid, receiver.pid, database))
        clear_deliveries()

        before = cpu_snapshot(cluster.pid, receiver.pid, database)
        batched = bench_latency(
            tenant,
            args.rate,
            args.seconds,
            args.endpoints,
            control,
            args.publishers,
            per_commit=args.per_commit,
        )
        cpu_batched = cpu_line(before, cpu_snapshot(cluster.pid, receiver.pid, database))
    finally:
        stop(cluster, grace=60)
        stop(receiver, grace=5)

    if checked["bad_signatures"] or checked["signed"] < args.deliveries:
        raise SystemExit(f"receiver: {checked}")
    print(f"""
webhooks: {args.endpoints} subscriptions of one tenant, each its own receiver port and event type
(one delivery per event; the events also reach TelemetryCorrelationWorker, as in production);
receiver answers 200 after {args.delay * 1000:.0f} ms; one qcluster, batches of {batch}, PostgreSQL:
Q_WORKERS={settings.Q_CLUSTER["workers"]} DISPATCH_CONCURRENCY={settings.DISPATCH_CONCURRENCY} \
WEBHOOK_CONCURRENCY={settings.WEBHOOK_CONCURRENCY} \
WEBHOOK_PER_ENDPOINT_CONCURRENCY={settings.WEBHOOK_PER_ENDPOINT_CONCURRENCY} \
QCLUSTER_NICE={settings.QCLUSTER_NICE}
  receiver alone, 128 connections   {alone[0]:8,.0f} req/s   p50 {alone[1] * 1000:.0f} ms, \
p99 {alone[2] * 1000:.0f} ms
  concurrent delivery                {throughput:8,.0f} deliveries/s   \
({args.deliveries:,} in {took:.1f} s; {checked["verified"]} signatures verified)
  one at a time (anchor)             {anchor:8,.1f} deliveries/s   ({args.anchor} deliveries)
  ratio                              {throughput / anchor:8,.1f}x       (goal: >= 500/s)
    {cpu_throughput}
  at {args.rate:.0f} events/s for {args.seconds:.0f} s from {args.publishers} processes \
(achieved {achieved:.0f}/s), publish -> delivered (goal: p99 < 2000 ms)
    to delivered_at                  p50 {p50 * 1000:6.0f} ms   p99 {p99 * 1000:6.0f} ms
    to the receiver's answer         p50 {a50 * 1000:6.0f} ms   p99 {a99 * 1000:6.0f} ms
    one delivery alone (anchor)          {1000 / anchor:6.0f} ms
    a publish (one event, commit and kick) took p50 {publish[0] * 1000:.1f} ms, \
p99 {publish[1] * 1000:.1f} ms, CPU {publish[2] * 1000:.1f} ms
    {cpu_latency}
  the same, {args.per_commit} events per transaction (achieved {batched[0]:.0f}/s)
    to the receiver's answer         p50 {batched[2][0] * 1000:6.0f} ms   \
p99 {batched[2][1] * 1000:6.0f} ms
    {cpu_batched}
webhooks: {throughput:,.0f} deliveries/s (goal 500) vs one-at-a-time {anchor:.1f}/s, \
ratio {throughput / anchor:.1f}; at {achieved:.0f} events/s: p50 {a50 * 1000:.0f} ms, \
p99 {a99 * 1000:.0f} ms; at {batched[0]:.0f} events/s ({args.per_commit} a commit): \
p50 {batched[2][0] * 1000:.0f} ms, p99 {batched[2][1] * 1000:.0f} ms (goal < 2000)
""")


if __name__ == "__main__":
    main()
