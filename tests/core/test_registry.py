"""The worker catalog: the thirteen workers of seeds 000 and 001, as the seeds declare them."""

from __future__ import annotations

import importlib
import re
import uuid

import pytest
from django.core.exceptions import ValidationError

from core import events, services
from core.models import Event, Message
from core.runtime import registry
from core.runtime.registry import WILDCARD

pytestmark = pytest.mark.django_db

OBSERVABILITY = [
    "TraceIngestionWorker",
    "MetricAggregationWorker",
    "AlertEvaluationWorker",
    "IncidentAnalysisWorker",
    "CostAnomalyWorker",
    "TelemetryCorrelationWorker",
]
FEEDBACK = ["FeedbackCreationWorker", "QualityScoreWorker"]
INTEGRATIONS = [
    "WebhookDeliveryWorker",
    "IntegrationSyncWorker",
    "CredentialRotationWorker",
    "ExternalApiHealthWorker",
    "IntegrationRetryWorker",
]
CATALOG = OBSERVABILITY + FEEDBACK + INTEGRATIONS
SEED_EVENTS = [
    "TraceRecorded",
    "MetricAggregated",
    "AlertTriggered",
    "SloBreached",
    "IncidentOpened",
    "IncidentResolved",
    "FeedbackItemCreated",
    "QualityScoreComputed",
    "CostAnomalyDetected",
    "WebhookDelivered",
    "IntegrationFailed",
    "IntegrationRunCompleted",
    "CredentialRotated",
    "DeploymentPromoted",
]


def worker(name: str) -> registry.Worker:
    return registry.get(name)


