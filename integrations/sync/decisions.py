"""The sync's decisions as pure functions: what a page's records are to what is stored, and
whether a sweep may delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.connections.providers import Record


@dataclass(frozen=True)
class Stored:
    content_hash: str
    deleted: bool
    data: dict[str, Any] | None = None  # only when the stream's events need it


@dataclass(frozen=True)
class Change:
    record: Record
    content_hash: str
    action: str | None  # "added" | "updated" | "deleted"; None: unchanged
    previous: dict[str, Any] | None = None


def changes(
    records: list[Record], *, stored: dict[str, Stored], hashes: dict[str, str]
) -> list[Change]:
    """Each record of a page (the last one wins when a page holds an id twice), against what
    is stored: a new id is added; a stored one with another hash is updated; one that comes
    back after being deleted is added again; the same hash is unchanged (Nango's records
    cache: nothing is published for it). A record the vendor flags deleted deletes what is
    stored, once."""
    last: dict[str, Record] = {}
    for record in records:
        last[record.external_id] = record
    out = []
    for external_id, record in last.items():
        old = stored.get(external_id)
        digest = hashes[external_id]
        previous = old.data if old is not None else None
        if record.deleted:
            action = "deleted" if old is not None and not old.deleted else None
        elif old is None or old.deleted:
            action = "added"
        elif old.content_hash != digest:
            action = "updated"
        else:
            action = None
        out.append(Change(record, digest, action, previous))
    return out


def may_sweep(*, missing: int, total: int, max_ratio: float) -> bool:
    """Mark-and-sweep deletes what a complete full run did not see, unless that is more than
    `max_ratio` of what is stored: a vendor answering an empty list by mistake (or a token that
    lost access to a project) must not delete a tenant's records."""
    if missing == 0:
        return True
    return total > 0 and missing / total <= max_ratio
