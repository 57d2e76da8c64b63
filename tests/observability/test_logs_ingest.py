"""OTLP/HTTP logs: every record stored once, keeping the trace it belongs to."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from core import services
from observability import otlp
from observability.models import LogRecord
from tests.helpers import drain_all

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "golden" / "logs.json"
TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, body: bytes):
    return client.post(
        "/v1/logs", data=body, content_type=otlp.JSON, headers={"Authorization": f"Bearer {key}"}
    )


def ingest() -> None:
    drain_all("TraceIngestionWorker")


def test_it_stores_each_record_with_its_trace(client, key, tenant):
    response = post(client, key, GOLDEN.read_bytes())
    ingest()

    assert response.status_code == 200 and response.json() == {}
    assert LogRecord.objects.filter(tenant=tenant).count() == 3
    traced = LogRecord.objects.filter(trace_id=TRACE).order_by("time_ns")
    assert [r.severity_text for r in traced] == ["INFO", "ERROR"]
    assert traced[0].body == "cart loaded"
    assert traced[1].body["reason"]


def test_it_changes_nothing_when_a_batch_is_sent_again(client, key):
    post(client, key, GOLDEN.read_bytes())
    post(client, key, GOLDEN.read_bytes())
    ingest()

    assert LogRecord.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_it_stores_what_the_real_sdk_exporter_sends(live_server, tenant):
    key = services.issue_api_key(tenant=tenant)
    exporter = OTLPLogExporter(
        endpoint=f"{live_server.url}/v1/logs", headers={"Authorization": f"Bearer {key}"}
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("tests.otlp.logs")
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.error("payment declined for order %s", 42)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    ingest()

    record = LogRecord.objects.get(tenant=tenant)
    assert record.body == "payment declined for order 42"
    assert (record.severity_text, record.service) == ("ERROR", "checkout")
