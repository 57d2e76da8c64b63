"""IntegrationSyncWorker: pull external state into the factory and reconcile.

Declared from the seed catalog. Its handler comes with the integrations issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

WORKER = Worker(
    name="IntegrationSyncWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Pull external state into the factory and reconcile.",
    trigger=Trigger(
        schedules=(Schedule("cadence", 1),),
        commands=("IntegrationSyncRequested",),
        description="Schedule (per connection cadence) + on-demand command",
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_seconds=30,
        cap_seconds=3600,
        description="Backoff per provider rate limit (Retry-After honoured); resume from cursor",
    ),
    idempotency=Idempotency("Cursor/syncToken + contentHash skip unchanged"),
)
