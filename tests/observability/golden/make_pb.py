"""Build traces.pb, metrics.pb and logs.pb, the binary twins of traces.json, metrics.json and
logs.json in this folder.

Each message is put together field by field with the classes generated from the OTLP protos
(opentelemetry-proto), and serialised with SerializeToString. Nothing here reads the JSON files
or uses observability.otlp: the two encodings of the same content are written independently, so
that tests/observability/test_otlp.py can check each decoder against the other.

If you change a JSON golden file, make the same change here and run, from the project root:

    .venv/bin/python tests/observability/golden/make_pb.py
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

HERE = Path(__file__).resolve().parent
SCHEMA = "https://opentelemetry.io/schemas/1.26.0"

TRACE_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_B = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
TRACE_C = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def integer(value: int) -> AnyValue:
    return AnyValue(int_value=value)


def traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()

    checkout = request.resource_spans.add()
    checkout.resource.attributes.append(kv("service.name", text("checkout")))
    checkout.resource.attributes.append(kv("host.cpu.count", integer(8)))
    checkout.resource.dropped_attributes_count = 1
    checkout.schema_url = SCHEMA

    django = checkout.scope_spans.add()
    django.scope.name = "io.opentelemetry.django"
    django.scope.version = "0.66b2"
    django.scope.attributes.append(kv("scope.attr", AnyValue(bool_value=True)))
    django.schema_url = SCHEMA

    server = django.spans.add()
    server.trace_id = TRACE_A
    server.span_id = bytes.fromhex("eee19b7ec3c1b174")
    server.trace_state = "vendor=abc"
    server.flags = 1
    server.name = "GET /cart"
    server.kind = Span.SPAN_KIND_SERVER
    server.start_time_unix_nano = 1_750_000_000_000_000_000
    server.end_time_unix_nano = 1_750_000_000_250_000_000
    server.attributes.append(kv("http.request.method", text("GET")))
    server.attributes.append(kv("http.response.status_code", integer(200)))
    server.attributes.append(kv("retries", integer(3)))
    server.attributes.append(kv("sampled", AnyValue(bool_value=True)))
    server.attributes.append(kv("load", AnyValue(double_value=0.75)))
    tags = ArrayValue()
    tags.values.append(text("a"))
    tags.values.append(integer(2))
    tags.values.append(AnyValue(double_value=3.5))
    tags.values.append(AnyValue(bool_value=False))
    server.attributes.append(kv("tags", AnyValue(array_value=tags)))
    nested = KeyValueList()
    nested.values.append(kv("depth", integer(2)))
    user = KeyValueList()
    user.values.append(kv("id", text("u-1")))
    user.values.append(kv("vip", AnyValue(bool_value=True)))
    user.values.append(kv("nested", AnyValue(kvlist_value=nested)))
    server.attributes.append(kv("user", AnyValue(kvlist_value=user)))
    server.attributes.append(kv("payload", AnyValue(bytes_value=b"\xde\xad\xbe\xef")))
    server.attributes.append(kv("nothing", AnyValue()))
    server.dropped_attributes_count = 2
    miss = server.events.add()
    miss.time_unix_nano = 1_750_000_000_100_000_000
    miss.name = "cache.miss"
    miss.attributes.append(kv("cache.key", text("cart:42")))
    exception = server.events.add()
    exception.time_unix_nano = 1_750_000_000_200_000_000
    exception.name = "exception"
    exception.attributes.append(kv("exception.type", text("KeyError")))
    exception.dropped_attributes_count = 1
    server.dropped_events_count = 3
    server.status.code = Status.STATUS_CODE_OK

    client = django.spans.add()
    client.trace_id = TRACE_A
    client.span_id = bytes.fromhex("eee19b7ec3c1b175")
    client.parent_span_id = bytes.fromhex("eee19b7ec3c1b174")
    client.name = "SELECT cart"
    client.kind = Span.SPAN_KIND_CLIENT
    client.start_time_unix_nano = 1_750_000_000_050_000_000
    client.end_time_unix_nano = 1_750_000_000_150_000_000
    link = client.links.add()
    link.trace_id = TRACE_C
    link.span_id = bytes.fromhex("b7ad6b7169203331")
    link.trace_state = "congo=t61rcWkgMzE"
    link.attributes.append(kv("link.reason", text("retry")))
    link.dropped_attributes_count = 1
    link.flags = 1
    client.dropped_links_count = 1
    client.status.message = "connection reset"
    client.status.code = Status.STATUS_CODE_ERROR

    jobs = checkout.scope_spans.add()
    jobs.scope.name = "app.jobs"
    internal = jobs.spans.add()
    internal.trace_id = TRACE_A
    internal.span_id = bytes.fromhex("eee19b7ec3c1b176")
    internal.parent_span_id = bytes.fromhex("eee19b7ec3c1b174")
    internal.name = "recalculate totals"
    internal.kind = Span.SPAN_KIND_INTERNAL
    internal.start_time_unix_nano = 1_750_000_000_060_000_000
    internal.end_time_unix_nano = 1_750_000_000_070_000_000
    unspecified = jobs.spans.add()
    unspecified.trace_id = TRACE_A
    unspecified.span_id = bytes.fromhex("eee19b7ec3c1b177")
    unspecified.parent_span_id = bytes.fromhex("eee19b7ec3c1b174")
    unspecified.name = "unspecified kind"
    unspecified.start_time_unix_nano = 1_750_000_000_080_000_000
    unspecified.end_time_unix_nano = 1_750_000_000_090_000_000

    billing = request.resource_spans.add()
    billing.resource.attributes.append(kv("service.name", text("billing")))
    queue = billing.scope_spans.add()
    queue.scope.name = "billing.queue"
    queue.scope.version = "2.1.0"
    producer = queue.spans.add()
    producer.trace_id = TRACE_B
    producer.span_id = bytes.fromhex("00f067aa0ba902b7")
    producer.name = "publish invoice"
    producer.kind = Span.SPAN_KIND_PRODUCER
    producer.start_time_unix_nano = 1_750_000_001_000_000_000
    producer.end_time_unix_nano = 1_750_000_001_010_000_000
    consumer = queue.spans.add()
    consumer.trace_id = TRACE_B
    consumer.span_id = bytes.fromhex("00f067aa0ba902b8")
    consumer.parent_span_id = bytes.fromhex("00f067aa0ba902b7")
    consumer.name = "consume invoice"
    consumer.kind = Span.SPAN_KIND_CONSUMER
    consumer.start_time_unix_nano = 1_750_000_002_000_000_000
    consumer.end_time_unix_nano = 1_750_000_002_500_000_000
    return request


def metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    now = 1_750_000_000_000_000_000
    minute_ago = 1_749_999_940_000_000_000
    process_start = 1_749_990_000_000_000_000

    checkout = request.resource_metrics.add()
    checkout.resource.attributes.append(kv("service.name", text("checkout")))
    sdk = checkout.scope_metrics.add()
    sdk.scope.name = "io.opentelemetry.sdk.metrics"
    sdk.scope.version = "1.45.2"

    threads = sdk.metrics.add()
    threads.name = "process.thread.count"
    threads.description = "Live threads"
    threads.unit = "{thread}"
    threads.metadata.append(kv("prometheus.type", text("gauge")))
    point = threads.gauge.data_points.add()
    point.time_unix_nano = now
    point.as_int = 12

    cpu = sdk.metrics.add()
    cpu.name = "system.cpu.utilization"
    cpu.unit = "1"
    for number, value in ((0, 0.25), (1, 0.5)):
        point = cpu.gauge.data_points.add()
        point.attributes.append(kv("cpu", integer(number)))
        point.time_unix_nano = now
        point.as_double = value

    requests = sdk.metrics.add()
    requests.name = "http.server.request.count"
    requests.unit = "{request}"
    requests.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    requests.sum.is_monotonic = True
    point = requests.sum.data_points.add()
    point.attributes.append(kv("http.route", text("/cart")))
    point.start_time_unix_nano = minute_ago
    point.time_unix_nano = now
    point.as_int = 7

    cpu_time = sdk.metrics.add()
    cpu_time.name = "process.cpu.time"
    cpu_time.unit = "s"
    cpu_time.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    cpu_time.sum.is_monotonic = True
    point = cpu_time.sum.data_points.add()
    point.start_time_unix_nano = process_start
    point.time_unix_nano = now
    point.as_double = 12.5

    depth = sdk.metrics.add()
    depth.name = "queue.depth"
    depth.unit = "{message}"
    depth.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    depth.sum.is_monotonic = False
    point = depth.sum.data_points.add()
    point.start_time_unix_nano = process_start
    point.time_unix_nano = now
    point.as_int = -3

    duration = sdk.metrics.add()
    duration.name = "http.server.request.duration"
    duration.unit = "s"
    duration.histogram.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    point = duration.histogram.data_points.add()
    point.attributes.append(kv("http.route", text("/cart")))
    point.start_time_unix_nano = minute_ago
    point.time_unix_nano = now
    point.count = 6
    point.sum = 1.5
    point.bucket_counts.extend([1, 2, 3])
    point.explicit_bounds.extend([0.1, 0.5])
    point.min = 0.05
    point.max = 0.9
    exemplar = point.exemplars.add()
    exemplar.filtered_attributes.append(kv("user.id", text("u-1")))
    exemplar.time_unix_nano = 1_749_999_990_000_000_000
    exemplar.as_double = 0.9
    exemplar.trace_id = TRACE_A
    exemplar.span_id = bytes.fromhex("eee19b7ec3c1b174")

    db = sdk.metrics.add()
    db.name = "db.client.operation.duration"
    db.unit = "ms"
    db.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    point = db.histogram.data_points.add()
    point.start_time_unix_nano = process_start
    point.time_unix_nano = now
    point.count = 4
    point.sum = 30.0
    point.bucket_counts.extend([0, 3, 1])
    point.explicit_bounds.extend([5.0, 25.0])
    exemplar = point.exemplars.add()
    exemplar.time_unix_nano = 1_749_999_995_000_000_000
    exemplar.as_int = 27
    exemplar.trace_id = TRACE_C
    exemplar.span_id = bytes.fromhex("b7ad6b7169203331")

    billing = request.resource_metrics.add()
    billing.resource.attributes.append(kv("service.name", text("billing")))
    billing.schema_url = SCHEMA
    meter = billing.scope_metrics.add()
    meter.scope.name = "billing.meter"
    meter.schema_url = SCHEMA

    rpc = meter.metrics.add()
    rpc.name = "rpc.server.duration"
    rpc.unit = "ms"
    rpc.exponential_histogram.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    point = rpc.exponential_histogram.data_points.add()
    point.start_time_unix_nano = minute_ago
    point.time_unix_nano = now
    point.count = 8
    point.scale = 2
    point.zero_count = 1
    point.zero_threshold = 0.001
    point.positive.offset = 1
    point.positive.bucket_counts.extend([2, 3])
    point.negative.offset = -2
    point.negative.bucket_counts.extend([2])
    point.min = -1.5
    point.max = 4.0
    exemplar = point.exemplars.add()
    exemplar.time_unix_nano = 1_749_999_999_000_000_000
    exemplar.as_double = 3.25
    exemplar.trace_id = TRACE_B
    exemplar.span_id = bytes.fromhex("00f067aa0ba902b7")

    legacy = meter.metrics.add()
    legacy.name = "legacy.request.latency"
    legacy.unit = "s"
    point = legacy.summary.data_points.add()
    point.start_time_unix_nano = process_start
    point.time_unix_nano = now
    point.count = 10
    point.sum = 4.25
    for quantile, value in ((0.0, 0.125), (0.5, 0.375), (1.0, 1.125)):
        point.quantile_values.add(quantile=quantile, value=value)
    return request


def logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()

    checkout = request.resource_logs.add()
    checkout.resource.attributes.append(kv("service.name", text("checkout")))
    logger = checkout.scope_logs.add()
    logger.scope.name = "checkout.logger"
    logger.scope.version = "1.0"

    loaded = logger.log_records.add()
    loaded.time_unix_nano = 1_750_000_000_100_000_000
    loaded.observed_time_unix_nano = 1_750_000_000_100_000_500
    loaded.severity_number = SeverityNumber.SEVERITY_NUMBER_INFO
    loaded.severity_text = "INFO"
    loaded.body.string_value = "cart loaded"
    loaded.attributes.append(kv("cart.items", integer(3)))
    loaded.flags = 1
    loaded.trace_id = TRACE_A
    loaded.span_id = bytes.fromhex("eee19b7ec3c1b174")

    failed = logger.log_records.add()
    failed.time_unix_nano = 1_750_000_000_200_000_000
    failed.observed_time_unix_nano = 1_750_000_000_200_000_500
    failed.severity_number = SeverityNumber.SEVERITY_NUMBER_ERROR
    failed.severity_text = "ERROR"
    failed.event_name = "checkout.payment_failed"
    failed.body.kvlist_value.values.append(kv("reason", text("card declined")))
    failed.body.kvlist_value.values.append(kv("attempt", integer(2)))
    failed.dropped_attributes_count = 1
    failed.trace_id = TRACE_A
    failed.span_id = bytes.fromhex("eee19b7ec3c1b175")

    billing = request.resource_logs.add()
    billing.resource.attributes.append(kv("service.name", text("billing")))
    billing.resource.attributes.append(kv("host.name", text("worker-1")))
    anonymous = billing.scope_logs.add()
    anonymous.scope.SetInParent()  # "scope": {} is present, and empty
    retrying = anonymous.log_records.add()
    retrying.observed_time_unix_nano = 1_750_000_000_300_000_000
    retrying.severity_number = SeverityNumber.SEVERITY_NUMBER_WARN
    retrying.severity_text = "WARN"
    retrying.body.array_value.values.append(text("retrying"))
    retrying.body.array_value.values.append(integer(5))
    return request


def main() -> None:
    for name, build in (("traces", traces), ("metrics", metrics), ("logs", logs)):
        path = HERE / f"{name}.pb"
        path.write_bytes(build().SerializeToString())
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
