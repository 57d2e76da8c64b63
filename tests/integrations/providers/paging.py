"""Run a provider's paging against a live vendor through core.outbound, the way the sync
handler does, without the database: for the provider tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import outbound
from integrations.connections.providers import Page, Provider, Record


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r.external_id for r in self.records]


def run(
    provider: Provider,
    stream: str,
    *,
    base_url: str,
    config: dict[str, Any],
    secret: dict[str, Any],
    checkpoint: dict[str, Any] | None = None,
    between_pages: Any = None,
    max_pages: int = 100,
    stop_after: int | None = None,
) -> Run:
    """Page until complete. `between_pages(n)` runs after the n-th page (to change the vendor
    mid-run). `stop_after` pages: return what a crash after that page's commit leaves."""
    result = Run(checkpoint=dict(checkpoint or {}))
    request = provider.first_request(
        stream, base_url=base_url, checkpoint=result.checkpoint, config=config
    )
    for number in range(1, max_pages + 1):
        reply = outbound.request(
            request.method,
            request.url,
            headers={**request.headers, **provider.auth_headers(secret, config)},
            body=request.body,
        )
        outcome = provider.classify(reply.status, reply.headers, reply.body)
        assert outcome in ("ok", "not_modified"), (reply.status, reply.body[:300])
        page = provider.parse_page(
            stream,
            request=request,
            status=reply.status,
            headers=reply.headers,
            body=reply.body,
            checkpoint=result.checkpoint,
            config=config,
        )
        result.pages.append(page)
        result.records.extend(page.records)
        result.checkpoint = page.checkpoint
        if page.complete or number == stop_after:
            return result
        assert page.next_request is not None
        request = page.next_request
        if between_pages is not None:
            between_pages(number)
    raise AssertionError(f"not complete after {max_pages} pages")
