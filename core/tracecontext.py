"""Trace and span ids as text, the one check of them: the envelope's traceId and spanId, the
ids of OTLP JSON spans, the trace ids events name, and the API's /api/traces/<traceId>.

W3C Trace Context: a trace id is 16 bytes, a span id 8, written as 32 and 16 hex digits, and
neither is all zero (the invalid id). OTLP JSON takes the digits in either case; the envelope
carries them in lowercase, as a traceparent header does.
"""

from __future__ import annotations

import re

_HEX = re.compile("[0-9a-fA-F]*")


def is_hex_id(value: object, digits: int, *, lowercase: bool = False) -> bool:
    """`digits` hex digits, not all zero (lowercase ones only, if `lowercase`). fullmatch, not
    match with `$`: "$" also matches before a trailing newline."""
    return (
        isinstance(value, str)
        and len(value) == digits
        and _HEX.fullmatch(value) is not None
        and value.strip("0") != ""
        and (not lowercase or value == value.lower())
    )


def is_trace_id(value: object, *, lowercase: bool = False) -> bool:
    return is_hex_id(value, 32, lowercase=lowercase)


def is_span_id(value: object, *, lowercase: bool = False) -> bool:
    return is_hex_id(value, 16, lowercase=lowercase)
