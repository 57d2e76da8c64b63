"""The core REST API over the real HTTP stack: publishing events, and the workers' health."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from core import events, services
from core.models import ApiKey, ClusterHeartbeat, Event, Message
from core.runtime import dispatch, queue, registry
from core.runtime.errors import PermanentError

pytestmark = pytest.mark.django_db

EVENTS_URL = reverse("api-events")
HEALTH_URL = reverse("api-health-workers")
CATALOG = [
    "TraceIngestionWorker",
    "MetricAggregationWorker",
    "AlertEvaluationWorker",
    "IncidentAnalysisWorker",
    "FeedbackCreationWorker",
    "QualityScoreWorker",
    "CostAnomalyWorker",
    "TelemetryCorrelationWorker",
    "WebhookDeliveryWorker",
    "IntegrationSyncWorker",
    "CredentialRotationWorker",
    "ExternalApiHealthWorker",
    "IntegrationRetryWorker",
]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


def post_event(client, body, *, key=None, authorization=None, **headers):
    if key is not None:
        authorization = f"Bearer {key}"
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    return client.post(EVENTS_URL, body, content_type="application/json", **headers)


def promoted(**fields) -> dict:
    return {"type": "DeploymentPromoted", "data": {"service": "checkout"}, **fields}


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant, name="ci")


def error_of(response) -> str:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


# POST /api/events: publishing


def test_it_accepts_an_event_and_stores_it_for_the_keys_tenant(client, tenant, key):
    response = post_event(client, promoted(source="ci", sourceId="run-7"), key=key)

    assert response.status_code == 202
    body = response.json()
    event = Event.objects.get(id=body["eventId"])
    assert event.tenant == tenant
    assert event.type == "DeploymentPromoted"
    assert event.data == {"service": "checkout"}
    assert (event.source, event.source_id) == ("ci", "run-7")
    assert body["tenantId"] == str(tenant.pk)
    assert body["traceId"] == event.trace_id


def test_it_addresses_the_accepted_event_to_its_subscribers(client, tenant, key, make_worker):
    make_worker()

    response = post_event(client, promoted(), key=key)

    message = Message.objects.get(event_id=response.json()["eventId"], worker="TestWorker")
    assert message.tenant == tenant
    assert message.state == "pending"


def test_it_queues_a_drain_for_the_subscriber_once_the_event_commits(
    client, key, make_worker, django_capture_on_commit_callbacks
):
    make_worker()

    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, promoted(), key=key)

    drains = {(task.func(), tuple(task.args())) for task in OrmQ.objects.all()}
    assert (queue.DRAIN_TASK, ("TestWorker",)) in drains


def test_it_notes_when_a_key_was_last_used(client, key):
    post_event(client, promoted(), key=key)

    assert ApiKey.objects.get().last_used is not None


def test_it_tells_a_caller_without_a_key_how_to_send_one(client, tenant):
    response = post_event(client, promoted())

    assert response.status_code == 401
    assert "Authorization: Bearer <API key>" in error_of(response)
    assert "create_api_key" in error_of(response)
    assert not Event.objects.exists()


def test_it_names_the_bearer_scheme_in_its_401_challenge(client, tenant):
    response = post_event(client, promoted(), authorization="Token abc")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_refuses_a_wrong_key_and_says_how_to_get_one(client, key):
    lookup_and_secret = key.removeprefix(ApiKey.PREFIX)
    wrong = f"{ApiKey.PREFIX}{lookup_and_secret[:-4]}XXXX"

    response = post_event(client, promoted(), key=wrong)

    assert response.status_code == 401
    assert "Invalid or revoked API key" in error_of(response)
    assert "create_api_key" in error_of(response)
    assert not Event.objects.exists()


@pytest.mark.parametrize("token", ["nonsense", "pk_", "pk_abc", "pk_abc_", "xpk_abc_def"])
def test_it_refuses_a_token_that_is_not_a_key(client, tenant, token):
    response = post_event(client, promoted(), key=token)

    assert response.status_code == 401
    assert "Invalid or revoked API key" in error_of(response)


def test_it_refuses_a_revoked_key(client, key):
    assert post_event(client, promoted(), key=key).status_code == 202
    ApiKey.objects.update(revoked=timezone.now())

    response = post_event(client, promoted(), key=key)

    assert response.status_code == 401
    assert "Invalid or revoked API key" in error_of(response)
    assert Event.objects.count() == 1


@pytest.mark.parametrize("header", ["Token abc", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_it_refuses_a_malformed_authorization_header(client, tenant, header):
    response = post_event(client, promoted(), authorization=header)

    assert response.status_code == 401
    assert "Authorization: Bearer <API key>" in error_of(response)


def test_it_refuses_an_unknown_type_and_lists_the_factory_events(client, key):
    response = post_event(client, promoted(type="DeploymentPromotd"), key=key)

    assert response.status_code == 400
    error = error_of(response)
    assert "'DeploymentPromotd' is an unknown event type" in error
    assert all(name in error for name in events.factory_types())
    assert "ScheduleFired" not in error and "TraceRecorded" not in error
    assert not Event.objects.exists()


# Workers and subscribers take the platform's own events as its word: a forged TraceRecorded
# would be correlated, a forged SubscriptionDisabled or IntegrationFailed sent to webhooks.
PLATFORM_OWN = [
    "TraceRecorded",
    "RuntimeSignalDetected",
    "SubscriptionDisabled",
    "IntegrationFailed",
    "IncidentOpened",
    "ScheduleFired",
    "TelemetryBatchReceived",
    "WebhookDeliveryQueued",
]


@pytest.mark.parametrize("type", PLATFORM_OWN)
def test_it_refuses_the_platforms_own_events_from_outside(client, key, type):
    response = post_event(client, promoted(type=type), key=key)

    assert response.status_code == 400
    error = error_of(response)
    assert f"'{type}' is one of the platform's own events" in error
    assert "factory events only" in error and "DeploymentPromoted" in error
    assert not Event.objects.exists()


def test_it_takes_an_operator_defined_factory_event_from_outside(client, key, settings):
    settings.EXTRA_EVENT_TYPES = ["ChangeApproved"]

    response = post_event(client, promoted(type="ChangeApproved"), key=key)

    assert response.status_code == 202
    assert Event.objects.get().type == "ChangeApproved"


@pytest.mark.parametrize("data", [["a", "list"], "text", 7])
def test_it_refuses_data_that_is_not_an_object(client, key, data):
    response = post_event(client, promoted(data=data), key=key)

    assert response.status_code == 400
    assert "data" in response.json()["details"]
    assert not Event.objects.exists()


def test_it_refuses_an_event_without_a_type_and_says_which_field(client, key):
    response = post_event(client, {"data": {}}, key=key)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "The request is invalid; see details."
    assert body["details"] == {"type": ["This field is required."]}


def test_it_refuses_a_body_that_is_not_json(client, key):
    response = client.post(
        EVENTS_URL, "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 400
    assert "The body is not valid JSON" in error_of(response)


def test_it_publishes_for_the_keys_tenant_whatever_the_body_says(client, tenant, other_tenant, key):
    body = promoted(tenantId=str(other_tenant.pk), tenant="globex", eventId="not-yours")

    response = post_event(client, body, key=key)

    assert response.status_code == 202
    event = Event.objects.get(id=response.json()["eventId"])
    assert event.tenant == tenant
    assert not Event.objects.filter(tenant=other_tenant).exists()


def test_it_keeps_each_tenants_key_to_its_own_tenant(client, tenant, other_tenant, key):
    other_key = services.issue_api_key(tenant=other_tenant)

    mine = post_event(client, promoted(), key=key).json()
    theirs = post_event(client, promoted(), key=other_key).json()

    assert Event.objects.get(id=mine["eventId"]).tenant == tenant
    assert Event.objects.get(id=theirs["eventId"]).tenant == other_tenant


def test_it_continues_the_callers_w3c_trace(client, key):
    response = post_event(
        client, promoted(), key=key, HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    )

    event = Event.objects.get(id=response.json()["eventId"])
    assert event.trace_id == TRACE_ID
    assert re.fullmatch(r"[0-9a-f]{16}", event.span_id)
    assert event.span_id not in ("0" * 16, PARENT_SPAN_ID)  # the server span, child of it


def test_it_records_the_server_span_under_the_callers_trace(client, key, spans):
    post_event(client, promoted(), key=key, HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01")

    (server,) = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_SPAN_ID
    event = Event.objects.get()
    assert event.span_id == format(server.context.span_id, "016x")


def test_it_starts_a_valid_trace_when_the_caller_sends_none(client, key):
    response = post_event(client, promoted(), key=key)

    event = Event.objects.get(id=response.json()["eventId"])
    assert re.fullmatch(r"[0-9a-f]{32}", event.trace_id) and set(event.trace_id) != {"0"}
    assert re.fullmatch(r"[0-9a-f]{16}", event.span_id) and set(event.span_id) != {"0"}


def test_it_starts_a_new_trace_for_each_request_without_one(client, key):
    first = post_event(client, promoted(), key=key).json()
    second = post_event(client, promoted(), key=key).json()

    assert first["traceId"] != second["traceId"]


# GET /api/health/workers


def health(client):
    response = client.get(HEALTH_URL)
    return response, response.json()


def entry(report: dict, name: str) -> dict:
    (found,) = [w for w in report["workers"] if w["name"] == name]
    return found


@pytest.fixture
def cluster_runs(db):
    """A live `manage.py qcluster` for the workers' cluster, as its sweep loop reports itself."""
    cluster_id = uuid.uuid4()
    queue.beat(cluster_id=cluster_id, name="platform", started=timezone.now())
    return cluster_id


