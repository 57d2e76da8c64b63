"""GET /api/schema, the OpenAPI 3 description of every endpoint, and GET /api/docs, its page.

The routes are read from the URLconf itself, so that an endpoint added without a schema fails
here rather than going undocumented; test_api_fuzz.py then holds every reply to the schema.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

from core.openapi import API_KEY

DOCUMENTED = ("api/", "v1/", "metrics")  # the prefixes that make the platform's API
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/schema")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def api_routes() -> dict[str, set[str]]:
    """Each API route of the URLconf, included apps' routes too, as an OpenAPI path
    ("/api/traces/{trace_id}"), with the methods its view answers."""
    routes: dict[str, set[str]] = {}
    for route, pattern in _patterns(get_resolver().url_patterns, ""):
        if not route.startswith(DOCUMENTED):
            continue  # the admin's pages, say
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        view = getattr(pattern.callback, "view_class", None)
        # A plain function view (GET /metrics) answers GET.
        routes[path] = {"get"} if view is None else {m for m in METHODS if hasattr(view, m)}
    return routes


def _patterns(patterns: list[Any], prefix: str) -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _patterns(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            found.append((route, pattern))
    return found


def test_it_describes_every_route_of_the_api_and_every_method_it_answers(schema):
    routes = api_routes()
    assert "/v1/traces" in routes and "/metrics" in routes  # the reading itself works

    missing = {
        f"{method.upper()} {path}"
        for path, methods in routes.items()
        for method in methods
        if method not in schema["paths"].get(path, {})
    }

    assert not missing, f"routes missing from the OpenAPI schema: {sorted(missing)}"


def test_it_describes_no_route_that_does_not_exist(schema):
    assert set(schema["paths"]) <= set(api_routes())


def test_it_serves_a_valid_openapi_3_document(schema):
    validate_schema(schema)  # drf-spectacular's own check against the OpenAPI 3 JSON schema

    assert schema["openapi"].startswith("3.")


def test_it_describes_otlp_in_both_its_encodings_with_the_replies_an_exporter_acts_on(schema):
    for signal in ("traces", "metrics", "logs"):
        operation = schema["paths"][f"/v1/{signal}"]["post"]

        assert set(operation["requestBody"]["content"]) == {
            "application/json",
            "application/x-protobuf",
        }
        # 429 and 503 tell an exporter to retry; 400 and 413 that the request is refused.
        assert {"200", "400", "413", "429", "503"} <= set(operation["responses"])


def test_it_documents_the_error_body_of_every_refusal(schema):
    undocumented = [
        f"{method.upper()} {path} {status}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
        for status, reply in operation["responses"].items()
        if status.startswith("4") and not reply.get("content")
    ]

    assert not undocumented, undocumented


def test_it_requires_the_api_key_on_tenant_endpoints_and_not_on_the_open_ones(schema):
    assert schema["components"]["securitySchemes"][API_KEY]["scheme"] == "bearer"
    traces = schema["paths"]["/api/traces"]["get"]
    health = schema["paths"]["/api/health/workers"]["get"]

    assert {API_KEY: []} in traces["security"]
    assert API_KEY not in str(health.get("security", []))


def test_it_offers_the_schema_in_yaml_too(client):
    response = client.get("/api/schema?format=yaml")

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_it_serves_the_docs_page_from_its_own_static_files(client):
    response = client.get("/api/docs")

    page = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert response.status_code == 200 and "/api/schema" in page
    assert assets and all(a.startswith("/static/") for a in assets), assets  # no CDN
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset


def test_it_generates_the_schema_without_a_warning() -> None:
    """Warnings (enum names that collide across apps, components named alike) mean a schema
    that names things by accident: `manage.py spectacular --fail-on-warn` refuses it too."""
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()

    SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache) | dict(
        GENERATOR_STATS._error_cache
    )
