"""What a rotation asks of a vendor: mint a new key, refresh an OAuth 2.0 token, verify a
secret, revoke an old key. Each is one request through core.outbound, described by the
provider's registry entry (integrations.connections.providers) where it declares one, and by
the conventions below where it does not.

A key is minted under an Idempotency-Key derived from the pending version's id, which was
committed before any vendor call: a rotation that dies after the vendor minted the key and
before the key was stored asks again under the same key and gets the same key back, never a
second one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from core import outbound
from core.runtime.errors import NotYet, PermanentError, TransientError
from integrations.connections import providers
from integrations.limits import decisions

TIMEOUT_SECONDS = 10.0
MAX_BODY = 64 * 1024

# Conventions for a provider that declares no key API or verification request of its own.
DEFAULT_VERIFY = ("GET", "/user")
DEFAULT_KEY_CREATE = ("POST", "/keys")
DEFAULT_KEY_REVOKE = ("DELETE", "/keys/{id}")


class VendorRefused(PermanentError):
    """The vendor said no in a way retrying cannot change (401/403 to a key or token call)."""


class VendorFailed(TransientError):
    """The vendor could not answer now (5xx, 429, a network error): worth another try."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def send(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Answer:
    """One request through core.outbound (its guard against private targets, no redirects)."""
    try:
        reply = outbound.request(
            method, url, headers=headers, body=body, timeout=TIMEOUT_SECONDS, max_body=MAX_BODY
        )
    except outbound.BlockedDestination as exc:
        raise PermanentError(str(exc)) from None
    except ValueError:  # a method core.outbound does not know: a bug of the registry's
        raise
    except Exception as exc:  # network errors, timeouts, a reply too slow: worth another try
        raise VendorFailed(f"{method} {url}: {type(exc).__name__}: {exc}") from None
    return Answer(reply.status, dict(reply.headers), bytes(reply.body))


def provider_of(name: str) -> Any:
    """The registry's provider, or None for a name it does not know: then the conventions
    above apply."""
    try:
        return providers.get(name)
    except (KeyError, LookupError):
        return None


def base_url_of(connection: Any) -> str:
    provider = provider_of(connection.provider)
    if provider is not None:
        return str(provider.base_url(connection.base_url))
    return (connection.base_url or "").rstrip("/")


def auth_headers(connection: Any, secret: dict[str, Any]) -> dict[str, str]:
    provider = provider_of(connection.provider)
    try:
        if provider is not None:
            return dict(provider.auth_headers(secret))
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    token = secret.get("token") or secret.get("access_token") or secret.get("api_key")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = secret.get("email") or secret.get("username"), secret.get("password")
    if user and password:
        pair = f"{user}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    raise PermanentError("The secret has neither a token nor a user and password.")


def verify(connection: Any, secret: dict[str, Any]) -> tuple[bool, str]:
    """The provider's verification request with `secret`: (accepted, why not)."""
    provider = provider_of(connection.provider)
    headers = auth_headers(connection, secret)
    if provider is not None:
        request = provider.verification_request(
            base_url=base_url_of(connection), config=connection.config or {}
        )
        method, url, body = request.method, request.url, request.body
        headers = {**dict(request.headers), **headers}
    else:
        method, url, body = DEFAULT_VERIFY[0], base_url_of(connection) + DEFAULT_VERIFY[1], None
    answer = send(method, url, headers=headers, body=body)
    if 200 <= answer.status < 300:
        return True, ""
    _wait_if_limited(connection, answer, "verification")
    if answer.status == 429 or answer.status >= 500:
        raise VendorFailed(f"verification answered {answer.status}")
    return False, f"verification answered {answer.status}"


def _key_api(connection: Any) -> tuple[str, str, str, str]:
    provider = provider_of(connection.provider)
    key_api = getattr(provider, "key_api", None)
    if key_api is None:
        return (*DEFAULT_KEY_CREATE, *DEFAULT_KEY_REVOKE)
    return key_api.create_method, key_api.create_path, key_api.revoke_method, key_api.revoke_path


def create_key(
    connection: Any, secret: dict[str, Any], *, idempotency_key: str, name: str
) -> tuple[str, dict[str, Any]]:
    """Mint a new key at the vendor, authenticated with the current secret: (key id, the new
    secret). The vendor replays its first answer to a repeated idempotency key."""
    method, path, _, _ = _key_api(connection)
    headers = {
        **auth_headers(connection, secret),
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
    }
    body = json.dumps({"name": name}).encode()
    answer = send(method, base_url_of(connection) + path, headers=headers, body=body)
    _raise_for(answer, "key creation", connection)
    data = answer.json() or {}
    key_id = str(data.get("id") or "")
    token = data.get("token") or data.get("key") or data.get("secret")
    if not key_id or not token:
        raise PermanentError("the vendor's key creation answer has no id or token")
    fresh = {k: v for k, v in secret.items() if k not in ("access_token", "api_token", "password")}
    return key_id, {**fresh, "token": token}


def revoke_key(connection: Any, secret: dict[str, Any], *, key_id: str) -> None:
    """Revoke a key at the vendor (gone already counts as revoked)."""
    _, _, method, path = _key_api(connection)
    url = base_url_of(connection) + path.replace("{id}", key_id)
    answer = send(method, url, headers=auth_headers(connection, secret))
    if answer.status == 404:
        return
    _raise_for(answer, "key revocation", connection)


def refresh(connection: Any, secret: dict[str, Any]) -> dict[str, Any]:
    """OAuth 2.0 refresh (RFC 6749 §6) as the provider describes it: a new access token, and
    the new refresh token if the server rotates them."""
    provider = provider_of(connection.provider)
    if provider is None:
        raise PermanentError(f"provider {connection.provider!r} is not in the registry")
    request = provider.token_request(secret=secret, config=connection.config or {})
    if request is None:
        raise PermanentError("this secret cannot mint a token (no token URL or client id)")
    answer = send(request.method, request.url, headers=dict(request.headers), body=request.body)
    _raise_for(answer, "token refresh", connection)
    try:
        return dict(provider.parse_token(secret=secret, body=answer.body, now=timezone.now()))
    except ValueError as exc:
        raise PermanentError(str(exc)) from None


def _wait_if_limited(connection: Any, answer: Answer, what: str) -> None:
    """A rate-limited reply is no failure: NotYet, until when the vendor's headers say (the
    provider's reading of them; Retry-After or a minute without one)."""
    now = timezone.now()
    provider = provider_of(connection.provider)
    if provider is not None:
        if provider.classify(answer.status, answer.headers, answer.body) != "rate_limited":
            return
        until = provider.wait_until(answer.status, answer.headers, now=now, body=answer.body)
    elif answer.status == 429:
        until = decisions.retry_after(decisions.header(answer.headers, "retry-after"), now=now)
    else:
        return
    until = until or now + timedelta(seconds=60)
    raise NotYet(until, f"{what}: rate-limited by the vendor until {until.isoformat()}")


def _raise_for(answer: Answer, what: str, connection: Any = None) -> None:
    if 200 <= answer.status < 300:
        return
    if connection is not None:
        _wait_if_limited(connection, answer, what)
    if answer.status == 429 or answer.status >= 500:
        raise VendorFailed(f"{what} answered {answer.status}")
    raise VendorRefused(f"{what} answered {answer.status}")
