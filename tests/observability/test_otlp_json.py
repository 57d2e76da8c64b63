"""The cheap way for OTLP JSON traces: it takes only what the reference path would keep as it
is, and it reads what it takes into the same rows as the protobuf path."""

from __future__ import annotations

import copy
import gzip
import json
import math
import random
import time
from pathlib import Path

import pytest

from core import services
from observability import otlp, otlp_json, traces
from observability.models import Span, TelemetryBatch
from tests.helpers import drain_all
from tests.observability.test_otlp import snake_case

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_767_225_600_000_000_000  # 2026-01-01, after every golden timestamp
BOUNDS = otlp.time_bounds(NOW)
TRACE = "5b8efff798038103d269b633813fc60c"
NOW_NS = time.time_ns()


FUTURE_KEYS = {"someFutureField", "futureSpanField"}


def without_future_fields(tree):
    """The golden request without the keys it carries to show that unknown keys are ignored
    (this path leaves requests with unknown keys to the reference path)."""
    if isinstance(tree, dict):
        return {k: without_future_fields(v) for k, v in tree.items() if k not in FUTURE_KEYS}
    if isinstance(tree, list):
        return [without_future_fields(item) for item in tree]
    return tree


def golden_tree() -> dict:
    return without_future_fields(json.loads((GOLDEN / "traces.json").read_bytes()))


def body(tree: dict) -> bytes:
    return json.dumps(tree).encode()


def plain_request(**span_fields) -> dict:
    span = {
        "traceId": TRACE,
        "spanId": "eee19b7ec3c1b174",
        "name": "GET /cart",
        "startTimeUnixNano": "1750000000000000000",
        "endTimeUnixNano": "1750000000250000000",
        "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
        **span_fields,
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def test_it_reads_the_golden_spans_into_the_rows_the_protobuf_path_reads():
    request = otlp_json.clean_traces(body(golden_tree()), BOUNDS)
    reference = otlp.decode("traces", (GOLDEN / "traces.pb").read_bytes(), otlp.PROTOBUF)
    assert otlp.validate("traces", reference, now_ns=NOW).count == 0

    assert request is not None
    assert list(traces.rows_of_json(request)) == list(traces.rows_of_proto(reference))


def test_it_reads_the_same_rows_as_the_reference_decoder_of_the_same_json():
    tree = golden_tree()
    reference = otlp.decode("traces", body(tree), otlp.JSON)

    rows = traces.rows_of_json(otlp_json.decode_traces(body(tree)))

    assert list(rows) == list(traces.rows_of_proto(reference))


def test_it_takes_a_plain_valid_request():
    assert otlp_json.clean_traces(body(plain_request()), BOUNDS) is not None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"traceId": "0" * 32}, "all-zero traceId: validate rejects it"),
        ({"traceId": TRACE[:30]}, "short traceId"),
        ({"spanId": "xyz19b7ec3c1b174"}, "spanId not hex"),
        ({"parentSpanId": "0" * 16}, "all-zero parent: validate clears it"),
        ({"name": ""}, "empty name"),
        ({"endTimeUnixNano": "1749999999000000000"}, "end before start"),
        ({"startTimeUnixNano": "1750000000"}, "seconds, not nanoseconds"),
        ({"startTimeUnixNano": " 1750000000000000000"}, "a number with a space"),
        ({"startTimeUnixNano": "1.75e18"}, "an exponent"),
        ({"kind": "SPAN_KIND_SERVER"}, "an enum by name"),
        ({"name": None}, "null"),
        ({"trace_id": TRACE}, "a snake_case key"),
        ({"newField": 1}, "an unknown key"),
        ({"droppedLinksCount": -1}, "a negative count"),
        ({"links": [{"traceId": "0" * 32, "spanId": "eee19b7ec3c1b174"}]}, "a link validate drops"),
        ({"attributes": [{"key": "n", "value": {"intValue": "12a"}}]}, "an int that is not one"),
        ({"attributes": [{"key": "n", "value": {"intValue": "9" * 19}}]}, "an int64 too long"),
        ({"attributes": [{"key": "x", "value": {"doubleValue": "NaN"}}]}, "NaN"),
        (
            {"attributes": [{"key": "x", "value": {"stringValue": "a", "intValue": 1}}]},
            "two values in one AnyValue",
        ),
        ({"attributes": [{"key": "b", "value": {"bytesValue": "a"}}]}, "bad base64"),
        ({"kind": -1}, "a kind validate rejects"),
        ({"kind": 6}, "a kind validate rejects"),
        ({"kind": 2**40}, "a kind the reference path reads as NOT_AN_ENUM"),
        ({"status": {"code": 3}}, "a status code validate rejects"),
        ({"events": [{"timeUnixNano": 2**64}]}, "a time beyond fixed64"),
        ({"name": "a\ud800"}, "a lone surrogate"),
    ],
)
def test_it_leaves_to_the_reference_path_what_it_cannot_vouch_for(change, why):
    assert otlp_json.clean_traces(body(plain_request(**change)), BOUNDS) is None, why


