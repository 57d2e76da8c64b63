"""Every endpoint against its own OpenAPI schema (GET /api/schema): schemathesis makes requests
from the schema, valid and invalid ones, with a valid key, sends them to the WSGI application
in-process (core.wsgi, the body guard included) and checks each reply: no server error, a status
the operation documents, in a content type it documents, with headers and a body that conform.

The tenant has traces, logs, metric series, an incident and a subscription with a failed
delivery, stored the way the platform stores them (OTLP through /v1 and the ingestion worker, an
alert through the incident worker, a delivery attempted by the webhook worker), and a GitHub
connection to the vendor simulator, probed and synced by their workers (its health, circuit,
stream, records and run), with a credential being rotated and a failure handled by the retry
worker; a path's id is one of them half of the time, so that the replies of real objects are
checked too.

Derandomized with a fixed seed, FUZZ_EXAMPLES examples per operation (default 20); to fuzz
longer, `FUZZ_EXAMPLES=500 make test PYTEST_ARGS=tests/core/test_api_fuzz.py`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from core import services
from core.runtime import dispatch
from integrations.connections import credentials
from integrations.limits import keys
from integrations.models import WebhookDelivery
from integrations.sync import handler as sync
from integrations.webhooks.subscriptions import create_subscription
from observability import aggregation
from observability.incidents.models import Incident
from observability.models import MetricPoint
from tests.helpers import drain_all, post_otlp
from tests.integrations.failures.support import report as report_failure
from tests.integrations.vendor_sim import VendorSim

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
METRICS_TOKEN = "fuzz-metrics-token"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID, CHILD_ID = "eee19b7ec3c1b174", "eee19b7ec3c1b173"

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261202,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
        "checks": {
            "enabled": False,
            # 503 is the platform's designed "retry later" (an unhealthy /api/health/workers,
            # OTLP load shedding), which status_code_conformance holds to where it is documented.
            "not_a_server_error": {
                "enabled": True,
                "expected-statuses": ["1xx", "2xx", "3xx", "4xx", "503"],
            },
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
    }
)
# The OTLP endpoints take binary protobuf: schemathesis sends the bytes it generates as they are.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")


def _load_schema():
    """The schema as GET /api/schema serves it, from the application the fuzz calls. At import
    (pytest-django has set Django up by then): schemathesis makes one test of each operation."""
    from core.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema", application, config=CONFIG)


schema = _load_schema()


@dataclass(frozen=True)
class World:
    key: str
    ids: dict[str, str]  # a path parameter's name: the id of a real object


@pytest.fixture
def world(db, settings) -> Iterator[World]:
    settings.METRICS_BEARER_TOKEN = METRICS_TOKEN
    settings.WEBHOOK_REQUIRE_HTTPS = False
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    tenant = services.create_tenant(slug="fuzz", name="Fuzz")
    key = services.issue_api_key(tenant=tenant)
    client = Client()
    now_ns = time.time_ns()
    post_otlp(client, key, "traces", _traces(now_ns))
    post_otlp(client, key, "logs", _logs(now_ns))
    post_otlp(client, key, "metrics", _metrics(now_ns))
    _aggregate(tenant)
    drain_all("TelemetryCorrelationWorker")
    delivery = _failed_delivery(tenant, settings)
    incident = _incident(tenant)
    vendor = VendorSim().start()
    try:
        yield World(
            key=key,
            ids={
                "trace_id": TRACE_ID,
                "subscription_id": str(delivery.subscription_id),
                "delivery_id": str(delivery.pk),
                "incident_id": str(incident.pk),
                **_alerting(tenant),
                **_integrations(tenant, vendor),
            },
        )
    finally:
        vendor.close()


@contextmanager
def in_the_tests_transaction():
    """Django closes a connection that is inside a transaction when a request starts and ends
    (it cannot be reused as it is): here, the test's. Django's test client keeps it as this
    does, for its own requests."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (signals.request_started, signals.request_finished):
            signal.connect(close_old_connections)


