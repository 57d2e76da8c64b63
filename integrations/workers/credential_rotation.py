"""CredentialRotationWorker: rotate credential versions and re-test the connection.

The handler is integrations.connections.rotation.handle: a CredentialRotationRequested command
(POST /api/integrations/credentials/rotate, the admin's "rotate now", or the schedule) moves a
pending version through AWS Secrets Manager's steps: set at the vendor, test with the
provider's verification request, promote (current → previous for the grace period). Any failed
step leaves current untouched; after the last retry on_dead retires the version as failed and
publishes IntegrationFailed. The hourly schedule starts rotations due by the credentials'
policies and revokes vendor keys whose grace period ended.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from integrations.connections.rotation import handle, on_dead

KEY_FIELDS = ("credentialId", "rotationToken", "step", "revival", "failureId", "attempt")


def rotation_key(envelope) -> str | None:
    """The rotation token per credentialId, and the step, the revival and the retry attempt a
    command is for: a command sent twice for the same step is handled once; each next step,
    revival or retry of IntegrationRetryWorker is a new one. The version's stage makes a
    command for a finished rotation a no-op (no-op if current version is target)."""
    data = envelope.data
    if "credentialId" not in data or "rotationToken" not in data:
        return None
    return ":".join(str(data.get(name, "")) for name in KEY_FIELDS)


WORKER = Worker(
    name="CredentialRotationWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Rotate credential versions and re-test the connection.",
    trigger=Trigger(
        schedules=(Schedule("policy", 60),),
        commands=("CredentialRotationRequested",),
        description="Schedule (rotation policy) + POST /integrations/credentials/rotate",
    ),
    # "Retry rotation up to 3x": the first try and three retries.
    retry=RetryPolicy(
        max_attempts=4,
        base_seconds=30,
        cap_seconds=600,
        description="Retry rotation up to 3x; on verify failure keep prior version active",
    ),
    idempotency=Idempotency(
        "Rotation token per credentialId; no-op if current version is target", key=rotation_key
    ),
    handler=handle,
    on_dead=on_dead,
)