def test_it_reports_health_without_authentication(client, db):
    response, report = health(client)

    assert response.status_code in (200, 503)
    assert response["Content-Type"] == "application/json"
    assert report["status"] in {"healthy", "degraded", "unhealthy"}
    assert isinstance(report["clusters"], list)


def test_it_reports_each_catalog_worker_exactly_once(client, db):
    _, report = health(client)

    names = [w["name"] for w in report["workers"]]
    assert sorted(n for n in names if n in CATALOG) == sorted(CATALOG)


@pytest.mark.parametrize("name", [w for w in CATALOG if not registry.get(w).built])
def test_it_reports_a_catalog_worker_as_not_built_with_its_counts(client, db, name):
    _, report = health(client)

    worker = entry(report, name)
    assert {
        "name",
        "trigger",
        "backlog",
        "inFlight",
        "deadLetters",
        "lastSuccess",
        "failuresLastHour",
        "clusterHeartbeat",
    } <= set(worker)
    assert worker["status"] == "not_built"
    assert (worker["backlog"], worker["inFlight"], worker["deadLetters"]) == (0, 0, 0)
    assert worker["failuresLastHour"] == 0
    assert worker["lastSuccess"] is None
    assert worker["trigger"]["description"]


def test_it_is_unhealthy_with_503_when_no_cluster_runs(client, db):
    response, report = health(client)

    assert response.status_code == 503
    assert report["status"] == "unhealthy"
    assert report["clusters"] == []


