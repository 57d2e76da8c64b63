"""Trace and span ids as text (core.tracecontext), the one check the envelope, OTLP JSON,
correlation and the API make."""

from __future__ import annotations

import pytest

from core.tracecontext import is_span_id, is_trace_id

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


def test_it_takes_hex_ids_of_the_right_length_in_either_case():
    assert is_trace_id(TRACE) and is_trace_id(TRACE.upper())
    assert is_span_id(SPAN) and is_span_id(SPAN.upper())


def test_it_takes_only_lowercase_ids_where_asked_to():
    assert is_trace_id(TRACE, lowercase=True) and not is_trace_id(TRACE.upper(), lowercase=True)
    assert not is_span_id(SPAN.upper(), lowercase=True)


@pytest.mark.parametrize(
    "value",
    [
        TRACE + "\n",  # re's `$` would match before it
        TRACE[:-1],
        TRACE + "0",
        "0" * 32,  # the invalid id
        TRACE[:-1] + "g",
        TRACE[:-1] + "\x00",
        None,
        int(TRACE, 16),
    ],
)
def test_it_refuses_what_is_not_a_trace_id(value):
    assert not is_trace_id(value)
