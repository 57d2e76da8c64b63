"""The OTLP endpoints under fuzzing: whatever arrives, the answer is a 4xx with a message, or a
200 (maybe with partialSuccess) after which TraceIngestionWorker stores every span, data point
or log record the reply counted as accepted: never a 5xx, a failure or a dead letter. Stored
metrics are aggregated too, and the series API answers with them.

Bodies start from the golden requests and are mutated (NUL, lone surrogates, huge and negative
integers, NaN and infinities, wrong JSON types, deep nesting, enum names and numbers, nulls,
empty and long strings, unknown and snake_case keys), sent as JSON or as protobuf (whose
scalars are mutated by type), then maybe truncated, corrupted and gzipped (whole, truncated, or
as several members). The run is derandomized, so CI sees the same bodies each time;
OTLP_FUZZ_EXAMPLES=2000 runs longer.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import transaction
from google.rpc import status_pb2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import services as core_services
from core.models import DeadLetter, Failure, Message
from observability import logs, metrics, otlp, services
from observability.models import LogRecord, MetricPoint, Span, TelemetryBatch
from tests.helpers import drain_all
from tests.observability.test_metric_aggregation import run

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = int(os.environ.get("OTLP_FUZZ_EXAMPLES", "150"))
MINUTE_NS = 60 * 10**9
BASES = {
    "traces": ["traces.json", "invalid_traces.json"],
    "metrics": ["metrics.json"],
    "logs": ["logs.json"],
}
RESPONSES = {
    "traces": ("rejectedSpans", "rejected_spans"),
    "metrics": ("rejectedDataPoints", "rejected_data_points"),
    "logs": ("rejectedLogRecords", "rejected_log_records"),
}


def deep(depth: int) -> dict:
    value: dict = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


VALUES = [
    # strings
    "", "\x00", "a\x00b", "\ud800", "x\udfff", "\ufffd", "é" * 300, "x" * 5000, "NaN",
    "Infinity", "-Infinity", "SPAN_KIND_SERVER", "SEVERITY_NUMBER_WARN", "NOPE", "1e3", " 1",
    "-1", "18446744073709551616", "9223372036854775808", "00" * 16, "ab" * 8, "zz",
    # numbers
    0, -1, 1, 6, 25, 99, 2**31, -(2**31) - 1, 2**32, 2**40, 2**53 + 1, 2**63, 2**64 - 1, 2**64,
    10**30, 1.5, -0.0, 1e308, math.inf, -math.inf, math.nan, True, False, None,
    # containers
    [], [None], [{}], {}, {"stringValue": "s"}, {"doubleValue": "NaN"}, {"values": [None]},
    deep(30), deep(60), [[[[[[[[[[[]]]]]]]]]]],
]  # fmt: skip
KEYS = [
    "name", "kind", "code", "status", "severityNumber", "severityText", "eventName", "body",
    "aggregationTemporality", "timeUnixNano", "startTimeUnixNano", "endTimeUnixNano",
    "observedTimeUnixNano", "count", "sum", "min", "max", "asDouble", "asInt", "explicitBounds",
    "bucketCounts", "quantileValues", "zeroThreshold", "exemplars", "stringValue",
    "doubleValue", "intValue", "key", "value", "unit", "traceId", "spanId", "attributes",
    "future", "[ext]", "span_id", "trace_id", "severity_number",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    signal: str
    media: str
    body: bytes  # as it was before any Content-Encoding
    sent: bytes
    encoding: str  # "identity" or "gzip"


def nodes_of(tree) -> list:
    found = []

    def walk(node):
        if isinstance(node, dict | list):
            found.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(tree)
    return found


def snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


@st.composite
def mutated_tree(draw, signal: str):
    tree = json.loads((GOLDEN / draw(st.sampled_from(BASES[signal]))).read_bytes())
    for _ in range(draw(st.integers(0, 4))):
        nodes = nodes_of(tree)
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        value = copy.deepcopy(draw(st.sampled_from(VALUES)))
        if isinstance(node, list):
            if node and draw(st.booleans()):
                node[draw(st.integers(0, len(node) - 1))] = value
            elif node:
                node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
            continue
        op = draw(st.sampled_from(["set", "alike", "alike", "add", "rename", "delete", "null"]))
        if op == "add" or not node:
            node[draw(st.sampled_from(KEYS))] = value
            continue
        key = draw(st.sampled_from(sorted(node)))
        alike = [v for v in VALUES if type(v) is type(node[key])]
        if op == "alike" and alike:  # a value of the same JSON type: wrong in content only
            node[key] = copy.deepcopy(draw(st.sampled_from(alike)))
        elif op in ("set", "alike"):
            node[key] = value
        elif op == "rename":
            node[snake(key)] = node.pop(key)
        elif op == "delete":
            del node[key]
        else:
            node[key] = None
    return tree


def typed_values(field) -> list:
    kinds = field.__class__
    if field.type == kinds.TYPE_STRING:
        return ["", "\x00", "a\x00b", "x" * 600, "é" * 300]
    if field.type == kinds.TYPE_BYTES:
        return [b"", b"\x00" * 16, b"\x01" * 8, b"\xff" * 17]
    if field.type in (kinds.TYPE_DOUBLE, kinds.TYPE_FLOAT):
        return [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e308, -0.0]
    if field.type in (kinds.TYPE_UINT32, kinds.TYPE_FIXED32):
        return [0, 1, 2**32 - 1]
    if field.type in (kinds.TYPE_UINT64, kinds.TYPE_FIXED64):
        return [0, 1, 2**63, 2**64 - 1]
    if field.type in (kinds.TYPE_INT64, kinds.TYPE_SINT64, kinds.TYPE_SFIXED64):
        return [-(2**63), 2**63 - 1, -1, 0]
    if field.type == kinds.TYPE_BOOL:
        return [True, False]
    return [-1, 0, 6, 25, 99, 2**31 - 1, -(2**31)]  # int32 and enums


def scalars_of(request) -> list[tuple]:
    """(message, field) for every scalar field of every message in ``request``."""
    found = []

    def walk(message):
        found.extend((message, f) for f in message.DESCRIPTOR.fields if not f.message_type)
        for field, value in message.ListFields():
            if field.message_type:
                for child in value if field.is_repeated else [value]:
                    walk(child)

    walk(request)
    return found


@st.composite
def mutated_message(draw, signal: str, tree: dict) -> bytes:
    """The tree as protobuf, with some scalars set to extreme values of their type; the golden
    protobuf request when the tree is not a request at all."""
    try:
        request = otlp.decode(signal, json.dumps(tree).encode(), otlp.JSON)
    except otlp.OtlpError:
        request = otlp.decode(signal, (GOLDEN / f"{signal}.pb").read_bytes(), otlp.PROTOBUF)
    for _ in range(draw(st.integers(0, 3))):
        holders = scalars_of(request)
        if not holders:  # an empty request
            break
        message, field = holders[draw(st.integers(0, len(holders) - 1))]
        value = draw(st.sampled_from(typed_values(field)))
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return request.SerializeToString()


@st.composite
def cases(draw) -> Case:
    signal = draw(st.sampled_from(sorted(BASES)))
    media = draw(st.sampled_from([otlp.JSON, otlp.PROTOBUF]))
    tree = draw(mutated_tree(signal))
    body = json.dumps(tree).encode() if media == otlp.JSON else draw(mutated_message(signal, tree))
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip", "garbage"]))
    if damage == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    elif damage == "garbage":
        body += draw(st.binary(min_size=1, max_size=16))
    packing = draw(st.sampled_from(["identity"] * 3 + ["gzip", "truncated gzip", "members"]))
    sent = body
    if packing == "gzip":
        sent = gzip.compress(body)
    elif packing == "truncated gzip":
        whole = gzip.compress(body)
        sent = whole[: draw(st.integers(0, len(whole) - 1))]
    elif packing == "members":
        half = draw(st.integers(0, len(body)))
        sent = gzip.compress(body[:half]) + gzip.compress(body[half:])
    encoding = "identity" if packing == "identity" else "gzip"
    return Case(signal=signal, media=media, body=body, sent=sent, encoding=encoding)


@pytest.fixture
def key(tenant, settings):
    # Set once for all the examples: pytest-django's settings nest an override per assignment.
    settings.OTLP_TENANT_REQUESTS_PER_SECOND = 0
    return core_services.issue_api_key(tenant=tenant)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=cases())
def test_it_stores_whatever_it_acknowledges_and_explains_whatever_it_refuses(
    client, key, tenant, case
):
    with transaction.atomic():  # each body on an empty database
        response = client.post(
            f"/v1/{case.signal}",
            data=case.sent,
            content_type=case.media,
            headers={"Authorization": f"Bearer {key}", "Content-Encoding": case.encoding},
            CONTENT_TYPE=case.media,  # the test client leaves it out when the body is empty
        )
        event(f"{response.status_code} {case.signal} {case.media.split('/')[1]}")
        if response.status_code == 200:
            check_stored(case, response, tenant, client, key)
        else:
            check_refused(case, response)
        transaction.set_rollback(True)


def check_refused(case: Case, response) -> None:
    assert response.status_code in (400, 413), (response.status_code, case)
    if case.media == otlp.JSON:
        message = response.json()["message"]
    else:
        message = status_pb2.Status.FromString(response.content).message
    assert message, case
    assert not TelemetryBatch.objects.exists()


def check_stored(case: Case, response, tenant, client, key: str) -> None:
    json_name, proto_name = RESPONSES[case.signal]
    if case.media == otlp.JSON:
        rejected = int(response.json().get("partialSuccess", {}).get(json_name, 0))
    else:
        reply = otlp._RESPONSES[case.signal].FromString(response.content)
        rejected = getattr(reply.partial_success, proto_name)
    request = otlp.decode(case.signal, case.body, case.media)
    batch = TelemetryBatch.objects.get()
    assert batch.items + rejected == services.count_items(case.signal, request), case

    drain_all("TraceIngestionWorker")

    assert not Failure.objects.exists(), (Failure.objects.values_list("error", flat=True), case)
    assert not DeadLetter.objects.exists(), case
    assert not Message.objects.filter(worker="TraceIngestionWorker").exclude(state="done").exists()
    keys = stored_keys(case.signal, batch, tenant)
    assert len(keys["all"]) == batch.items, case
    assert keys["stored"] == len(set(keys["all"])), case
    if case.signal == "metrics":
        check_aggregated(tenant, client, key)


def check_aggregated(tenant, client, key: str) -> None:
    """What was stored aggregates (the windows of up to three of its points), and the series
    API answers with it."""
    times = MetricPoint.objects.filter(tenant=tenant).values_list("time_ns", flat=True)
    for minute in sorted({t // MINUTE_NS for t in times})[:3]:
        run(tenant, "1m", datetime.fromtimestamp(minute * 60, tz=UTC))
    response = client.get(
        "/api/metrics/series?window=1m", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.content


def stored_keys(signal: str, batch: TelemetryBatch, tenant) -> dict:
    """The identities of the items of the stored request, as the worker read them, and how
    many rows it stored (an item sent twice in one request is stored once)."""
    if signal == "traces":
        rows = services._span_rows(batch)
        found = [(row.trace_id, row.span_id) for row in rows]
        return {"all": found, "stored": Span.objects.filter(tenant=tenant).count()}
    request = services._decode(batch)
    if signal == "metrics":
        found = [(p.series_key, p.time_ns) for p in metrics.points_of(tenant.id, request)]
        return {"all": found, "stored": MetricPoint.objects.filter(tenant=tenant).count()}
    found = [r.record_key for r in logs.records_of(tenant.id, request)]
    return {"all": found, "stored": LogRecord.objects.filter(tenant=tenant).count()}
