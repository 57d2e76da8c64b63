"""The connections and credentials API, under /api/integrations/: connections (CRUD),
credentials (create, metadata, versions, rotate, rollback, policy) and the provider registry
(read-only). Thin views over integrations.connections' selectors and services, with input and
output serializers. Every lookup is by the caller's tenant, so another tenant's connection or
credential is simply not found.

A credential's secret goes in (at creation, or with a rotation to a secret its operator
supplies) and never comes out: no reply carries it, nor any part of it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, paged
from core.auth import TenantPrincipal
from core.models import Tenant
from core.openapi import errors
from integrations.connections import credentials as services
from integrations.connections import providers, selectors
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)

MAX_SECRET_FIELDS = 50


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _tenant(request: Request) -> Tenant:
    assert isinstance(request.user, TenantPrincipal)  # IsTenant let no one else in
    return request.user.tenant


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data))


NAMES = {
    "base_url": "baseUrl",
    "cadence_seconds": "cadenceSeconds",
    "status_reason": "statusReason",
    "rotate_every_days": "rotateEveryDays",
    "grace_seconds": "graceSeconds",
}


def _refused(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A service's refusal as a 400, its fields named as the API names them."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(
            {NAMES.get(name, name): messages for name, messages in exc.message_dict.items()}
        )
    return exceptions.ValidationError({"error": exc.messages})


# --- Connections -----------------------------------------------------------------------------


class ConnectionOutput(serializers.ModelSerializer[IntegrationConnection]):
    baseUrl = serializers.CharField(
        source="base_url", help_text="Empty: the provider's default base URL."
    )
    cadenceSeconds = serializers.IntegerField(source="cadence_seconds")
    statusReason = serializers.CharField(source="status_reason")
    config = serializers.JSONField()
    streams = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = IntegrationConnection
        fields = [
            "id", "provider", "name", "baseUrl", "config", "streams", "cadenceSeconds",
            "status", "statusReason", "created", "updated",
        ]  # fmt: skip


class ConnectionInput(serializers.Serializer[Any]):
    provider = serializers.CharField(max_length=50, help_text="GET /api/integrations/providers.")
    name = serializers.CharField(max_length=200)
    baseUrl = serializers.URLField(
        max_length=2000,
        default="",
        allow_blank=True,
        help_text="A self-hosted instance (GitHub Enterprise, Jira Data Center); empty for the "
        "provider's own.",
    )
    config = serializers.DictField(
        default=dict, help_text="Provider settings (owner and repo, a JQL, ...)."
    )
    streams = serializers.ListField(
        child=serializers.CharField(max_length=100), default=list, max_length=50
    )
    cadenceSeconds = serializers.IntegerField(default=3600, min_value=60, max_value=7 * 86400)


class ConnectionPatchInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    baseUrl = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    config = serializers.DictField(required=False)
    streams = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    cadenceSeconds = serializers.IntegerField(required=False, min_value=60, max_value=7 * 86400)
    status = serializers.ChoiceField(
        choices=IntegrationConnection.Status.values,
        required=False,
        help_text="Pause a connection, or make it active again (which clears its reason).",
    )
    statusReason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class NewestFirst(Pager):
    """Connections, credentials and versions alike: newest first."""

    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


CONNECTION_ID = OpenApiParameter(
    "connection_id", str, OpenApiParameter.PATH, description="The connection's id (a UUID)."
)


def _connection_or_404(request: Request, connection_id: str) -> IntegrationConnection:
    found = selectors.connection(tenant=_tenant(request), connection_id=connection_id)
    if found is None:
        raise exceptions.NotFound(f"No connection {connection_id} for this tenant.")
    return found


class ConnectionListView(APIView):
    """POST /api/integrations/connections: connect a provider. GET: the tenant's connections,
    newest first, paged."""

    pagination_class = NewestFirst

    @extend_schema(
        summary="Create a connection",
        request=ConnectionInput,
        responses={201: ConnectionOutput, **errors(400, 401, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = ConnectionInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = _plain(body.validated_data)
        try:
            created = services.create_connection(
                tenant=_tenant(request),
                provider=v["provider"],
                name=v["name"],
                base_url=v["baseUrl"],
                config=v["config"],
                streams=v["streams"],
                cadence_seconds=v["cadenceSeconds"],
            )
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        except services.Conflict as exc:
            raise Conflict(str(exc)) from None
        return Response(ConnectionOutput(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List connections",
        responses={200: ConnectionOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        found = selectors.connections(tenant=_tenant(request))
        return paged(self, request, found, output=ConnectionOutput)


class ConnectionDetailView(APIView):
    """GET, PATCH and DELETE one connection. Deleting it deletes its credentials."""

    @extend_schema(
        summary="A connection",
        parameters=[CONNECTION_ID],
        responses={200: ConnectionOutput, **errors(401, 404)},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        return Response(ConnectionOutput(_connection_or_404(request, connection_id)).data)

    @extend_schema(
        summary="Change a connection",
        parameters=[CONNECTION_ID],
        request=ConnectionPatchInput,
        responses={200: ConnectionOutput, **errors(400, 401, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, connection_id: str) -> Response:
        found = _connection_or_404(request, connection_id)
        body = ConnectionPatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        v = _plain(body.validated_data)
        columns = {api: model for model, api in NAMES.items()}
        try:
            services.update_connection(
                connection=found, **{columns.get(k, k): x for k, x in v.items()}
            )
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        except services.Conflict as exc:
            raise Conflict(str(exc)) from None
        return Response(ConnectionOutput(_connection_or_404(request, connection_id)).data)

    @extend_schema(
        summary="Delete a connection",
        parameters=[CONNECTION_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, connection_id: str) -> Response:
        services.delete_connection(connection=_connection_or_404(request, connection_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Credentials -----------------------------------------------------------------------------


class VersionOutput(serializers.ModelSerializer[CredentialVersion]):
    """A credential version's metadata: never its secret."""

    rotationToken = serializers.CharField(source="rotation_token")
    keyFingerprint = serializers.CharField(
        source="key_fingerprint",
        help_text="Which FERNET_KEYS key encrypted it (manage.py reencrypt_secrets lists them).",
    )
    vendorKeyId = serializers.CharField(source="vendor_key_id")
    vendorRevokedAt = serializers.DateTimeField(source="vendor_revoked_at", allow_null=True)
    lastError = serializers.CharField(source="last_error")

    class Meta:
        model = CredentialVersion
        fields = [
            "id", "rotationToken", "stage", "step", "source", "keyFingerprint", "vendorKeyId",
            "vendorRevokedAt", "attempts", "lastError", "created", "promoted", "expires",
            "retired",
        ]  # fmt: skip