def test_it_is_healthy_with_200_when_a_cluster_runs_and_nothing_waits(
    client, db, cluster_runs, make_worker
):
    make_worker()

    response, report = health(client)

    assert response.status_code == 200
    assert report["status"] == "healthy"
    (cluster,) = report["clusters"]
    assert cluster["name"] == "platform"
    assert cluster["clusterId"] == str(cluster_runs)
    worker = entry(report, "TestWorker")
    assert worker["status"] == "healthy"
    assert worker["clusterHeartbeat"] == cluster["lastHeartbeat"]


def test_it_is_unhealthy_when_the_only_cluster_stopped_beating(
    client, db, cluster_runs, make_worker
):
    make_worker()
    ClusterHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=10))

    response, report = health(client)

    assert response.status_code == 503
    assert report["clusters"] == []
    assert entry(report, "TestWorker")["status"] == "unhealthy"
    assert entry(report, "TestWorker")["clusterHeartbeat"] is None


def test_it_is_unhealthy_when_only_another_clusters_beat(client, db, make_worker, settings):
    settings.WORKER_CLUSTERS = "split"
    make_worker(group="reaction")
    queue.beat(cluster_id=uuid.uuid4(), name="ingestion", started=timezone.now())

    _, report = health(client)

    assert [c["name"] for c in report["clusters"]] == ["ingestion"]
    assert entry(report, "TestWorker")["status"] == "unhealthy"


def test_it_counts_a_dead_letter_and_marks_the_worker_unwell(client, tenant, make_worker):
    make_worker(handler=lambda envelope: (_ for _ in ()).throw(PermanentError("no")))
    services.publish(tenant=tenant, type="DeploymentPromoted")
    dispatch.drain("TestWorker")

    _, report = health(client)

    worker = entry(report, "TestWorker")
    assert worker["deadLetters"] == 1
    assert worker["failuresLastHour"] == 1
    assert worker["status"] in {"degraded", "unhealthy"}


def test_it_degrades_a_running_worker_with_a_dead_letter(client, tenant, make_worker, cluster_runs):
    make_worker(handler=lambda envelope: (_ for _ in ()).throw(PermanentError("no")))
    services.publish(tenant=tenant, type="DeploymentPromoted")
    dispatch.drain("TestWorker")

    response, report = health(client)

    assert entry(report, "TestWorker")["status"] == "degraded"
    assert report["status"] == "degraded"
    assert response.status_code == 200


def test_it_counts_only_due_messages_as_backlog(client, tenant, make_worker):
    make_worker()
    due = services.publish(tenant=tenant, type="DeploymentPromoted")
    later = services.publish(tenant=tenant, type="DeploymentPromoted")
    Message.objects.filter(event_id=later.event_id).update(
        due_at=timezone.now() + timedelta(minutes=5)
    )

    _, report = health(client)

    assert entry(report, "TestWorker")["backlog"] == 1
    assert Message.objects.filter(event_id=due.event_id, state="pending").exists()


def test_it_counts_leased_messages_as_in_flight_not_backlog(client, tenant, make_worker):
    worker = make_worker()
    for _ in range(3):
        services.publish(tenant=tenant, type="DeploymentPromoted")
    dispatch.claim(worker, limit=2)

    _, report = health(client)

    counts = entry(report, "TestWorker")
    assert (counts["backlog"], counts["inFlight"]) == (1, 2)


def test_it_reports_the_last_success_of_a_worker(
    client, tenant, make_worker, django_capture_on_commit_callbacks
):
    make_worker()
    queue.ensure_worker_states()  # as every migrate does
    services.publish(tenant=tenant, type="DeploymentPromoted")
    with django_capture_on_commit_callbacks(execute=True):  # noted once the batch commits
        dispatch.drain("TestWorker")

    _, report = health(client)

    assert entry(report, "TestWorker")["lastSuccess"] is not None


def test_it_reports_a_built_worker_by_its_health_not_as_not_built(client, db):
    _, report = health(client)

    assert entry(report, "TraceIngestionWorker")["status"] != "not_built"
    assert entry(report, "TraceIngestionWorker")["built"] is True
