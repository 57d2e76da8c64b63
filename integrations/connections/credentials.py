"""Connections and credentials: the writes, and the one read every caller authenticates with.

`current_secret(connection=...)` is what sync and health call. A credential's versions are
staged as AWS Secrets Manager stages them (see models): `request_rotation` creates the pending
version under the caller's rotation token and sends CredentialRotationWorker its command; the
worker (integrations.connections.rotation) sets it at the vendor, verifies it and promotes it.

The rotation token makes every request idempotent, AWS's ClientRequestToken semantics:
- the same token again is the same version (a no-op when it is already current);
- the same token with a different secret is a Conflict (409);
- a different token while another rotation is pending is a Conflict (409).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import outbound, services
from core.models import Tenant
from integrations.connections import keyring
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)

if TYPE_CHECKING:
    from integrations.connections.providers import Provider

Stage, Step = CredentialVersion.Stage, CredentialVersion.Step
Method = IntegrationCredential.Method
WORKER = "CredentialRotationWorker"
INITIAL_TOKEN = "initial"
MAX_SECRET_BYTES = 16 * 1024


class Conflict(Exception):
    """The request contradicts the credential's state (the API answers 409)."""


class NoCredential(LookupError):
    """The connection has no usable credential."""


# --- Connections -----------------------------------------------------------------------------


def provider_names() -> list[str] | None:
    """The registry's provider names; None while the registry has not landed (then any name
    is accepted, and checked once it has)."""
    try:
        from integrations.connections import providers
    except ImportError:
        return None
    every = getattr(providers, "all", None)
    return sorted(p.name for p in every()) if every is not None else None


def check_provider(name: str) -> None:
    known = provider_names()
    if known is not None and name not in known:
        raise ValidationError({"provider": [f"Unknown provider {name!r}; known: {known}."]})


def check_connection(connection: IntegrationConnection) -> None:
    """What the registry and the outbound guard say of a connection, before it is saved:
    streams the provider has, a base URL the platform may call (the same guard as a webhook
    URL, so its owner hears at once rather than at the first sync), and, for a stored one
    being changed, a base URL and config under which its credentials still work: their auth
    kind (a Jira OAuth 2.0 token works only through Atlassian's gateway) and their rotation
    method (a generic connection's key API is in its config; without it a vendor_key
    rotation would fail at its next turn)."""
    from integrations.connections import vendor

    check_provider(connection.provider)
    provider = vendor.provider_of(connection.provider)
    if provider is not None and connection.streams:
        known = [stream.name for stream in provider.streams]
        unknown = [name for name in connection.streams if name not in known]
        if unknown:
            raise ValidationError({"streams": [f"Unknown streams {unknown}; known: {known}."]})
    if connection.base_url:
        try:
            outbound.check_url(connection.base_url)
        except outbound.BlockedDestination as exc:
            raise ValidationError({"base_url": [str(exc)]}) from None
    if provider is not None and connection.pk is not None:
        _check_credentials_under(connection, provider)


def _check_credentials_under(connection: IntegrationConnection, provider: Provider) -> None:
    """Refuse a change under which a credential that works as stored would not. One that
    did not work before (a row from before the registry refused it) is left to the rotation,
    which reports it, rather than blocking every other change of its connection."""
    stored = (
        IntegrationConnection.objects.filter(tenant_id=connection.tenant_id, pk=connection.pk)
        .values_list("base_url", "config")
        .first()
    )
    if stored is None:
        return  # a new connection: no credential yet
    base_url, config = stored
    credentials = IntegrationCredential.objects.filter(
        tenant_id=connection.tenant_id, connection_id=connection.pk
    ).values_list("name", "kind", "method")
    for name, kind, method in credentials:
        called = f"Credential {name!r}" if name else "A credential of this connection"
        why = provider.refuse_kind(kind, base_url=connection.base_url)
        if why is not None and provider.refuse_kind(kind, base_url=base_url) is None:
            raise ValidationError({"base_url": [f"{called} would no longer work: {why}"]})
        why = provider.refuse_method(method, connection.config or {})
        if why is not None and provider.refuse_method(method, config or {}) is None:
            raise ValidationError(
                {"config": [f"{called} rotates by {method}, which would no longer work: {why}"]}
            )


