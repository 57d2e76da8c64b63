"""Content hashes are stored: the canonical JSON under them must stay the bytes json.dumps
wrote when they were taken, whatever encoder writes them now, or every stored record would
look changed at the next run."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.connections.providers.base import canonical_json, content_hash, without


def reference(data: Any) -> bytes:
    """How the hashes were first taken."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def reference_without(data: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The ignored fields' first implementation."""
    if not paths:
        return data
    grouped: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        grouped.setdefault(head, []).append(rest)
    out = {}
    for key, value in data.items():
        rests = grouped.get(key)
        if rests is None:
            out[key] = value
        elif "" in rests:
            continue
        elif isinstance(value, dict):
            out[key] = reference_without(value, tuple(rests))
        else:
            out[key] = value
    return out


# Text as vendors send it: any Unicode scalar (control characters, quotes, backslashes,
# U+2028, astral characters), no lone surrogates (json.loads of UTF-8 never makes one).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
KEYS = st.one_of(st.sampled_from(["a", "b", "id", "é", "Z", "score", "repo", ""]), TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1e-5, 1e-7, 1e22, -0.0, 0.1, 5e-324, 1.7976931348623157e308]),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30,
)
PATHS = st.lists(
    st.sampled_from(["a", "b", "score", "repo.a", "repo.b.a", "a.b", "repo", "é.a", "x.y.z"]),
    max_size=4,
).map(tuple)


@settings(max_examples=600, deadline=None)
@given(JSON)
def test_it_writes_canonical_json_byte_for_byte_as_json_dumps_did(data):
    assert canonical_json(data) == reference(data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=8), PATHS)
def test_it_drops_ignored_fields_as_before(data, paths):
    assert without(data, paths) == reference_without(data, paths)
    assert content_hash(data, ignored=paths) == content_hash(reference_without(data, paths))


def test_it_writes_floats_as_json_dumps_does_not_as_msgspec_would():
    # msgspec writes 1e16 and 0.00001: stored hashes were taken over 1e+16 and 1e-05.
    assert canonical_json({"a": 1e16, "b": [1e-05, 2.5]}) == b'{"a":1e+16,"b":[1e-05,2.5]}'
    assert canonical_json({"n": 2**70, "t": "é\u2028\n"}) == reference(
        {"n": 2**70, "t": "é\u2028\n"}
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_it_refuses_what_json_cannot_express_as_before(value):
    with pytest.raises(ValueError):
        canonical_json({"a": [1, {"b": value}]})


def test_it_keeps_the_hashes_already_stored():
    # Taken with the first implementation: a change of bytes would show here.
    record = {
        "id": 1,
        "title": 'Café ☕ "quoted"\n\ttab',
        "labels": [{"name": "bug"}],
        "score": 1.5,
        "big": 2**70,
        "none": None,
        "ok": True,
        "reactions": {"+1": 3},
        "emoji": "\U0001f600",
        "ratio": 1e-05,
    }
    plain = {
        "id": 1,
        "title": "Café ☕",
        "labels": [{"name": "bug"}],
        "user": {"login": "octocat", "id": 1},
        "closed_at": None,
        "reactions": {"+1": 3},
    }
    ignored = ("reactions", "score")
    assert content_hash(record, ignored=ignored) == (
        "a6ce4b611edc269820a2261e6cdb253db130c77155460f50bd5f1a4833825dcd"
    )
    assert content_hash(plain, ignored=ignored) == (
        "604fe4152d4db231fb3fbea79ae671f789f29115359853067a2face4800979fa"
    )
