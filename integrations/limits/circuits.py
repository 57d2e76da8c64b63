"""Circuits shared by every process, one row per key (decisions.py decides; this loads and
writes). Callers ask `permit` before a call and raise core.runtime.errors.NotYet until the time
it returns; they `record` each call's outcome (passive: a sync's or a webhook's reply), which is
what opens a circuit. ExternalApiHealthWorker records its probes the same way. An operator
isolates or closes one (admin, API).

A closed circuit's permit is one read and no write. Writes lock the row in a transaction of the
circuit's own connection (store.committing): a short one, never the caller's batch."""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.envelope import TenantId
from core.models import Message
from core.runtime import queue
from integrations.limits import decisions, keys
from integrations.limits.decisions import CLOSED, ISOLATED, POLICY, CircuitPolicy, CircuitState
from integrations.limits.models import Circuit
from integrations.limits.store import committing

log = logging.getLogger(__name__)
STATE_FIELDS = [f.name for f in fields(CircuitState)]


def state_of(circuit: Circuit) -> CircuitState:
    return CircuitState(**{name: getattr(circuit, name) for name in STATE_FIELDS})


def permit(
    *, key: str, now: datetime | None = None, policy: CircuitPolicy = POLICY
) -> datetime | None:
    """None: go. Otherwise the circuit is open (or isolated, or its half-open trial's permits
    are all out) until the time returned. Taking a half-open permit is a write."""
    granted, until = admit(key=key, want=1, now=now, policy=policy)
    return None if granted else until


def admit(
    *, key: str, want: int, now: datetime | None = None, policy: CircuitPolicy = POLICY
) -> tuple[int, datetime | None]:
    """How many of `want` calls may go now (a batch's to one host), and, if not all, when to
    come back: all of them through a closed circuit (one read, no write), none through an
    open or isolated one, as many as it has permits through a half-open one."""
    moment = now or timezone.now()
    with committing() as db:
        found = Circuit.objects.using(db.alias).filter(key=key).first()
        if found is None or found.state == CLOSED:
            return want, None
        until, after = decisions.permit(state_of(found), now=moment, policy=policy)
        if until is not None and after == state_of(found):
            return 0, until
        with transaction.atomic(using=db.alias):
            locked = Circuit.objects.using(db.alias).select_for_update().get(key=key)
            before = after = state_of(locked)
            granted = 0
            while granted < want:
                until, after = decisions.permit(after, now=moment, policy=policy)
                if until is not None:
                    break
                granted += 1
            _write(locked, before, after, moment, db.alias)
    return granted, None if granted == want else until


def record(
    *,
    key: str,
    ok: bool,
    slow: bool = False,
    now: datetime | None = None,
    count: int = 1,
    tenant_id: TenantId | None = None,
    reason: str = "",
    policy: CircuitPolicy = POLICY,
) -> str:
    """Count `count` outcomes of one kind (a batch's to one host come at once); returns the
    state after."""
    if count <= 0:
        return current(key=key)
    moment = now or timezone.now()
    with committing() as db, transaction.atomic(using=db.alias):
        locked = _locked(key, tenant_id, db.alias)
        before = state_of(locked)
        after = decisions.record(
            before, ok=ok, slow=slow, count=count, now=moment, policy=policy, reason=reason
        )
        _write(locked, before, after, moment, db.alias)
    return after.state


def trip(key: str, *, reason: str, tenant_id: TenantId | None = None) -> Circuit:
    """Open the circuit now (the vendor was found down), unless open already or isolated."""
    return _set(key, tenant_id, lambda s, now: decisions.trip(s, now=now, reason=reason))


def isolate(key: str, *, reason: str = "", tenant_id: TenantId | None = None) -> Circuit:
    """Hold the circuit open until someone closes it."""
    return _set(key, tenant_id, lambda s, now: decisions.isolate(s, now=now, reason=reason))


def close(
    key: str, *, tenant_id: TenantId | None = None, policy: CircuitPolicy = POLICY
) -> Circuit:
    """Close the circuit now, its trips forgotten, and bring forward the work it held back
    (an operator's close and a recovery alike): a caller of an open circuit is due again
    exactly when its open period ends, one of an isolated circuit within `isolated_wait`.
    Another message of the tenant's held-back workers due in that span is only looked at
    early, and put off again by its own limits."""
    before = Circuit.objects.filter(key=key).values_list("state", "open_until").first()
    circuit = _set(key, tenant_id, lambda s, now: decisions.close(s, now=now))
    if before is not None and circuit.tenant_id is not None:
        state, open_until = before
        now = timezone.now()
        if state == ISOLATED:
            _resume(circuit.tenant_id, Q(due_at__gt=now, due_at__lte=now + policy.isolated_wait))
        elif open_until is not None and open_until > now:
            _resume(circuit.tenant_id, Q(due_at=open_until))
    return circuit


# The workers whose messages wait on a connection's or a webhook host's circuit.
HELD_BACK = ["IntegrationSyncWorker", "WebhookDeliveryWorker", "CredentialRotationWorker"]


def _resume(tenant_id: TenantId, due: Q) -> None:
    now = timezone.now()
    resumed = (
        Message.objects.filter(
            due, tenant_id=tenant_id, worker__in=HELD_BACK, state=Message.State.PENDING
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(due_at=now)
    )
    if resumed:
        log.info("tenant %s: %s messages held back by a circuit resumed", tenant_id, resumed)
        transaction.on_commit(lambda: queue.kick(HELD_BACK))


def current(*, key: str) -> str:
    with committing() as db:
        state = Circuit.objects.using(db.alias).filter(key=key).values_list("state", flat=True)
        return state.first() or CLOSED


def _set(key: str, tenant_id: TenantId | None, change) -> Circuit:
    moment = timezone.now()
    with committing() as db, transaction.atomic(using=db.alias):
        locked = _locked(key, tenant_id, db.alias)
        before = state_of(locked)
        _write(locked, before, change(before, moment), moment, db.alias)
        return locked


def _locked(key: str, tenant_id: TenantId | None, alias: str) -> Circuit:
    tenant = tenant_id or keys.tenant_of(key)
    rows = Circuit.objects.using(alias)
    rows.bulk_create([Circuit(key=key, tenant_id=tenant)], ignore_conflicts=True)
    return rows.select_for_update().get(key=key)


def _write(
    circuit: Circuit, before: CircuitState, after: CircuitState, now: datetime, alias: str
) -> None:
    if after == before:
        return
    for name, value in asdict(after).items():
        setattr(circuit, name, value)
    circuit.updated = now
    circuit.save(using=alias, update_fields=[*STATE_FIELDS, "updated"])
    if after.state != before.state:
        level = logging.WARNING if after.state != CLOSED else logging.INFO
        log.log(
            level, "circuit %s: %s -> %s %s", circuit.key, before.state, after.state, after.reason
        )
