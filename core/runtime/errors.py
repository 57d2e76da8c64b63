"""Failure classification: transient failures are retried, permanent ones dead-lettered at once."""

from __future__ import annotations

import requests
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DatabaseError, IntegrityError


class PermanentError(Exception):
    """Retrying cannot help: bad data, a bug, a refused request."""


class TransientError(Exception):
    """Worth retrying. `retry_after` (seconds) overrides the policy's backoff, e.g. from a
    429 or 503 Retry-After header."""

    def __init__(self, message: str = "", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Deferred(Exception):
    """Reported by a batch handler for a message it did not get to (its time ran out): the
    message is released for immediate redelivery, and no attempt is counted."""


class MalformedEnvelope(PermanentError):
    pass


class TenantMismatch(PermanentError):
    pass


class LeaseLost(Exception):
    """Another consumer re-claimed part of a batch after this one's lease ran out."""


# Data and programming errors do not heal by themselves; waiting five attempts for them only
# delays the operator. Everything not listed is assumed transient and retried up to the policy.
_PERMANENT = (
    PermanentError,
    ValidationError,
    ObjectDoesNotExist,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    LookupError,
)
_TRANSIENT = (
    TransientError,
    IntegrityError,
    DatabaseError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return False
    return isinstance(exc, _PERMANENT)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
