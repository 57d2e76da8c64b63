"""A worker that is declared but not built (no handler), as each catalog worker was until the
issue that built it: the runtime must address it no event and no command. The catalog's own
unbuilt workers dwindle issue by issue; this one stays, so the tests about it keep meaning
something. Registered for a test by the `declared_worker` fixture (tests/core/conftest.py)."""

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker

WORKER = Worker(
    name="DeclaredWorker",
    module=__name__,
    app="tests",
    group="reaction",
    purpose="Subscribe to everything and handle nothing: a worker not built yet.",
    trigger=Trigger(
        events=(WILDCARD, "IntegrationFailed"),
        commands=("IntegrationSyncRequested", "CredentialRotationRequested"),
        description="test",
    ),
    retry=RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1),
    idempotency=Idempotency("eventId"),
)
