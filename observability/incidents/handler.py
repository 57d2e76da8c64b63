"""IncidentAnalysisWorker's batch handler (observability/workers/incident_analysis.py declares
the worker): the batch's trigger events are grouped into incidents per tenant, its schedule
slots sweep the tenant's incidents for timeouts and closing."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.envelope import Envelope, TenantId
from core.runtime.errors import PermanentError
from observability.incidents import DEFAULTS, decisions, store

log = logging.getLogger(__name__)
SCHEDULE = "ScheduleFired"


def setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def windows() -> decisions.Windows:
    def seconds(name: str) -> timedelta:
        return timedelta(seconds=float(setting(name)))

    return decisions.Windows(
        group=seconds("INCIDENT_GROUP_WINDOW_SECONDS"),
        reopen=seconds("INCIDENT_REOPEN_WINDOW_SECONDS"),
        resolve_timeout=seconds("INCIDENT_RESOLVE_TIMEOUT_SECONDS"),
        close_after=seconds("INCIDENT_CLOSE_AFTER_SECONDS"),
    )


def handle(envelopes: list[Envelope]) -> dict[uuid.UUID, Exception]:
    """IncidentAnalysisWorker's batch handler. An event whose data names no trigger is
    reported as a permanent failure (dead-lettered with the reason); the others are handled."""
    failures: dict[uuid.UUID, Exception] = {}
    signals: dict[TenantId, list[decisions.Signal]] = defaultdict(list)
    for envelope in envelopes:
        if envelope.type == SCHEDULE:
            continue
        try:
            signal = decisions.signal_of(
                envelope.type, envelope.event_id, envelope.occurred_at, envelope.data
            )
        except ValueError as exc:
            failures[envelope.event_id] = PermanentError(str(exc))
            continue
        signals[envelope.tenant_id].append(signal)
    now = timezone.now()
    for tenant_id, mine in signals.items():
        group(tenant_id, mine, now=now)
    for envelope in envelopes:
        if envelope.type == SCHEDULE:
            sweep(envelope.tenant_id, slot_time(envelope))
    return failures


def group(tenant_id: TenantId, signals: list[decisions.Signal], *, now: datetime) -> None:
    """Group one tenant's trigger events: load, decide, write, publish."""
    book = store.load_book(tenant_id, signals)
    outcome = decisions.apply(book, signals, windows())
    for event_id, why in outcome.ignored:
        log.info("%s: event %s ignored: %s", tenant_id, event_id, why)
    store.save(tenant_id, book.incidents.values(), outcome, now=now)
    store.publish(tenant_id, outcome.transitions)


def slot_time(envelope: Envelope) -> datetime:
    """The slot's time (its window's end): what the sweep decides at, so that a slot handled
    twice decides the same."""
    try:
        end = datetime.fromisoformat(str(envelope.data.get("windowEnd")))
    except ValueError:
        return envelope.occurred_at
    return end if end.tzinfo is not None else envelope.occurred_at


def sweep(tenant_id: TenantId, now: datetime) -> None:
    """Resolve the tenant's incidents past their timeout and close those resolved long
    enough. The candidates' group keys are locked first, as grouping locks them, then the
    candidates are loaded again, locked, and decided on."""
    w = windows()
    candidates = store.sweep_candidates(tenant_id, now, w)
    store.lock_groups(tenant_id, set(candidates.values_list("group_key", flat=True)))
    incidents = store.load_incidents(candidates, tenant_id=tenant_id)
    outcome = decisions.sweep(incidents, now, w)
    store.save(tenant_id, incidents, outcome, now=timezone.now())
    store.publish(tenant_id, outcome.transitions)