def test_it_leaves_deep_values_to_the_reference_path():
    value = {"stringValue": "leaf"}
    for _ in range(30):
        value = {"arrayValue": {"values": [value]}}

    tree = plain_request(attributes=[{"key": "deep", "value": value}])

    assert otlp_json.clean_traces(body(tree), BOUNDS) is None


def test_it_leaves_a_body_that_is_not_json_to_the_reference_path():
    assert otlp_json.clean_traces(b"{not json", BOUNDS) is None


def test_it_lowercases_hex_ids_as_the_protobuf_path_does():
    tree = plain_request(traceId=TRACE.upper(), parentSpanId="ABCDEF0123456789")

    (row,) = traces.rows_of_json(otlp_json.clean_traces(body(tree), BOUNDS))

    assert (row.trace_id, row.parent_span_id) == (TRACE, "abcdef0123456789")


def test_it_stores_non_finite_doubles_as_otlp_json_spells_them():
    request = otlp.decode("traces", body(plain_request()), otlp.JSON)
    added = request.resource_spans[0].scope_spans[0].spans[0].attributes
    for key, value in [("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("one", 1.0)]:
        added.add(key=key).value.double_value = value

    (row,) = traces.rows_of_proto(request)

    assert json.loads(row.attributes) == {
        "http.route": "/cart",
        "nan": "NaN",
        "inf": "Infinity",
        "-inf": "-Infinity",
        "one": 1.0,
    }


def nul_everywhere() -> dict:
    """A request with a NUL in every string the projection stores."""
    tree = plain_request(
        name="GET\x00/cart",
        status={"code": 2, "message": "boom\x00"},
        attributes=[
            {"key": "k\x00", "value": {"stringValue": "v\x00"}},
            {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "\x00"}]}}},
            {
                "key": "map",
                "value": {"kvlistValue": {"values": [{"key": "\x00", "value": {}}]}},
            },
        ],
        events=[{"timeUnixNano": "1750000000000000000", "name": "e\x00"}],
    )
    tree["resourceSpans"][0]["resource"] = {
        "attributes": [{"key": "service.name", "value": {"stringValue": "shop\x00"}}]
    }
    tree["resourceSpans"][0]["scopeSpans"][0]["scope"] = {"name": "s\x00", "version": "1\x00"}
    return tree


def test_it_takes_nul_characters_and_both_paths_store_them_as_the_replacement_character():
    data = body(nul_everywhere())
    clean = otlp_json.clean_traces(data, BOUNDS)
    reference = otlp.decode("traces", data, otlp.JSON)
    assert clean is not None
    assert otlp.validate("traces", reference, now_ns=NOW) == otlp.ACCEPTED

    (row,) = traces.rows_of_json(clean)

    assert list(traces.rows_of_json(clean)) == list(traces.rows_of_proto(reference))
    assert not any("\x00" in value or "\\u0000" in value for value in row if type(value) is str)
    assert (row.name, row.service, row.scope, row.scope_version, row.status_message) == (
        "GET\ufffd/cart",
        "shop\ufffd",
        "s\ufffd",
        "1\ufffd",
        "boom\ufffd",
    )
    assert json.loads(row.attributes) == {
        "k\ufffd": "v\ufffd",
        "list": ["\ufffd"],
        "map": {"\ufffd": None},
    }
    assert json.loads(row.events)[0]["name"] == "e\ufffd"


def test_it_takes_only_what_the_reference_path_keeps_as_it_is_whatever_the_payload():
    """Mutated payloads: whenever this path takes one, the reference path decodes it, rejects
    nothing, and it projects into the same rows."""
    rng = random.Random(20260615)
    bases = [golden_tree(), plain_request(), nul_everywhere()]
    taken = 0
    for _ in range(300):
        tree = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            mutate(tree, rng)
        data = body(tree)
        clean = otlp_json.clean_traces(data, BOUNDS)
        if clean is None:
            continue
        taken += 1
        reference = otlp.decode("traces", data, otlp.JSON)
        assert otlp.validate("traces", reference, now_ns=NOW) == otlp.ACCEPTED, data
        assert list(traces.rows_of_json(clean)) == list(traces.rows_of_proto(reference))
    assert taken > 30  # many of them did go this way


