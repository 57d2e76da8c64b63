"""What an event's `data` may hold when it comes from outside: JSON that both databases store
as it is, and that every reader (workers, webhooks, the admin) can serialise again.

Python's JSON decoder takes more than that: a NUL character (PostgreSQL's text and jsonb
refuse it), a lone surrogate such as "\\ud800" (not Unicode text: it cannot be encoded as
UTF-8), and a number too large for a float (1e999 decodes to infinity, which JSON cannot
express, so it cannot be written back). Nesting and size are bounded too, so that an event stays
cheap for every worker and webhook it goes to. These are decisions on a decoded value: no
database, no settings (the limits are arguments).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN_KEY = 40  # characters of a key shown in a path


def problem(data: Any, *, max_depth: int, where: str = "data") -> str | None:
    """The first reason `data` cannot be taken, in document order, naming where it is (e.g.
    `data.build.steps[3]`); None when it can. Walked without recursion, so that any depth the
    decoder produced is safe to walk."""
    pending = [(data, where, 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, dict | list) and depth > max_depth:
            return f"{path} is nested deeper than the limit of {max_depth} levels."
        if isinstance(value, dict):
            children = []
            for key, item in value.items():
                item_path = f"{path}{_key(key)}"
                if found := _text_problem(key):
                    return f"The key {item_path} {found}"
                children.append((item, item_path, depth + 1))
            pending.extend(reversed(children))
        elif isinstance(value, list):
            pending.extend(
                (value[i], f"{path}[{i}]", depth + 1) for i in reversed(range(len(value)))
            )
        elif isinstance(value, str):
            if found := _text_problem(value):
                return f"{path} {found}"
        elif isinstance(value, float) and not math.isfinite(value):
            return (
                f"{path} is not a finite number (a JSON number must be within ±1.8e308; "
                "NaN and Infinity are not JSON)."
            )
    return None


def size(data: Any) -> int:
    """Bytes of `data` as compact UTF-8 JSON: its size however the client escaped it. Only for
    data without a problem (a lone surrogate has no UTF-8)."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored."
    if match := _SURROGATE.search(text):
        return (
            f"contains a lone surrogate (\\u{ord(match.group()):04x}), which is not Unicode "
            "text: send the character itself, or both halves of its surrogate pair."
        )
    return None


def _key(key: str) -> str:
    """A key as a path step: .name when it reads as one, else ["..."] (escaped, shortened)."""
    shown = key if len(key) <= _SHOWN_KEY else f"{key[:_SHOWN_KEY]}…"
    return f".{shown}" if _NAME.fullmatch(key) else f"[{json.dumps(shown)}]"