def create_connection(
    *,
    tenant: Tenant,
    provider: str,
    name: str,
    base_url: str = "",
    config: dict[str, Any] | None = None,
    streams: list[str] | None = None,
    cadence_seconds: int = 3600,
) -> IntegrationConnection:
    connection = IntegrationConnection(
        tenant=tenant,
        provider=provider,
        name=name,
        base_url=base_url,
        config=config or {},
        streams=streams or [],
        cadence_seconds=cadence_seconds,
    )
    connection.full_clean(validate_constraints=False)  # the name: a 409, from the save
    check_connection(connection)
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise Conflict(f"This tenant already has a connection named {name!r}.") from None
    return connection


EDITABLE = {"name", "base_url", "config", "streams", "cadence_seconds", "status", "status_reason"}


def update_connection(
    *, connection: IntegrationConnection, **changes: Any
) -> IntegrationConnection:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(connection, name, value)
    if "status" in changes and changes["status"] == IntegrationConnection.Status.ACTIVE:
        connection.status_reason = changes.get("status_reason", "")
    connection.updated = timezone.now()
    connection.full_clean(validate_constraints=False)  # the name: a 409, from the save
    check_connection(connection)
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise Conflict(f"This tenant already has a connection named {connection.name!r}.") from None
    return connection


def delete_connection(*, connection: IntegrationConnection) -> None:
    connection.delete()


# --- Credentials -----------------------------------------------------------------------------


