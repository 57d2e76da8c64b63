"""A fuzz of POST /api/events: random and adversarial bodies (NUL, lone surrogates, numbers too
large for a float, deep nesting, long strings, wrong types, bodies that are not objects, not
JSON, not UTF-8, cut short or corrupted). For every one, either a 4xx whose JSON body says
what was wrong and after which nothing is stored, or a 202 after which the event is stored as
sent and every worker it went to handles it without a dead letter. Never a 5xx.

Derandomized: the same examples on every run, so that CI is stable. EVENTS_FUZZ_EXAMPLES
sets how many (e.g. EVENTS_FUZZ_EXAMPLES=5000 for a long run)."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import events, services
from core.models import DeadLetter, Event, Message
from tests.core.eventbodies import post_raw, same_json
from tests.helpers import drain_all

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("EVENTS_FUZZ_EXAMPLES", "300"))
# Small limits, so that the fuzz crosses them often; the tests of the limits use the defaults.
DATA_LIMIT, BODY_LIMIT, DEPTH_LIMIT = 2048, 16384, 32


class Raw(str):
    """JSON text put in a body as it is: a number Python would not write (1e999, 5,000
    digits), an escape it would write differently."""


RAW_NUMBERS = [
    "1e999", "-1e999", "1e-999", "1E+2", "-0", "0.0e0", "1.7976931348623157e308",
    "1.7976931348623159e308", "4.9e-324", "9" * 400, "-" + "9" * 4301, "123456789012345678901",
]  # fmt: skip
NASTY_TEXT = [
    "\x00", "a\x00b", "\ud800", "\udfff", "x\udbff", "\ud83d\ude80", "é", "\u202e", "\ufeff",
    "", " ", "\n", "a" * 32 + "\n", "0" * 32, "A" * 32, "\\u0000", '"', "</script>",
]  # fmt: skip
TIMES = [
    "2026-01-31T12:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "yesterday", "", "2026-02-30",
]  # fmt: skip

text = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(NASTY_TEXT),
    st.integers(0, 3000).map(lambda n: "x" * n),
)
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(RAW_NUMBERS).map(Raw),
    text,
)
value = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(text, st.sampled_from(["traceId", "traceIds"])), children, max_size=4
        ),
    ),
    max_leaves=20,
)
times = st.one_of(st.sampled_from(TIMES), st.datetimes().map(str), value)
# Storable values too, so that a good share of the bodies are accepted and followed through.
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
clean_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        clean_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(clean_text, children, max_size=4)
    ),
    max_leaves=20,
)  # fmt: skip
# One odd thing somewhere in otherwise storable data: a value, a key, deep down in a list.
odd_leaf = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.sampled_from(RAW_NUMBERS).map(Raw),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f)),
    st.integers(min_value=-(2**200), max_value=2**200),
)
odd_thing = st.one_of(
    odd_leaf,
    odd_leaf.map(lambda leaf: [0, [leaf]]),
    st.sampled_from(NASTY_TEXT).map(lambda key: {key: 1}),
)
odd_data = st.builds(
    lambda clean, key, odd: {**clean, key: odd},
    st.dictionaries(clean_text, clean_value, max_size=4),
    st.one_of(clean_text, st.sampled_from(["traceId", "traceIds"])),
    odd_thing,
)
data = st.one_of(
    odd_data,
    st.dictionaries(text, value, max_size=6),
    st.fixed_dictionaries({"traceId": text, "traceIds": st.lists(text, max_size=3)}),
    value,
)
factory_type = st.sampled_from(events.factory_types())
event_type = st.one_of(
    factory_type,
    factory_type.map(lambda name: f" {name}\n"),
    st.sampled_from(sorted(events.catalog())),
    text,
    value,
)


def encode(item, *, ascii_only: bool) -> str:
    """`item` as JSON text; Raw as it is; NaN and Infinity as Python writes them."""
    if isinstance(item, Raw):
        return str(item)
    if isinstance(item, dict):
        members = (
            f"{encode(k, ascii_only=ascii_only)}:{encode(v, ascii_only=ascii_only)}"
            for k, v in item.items()
        )
        return "{" + ",".join(members) + "}"
    if isinstance(item, list):
        return "[" + ",".join(encode(v, ascii_only=ascii_only) for v in item) + "]"
    return json.dumps(item, ensure_ascii=ascii_only)


@st.composite
def event_bodies(draw) -> bytes:
    """An event, well-formed (storable data, string fields, a good time), well-formed but for
    its data, or with anything in its fields."""
    form = draw(st.sampled_from(["well-formed", "odd data", "anything"]))
    envelope_ok = form != "anything"
    fields = clean_text if envelope_ok else st.one_of(text, value)
    body = {"type": draw(factory_type if envelope_ok else event_type)}
    if form == "odd data" or draw(st.booleans()):
        body["data"] = draw(
            st.dictionaries(clean_text, clean_value) if form == "well-formed" else data
        )
    for field in ("source", "sourceId", "correlationId"):
        if draw(st.integers(0, 3)) == 0:
            body[field] = draw(fields)
    if draw(st.integers(0, 3)) == 0:
        body["occurredAt"] = draw(st.sampled_from(TIMES[:3]) if envelope_ok else times)
    if draw(st.integers(0, 5)) == 0:
        body[draw(text)] = draw(value)  # a field the API does not know
    # Escaped (\ud800, \u0000) or as UTF-8; a lone surrogate then makes invalid UTF-8.
    raw = encode(body, ascii_only=draw(st.booleans()))
    return raw.encode("utf-8", "surrogatepass")


@st.composite
def deep_bodies(draw) -> bytes:
    depth = draw(st.one_of(st.integers(1, 40), st.integers(40, 6000)))
    opening, inner, closing = draw(st.sampled_from([("[", "0", "]"), ('{"a":', "{}", "}")]))
    nested = opening * depth + inner + closing * depth
    return f'{{"type":"DeploymentPromoted","data":{{"x":{nested}}}}}'.encode()


@st.composite
def damaged_bodies(draw) -> bytes:
    body = draw(event_bodies())
    cut = draw(st.integers(0, len(body)))
    damage = draw(st.sampled_from(["cut", "flip", "append"]))
    if damage == "cut":
        return body[:cut]
    if damage == "flip" and body:
        i = min(cut, len(body) - 1)
        return body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    return body + draw(st.binary(max_size=8))


def encoded_otherwise(raw: bytes, codec: str) -> bytes:
    try:
        return raw.decode("utf-8").encode(codec)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return raw


@st.composite
def other_bodies(draw) -> bytes:
    """Anything but an event: a composite, so that one_of does not flatten it into the events'
    share (one_of weighs each strategy it holds, flattened, alike)."""
    return draw(
        st.one_of(
            value.map(lambda v: encode(v, ascii_only=True).encode()),  # not an object
            deep_bodies(),
            damaged_bodies(),
            st.binary(max_size=64),
            st.builds(encoded_otherwise, event_bodies(), st.sampled_from(["utf-16", "utf-32"])),
            st.builds(lambda b: b"\xef\xbb\xbf" + b, event_bodies()),  # a UTF-8 BOM
            st.integers(0, 3 * BODY_LIMIT).map(
                lambda n: f'{{"type":"BuildCompleted","data":{{"log":"{"x" * n}"}}}}'.encode()
            ),
        )
    )


bodies = st.one_of(event_bodies(), other_bodies())  # half of them events
content_types = st.sampled_from(
    ["application/json"] * 12
    + [
        "application/json; charset=utf-8",
        "application/json; charset=nope",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ]
)


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant)


@pytest.fixture
def limits(settings):
    settings.EVENT_DATA_MAX_BYTES = DATA_LIMIT
    settings.API_MAX_BODY_BYTES = BODY_LIMIT
    settings.EVENT_DATA_MAX_DEPTH = DEPTH_LIMIT
    settings.EVENT_TENANT_REQUESTS_PER_SECOND = 0  # its own test: here every body is parsed


@pytest.fixture
def handled(make_worker) -> dict:
    """The data a subscriber of every factory event was handed, by eventId."""
    seen = {}
    make_worker(
        "FuzzWorker",
        handler=lambda envelope: seen.update({envelope.event_id: envelope.data}),
        events=events.factory_types(),
    )
    return seen


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one client, key and worker for all examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(body=bodies, content_type=content_types)
def test_it_stores_and_handles_what_it_accepts_and_says_why_it_refuses_the_rest(
    client, key, limits, handled, body, content_type
):
    before = Event.objects.count()

    response = post_raw(client, key, body, content_type=content_type)
    event(f"answered {response.status_code}")  # pytest --hypothesis-show-statistics

    assert response.status_code < 500, (body[:300], response.content[:300])
    if response.status_code != 202:
        assert 400 <= response.status_code < 500, response.status_code
        assert response["Content-Type"] == "application/json"
        assert isinstance(response.json()["error"], str) and response.json()["error"]
        assert Event.objects.count() == before
        return
    sent = json.loads(body.decode("utf-8"))
    stored = Event.objects.get(id=response.json()["eventId"])
    assert stored.type == sent["type"].strip()  # DRF trims a CharField
    assert same_json(stored.data, sent.get("data", {}))
    workers = set(Message.objects.filter(event=stored).values_list("worker", flat=True))
    assert "FuzzWorker" in workers
    for worker in workers:
        drain_all(worker)
    done = Message.objects.filter(event=stored, state="done").values_list("worker", flat=True)
    assert set(done) == workers
    assert not DeadLetter.objects.filter(message__event=stored).exists()
    assert same_json(handled[stored.id], sent.get("data", {}))
