"""Raw bodies for POST /api/events, shared by its input tests and its fuzz test. Raw text:
`1e999`, a lone `\\ud800` or a NUL are what a client sends, not what json.dumps makes."""

from __future__ import annotations

import json

URL = "/api/events"


def post_raw(client, key: str, body: bytes | str, *, content_type="application/json", **extra):
    data = body.encode() if isinstance(body, str) else body
    return client.generic(
        "POST",
        URL,
        data,
        content_type=content_type,
        headers={"Authorization": f"Bearer {key}"},
        **extra,
    )


def with_data(data_json: str, **fields: str) -> str:
    """A DeploymentPromoted body around `data` as raw JSON text; other fields as raw JSON."""
    extra = "".join(f", {json.dumps(name)}: {value}" for name, value in fields.items())
    return f'{{"type": "DeploymentPromoted", "data": {data_json}{extra}}}'


def said(response) -> str:
    """Every text of a JSON reply (its error, and the details of a serializer's), one a line."""
    texts, pending = [], [response.json()]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            texts.append(value)
    return "\n".join(texts)


def same_json(a, b) -> bool:
    """Equal as JSON values. Numbers by their value, whatever Python type the database's text
    of them decodes to: PostgreSQL's jsonb keeps a number as a decimal and writes 1.5e300 back
    as an integer of 301 digits, which is the same JSON number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b if type(a) is type(b) else float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
