"""ExternalApiHealthWorker's handler (integrations/workers/external_api_health.py declares the
worker): probe a tenant's active connections, once a window, and keep their health.

- A window is the schedule's slot (one a minute; every tenant gets its ScheduleFired) or the
  moment of a ConnectionProbeRequested (probe now; IntegrationRetryWorker's re-probe of an
  outage, which carries failureId and attempt).
- Each connection's probe is its provider's probe request with its current credential, through
  core.outbound, the probes of a window side by side in threads (no database there). A refused
  connection or a timeout is tried again at once, once, within the window. A 429 is the vendor
  answering: up, its budget spent.
- The result is checked against the connection's conditions (config `probe_conditions`, Gatus
  style; default: connected and a status below 400) and its latency against `probe_slow_ms`,
  then written keyed by (connection, window): a retry of the window overwrites it. The health
  is then assessed from the newest windows (decisions.assess), unless the window is older than
  the newest one applied: latest wins.
- Each probe counts in the connection's circuit (integrations.limits, key connection:<id>);
  going down trips it, coming back up closes it (unless an operator isolated it). An outage of
  the vendor's host itself (no answer, or a 5xx) also trips the circuit of the tenant's
  webhook endpoints on that host (limits.keys.webhook_host: a GitHub Enterprise or Jira Data
  Center that takes the tenant's webhooks too), so that its deliveries wait without spending
  attempts rather than fail one by one until their own circuit opens; coming back up closes
  it. A 4xx (a refused credential, a wrong repository) says nothing about the host: not that.
  What those circuits held back (a sync's page, a webhook delivery: NotYet, due when the
  circuit's open period ends) is made due at once when they close: the vendor is back, and
  after repeated trips that period can be half an hour.
- ConnectionHealthChanged on important transitions only (decisions.important); entering down
  publishes one IntegrationFailed for the outage, with a failureId derived from the outage's
  first window; coming back up resolves it (integrations.failures). A re-probe that finds the
  connection still down reports again under the failureId and attempt it was sent with.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from core import outbound, services
from core.envelope import Envelope
from core.runtime.errors import describe
from integrations.connections import credentials, vendor
from integrations.connections.models import IntegrationConnection
from integrations.failures.contract import failed_data
from integrations.failures.services import resolve_subject
from integrations.health import decisions, prometheus
from integrations.health.decisions import DOWN, HealthPolicy, Probe, Window
from integrations.health.models import ConnectionHealth, ProbeResult
from integrations.limits import circuits, keys
from integrations.limits.decisions import HALF_OPEN, ISOLATED, OPEN
from integrations.limits.store import committing

log = logging.getLogger(__name__)
COMMAND = "ConnectionProbeRequested"
EVENTS = uuid.UUID("9d6f3b2a-5c41-4e8b-a0f7-1b2c3d4e5f60")
PROBE_TIMEOUT_SECONDS = 10.0
PROBE_MAX_BODY = 64 * 1024
PROBE_THREADS = 16


@dataclass(frozen=True)
class Planned:
    connection: IntegrationConnection
    request: Any  # the provider's OutboundRequest, with auth headers
    conditions: tuple[str, ...]
    policy: HealthPolicy


def handle(envelope: Envelope) -> None:
    """Probe what the envelope names, in this window, and write what follows."""
    connections = IntegrationConnection.objects.filter(
        tenant_id=envelope.tenant_id, status=IntegrationConnection.Status.ACTIVE
    )
    if envelope.type == COMMAND:
        window = envelope.occurred_at
        connections = connections.filter(pk=envelope.data["connectionId"])
    else:
        window = datetime.fromisoformat(envelope.data["windowEnd"])
    plans = [p for c in connections.order_by("pk") if (p := _plan(c)) is not None]
    if not plans:
        return
    with ThreadPoolExecutor(max_workers=min(PROBE_THREADS, len(plans))) as pool:
        probes = list(pool.map(lambda plan: probe(plan.request), plans))
    with committing():  # the circuits' writes on one connection of their own (limits.store)
        for plan, (seen, tries) in zip(plans, probes, strict=True):
            record(plan, seen, tries=tries, window=window, command=envelope)


def _plan(connection: IntegrationConnection) -> Planned | None:
    provider = vendor.provider_of(connection.provider)
    if provider is None:
        log.warning(
            "connection %s: unknown provider %r; not probed", connection.pk, connection.provider
        )
        return None
    config = connection.config or {}
    request = provider.probe_request(base_url=vendor.base_url_of(connection), config=config)
    headers = dict(request.headers)
    # Probed without credentials when it has none: a public status endpoint still answers.
    with contextlib.suppress(credentials.NoCredential):
        secret = credentials.current_secret(connection=connection)
        headers.update(vendor.auth_headers(connection, secret))
    conditions = tuple(config.get("probe_conditions") or decisions.DEFAULT_CONDITIONS)
    policy = HealthPolicy(slow_ms=int(config.get("probe_slow_ms") or HealthPolicy.slow_ms))
    return Planned(
        connection, (request.method, request.url, headers, request.body), conditions, policy
    )


def probe(request: tuple[str, str, dict[str, str], bytes | None]) -> tuple[Probe, int]:
    """One probe, and how many tries it took: a refused connection or a timeout is tried again
    at once, once; any answer is final."""
    method, url, headers, body = request
    seen = Probe(connected=False, error="not tried")
    for tries in (1, 2):
        try:
            reply = outbound.request(
                method, url, headers=headers, body=body,
                timeout=PROBE_TIMEOUT_SECONDS, max_body=PROBE_MAX_BODY,
            )  # fmt: skip
        except outbound.BlockedDestination as exc:
            return Probe(connected=False, error=f"refused to connect: {exc}"), tries
        except Exception as exc:  # a network error or a timeout: once more
            seen = Probe(connected=False, error=describe(exc)[:1000])
            continue
        latency = round(reply.seconds * 1000)
        return Probe(True, reply.status, latency, reply.body), tries
    return seen, 2


def record(plan: Planned, seen: Probe, *, tries: int, window: datetime, command: Envelope) -> None:
    connection = plan.connection
    failed = decisions.evaluate(plan.conditions, seen)
    if seen.connected and seen.status == 429:
        failed = []  # the vendor answered: up, its budget spent (the sync's buckets wait)
    ok = not failed
    slow = ok and seen.latency_ms is not None and seen.latency_ms > plan.policy.slow_ms
    error = "; ".join(failed) if failed else ""
    if not seen.connected:
        error = seen.error
    ProbeResult.objects.update_or_create(
        connection=connection,
        window=window,
        defaults={
            "tenant_id": connection.tenant_id,
            "ok": ok,
            "slow": slow,
            "status_code": seen.status,
            "latency_ms": seen.latency_ms,
            "error": error[:1000],
            "tries": tries,
            "at": timezone.now(),
        },
    )
    prometheus.count_probe(ok=ok)
    key = keys.connection(connection.pk)
    circuits.record(key=key, ok=ok, slow=slow, tenant_id=connection.tenant_id, reason=error)
    health, _ = ConnectionHealth.objects.select_for_update().get_or_create(
        connection=connection, defaults={"tenant_id": connection.tenant_id}
    )
    if health.window is not None and window < health.window:
        log.info(
            "connection %s: window %s is older than %s; health kept",
            connection.pk,
            window,
            health.window,
        )
        return
    newest = ProbeResult.objects.filter(connection=connection, window__lte=window).order_by(
        "-window"
    )
    depth = max(plan.policy.down_after, plan.policy.up_after) + 1
    windows = [Window(w, o, s) for w, o, s in newest.values_list("window", "ok", "slow")[:depth]]
    before = health.state
    after = decisions.assess(windows, before=before, policy=plan.policy)
    now = timezone.now()
    health.window, health.latency_ms, health.updated = window, seen.latency_ms, now
    if error:
        health.last_error = error[:1000]
    streak = decisions.streak(windows)
    health.failures, health.successes = (0, streak) if ok else (streak, 0)
    published: list[Envelope] = []
    if after != before:
        health.state, health.changed = after, now
        if decisions.important(before, after):
            published.append(_changed(connection, before, after, window, seen, error))
    if after == DOWN and before != DOWN:
        health.outage_since = window
        health.outage_failure_id = uuid.UUID(decisions.outage_failure_id(connection.pk, window))
        published.append(_failed(connection, health, error, attempt=0))
        circuits.trip(key, reason=f"down: {error}"[:500], tenant_id=connection.tenant_id)
        if not seen.connected or (seen.status or 0) >= 500:
            circuits.trip(
                webhook_key(connection),
                reason=f"{connection.name} is down: {error}"[:500],
                tenant_id=connection.tenant_id,
            )
    elif before == DOWN and after != DOWN:
        resolve_subject(
            tenant_id=connection.tenant_id, kind="outage", subject_id=str(connection.pk)
        )
        health.outage_since = health.outage_failure_id = None
        # Closing brings forward the syncs and deliveries the circuits held back.
        if circuits.current(key=key) != ISOLATED:
            circuits.close(key, tenant_id=connection.tenant_id)
        if circuits.current(key=webhook_key(connection)) in (OPEN, HALF_OPEN):
            circuits.close(webhook_key(connection), tenant_id=connection.tenant_id)
    elif after == DOWN and command.type == COMMAND and command.data.get("failureId"):
        # IntegrationRetryWorker's re-probe of the outage: still down; say so, as sent.
        published.append(
            _failed(
                connection,
                health,
                error,
                attempt=int(command.data.get("attempt") or 0),
                failure_id=str(command.data["failureId"]),
            )
        )
    health.save()
    services.publish_envelopes(published)


def webhook_key(connection: IntegrationConnection) -> str:
    """The circuit of the tenant's webhook endpoints on the connection's host."""
    return keys.webhook_host(connection.tenant_id, vendor.base_url_of(connection))


def _changed(connection, before: str, after: str, window: datetime, seen: Probe, error: str):
    return services.build_envelope(
        tenant_id=connection.tenant_id,
        type="ConnectionHealthChanged",
        data={
            "connectionId": str(connection.pk),
            "provider": connection.provider,
            "name": connection.name,
            "from": before,
            "to": after,
            "window": window.isoformat(),
            "latencyMs": seen.latency_ms,
            "status": seen.status,
            "error": error,
        },
        event_id=uuid.uuid5(EVENTS, f"changed:{connection.pk}:{window.isoformat()}:{after}"),
        source="health",
        source_id=str(connection.pk),
    )


def _failed(
    connection, health: ConnectionHealth, error: str, *, attempt: int, failure_id: str = ""
):
    failure_id = failure_id or str(health.outage_failure_id)
    return services.build_envelope(
        tenant_id=connection.tenant_id,
        type="IntegrationFailed",
        data=failed_data(
            failure_id=failure_id,
            kind="outage",
            error=f"{connection.name} is down: {error or 'its probe failed'}",
            attempt=attempt,
            provider=connection.provider,
            subject=connection.name,
            connectionId=str(connection.pk),
        ),
        event_id=uuid.uuid5(EVENTS, f"failed:{failure_id}:{attempt}"),
        source="health",
        source_id=str(connection.pk),
    )