@schema.parametrize()
@schema.given(real=st.booleans())
# One world for all the requests to an operation: what one request changes, the next sees.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_it_answers_every_request_as_its_schema_documents(case, world, real):
    if real:
        for name in case.path_parameters or {}:
            case.path_parameters[name] = world.ids[name]
    token = METRICS_TOKEN if case.operation.path == "/metrics" else world.key
    with in_the_tests_transaction():
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})


# --- the data --------------------------------------------------------------------------------


def _traces(now_ns: int) -> dict:
    def span(span_id: str, parent: str, name: str, code: int) -> dict:
        return {
            "traceId": TRACE_ID,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 2,
            "startTimeUnixNano": str(now_ns - 5_000_000),
            "endTimeUnixNano": str(now_ns),
            "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
            "events": [{"timeUnixNano": str(now_ns - 1_000_000), "name": "retry"}],
            "status": {"code": code, "message": "declined" if code == 2 else ""},
        }

    return {
        "resourceSpans": [
            {
                "resource": _resource(),
                "scopeSpans": [
                    {
                        "scope": {"name": "fuzz", "version": "1"},
                        "spans": [
                            span(SPAN_ID, "", "GET /cart", 1),
                            span(CHILD_ID, SPAN_ID, "charge", 2),
                        ],
                    }
                ],
            }
        ]
    }


def _logs(now_ns: int) -> dict:
    def record(body: dict, severity: int, trace: bool) -> dict:
        linked = {"traceId": TRACE_ID, "spanId": CHILD_ID} if trace else {}
        return {
            "timeUnixNano": str(now_ns),
            "severityNumber": severity,
            "severityText": "ERROR" if severity >= 17 else "INFO",
            "body": body,
            "attributes": [{"key": "order", "value": {"intValue": "42"}}],
            **linked,
        }

    records = [
        record({"stringValue": "card declined"}, 17, trace=True),
        record({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}, 9, False),
    ]
    scope = {"scope": {"name": "fuzz"}, "logRecords": records}
    return {"resourceLogs": [{"resource": _resource(), "scopeLogs": [scope]}]}


def _metrics(now_ns: int) -> dict:
    start, exemplar = (
        str(now_ns - 60 * 10**9),
        {
            "timeUnixNano": str(now_ns),
            "asDouble": 12.5,
            "traceId": TRACE_ID,
            "spanId": CHILD_ID,
        },
    )
    metrics = [
        {"name": "queue.size", "unit": "1", "gauge": {"dataPoints": [_point(now_ns, 7.0)]}},
        {
            "name": "requests",
            "sum": {
                "aggregationTemporality": 2,
                "isMonotonic": True,
                "dataPoints": [{**_point(now_ns, 3.0), "startTimeUnixNano": start}],
            },
        },
        {
            "name": "latency",
            "unit": "ms",
            "histogram": {
                "aggregationTemporality": 1,
                "dataPoints": [
                    {
                        "startTimeUnixNano": start,
                        "timeUnixNano": str(now_ns),
                        "count": "3",
                        "sum": 40.5,
                        "min": 2.0,
                        "max": 30.0,
                        "bucketCounts": ["1", "1", "1"],
                        "explicitBounds": [5.0, 20.0],
                        "exemplars": [exemplar],
                    }
                ],
            },
        },
    ]
    scope = {"scope": {"name": "fuzz"}, "metrics": metrics}
    return {"resourceMetrics": [{"resource": _resource(), "scopeMetrics": [scope]}]}


def _point(now_ns: int, value: float) -> dict:
    return {"timeUnixNano": str(now_ns), "asDouble": value}


def _resource() -> dict:
    return {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}


def _aggregate(tenant) -> None:
    """Roll the points into their windows, as MetricAggregationWorker's schedules would."""
    assert MetricPoint.objects.filter(tenant=tenant).exists()
    now = timezone.now()
    for window, size in aggregation.WINDOWS.items():
        start = datetime.fromtimestamp(
            now.timestamp() // size.total_seconds() * size.total_seconds(), UTC
        )
        for window_start in (start, start - size):
            aggregation.aggregate_window(tenant.pk, window, window_start, now=now)