def _encode(secret: dict[str, Any]) -> str:
    if not isinstance(secret, dict) or not secret:
        raise ValidationError({"secret": ["A secret is a non-empty JSON object."]})
    text = json.dumps(secret, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > MAX_SECRET_BYTES:
        raise ValidationError({"secret": [f"A secret is at most {MAX_SECRET_BYTES} bytes."]})
    return text


def check_credential(
    *, connection: IntegrationConnection, kind: str, method: str, secret: dict[str, Any] | None
) -> None:
    """What the connection's provider says of a credential before it exists (the API and the
    admin's add form both ask this): an auth kind it accepts, a rotation method it can honour
    (a key API only where it has one: GitHub and Jira have none), and for an OAuth 2.0 refresh
    a secret its token endpoint can use. ValidationError naming the field."""
    from integrations.connections import vendor

    provider = vendor.provider_of(connection.provider)
    if provider is None:
        raise ValidationError({"connection": [f"Unknown provider {connection.provider!r}."]})
    config = connection.config or {}
    if (why := provider.refuse_kind(kind, base_url=connection.base_url)) is not None:
        raise ValidationError({"kind": [why]})
    if (why := provider.refuse_method(method, config)) is not None:
        raise ValidationError({"method": [why]})
    if (
        method == Method.OAUTH2_REFRESH
        and secret is not None
        and provider.token_request(secret=secret, config=config) is None
    ):
        raise ValidationError(
            {
                "secret": [
                    "An OAuth 2.0 refresh needs the secret's client_id (and client_secret) and "
                    "refresh_token."
                ]
            }
        )


def check_policy(*, credential: IntegrationCredential, rotate_every_days: int | None) -> None:
    """A schedule only for a credential its provider can rotate without an operator: one whose
    method it can honour (a row from before the registry refused it is not scheduled)."""
    if not rotate_every_days or credential.method == Method.OPERATOR:
        return
    from integrations.connections import vendor

    provider = vendor.provider_of(credential.connection.provider)
    why = (
        provider.refuse_method(credential.method, credential.connection.config or {})
        if provider is not None
        else f"provider {credential.connection.provider!r} is not in the registry"
    )
    if why is not None:
        raise ValidationError(
            {"rotate_every_days": [f"No scheduled rotation: {why} Supply new secrets instead."]}
        )


def _next_rotation(credential: IntegrationCredential, *, now: datetime) -> datetime | None:
    days = credential.rotate_every_days
    return now + timedelta(days=days) if days else None


@transaction.atomic
def create_credential(
    *,
    connection: IntegrationConnection,
    secret: dict[str, Any],
    kind: str = IntegrationCredential.Kind.TOKEN,
    method: str = Method.OPERATOR,
    name: str = "",
    rotate_every_days: int | None = None,
    grace_seconds: int = 24 * 3600,
    now: datetime | None = None,
) -> IntegrationCredential:
    """A credential with its first version, current at once (it was not verified: the
    connection's first sync or probe is its test)."""
    now = now or timezone.now()
    check_credential(connection=connection, kind=kind, method=method, secret=secret)
    credential = IntegrationCredential(
        tenant_id=connection.tenant_id,
        connection=connection,
        name=name,
        kind=kind,
        method=method,
        rotate_every_days=rotate_every_days,
        grace_seconds=grace_seconds,
        rotated_at=now,
        created=now,
        updated=now,
    )
    credential.next_rotation_at = _next_rotation(credential, now=now)
    credential.full_clean()
    credential.save()
    CredentialVersion.objects.create(
        tenant_id=connection.tenant_id,
        credential=credential,
        stage=Stage.CURRENT,
        step=Step.DONE,
        rotation_token=INITIAL_TOKEN,
        source="initial",
        secret=_encode(secret),
        key_fingerprint=keyring.newest_fingerprint(),
        created=now,
        promoted=now,
    )
    return credential


def set_policy(
    *,
    credential: IntegrationCredential,
    rotate_every_days: int | None,
    grace_seconds: int | None = None,
    now: datetime | None = None,
) -> IntegrationCredential:
    """The rotation policy; the next scheduled rotation counts from the last rotation."""
    now = now or timezone.now()
    check_policy(credential=credential, rotate_every_days=rotate_every_days)
    credential.rotate_every_days = rotate_every_days
    if grace_seconds is not None:
        credential.grace_seconds = grace_seconds
    credential.next_rotation_at = _next_rotation(credential, now=credential.rotated_at or now)
    credential.updated = now
    credential.full_clean()
    credential.save()
    return credential


def usable_versions(
    *, credential: IntegrationCredential, now: datetime | None = None
) -> list[CredentialVersion]:
    """The current version, then the previous one while its grace period lasts."""
    now = now or timezone.now()
    versions = credential.versions.filter(stage__in=[Stage.CURRENT, Stage.PREVIOUS])
    usable = [v for v in versions if v.usable(now=now)]
    return sorted(usable, key=lambda v: v.stage != Stage.CURRENT)


def current_secret(*, connection: IntegrationConnection) -> dict[str, Any]:
    """The secret the connection authenticates with now: its newest credential's current
    version. NoCredential when it has none."""
    version = (
        CredentialVersion.objects.filter(
            tenant_id=connection.tenant_id,
            credential__connection=connection,
            stage=Stage.CURRENT,
        )
        .order_by("-credential__created")
        .first()
    )
    if version is None:
        raise NoCredential(f"Connection {connection.pk} has no current credential.")
    return version.value


def store_refreshed(*, connection: IntegrationConnection, secret: dict[str, Any]) -> None:
    """Replace the current version's secret with a refreshed one (a new OAuth 2.0 access
    token, and the refresh token if the server rotated it). A refresh is not a rotation: no
    new version, nothing to verify or roll back to; the refresh token and the client are the
    credential, and they stay what the current version holds, or what the server made them."""
    version = (
        CredentialVersion.objects.select_for_update()
        .filter(
            tenant_id=connection.tenant_id,
            credential__connection=connection,
            stage=Stage.CURRENT,
        )
        .order_by("-credential__created")
        .first()
    )
    if version is None:
        return
    version.secret = json.dumps(secret, sort_keys=True)
    version.key_fingerprint = keyring.newest_fingerprint()
    version.save(update_fields=["secret", "key_fingerprint"])


def _send_rotation(
    version: CredentialVersion, tenant: Tenant, *, retry: dict[str, Any] | None = None
) -> None:
    """The command for the version's next step. `retry` ({failureId, attempt}) is carried on
    from a resume that IntegrationRetryWorker started, so a failure of any later step is
    reported as that attempt of that failure."""
    services.send(
        tenant=tenant,
        worker=WORKER,
        type="CredentialRotationRequested",
        data={
            "credentialId": str(version.credential_id),
            "rotationToken": version.rotation_token,
            "versionId": str(version.pk),
            # What makes each step's command, and each revival's, an event of its own (and a
            # key of its own: the worker's idempotency key is made of these).
            "step": version.step,
            "revival": version.attempts,
            **(retry or {}),
        },
        source="credentials",
        source_id=f"{version.credential_id}:{version.rotation_token}",
        # One command per version and revival: sending the same request twice adds nothing.
        event_id=uuid.uuid5(ROTATION_NAMESPACE, f"{version.pk}|{version.attempts}|{version.step}"),
    )


ROTATION_NAMESPACE = uuid.UUID("3d0f8a51-5c2e-4d0b-b1a7-6f3e2c9d8e14")


@transaction.atomic
def request_rotation(
    *,
    credential: IntegrationCredential,
    token: str,
    secret: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[CredentialVersion, bool]:
    """Start (or find) the rotation under `token`: (its version, whether this call started
    it). The worker does the rest. Raises Conflict and ValidationError."""
    now = now or timezone.now()
    if not token or len(token) > 64:
        raise ValidationError({"rotationToken": ["A rotation token is 1 to 64 characters."]})
    # One request at a time per credential: the row lock orders concurrent requests, and the
    # version_one_pending constraint backs it.
    credential = IntegrationCredential.objects.select_for_update().get(pk=credential.pk)
    tenant = Tenant.objects.get(pk=credential.tenant_id)
    encoded = _encode(secret) if secret is not None else None
    existing = credential.versions.filter(rotation_token=token).first()
    if existing is not None:
        if encoded is not None and existing.secret and existing.secret != encoded:
            raise Conflict(f"Rotation token {token!r} was used with a different secret.")
        if existing.step == Step.FAILED and existing.stage == Stage.RETIRED:
            revive(existing, credential=credential)
            _send_rotation(existing, tenant)
            return existing, True
        return existing, False
    pending = credential.versions.filter(stage=Stage.PENDING).first()
    if pending is not None:
        raise Conflict(
            f"Rotation {pending.rotation_token!r} is still in progress ({pending.step}); "
            "retry with its token, or wait for it to finish."
        )
    if encoded is None and credential.method == Method.OPERATOR:
        raise ValidationError(
            {"secret": ["This credential rotates to a secret its operator supplies: send it."]}
        )
    version = CredentialVersion.objects.create(
        tenant_id=credential.tenant_id,
        credential=credential,
        stage=Stage.PENDING,
        step=Step.SET if encoded is not None else Step.CREATED,
        rotation_token=token,
        source=Method.OPERATOR if encoded is not None else credential.method,
        secret=encoded or "",
        key_fingerprint=keyring.newest_fingerprint(),
        created=now,
    )
    _send_rotation(version, tenant)
    return version, True


def revive(version: CredentialVersion, *, credential: IntegrationCredential) -> None:
    """The same token again after its rotation gave up (a request, or IntegrationRetryWorker's
    resume): it is pending again, from its step, unless another rotation is pending now."""
    if credential.versions.filter(stage=Stage.PENDING).exists():
        raise Conflict("Another rotation is in progress; retry this token once it finishes.")
    if version.vendor_revoked_at is not None:
        # Its key was revoked since: a fresh one will be minted (under a new idempotency key).
        version.vendor_key_id, version.secret, version.vendor_revoked_at = "", "", None
    version.stage = Stage.PENDING
    version.step = Step.SET if version.secret else Step.CREATED
    version.retired = None
    version.last_error = ""
    version.attempts += 1
    version.save()


@transaction.atomic
def rollback(
    *, credential: IntegrationCredential, now: datetime | None = None
) -> CredentialVersion:
    """Make the previous version current again, in one step; the rolled-back version becomes
    previous (still usable for the grace period, so requests in flight do not fail)."""
    now = now or timezone.now()
    credential = IntegrationCredential.objects.select_for_update().get(pk=credential.pk)
    staged = credential.versions.filter(stage__in=[Stage.CURRENT, Stage.PREVIOUS])
    versions = {v.stage: v for v in staged}
    previous, current = versions.get(Stage.PREVIOUS), versions.get(Stage.CURRENT)
    if previous is None or current is None:
        raise Conflict("There is no previous version to roll back to.")
    if previous.vendor_revoked_at is not None:
        raise Conflict("The previous version's key has been revoked at the vendor.")
    # Through a free stage, so that no two rows are ever `current` at once.
    current.stage = Stage.RETIRED
    current.save(update_fields=["stage"])
    previous.stage, previous.promoted, previous.expires = Stage.CURRENT, now, None
    previous.save(update_fields=["stage", "promoted", "expires"])
    current.stage = Stage.PREVIOUS
    current.expires = now + timedelta(seconds=credential.grace_seconds)
    current.save(update_fields=["stage", "expires"])
    credential.updated = now
    credential.save(update_fields=["updated"])
    return previous
