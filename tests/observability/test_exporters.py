"""The OpenTelemetry SDKs' own OTLP/HTTP trace exporters, through gunicorn as production runs
it (gunicorn.conf.py). The JavaScript one (Node, tests/js) sends JSON without a Content-Length
(Transfer-Encoding: chunked), which was read as an empty body and acknowledged; the Python one
sends protobuf with a Content-Length."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from core import services
from observability.models import Span, TraceRecord
from tests.helpers import drain_all
from tests.webtier import web_tier

pytestmark = pytest.mark.django_db(transaction=True)
JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip(
            "needs Node.js 20.6+ and npm for the JavaScript exporter: install them, then "
            "`make test` (it runs `npm ci --prefix tests/js`)"
        )
    if not (JS / "node_modules").is_dir():
        pytest.skip("the JavaScript exporter is not installed: `npm ci --prefix tests/js`")
    return found


def assert_stored(tenant, trace_id: str, service: str) -> None:
    drain_all("TraceIngestionWorker")
    record = TraceRecord.objects.get(tenant=tenant, trace_id=trace_id)
    assert (record.span_count, record.error_count, record.root_name) == (2, 1, "GET /cart")
    assert record.services == [service]
    assert Span.objects.get(tenant=tenant, name="SELECT cart").status_message == "timeout"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_it_ingests_what_the_javascript_exporter_sends(node, tenant, tmp_path, compression):
    key = services.issue_api_key(tenant=tenant)
    with web_tier(tmp_path) as base:
        run = subprocess.run(
            [node, "export_traces.mjs", f"{base}/v1/traces", key, compression],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    exported = json.loads(run.stdout.splitlines()[-1])

    assert exported["code"] == 0, exported["error"]  # the exporter's ExportResultCode.SUCCESS
    assert_stored(tenant, exported["traceId"], "storefront")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_it_ingests_what_the_python_exporter_sends(tenant, tmp_path, compression):
    key = services.issue_api_key(tenant=tenant)
    with web_tier(tmp_path) as base:
        exporter = OTLPSpanExporter(
            endpoint=f"{base}/v1/traces",
            headers={"Authorization": f"Bearer {key}"},
            compression=compression,
        )
        provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests")
        with (
            tracer.start_as_current_span("GET /cart") as root,
            tracer.start_as_current_span("SELECT cart") as child,
        ):
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        provider.shutdown()

    assert_stored(tenant, format(root.get_span_context().trace_id, "032x"), "checkout")
