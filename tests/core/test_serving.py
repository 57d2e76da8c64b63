"""The web tier as production runs it (gunicorn.conf.py: core.asgi in front of core.wsgi): a
body is read whole whatever its framing, or nothing of it is acknowledged; and slow clients
cannot starve the others."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from core import services
from core.models import Event
from integrations.models import WebhookSubscription
from observability import otlp
from observability.models import LogRecord, MetricPoint, Span, TelemetryBatch
from tests.core.test_processes import spawn, wait_until
from tests.helpers import drain_all
from tests.observability.test_ingest import NOW_NS, batch, span
from tests.webtier import access_log, connect, read_reply, request_head, web_tier

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = {
    "resourceMetrics": [
        {
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": "queue.depth",
                            "gauge": {"dataPoints": [{"asDouble": 3, "timeUnixNano": str(NOW_NS)}]},
                        }
                    ]
                }
            ]
        }
    ]
}
LOGS = {
    "resourceLogs": [
        {
            "scopeLogs": [
                {
                    "logRecords": [
                        {"timeUnixNano": str(NOW_NS), "body": {"stringValue": "cart emptied"}}
                    ]
                }
            ]
        }
    ]
}


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def chunked(body: bytes, size: int = 64) -> Iterator[bytes]:
    """A body that requests sends without a Content-Length (Transfer-Encoding: chunked), as
    the OpenTelemetry JavaScript exporter does."""
    return iter([body[i : i + size] for i in range(0, len(body), size)])


def send(method: str, url: str, key: str, body: bytes, content_type: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    return requests.request(method, url, data=chunked(body), headers=headers, timeout=30)


def test_it_reads_a_chunked_body_on_every_endpoint(tenant, key, tmp_path):
    event = {"type": "DeploymentPromoted", "data": {"version": "1.4.2"}}
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["DeploymentPromoted"]}
    allow_hooks = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_REQUIRE_HTTPS": "0"}
    with web_tier(tmp_path, **allow_hooks) as base:
        published = send("POST", f"{base}/api/events", key, json.dumps(event).encode(), otlp.JSON)
        subscriptions = f"{base}/api/webhooks/subscriptions"
        created = send("POST", subscriptions, key, json.dumps(hook).encode(), otlp.JSON)
        disabled = send(
            "PATCH",
            f"{subscriptions}/{created.json()['id']}",
            key,
            json.dumps({"enabled": False}).encode(),
            otlp.JSON,
        )
        signals = [
            send(
                "POST",
                f"{base}/v1/traces",
                key,
                batch(span("eee19b7ec3c1b174", "GET /")),
                otlp.JSON,
            ),
            send("POST", f"{base}/v1/metrics", key, json.dumps(METRICS).encode(), otlp.JSON),
            send("POST", f"{base}/v1/logs", key, json.dumps(LOGS).encode(), otlp.JSON),
        ]
    drain_all("TraceIngestionWorker")

    assert [published.status_code, created.status_code, disabled.status_code] == [202, 201, 200]
    assert [r.status_code for r in signals] == [200, 200, 200], [r.text for r in signals]
    assert Event.objects.get(tenant=tenant, type="DeploymentPromoted").data == event["data"]
    assert WebhookSubscription.objects.get().enabled is False
    assert Span.objects.filter(tenant=tenant, name="GET /").count() == 1
    assert MetricPoint.objects.filter(tenant=tenant).count() == 1
    assert LogRecord.objects.filter(tenant=tenant).count() == 1


def test_it_refuses_a_chunked_body_past_the_cap_as_it_arrives(tenant, key, tmp_path):
    spans = [span(f"{i:016x}", "GET /" + "x" * 100) for i in range(1, 60)]
    request = otlp.decode("traces", batch(*spans), otlp.JSON)
    big = request.SerializeToString()
    assert len(big) > 4096
    with web_tier(tmp_path, OTLP_MAX_BODY_BYTES="4096") as base:
        as_protobuf = send("POST", f"{base}/v1/traces", key, big, otlp.PROTOBUF)
        as_json = send("POST", f"{base}/v1/traces", key, batch(*spans), otlp.JSON)
        event = {"type": "DeploymentPromoted", "data": {"notes": "x" * 5000}}
        published = send("POST", f"{base}/api/events", key, json.dumps(event).encode(), otlp.JSON)

    assert as_protobuf.status_code == 413
    assert as_protobuf.headers["Content-Type"] == otlp.PROTOBUF
    assert "4096 bytes" in status_pb2.Status.FromString(as_protobuf.content).message
    assert as_json.status_code == 413 and "4096 bytes" in as_json.json()["message"]
    assert published.status_code == 413 and "4096 bytes" in published.json()["error"]
    assert not TelemetryBatch.objects.exists() and not Event.objects.exists()


def two_resources() -> tuple[bytes, bytes]:
    """A protobuf request of two resources, and the first one's bytes alone: a prefix that is
    itself a valid request, as a body cut off by a client that went away can be."""
    first = otlp.decode("traces", batch(span("eee19b7ec3c1b174", "GET /")), otlp.JSON)
    second = otlp.decode("traces", batch(span("eee19b7ec3c1b175", "GET /x")), otlp.JSON)
    whole = ExportTraceServiceRequest()
    whole.resource_spans.extend([*first.resource_spans, *second.resource_spans])
    return whole.SerializeToString(), first.SerializeToString()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_it_acknowledges_and_stores_nothing_of_a_body_cut_off_mid_way(key, tmp_path, framing):
    whole, prefix = two_resources()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": otlp.PROTOBUF}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        sent = f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"  # and no last chunk
    else:
        headers["Content-Length"] = str(len(whole))
        sent = prefix
    with web_tier(tmp_path) as base:
        with connect(base) as client:
            client.sendall(request_head("POST", "/v1/traces", headers) + sent)
        wait_until(
            lambda: '"POST /v1/traces' in access_log(tmp_path),
            timeout=30,
            what="gunicorn to be done with the request",
            log=tmp_path / "gunicorn.log",
        )

    assert not TelemetryBatch.objects.exists()
    assert '" 200 ' not in access_log(tmp_path)


class SlowClients:
    """Connections that each send a byte a second and never finish: some their request's
    headers, the others (their headers sent) their body."""

    def __init__(self, base: str, *, headers: int, bodies: int):
        self.base = base
        self.stopping = threading.Event()
        self.sent = [0] * (headers + bodies)
        self.failed: list[str] = []
        self.threads = [
            threading.Thread(target=self._send, args=(i, i >= headers), daemon=True)
            for i in range(headers + bodies)
        ]

    def _send(self, index: int, body: bool) -> None:
        head = request_head(
            "POST", "/v1/traces", {"Content-Type": otlp.JSON, "Content-Length": "100000"}
        )
        try:
            with connect(self.base) as sock:
                if body:
                    sock.sendall(head)
                while not self.stopping.wait(0 if self.sent[index] == 0 else 1):
                    sock.sendall(b" " if body else head[self.sent[index] : self.sent[index] + 1])
                    self.sent[index] += 1
        except OSError as exc:
            self.failed.append(f"slow client {index}: {exc!r}")

    def start(self) -> None:
        for t in self.threads:
            t.start()
        wait_until(lambda: min(self.sent) >= 2, timeout=30, what="every slow client to send")

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)


@contextmanager
def slow_clients(base: str, *, headers: int, bodies: int) -> Iterator[SlowClients]:
    clients = SlowClients(base, headers=headers, bodies=bodies)
    clients.start()
    try:
        yield clients
    finally:
        clients.stop()


def test_it_keeps_answering_while_slow_clients_hang_on(tenant, key, tmp_path):
    # One process of two threads here: eight slow clients are four times what it has.
    with (
        web_tier(tmp_path, WEB_CONCURRENCY="1", WEB_THREADS="2") as base,
        slow_clients(base, headers=4, bodies=4) as slow,
    ):
        # The timeouts bound a failure; answering takes milliseconds.
        health = requests.get(f"{base}/api/health/workers", timeout=15)
        accepted = requests.post(
            f"{base}/v1/traces",
            data=batch(span("eee19b7ec3c1b174", "GET /")),
            headers={"Authorization": f"Bearer {key}", "Content-Type": otlp.JSON},
            timeout=15,
        )
        time.sleep(1)  # each slow client sends once more: they were all still there
        still_there = list(slow.sent)
    drain_all("TraceIngestionWorker")

    assert health.status_code in (200, 503) and "status" in health.json()
    assert accepted.status_code == 200, accepted.text
    assert Span.objects.filter(tenant=tenant).count() == 1
    assert not slow.failed and min(still_there) >= 3


@pytest.mark.parametrize("media", [otlp.JSON, otlp.PROTOBUF])
def test_it_answers_408_to_a_body_that_comes_too_slowly(key, tmp_path, media):
    body = batch(span("eee19b7ec3c1b174", "GET /"))
    if media == otlp.PROTOBUF:
        body = otlp.encode_request("traces", otlp.decode("traces", body, otlp.JSON), media)
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": media,
        "Content-Length": str(len(body)),
    }
    slow = {"REQUEST_BODY_TIMEOUT_SECONDS": "2", "REQUEST_BODY_MIN_RATE": "1000"}
    with web_tier(tmp_path, **slow) as base, connect(base) as client:
        client.sendall(request_head("POST", "/v1/traces", headers))
        client.settimeout(0.3)
        reply = b""
        for byte in body:  # about 3 bytes a second, with 1000 a second needed
            client.sendall(bytes([byte]))
            try:
                reply = client.recv(65536)
            except TimeoutError:
                continue
            break
        client.settimeout(30)
        reply += read_reply(client)

    head, _, content = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply
    # In the request's OTLP encoding, as every reply under /v1 is.
    assert f"content-type: {media}".encode() in head.lower()
    status = status_pb2.Status()
    if media == otlp.PROTOBUF:
        status.ParseFromString(content)
    else:
        status.message = json.loads(content)["message"]
    assert "too slowly" in status.message
    assert not TelemetryBatch.objects.exists()


def test_it_refuses_to_serve_the_wsgi_app_on_the_asyncio_worker(tmp_path):
    # gunicorn reads ./gunicorn.conf.py by itself: the command line of old (an app argument)
    # would put the WSGI app on the asyncio worker, which answers every request with a 500.
    log = tmp_path / "gunicorn.log"
    argv = [sys.executable, "-m", "gunicorn", "core.wsgi:application", "--bind", "127.0.0.1:0"]
    process = spawn(argv, log)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert code != 0
    assert "drop the app argument" in log.read_text()
