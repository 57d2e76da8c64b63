"""The OTLP/HTTP endpoints in the OpenAPI schema (a postprocessing hook: OtlpView is a plain
Django view, which drf-spectacular does not see). What they take and answer is the OTLP
specification's (https://opentelemetry.io/docs/specs/otlp/#otlphttp, the messages of
opentelemetry-proto's collector/<signal>/v1/<signal>_service.proto): the JSON shapes are given
at their top level, which is as far as a request's shape is this platform's to say."""

from __future__ import annotations

from typing import Any

from observability import otlp

Schema = dict[str, Any]

SPEC = "https://opentelemetry.io/docs/specs/otlp/#otlphttp"


# signal: (the request's top-level list, each item's list of scopes, each scope's items, what
# a rejected item is called in partialSuccess, the protobuf package of the service)
SIGNALS: dict[str, tuple[str, str, str, str, str]] = {
    "traces": ("resourceSpans", "scopeSpans", "spans", "rejectedSpans", "trace"),
    "metrics": ("resourceMetrics", "scopeMetrics", "metrics", "rejectedDataPoints", "metrics"),
    "logs": ("resourceLogs", "scopeLogs", "logRecords", "rejectedLogRecords", "logs"),
}
NAMES = {"traces": "Trace", "metrics": "Metrics", "logs": "Logs"}


def otlp_endpoints(result: Schema, **kwargs: Any) -> Schema:
    """Postprocessing hook: POST /v1/traces, /v1/metrics and /v1/logs with their components."""
    components = result["components"].setdefault("schemas", {})
    components["GoogleRpcStatus"] = _status_schema()
    for signal in otlp.SIGNALS:
        name = NAMES[signal]
        components[f"Export{name}ServiceRequest"] = _request_schema(signal)
        components[f"Export{name}ServiceResponse"] = _response_schema(signal)
        result["paths"][f"/v1/{signal}"] = {"post": _operation(signal)}
    return result


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


BINARY = {"schema": {"type": "string", "format": "binary"}}


def _operation(signal: str) -> Schema:
    name = NAMES[signal]
    request, response = f"Export{name}ServiceRequest", f"Export{name}ServiceResponse"
    package = f"opentelemetry.proto.collector.{SIGNALS[signal][4]}.v1"

    def status(description: str, *, retry: bool = False) -> Schema:
        reply: Schema = {
            "description": description
            + " The body is a google.rpc.Status in the request's encoding.",
            "content": {otlp.JSON: {"schema": _ref("GoogleRpcStatus")}, otlp.PROTOBUF: BINARY},
        }
        if retry:
            reply["headers"] = {
                "Retry-After": {
                    "required": True,
                    "description": "Seconds to wait before sending the same request again.",
                    "schema": {"type": "integer"},
                }
            }
        return reply

    return {
        "operationId": f"otlp_{signal}",
        "summary": f"Export {signal} (OTLP/HTTP)",
        "description": (
            f"An OTLP/HTTP {package}.{request} ({SPEC}), as the OpenTelemetry SDKs' and the "
            "Collector's OTLP/HTTP exporters send it: binary protobuf "
            f"(`{otlp.PROTOBUF}`) or its JSON mapping (`{otlp.JSON}`), perhaps gzipped "
            "(`Content-Encoding: gzip`). The reply is in the request's encoding: an "
            f"{response}, whose partialSuccess says how many items were rejected and why "
            "(the rest are stored); a google.rpc.Status for an error. 429 and 503 carry "
            "Retry-After, and an exporter retries the same request after it."
        ),
        "tags": ["otlp"],
        "security": [{"ApiKey": []}],
        "parameters": [
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "description": "gzip, or none (identity). The size limit (OTLP_MAX_BODY_BYTES) "
                "applies after decompression.",
                "schema": {"type": "string", "enum": ["gzip", "identity"]},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {otlp.PROTOBUF: BINARY, otlp.JSON: {"schema": _ref(request)}},
        },
        "responses": {
            "200": {
                "description": "Accepted: everything, or all but what partialSuccess counts.",
                "content": {otlp.JSON: {"schema": _ref(response)}, otlp.PROTOBUF: BINARY},
            },
            "400": status("The body cannot be decoded (not protobuf, not OTLP JSON, not gzip)."),
            "401": status("No API key, or an invalid or revoked one."),
            "413": status("The body is over OTLP_MAX_BODY_BYTES (after decompression)."),
            "415": status(
                f"The Content-Type is neither {otlp.PROTOBUF} nor {otlp.JSON} (the reply is "
                "then JSON), or the Content-Encoding is neither gzip nor identity."
            ),
            "429": status("Over this tenant's requests per second.", retry=True),
            "503": status("Ingestion is too far behind.", retry=True),
        },
    }


def _request_schema(signal: str) -> Schema:
    resources, scopes, items, _, _ = SIGNALS[signal]
    item = {"type": "object", "description": f"See the OTLP specification ({SPEC})."}
    return {
        "type": "object",
        "description": f"The OTLP JSON mapping of an Export{NAMES[signal]}ServiceRequest: by "
        "resource, then by instrumentation scope. Trace and span ids are hex strings, "
        "enums are numbers, 64-bit integers are numbers or decimal strings; unknown fields "
        "are ignored.",
        "properties": {
            resources: {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "resource": {"type": "object", "description": "attributes, ..."},
                        scopes: {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "scope": {"type": "object"},
                                    items: {"type": "array", "items": item},
                                    "schemaUrl": {"type": "string"},
                                },
                            },
                        },
                        "schemaUrl": {"type": "string"},
                    },
                },
            }
        },
    }


def _response_schema(signal: str) -> Schema:
    rejected = SIGNALS[signal][3]
    return {
        "type": "object",
        "description": "Empty ({}) when everything was accepted.",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {
                    rejected: {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "description": "How many were rejected (an int64: a decimal string).",
                    },
                    "errorMessage": {"type": "string", "description": "Why."},
                },
            }
        },
    }


def _status_schema() -> Schema:
    return {
        "type": "object",
        "description": "A google.rpc.Status: the gRPC code of the HTTP status, the message, "
        "and for 400 a google.rpc.BadRequest in details.",
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {"type": "object", "properties": {"@type": {"type": "string"}}},
            },
        },
        "required": ["code", "message"],
    }
