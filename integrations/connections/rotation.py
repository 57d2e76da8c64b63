"""CredentialRotationWorker's handler (integrations/workers/credential_rotation.py declares
the worker): rotate a credential in AWS Secrets Manager's four steps, each idempotent.

A CredentialRotationRequested command names a pending version (credentials.request_rotation
created it under the caller's rotation token and committed it before anything was asked of a
vendor). The rotation is two messages, each committed whole with its effects:
1. set: mint the new secret at the vendor (a new key from its key API, under an
   Idempotency-Key derived from the version's id; or an OAuth 2.0 refresh). The answer is
   stored on the version (step `set`) in the message's transaction, with the command for
   step 2. A crash before that commit asks the vendor again under the same Idempotency-Key
   and gets the same key back; a crash after it never calls the vendor again. An operator's
   secret arrives set already.
2. test and finish: the provider's verification request with the pending secret; accepted, it
   is promoted in one transaction (previous → retired, current → previous for the grace
   period, pending → current) and CredentialRotated is published with an event id derived
   from the version, so once per finished rotation.
Any failure leaves `current` as it was: the version stays pending and the runtime retries the
message (the worker's policy: three retries). When it gives up (on_dead), the version is
retired as failed and IntegrationFailed says so, with a failureId; the same token sent again
revives it from its step.

The schedule (every hour, per tenant) starts the rotations that the credentials' policies make
due, under tokens derived from their due time (a redelivered tick starts nothing twice), and
revokes at the vendor the keys of versions whose grace period ended.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import services
from core.envelope import Envelope
from core.models import Tenant
from core.runtime.errors import NotYet, PermanentError, TransientError, describe
from integrations.connections import credentials, keyring, vendor
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)
from integrations.limits import circuits, keys

log = logging.getLogger(__name__)
Stage, Step, Method = CredentialVersion.Stage, CredentialVersion.Step, IntegrationCredential.Method
EVENTS = uuid.UUID("a3c4e9d2-7b61-4f0e-8d25-91b0c6e4f7a8")


class VerificationFailed(TransientError):
    """The provider refused the pending secret. Retried (a new key can take a moment to reach
    every server of a vendor) until the policy gives up; current stays current meanwhile."""


def handle(envelope: Envelope) -> None:
    if envelope.type == "ScheduleFired":
        tick(envelope)
    else:
        rotate(envelope)


def _version(envelope: Envelope) -> CredentialVersion:
    data = envelope.data
    version = (
        CredentialVersion.objects.select_for_update()
        .select_related("credential__connection")
        .filter(
            tenant_id=envelope.tenant_id,
            credential_id=data.get("credentialId"),
            rotation_token=data.get("rotationToken"),
        )
        .first()
    )
    if version is None:
        raise PermanentError(
            f"no version {data.get('rotationToken')!r} of credential {data.get('credentialId')}"
        )
    return version


def _retry_of(envelope: Envelope) -> dict[str, Any] | None:
    """{failureId, attempt} of a resume IntegrationRetryWorker started, or None."""
    data = envelope.data
    if data.get("failureId"):
        return {"failureId": data["failureId"], "attempt": data.get("attempt", 0)}
    return None


def rotate(envelope: Envelope, *, now: datetime | None = None) -> None:
    version = _version(envelope)
    credential = version.credential
    retry = _retry_of(envelope)
    if version.stage == Stage.RETIRED and version.step == Step.FAILED and retry:
        # IntegrationRetryWorker resumes a rotation that gave up: from its step.
        if credential.versions.filter(stage=Stage.PENDING).exists():
            raise PermanentError("another rotation of this credential is in progress")
        credentials.revive(version, credential=credential)
    if version.stage != Stage.PENDING:
        return  # promoted, rolled back or given up already: a repeated command does nothing
    now = now or timezone.now()
    connection = credential.connection
    # An open circuit (the health worker or sync found the vendor down): come back when it
    # may be tried, without spending an attempt.
    until = circuits.permit(key=keys.connection(connection.pk), now=now)
    if until is not None:
        raise NotYet(until, f"connection {connection.pk}: circuit open")
    # A failure raises: this message's writes roll back and the runtime retries it (its
    # Failure rows say why); on_dead writes the last reason on the version.
    if version.step == Step.CREATED:
        set_at_vendor(version, connection)
        # Committed with this message; step 2 is a message of its own, so a crash from here
        # on never reaches the vendor's key API again.
        tenant = Tenant.objects.get(pk=envelope.tenant_id)
        credentials._send_rotation(version, tenant, retry=retry)
        return
    if version.step == Step.SET:
        accepted, why = vendor.verify(connection, version.value)
        if not accepted:
            raise VerificationFailed(why)
        version.step = Step.VERIFIED
        version.save(update_fields=["step"])
    if version.step == Step.VERIFIED:
        promote(version, credential, now=now)


def set_at_vendor(version: CredentialVersion, connection: IntegrationConnection) -> None:
    """Step 1: the new secret from the vendor, stored on the pending version. A method the
    provider cannot honour (a key API GitHub does not have; a row from before the registry
    said so) is refused before the vendor is asked anything: MethodRefused, permanent, so the
    runtime gives up at once and on_dead reports it."""
    credential = version.credential
    if credential.method not in (Method.OAUTH2_REFRESH, Method.VENDOR_KEY):
        raise PermanentError("this credential's new secret comes from its operator: none was sent")
    vendor.refuse_method(connection, credential.method)
    current = credential.versions.get(stage=Stage.CURRENT)
    if credential.method == Method.OAUTH2_REFRESH:
        secret = vendor.refresh(connection, current.value)
    else:
        key_id, secret = vendor.create_key(
            connection,
            current.value,
            idempotency_key=f"rotation-{version.pk}",
            name=f"platform-{credential.pk.hex[:8]}-{version.rotation_token}"[:100],
        )
        version.vendor_key_id = key_id
    version.secret = credentials._encode(secret)
    version.key_fingerprint = keyring.newest_fingerprint()
    version.step = Step.SET
    version.last_error = ""
    version.save(update_fields=["secret", "key_fingerprint", "step", "vendor_key_id", "last_error"])


def promote(
    version: CredentialVersion, credential: IntegrationCredential, *, now: datetime
) -> None:
    """Step 4, in one transaction: previous → retired, current → previous, pending → current."""
    staged = {
        v.stage: v for v in credential.versions.filter(stage__in=[Stage.CURRENT, Stage.PREVIOUS])
    }
    if (older := staged.get(Stage.PREVIOUS)) is not None:
        older.stage, older.retired = Stage.RETIRED, now
        older.save(update_fields=["stage", "retired"])
    current = staged.get(Stage.CURRENT)
    if current is not None:
        current.stage = Stage.PREVIOUS
        current.expires = now + timedelta(seconds=credential.grace_seconds)
        current.save(update_fields=["stage", "expires"])
    version.stage, version.step, version.promoted = Stage.CURRENT, Step.DONE, now
    version.last_error = ""
    version.save(update_fields=["stage", "step", "promoted", "last_error"])
    credential.rotated_at = now
    credential.next_rotation_at = (
        now + timedelta(days=credential.rotate_every_days) if credential.rotate_every_days else None
    )
    credential.updated = now
    credential.save(update_fields=["rotated_at", "next_rotation_at", "updated"])
    services.publish(
        tenant=Tenant.objects.get(pk=credential.tenant_id),
        type="CredentialRotated",
        data={
            "credentialId": str(credential.pk),
            "connectionId": str(credential.connection_id),
            "versionId": str(version.pk),
            "rotationToken": version.rotation_token,
            "previousVersionId": str(current.pk) if current else None,
            "previousExpires": current.expires.isoformat() if current and current.expires else None,
            "keyFingerprint": version.key_fingerprint,
            "method": version.source,
        },
        source="credentials",
        source_id=f"{credential.pk}:{version.rotation_token}",
        event_id=uuid.uuid5(EVENTS, f"rotated|{version.pk}"),
    )
    _resolve_failures(credential, now=now)


def _resolve_failures(credential: IntegrationCredential, *, now: datetime) -> None:
    """The credential works again: its open rotation failures are resolved (IntegrationRetryWorker
    stops retrying them), in this transaction."""
    try:
        from integrations.failures.services import resolve_subject
    except ImportError:  # the failures app is not installed
        return
    resolve_subject(
        tenant_id=credential.tenant_id, kind="rotation", subject_id=str(credential.pk), at=now
    )


def on_dead(envelope: Envelope, reason: str) -> None:
    """The runtime gave up on a rotation: its version is retired as failed (current
    untouched), and IntegrationFailed says so, once per (failureId, attempt). The failureId is
    the one a resume carried, or one derived from the version, the same on every report."""
    if envelope.type != "CredentialRotationRequested":
        return
    version = (
        CredentialVersion.objects.select_for_update()
        .select_related("credential__connection")
        .filter(
            tenant_id=envelope.tenant_id,
            credential_id=envelope.data.get("credentialId"),
            rotation_token=envelope.data.get("rotationToken"),
        )
        .first()
    )
    if version is None or version.stage not in (Stage.PENDING, Stage.RETIRED):
        return
    if version.stage == Stage.RETIRED and version.step != Step.FAILED:
        return
    step = version.step
    if version.stage == Stage.PENDING:
        version.stage, version.step, version.retired = Stage.RETIRED, Step.FAILED, timezone.now()
        version.last_error = f"step {step}: {reason}"[:1000]
        version.save(update_fields=["stage", "step", "retired", "last_error"])
    retry = _retry_of(envelope) or {}
    failure_id = str(
        retry.get("failureId") or uuid.uuid5(EVENTS, f"rotation|{version.pk}|{version.attempts}")
    )
    attempt = retry.get("attempt", 0)
    attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
    credential, connection = version.credential, version.credential.connection
    data = _failed_data(
        failure_id=failure_id,
        attempt=attempt,
        error=f"rotation {version.rotation_token} failed at step {step}: {reason}",
        error_class=_error_class(reason),
        provider=connection.provider,
        subject=f"{credential} of {connection.name}",
        credentialId=str(credential.pk),
        rotationToken=version.rotation_token,
        connectionId=str(connection.pk),
    )
    services.publish(
        tenant=Tenant.objects.get(pk=envelope.tenant_id),
        type="IntegrationFailed",
        data=data,
        source="credentials",
        source_id=failure_id,
        event_id=uuid.uuid5(EVENTS, f"failed|{failure_id}|{attempt}"),
    )


def _failed_data(*, failure_id: str, kind: str = "rotation", **fields: Any) -> dict[str, Any]:
    """IntegrationFailed's data by the failures app's contract, when it is installed."""
    try:
        from integrations.failures.contract import failed_data
    except ImportError:
        ids = {k: v for k, v in fields.items() if k[0].islower() and "_" not in k}
        return {"failureId": failure_id, "kind": kind, **ids}
    return failed_data(failure_id=failure_id, kind=kind, **fields)


def _error_class(reason: str) -> str:
    if "VendorRefused" in reason or "VerificationFailed" in reason:
        return "auth"
    if "VendorFailed" in reason or "TransientError" in reason:
        return "transient"
    return "permanent"


# --- The schedule ----------------------------------------------------------------------------


def tick(envelope: Envelope) -> None:
    """Start the rotations due by the slot's time; revoke keys whose grace period ended."""
    slot = _slot_time(envelope)
    start_due(tenant_id=envelope.tenant_id, now=slot)
    retire_expired(tenant_id=envelope.tenant_id, now=slot)


