"""Every reply under /api and /v1 is the API's: JSON {"error": ...} under /api, and under /v1
a google.rpc.Status in the request's OTLP encoding (JSON when its Content-Type names neither),
whatever answered: a view, Django's URL resolver, a plain view's method or CSRF check, the Host
check, the query parser, a crash. Outside them (the admin) Django's pages stay HTML."""

from __future__ import annotations

import pytest
from django.test import Client
from google.rpc import status_pb2

from core import services
from observability import otlp

pytestmark = pytest.mark.django_db
PROTOBUF, JSON = otlp.PROTOBUF, otlp.JSON


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant)


@pytest.fixture
def failing_views(settings, client):
    """The platform with views that fail (tests/core/replies_urls.py), and a client that gets
    the 500 a real one would instead of the exception."""
    settings.ROOT_URLCONF = "tests.core.replies_urls"
    client.raise_request_exception = False
    return client


def error(response) -> str:
    """The error of an /api reply, which must be JSON."""
    assert response["Content-Type"] == JSON, response.content
    return response.json()["error"]


def status(response) -> status_pb2.Status:
    """The google.rpc.Status of a /v1 reply, in the encoding it names."""
    if response["Content-Type"] == PROTOBUF:
        return status_pb2.Status.FromString(response.content)
    assert response["Content-Type"] == JSON, response.content
    body = response.json()
    return status_pb2.Status(code=body["code"], message=body["message"])


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/api/nope", "No such API endpoint: /api/nope."),
        ("/api", "No such API endpoint: /api."),
        ("/api/", "No such API endpoint: /api/."),
        ("/api/traces/", "Did you mean /api/traces (no trailing slash)?"),
        ("/api/health/workers/", "Did you mean /api/health/workers (no trailing slash)?"),
    ],
)
def test_it_answers_an_unknown_api_path_with_json(client, key, path, says):
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 404
    assert says in error(response)


@pytest.mark.parametrize("media", [JSON, PROTOBUF])
def test_it_answers_an_unknown_otlp_path_in_the_requests_encoding(client, media):
    response = client.post("/v1/traces/", data=b"x", content_type=media)

    assert (response.status_code, response["Content-Type"]) == (404, media)
    assert "Did you mean /v1/traces (no trailing slash)?" in status(response).message


def test_it_answers_otlp_in_json_when_the_request_names_no_otlp_encoding(client):
    response = client.post("/v1/nope", data=b"x", content_type="text/plain")

    assert (response.status_code, response["Content-Type"]) == (404, JSON)
    assert status(response).message == "No such API endpoint: /v1/nope."


@pytest.mark.parametrize("method", ["get", "put", "delete", "options"])
def test_it_answers_a_method_otlp_does_not_take_with_what_it_does(client, method):
    response = getattr(client, method)("/v1/traces")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    message = status(response).message
    assert message == f"{method.upper()} is not allowed on /v1/traces; allowed: POST."


def test_it_answers_head_on_otlp_with_a_json_405(client):
    response = client.head("/v1/metrics")

    assert (response.status_code, response["Content-Type"]) == (405, JSON)


def test_it_answers_a_method_the_api_does_not_take_in_json(client, key):
    auth = {"Authorization": f"Bearer {key}"}

    deleted = client.delete("/api/traces", headers=auth)
    put = client.put("/api/events", headers=auth)

    assert (deleted.status_code, put.status_code) == (405, 405)
    assert 'Method "DELETE" not allowed' in error(deleted)
    assert 'Method "PUT" not allowed' in error(put)


def test_it_answers_head_and_options_on_the_api_in_json(client, key):
    auth = {"Authorization": f"Bearer {key}"}

    head = client.head("/api/traces", headers=auth)
    options = client.options("/api/traces", headers=auth)

    assert (head.status_code, head["Content-Type"]) == (200, JSON)
    assert options.status_code == 200 and options.json()["name"] == "Trace List"


def test_it_answers_a_host_it_does_not_serve_in_json(client, key):
    api = client.get("/api/traces", headers={"Authorization": f"Bearer {key}"}, HTTP_HOST="evil")
    ingest = client.post("/v1/logs", data=b"x", content_type=PROTOBUF, HTTP_HOST="evil")

    assert (api.status_code, ingest.status_code) == (400, 400)
    assert error(api) == "The Host header names a host this server does not answer for."
    assert ingest["Content-Type"] == PROTOBUF
    assert status(ingest).message == error(api)


def test_it_answers_too_many_query_fields_in_json(client, key):
    fields = "&".join(f"f{i}=1" for i in range(1001))

    response = client.get(f"/api/traces?{fields}", headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 400
    assert error(response) == "More than 1000 query or form fields."


def test_it_answers_a_crash_in_json_with_the_trace_to_look_for(failing_views):
    response = failing_views.get("/api/test/crash")

    assert response.status_code == 500
    assert error(response).startswith("Internal server error: the platform logged it (trace_id ")


def test_it_answers_a_crash_under_otlp_in_the_requests_encoding(failing_views):
    response = failing_views.post("/v1/test/crash", data=b"x", content_type=PROTOBUF)

    assert (response.status_code, response["Content-Type"]) == (500, PROTOBUF)
    assert status(response).message.startswith("Internal server error")


def test_it_answers_a_body_over_djangos_limit_with_413_in_the_requests_encoding(
    failing_views, settings
):
    # Django refuses it with a 400 (RequestDataTooBig is a SuspiciousOperation).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10

    response = failing_views.post("/v1/test/body", data=b"x" * 11, content_type=PROTOBUF)

    assert (response.status_code, response["Content-Type"]) == (413, PROTOBUF)
    assert status(response).message == "The body is over the limit of 10 bytes."


def test_it_answers_a_csrf_refusal_under_the_api_in_json(failing_views):
    # No API view asks for a CSRF token (DRF's views and OtlpView are exempt); a plain view
    # would, and Django's refusal is an HTML page.
    strict = Client(enforce_csrf_checks=True)

    response = strict.post("/api/test/form", data={"a": "1"})

    assert response.status_code == 403
    assert error(response) == "403 Forbidden."


def test_it_never_asks_an_api_client_for_a_csrf_token(key):
    strict = Client(enforce_csrf_checks=True)
    strict.cookies["csrftoken"] = "x" * 32  # as a browser that visited the admin would send

    published = strict.post(
        "/api/events",
        data={"type": "DeploymentPromoted"},
        content_type=JSON,
        headers={"Authorization": f"Bearer {key}"},
    )
    exported = strict.post(
        "/v1/traces", data=b"{}", content_type=JSON, headers={"Authorization": f"Bearer {key}"}
    )

    assert (published.status_code, exported.status_code) == (202, 200)


def test_it_leaves_the_admins_pages_html(client):
    response = client.get("/nope")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
