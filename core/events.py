"""The platform's event catalog: every type a producer may publish.

Types outside it are refused at publish, so that a typo cannot create a stream that no worker
and no subscriber will ever read. Operators may add their own factory events through
EXTRA_EVENT_TYPES.
"""

import functools
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    # Internal events drive the platform's own workers (a stored OTLP batch, a schedule slot,
    # a command); they never reach wildcard subscribers or outside webhooks.
    internal: bool = False


_CATALOG = [
    # Observability & Feedback (seed 000)
    EventType("TelemetryBatchReceived", "An OTLP request was stored for ingestion.", True),
    EventType("TraceRecorded", "A trace was projected into its TraceRecord."),
    EventType("MetricAggregated", "A metric window was rolled into MetricSeries."),
    EventType("RuntimeSignalDetected", "Ingestion saw an error span or a slow span."),
    EventType(
        "TelemetryLinked",
        "Stored log records or metric exemplars name traces (data.traceIds).",
        True,
    ),
    EventType("AlertTriggered", "An alert rule's condition held for a window."),
    EventType("SloBreached", "An SLO's error budget was breached."),
    EventType("IncidentOpened", "Triggers were correlated into a new incident."),
    EventType("IncidentResolved", "An incident was resolved."),
    EventType("FeedbackItemCreated", "An incident or a signal was distilled into feedback."),
    EventType("QualityScoreComputed", "A quality score was recomputed for a project."),
    EventType("CostAnomalyDetected", "Cost for a category deviated from its baseline."),
    # Integration (seed 001)
    # Internal: a webhook about every webhook delivered would loop (and double the traffic).
    EventType("WebhookDelivered", "A webhook delivery was acknowledged by its endpoint.", True),
    EventType("WebhookDeliveryQueued", "Command: send one webhook delivery.", True),
    EventType("IntegrationFailed", "An integration run or a delivery failed for good."),
    EventType("IntegrationRunCompleted", "An integration run completed."),
    EventType("CredentialRotated", "A credential was rotated and verified."),
    EventType("SubscriptionDisabled", "A webhook subscription was disabled."),
    EventType("ConnectionHealthChanged", "An external API's health status changed."),
    EventType("IntegrationSyncRequested", "Command: sync a connection now.", True),
    EventType("CredentialRotationRequested", "Command: rotate a credential now.", True),
    EventType("ScheduleFired", "A schedule slot of a scheduled worker.", True),
    # Factory events published by outside systems
    EventType("DeploymentPromoted", "A deployment was promoted to an environment."),
    EventType("DeploymentStarted", "A deployment started."),
    EventType("DeploymentFailed", "A deployment failed."),
    EventType("BuildCompleted", "A build completed."),
    EventType("BuildFailed", "A build failed."),
    EventType("ReleasePublished", "A release was published."),
    EventType("PullRequestMerged", "A pull request was merged."),
    EventType("WorkItemCreated", "A work item was created."),
    EventType("WorkItemUpdated", "A work item was updated."),
    EventType("TestRunCompleted", "A test run completed."),
]


def catalog() -> dict[str, EventType]:
    return _catalog(tuple(getattr(settings, "EXTRA_EVENT_TYPES", ())))


@functools.cache
def _catalog(extra: tuple[str, ...]) -> dict[str, EventType]:
    # Asked for every event published and handled: built once per setting's value.
    types = {t.name: t for t in _CATALOG}
    for name in extra:
        types.setdefault(name, EventType(name, "Operator-defined factory event."))
    return types


def is_known(name: str) -> bool:
    return name in catalog()


def public_types() -> list[str]:
    return sorted(name for name, t in catalog().items() if not t.internal)
