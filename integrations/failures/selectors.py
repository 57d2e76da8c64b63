"""Reads of the failures domain; every one is scoped to a tenant."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.models import Tenant
from integrations.failures.models import FailureAttempt, IntegrationFailure

MAX_ATTEMPTS_SHOWN = 200  # on a failure's page and in its API detail, the newest ones


def failures(*, tenant: Tenant, status: str = "", kind: str = "") -> QuerySet[IntegrationFailure]:
    found = IntegrationFailure.objects.filter(tenant=tenant)
    if status:
        found = found.filter(status=status)
    if kind:
        found = found.filter(kind=kind)
    return found


def failure(*, tenant: Tenant, failure_id: str) -> IntegrationFailure | None:
    """One of the tenant's failures by its id (a UUID) or its failureId."""
    found = IntegrationFailure.objects.filter(tenant=tenant)
    try:
        by_pk = found.filter(pk=uuid.UUID(failure_id)).first()
    except ValueError:
        by_pk = None
    return by_pk or found.filter(failure_id=failure_id[:200]).first()


def attempts(failure: IntegrationFailure) -> list[FailureAttempt]:
    newest = FailureAttempt.objects.filter(failure=failure).order_by("-number")
    return list(reversed(newest[:MAX_ATTEMPTS_SHOWN]))