# The current and pending versions of a credential, or null.
extend_schema_field_version = extend_schema_field(VersionOutput(allow_null=True))


class CredentialOutput(serializers.ModelSerializer[IntegrationCredential]):
    """A credential's metadata, with its current and pending versions: never a secret."""

    connectionId = serializers.UUIDField(source="connection_id")
    rotateEveryDays = serializers.IntegerField(source="rotate_every_days", allow_null=True)
    graceSeconds = serializers.IntegerField(source="grace_seconds")
    rotatedAt = serializers.DateTimeField(source="rotated_at", allow_null=True)
    nextRotationAt = serializers.DateTimeField(source="next_rotation_at", allow_null=True)
    current = serializers.SerializerMethodField()
    pending = serializers.SerializerMethodField()

    class Meta:
        model = IntegrationCredential
        fields = [
            "id", "connectionId", "name", "kind", "method", "rotateEveryDays", "graceSeconds",
            "rotatedAt", "nextRotationAt", "current", "pending", "created", "updated",
        ]  # fmt: skip

    def _staged(self, credential: IntegrationCredential, stage: str) -> dict[str, Any] | None:
        staged = getattr(credential, "staged", None)
        if staged is None:
            staged = list(
                selectors.versions(credential=credential).filter(stage__in=selectors.STAGED)
            )
        found = next((v for v in staged if v.stage == stage), None)
        return dict(VersionOutput(found).data) if found else None

    @extend_schema_field_version
    def get_current(self, credential: IntegrationCredential) -> dict[str, Any] | None:
        return self._staged(credential, CredentialVersion.Stage.CURRENT)

    @extend_schema_field_version
    def get_pending(self, credential: IntegrationCredential) -> dict[str, Any] | None:
        return self._staged(credential, CredentialVersion.Stage.PENDING)


