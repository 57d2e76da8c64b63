"""What an OTLP request body must be to be acknowledged: gzip checked whole at accept (every
member, each complete), and an empty body only where it means an empty request."""

from __future__ import annotations

import gzip
import json

import pytest

from core import services
from observability import otlp
from observability.models import Span, TelemetryBatch
from tests.helpers import drain_all
from tests.observability.test_ingest import batch, span

pytestmark = pytest.mark.django_db
GZIP = {"Content-Encoding": "gzip"}


@pytest.fixture
def key(tenant):
    return services.issue_api_key(tenant=tenant)


def post(client, key, body: bytes, *, signal="traces", content_type=otlp.JSON, **headers):
    return client.post(
        f"/v1/{signal}",
        data=body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {key}", **headers},
        CONTENT_TYPE=content_type,  # which the test client leaves out for an empty body
    )


def message(response) -> str:
    return response.json()["message"]


def two_spans() -> bytes:
    return batch(span("eee19b7ec3c1b174", "GET /"), span("eee19b7ec3c1b175", "GET /x"))


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda whole: whole[:-8], id="no trailer"),
        pytest.param(lambda whole: whole[:10], id="the header alone"),
        pytest.param(lambda whole: whole[: len(whole) // 2], id="half"),
        pytest.param(lambda whole: whole + gzip.compress(b"{}")[:-4], id="a truncated member"),
    ],
)
def test_it_refuses_a_truncated_gzip_body_and_stores_nothing(client, key, cut):
    response = post(client, key, cut(gzip.compress(two_spans())), **GZIP)

    assert response.status_code == 400
    assert "truncated" in message(response)
    assert not TelemetryBatch.objects.exists()


def test_it_refuses_a_gzip_body_whose_checksum_is_wrong(client, key):
    whole = bytearray(gzip.compress(two_spans()))
    whole[-8] ^= 0xFF  # the trailer's CRC-32

    response = post(client, key, bytes(whole), **GZIP)

    assert response.status_code == 400
    assert "not valid gzip" in message(response)


def test_it_reads_every_member_of_a_json_gzip_body_and_stores_what_it_checked(client, key):
    body = two_spans()
    middle = len(body) // 2
    members = gzip.compress(body[:middle]) + gzip.compress(body[middle:])  # cat a.gz b.gz

    response = post(client, key, members, **GZIP)

    assert response.status_code == 200, response.content
    assert TelemetryBatch.objects.get().body() == body
    drain_all("TraceIngestionWorker")
    assert sorted(Span.objects.values_list("name", flat=True)) == ["GET /", "GET /x"]


def test_it_reads_every_member_of_a_protobuf_gzip_body(client, key):
    first = otlp.decode("traces", batch(span("eee19b7ec3c1b174", "GET /")), otlp.JSON)
    second = otlp.decode("traces", batch(span("eee19b7ec3c1b175", "GET /x")), otlp.JSON)
    # Protobuf messages concatenated are one message: every member's resources count.
    members = gzip.compress(first.SerializeToString()) + gzip.compress(second.SerializeToString())

    response = post(client, key, members, content_type=otlp.PROTOBUF, **GZIP)
    drain_all("TraceIngestionWorker")

    assert response.status_code == 200
    assert sorted(Span.objects.values_list("name", flat=True)) == ["GET /", "GET /x"]


def test_it_stores_a_single_gzip_member_as_it_was_received(client, key):
    received = gzip.compress(two_spans())

    post(client, key, received, **GZIP)

    assert bytes(TelemetryBatch.objects.get().payload) == received


def test_it_stops_a_bomb_spread_over_several_members(client, key, settings):
    settings.OTLP_MAX_BODY_BYTES = 10_000
    member = gzip.compress(b" " * 6_000)  # each under the cap, together over it

    response = post(client, key, member + member, **GZIP)

    assert response.status_code == 413
    assert "after decompression" in message(response)


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_it_refuses_an_empty_json_body_as_not_json(client, key, signal):
    response = post(client, key, b"", signal=signal)
    gzipped = post(client, key, gzip.compress(b""), signal=signal, **GZIP)

    assert response.status_code == gzipped.status_code == 400
    assert "empty" in message(response) and "{}" in message(response)
    assert not TelemetryBatch.objects.exists()


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_it_takes_an_empty_protobuf_body_as_an_empty_request(client, key, signal):
    response = post(client, key, b"", signal=signal, content_type=otlp.PROTOBUF)
    empty_object = post(client, key, json.dumps({}).encode(), signal=signal)

    assert response.status_code == empty_object.status_code == 200
