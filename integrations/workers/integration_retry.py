"""IntegrationRetryWorker: retry transient integration-run failures per policy; escalate poison.

Declared from the seed catalog. Its handler comes with the integrations issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker


def failure_attempt_key(envelope) -> str | None:
    data = envelope.data
    if "failureId" in data:
        return f"{data['failureId']}:{data.get('attempt', 0)}"
    return None


WORKER = Worker(
    name="IntegrationRetryWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Retry transient integration-run failures per policy; escalate poison.",
    trigger=Trigger(
        events=("IntegrationFailed",),
        schedules=(Schedule("sweep", 5),),
        description="IntegrationFailed event + schedule sweep",
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_seconds=60,
        cap_seconds=3600,
        description="Policy-driven backoff; max attempts from RetryPolicy",
    ),
    idempotency=Idempotency("Dedup on failureId + attempt counter", key=failure_attempt_key),
)
