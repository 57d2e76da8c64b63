"""Failure classification: transient failures are retried, permanent ones dead-lettered at once."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import psycopg
import requests
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DatabaseError, DataError, IntegrityError


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


class NotYet(Exception):
    """Not a failure: the work cannot be done before `until` (a vendor's rate limit or
    Retry-After, an open circuit). Raised by a handler, or put in a batch handler's failure
    map, it makes the message due again at `until` with its attempts unchanged: no Failure row,
    no backoff, never a dead letter, and the claim does not count as a lost one. The handler's
    writes roll back when it raises (as for any failure) and are kept when it reports."""

    def __init__(self, until: datetime, reason: str = "") -> None:
        super().__init__(reason or f"not before {until.isoformat()}")
        self.until = until
        self.reason = reason


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
    ArithmeticError,  # OverflowError: sqlite3 binding an int beyond 64 bits, say
)
# Database errors about the data itself: the database refuses the same row on every attempt.
# DataError is SQLSTATE class 22 (a NUL in text, a number out of range, a value too long, text
# that is not valid for its type); a CHECK or NOT NULL violation likewise, and class 54, a
# limit of the database's (an index row too large, say). Other integrity errors stay
# transient: a unique or foreign-key violation can come from a concurrent transaction, which
# the retry sees (core.bulk's COPY, say).
_DATA_ERRORS = (DataError, psycopg.DataError, sqlite3.DataError)
_REFUSED_SQLSTATES = {"23502", "23514"}  # not_null_violation, check_violation
_REFUSED_SQLSTATE_CLASSES = {"22", "54"}  # data_exception, program_limit_exceeded
_REFUSED_SQLITE_CODES = {sqlite3.SQLITE_CONSTRAINT_NOTNULL, sqlite3.SQLITE_CONSTRAINT_CHECK}
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
    if is_data_error(exc):
        return True
    if isinstance(exc, _TRANSIENT):
        return False
    return isinstance(exc, _PERMANENT)


def is_data_error(exc: BaseException) -> bool:
    """Whether the database refused what was written (Django's errors wrap the driver's, which
    say why: their __cause__)."""
    for error in (exc, exc.__cause__):
        if isinstance(error, _DATA_ERRORS):
            return True
        state = getattr(error, "sqlstate", None) or ""
        if state in _REFUSED_SQLSTATES or state[:2] in _REFUSED_SQLSTATE_CLASSES:
            return True
        if getattr(error, "sqlite_errorcode", None) in _REFUSED_SQLITE_CODES:
            return True
    return False


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
