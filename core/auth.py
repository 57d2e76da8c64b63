"""Per-tenant API keys: `Authorization: Bearer pk_<lookup>_<secret>`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from core.models import ApiKey, Tenant

if TYPE_CHECKING:  # DRF imports this module while it builds APIView: not its views at run time
    from rest_framework.request import Request
    from rest_framework.views import APIView

LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class TenantPrincipal:
    """The caller of an API request: a tenant, through one of its keys."""

    tenant: Tenant
    key: ApiKey
    is_authenticated: bool = True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request | HttpRequest) -> tuple[TenantPrincipal, ApiKey] | None:
        """The caller of a DRF view, or of a plain Django view (the OTLP endpoints)."""
        # It reads the header from META, which a Django request has as well as DRF's.
        raw = authentication.get_authorization_header(cast("Request", request))
        header = raw.decode(errors="replace")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed(
                "Use the header 'Authorization: Bearer <API key>'."
            )
        key = self._key_for(token.strip())
        now = timezone.now()
        # To the minute is enough to tell a live key from a dead one, and spares every
        # request (an OTLP exporter sends many) a write.
        if key.last_used is None or now - key.last_used > LAST_USED_PRECISION:
            ApiKey.objects.filter(pk=key.pk).update(last_used=now)
        return TenantPrincipal(tenant=key.tenant, key=key), key

    def _key_for(self, token: str) -> ApiKey:
        invalid = exceptions.AuthenticationFailed(
            "Invalid or revoked API key. Create one with "
            "'manage.py create_api_key --tenant <slug>'."
        )
        prefix, _, rest = token.partition(ApiKey.PREFIX)
        lookup, _, secret = rest.partition("_")
        if prefix or not (lookup and secret):
            raise invalid
        key = ApiKey.objects.select_related("tenant").filter(lookup=lookup).first()
        if key is None or not key.matches(secret):
            raise invalid
        return key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsTenant(permissions.BasePermission):
    message = "Authentication required: send 'Authorization: Bearer <API key>'."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, TenantPrincipal)


def tenant_of(request: Request) -> Tenant:
    """The caller's tenant: the one of the API key that authenticated the request."""
    if not isinstance(request.user, TenantPrincipal):  # IsTenant lets no one else in
        raise exceptions.NotAuthenticated()
    return request.user.tenant