class SecretField(serializers.DictField):
    """A secret, as JSON: {"token": ...}, {"email": ..., "api_token": ...}, or an OAuth 2.0
    {"access_token", "refresh_token", "client_id", "client_secret"}. Write-only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(max_length=4096), write_only=True, **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not value:
            raise serializers.ValidationError("A secret is a non-empty JSON object.")
        if len(value) > MAX_SECRET_FIELDS:
            raise serializers.ValidationError(f"At most {MAX_SECRET_FIELDS} fields.")
        return dict(value)


class CredentialInput(serializers.Serializer[Any]):
    connectionId = serializers.UUIDField()
    secret = SecretField(help_text="Stored encrypted; never shown again, by any reply.")
    name = serializers.CharField(max_length=200, default="", allow_blank=True)
    kind = serializers.ChoiceField(
        choices=IntegrationCredential.Kind.values, default=IntegrationCredential.Kind.TOKEN
    )
    method = serializers.ChoiceField(
        choices=IntegrationCredential.Method.values,
        default=IntegrationCredential.Method.OPERATOR,
        help_text="How a rotation gets its new secret: vendor_key (the vendor's key API), "
        "oauth2_refresh, or operator (sent with the rotation request); only what the "
        "connection's provider can do (its rotationMethods: GitHub and Jira have no key API), "
        "else a 400 naming this field.",
    )
    rotateEveryDays = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=1000
    )
    graceSeconds = serializers.IntegerField(default=24 * 3600, min_value=0, max_value=30 * 86400)


class PolicyInput(serializers.Serializer[Any]):
    rotateEveryDays = serializers.IntegerField(
        allow_null=True,
        min_value=1,
        max_value=1000,
        help_text="Rotate every N days, counted from the last rotation; null: only on request.",
    )
    graceSeconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=30 * 86400,
        help_text="How long the previous version keeps working after a rotation.",
    )


class RotateInput(serializers.Serializer[Any]):
    credentialId = serializers.UUIDField()
    rotationToken = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,64}$",
        help_text="Your idempotency token (1-64 of A-Z a-z 0-9 . _ : -): the same token again "
        "is the same rotation; another while one is pending is a 409.",
    )
    secret = SecretField(
        required=False,
        help_text="The new secret, for a credential whose operator supplies it.",
    )


class CredentialFilters(serializers.Serializer[Any]):
    connectionId = serializers.UUIDField(required=False)


CREDENTIAL_ID = OpenApiParameter(
    "credential_id", str, OpenApiParameter.PATH, description="The credential's id (a UUID)."
)


def _credential_or_404(request: Request, credential_id: str) -> IntegrationCredential:
    found = selectors.credential(tenant=_tenant(request), credential_id=credential_id)
    if found is None:
        raise exceptions.NotFound(f"No credential {credential_id} for this tenant.")
    return found


class CredentialListView(APIView):
    """POST /api/integrations/credentials: a credential for a connection, its first version
    current at once. GET: the tenant's credentials (of one connection with connectionId)."""

    pagination_class = NewestFirst

    @extend_schema(
        summary="Create a credential",
        request=CredentialInput,
        responses={201: CredentialOutput, **errors(400, 401, 404, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = CredentialInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        connection = _connection_or_404(request, str(v["connectionId"]))
        try:
            created = services.create_credential(
                connection=connection,
                secret=v["secret"],
                kind=v["kind"],
                method=v["method"],
                name=v["name"],
                rotate_every_days=v["rotateEveryDays"],
                grace_seconds=v["graceSeconds"],
            )
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        found = _credential_or_404(request, str(created.pk))
        return Response(CredentialOutput(found).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List credentials",
        parameters=[CredentialFilters],
        responses={200: CredentialOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = CredentialFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        connection_id = query.validated_data.get("connectionId")
        found = selectors.credentials(
            tenant=_tenant(request),
            connection_id=str(connection_id) if connection_id else None,
        )
        return paged(self, request, found, output=CredentialOutput)


class CredentialDetailView(APIView):
    """GET one credential's metadata; DELETE it, with every version."""

    @extend_schema(
        summary="A credential",
        parameters=[CREDENTIAL_ID],
        responses={200: CredentialOutput, **errors(401, 404)},
    )
    def get(self, request: Request, credential_id: str) -> Response:
        return Response(CredentialOutput(_credential_or_404(request, credential_id)).data)

    @extend_schema(
        summary="Delete a credential",
        parameters=[CREDENTIAL_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, credential_id: str) -> Response:
        _credential_or_404(request, credential_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListView(APIView):
    """GET a credential's versions, newest first: stage, step, key fingerprint, vendor key id,
    errors. Never a secret."""

    pagination_class = NewestFirst

    @extend_schema(
        summary="A credential's versions",
        parameters=[CREDENTIAL_ID],
        responses={200: VersionOutput(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, credential_id: str) -> Response:
        found = _credential_or_404(request, credential_id)
        return paged(self, request, selectors.versions(credential=found), output=VersionOutput)


class RotateView(APIView):
    """POST /api/integrations/credentials/rotate: start a rotation under your token.
    CredentialRotationWorker sets the new secret at the vendor (or takes yours), tests it with
    the provider's verification request and promotes it; the current version stays current
    until then, and the previous one keeps working for the grace period. 202 when this
    request started it, 200 for a token already known (its version, as it stands)."""

    @extend_schema(
        summary="Rotate a credential",
        request=RotateInput,
        responses={
            202: VersionOutput,
            200: VersionOutput,
            **errors(400, 401, 404, 409, 413, 415),
        },
    )
    def post(self, request: Request) -> Response:
        body = RotateInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        credential = _credential_or_404(request, str(v["credentialId"]))
        try:
            version, started = services.request_rotation(
                credential=credential, token=v["rotationToken"], secret=v.get("secret")
            )
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        except services.Conflict as exc:
            raise Conflict(str(exc)) from None
        code = status.HTTP_202_ACCEPTED if started else status.HTTP_200_OK
        return Response(VersionOutput(version).data, status=code)


class RollbackView(APIView):
    """POST: make the previous version current again, in one step (the current one becomes
    previous, still usable for the grace period). 409 when there is no previous version."""

    @extend_schema(
        summary="Roll a credential back",
        parameters=[CREDENTIAL_ID],
        request=None,
        responses={200: CredentialOutput, **errors(401, 404, 409)},
    )
    def post(self, request: Request, credential_id: str) -> Response:
        found = _credential_or_404(request, credential_id)
        try:
            services.rollback(credential=found)
        except services.Conflict as exc:
            raise Conflict(str(exc)) from None
        return Response(CredentialOutput(_credential_or_404(request, credential_id)).data)


class PolicyView(APIView):
    """PUT a credential's rotation policy: every N days (null: only on request) and the grace
    period of the previous version."""

    @extend_schema(
        summary="Set a credential's rotation policy",
        parameters=[CREDENTIAL_ID],
        request=PolicyInput,
        responses={200: CredentialOutput, **errors(400, 401, 404, 413, 415)},
    )
    def put(self, request: Request, credential_id: str) -> Response:
        found = _credential_or_404(request, credential_id)
        body = PolicyInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        try:
            services.set_policy(
                credential=found,
                rotate_every_days=v["rotateEveryDays"],
                grace_seconds=v.get("graceSeconds"),
            )
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        return Response(CredentialOutput(_credential_or_404(request, credential_id)).data)


# --- Providers -------------------------------------------------------------------------------


class ProviderOutput(serializers.Serializer[Any]):
    """A provider of the registry, as it describes itself."""

    name = serializers.CharField()
    title = serializers.CharField()
    defaultBaseUrl = serializers.CharField()
    authKinds = serializers.ListField(child=serializers.CharField())
    rotation = serializers.CharField(required=False)
    rotationMethods = serializers.ListField(
        child=serializers.CharField(),
        help_text="How its credentials can get a new secret: operator, oauth2_refresh, "
        "vendor_key (the generic provider's key API and token endpoint are a connection's "
        "config).",
    )
    streams = serializers.ListField(child=serializers.DictField())
    description = serializers.DictField(
        help_text="Everything else the registry declares (rate limits, retries, key API, ...)."
    )


class ProviderListView(APIView):
    """GET /api/integrations/providers: the provider registry (read-only)."""

    @extend_schema(
        summary="List providers",
        responses={200: ProviderOutput(many=True), **errors(401)},
    )
    def get(self, request: Request) -> Response:
        rows = []
        for provider in providers.all():
            described = _plain(provider.describe())
            rows.append(
                {
                    "name": provider.name,
                    "title": provider.title,
                    "defaultBaseUrl": provider.default_base_url,
                    "authKinds": list(provider.auth_kinds),
                    "rotation": provider.rotation,
                    "rotationMethods": described["rotationMethods"],
                    "streams": described.get("streams", []),
                    "description": described,
                }
            )
        return Response(ProviderOutput(rows, many=True).data)