def _slot_time(envelope: Envelope) -> datetime:
    text = envelope.data.get("windowEnd")
    return (parse_datetime(text) if isinstance(text, str) else None) or envelope.occurred_at


def start_due(*, tenant_id: Any, now: datetime) -> int:
    due = IntegrationCredential.objects.filter(
        tenant_id=tenant_id,
        next_rotation_at__lte=now,
        method__in=[Method.VENDOR_KEY, Method.OAUTH2_REFRESH],
    ).exclude(versions__stage=Stage.PENDING)
    started = 0
    for credential in due.select_related("connection"):
        assert credential.next_rotation_at is not None
        token = f"scheduled-{credential.next_rotation_at:%Y%m%dT%H%M%S}"
        if _refused(credential) and credential.versions.filter(rotation_token=token).exists():
            # Its provider cannot rotate it this way: the slot's rotation failed and said so
            # once (IntegrationFailed, permanent); reviving it every tick would say it again.
            continue
        try:
            _, created = credentials.request_rotation(credential=credential, token=token, now=now)
        except credentials.Conflict as exc:
            log.info("credential %s: scheduled rotation not started: %s", credential.pk, exc)
            continue
        started += created
    return started


def _refused(credential: IntegrationCredential) -> bool:
    try:
        vendor.refuse_method(credential.connection, credential.method)
    except PermanentError:
        return True
    return False


def retire_expired(*, tenant_id: Any, now: datetime) -> int:
    """Previous versions past their grace period are retired; the vendor keys of retired
    versions are revoked, authenticated with the current secret. A revocation that fails is
    tried again at the next tick."""
    CredentialVersion.objects.filter(
        tenant_id=tenant_id, stage=Stage.PREVIOUS, expires__lte=now
    ).update(stage=Stage.RETIRED, retired=now)
    to_revoke = (
        CredentialVersion.objects.filter(
            tenant_id=tenant_id, stage=Stage.RETIRED, vendor_revoked_at__isnull=True
        )
        .exclude(vendor_key_id="")
        .select_related("credential__connection")
    )
    revoked = 0
    for version in to_revoke:
        connection = version.credential.connection
        try:
            secret = credentials.current_secret(connection=connection)
            vendor.revoke_key(connection, secret, key_id=version.vendor_key_id)
        except Exception as exc:
            log.warning(
                "credential %s: revoking key %s failed: %s",
                version.credential_id,
                version.vendor_key_id,
                describe(exc),
            )
            continue
        version.vendor_revoked_at = now
        version.save(update_fields=["vendor_revoked_at"])
        revoked += 1
    return revoked
