"""Trigger events as AlertEvaluationWorker and SLO evaluation publish them (the issue's event
data contract), and the incidents they become."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core import services
from core.envelope import Envelope
from core.models import Tenant
from tests.helpers import drain_all

WORKER = "IncidentAnalysisWorker"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RULE = "5f0c2a4e-1111-4c3b-9a77-0c2b8e5d4a10"
SLO = "7d1e3b5f-2222-4d4c-8b88-1d3c9f6e5b21"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "5b8efff798038103d269b633813fc60c"
TRACE_C = "0af7651916cd43dd8448eb211c80319c"


def alert_data(
    *,
    rule: str = RULE,
    instance: str = "i-1",
    service: str = "checkout",
    severity: str = "critical",
    name: str = "checkout errors",
    traces: tuple[str, ...] = (),
    group_key: str | None = None,
    reason: str = "error ratio 0.12 > 0.05",
) -> dict[str, Any]:
    return {
        "triggerKey": f"alert:{rule}:{instance}",
        "groupKey": group_key if group_key is not None else f"alert:{rule}:{service}",
        "ruleId": rule,
        "ruleRevision": 3,
        "ruleName": name,
        "instanceKey": instance,
        "labels": {"service.name": service},
        "service": service,
        "severity": severity,
        "value": 0.12,
        "threshold": 0.05,
        "windowStart": (T0 - timedelta(minutes=1)).isoformat(),
        "windowEnd": T0.isoformat(),
        "windowSize": "1m",
        "reason": reason,
        "traceIds": list(traces),
    }


def slo_data(*, row: str = "page-fast", severity: str = "critical", traces=()) -> dict[str, Any]:
    return {
        "triggerKey": f"slo:{SLO}:{row}",
        "groupKey": f"slo:{SLO}",
        "sloId": SLO,
        "sloName": "checkout availability",
        "service": "checkout",
        "row": row,
        "severity": severity,
        "objective": 0.999,
        "burnRates": {"1h": 15.2, "5m": 16.0},
        "budgetRemaining": 0.42,
        "windowEnd": T0.isoformat(),
        "reason": "burning 15.2x over 1h and 16x over 5m",
        "traceIds": list(traces),
    }


def publish(
    tenant: Tenant, type: str, data: dict[str, Any], *, at: datetime = T0, source_id: str = ""
) -> Envelope:
    """Publish a trigger event as the alerting side does: source and a derived sourceId."""
    return services.publish(
        tenant=tenant,
        type=type,
        data=data,
        occurred_at=at,
        source="slo" if type.startswith("Slo") else "alerting",
        source_id=source_id or f"{data['triggerKey']}:{type}:{at.isoformat()}",
    )


def fire(tenant: Tenant, *, at: datetime = T0, **fields: Any) -> Envelope:
    return publish(tenant, "AlertTriggered", alert_data(**fields), at=at)


def clear(tenant: Tenant, *, at: datetime = T0, **fields: Any) -> Envelope:
    return publish(tenant, "AlertResolved", alert_data(**fields), at=at)


def handle() -> None:
    drain_all(WORKER)


def envelope(tenant: Tenant, type: str, data: dict[str, Any], *, at: datetime = T0) -> Envelope:
    """An envelope not stored: for the handler called directly."""
    return services.build_envelope(
        tenant_id=tenant.pk,
        type=type,
        data=data,
        occurred_at=at,
        event_id=uuid.uuid4(),
        source="alerting",
        source_id=f"{data['triggerKey']}:{at.isoformat()}",
    )