def module_name(name: str) -> str:
    """TraceIngestionWorker -> trace_ingestion."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Worker")).lower()


def schedules(name: str) -> dict[str, int]:
    return {s.name: s.minutes for s in worker(name).trigger.schedules}


def envelope(type: str = "AlertTriggered", **fields) -> object:
    return services.build_envelope(tenant_id=uuid.uuid4(), type=type, **fields)


# The catalog


def test_it_declares_the_thirteen_catalog_workers():
    assert sorted(w.name for w in registry.catalog_workers()) == sorted(CATALOG)


@pytest.mark.parametrize(
    ("name", "app"),
    [(n, "observability") for n in OBSERVABILITY]
    + [(n, "feedback") for n in FEEDBACK]
    + [(n, "integrations") for n in INTEGRATIONS],
)
def test_it_keeps_each_worker_in_a_module_named_after_it(name, app):
    path = f"{app}.workers.{module_name(name)}"

    assert worker(name).module == path
    assert worker(name).app == app
    assert importlib.import_module(path).WORKER is worker(name)


def test_it_puts_the_ingestion_workers_in_their_own_group():
    groups = {w.name: w.group for w in registry.catalog_workers()}

    assert {n for n, g in groups.items() if g == "ingestion"} == {
        "TraceIngestionWorker",
        "MetricAggregationWorker",
    }
    assert {n for n, g in groups.items() if g != "ingestion"} == set(CATALOG) - {
        "TraceIngestionWorker",
        "MetricAggregationWorker",
    }
    assert set(groups.values()) == {"ingestion", "reaction"}


def test_it_builds_only_the_workers_whose_handlers_exist():
    # Trace ingestion, metric aggregation and telemetry correlation came with the telemetry
    # ingestion issue, webhook delivery with the webhooks issue, alert evaluation and incident
    # analysis with issue 11, sync, rotation, API health and retry with issue 12; the rest are
    # declared only. (A set: a test that takes a worker out and puts it back reorders them.)
    assert {w.name for w in registry.catalog_workers() if w.built} == {
        "TraceIngestionWorker",
        "MetricAggregationWorker",
        "AlertEvaluationWorker",
        "IncidentAnalysisWorker",
        "TelemetryCorrelationWorker",
        "WebhookDeliveryWorker",
        "IntegrationSyncWorker",
        "CredentialRotationWorker",
        "ExternalApiHealthWorker",
        "IntegrationRetryWorker",
    }


def test_it_describes_every_worker_for_the_health_page():
    for w in registry.catalog_workers():
        assert w.purpose and w.trigger.description, w.name
        assert w.retry.description and w.idempotency.description, w.name


def test_it_names_an_unknown_worker_and_lists_the_known_ones():
    with pytest.raises(LookupError, match=r"no worker named 'TraceWorker'.*TraceIngestionWorker"):
        registry.get("TraceWorker")


# Triggers


def test_it_triggers_trace_ingestion_on_each_stored_otlp_request():
    trigger = worker("TraceIngestionWorker").trigger

    assert trigger.events == ("TelemetryBatchReceived",)
    assert events.catalog()["TelemetryBatchReceived"].internal


def test_it_triggers_incident_analysis_on_alerts_and_slo_breaches():
    trigger = worker("IncidentAnalysisWorker").trigger

    # Their resolutions too (an incident resolves when its last trigger does), and a schedule
    # for timeouts and closing.
    assert set(trigger.events) == {"AlertTriggered", "SloBreached", "AlertResolved", "SloRecovered"}
    assert trigger.matches("AlertTriggered") and trigger.matches("SloBreached")
    assert not trigger.matches("IncidentResolved")
    assert trigger.schedules


def test_it_triggers_feedback_creation_on_resolved_incidents_and_runtime_signals():
    trigger = worker("FeedbackCreationWorker").trigger

    assert {"IncidentResolved", "RuntimeSignalDetected"} <= set(trigger.events)
    assert not trigger.schedules


def test_it_triggers_quality_score_on_a_schedule_and_on_new_feedback():
    trigger = worker("QualityScoreWorker").trigger

    assert trigger.events == ("FeedbackItemCreated",)
    assert trigger.schedules


def test_it_triggers_telemetry_correlation_on_every_public_event_and_on_linked_telemetry():
    trigger = worker("TelemetryCorrelationWorker").trigger

    assert trigger.events == (WILDCARD, "TelemetryLinked")
    assert all(trigger.matches(t) for t in events.public_types())
    assert trigger.matches("TelemetryLinked") and not trigger.matches("ScheduleFired")


def test_it_schedules_metric_aggregation_every_minute_five_minutes_and_hour():
    assert sorted(schedules("MetricAggregationWorker").values()) == [1, 5, 60]
    assert not worker("MetricAggregationWorker").trigger.events


def test_it_schedules_cost_anomaly_hourly_and_daily():
    assert schedules("CostAnomalyWorker") == {"hourly": 60, "daily": 24 * 60}


def test_it_schedules_alert_evaluation_and_api_health_probes():
    assert schedules("AlertEvaluationWorker")
    assert schedules("ExternalApiHealthWorker")
    assert not worker("ExternalApiHealthWorker").trigger.events


def test_it_triggers_integration_retry_on_failures_and_a_sweep():
    trigger = worker("IntegrationRetryWorker").trigger

    assert trigger.events == ("IntegrationFailed",)
    assert "sweep" in schedules("IntegrationRetryWorker")


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("IntegrationSyncWorker", "IntegrationSyncRequested"),
        ("CredentialRotationWorker", "CredentialRotationRequested"),
    ],
)
def test_it_runs_sync_and_rotation_on_a_schedule_and_on_an_internal_command(name, command):
    trigger = worker(name).trigger

    assert trigger.commands == (command,)
    assert trigger.schedules
    assert events.catalog()[command].internal  # no outside system may send the command


def test_it_subscribes_the_catalog_only_to_known_event_types():
    for w in registry.catalog_workers():
        for name in w.trigger.events + w.trigger.commands:
            assert name == WILDCARD or events.is_known(name), (w.name, name)


# Retry policies


@pytest.mark.parametrize(
    "name",
    [
        "TraceIngestionWorker",
        "IncidentAnalysisWorker",
        "FeedbackCreationWorker",
        "TelemetryCorrelationWorker",
    ],
)
def test_it_dead_letters_event_driven_observability_workers_after_five(name):
    retry = worker(name).retry

    assert retry.max_attempts == 5
    assert "DLQ after 5" in retry.description
    assert not retry.gives_up_after(4)
    assert retry.gives_up_after(5)


def test_it_tries_a_webhook_delivery_eight_times():
    retry = worker("WebhookDeliveryWorker").retry

    assert retry.max_attempts == 8
    assert "max 8 attempts" in retry.description


def test_it_retries_a_credential_rotation_up_to_three_times():
    retry = worker("CredentialRotationWorker").retry

    assert retry.max_attempts == 1 + 3  # the first try and three retries
    assert "up to 3x" in retry.description


def test_it_backs_off_every_catalog_worker_within_its_cap():
    for w in registry.catalog_workers():
        ceilings = [w.retry.ceiling(n) for n in range(1, w.retry.max_attempts + 1)]
        assert ceilings == sorted(ceilings), w.name
        assert max(ceilings) <= w.retry.cap_seconds, w.name


# Idempotency keys


def test_it_keys_incident_analysis_on_source_and_source_id():
    analysis = worker("IncidentAnalysisWorker")
    first = envelope(source="alert-rule", source_id="r-1")
    again = envelope(source="alert-rule", source_id="r-1")
    other = envelope(source="alert-rule", source_id="r-2")

    assert analysis.dedup_key(first) == analysis.dedup_key(again) == "alert-rule:r-1"
    assert analysis.dedup_key(other) != analysis.dedup_key(first)


def test_it_keys_integration_retry_on_failure_id_and_attempt():
    retry = worker("IntegrationRetryWorker")

    def key(**data):
        return retry.dedup_key(envelope("IntegrationFailed", data=data))

    assert key(failureId="f-1", attempt=2) == key(failureId="f-1", attempt=2)
    assert key(failureId="f-1", attempt=2) != key(failureId="f-1", attempt=3)
    assert key(failureId="f-1", attempt=2) != key(failureId="f-2", attempt=2)


def test_it_keys_credential_rotation_on_its_rotation_token():
    rotation = worker("CredentialRotationWorker")

    def key(**data):
        return rotation.dedup_key(envelope("CredentialRotationRequested", data=data))

    assert key(credentialId="c-1", rotationToken="t-1") == key(
        credentialId="c-1", rotationToken="t-1"
    )
    assert key(credentialId="c-1", rotationToken="t-1") != key(
        credentialId="c-1", rotationToken="t-2"
    )


def test_it_falls_back_to_the_event_id_when_the_key_fields_are_missing():
    assert worker("IncidentAnalysisWorker").dedup_key(envelope()) is None
    assert worker("IntegrationRetryWorker").dedup_key(envelope("IntegrationFailed")) is None
    assert worker("TelemetryCorrelationWorker").dedup_key(envelope()) is None


# Who receives what


def test_it_addresses_no_public_event_to_a_worker_that_is_not_built(tenant, declared_worker):
    for type in events.public_types():
        services.publish(tenant=tenant, type=type, source="test", source_id=type)

    assert Event.objects.count() == len(events.public_types())
    not_built = [w.name for w in registry.all_workers() if not w.built]
    assert declared_worker.name in not_built  # it subscribes to every public event
    assert not Message.objects.filter(worker__in=not_built).exists()


@pytest.mark.parametrize("command", ["IntegrationSyncRequested", "CredentialRotationRequested"])
def test_it_addresses_no_command_to_a_worker_that_is_not_built(tenant, declared_worker, command):
    services.send(tenant=tenant, worker=declared_worker.name, type=command)

    assert not Message.objects.exists()


def test_it_delivers_public_events_to_a_wildcard_subscriber(tenant, make_worker):
    make_worker(events=(WILDCARD,))

    envelope = services.publish(tenant=tenant, type="BuildFailed")

    assert Message.objects.filter(event_id=envelope.event_id, worker="TestWorker").exists()


@pytest.mark.parametrize("internal", ["ScheduleFired", "TelemetryBatchReceived"])
def test_it_keeps_internal_events_from_a_wildcard_subscriber(tenant, make_worker, internal):
    make_worker(events=(WILDCARD,))

    services.publish(tenant=tenant, type=internal)

    assert Event.objects.filter(type=internal).exists()
    assert not Message.objects.filter(worker="TestWorker").exists()


def test_it_delivers_an_internal_event_to_a_worker_that_names_it(tenant, make_worker):
    make_worker(events=("TelemetryBatchReceived",))

    envelope = services.publish(tenant=tenant, type="TelemetryBatchReceived")

    assert Message.objects.filter(event_id=envelope.event_id, worker="TestWorker").exists()


def test_it_delivers_a_command_only_to_its_addressee(tenant, make_worker):
    make_worker("Syncer", events=(), commands=("IntegrationSyncRequested",))
    make_worker("AlsoSyncer", events=(), commands=("IntegrationSyncRequested",))

    services.send(tenant=tenant, worker="Syncer", type="IntegrationSyncRequested")

    assert list(Message.objects.values_list("worker", flat=True)) == ["Syncer"]


@pytest.mark.parametrize(
    "fields",
    [{"events": ("DeploymentPromotd",)}, {"events": (), "commands": ("RotateNow",)}],
)
def test_it_refuses_a_worker_that_subscribes_to_an_unknown_type(make_worker, fields):
    with pytest.raises(ValueError, match="TestWorker subscribes to unknown event types"):
        make_worker(**fields)

    with pytest.raises(LookupError):
        registry.get("TestWorker")


# The event catalog


@pytest.mark.parametrize("name", SEED_EVENTS)
def test_it_catalogs_every_event_the_seeds_name(name):
    assert events.is_known(name)
    assert (name in events.public_types()) == (name not in INTERNAL_SEED_EVENTS)


# A webhook (or a wildcard worker's message) about every webhook delivered would loop, and
# double the traffic of every delivery.
INTERNAL_SEED_EVENTS = {"WebhookDelivered"}


def test_it_keeps_the_platforms_own_types_internal():
    internal = {name for name, t in events.catalog().items() if t.internal}

    assert {"ScheduleFired", "TelemetryBatchReceived"} <= internal
    assert internal.isdisjoint(events.public_types())


# What happens in the factory outside the platform, which outside systems report.
FACTORY_EVENTS = {
    "DeploymentPromoted", "DeploymentStarted", "DeploymentFailed", "BuildCompleted",
    "BuildFailed", "ReleasePublished", "PullRequestMerged", "WorkItemCreated",
    "WorkItemUpdated", "TestRunCompleted",
}  # fmt: skip


def test_it_marks_only_what_happens_outside_as_a_factory_event():
    assert set(events.factory_types()) == FACTORY_EVENTS
    assert set(events.factory_types()) <= set(events.public_types())


def test_it_keeps_what_the_seeds_workers_publish_out_of_the_factory_events():
    # Whatever a worker of the seeds publishes is the platform's word, never a factory event.
    published = set(SEED_EVENTS) - {"DeploymentPromoted"}
    kinds = {events.catalog()[name].kind for name in published}

    assert events.Kind.FACTORY not in kinds


def test_it_accepts_operator_defined_event_types_as_factory_events(settings):
    settings.EXTRA_EVENT_TYPES = ["ChangeApproved"]

    assert events.is_known("ChangeApproved")
    assert "ChangeApproved" in events.public_types()
    assert "ChangeApproved" in events.factory_types()


def test_it_refuses_to_publish_an_unknown_type_and_lists_the_known_ones(tenant):
    with pytest.raises(ValidationError) as refused:
        services.publish(tenant=tenant, type="DeploymentPromotd")

    (message,) = refused.value.messages
    assert "Unknown event type 'DeploymentPromotd'" in message
    assert all(name in message for name in set(SEED_EVENTS) - INTERNAL_SEED_EVENTS)
    assert not Event.objects.exists()


def test_it_keys_events_by_source_and_source_id_and_leaves_the_others_unkeyed():
    def event(**fields):
        return services.build_envelope(tenant_id=uuid.uuid4(), type="BuildFailed", **fields)

    assert registry.source_key(event(source="ci", source_id="build-7")) == "ci:build-7"
    assert registry.source_key(event(source="ci")) is None
    for module in ("feedback.workers.feedback_creation", "observability.workers.incident_analysis"):
        assert importlib.import_module(module).WORKER.idempotency.key is registry.source_key
