"""OTLP/HTTP trace decoding: µs per span of what the web tier does to accept a request, by the
way the request goes, and of the worker's second decode of a clean request into span rows.

    .venv/bin/python bench/otlp_decode.py [--repeat 30] [--spans 512]

- clean JSON: ``otlp_json.clean_traces`` (msgspec's typed decode and the check), after which the
  body is stored as received;
- JSON the structs do not take (here: the same batch with one invalid span): the reference way,
  ``otlp.decode`` (json.loads, hex ids to base64, json_format.ParseDict), ``otlp.validate`` and
  the protobuf encoding that is stored;
- protobuf: ``otlp.decode`` (ParseFromString), ``otlp.validate`` and the encoding again.

Two batches of 512 spans: "typical" (64 traces of 8 spans, 8 attributes each, like
bench/ingest.py sends) and "every kind" (every AnyValue kind, events and links). Each figure is
the best of --repeat runs over the whole batch, the median beside it, the rows taking turns:
these machines are shared and noisy, so compare the ratios. No database.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ["LOCAL_ENV_FILE"] = ""  # not a `make run` checkout's settings (DEBUG=1)
django.setup()  # observability.traces reads its models' metadata; no database is opened

from bench.ingest import span_batch  # noqa: E402
from observability import otlp, otlp_json, traces  # noqa: E402

NOW = 1_750_000_000_000_000_000


def typical_batch(spans: int, rng: random.Random) -> dict:
    """The ingestion benchmark's batch: 64 traces of 8 spans (for 512), 8 attributes each."""
    return json.loads(span_batch(rng, NOW, spans=spans))


def every_kind_batch(spans: int, rng: random.Random) -> dict:
    """Spans with every AnyValue kind (ints as strings and numbers), events and links."""
    items = []
    for i in range(spans):
        start = NOW + i * 1_000
        attributes = [
            {"key": "http.request.method", "value": {"stringValue": "GET"}},
            {"key": "http.response.status_code", "value": {"intValue": "200"}},
            {"key": "retries", "value": {"intValue": i % 4}},
            {"key": "sampled", "value": {"boolValue": i % 2 == 0}},
            {"key": "load", "value": {"doubleValue": rng.random()}},
            {"key": "payload", "value": {"bytesValue": "3q2+7w=="}},
            {
                "key": "tags",
                "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}},
            },
            {
                "key": "user",
                "value": {
                    "kvlistValue": {
                        "values": [
                            {"key": "id", "value": {"stringValue": f"u-{i}"}},
                            {"key": "vip", "value": {"boolValue": True}},
                        ]
                    }
                },
            },
        ]
        items.append(
            {
                "traceId": f"{rng.getrandbits(128):032x}",
                "spanId": f"{rng.getrandbits(64):016x}",
                "parentSpanId": f"{rng.getrandbits(64):016x}",
                "flags": 1,
                "name": f"span {i % 16}",
                "kind": 1 + i % 5,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": start + 500_000,
                "attributes": attributes,
                "events": [
                    {
                        "timeUnixNano": str(start + 100),
                        "name": "exception",
                        "attributes": [
                            {"key": "exception.type", "value": {"stringValue": "KeyError"}}
                        ],
                    }
                ]
                if i % 4 == 0
                else [],
                "links": [
                    {
                        "traceId": f"{rng.getrandbits(128):032x}",
                        "spanId": f"{rng.getrandbits(64):016x}",
                        "attributes": [{"key": "link.reason", "value": {"stringValue": "retry"}}],
                    }
                ]
                if i % 8 == 0
                else [],
                "status": {"code": 2, "message": "boom"} if i % 10 == 0 else {"code": 1},
            }
        )
    return envelope(items)


def envelope(spans: list[dict]) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "checkout"}},
                        {"key": "host.name", "value": {"stringValue": "web-1"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "io.opentelemetry.django", "version": "0.66b2"},
                        "spans": spans,
                    }
                ],
            }
        ]
    }


def timed(rows: list, repeat: int) -> dict[str, list[float]]:
    """Seconds of each of ``repeat`` calls of each row's function, the rows taking turns so that
    the machine's noise falls on all of them alike."""
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _ in range(repeat):
        for label, function in rows:
            started = time.perf_counter()
            function()
            times[label].append(time.perf_counter() - started)
    return times


JSON, PROTOBUF = otlp.JSON, otlp.PROTOBUF


def reference(body: bytes, media: str) -> None:
    """What the web tier does with a request that does not go the clean way."""
    request = otlp.decode("traces", body, media)
    otlp.validate("traces", request, now_ns=NOW)
    request.SerializeToString()


def with_one_invalid_span(tree: dict) -> dict:
    unclean = copy.deepcopy(tree)
    unclean["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = ""
    return unclean


def run(name: str, tree: dict, repeat: int) -> None:
    body = json.dumps(tree, separators=(",", ":")).encode()
    unclean = json.dumps(with_one_invalid_span(tree), separators=(",", ":")).encode()
    spans = sum(len(s["spans"]) for r in tree["resourceSpans"] for s in r["scopeSpans"])
    pb = otlp.decode("traces", body, JSON).SerializeToString()

    bounds = otlp.time_bounds(NOW)
    if otlp_json.clean_traces(body, bounds) is None:
        raise SystemExit(f"{name}: the clean way does not take the batch")
    if otlp_json.clean_traces(unclean, bounds) is not None:
        raise SystemExit(f"{name}: the clean way takes a batch with an invalid span")
    if list(traces.rows_of_json(otlp_json.decode_traces(body))) != list(
        traces.rows_of_proto(otlp.decode("traces", pb, PROTOBUF))
    ):
        raise SystemExit(f"{name}: the two ways read different rows")
    rows = [
        (
            "accept clean JSON (msgspec decode + check)",
            lambda: otlp_json.clean_traces(body, bounds),
        ),
        (
            "  worker: decode again into span rows",
            lambda: list(traces.rows_of_json(otlp_json.decode_traces(body))),
        ),
        ("accept other JSON (ParseDict + validate)", lambda: reference(unclean, JSON)),
        ("  of which json.loads", lambda: json.loads(unclean)),
        ("accept protobuf (ParseFromString + validate)", lambda: reference(pb, PROTOBUF)),
    ]

    print(
        f"\n{name}: {spans} spans, {len(body) // spans} bytes of JSON and "
        f"{len(pb) // spans} of protobuf a span"
    )
    print(f"  {'':46} {'µs/span best':>12} {'median':>8} {'spans/s':>10}")
    figures = {}
    for label, times in timed(rows, repeat).items():
        best, median = min(times), statistics.median(times)
        figures[label] = best / spans * 1e6
        print(
            f"  {label:46} {best / spans * 1e6:12.2f} {median / spans * 1e6:8.2f} "
            f"{spans / best:10,.0f}"
        )
    clean = figures["accept clean JSON (msgspec decode + check)"]
    other = figures["accept other JSON (ParseDict + validate)"]
    print(
        f"  other JSON costs {other / clean:.0f}x clean JSON; protobuf "
        f"{figures['accept protobuf (ParseFromString + validate)'] / clean:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per figure")
    parser.add_argument("--spans", type=int, default=512, help="spans per batch")
    args = parser.parse_args()
    rng = random.Random(42)
    run("typical", typical_batch(args.spans, rng), args.repeat)
    run("every kind", every_kind_batch(args.spans, rng), args.repeat)


if __name__ == "__main__":
    main()
