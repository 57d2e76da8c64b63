"""What a rotation asks of a vendor: mint a new key, refresh an OAuth 2.0 token, verify a
secret, revoke an old key. Each is one request through core.outbound, built by the provider's
registry entry (integrations.connections.providers) and nothing else: its verification
request, its key API (for the connection's config), its token endpoint and its auth headers.
A provider that declares no key API is never sent a key request (GitHub and Jira have none:
theirs rotate by OAuth refresh or a secret the operator supplies); a provider the registry
does not know is a PermanentError, not a guess.

A key is minted under an Idempotency-Key derived from the pending version's id, which was
committed before any vendor call: a rotation that dies after the vendor minted the key and
before the key was stored asks again under the same key and gets the same key back, never a
second one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from core import outbound
from core.runtime.errors import NotYet, PermanentError, TransientError
from integrations.connections import providers
from integrations.connections.providers import Provider
from integrations.connections.providers.base import VENDOR_KEY

TIMEOUT_SECONDS = 10.0
MAX_BODY = 64 * 1024


class MethodRefused(PermanentError):
    """The provider cannot rotate this way (a key API it does not have, a token endpoint it
    does not declare): no retry can change that, and nothing is sent to the vendor."""


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


def provider_of(name: str) -> Provider | None:
    """The registry's provider, or None for a name it does not know (callers that only look,
    such as the health board, skip such a connection)."""
    try:
        return providers.get(name)
    except providers.UnknownProvider:
        return None


def provider(connection: Any) -> Provider:
    """The connection's provider; every call to a vendor goes through it."""
    found = provider_of(connection.provider)
    if found is None:
        raise PermanentError(f"provider {connection.provider!r} is not in the registry")
    return found


def base_url_of(connection: Any) -> str:
    return provider(connection).base_url(connection.base_url)


def auth_headers(connection: Any, secret: dict[str, Any]) -> dict[str, str]:
    """The provider's headers for `secret` (its auth kinds, the connection's config)."""
    try:
        return dict(provider(connection).auth_headers(secret, connection.config or {}))
    except ValueError as exc:
        raise PermanentError(str(exc)) from None


def verify(connection: Any, secret: dict[str, Any]) -> tuple[bool, str]:
    """The provider's verification request with `secret`: (accepted, why not)."""
    try:
        request = provider(connection).verification_request(
            base_url=connection.base_url, config=connection.config or {}
        )
    except ValueError as exc:  # the connection lacks what the request needs
        raise PermanentError(str(exc)) from None
    headers = {**dict(request.headers), **auth_headers(connection, secret)}
    answer = send(request.method, request.url, headers=headers, body=request.body)
    if 200 <= answer.status < 300:
        return True, ""
    _wait_if_limited(connection, answer, "verification")
    if answer.status == 429 or answer.status >= 500:
        raise VendorFailed(f"verification answered {answer.status}")
    return False, f"verification answered {answer.status}"


def refuse_method(connection: Any, method: str) -> None:
    """MethodRefused when the connection's provider cannot rotate by `method`."""
    why = provider(connection).refuse_method(method, connection.config or {})
    if why is not None:
        raise MethodRefused(why)


def create_key(
    connection: Any, secret: dict[str, Any], *, idempotency_key: str, name: str
) -> tuple[str, dict[str, Any]]:
    """Mint a new key at the provider's key API, authenticated with the current secret: (key
    id, the new secret). The vendor replays its first answer to a repeated idempotency key."""
    refuse_method(connection, VENDOR_KEY)
    found, config = provider(connection), connection.config or {}
    try:
        request = found.key_create_request(base_url=connection.base_url, config=config, name=name)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    headers = {
        **dict(request.headers),
        **auth_headers(connection, secret),
        "Idempotency-Key": idempotency_key,
    }
    answer = send(request.method, request.url, headers=headers, body=request.body)
    _raise_for(answer, "key creation", connection)
    try:
        return found.parse_key_created(config=config, secret=secret, body=answer.body)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None


def revoke_key(connection: Any, secret: dict[str, Any], *, key_id: str) -> None:
    """Revoke a key at the provider's key API (gone already counts as revoked)."""
    refuse_method(connection, VENDOR_KEY)
    try:
        request = provider(connection).key_revoke_request(
            base_url=connection.base_url, config=connection.config or {}, key_id=key_id
        )
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    headers = {**dict(request.headers), **auth_headers(connection, secret)}
    answer = send(request.method, request.url, headers=headers, body=request.body)
    if answer.status == 404:
        return
    _raise_for(answer, "key revocation", connection)


def refresh(connection: Any, secret: dict[str, Any]) -> dict[str, Any]:
    """OAuth 2.0 refresh (RFC 6749 §6) at the provider's token endpoint: a new access token,
    and the new refresh token if the server rotates them."""
    found = provider(connection)
    request = found.token_request(secret=secret, config=connection.config or {})
    if request is None:
        raise MethodRefused(
            f"{found.title}: this secret cannot mint a token (the provider declares no token "
            "endpoint or grant for it, or the secret has no client_id and refresh_token)"
        )
    answer = send(request.method, request.url, headers=dict(request.headers), body=request.body)
    _raise_for(answer, "token refresh", connection)
    try:
        return dict(found.parse_token(secret=secret, body=answer.body, now=timezone.now()))
    except ValueError as exc:
        raise PermanentError(str(exc)) from None


def _wait_if_limited(connection: Any, answer: Answer, what: str) -> None:
    """A rate-limited reply is no failure: NotYet, until when the vendor's headers say (the
    provider's reading of them, or its default wait)."""
    now = timezone.now()
    found = provider(connection)
    if found.classify(answer.status, answer.headers, answer.body) != "rate_limited":
        return
    until = found.wait_until(answer.status, answer.headers, now=now, body=answer.body)
    until = until or now + timedelta(seconds=found.rate_limit.default_wait_seconds)
    raise NotYet(until, f"{what}: rate-limited by the vendor until {until.isoformat()}")


def _raise_for(answer: Answer, what: str, connection: Any) -> None:
    if 200 <= answer.status < 300:
        return
    _wait_if_limited(connection, answer, what)
    if answer.status == 429 or answer.status >= 500:
        raise VendorFailed(f"{what} answered {answer.status}")
    raise VendorRefused(f"{what} answered {answer.status}")