def _incident(tenant) -> Incident:
    """An incident opened by an alert whose exemplar is the trace, as IncidentAnalysisWorker
    opens it."""
    data = {"triggerKey": "alert:r:i", "groupKey": "alert:r:checkout", "ruleName": "errors",
            "service": "checkout", "severity": "critical", "traceIds": [TRACE_ID]}  # fmt: skip
    services.publish(tenant=tenant, type="AlertTriggered", data=data, source="alerting")
    drain_all("IncidentAnalysisWorker")
    return Incident.objects.get(tenant=tenant)


def _alerting(tenant) -> dict[str, str]:
    """A rule on the stored gauge, a silence and a latency SLO on the stored histogram."""
    from observability.alerting import services as alerting

    rule = alerting.create_rule(
        tenant=tenant,
        name="queue",
        spec={"query": {"metric": "queue.size"}, "groupBy": ["service.name"], "op": ">",
              "critical": 5},
    )  # fmt: skip
    silence = alerting.create_silence(
        tenant=tenant,
        matchers=[{"label": "service.name", "op": "=", "value": "checkout"}],
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
        created_by="fuzz",
        comment="fuzzing",
    )
    slo = alerting.create_slo(
        tenant=tenant,
        name="latency",
        spec={"service": "checkout", "objective": 0.99,
              "sli": {"type": "latency", "histogram": {"metric": "latency"}, "bound": 20.0}},
    )  # fmt: skip
    return {"rule_id": str(rule.pk), "silence_id": str(silence.pk), "slo_id": str(slo.pk)}


def _integrations(tenant, vendor: VendorSim) -> dict[str, str]:
    """A GitHub connection to the simulator, probed by ExternalApiHealthWorker (its health,
    probes and circuit) and synced once by IntegrationSyncWorker (a stream with its
    checkpoint, records, a run), its credential with a rotation pending, and a failure of its
    sync recorded by IntegrationRetryWorker."""
    vendor.add_token(token="ghp-fuzz")
    for n in range(1, 4):
        vendor.github_issue(number=n, updated_at=f"2026-05-01T10:0{n}:00Z")
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="fuzz",
        base_url=vendor.url,
        config={"owner": "acme", "repo": "app"},
        streams=["issues"],
    )
    credential = credentials.create_credential(connection=connection, secret={"token": "ghp-fuzz"})
    # Probed first: the probe writes the connection's circuit with its tenant, whom the
    # circuit routes look it up by (the sync's own circuit and bucket writes name none).
    probe = {"connectionId": str(connection.pk)}
    services.send(
        tenant=tenant, worker="ExternalApiHealthWorker", type="ConnectionProbeRequested", data=probe
    )
    drain_all("ExternalApiHealthWorker")
    sync.start_run(connection=connection, trigger="manual")
    drain_all("IntegrationSyncWorker")
    credentials.request_rotation(credential=credential, token="fuzz", secret={"token": "ghp-2"})
    failure = report_failure(tenant, failure_id="fuzz-1", connectionId=str(connection.pk))
    return {
        "connection_id": str(connection.pk),
        "credential_id": str(credential.pk),
        "stream": "issues",
        "key": keys.connection(connection.pk),
        "failure_id": str(failure.pk),
    }


def _failed_delivery(tenant, settings) -> WebhookDelivery:
    """A subscription to a port where nothing listens, and an event it matches: the webhook
    worker's first attempt fails to connect, and the delivery waits for its retry."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    settings.WEBHOOK_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    create_subscription(
        tenant=tenant, url=f"http://127.0.0.1:{port}/hooks", event_types=["DeploymentPromoted"]
    )
    services.publish(tenant=tenant, type="DeploymentPromoted", data={"version": "1.2.3"})
    dispatch.drain("WebhookDeliveryWorker")
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == WebhookDelivery.State.RETRYING, delivery.state
    return delivery
