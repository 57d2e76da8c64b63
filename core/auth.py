"""Per-tenant API keys: `Authorization: Bearer pk_<lookup>_<secret>`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from core.models import ApiKey, Tenant

LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class TenantPrincipal:
    """The caller of an API request: a tenant, through one of its keys."""

    tenant: Tenant
    key: ApiKey
    is_authenticated: bool = True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
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

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsTenant(permissions.BasePermission):
    message = "Authentication required: send 'Authorization: Bearer <API key>'."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, TenantPrincipal)
