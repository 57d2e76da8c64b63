"""The API's OpenAPI 3 description (drf-spectacular): what every view's annotation shares (the
Bearer API key, the error body and the statuses that answer with it), and GET /metrics, a
plain Django view that drf-spectacular cannot see. The schema and its docs page are served by
core.api's SchemaView and DocsView.

Its own module, importing no view: DRF imports DEFAULT_SCHEMA_CLASS (ApiSchema) while the
first `extend_schema` decorator runs.

The REST views are described from their input and output serializers and their `extend_schema`
annotations; a plain view is described by a postprocessing hook of the app that owns it
(SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: `metrics_endpoint` here, OTLP's in
observability.openapi). tests/core/test_schema.py fails when a route is missing from the
schema, and tests/core/test_api_fuzz.py checks every reply against it.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import Direction, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core import prometheus

Schema = dict[str, Any]  # an OpenAPI object, as JSON

API_KEY = "ApiKey"  # the security scheme's name


class ApiSchema(AutoSchema):
    """drf-spectacular's AutoSchema, naming components after what they are: TraceOutput's
    is Trace (and its page's PaginatedTraceList)."""

    def get_serializer_name(
        self, serializer: serializers.Serializer[Any], direction: Direction
    ) -> str:
        name: str = super().get_serializer_name(serializer, direction)
        return name.removesuffix("Output")


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """core.auth.ApiKeyAuthentication as an OpenAPI security scheme: HTTP Bearer."""

    target_class = "core.auth.ApiKeyAuthentication"
    name = API_KEY

    def get_security_definition(self, auto_schema: AutoSchema) -> Schema:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "pk_<lookup>_<secret>",
            "description": (
                "A tenant's API key: `Authorization: Bearer <API key>`. Create one with "
                "`manage.py create_api_key --tenant <slug>` or in the admin."
            ),
        }


class Error(serializers.Serializer[Any]):
    """Every error under /api (core.api.exception_handler, core.middleware)."""

    error = serializers.CharField(help_text="What went wrong, and what to do about it.")
    details = serializers.JSONField(
        required=False,
        help_text="For an invalid request: what is wrong with each field, by field name.",
    )


# What each error status means wherever it is answered; a view adds its own words in its
# docstring. 400 ... 415 are the client's to fix, 429 and 503 to retry after Retry-After.
ERRORS = {
    400: "The request is invalid (a field, a query parameter, a cursor, malformed JSON): "
    "`error` says what, `details` says which field.",
    401: "No API key, or an invalid or revoked one.",
    404: "No such object for this tenant.",
    409: "The object is not in a state that allows this.",
    413: "The body is over the limit (API_MAX_BODY_BYTES, 1 MiB by default).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    429: "Over this tenant's rate: retry after `Retry-After` seconds.",
    503: "Unavailable for now: retry after `Retry-After` seconds.",
}

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    description="Seconds to wait before retrying.",
    response=[429, 503],
    required=True,
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error replies `codes` as an `extend_schema(responses=...)` entry: each the Error body
    with what the status means. With 429 or 503, add RETRY_AFTER to the parameters."""
    return {code: OpenApiResponse(Error, description=ERRORS[code]) for code in codes}


def metrics_endpoint(result: Schema, **kwargs: Any) -> Schema:
    """Postprocessing hook: GET /metrics (core.prometheus), behind its own bearer token."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    exposition = prometheus.CONTENT_TYPE.removesuffix("; charset=utf-8")
    result["paths"]["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "The platform's metrics in the Prometheus text format",
            "description": (
                "Per worker backlog, in-flight, dead letters and oldest due age; ingestion "
                "counters; webhook delivery outcomes. Computed from the database at each "
                "scrape, so every web process answers the same. Off (404) unless "
                "METRICS_BEARER_TOKEN is set; then a scrape sends it as a Bearer token."
            ),
            "tags": ["prometheus"],
            "security": [{"MetricsToken": []}],
            "responses": {
                "200": {
                    "description": "The exposition format, version 0.0.4.",
                    "content": {exposition: {"schema": {"type": "string"}}},
                },
                "401": {
                    "description": "No token, or not METRICS_BEARER_TOKEN.",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": text,
                },
                "404": {"description": "METRICS_BEARER_TOKEN is not set.", "content": text},
            },
        }
    }
    result["components"].setdefault("securitySchemes", {})["MetricsToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The value of the METRICS_BEARER_TOKEN setting (not an API key).",
    }
    return result
