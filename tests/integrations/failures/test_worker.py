"""IntegrationRetryWorker: failures recorded from IntegrationFailed, retried by the sweep per
policy with the right resume commands, poisoned and escalated exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import services as core_services
from core.models import Event
from integrations.failures import services
from integrations.failures.models import FailureAttempt, IntegrationFailure, RetryPolicy, Status
from observability.incidents.models import Incident
from tests.integrations.failures.support import (
    CONNECTION,
    CREDENTIAL,
    T0,
    after,
    drain,
    published,
    report,
    sweep,
)

pytestmark = pytest.mark.django_db
Outcome = FailureAttempt.Outcome


def outcomes(failure: IntegrationFailure) -> list[tuple[int, str]]:
    return list(failure.attempt_log.order_by("number").values_list("number", "outcome"))


def test_it_records_a_failure_and_schedules_its_first_retry_by_the_policy(tenant):
    failure = report(tenant, provider="jira", subject="PROJ issues")

    assert failure.status == Status.OPEN
    assert failure.error_class == "transient"  # a 503, in words
    assert failure.attempts == 1
    assert failure.next_attempt_at == T0 + timedelta(seconds=60)
    assert (failure.subject_id, failure.subject) == (CONNECTION, "PROJ issues")
    assert outcomes(failure) == [(1, Outcome.FAILED)]


def test_it_resumes_a_due_sync_from_its_checkpoint_and_backs_off_after_each_failure(tenant):
    report(tenant)
    sweep(after(0))  # not due yet
    assert published("IntegrationSyncRequested") == []

    sweep(after(5))
    (command,) = published("IntegrationSyncRequested")
    assert command.data == {
        "connectionId": CONNECTION,
        "resume": True,
        "failureId": "f-1",
        "attempt": 2,
    }
    assert (command.source, command.source_id) == ("integrations", "f-1")
    failure = IntegrationFailure.objects.get()
    assert (failure.status, failure.attempts) == (Status.RETRYING, 2)

    # The sync worker fails again and echoes the failureId and attempt back.
    failure = report(tenant, attempt=2, at=after(6), error="502 Bad Gateway")
    assert failure.status == Status.OPEN
    assert failure.next_attempt_at == after(6) + timedelta(seconds=120)
    assert outcomes(failure) == [(1, Outcome.FAILED), (2, Outcome.FAILED)]

    sweep(after(10))  # 6 + 2 minutes have passed
    assert [c.data["attempt"] for c in published("IntegrationSyncRequested")] == [2, 3]


def test_it_follows_a_database_override_of_the_policy(tenant):
    RetryPolicy.objects.create(
        provider="jira",
        kind="sync",
        initial_interval_seconds=600,
        backoff_coefficient=3,
        maximum_interval_seconds=3000,
        maximum_attempts=10,
        non_retryable_error_classes=[],
    )
    waits = []
    at = T0
    for attempt in (0, 2, 3, 4):
        failure = report(tenant, provider="jira", attempt=attempt, at=at)
        waits.append((failure.next_attempt_at - at).total_seconds())
        at = failure.next_attempt_at
        sweep(at)

    assert waits == [600, 1800, 3000, 3000]


def test_it_poisons_a_non_retryable_class_at_once_and_escalates(tenant):
    failure = report(tenant, error="401 Bad credentials", status=401)

    assert failure.status == Status.POISONED
    assert failure.error_class == "auth"
    assert failure.next_attempt_at is None
    assert failure.escalated_at == T0
    (alert,) = published("AlertTriggered")
    assert (alert.source, alert.source_id) == ("integrations", "f-1")
    assert alert.data["triggerKey"] == "integration:f-1"
    assert alert.data["errorClass"] == "auth"
    sweep(after(60))
    assert published("IntegrationSyncRequested") == []


def test_it_poisons_at_the_cap_and_escalates_exactly_once(tenant):
    RetryPolicy.objects.create(kind="sync", initial_interval_seconds=60, maximum_attempts=3)
    report(tenant)
    sweep(after(5))
    report(tenant, attempt=2, at=after(6))
    sweep(after(10))
    failure = report(tenant, attempt=3, at=after(11))

    assert failure.status == Status.POISONED
    assert "gave up after 3 of 3 attempts" in failure.status_reason
    assert len(published("AlertTriggered")) == 1

    # The same report again (a new eventId: the producer's retry), the first one again, an
    # older attempt, and many sweeps: nothing new.
    report(tenant, attempt=3, at=after(12))
    report(tenant, at=after(13))
    report(tenant, attempt=2, at=after(14))
    for minutes in range(15, 300, 30):
        sweep(after(minutes))

    assert len(published("AlertTriggered")) == 1
    assert len(published("IntegrationSyncRequested")) == 2
    assert IntegrationFailure.objects.get().attempts == 3


def test_an_escalation_opens_one_incident(tenant):
    report(
        tenant, error="401 Bad credentials", status=401, subject="acme/widgets", provider="github"
    )
    report(tenant, failure_id="f-1", attempt=1, at=after(1))  # a replayed report
    drain("IncidentAnalysisWorker")

    incident = Incident.objects.get(tenant=tenant)
    assert incident.title == "Sync of connection acme/widgets failed on github"
    assert incident.services == ["github"]
    assert incident.severity == "critical"
    assert incident.group_key == "integrations:sync:" + CONNECTION


def test_it_resumes_a_rotation_with_the_same_rotation_token(tenant):
    report(tenant, kind="rotation", failure_id="r-1", rotationToken="tok-9", error="timeout")
    sweep(after(5))

    (command,) = published("CredentialRotationRequested")
    assert command.data == {
        "credentialId": CREDENTIAL,
        "rotationToken": "tok-9",
        "failureId": "r-1",
        "attempt": 2,
    }


def test_an_outage_re_probes_and_escalates_when_it_outlasts_its_ladder(tenant):
    RetryPolicy.objects.create(
        kind="outage",
        initial_interval_seconds=300,
        maximum_interval_seconds=300,
        maximum_attempts=3,
        attempt_timeout_seconds=300,
    )
    report(tenant, kind="outage", failure_id="o-1", error="probe: connection refused")
    sweep(after(5))
    (probe,) = published("ConnectionProbeRequested")
    assert probe.data == {"connectionId": CONNECTION, "failureId": "o-1", "attempt": 2}

    # The vendor stays down: the health worker reports nothing per probe, so each re-probe
    # times out, counts as failed, and the next one follows.
    sweep(after(10))
    failure = IntegrationFailure.objects.get()
    assert failure.status == Status.OPEN
    assert outcomes(failure) == [(1, Outcome.FAILED), (2, Outcome.LOST)]
    sweep(after(15))
    sweep(after(20))

    failure.refresh_from_db()
    assert failure.status == Status.POISONED
    assert len(published("ConnectionProbeRequested")) == 2
    assert len(published("AlertTriggered")) == 1


def test_a_subject_that_works_again_resolves_its_failures_and_their_escalation(tenant):
    report(tenant, error="401", status=401)
    assert len(published("AlertTriggered")) == 1

    resolved = services.resolve_subject(tenant_id=tenant.pk, kind="sync", subject_id=CONNECTION)

    failure = IntegrationFailure.objects.get()
    assert (resolved, failure.status) == (1, Status.RESOLVED)
    (cleared,) = published("AlertResolved")
    assert cleared.data["triggerKey"] == "integration:f-1"
    assert cleared.source_id == "f-1:resolved"
    assert services.resolve_subject(tenant_id=tenant.pk, kind="sync", subject_id=CONNECTION) == 0
    drain("IncidentAnalysisWorker")
    assert Incident.objects.get(tenant=tenant).status == "resolved"


def test_an_attempt_in_flight_succeeds_when_its_subject_works_again(tenant):
    report(tenant)
    sweep(after(5))
    services.resolve_subject(tenant_id=tenant.pk, kind="sync", subject_id=CONNECTION)

    failure = IntegrationFailure.objects.get()
    assert outcomes(failure) == [(1, Outcome.FAILED), (2, Outcome.SUCCEEDED)]
    sweep(after(120))
    assert len(published("IntegrationSyncRequested")) == 1
    assert published("AlertResolved") == []  # it was never escalated


def test_an_acknowledged_failure_is_not_retried_automatically(tenant):
    failure = report(tenant)
    services.acknowledge(failure=failure, actor="console user ops")
    report(tenant, attempt=2, at=after(1))  # an attempt that was already running

    sweep(after(30))

    failure.refresh_from_db()
    assert failure.status == Status.ACKNOWLEDGED
    assert published("IntegrationSyncRequested") == []


def test_a_malformed_report_is_dead_lettered_with_why(tenant):
    from core.models import DeadLetter
    from core.runtime import dispatch

    core_services.publish(tenant=tenant, type="IntegrationFailed", data={"kind": "sync"})
    dispatch.drain("IntegrationRetryWorker")

    dead = DeadLetter.objects.get(worker="IntegrationRetryWorker")
    assert "failureId" in dead.reason
    assert not IntegrationFailure.objects.exists()


def test_tenants_failures_stay_apart(tenant, other_tenant):
    report(tenant)
    report(other_tenant)  # the same failureId, another tenant

    assert IntegrationFailure.objects.filter(failure_id="f-1").count() == 2
    sweep(after(5))
    commands = published("IntegrationSyncRequested")
    assert sorted(str(c.tenant_id) for c in commands) == sorted(
        [str(tenant.pk), str(other_tenant.pk)]
    )
    assert not Event.objects.filter(type="AlertTriggered").exists()


def test_the_hourly_prune_deletes_only_old_finished_failures(tenant):
    from core.runtime import scheduling

    report(tenant, failure_id="done-old")
    report(tenant, failure_id="done-new")
    report(tenant, failure_id="poisoned-old", error="401", status=401)
    for failure_id in ("done-old", "done-new"):
        failure = IntegrationFailure.objects.get(failure_id=failure_id)
        services.ignore(failure=failure, actor="ops")
    now = T0 + timedelta(days=90)
    IntegrationFailure.objects.exclude(failure_id="done-new").update(updated=T0)
    IntegrationFailure.objects.filter(failure_id="done-new").update(updated=now)

    scheduling.prune(now=now)

    assert sorted(IntegrationFailure.objects.values_list("failure_id", flat=True)) == [
        "done-new",
        "poisoned-old",
    ]
    assert FailureAttempt.objects.filter(failure__failure_id="done-old").count() == 0


def test_metrics_count_the_failures_that_need_something(tenant, client, settings):
    settings.METRICS_BEARER_TOKEN = "t"
    report(tenant, failure_id="a", error="401", status=401)
    report(tenant, failure_id="b", error="401", status=401)
    report(tenant, failure_id="c")

    text = client.get("/metrics", headers={"Authorization": "Bearer t"}).content.decode()

    assert 'platform_integration_failures{kind="sync",status="poisoned"} 2' in text
    assert 'platform_integration_failures{kind="sync",status="open"} 1' in text
    assert 'platform_integration_failures{kind="webhook",status="poisoned"} 0' in text
