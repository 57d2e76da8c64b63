"""ExternalApiHealthWorker: probe vendor endpoints, update connection health, gate routing.

Declared from the seed catalog. Its handler comes with the integrations issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

WORKER = Worker(
    name="ExternalApiHealthWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Probe vendor endpoints, update connection health, gate routing.",
    trigger=Trigger(schedules=(Schedule("probe", 1),), description="Schedule (probe interval)"),
    # Retries stay inside the one-minute probe window.
    retry=RetryPolicy(
        max_attempts=3,
        base_seconds=5,
        cap_seconds=20,
        description="Probe retried within window; circuit opens on sustained failure",
    ),
    idempotency=Idempotency("Probe keyed by connectionId + window; latest-wins health write"),
)
