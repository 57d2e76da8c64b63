"""The platform's event catalog: every type a producer may publish.

Types outside it are refused at publish, so that a typo cannot create a stream that no worker
and no subscriber will ever read. Each type has a kind, which says who publishes it: outside
systems publish factory events (`POST /api/events`), the platform its own. Operators may add
their own factory events through EXTRA_EVENT_TYPES.
"""

import enum
import functools
from dataclasses import dataclass

from django.conf import settings


class Kind(enum.StrEnum):
    # What happened in the factory outside (a deployment, a build): outside systems publish
    # these, and only these.
    FACTORY = "factory"
    # What the platform's workers found or did (a trace recorded, a subscription disabled):
    # public, for subscribers and webhooks, but published by the platform alone, since workers
    # and subscribers trust them as the platform's word.
    PLATFORM = "platform"
    # What drives the platform's own workers (a stored OTLP batch, a schedule slot, a
    # command): never reaches wildcard subscribers or outside webhooks.
    INTERNAL = "internal"


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    kind: Kind = Kind.PLATFORM

    @property
    def internal(self) -> bool:
        return self.kind is Kind.INTERNAL


_CATALOG = [
    # Observability & Feedback (seed 000)
    EventType("TelemetryBatchReceived", "An OTLP request was stored for ingestion.", Kind.INTERNAL),
    EventType("TraceRecorded", "A trace was projected into its TraceRecord."),
    EventType("MetricAggregated", "A metric window was rolled into MetricSeries."),
    EventType("RuntimeSignalDetected", "Ingestion saw an error span or a slow span."),
    EventType(
        "TelemetryLinked",
        "Stored log records or metric exemplars name traces (data.traceIds).",
        Kind.INTERNAL,
    ),
    EventType("AlertTriggered", "An alert rule's condition held for a window."),
    EventType("AlertResolved", "A firing alert instance resolved."),
    EventType("SloBreached", "An SLO's error budget was breached."),
    EventType("SloRecovered", "A breached SLO's burn-rate alert cleared."),
    EventType("IncidentOpened", "Triggers were correlated into a new incident."),
    EventType("IncidentResolved", "An incident was resolved."),
    EventType("FeedbackItemCreated", "An incident or a signal was distilled into feedback."),
    EventType("QualityScoreComputed", "A quality score was recomputed for a project."),
    EventType("CostAnomalyDetected", "Cost for a category deviated from its baseline."),
    # Integration (seed 001)
    # Internal: a webhook about every webhook delivered would loop (and double the traffic).
    EventType(
        "WebhookDelivered", "A webhook delivery was acknowledged by its endpoint.", Kind.INTERNAL
    ),
    EventType("WebhookDeliveryQueued", "Command: send one webhook delivery.", Kind.INTERNAL),
    EventType("IntegrationFailed", "An integration run or a delivery failed for good."),
    EventType("IntegrationRunCompleted", "An integration run completed."),
    EventType("CredentialRotated", "A credential was rotated and verified."),
    EventType("SubscriptionDisabled", "A webhook subscription was disabled."),
    EventType("ConnectionHealthChanged", "An external API's health status changed."),
    EventType("IntegrationSyncRequested", "Command: sync a connection now.", Kind.INTERNAL),
    EventType("CredentialRotationRequested", "Command: rotate a credential now.", Kind.INTERNAL),
    EventType("ConnectionProbeRequested", "Command: probe a connection now.", Kind.INTERNAL),
    EventType("ScheduleFired", "A schedule slot of a scheduled worker.", Kind.INTERNAL),
    # Factory events published by outside systems
    EventType("DeploymentPromoted", "A deployment was promoted to an environment.", Kind.FACTORY),
    EventType("DeploymentStarted", "A deployment started.", Kind.FACTORY),
    EventType("DeploymentFailed", "A deployment failed.", Kind.FACTORY),
    EventType("BuildCompleted", "A build completed.", Kind.FACTORY),
    EventType("BuildFailed", "A build failed.", Kind.FACTORY),
    EventType("ReleasePublished", "A release was published.", Kind.FACTORY),
    EventType("PullRequestMerged", "A pull request was merged.", Kind.FACTORY),
    EventType("WorkItemCreated", "A work item was created.", Kind.FACTORY),
    EventType("WorkItemUpdated", "A work item was updated.", Kind.FACTORY),
    EventType("TestRunCompleted", "A test run completed.", Kind.FACTORY),
]


def catalog() -> dict[str, EventType]:
    return _catalog(tuple(getattr(settings, "EXTRA_EVENT_TYPES", ())))


@functools.cache
def _catalog(extra: tuple[str, ...]) -> dict[str, EventType]:
    # Asked for every event published and handled: built once per setting's value.
    types = {t.name: t for t in _CATALOG}
    for name in extra:
        types.setdefault(name, EventType(name, "Operator-defined factory event.", Kind.FACTORY))
    return types


def is_known(name: str) -> bool:
    return name in catalog()


def public_types() -> list[str]:
    return sorted(name for name, t in catalog().items() if not t.internal)


def factory_types() -> list[str]:
    """The types outside systems may publish."""
    return sorted(name for name, t in catalog().items() if t.kind is Kind.FACTORY)
