"""IntegrationRetryWorker: retry transient integration-run failures per policy; escalate poison.

Each IntegrationFailed (its data contract: integrations.failures.contract) is recorded on an
IntegrationFailure and settled by its RetryPolicy (Temporal's fields, per provider and kind):
the next attempt scheduled, or poisoned (the cap, or a non-retryable error class) and escalated
exactly once, an AlertTriggered (source "integrations", sourceId the failureId) that
IncidentAnalysisWorker opens an incident for. The five-minute sweep (per tenant) sends each due
failure its resume command: a sync resumes from its checkpoint (IntegrationSyncRequested), a
rotation from its step with the same rotation token (CredentialRotationRequested), an outage
re-probes (ConnectionProbeRequested). Dead webhook deliveries are grouped and escalated, never
re-sent but by an operator. The handler is integrations.failures.handler.handle.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from integrations.failures.handler import handle


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
    handler=handle,
)
