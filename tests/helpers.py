"""Small helpers shared by the test modules."""

from __future__ import annotations

import json

from core.models import Message
from core.runtime import dispatch


def drain_all(worker: str) -> None:
    """Run the worker's drains until none of its messages is pending, as a cluster would."""
    while Message.objects.filter(worker=worker, state=Message.State.PENDING).exists():
        dispatch.drain(worker)


def post_otlp(client, key: str, signal: str, body: dict) -> None:
    """POST /v1/<signal> as OTLP JSON, expect a plain 200, and let TraceIngestionWorker (every
    signal's ingestion) store it."""
    response = client.post(
        f"/v1/{signal}",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200 and response.json() == {}, response.content
    drain_all("TraceIngestionWorker")
