"""What integration failures add to GET /metrics (core.prometheus): the failures that still
need something, by kind and status, so that an alert rule can watch poisoned ones pile up."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from core.prometheus import Family, Labels, Metric
from integrations.failures.models import ACTIVE, IntegrationFailure, Kind

FAILURES = Metric(
    "platform_integration_failures",
    "gauge",
    "Integration failures not resolved or ignored, by kind (sync, rotation, outage, webhook) "
    "and status (open: a retry is scheduled; retrying: one is in flight; poisoned: escalated; "
    "acknowledged: someone is on it).",
    ("kind", "status"),
)


def families(**kwargs: Any) -> list[Family]:
    """core.prometheus.collecting's receiver: one grouped count; every pair is shown, zeros too,
    so that a rate over them never starts from a missing series."""
    samples: dict[Labels, float] = {(k, s.value): 0.0 for k in Kind.values for s in ACTIVE}
    counted = (
        IntegrationFailure.objects.filter(status__in=ACTIVE)
        .values_list("kind", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for kind, status, n in counted:
        samples[(kind, status)] = float(n)
    return [Family(FAILURES, samples)]
