"""CredentialRotationWorker: rotate credential versions and re-test the connection.

Declared from the seed catalog. Its handler comes with the integrations issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker


def rotation_key(envelope) -> str | None:
    data = envelope.data
    if "credentialId" in data and "rotationToken" in data:
        return f"{data['credentialId']}:{data['rotationToken']}"
    return None


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
)
