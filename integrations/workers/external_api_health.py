"""ExternalApiHealthWorker: probe vendor endpoints, update connection health, gate routing.

The handler is integrations.health.handler.handle: each minute's slot probes the tenant's
active connections (and ConnectionProbeRequested probes one now: "probe now", or
IntegrationRetryWorker's re-probe of an outage); the results are written keyed by (connection,
window), the health assessed from the newest windows (pending, down after three failed
windows, up after two good ones, degraded when slow), the connection's circuit tripped when it
goes down and closed when it is back, ConnectionHealthChanged on important transitions and one
IntegrationFailed per outage.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from integrations.health.handler import handle

WORKER = Worker(
    name="ExternalApiHealthWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Probe vendor endpoints, update connection health, gate routing.",
    trigger=Trigger(
        schedules=(Schedule("probe", 1),),
        commands=("ConnectionProbeRequested",),
        description="Schedule (probe interval) + probe-now command",
    ),
    # Retries stay inside the one-minute probe window.
    retry=RetryPolicy(
        max_attempts=3,
        base_seconds=5,
        cap_seconds=20,
        description="Probe retried within window; circuit opens on sustained failure",
    ),
    idempotency=Idempotency("Probe keyed by connectionId + window; latest-wins health write"),
    handler=handle,
)
