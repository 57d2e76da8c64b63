"""Reading a vendor's reply as JSON: msgspec where it can, json.loads's answer always."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.connections.providers.base import json_body

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(data=JSON)
def test_it_reads_what_json_loads_reads(data: object) -> None:
    body = json.dumps(data).encode()
    assert json_body(body) == json.loads(body)


def test_it_reads_what_only_json_loads_takes_as_json_loads_does() -> None:
    assert json_body(b"[1e400]") == [math.inf]
    assert json_body(b'"\\ud800"') == "\ud800"
    assert json_body('{"a": 1}'.encode("utf-16")) == {"a": 1}
    assert json_body(b"") is None


def test_it_refuses_a_reply_that_is_not_json() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        json_body(b"<html>")
