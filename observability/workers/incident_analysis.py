"""IncidentAnalysisWorker: correlate triggers into incidents; enrich with trace lineage.

AlertTriggered and SloBreached open, join, link or reopen incidents; AlertResolved and
SloRecovered resolve their triggers, and an incident whose last trigger resolves. Its schedule
(every 5 minutes, per tenant) resolves incidents whose triggers went quiet past the resolve
timeout and closes resolved ones after the close delay. The handler is
observability.incidents.handler.handle: batches of INCIDENT_BATCH_SIZE trigger events, loaded,
decided and written in bulk; IncidentOpened and IncidentResolved are published once per
transition, with event ids derived from (incident, transition, count).
"""

from django.conf import settings

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker, source_key
from observability.incidents import DEFAULTS
from observability.incidents.handler import handle

WORKER = Worker(
    name="IncidentAnalysisWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Correlate triggers into incidents; enrich with trace lineage.",
    trigger=Trigger(
        events=("AlertTriggered", "SloBreached", "AlertResolved", "SloRecovered"),
        schedules=(Schedule("5m", 5),),
        description="Event AlertTriggered, SloBreached (and their resolutions); schedule (5m) "
        "for timeouts and closing",
    ),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=2, cap_seconds=300, description="Backoff; DLQ after 5"
    ),
    idempotency=Idempotency("Dedup on (source, sourceId); idempotent key", key=source_key),
    batch_handler=handle,
    batch_size=getattr(settings, "INCIDENT_BATCH_SIZE", DEFAULTS["INCIDENT_BATCH_SIZE"]),
)
