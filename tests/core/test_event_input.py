"""POST /api/events: what an outside client may send, and what it is told when it may not.

Whatever is acknowledged (202) is stored as it was sent and handled; anything else is a 4xx
whose {"error": ...} names what was wrong and where, and stores nothing. The bodies are raw
text (tests/core/eventbodies.py)."""

from __future__ import annotations

import json

import pytest

from core import services
from core.models import DeadLetter, Event, EventRate, Message
from core.runtime import dispatch
from tests.core.eventbodies import post_raw, said, same_json, with_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant)


def nested(depth: int) -> str:
    """`data` whose innermost object is `depth` levels down (data itself is level 1)."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def refusal(response) -> str:
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


# Unstorable values: each answered 500 before (PostgreSQL refused a NUL; a surrogate has no
# UTF-8; infinity has no JSON; 5,000 levels crashed the decoder), now a 400 naming where.
UNSTORABLE = {
    "NUL in a value": (with_data('{"a": "x\\u0000y"}'), "data.a contains a NUL character"),
    "NUL in a key": (with_data('{"a\\u0000": 1}'), 'The key data["a\\u0000"] contains a NUL'),
    "NUL deep in a list": (
        with_data('{"build": {"steps": ["ok", "\\u0000"]}}'),
        "data.build.steps[1] contains a NUL character",
    ),
    "lone high surrogate": (with_data('{"a": "\\ud800"}'), "data.a contains a lone surrogate"),
    "lone low surrogate in a key": (
        with_data('{"\\udfff": 1}'),
        'The key data["\\udfff"] contains a lone surrogate',
    ),
    "number too large for a float": (with_data('{"a": 1e999}'), "data.a is not a finite number"),
    "negative one": (with_data('{"a": [-1e999]}'), "data.a[0] is not a finite number"),
    "NaN literal": (with_data('{"a": NaN}'), "NaN is not a JSON value"),
    "Infinity literal": (with_data('{"a": -Infinity}'), "-Infinity is not a JSON value"),
    "5,000 levels": (with_data("[" * 5000 + "]" * 5000), "nested too deeply"),
    "one level over the limit": (
        with_data(nested(33)),
        "data" + ".a" * 32 + " is nested deeper than the limit of 32 levels",
    ),
    "NUL in source": (with_data("{}", source='"ci\\u0000"'), "Null characters are not allowed"),
    "surrogate in sourceId": (with_data("{}", sourceId='"\\ud800"'), "Surrogate characters"),
    "NUL in correlationId": (with_data("{}", correlationId='"\\u0000"'), "Null characters"),
    "NUL in type": ('{"type": "Deployment\\u0000Promoted"}', "Null characters are not allowed"),
    "an occurredAt out of range": (
        with_data("{}", occurredAt='"9999-12-31T23:59:59-14:00"'),
        "Datetime value out of range",
    ),
}


@pytest.mark.parametrize(("body", "named"), UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_it_refuses_what_it_could_not_store_and_says_where(client, key, body, named):
    response = post_raw(client, key, body)

    assert response.status_code == 400
    assert named in said(response), said(response)
    assert not Event.objects.exists()


BODIES = {
    "a list": ("[1, 2]", "Expected a dictionary, but got list"),
    "a string": ('"DeploymentPromoted"', "Expected a dictionary, but got str"),
    "null": ("null", "No data provided"),
    "data a list": (with_data("[1]"), 'Expected a dictionary of items but got type "list"'),
    "a type that is a number": ('{"type": 7}', "'7' is an unknown event type"),
    "not JSON": ("{not json", "The body is not valid JSON"),
    "a number of 5,000 digits": (with_data('{"a": ' + "9" * 5000 + "}"), "Exceeds the limit"),
    "not UTF-8": (b'{"type": "Deploy\xffPromoted"}', "The body is not UTF-8 (byte 16 is 0xff)"),
    "UTF-16": ('{"type": "DeploymentPromoted"}'.encode("utf-16"), "The body is not UTF-8"),
}


@pytest.mark.parametrize(("body", "named"), BODIES.values(), ids=BODIES.keys())
def test_it_refuses_a_body_that_is_not_an_event_and_says_why(client, key, body, named):
    response = post_raw(client, key, body)

    assert response.status_code == 400
    assert named in said(response), said(response)
    assert not Event.objects.exists()


def test_it_reads_the_body_as_utf8_whatever_charset_the_client_names(client, key):
    # RFC 8259: JSON is UTF-8. An unknown charset used to reach a codec lookup (500).
    body = with_data('{"who": "Zoë"}')

    response = post_raw(client, key, body, content_type="application/json; charset=nope")

    assert response.status_code == 202
    assert Event.objects.get().data == {"who": "Zoë"}


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x"])
def test_it_takes_json_only(client, key, content_type):
    response = post_raw(client, key, '{"type": "DeploymentPromoted"}', content_type=content_type)

    assert response.status_code == 415
    assert "Unsupported media type" in refusal(response)


# Bounds


def test_it_refuses_data_over_its_size_limit_with_413(client, key, settings):
    settings.EVENT_DATA_MAX_BYTES = 100

    response = post_raw(client, key, with_data(json.dumps({"log": "x" * 100})))

    assert response.status_code == 413
    assert refusal(response) == "data is 110 bytes as JSON, over the limit of 100 bytes."
    assert not Event.objects.exists()


def test_it_measures_data_as_sent_however_the_client_escaped_it(client, key, settings):
    # 100 bytes of data as UTF-8, 281 as the client escaped it: the data's size is the first.
    settings.EVENT_DATA_MAX_BYTES = 100
    data = {"log": "é" * 45}  # 2 bytes each in UTF-8, 6 as \u00e9
    assert len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()) == 100

    response = post_raw(client, key, with_data(json.dumps(data, ensure_ascii=True)))

    assert response.status_code == 202
    assert Event.objects.get().data == data


def test_it_takes_data_at_its_limits(client, key, settings):
    deep = post_raw(client, key, with_data(nested(32)))
    settings.EVENT_DATA_MAX_BYTES = 100
    at_size = {"log": "x" * 90}
    assert len(json.dumps(at_size, separators=(",", ":"))) == 100
    large = post_raw(client, key, with_data(json.dumps(at_size)))

    assert (deep.status_code, large.status_code) == (202, 202)
    assert Event.objects.get(id=large.json()["eventId"]).data == at_size


def test_it_refuses_a_body_over_the_apis_limit_without_reading_it(client, key, settings):
    settings.API_MAX_BODY_BYTES = 1000
    # The Content-Length announces more than the body holds: were it read, the test client's
    # input would fail; it is refused on what it announces.
    response = post_raw(client, key, with_data("{}"), CONTENT_LENGTH="1001")

    assert response.status_code == 413
    assert refusal(response) == "The body is over the limit of 1000 bytes."


def test_it_refuses_a_body_over_the_apis_limit_as_it_reads_it(client, key, settings):
    settings.API_MAX_BODY_BYTES = 1000

    response = post_raw(client, key, with_data(json.dumps({"a": "x" * 1000})))

    assert response.status_code == 413
    assert not Event.objects.exists()


# What it takes, it stores as sent and its subscriber handles

ODD_BUT_FINE = {
    "emoji": "\U0001f680 launch",  # sent as the surrogate pair \ud83d\ude80
    "": "an empty key",
    "big": 2**80,
    "negative": -(2**63) - 1,
    "max": 1.7976931348623157e308,  # back from jsonb as an integer of 309 digits
    "tiny": 5e-324,
    "list": [None, True, False, 0, -0.5, "", [], {}],
    "control": "tab\there, newline\nthere, \u001f",
    "bidi": "\u202eevil",
}


def test_it_stores_and_hands_over_odd_but_valid_data_as_sent(client, key, make_worker):
    seen = []
    make_worker(handler=lambda envelope: seen.append(envelope.data))

    response = post_raw(client, key, with_data(json.dumps(ODD_BUT_FINE)))
    dispatch.drain("TestWorker")

    assert response.status_code == 202
    assert same_json(Event.objects.get().data, ODD_BUT_FINE)
    assert len(seen) == 1 and same_json(seen[0], ODD_BUT_FINE)
    assert Message.objects.get(worker="TestWorker").state == "done"
    assert not DeadLetter.objects.exists()


# Rate


def test_it_limits_each_tenants_events_per_second_with_retry_after(client, key, settings):
    settings.EVENT_TENANT_REQUESTS_PER_SECOND = 1
    # Three requests span at most two one-second windows: one of them is over the rate.
    responses = [post_raw(client, key, with_data("{}")) for _ in range(3)]

    refused = [r for r in responses if r.status_code == 429]
    assert refused and refused[0]["Retry-After"] == "1"
    assert "Over 1 events per second for this tenant" in refusal(refused[0])
    assert Event.objects.count() == 3 - len(refused)


def test_it_does_not_hold_back_a_tenant_for_anothers_rate(client, key, other_tenant, settings):
    settings.EVENT_TENANT_REQUESTS_PER_SECOND = 1
    for _ in range(3):
        post_raw(client, key, with_data("{}"))

    theirs = post_raw(client, services.issue_api_key(tenant=other_tenant), with_data("{}"))

    assert theirs.status_code == 202


def test_it_counts_nothing_when_the_rate_is_unlimited(client, key, settings):
    settings.EVENT_TENANT_REQUESTS_PER_SECOND = 0

    responses = [post_raw(client, key, with_data("{}")) for _ in range(5)]

    assert {r.status_code for r in responses} == {202}
    assert not EventRate.objects.exists()