MUTANTS = [
    None, 0, 1, -1, 6, 2**64, 2**63, 1.0, 1.5, 1e300, math.nan, True, "", "1", " 1", "\t7",
    "1e3", "-5", "1_000", "NaN", "Infinity", "zz", "00" * 8, "AB" * 8, "3q2+7w==", "a\ud800",
    "a\x00", [], [None], [{}], {}, {"x": 1}, {"stringValue": "s"}, {"values": [None]},
    "SPAN_KIND_CLIENT", 2**31, "x" * 600,
]  # fmt: skip


def mutate(tree, rng: random.Random) -> None:
    """Change one thing in ``tree``: a value, a key's spelling, a key more or less."""
    nodes = []

    def walk(node):
        if isinstance(node, dict | list):
            nodes.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(tree)
    node = rng.choice(nodes)
    if isinstance(node, list) or not node:
        if isinstance(node, list) and node:
            node[rng.randrange(len(node))] = copy.deepcopy(rng.choice(MUTANTS))
        return
    key = rng.choice(list(node))
    choice = rng.randrange(6)
    if choice == 0:
        node[key] = copy.deepcopy(rng.choice(MUTANTS))
    elif choice == 1:
        node[snake_case({key: 0}).popitem()[0]] = node.pop(key)
    elif choice == 2:
        node[snake_case({key: 0}).popitem()[0]] = copy.deepcopy(rng.choice([node[key], None]))
    elif choice == 3:
        del node[key]
    elif choice == 4:
        node[rng.choice(["future", "[x]", "parentSpanId", "keyStrindex", "intValue"])] = 1
    else:
        node[key] = None


# Over HTTP


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, data: bytes):
    return client.post(
        "/v1/traces", data=data, content_type=otlp.JSON, headers={"Authorization": f"Bearer {key}"}
    )


def recent(tree: dict) -> dict:
    """The request with its spans' times set to now, as the HTTP edge checks them."""
    for span in tree["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["startTimeUnixNano"], span["endTimeUnixNano"] = str(NOW_NS), str(NOW_NS + 1000)
    return tree


@pytest.mark.django_db
def test_it_stores_a_clean_json_request_as_received(client, key):
    data = body(recent(plain_request()))

    response = post(client, key, data)

    assert (response.status_code, response.json()) == (200, {})
    batch = TelemetryBatch.objects.get()
    assert (batch.encoding, batch.body(), batch.items) == ("json", data, 1)
    assert len(batch.payload) < len(data)  # stored compressed


@pytest.mark.django_db
def test_it_stores_a_clean_gzipped_request_as_the_client_compressed_it(client, key, tenant):
    data = gzip.compress(body(recent(plain_request())))

    response = client.post(
        "/v1/traces",
        data=data,
        content_type=otlp.JSON,
        headers={"Authorization": f"Bearer {key}", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 200
    batch = TelemetryBatch.objects.get()
    assert bytes(batch.payload) == data
    drain_all("TraceIngestionWorker")
    assert Span.objects.get(tenant=tenant).name == "GET /cart"


@pytest.mark.django_db
def test_it_stores_the_valid_part_of_an_unclean_request_as_protobuf(client, key):
    tree = plain_request()
    spans = tree["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": "eee19b7ec3c1b175", "name": ""})

    response = post(client, key, body(recent(tree)))

    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    batch = TelemetryBatch.objects.get()
    assert (batch.encoding, batch.items, batch.rejected) == ("protobuf", 1, 1)


@pytest.mark.django_db
def test_it_ingests_stored_json_and_protobuf_batches_alike(client, key, tenant):
    post(client, key, body(recent(plain_request())))
    # An enum by name: the reference path takes it, and stores protobuf.
    post(
        client, key, body(recent(plain_request(spanId="eee19b7ec3c1b175", kind="SPAN_KIND_SERVER")))
    )
    assert sorted(TelemetryBatch.objects.values_list("encoding", flat=True)) == [
        "json",
        "protobuf",
    ]

    drain_all("TraceIngestionWorker")

    stored = {s.span_id: s for s in Span.objects.filter(tenant=tenant)}
    assert set(stored) == {"eee19b7ec3c1b174", "eee19b7ec3c1b175"}
    assert stored["eee19b7ec3c1b174"].attributes == stored["eee19b7ec3c1b175"].attributes
    assert (stored["eee19b7ec3c1b174"].kind, stored["eee19b7ec3c1b175"].kind) == (0, 2)
