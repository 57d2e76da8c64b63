"""OTLP/HTTP payloads: decoding both encodings, validation, and spec-exact replies.

The golden files in golden/ are written by hand from the OTLP specification (JSON) and by
golden/make_pb.py field by field with the generated classes (protobuf), so each decoder is
checked against content that the code under test did not produce.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from observability import otlp
from observability.otlp import JSON, PROTOBUF, SIGNALS, OtlpError, Rejections

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, after every golden timestamp
T = 1_750_000_000_000_000_000  # 2025-06-15T15:06:40Z, the golden files' "now"
DAY = 86_400 * 10**9
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
REQUESTS = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
RESPONSES = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def load(signal: str, media: str = JSON):
    return otlp.decode(signal, golden(f"{signal}.{'json' if media == JSON else 'pb'}"), media)


def from_json(signal: str, tree: dict):
    return otlp.decode(signal, json.dumps(tree).encode(), JSON)


def attributes(items) -> dict:
    return {item.key: item.value for item in items}


def present(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value is not None}


def span(**fields) -> dict:
    """A valid OTLP JSON span; a field given as None is left out."""
    base = {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "GET /cart",
        "startTimeUnixNano": str(T),
        "endTimeUnixNano": str(T + 10**9),
    }
    base.update(fields)
    return present(base)


def traces_of_tree(spans: list) -> dict:
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def traces_of(*spans: dict) -> ExportTraceServiceRequest:
    return from_json("traces", {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


def spans_of(request) -> list:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def gauge(name: str = "ok", **point) -> dict:
    return {
        "name": name,
        "gauge": {"dataPoints": [present({"timeUnixNano": str(T), "asInt": "1", **point})]},
    }


def metrics_of(*metrics: dict) -> ExportMetricsServiceRequest:
    return from_json(
        "metrics", {"resourceMetrics": [{"scopeMetrics": [{"metrics": list(metrics)}]}]}
    )


def metrics_in(request) -> list:
    return [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def log(**fields) -> dict:
    base = {"timeUnixNano": str(T), "observedTimeUnixNano": str(T), "body": {"stringValue": "x"}}
    base.update(fields)
    return present(base)


def logs_of(*records: dict) -> ExportLogsServiceRequest:
    return from_json("logs", {"resourceLogs": [{"scopeLogs": [{"logRecords": list(records)}]}]})


def records_of(request) -> list:
    return [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]


# --- media types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "media"),
    [
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        ("Application/JSON;charset=UTF-8", JSON),
        ("application/x-protobuf", PROTOBUF),
        ("  application/x-protobuf ; proto=opentelemetry", PROTOBUF),
    ],
)
def test_it_normalises_the_content_type_to_json_or_protobuf(header, media):
    assert otlp.media_type(header) == media


def test_it_refuses_a_content_type_that_is_not_otlp_and_says_which_to_use():
    with pytest.raises(OtlpError) as error:
        otlp.media_type("text/plain")
    assert str(error.value) == (
        "unsupported content type text/plain: use application/json or application/x-protobuf"
    )


@pytest.mark.parametrize("header", ["application/protobuf", "application/jsonl", "text/json"])
def test_it_refuses_near_misses_of_the_otlp_content_types(header):
    with pytest.raises(OtlpError, match="unsupported content type"):
        otlp.media_type(header)


@pytest.mark.parametrize("header", ["", None, " ; charset=utf-8"])
def test_it_refuses_a_missing_content_type(header):
    with pytest.raises(OtlpError, match="missing content type: use application/json or"):
        otlp.media_type(header)


# --- decoding the golden files -----------------------------------------------------------------


def test_it_decodes_the_hex_ids_of_the_golden_traces_into_the_right_bytes():
    request = load("traces")
    server, client = request.resource_spans[0].scope_spans[0].spans
    assert server.trace_id == bytes.fromhex(TRACE)
    assert len(server.trace_id) == 16
    assert server.span_id == bytes.fromhex(SPAN)
    assert server.parent_span_id == b""
    assert client.parent_span_id == bytes.fromhex(SPAN)
    assert client.links[0].trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert client.links[0].span_id == bytes.fromhex("b7ad6b7169203331")


def test_it_decodes_upper_case_hex_ids_like_lower_case_ones():
    producer, consumer = load("traces").resource_spans[1].scope_spans[0].spans
    assert producer.trace_id == bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    assert producer.span_id == bytes.fromhex("00f067aa0ba902b7")
    assert consumer.parent_span_id == producer.span_id


def test_it_decodes_int64_given_as_strings_or_numbers_into_ints():
    request = load("traces")
    server = request.resource_spans[0].scope_spans[0].spans[0]
    recalculate = request.resource_spans[0].scope_spans[1].spans[0]
    assert server.start_time_unix_nano == 1_750_000_000_000_000_000  # "1750000000000000000"
    assert server.end_time_unix_nano == 1_750_000_000_250_000_000
    assert recalculate.start_time_unix_nano == 1_750_000_000_060_000_000  # a JSON number
    found = attributes(server.attributes)
    assert found["http.response.status_code"].int_value == 200  # "200"
    assert found["retries"].int_value == 3  # 3


def test_it_decodes_attributes_of_every_any_value_kind():
    request = load("traces")
    found = attributes(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    kinds = {key: value.WhichOneof("value") for key, value in found.items()}
    assert kinds == {
        "http.request.method": "string_value",
        "http.response.status_code": "int_value",
        "retries": "int_value",
        "sampled": "bool_value",
        "load": "double_value",
        "tags": "array_value",
        "user": "kvlist_value",
        "payload": "bytes_value",
        "nothing": None,
    }
    assert found["http.request.method"].string_value == "GET"
    assert found["sampled"].bool_value is True
    assert found["load"].double_value == 0.75
    tags = found["tags"].array_value.values
    assert [v.WhichOneof("value") for v in tags] == [
        "string_value",
        "int_value",
        "double_value",
        "bool_value",
    ]
    assert (tags[0].string_value, tags[1].int_value, tags[2].double_value) == ("a", 2, 3.5)
    assert tags[3].HasField("bool_value") and tags[3].bool_value is False
    user = attributes(found["user"].kvlist_value.values)
    assert user["id"].string_value == "u-1"
    assert user["vip"].bool_value is True
    assert attributes(user["nested"].kvlist_value.values)["depth"].int_value == 2
    assert found["payload"].bytes_value == b"\xde\xad\xbe\xef"  # bytesValue stays base64


def test_it_decodes_resources_scopes_events_links_status_and_kinds():
    request = load("traces")
    checkout, billing = request.resource_spans
    assert attributes(checkout.resource.attributes)["service.name"].string_value == "checkout"
    assert attributes(billing.resource.attributes)["service.name"].string_value == "billing"
    assert checkout.resource.dropped_attributes_count == 1
    assert checkout.schema_url == "https://opentelemetry.io/schemas/1.26.0"
    django, jobs = checkout.scope_spans
    assert (django.scope.name, django.scope.version) == ("io.opentelemetry.django", "0.66b2")
    assert attributes(django.scope.attributes)["scope.attr"].bool_value is True
    assert (jobs.scope.name, jobs.scope.version) == ("app.jobs", "")

    server, client = django.spans
    assert (server.trace_state, server.flags, server.dropped_attributes_count) == (
        "vendor=abc",
        1,
        2,
    )
    assert [(e.name, e.time_unix_nano) for e in server.events] == [
        ("cache.miss", 1_750_000_000_100_000_000),
        ("exception", 1_750_000_000_200_000_000),
    ]
    assert attributes(server.events[0].attributes)["cache.key"].string_value == "cart:42"
    assert server.events[1].dropped_attributes_count == 1
    assert server.dropped_events_count == 3
    assert server.status.code == Status.STATUS_CODE_OK
    link = client.links[0]
    assert (link.trace_state, link.flags, link.dropped_attributes_count) == (
        "congo=t61rcWkgMzE",
        1,
        1,
    )
    assert attributes(link.attributes)["link.reason"].string_value == "retry"
    assert client.dropped_links_count == 1
    assert client.status.code == Status.STATUS_CODE_ERROR
    assert client.status.message == "connection reset"

    kinds = [s.kind for s in spans_of(request)]
    assert kinds == [
        Span.SPAN_KIND_SERVER,
        Span.SPAN_KIND_CLIENT,
        Span.SPAN_KIND_INTERNAL,
        Span.SPAN_KIND_UNSPECIFIED,
        Span.SPAN_KIND_PRODUCER,
        Span.SPAN_KIND_CONSUMER,
    ]


def test_it_ignores_the_unknown_fields_of_the_golden_traces():
    # resourceSpans[1].someFutureField and a span's futureSpanField are in traces.json, not in
    # traces.pb; both decode to the same message.
    assert load("traces") == load("traces", PROTOBUF)
    assert b"someFutureField" in golden("traces.json")


def test_it_decodes_every_metric_kind_and_temporality():
    request = load("metrics")
    metrics = metrics_in(request)
    assert [(m.name, m.WhichOneof("data")) for m in metrics] == [
        ("process.thread.count", "gauge"),
        ("system.cpu.utilization", "gauge"),
        ("http.server.request.count", "sum"),
        ("process.cpu.time", "sum"),
        ("queue.depth", "sum"),
        ("http.server.request.duration", "histogram"),
        ("db.client.operation.duration", "histogram"),
        ("rpc.server.duration", "exponential_histogram"),
        ("legacy.request.latency", "summary"),
    ]
    threads, cpu, requests, cpu_time, depth, duration, db, rpc, legacy = metrics

    assert threads.description == "Live threads" and threads.unit == "{thread}"
    assert attributes(threads.metadata)["prometheus.type"].string_value == "gauge"
    (point,) = threads.gauge.data_points
    assert point.WhichOneof("value") == "as_int" and point.as_int == 12
    assert point.time_unix_nano == T
    assert [(p.WhichOneof("value"), p.as_double) for p in cpu.gauge.data_points] == [
        ("as_double", 0.25),
        ("as_double", 0.5),
    ]
    assert attributes(cpu.gauge.data_points[1].attributes)["cpu"].int_value == 1

    # delta monotonic, cumulative monotonic, cumulative non-monotonic
    assert [(m.sum.aggregation_temporality, m.sum.is_monotonic) for m in (requests, cpu_time)] == [
        (1, True),
        (2, True),
    ]
    assert (depth.sum.aggregation_temporality, depth.sum.is_monotonic) == (2, False)
    assert requests.sum.data_points[0].as_int == 7
    assert requests.sum.data_points[0].start_time_unix_nano == 1_749_999_940_000_000_000
    assert cpu_time.sum.data_points[0].as_double == 12.5
    assert depth.sum.data_points[0].as_int == -3

    assert duration.histogram.aggregation_temporality == 1
    assert db.histogram.aggregation_temporality == 2
    point = duration.histogram.data_points[0]
    assert (point.count, point.sum, point.min, point.max) == (6, 1.5, 0.05, 0.9)
    assert list(point.bucket_counts) == [1, 2, 3]
    assert list(point.explicit_bounds) == [0.1, 0.5]
    assert not db.histogram.data_points[0].HasField("min")

    assert rpc.exponential_histogram.aggregation_temporality == 1
    point = rpc.exponential_histogram.data_points[0]
    assert (point.count, point.scale, point.zero_count, point.zero_threshold) == (8, 2, 1, 0.001)
    assert (point.positive.offset, list(point.positive.bucket_counts)) == (1, [2, 3])
    assert (point.negative.offset, list(point.negative.bucket_counts)) == (-2, [2])
    assert not point.HasField("sum")
    assert (point.min, point.max) == (-1.5, 4.0)

    point = legacy.summary.data_points[0]
    assert (point.count, point.sum) == (10, 4.25)
    assert [(q.quantile, q.value) for q in point.quantile_values] == [
        (0.0, 0.125),
        (0.5, 0.375),
        (1.0, 1.125),
    ]


def test_it_decodes_the_hex_ids_of_metric_exemplars():
    metrics = metrics_in(load("metrics"))
    delta = metrics[5].histogram.data_points[0].exemplars[0]
    assert delta.trace_id == bytes.fromhex(TRACE)
    assert delta.span_id == bytes.fromhex(SPAN)
    assert (delta.as_double, delta.time_unix_nano) == (0.9, 1_749_999_990_000_000_000)
    assert attributes(delta.filtered_attributes)["user.id"].string_value == "u-1"
    cumulative = metrics[6].histogram.data_points[0].exemplars[0]
    assert cumulative.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert cumulative.span_id == bytes.fromhex("b7ad6b7169203331")
    assert cumulative.as_int == 27
    exponential = metrics[7].exponential_histogram.data_points[0].exemplars[0]
    assert exponential.trace_id == bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def test_it_decodes_the_golden_logs():
    request = load("logs")
    loaded, failed, retrying = records_of(request)
    assert loaded.trace_id == bytes.fromhex(TRACE)
    assert loaded.span_id == bytes.fromhex(SPAN)
    assert failed.span_id == bytes.fromhex("eee19b7ec3c1b175")  # from upper-case hex
    assert (loaded.time_unix_nano, loaded.observed_time_unix_nano) == (
        1_750_000_000_100_000_000,
        1_750_000_000_100_000_500,
    )
    assert (loaded.severity_number, loaded.severity_text) == (
        SeverityNumber.SEVERITY_NUMBER_INFO,
        "INFO",
    )
    assert failed.severity_number == SeverityNumber.SEVERITY_NUMBER_ERROR
    assert loaded.body.string_value == "cart loaded" and loaded.flags == 1
    assert attributes(loaded.attributes)["cart.items"].int_value == 3
    assert failed.event_name == "checkout.payment_failed"
    assert attributes(failed.body.kvlist_value.values)["attempt"].int_value == 2
    assert failed.dropped_attributes_count == 1
    assert retrying.time_unix_nano == 0
    assert retrying.observed_time_unix_nano == 1_750_000_000_300_000_000
    assert retrying.trace_id == b"" and retrying.span_id == b""
    assert [v.WhichOneof("value") for v in retrying.body.array_value.values] == [
        "string_value",
        "int_value",
    ]
    assert request.resource_logs[1].scope_logs[0].HasField("scope")


@pytest.mark.parametrize("signal", SIGNALS)
def test_it_decodes_the_protobuf_golden_files_to_the_same_values_as_the_json_ones(signal):
    from_protobuf = load(signal, PROTOBUF)
    assert from_protobuf == load(signal, JSON)
    assert from_protobuf.ByteSize() > 0


# --- decoding: the lenient parts ----------------------------------------------------------------


def test_it_accepts_enum_names_as_well_as_integers():
    named = traces_of(span(kind="SPAN_KIND_CLIENT", status={"code": "STATUS_CODE_ERROR"}))
    numbered = traces_of(span(kind=3, status={"code": 2}))
    assert named == numbered
    assert spans_of(named)[0].kind == Span.SPAN_KIND_CLIENT

    sum_metric = {
        "name": "c",
        "sum": {
            "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "dataPoints": [{"timeUnixNano": str(T), "asInt": "1"}],
        },
    }
    assert metrics_in(metrics_of(sum_metric))[0].sum.aggregation_temporality == 2
    warn = records_of(logs_of(log(severityNumber="SEVERITY_NUMBER_WARN")))[0]
    assert warn.severity_number == SeverityNumber.SEVERITY_NUMBER_WARN


def test_it_accepts_the_original_snake_case_field_names():
    snake = from_json(
        "traces",
        {
            "resource_spans": [
                {
                    "scope_spans": [
                        {
                            "spans": [
                                {
                                    "trace_id": TRACE,
                                    "span_id": SPAN,
                                    "parent_span_id": "00f067aa0ba902b7",
                                    "name": "GET /cart",
                                    "start_time_unix_nano": str(T),
                                    "end_time_unix_nano": str(T + 10**9),
                                }
                            ]
                        }
                    ]
                }
            ]
        },
    )
    assert snake == traces_of(span(parentSpanId="00f067aa0ba902b7"))

    logs = from_json(
        "logs",
        {"resource_logs": [{"scope_logs": [{"log_records": [{"trace_id": TRACE}]}]}]},
    )
    assert records_of(logs)[0].trace_id == bytes.fromhex(TRACE)
    metrics = from_json(
        "metrics",
        {
            "resource_metrics": [
                {
                    "scope_metrics": [
                        {
                            "metrics": [
                                {
                                    "name": "e",
                                    "exponential_histogram": {
                                        "data_points": [{"exemplars": [{"span_id": SPAN}]}]
                                    },
                                }
                            ]
                        }
                    ]
                }
            ]
        },
    )
    exemplar = metrics_in(metrics)[0].exponential_histogram.data_points[0].exemplars[0]
    assert exemplar.span_id == bytes.fromhex(SPAN)


def test_it_ignores_unknown_fields_at_every_level():
    with_unknown = from_json(
        "traces",
        {
            "brandNewTopLevel": True,
            "resourceSpans": [
                {
                    "resource": {"attributes": [], "entityGuess": [1]},
                    "scopeSpans": [
                        {
                            "scope": {"name": "s", "futureScopeField": "x"},
                            "spans": [span(futureSpanField={"a": [1, 2]}, shinyNewId="ab")],
                        }
                    ],
                }
            ],
        },
    )
    plain = from_json(
        "traces",
        {
            "resourceSpans": [
                {"resource": {}, "scopeSpans": [{"scope": {"name": "s"}, "spans": [span()]}]}
            ]
        },
    )
    assert with_unknown == plain


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("media", [JSON, PROTOBUF])
def test_it_decodes_an_empty_body_as_an_empty_request(signal, media):
    request = otlp.decode(signal, b"", media)
    assert request == REQUESTS[signal]()
    assert otlp.validate(signal, request, now_ns=NOW) == Rejections(0, "")


def test_it_decodes_an_empty_json_object_as_an_empty_request():
    assert otlp.decode("traces", b"{}", JSON) == ExportTraceServiceRequest()


# --- decoding: what it refuses -----------------------------------------------------------------


def refusal(signal: str, body: bytes, media: str = JSON) -> str:
    with pytest.raises(OtlpError) as error:
        otlp.decode(signal, body, media)
    return str(error.value)


def test_it_refuses_malformed_json_and_says_where():
    assert refusal("traces", b'{"resourceSpans": [') == (
        "invalid JSON at line 1 column 20: Expecting value"
    )
    assert refusal("traces", b'{\n  "resourceSpans": [}').startswith(
        "invalid JSON at line 2 column 21"
    )


def test_it_refuses_json_that_is_not_an_object():
    assert refusal("traces", b"[]") == (
        "invalid OTLP JSON: the body must be a JSON object (an ExportTraceServiceRequest), "
        "not an array"
    )
    assert "not null" in refusal("metrics", b"null")
    assert "(an ExportLogsServiceRequest), not a string" in refusal("logs", b'"hello"')


def test_it_refuses_json_of_the_wrong_shape_and_names_the_field():
    message = refusal("traces", b'{"resourceSpans": {}}')
    assert message.startswith("invalid OTLP JSON for an ExportTraceServiceRequest: resourceSpans")
    assert "repeated field resourceSpans must be in []" in message

    late = {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}
    message = refusal("traces", json.dumps(late).encode())
    assert "resourceSpans.scopeSpans.spans.startTimeUnixNano: " in message
    assert "'soon'" in message

    negative = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"histogram": {"dataPoints": [{"count": "-1"}]}}]}]}
        ]
    }
    message = refusal("metrics", json.dumps(negative).encode())
    assert message.endswith("dataPoints.count: Value out of range: -1")  # fixed64 is unsigned


def test_it_refuses_an_id_that_is_not_hex_and_names_the_span():
    spans = [span() for _ in range(4)]
    spans[3]["traceId"] = "zz" * 16
    message = refusal("traces", json.dumps(traces_of_tree(spans)).encode())
    assert message == "traceId of span 3 of scopeSpans 0 of resourceSpans 0 is not hex: '" + (
        "z" * 32 + "'"
    )


@pytest.mark.parametrize(
    ("tree_span", "expected"),
    [
        (
            span(spanId="eee19b7ec3c1b17"),
            "spanId of span 0 of scopeSpans 0 of resourceSpans 0 has an odd number of hex digits",
        ),
        (
            span(parentSpanId="eee19b7e c3c1b174"),
            "parentSpanId of span 0 of scopeSpans 0 of resourceSpans 0 is not hex",
        ),
        (
            span(traceId=12345),
            "traceId of span 0 of scopeSpans 0 of resourceSpans 0 must be a hex string, "
            "not a number",
        ),
        (
            span(traceId="W46O/3mAOBA9JptjOBP8YA=="),  # base64, as plain protobuf JSON has it
            "traceId of span 0 of scopeSpans 0 of resourceSpans 0 is not hex",
        ),
        (
            span(links=[{"traceId": TRACE, "spanId": "not-hex!"}]),
            "spanId of link 0 of span 0 of scopeSpans 0 of resourceSpans 0 is not hex",
        ),
    ],
)
def test_it_refuses_span_ids_that_are_not_hex_strings(tree_span, expected):
    assert refusal("traces", json.dumps(traces_of_tree([tree_span])).encode()).startswith(expected)


def test_it_refuses_log_and_exemplar_ids_that_are_not_hex():
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [log(), log(traceId="xyz")]}]}]}
    assert refusal("logs", json.dumps(logs).encode()).startswith(
        "traceId of logRecord 1 of scopeLogs 0 of resourceLogs 0 is not hex"
    )
    point = {"timeUnixNano": str(T), "asInt": "1", "exemplars": [{"spanId": "g" * 16}]}
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [gauge(), {"name": "s", "sum": {"dataPoints": [point]}}]}
                ]
            }
        ]
    }
    assert refusal("metrics", json.dumps(metrics).encode()).startswith(
        "spanId of exemplar 0 of dataPoint 0 of metric 1 of scopeMetrics 0 of resourceMetrics 0 "
        "is not hex"
    )


def test_it_refuses_a_body_that_is_not_utf8():
    assert refusal("traces", b'{"resourceSpans": "\xff"}').startswith(
        "invalid JSON: the body is not UTF-8 (byte 19 is 0xff)"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff\xff\xff",  # a truncated varint tag
        b"\x0a\x05\x0a",  # a length that runs past the end
        b'{"resourceSpans": []}',  # JSON sent as protobuf
    ],
)
def test_it_refuses_garbage_protobuf(body):
    assert refusal("traces", body, PROTOBUF).startswith(
        "invalid protobuf: the body is not an ExportTraceServiceRequest"
    )


def test_it_refuses_to_decode_a_media_type_it_does_not_know():
    with pytest.raises(OtlpError, match="unsupported content type text/plain"):
        otlp.decode("traces", b"{}", "text/plain")


# --- decoding: every form of a batch ------------------------------------------------------------


def snake_case(tree):
    """``tree`` with every key in snake_case (the proto field names)."""
    if isinstance(tree, list):
        return [snake_case(item) for item in tree]
    if isinstance(tree, dict):
        return {
            re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), key): snake_case(value)
            for key, value in tree.items()
        }
    return tree


def every_kind_value(i: int) -> list[dict]:
    """Attributes of every AnyValue kind, in each of the forms OTLP JSON allows."""
    return [
        {"key": "string", "value": {"stringValue": f"value {i} ü ✓"}},
        {"key": "empty.string", "value": {"stringValue": ""}},
        {"key": "bool", "value": {"boolValue": i % 2 == 0}},
        {"key": "int.string", "value": {"intValue": str(i * 1_000_003 - 2**40)}},
        {"key": "int.number", "value": {"intValue": i - 7}},
        {"key": "int64.max", "value": {"intValue": str(2**63 - 1)}},
        {"key": "double", "value": {"doubleValue": i / 8 - 0.1}},
        {"key": "double.integral", "value": {"doubleValue": i}},
        {"key": "bytes", "value": {"bytesValue": "3q2+7w=="}},
        {"key": "bytes.unpadded.urlsafe", "value": {"bytesValue": "-_8"}},
        {
            "key": "array",
            "value": {
                "arrayValue": {
                    "values": [
                        {"stringValue": "a"},
                        {"intValue": "2"},
                        {"doubleValue": 3.5},
                        {"boolValue": False},
                        {"arrayValue": {}},
                        {},
                    ]
                }
            },
        },
        {"key": "array.empty", "value": {"arrayValue": {"values": []}}},
        {
            "key": "kvlist",
            "value": {
                "kvlistValue": {
                    "values": [
                        {"key": "id", "value": {"stringValue": f"u-{i}"}},
                        {"key": "nested", "value": {"kvlistValue": {"values": []}}},
                        {"key": "no value"},
                    ]
                }
            },
        },
        {"key": "empty", "value": {}},
    ]


def every_kind_span(i: int) -> dict:
    trace_id = f"{i * 7919 + 1:032x}"
    fields = {
        "traceId": trace_id.upper() if i % 5 == 0 else trace_id,
        "spanId": f"{i + 1:016x}",
        "parentSpanId": f"{i:016x}" if i % 3 else "",
        "traceState": f"vendor={i}" if i % 4 == 0 else None,
        "flags": 1 if i % 2 else "257",
        "name": f"span {i}",
        "kind": i % 6,
        "startTimeUnixNano": str(T + i) if i % 2 else T + i,
        "endTimeUnixNano": str(T + i + 10**6),
        "attributes": every_kind_value(i),
        "droppedAttributesCount": i % 3 if i % 2 else str(i % 3),
        "events": [
            {
                "timeUnixNano": str(T + i + e),
                "name": f"event {e}",
                "attributes": [{"key": "event.n", "value": {"intValue": e}}],
                "droppedAttributesCount": e,
            }
            for e in range(i % 3)
        ],
        "droppedEventsCount": str(i % 2),
        "links": [
            {
                "traceId": f"{i + k + 1:032X}",
                "spanId": f"{i + k + 1:016x}",
                "traceState": "congo=t61rcWkgMzE",
                "attributes": [{"key": "link.n", "value": {"stringValue": str(k)}}],
                "droppedAttributesCount": k,
                "flags": 256 + k,
            }
            for k in range(i % 3)
        ],
        "droppedLinksCount": 2,
        "status": [None, {}, {"code": 1}, {"code": 2, "message": f"error {i}"}][i % 4],
    }
    return present(fields)


def every_kind_batch(spans: int = 512) -> dict:
    """``spans`` spans in two resources of two scopes each, with every kind of value."""
    per_scope = spans // 4
    resources = []
    for r in range(2):
        resource = {
            "attributes": [
                {"key": "service.name", "value": {"stringValue": f"service-{r}"}},
                {"key": "host.cpu.count", "value": {"intValue": "8"}},
            ],
            "droppedAttributesCount": r,
        }
        if r:
            resource["entityRefs"] = [
                {
                    "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                    "type": "service",
                    "idKeys": ["service.name"],
                    "descriptionKeys": ["host.cpu.count", "service.version"],
                }
            ]
        scopes = [
            {
                "scope": {
                    "name": f"scope-{s}",
                    "version": "1.0" if s else "",
                    "attributes": [{"key": "scope.attr", "value": {"boolValue": True}}],
                    "droppedAttributesCount": s,
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0" if s else "",
                "spans": [every_kind_span((r * 2 + s) * per_scope + i) for i in range(per_scope)],
            }
            for s in range(2)
        ]
        resources.append({"resource": resource, "schemaUrl": "", "scopeSpans": scopes})
    return {"resourceSpans": resources}


def test_it_decodes_a_batch_with_every_kind_of_value():
    request = from_json("traces", every_kind_batch())

    spans = spans_of(request)
    assert len(spans) == 512
    values = attributes(spans[9].attributes)
    assert {key: value.WhichOneof("value") for key, value in values.items()} == {
        "string": "string_value",
        "empty.string": "string_value",
        "bool": "bool_value",
        "int.string": "int_value",
        "int.number": "int_value",
        "int64.max": "int_value",
        "double": "double_value",
        "double.integral": "double_value",
        "bytes": "bytes_value",
        "bytes.unpadded.urlsafe": "bytes_value",
        "array": "array_value",
        "array.empty": "array_value",
        "kvlist": "kvlist_value",
        "empty": None,
    }
    assert values["int.string"].int_value == 9 * 1_000_003 - 2**40
    assert values["int64.max"].int_value == 2**63 - 1
    assert values["double.integral"].double_value == 9.0
    assert values["bytes.unpadded.urlsafe"].bytes_value == b"\xfb\xff"
    assert spans[9].HasField("status") and not spans[8].HasField("status")
    assert [len(s.events) for s in spans[:3]] == [0, 1, 2]
    assert spans[5].links[1].trace_id == bytes.fromhex(f"{5 + 2:032x}")
    assert spans[1].flags == 1 and spans[2].flags == 257
    entity = request.resource_spans[1].resource.entity_refs[0]
    assert list(entity.description_keys) == ["host.cpu.count", "service.version"]
    assert otlp.validate("traces", request, now_ns=NOW) == otlp.ACCEPTED


def test_it_reads_snake_case_keys_and_enum_names_as_it_reads_the_otlp_spelling():
    tree = every_kind_batch(64)
    camel = from_json("traces", tree)
    snake = snake_case(tree)
    assert "resource_spans" in snake and "string_value" in json.dumps(snake)
    assert from_json("traces", snake) == camel

    kinds = {value.number: value.name for value in Span.SpanKind.DESCRIPTOR.values}
    codes = {value.number: value.name for value in Status.StatusCode.DESCRIPTOR.values}
    named = copy.deepcopy(tree)
    for scope in named["resourceSpans"][0]["scopeSpans"]:
        for item in scope["spans"]:
            item["kind"] = kinds[item["kind"]]
            if "code" in item.get("status", {}):
                item["status"]["code"] = codes[item["status"]["code"]]
    assert named != tree
    assert from_json("traces", named) == camel
    assert from_json("traces", snake_case(named)) == camel


def test_it_ignores_unknown_fields_and_takes_null_for_not_set():
    value = {"stringValue": "kept", "futureKind": {"x": 1}, "intValue": None}
    tree = {
        "resourceSpans": [
            {
                "resource": {"attributes": None, "entityGuess": [1]},
                "scopeSpans": [
                    {
                        "scope": None,
                        "spans": [
                            dict(
                                span(),
                                shinyNewId="ab",
                                traceState=None,
                                parentSpanId=None,
                                status=None,
                                kind=None,
                                attributes=[
                                    {"key": "a", "value": value},
                                    {"key": "b", "value": None},
                                    {"key": "c", "value": {"stringValue": None}},
                                    {"key": "d", "value": {"string_value": "snake"}},
                                    {"key": None, "value": {"boolValue": True}, "extra": 1},
                                    {"key": "e", "value": {"unknownKind": 1}},
                                ],
                                links=[
                                    {"traceId": TRACE, "spanId": SPAN, "parentSpanId": SPAN},
                                ],
                                events=[{"name": "e", "future": True, "attributes": None}],
                            )
                        ],
                    },
                    {"spans": None, "schemaUrl": None},
                ],
            }
        ],
        "brandNewTopLevel": True,
    }
    request = from_json("traces", tree)
    found = spans_of(request)[0].attributes
    assert [a.value.WhichOneof("value") for a in found] == [
        "string_value",
        None,
        None,
        "string_value",
        "bool_value",
        None,
    ]
    assert [a.HasField("value") for a in found] == [True, False, True, True, True, True]
    assert spans_of(request)[0].kind == 0 and not spans_of(request)[0].HasField("status")


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"resourceSpans": {}}, "resourceSpans: repeated field resourceSpans must be in []"),
        (traces_of_tree("x"), "resourceSpans.scopeSpans.spans: repeated field spans must be"),
        (
            traces_of_tree([span(), span(startTimeUnixNano="soon")]),
            "resourceSpans.scopeSpans.spans.startTimeUnixNano: invalid literal for int()",
        ),
        (
            traces_of_tree([span(startTimeUnixNano="-1")]),
            "resourceSpans.scopeSpans.spans.startTimeUnixNano: Value out of range: -1",
        ),
        (
            traces_of_tree([span(droppedAttributesCount=2**32)]),
            "resourceSpans.scopeSpans.spans.droppedAttributesCount: Value out of range",
        ),
        (traces_of_tree([span(name=5)]), "resourceSpans.scopeSpans.spans.name: expected string"),
        (traces_of_tree([span(name="a\ud800")]), "spans.name: Unpaired surrogate"),
        (
            traces_of_tree([span(attributes=[{"key": "\udc00", "value": {}}])]),
            "spans.attributes.key: Unpaired surrogate",
        ),
        (traces_of_tree([span(status=1)]), "resourceSpans.scopeSpans.spans.status: "),
        (
            traces_of_tree([span(attributes=[None])]),
            "resourceSpans.scopeSpans.spans.attributes: null is not allowed to be used as an "
            "element in a repeated field",
        ),
        (
            traces_of_tree([span(attributes=[{"key": "a", "value": {"boolValue": "true"}}])]),
            "spans.attributes.value: Expected true or false without quotes",
        ),
        (
            traces_of_tree([span(attributes=[{"key": "a", "value": {"intValue": "1.5"}}])]),
            'spans.attributes.value: Couldn\'t parse non-integer string: "1.5"',
        ),
        (
            traces_of_tree([span(attributes=[{"key": "a", "value": {"doubleValue": "x"}}])]),
            "spans.attributes.value: Couldn't parse float: x",
        ),
        (
            traces_of_tree([span(attributes=[{"key": "a", "value": {"bytesValue": "a"}}])]),
            "spans.attributes.value.bytesValue: Invalid base64-encoded string",
        ),
        (
            traces_of_tree(
                [span(attributes=[{"key": "a", "value": {"boolValue": True, "intValue": 1}}])]
            ),
            'spans.attributes.value: Message type "opentelemetry.proto.common.v1.AnyValue" should '
            'not have multiple "value" oneof fields',
        ),
        (
            traces_of_tree([span(attributes=[{"key": "a", "value": {"doubleValue": 10**400}}])]),
            "int too large to convert to float",  # an OverflowError in json_format
        ),
        (
            traces_of_tree([span(), span(), span(), span(traceId="zz" * 16)]),
            "traceId of span 3 of scopeSpans 0 of resourceSpans 0 is not hex: '" + "z" * 32 + "'",
        ),
        (
            traces_of_tree([span(links=[{"traceId": TRACE, "parentSpanId": "abc"}])]),
            "parentSpanId of link 0 of span 0 of scopeSpans 0 of resourceSpans 0 has an odd number",
        ),
        (traces_of_tree([span(**{"[ext.field]": 1})]), "does not have extensions"),
        (
            {"resourceSpans": ["a\ud800"]},  # upb raises SystemError on this key
            "ExportTraceServiceRequest: 'utf-8' codec can't encode character '\\ud800'",
        ),
    ],
)
def test_it_refuses_json_of_the_wrong_shape_and_says_where(tree, expected):
    assert expected in refusal("traces", json.dumps(tree).encode())


def test_it_refuses_a_lone_surrogate_in_protobuf_as_invalid_utf8():
    request = traces_of(span(name="GET /abc"))
    body = request.SerializeToString().replace(b"/abc", b"/\xed\xa0\x80")

    assert "String field had bad UTF-8" in refusal("traces", body, PROTOBUF)


def test_it_decodes_nul_characters_as_they_are():
    # NUL is Unicode, and OTLP takes it; the projections store it as U+FFFD.
    request = traces_of(span(name="a\x00b", attributes=[{"key": "k\x00", "value": {}}]))

    assert spans_of(request)[0].name == "a\x00b"
    assert otlp.validate("traces", request, now_ns=NOW) == otlp.ACCEPTED


def nested(depth: int) -> dict:
    value = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return traces_of_tree([span(attributes=[{"key": "deep", "value": value}])])


def test_it_decodes_values_nested_as_deep_as_the_json_mapping_allows():
    assert spans_of(from_json("traces", nested(30)))[0].attributes[0].key == "deep"


def test_it_refuses_values_nested_deeper_than_the_json_mapping_allows():
    assert "Message too deep" in refusal("traces", json.dumps(nested(60)).encode())


@pytest.mark.parametrize(
    "tree",
    [
        traces_of_tree([span(startTimeUnixNano=float(T), flags="1e3")]),
        traces_of_tree([span(attributes=[{"key": "n", "value": {"intValue": 2.0}}])]),
        traces_of_tree([span(attributes=[{"key": "x", "value": {"doubleValue": "1.5"}}])]),
    ],
)
def test_it_reads_numbers_in_the_other_forms_the_json_mapping_allows(tree):
    assert len(spans_of(from_json("traces", tree))) == 1


# --- decoding: enums ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number"),
    [(3, 3), ("3", 3), (3.0, 3), ("SPAN_KIND_CLIENT", 3), (0, 0), (5, 5), (None, 0)],
)
def test_it_reads_an_enum_given_as_a_number_a_decimal_string_or_a_name(value, number):
    request = traces_of(span(kind=value))

    assert spans_of(request)[0].kind == number
    assert otlp.validate("traces", request, now_ns=NOW) == otlp.ACCEPTED


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1, "kind -1 is not a SpanKind (0 to 5)"),
        (6, "kind 6 is not a SpanKind (0 to 5)"),
        (99, "kind 99 is not a SpanKind (0 to 5)"),
        ("-1", "kind -1 is not a SpanKind (0 to 5)"),
        (2**31 - 1, f"kind {2**31 - 1} is not a SpanKind (0 to 5)"),
        # Values that name no number at all; ParseDict would read them as 0, 1, 1, 0, ...
        ("NOPE", "kind is neither a SpanKind number nor the name of one"),
        (1.5, "kind is neither a SpanKind number nor the name of one"),
        (True, "kind is neither a SpanKind number nor the name of one"),
        (2**40, "kind is neither a SpanKind number nor the name of one"),
        ("1e3", "kind is neither a SpanKind number nor the name of one"),
        ("NaN", "kind is neither a SpanKind number nor the name of one"),
        ([1], "kind is neither a SpanKind number nor the name of one"),
        ({"kind": 1}, "kind is neither a SpanKind number nor the name of one"),
        ("STATUS_CODE_OK", "kind is neither a SpanKind number nor the name of one"),
    ],
)
def test_it_rejects_a_span_whose_kind_is_not_a_span_kind_and_says_so(value, problem):
    request = traces_of(span(spanId="00000000000000a1"), span(kind=value))

    rejections = otlp.validate("traces", request, now_ns=NOW)

    assert rejections == Rejections(
        1, f"rejected 1 of 2 spans: span 1 of scopeSpans 0 of resourceSpans 0: {problem}"
    )
    assert [s.span_id.hex() for s in spans_of(request)] == ["00000000000000a1"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (3, "status.code 3 is not a StatusCode (0 to 2)"),
        (-1, "status.code -1 is not a StatusCode (0 to 2)"),
        ("STATUS_CODE_NOPE", "status.code is neither a StatusCode number nor the name of one"),
        (2**33, "status.code is neither a StatusCode number nor the name of one"),
    ],
)
def test_it_rejects_a_span_whose_status_code_is_not_a_status_code(value, problem):
    rejections = otlp.validate("traces", traces_of(span(status={"code": value})), now_ns=NOW)

    assert rejections.count == 1 and rejections.message.endswith(problem)


def test_it_rejects_out_of_range_enums_sent_as_protobuf_too():
    request = traces_of(span(), span(spanId="00000000000000a2"), span(spanId="00000000000000a3"))
    first, second, third = spans_of(request)
    first.kind, second.status.code, third.kind = -1, 7, Span.SPAN_KIND_SERVER
    decoded = otlp.decode("traces", request.SerializeToString(), PROTOBUF)

    rejections = otlp.validate("traces", decoded, now_ns=NOW)

    assert rejections.count == 2
    assert "kind -1 is not a SpanKind" in rejections.message
    assert "status.code 7 is not a StatusCode" in rejections.message
    assert [s.kind for s in spans_of(decoded)] == [Span.SPAN_KIND_SERVER]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (25, "severityNumber 25 is not a SeverityNumber (0 to 24)"),
        (-1, "severityNumber -1 is not a SeverityNumber (0 to 24)"),
        ("LOUD", "severityNumber is neither a SeverityNumber number nor the name of one"),
    ],
)
def test_it_rejects_a_log_record_whose_severity_is_not_a_severity_number(value, problem):
    request = logs_of(log(), log(severityNumber=value))

    rejections = otlp.validate("logs", request, now_ns=NOW)

    assert rejections == Rejections(
        1,
        f"rejected 1 of 2 log records: logRecord 1 of scopeLogs 0 of resourceLogs 0: {problem}",
    )
    assert len(records_of(request)) == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (3, "aggregationTemporality 3 is not an AggregationTemporality (0 to 2)"),
        (-1, "aggregationTemporality -1 is not an AggregationTemporality (0 to 2)"),
        (
            "AGGREGATION_TEMPORALITY_SOMETIMES",
            "aggregationTemporality is neither an AggregationTemporality number nor the name "
            "of one",
        ),
    ],
)
def test_it_rejects_the_points_of_a_metric_whose_temporality_is_not_one(value, problem):
    metric = {
        "name": "c",
        "sum": {
            "aggregationTemporality": value,
            "dataPoints": [{"timeUnixNano": str(T), "asInt": "1"}],
        },
    }
    request = metrics_of(metric, gauge("kept"))

    rejections = otlp.validate("metrics", request, now_ns=NOW)

    assert rejections == Rejections(
        1,
        "rejected 1 of 2 data points: metric 0 (c) of scopeMetrics 0 of resourceMetrics 0: "
        f"{problem}, so its 1 data point is rejected",
    )
    assert [m.name for m in metrics_in(request)] == ["kept"]


def test_an_overflowing_double_is_bad_data_not_a_crash():
    point = {"asInt": None, "asDouble": 10**400}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [gauge(**point)]}]}]}
    assert refusal("metrics", json.dumps(metrics).encode()) == (
        "invalid OTLP JSON for an ExportMetricsServiceRequest: int too large to convert to float"
    )


# --- encoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("media", [JSON, PROTOBUF])
def test_it_round_trips_through_encode_request(signal, media):
    request = load(signal)
    body = otlp.encode_request(signal, request, media)
    assert otlp.decode(signal, body, media) == request


def test_it_encodes_protobuf_as_the_standard_binary_encoding():
    request = load("traces", PROTOBUF)
    assert (
        ExportTraceServiceRequest.FromString(otlp.encode_request("traces", request, PROTOBUF))
        == request
    )


def json_keys(tree) -> set[str]:
    if isinstance(tree, dict):
        return set(tree) | {k for value in tree.values() for k in json_keys(value)}
    if isinstance(tree, list):
        return {k for value in tree for k in json_keys(value)}
    return set()


def test_it_encodes_otlp_json_with_hex_ids_int64_strings_integer_enums_and_camel_case():
    tree = json.loads(otlp.encode_request("traces", load("traces", PROTOBUF), JSON))
    server, client = tree["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert server["traceId"] == TRACE
    assert server["spanId"] == SPAN
    assert "parentSpanId" not in server
    assert client["parentSpanId"] == SPAN
    assert client["links"][0]["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert client["links"][0]["spanId"] == "b7ad6b7169203331"
    assert server["startTimeUnixNano"] == "1750000000000000000"
    assert server["kind"] == 2
    assert server["status"] == {"code": 1}
    assert client["status"] == {"message": "connection reset", "code": 2}
    http_status = next(a for a in server["attributes"] if a["key"] == "http.response.status_code")
    assert http_status["value"] == {"intValue": "200"}
    payload = next(a for a in server["attributes"] if a["key"] == "payload")
    assert payload["value"] == {"bytesValue": "3q2+7w=="}
    producer = tree["resourceSpans"][1]["scopeSpans"][0]["spans"][0]
    assert producer["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"  # lower case
    assert not [key for key in json_keys(tree) if "_" in key]


def test_it_encodes_the_ids_of_logs_and_exemplars_as_hex():
    logs = json.loads(otlp.encode_request("logs", load("logs", PROTOBUF), JSON))
    record = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]
    assert (record["traceId"], record["spanId"]) == (TRACE, "eee19b7ec3c1b175")
    assert record["severityNumber"] == 17
    metrics = json.loads(otlp.encode_request("metrics", load("metrics", PROTOBUF), JSON))
    histogram = metrics["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][6]["histogram"]
    exemplar = histogram["dataPoints"][0]["exemplars"][0]
    assert (exemplar["traceId"], exemplar["spanId"]) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert exemplar["asInt"] == "27"
    assert histogram["dataPoints"][0]["bucketCounts"] == ["0", "3", "1"]
    assert histogram["aggregationTemporality"] == 2


# --- validation: spans --------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("media", [JSON, PROTOBUF])
def test_it_finds_nothing_wrong_with_the_golden_payloads(signal, media):
    request = load(signal, media)
    before = copy.deepcopy(request)
    assert otlp.validate(signal, request, now_ns=NOW) == Rejections(0, "")
    assert request == before


# The golden invalid spans are named after their defect (except the one without a name).
INVALID_SPANS = {
    "traceId is all zero": "traceId is all zero",
    "traceId has 15 bytes": "traceId has 15 bytes, not 16",
    "traceId is missing": "traceId is missing",
    "spanId is all zero": "spanId is all zero",
    "spanId has 7 bytes": "spanId has 7 bytes, not 8",
    "parentSpanId has 9 bytes": "parentSpanId has 9 bytes, not 8",
    "": "name is empty",
    "startTimeUnixNano is missing": "startTimeUnixNano is missing (0)",
    "endTimeUnixNano is missing": "endTimeUnixNano is missing (0)",
    "ends before it starts": "endTimeUnixNano is before startTimeUnixNano",
    "timestamps in seconds": (
        "startTimeUnixNano 1750000000 is before 2000-01-01 (timestamps are nanoseconds since "
        "the Unix epoch), endTimeUnixNano 1750000001 is before 2000-01-01 (timestamps are "
        "nanoseconds since the Unix epoch)"
    ),
    "ends in 2030": "endTimeUnixNano 1900000000000000000 is more than a day in the future",
}


def test_it_rejects_every_invalid_span_of_the_golden_file_and_keeps_the_valid_ones():
    request = otlp.decode("traces", golden("invalid_traces.json"), JSON)
    rejections = otlp.validate("traces", request, now_ns=NOW)
    assert rejections.count == 12
    assert rejections.message.startswith(
        "rejected 12 of 14 spans: span 1 of scopeSpans 0 of resourceSpans 0: traceId is all zero; "
        "span 2 of scopeSpans 0 of resourceSpans 0: traceId has 15 bytes, not 16; "
    )
    assert rejections.message.endswith("; and 7 more problems")
    assert [s.name for s in spans_of(request)] == ["valid span", "another valid span"]


@pytest.mark.parametrize("name", list(INVALID_SPANS))
def test_it_names_the_problem_of_each_golden_invalid_span(name):
    original = otlp.decode("traces", golden("invalid_traces.json"), JSON)
    spans = original.resource_spans[0].scope_spans[0].spans
    index = next(i for i, s in enumerate(spans) if s.name == name)
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(spans[index])

    rejections = otlp.validate("traces", request, now_ns=NOW)

    assert rejections == Rejections(
        1,
        f"rejected 1 of 1 span: span 0 of scopeSpans 0 of resourceSpans 0: {INVALID_SPANS[name]}",
    )
    assert request == ExportTraceServiceRequest()  # the emptied envelopes are gone too


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"traceId": "00" * 16}, "traceId is all zero"),
        ({"traceId": "ab" * 17}, "traceId has 17 bytes, not 16"),
        ({"traceId": ""}, "traceId is missing"),
        ({"spanId": "00" * 8}, "spanId is all zero"),
        ({"spanId": None}, "spanId is missing"),
        ({"parentSpanId": "abcd"}, "parentSpanId has 2 bytes, not 8"),
        ({"name": None}, "name is empty"),
        ({"startTimeUnixNano": "0"}, "startTimeUnixNano is missing (0)"),
        ({"endTimeUnixNano": None}, "endTimeUnixNano is missing (0)"),
        (
            {"startTimeUnixNano": str(T + 2), "endTimeUnixNano": str(T + 1)},
            "endTimeUnixNano is before startTimeUnixNano",
        ),
        (
            {"startTimeUnixNano": "1750000000000", "endTimeUnixNano": str(T)},
            "startTimeUnixNano 1750000000000 is before 2000-01-01",
        ),
        (
            {"endTimeUnixNano": str(NOW + DAY + 1)},
            f"endTimeUnixNano {NOW + DAY + 1} is more than a day in the future",
        ),
    ],
)
def test_it_rejects_counts_and_removes_a_span_that_breaks_a_rule(fields, problem):
    request = traces_of(span(name="good"), span(**fields), span(name="also good"))

    rejections = otlp.validate("traces", request, now_ns=NOW)

    assert rejections.count == 1
    assert rejections.message.startswith(
        f"rejected 1 of 3 spans: span 1 of scopeSpans 0 of resourceSpans 0: {problem}"
    )
    assert [s.name for s in spans_of(request)] == ["good", "also good"]


def test_it_lists_every_problem_of_a_span():
    request = traces_of(span(traceId="00" * 16, spanId=None, name=""))
    assert otlp.validate("traces", request, now_ns=NOW).message == (
        "rejected 1 of 1 span: span 0 of scopeSpans 0 of resourceSpans 0: "
        "traceId is all zero, spanId is missing, name is empty"
    )


def test_it_accepts_timestamps_from_2000_to_a_day_ahead():
    earliest = 946_684_800 * 10**9
    request = traces_of(
        span(startTimeUnixNano=str(earliest), endTimeUnixNano=str(earliest)),
        span(startTimeUnixNano=str(NOW), endTimeUnixNano=str(NOW + DAY)),
        span(startTimeUnixNano=str(earliest - 1)),
    )
    rejections = otlp.validate("traces", request, now_ns=NOW)
    assert rejections.count == 1
    assert "span 2 of scopeSpans 0" in rejections.message
    assert len(spans_of(request)) == 2


def test_it_takes_the_current_time_when_now_is_not_given():
    request = traces_of(span(endTimeUnixNano=str(T + 10 * 365 * DAY)))  # mid-2035
    assert otlp.validate("traces", request).count == 1
    assert otlp.validate("traces", traces_of(span())).count == 0


def test_it_keeps_positions_as_received_across_resources_and_scopes():
    tree = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [span(name="a")]}]},
            {
                "scopeSpans": [
                    {"spans": [span(name="b")]},
                    {"spans": [span(name="c"), span(name="d"), span(traceId="00" * 16)]},
                ]
            },
        ]
    }
    request = from_json("traces", tree)
    rejections = otlp.validate("traces", request, now_ns=NOW)
    assert rejections.message == (
        "rejected 1 of 5 spans: span 2 of scopeSpans 1 of resourceSpans 1: traceId is all zero"
    )


def test_it_removes_the_envelopes_that_rejection_leaves_empty():
    tree = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]
                },
                "scopeSpans": [{"spans": [span(name="")]}],
            },
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "b"}}]
                },
                "scopeSpans": [
                    {"scope": {"name": "empty"}, "spans": [span(spanId="00" * 8)]},
                    {"scope": {"name": "kept"}, "spans": [span(name="kept")]},
                ],
            },
        ]
    }
    request = from_json("traces", tree)
    assert otlp.validate("traces", request, now_ns=NOW).count == 2
    (resource,) = request.resource_spans
    assert attributes(resource.resource.attributes)["service.name"].string_value == "b"
    assert [scope.scope.name for scope in resource.scope_spans] == ["kept"]


def test_it_takes_an_all_zero_parent_span_id_for_a_root_span():
    request = traces_of(span(parentSpanId="00" * 8))
    assert otlp.validate("traces", request, now_ns=NOW) == Rejections(0, "")
    assert spans_of(request)[0].parent_span_id == b""


def test_it_drops_links_with_invalid_ids_and_counts_them_as_dropped():
    good = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
    request = traces_of(
        span(
            links=[
                {"traceId": "00" * 16, "spanId": "b7ad6b7169203331"},
                good,
                {"traceId": good["traceId"], "spanId": "b7ad"},
                {"traceId": good["traceId"]},
            ],
            droppedLinksCount=1,
        )
    )
    assert otlp.validate("traces", request, now_ns=NOW) == Rejections(0, "")
    (kept,) = spans_of(request)
    assert [link.span_id.hex() for link in kept.links] == ["b7ad6b7169203331"]
    assert kept.dropped_links_count == 4


def test_it_names_the_first_five_problems_and_counts_the_rest():
    request = traces_of(*[span(name="") for _ in range(6)], span(name="fine"))
    message = otlp.validate("traces", request, now_ns=NOW).message
    assert message.startswith("rejected 6 of 7 spans: span 0 of scopeSpans 0")
    assert message.count("name is empty") == 5
    assert "span 4 of scopeSpans 0" in message and "span 5 of" not in message
    assert message.endswith("; and 1 more problem")


# --- validation: metrics ------------------------------------------------------------------------


def histogram(**point) -> dict:
    base = {
        "timeUnixNano": str(T),
        "count": "3",
        "sum": 1.0,
        "bucketCounts": ["1", "2"],
        "explicitBounds": [0.5],
    }
    base.update(point)
    return {
        "name": "h",
        "histogram": {"aggregationTemporality": 1, "dataPoints": [present(base)]},
    }


def exponential(**point) -> dict:
    base = {
        "timeUnixNano": str(T),
        "count": "4",
        "zeroCount": "1",
        "positive": {"bucketCounts": ["1", "1"]},
        "negative": {"offset": -1, "bucketCounts": ["1"]},
    }
    base.update(point)
    return {
        "name": "e",
        "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [present(base)]},
    }


def summary(**point) -> dict:
    base = {
        "timeUnixNano": str(T),
        "count": "2",
        "sum": 3.0,
        "quantileValues": [{"quantile": 0.5, "value": 1.0}],
    }
    base.update(point)
    return {"name": "s", "summary": {"dataPoints": [present(base)]}}


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (gauge("g", timeUnixNano=None), "g: timeUnixNano is missing (0)"),
        (
            gauge("g", timeUnixNano="1750000000000000"),
            "g: timeUnixNano 1750000000000000 is before 2000-01-01",
        ),
        (
            gauge("g", timeUnixNano=str(NOW + 2 * DAY)),
            "g: timeUnixNano 1767398400000000000 is more than a day in the future",
        ),
        (gauge("g", asInt=None), "g: has no value (asInt or asDouble)"),
        (
            histogram(bucketCounts=["1", "1", "1"]),
            "h: bucketCounts has 3 entries but explicitBounds has 1: expected 2 bucket counts",
        ),
        (
            histogram(bucketCounts=[], explicitBounds=[0.5]),
            "h: bucketCounts has 0 entries but explicitBounds has 1: expected 2 bucket counts",
        ),
        (
            histogram(bucketCounts=["1", "1", "1"], explicitBounds=[2.0, 1.0]),
            "h: explicitBounds are not strictly increasing",
        ),
        (histogram(count="4"), "h: count is 4 but bucketCounts add up to 3"),
        (histogram(sum=-0.5), "h: sum is negative (-0.5)"),
        (
            exponential(count="5"),
            "e: count is 5 but zeroCount and the bucket counts add up to 4",
        ),
        (exponential(sum=-2.0), "e: sum is negative (-2.0)"),
        (summary(sum=-3.0), "s: sum is negative (-3.0)"),
        (
            summary(quantileValues=[{"quantile": 1.5, "value": 1.0}]),
            "s: quantile 1.5 is outside [0, 1]",
        ),
        (
            summary(quantileValues=[{"quantile": 0.9, "value": -1.0}]),
            "s: the value at quantile 0.9 is negative (-1.0)",
        ),
        # What the database could not store: a start beyond int64, a count beyond int64.
        (
            gauge("g", startTimeUnixNano=str(2**64 - 1)),
            f"g: startTimeUnixNano {2**64 - 1} is more than a day in the future",
        ),
        (
            histogram(count=str(2**63), bucketCounts=[str(2**62), str(2**62)]),
            f"h: count {2**63} is more than {2**63 - 1} (2^63 - 1)",
        ),
        (
            exponential(count=str(2**64 - 1), zeroCount=str(2**64 - 4)),
            f"e: count {2**64 - 1} is more than {2**63 - 1} (2^63 - 1)",
        ),
        (summary(count=str(2**63)), f"s: count {2**63} is more than {2**63 - 1} (2^63 - 1)"),
        # Explicit bounds: the open buckets at either end are implied, so every bound is finite.
        (
            histogram(explicitBounds=["Infinity"]),
            "h: explicitBounds are not all finite numbers within ±1e+300 (the open buckets below "
            "the first and above the last are implied)",
        ),
        (
            histogram(bucketCounts=["1", "1", "1"], explicitBounds=["NaN", "NaN"]),
            "h: explicitBounds are not all finite numbers within ±1e+300",
        ),
        (
            histogram(bucketCounts=["1", "1", "1"], explicitBounds=[-1.7976931348623157e308, 0]),
            "h: explicitBounds are not all finite numbers within ±1e+300",
        ),
    ],
)
def test_it_rejects_counts_and_removes_a_data_point_that_breaks_a_rule(metric, problem):
    request = metrics_of(gauge("first"), metric)

    rejections = otlp.validate("metrics", request, now_ns=NOW)

    assert rejections.count == 1
    name, problem = problem.split(": ", 1)
    assert rejections.message.startswith(
        f"rejected 1 of 2 data points: dataPoint 0 of metric 1 ({name}) of scopeMetrics 0 of "
        f"resourceMetrics 0: {problem}"
    )
    assert [m.name for m in metrics_in(request)] == ["first"]  # the emptied metric is gone


@pytest.mark.parametrize(
    "metric",
    [
        histogram(),
        histogram(bucketCounts=[], explicitBounds=[], sum=None),
        exponential(),
        summary(),
    ],
)
def test_it_accepts_well_formed_histograms_and_summaries(metric):
    assert otlp.validate("metrics", metrics_of(metric), now_ns=NOW) == Rejections(0, "")


def test_it_keeps_the_valid_points_of_a_metric_and_removes_the_others():
    metric = gauge("g")
    metric["gauge"]["dataPoints"] += [{"asInt": "2"}, {"timeUnixNano": str(T), "asDouble": 2.5}]
    request = metrics_of(metric)
    assert otlp.validate("metrics", request, now_ns=NOW).count == 1
    assert [p.WhichOneof("value") for p in metrics_in(request)[0].gauge.data_points] == [
        "as_int",
        "as_double",
    ]


def test_it_rejects_every_point_of_a_metric_whose_name_is_longer_than_the_column():
    long = gauge("m" * 256)
    long["gauge"]["dataPoints"] *= 2
    request = metrics_of(gauge("m" * 255), long)

    rejections = otlp.validate("metrics", request, now_ns=NOW)

    assert rejections == Rejections(
        2,
        f"rejected 2 of 3 data points: metric 1 ({'m' * 59}…) of scopeMetrics 0 of "
        "resourceMetrics 0: name is longer than 255 characters, so its 2 data points are "
        "rejected",
    )
    assert [m.name for m in metrics_in(request)] == ["m" * 255]


def test_it_clears_an_exemplar_time_outside_the_sane_range_and_keeps_the_point():
    exemplars = [
        {"timeUnixNano": str(2**64 - 1), "asDouble": 1.0},
        {"timeUnixNano": "5", "asDouble": 2.0},
        {"timeUnixNano": str(T), "asDouble": 3.0},
    ]
    request = metrics_of(gauge("g", exemplars=exemplars))

    assert otlp.validate("metrics", request, now_ns=NOW) == otlp.ACCEPTED
    kept = metrics_in(request)[0].gauge.data_points[0].exemplars
    assert [e.time_unix_nano for e in kept] == [0, 0, T]


def test_it_rejects_every_point_of_a_metric_without_a_name():
    metric = gauge("")
    metric["gauge"]["dataPoints"] *= 3
    request = metrics_of(gauge("named"), metric)

    rejections = otlp.validate("metrics", request, now_ns=NOW)

    assert rejections == Rejections(
        3,
        "rejected 3 of 4 data points: metric 1 of scopeMetrics 0 of resourceMetrics 0: "
        "name is empty, so its 3 data points are rejected",
    )
    assert [m.name for m in metrics_in(request)] == ["named"]


def test_it_rejects_the_points_of_a_sum_without_aggregation_temporality():
    request = metrics_of(
        {
            "name": "c",
            "sum": {"isMonotonic": True, "dataPoints": [{"timeUnixNano": str(T), "asInt": "1"}]},
        }
    )
    rejections = otlp.validate("metrics", request, now_ns=NOW)
    assert rejections.count == 1
    assert rejections.message == (
        "rejected 1 of 1 data point: metric 0 (c) of scopeMetrics 0 of resourceMetrics 0: "
        "aggregationTemporality is unspecified (0): use 1 (delta) or 2 (cumulative), "
        "so its 1 data point is rejected"
    )
    assert request == ExportMetricsServiceRequest()


def test_it_removes_a_metric_without_data_and_counts_no_point_for_it():
    request = metrics_of({"name": "nothing", "unit": "1"}, gauge("kept"))
    assert otlp.validate("metrics", request, now_ns=NOW) == Rejections(0, "")
    assert [m.name for m in metrics_in(request)] == ["kept"]


def test_it_accepts_a_point_without_value_when_flagged_no_recorded_value():
    request = metrics_of(gauge("stale", asInt=None, flags=1))
    assert otlp.validate("metrics", request, now_ns=NOW) == Rejections(0, "")
    assert len(metrics_in(request)[0].gauge.data_points) == 1


def test_it_clears_invalid_exemplar_ids_and_keeps_the_point():
    exemplars = [
        {"timeUnixNano": str(T), "asInt": "1", "traceId": "00" * 16, "spanId": SPAN},
        {"timeUnixNano": str(T), "asInt": "2", "traceId": TRACE, "spanId": "abcd"},
        {"timeUnixNano": str(T), "asInt": "3", "traceId": TRACE, "spanId": SPAN},
    ]
    request = metrics_of(gauge("g", exemplars=exemplars))
    assert otlp.validate("metrics", request, now_ns=NOW) == Rejections(0, "")
    kept = metrics_in(request)[0].gauge.data_points[0].exemplars
    assert [(e.trace_id.hex(), e.span_id.hex()) for e in kept] == [
        ("", ""),
        (TRACE, ""),
        (TRACE, SPAN),
    ]


# --- validation: logs ---------------------------------------------------------------------------


def test_it_keeps_a_log_record_with_invalid_ids_but_unties_it_from_the_trace():
    request = logs_of(
        log(traceId="00" * 16, spanId=SPAN),
        log(traceId="ab" * 15, spanId=SPAN),
        log(traceId=TRACE, spanId="abcd"),
        log(traceId=TRACE, spanId=SPAN),
        log(),
    )
    assert otlp.validate("logs", request, now_ns=NOW) == Rejections(0, "")
    assert [(r.trace_id.hex(), r.span_id.hex()) for r in records_of(request)] == [
        ("", ""),
        ("", ""),
        (TRACE, ""),
        (TRACE, SPAN),
        ("", ""),
    ]


def test_it_accepts_a_log_record_whose_timestamps_are_unknown():
    request = logs_of(log(timeUnixNano=None, observedTimeUnixNano=None))
    assert otlp.validate("logs", request, now_ns=NOW) == Rejections(0, "")


def test_it_clears_an_out_of_range_log_timestamp_when_the_other_one_is_good():
    request = logs_of(log(timeUnixNano="1750000000"), log(observedTimeUnixNano=str(NOW + 2 * DAY)))
    assert otlp.validate("logs", request, now_ns=NOW) == Rejections(0, "")
    first, second = records_of(request)
    assert (first.time_unix_nano, first.observed_time_unix_nano) == (0, T)
    assert (second.time_unix_nano, second.observed_time_unix_nano) == (T, 0)


def test_it_rejects_a_log_record_without_a_timestamp_in_range():
    request = logs_of(
        log(),
        log(timeUnixNano="1750000000", observedTimeUnixNano=None),
        log(timeUnixNano="1750000000", observedTimeUnixNano=str(NOW + 2 * DAY)),
    )
    rejections = otlp.validate("logs", request, now_ns=NOW)
    assert rejections.count == 2
    assert rejections.message == (
        "rejected 2 of 3 log records: logRecord 1 of scopeLogs 0 of resourceLogs 0: "
        "timeUnixNano 1750000000 is before 2000-01-01 (timestamps are nanoseconds since the "
        "Unix epoch); logRecord 2 of scopeLogs 0 of resourceLogs 0: timeUnixNano 1750000000 "
        "is before 2000-01-01 (timestamps are nanoseconds since the Unix epoch), "
        f"observedTimeUnixNano {NOW + 2 * DAY} is more than a day in the future"
    )
    assert len(records_of(request)) == 1


# --- responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_it_answers_full_success_with_an_empty_response(signal):
    assert otlp.response(signal, Rejections(0, ""), JSON) == b"{}"
    assert otlp.response(signal, Rejections(0, ""), PROTOBUF) == b""


@pytest.mark.parametrize(
    ("signal", "field"),
    [
        ("traces", "rejectedSpans"),
        ("metrics", "rejectedDataPoints"),
        ("logs", "rejectedLogRecords"),
    ],
)
def test_it_answers_partial_success_in_json_with_the_spec_field_names(signal, field):
    body = otlp.response(signal, Rejections(3, "rejected 3 of 9: bad"), JSON)
    # int64 is a decimal string in the proto3 JSON mapping
    assert json.loads(body) == {
        "partialSuccess": {field: "3", "errorMessage": "rejected 3 of 9: bad"}
    }


@pytest.mark.parametrize("signal", SIGNALS)
def test_it_answers_partial_success_in_protobuf_as_the_spec_encodes_it(signal):
    body = otlp.response(signal, Rejections(3, "bad"), PROTOBUF)
    # field 1 partial_success (LEN 7) { field 1 rejected_<signal> = 3; field 2 error_message }
    assert body == b"\x0a\x07\x08\x03\x12\x03bad"
    parsed = RESPONSES[signal].FromString(body)
    assert parsed.HasField("partial_success")
    assert parsed.partial_success.error_message == "bad"


def test_it_answers_a_large_rejection_count_in_both_encodings():
    count = 2**40
    assert json.loads(otlp.response("traces", Rejections(count, "m"), JSON)) == {
        "partialSuccess": {"rejectedSpans": str(count), "errorMessage": "m"}
    }
    parsed = ExportTraceServiceResponse.FromString(
        otlp.response("traces", Rejections(count, "m"), PROTOBUF)
    )
    assert parsed.partial_success.rejected_spans == count


def test_it_answers_the_validation_of_a_request_end_to_end():
    request = otlp.decode("traces", golden("invalid_traces.json"), JSON)
    body = otlp.response("traces", otlp.validate("traces", request, now_ns=NOW), JSON)
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "12"
    assert partial["errorMessage"].startswith("rejected 12 of 14 spans: span 1 of scopeSpans 0")


def test_it_answers_bad_data_with_a_status_carrying_a_bad_request_in_json():
    body = otlp.status_body("invalid JSON at line 1 column 5: Expecting value", JSON, 400)
    assert json.loads(body) == {
        "code": 3,
        "message": "invalid JSON at line 1 column 5: Expecting value",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"description": "invalid JSON at line 1 column 5: Expecting value"}
                ],
            }
        ],
    }


def test_it_answers_bad_data_with_a_status_carrying_a_bad_request_in_protobuf():
    status = status_pb2.Status.FromString(otlp.status_body("bad hex", PROTOBUF, 400))
    assert (status.code, status.message) == (3, "bad hex")
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].description == "bad hex"


@pytest.mark.parametrize(
    ("http", "grpc"),
    [(413, 8), (429, 8), (503, 14), (502, 14), (500, 13), (418, 2)],
)
def test_it_answers_other_failures_with_a_plain_status(http, grpc):
    assert json.loads(otlp.status_body("slow down", JSON, http)) == {
        "code": grpc,
        "message": "slow down",
    }
    status = status_pb2.Status.FromString(otlp.status_body("slow down", PROTOBUF, http))
    assert (status.code, status.message, len(status.details)) == (grpc, "slow down", 0)


@pytest.mark.parametrize("media", [JSON, PROTOBUF])
def test_it_answers_bad_data_that_quotes_a_lone_surrogate(media):
    message = refusal("traces", b'{"resourceSpans": "\\ud800"}')
    assert "\ud800" in message  # json_format quotes the value

    status = status_pb2.Status()
    body = otlp.status_body(message, media, 400)
    if media == JSON:
        status = status_pb2.Status(message=json.loads(body)["message"])
    else:
        status.ParseFromString(body)

    assert status.message.endswith("which is \\ud800")
