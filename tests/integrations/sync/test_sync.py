"""IntegrationSyncWorker against the vendor simulator: pages into records with their events,
unchanged records publishing nothing, resume after a failed page, one run at a time, the 401
refresh, rate limits that spend no attempt, mark-and-sweep under its ratio."""

from __future__ import annotations

from datetime import timedelta
from time import monotonic

import pytest
from django.utils import timezone

from core.models import Event, Message
from core.runtime import dispatch, registry
from integrations.connections import credentials, providers
from integrations.connections.models import CredentialVersion, IntegrationConnection
from integrations.limits import circuits
from integrations.limits import keys as limit_keys
from integrations.limits.models import Circuit, RateBucket
from integrations.sync import handler
from integrations.sync.models import IntegrationRun, SyncRecord, SyncStream
from tests.integrations.sync.conftest import WORKER, drain, time_passes


def at(minute: int, second: int = 0) -> str:
    return f"2024-05-01T10:{minute:02d}:{second:02d}Z"


def sync(connection, **kwargs) -> IntegrationRun:
    run = handler.start_run(connection=connection, trigger="manual", **kwargs)
    drain()
    run.refresh_from_db()
    return run


def events(kind: str) -> list[Event]:
    return list(Event.objects.filter(type=kind).order_by("recorded_at"))


def test_it_stores_pages_of_records_and_publishes_their_events_once(db, sim, github):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))

    run = sync(github)

    assert run.status == "succeeded", run.error
    # Keyset pages re-read their boundary issue: 2 + 1 + 1 + 1 new on four pages.
    assert (run.added, run.updated, run.deleted, run.pages) == (5, 0, 0, 4)
    assert run.requests == 4 and run.unchanged == 3
    stored = SyncRecord.objects.filter(connection=github, stream="issues").order_by("change")
    assert [r.data["number"] for r in stored] == [1, 2, 3, 4, 5]
    assert [r.change for r in stored] == [1, 2, 3, 4, 5]
    assert {r.last_action for r in stored} == {"added"}
    assert stored[0].hash_algorithm == "sha256-canonical-json-v1"
    created = events("WorkItemCreated")
    assert len(created) == 5
    assert created[0].data["connectionId"] == str(github.pk)
    assert created[0].data["key"] == "acme/app#1"
    [completed] = events("IntegrationRunCompleted")
    assert completed.data["responseResults"] == {"added": 5, "updated": 0, "deleted": 0}
    assert completed.data["checkpoints"]["to"]["issues"]["since"] == at(5)
    assert SyncStream.objects.get(connection=github).checkpoint["since"] == at(5)

    # Nothing changed: nothing published but the run's completion.
    again = sync(github)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    assert len(events("WorkItemCreated")) == 5 and not events("WorkItemUpdated")

    # One issue changes, another one's reactions only (ignored by the hash).
    sim.github_issue(number=2, updated_at=at(9), title="renamed")
    sim.github_issue(number=3, updated_at=at(3), reactions=5)
    third = sync(github)
    assert (third.added, third.updated) == (0, 1)
    [updated] = events("WorkItemUpdated")
    assert updated.data["title"] == "renamed"
    assert SyncRecord.objects.get(external_id=updated.data["externalId"]).change == 6


def test_it_resumes_from_the_last_committed_page_after_a_failed_one(db, sim, github):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))
    sim.fail(status=502, times=1, path="/issues")  # the first page fails; retried later
    handler.start_run(connection=github, trigger="manual")
    drain()
    message = Message.objects.get(worker=WORKER, state=Message.State.PENDING)
    assert message.attempts == 1 and message.due_at > timezone.now()
    assert SyncRecord.objects.count() == 0

    time_passes()
    sim.fail(status=503, times=1, path=f"since={at(2)}", headers={"Retry-After": "1"})
    drain()
    # The second page failed too, after the first committed: only it is read again.
    time_passes()
    drain()

    run = IntegrationRun.objects.get()
    assert run.status == "succeeded"
    assert SyncRecord.objects.count() == 5
    assert len(events("WorkItemCreated")) == 5
    assert run.pages == 4
    pages = [(r.status, r.query.get("since")) for r in sim.log("/issues")]
    assert pages == [
        (502, None),
        (200, None),
        (503, [at(2)]),
        (200, [at(2)]),
        (200, [at(3)]),
        (200, [at(4)]),
    ]


def test_it_runs_one_sync_at_a_time_per_connection(db, sim, github, tenant):
    sim.github_issue(number=1, updated_at=at(1))
    first = handler.start_run(connection=github, trigger="manual")
    with pytest.raises(handler.Busy) as busy:
        handler.start_run(connection=github, trigger="manual")
    assert busy.value.run == first
    # The schedule's tick coalesces into the running run.
    assert handler.tick(tenant_id=tenant.pk, now=timezone.now()) == 0
    drain()
    assert IntegrationRun.objects.get().status == "succeeded"
    # Its cadence has not passed since: the tick starts nothing; later it does.
    assert handler.tick(tenant_id=tenant.pk, now=timezone.now()) == 0
    later = timezone.now() + timedelta(seconds=github.cadence_seconds + 1)
    assert handler.tick(tenant_id=tenant.pk, now=later) == 1


def test_it_refreshes_an_expired_token_once_and_reads_the_page_again(db, sim, tenant):
    sim.add_client(client_id="app", client_secret="shh", refresh_token="rt-1")
    sim.github_issue(number=1, updated_at=at(1))
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="oauth",
        base_url=sim.url,
        config={"owner": "acme", "repo": "app", "token_url": f"{sim.url}/oauth/token"},
        streams=["issues"],
    )
    secret = {
        "access_token": "at-expired",
        "refresh_token": "rt-1",
        "client_id": "app",
        "client_secret": "shh",
    }
    credentials.create_credential(connection=connection, secret=secret, kind="oauth2")

    run = sync(connection)

    assert run.status == "succeeded", run.error
    assert [r.status for r in sim.log("/issues")] == [401, 200]
    stored = credentials.current_secret(connection=connection)
    assert stored["access_token"] != "at-expired" and stored["refresh_token"] != "rt-1"
    assert CredentialVersion.objects.filter(credential__connection=connection).count() == 1


def test_it_puts_the_connection_in_error_when_a_token_cannot_be_refreshed(db, sim, github):
    sim.github_issue(number=1, updated_at=at(1))
    sim.expire(token="ghp-good")

    run = sync(github)

    assert run.status == "failed" and run.error.startswith("auth:")
    github.refresh_from_db()
    assert github.status == IntegrationConnection.Status.ERROR
    assert github.status_reason.startswith("auth:")
    [failed] = events("IntegrationFailed")
    assert failed.data["kind"] == "sync" and failed.data["errorClass"] == "auth"
    assert failed.data["connectionId"] == str(github.pk)
    assert "ghp-good" not in str(failed.data) + run.error
    with pytest.raises(handler.NotSyncable):
        handler.start_run(connection=github, trigger="manual")


def test_it_waits_for_a_rate_limit_without_spending_an_attempt(db, sim, github):
    sim.github_issue(number=1, updated_at=at(1))
    sim.fail(status=429, headers={"Retry-After": "40"}, path="/issues")
    handler.start_run(connection=github, trigger="manual")
    drain()

    message = Message.objects.get(worker=WORKER, state=Message.State.PENDING)
    assert message.attempts == 0
    assert message.due_at > timezone.now() + timedelta(seconds=30)
    run = IntegrationRun.objects.get()
    assert run.status == "running" and 39 <= run.rate_limited_seconds <= 41

    time_passes()
    drain()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.added == 1


def test_it_pauses_a_run_that_would_wait_too_long(db, sim, github, settings):
    settings.SYNC_MAX_WAIT_SECONDS = 60
    sim.github_issue(number=1, updated_at=at(1))
    sim.set(rate_remaining=0)

    run = sync(github)

    assert run.status == "paused" and "rate limited" in run.error
    assert not Message.objects.filter(worker=WORKER, state=Message.State.PENDING).exists()
    [completed] = events("IntegrationRunCompleted")
    assert completed.data["status"] == "paused"


def test_it_sweeps_deletions_after_a_complete_full_run_under_the_ratio(db, sim, github):
    issues = [sim.github_issue(number=n, updated_at=at(n)) for n in range(1, 5)]
    sync(github)

    sim.delete(kind="issues", id=str(issues[0]["id"]))
    run = sync(github, full=True)

    assert run.deleted == 1 and run.full == ["issues"]
    gone = SyncRecord.objects.get(external_id=str(issues[0]["id"]))
    assert gone.last_action == "deleted" and gone.deleted_at is not None
    [deleted] = [e for e in events("WorkItemUpdated") if e.data["deleted"]]
    assert deleted.data["number"] == 1

    # Most of what is stored gone at once: not believed.
    for issue in issues[1:]:
        sim.delete(kind="issues", id=str(issue["id"]))
    run = sync(github, full=True)
    assert run.deleted == 0 and "maximum delete ratio" in run.error
    assert SyncRecord.objects.filter(deleted_at__isnull=True).count() == 3


def test_it_publishes_a_record_that_comes_back_after_its_deletion(db, sim, github):
    issues = [sim.github_issue(number=n, updated_at=at(n)) for n in range(1, 5)]
    sync(github)
    sim.delete(kind="issues", id=str(issues[0]["id"]))
    assert sync(github, full=True).deleted == 1

    # Back as it was when first added: the same content, so the same hash and action.
    first = issues[0]
    sim.github_issue(number=1, updated_at=at(1), id=first["id"], node_id=first["node_id"])
    back = sync(github, full=True)

    assert back.added == 1
    record = SyncRecord.objects.get(external_id=str(first["id"]))
    assert record.deleted_at is None and record.content_hash == github_hash(first)
    # A new change, so a new event (its id is the change's, not the content's).
    created = [e for e in events("WorkItemCreated") if e.data["number"] == 1]
    assert len(created) == 2


def github_hash(issue: dict) -> str:
    return providers.get("github").content_hash("issues", issue)


def test_it_fails_a_run_whose_pages_keep_failing_and_reports_it(db, sim, github):
    sim.github_issue(number=1, updated_at=at(1))
    sim.fail(status=500, times=10, path="/issues")
    handler.start_run(connection=github, trigger="manual")
    for _ in range(6):
        drain()
        time_passes()

    run = IntegrationRun.objects.get()
    assert run.status == "failed"
    [failed] = events("IntegrationFailed")
    assert failed.data["errorClass"] == "transient"
    # The failures opened the connection's circuit: the next run waits without calling.
    sim.faults.clear()
    sim.clear_log()
    waiting = sync(github)
    assert waiting.status == "running" and sim.log() == []
    assert Message.objects.get(worker=WORKER, state=Message.State.PENDING).attempts == 0
    # Closed again (the health probe, or an operator): the run goes on.
    circuits.close(f"connection:{github.pk}")
    time_passes()
    drain()
    waiting.refresh_from_db()
    assert waiting.status == "succeeded" and waiting.added == 1


def test_it_loses_no_jira_issue_at_a_minute_boundary_between_runs(db, sim, tenant):
    sim.add_basic(user="ann@example.com", password="jira-token")
    connection = credentials.create_connection(
        tenant=tenant,
        provider="jira",
        name="jira",
        base_url=sim.url,
        config={"project": "ABC", "max_results": 2},
    )
    secret = {"email": "ann@example.com", "api_token": "jira-token"}
    credentials.create_credential(connection=connection, secret=secret, kind="basic")
    for n, second in ((1, 5), (2, 40), (3, 50)):
        sim.jira_issue(key=f"ABC-{n}", updated=f"2024-05-01T10:07:{second:02d}.000+0000")
    first = sync(connection)
    assert first.added == 3

    # Committed at 10:07:20, after the run had read the minute: the next run must find it.
    sim.jira_issue(key="ABC-4", updated="2024-05-01T10:07:20.000+0000")
    sim.jira_issue(key="ABC-2", updated="2024-05-01T10:07:40.000+0000", summary="changed")
    second = sync(connection)

    assert (second.added, second.updated) == (1, 1)
    keys = sorted(e.data["key"] for e in events("WorkItemCreated"))
    assert keys == ["ABC-1", "ABC-2", "ABC-3", "ABC-4"]
    assert [e.data["key"] for e in events("WorkItemUpdated")] == ["ABC-2"]
    assert SyncRecord.objects.filter(connection=connection).count() == 4


def one_message() -> None:
    """Handle the run's next page command alone, as one claim of the cluster would."""
    worker = registry.get(WORKER)
    dispatch.run_batch(worker, dispatch.claim(worker, limit=1), deadline=monotonic() + 60)


def test_it_resumes_a_paused_jira_run_whose_page_token_expired_from_its_checkpoint(
    db, sim, tenant, settings
):
    settings.SYNC_MAX_WAIT_SECONDS = 60
    settings.SYNC_PAGES_PER_MESSAGE = 1
    connection = credentials.create_connection(
        tenant=tenant,
        provider="jira",
        name="jira",
        base_url=sim.url,
        config={"project": "ABC", "max_results": 2},
    )
    secret = {"email": "ann@example.com", "api_token": "jira-token"}
    credentials.create_credential(connection=connection, secret=secret, kind="basic")
    # Five issues in one minute: past the first page, Jira's own token pages that minute.
    for n in range(1, 6):
        sim.jira_issue(key=f"ABC-{n}", updated=f"2024-05-01T10:07:{n:02d}.000+0000")
    sim.jira_issue(key="ABC-6", updated="2024-05-01T10:09:00.000+0000")
    paused = handler.start_run(connection=connection, trigger="manual")
    one_message()  # ABC-1, ABC-2
    one_message()  # the minute again: both seen, so the next page goes by Jira's token
    [stream] = SyncStream.objects.filter(connection=connection)
    assert stream.checkpoint["page"]["token"]
    sim.fail(status=429, headers={"Retry-After": "3600"}, path="/rest/api/3/search/jql")
    one_message()
    paused.refresh_from_db()
    assert paused.status == "paused"

    # An hour later the token has expired; the bucket has its tokens back.
    sim.expire_jira_page_tokens()
    time_passes()
    resumed = sync(connection)

    assert resumed.status == "succeeded", resumed.error
    assert (resumed.added, resumed.updated) == (4, 0)
    refused = [r for r in sim.log("/rest/api/3/search/jql") if r.status == 400]
    assert len(refused) == 1
    keys = sorted(e.data["key"] for e in events("WorkItemCreated"))
    assert keys == [f"ABC-{n}" for n in range(1, 7)]
    assert SyncRecord.objects.filter(connection=connection).count() == 6


def test_it_publishes_a_merge_once_when_it_appears(db, sim, tenant):
    connection = credentials.create_connection(
        tenant=tenant,
        provider="github",
        name="pulls",
        base_url=sim.url,
        config={"owner": "acme", "repo": "app"},
        streams=["pull_requests"],
    )
    credentials.create_credential(connection=connection, secret={"token": "ghp-good"})
    sim.github_pull(number=7, updated_at=at(1))
    sync(connection)
    assert not events("PullRequestMerged")

    sim.github_pull(number=7, updated_at=at(2), merged_at=at(2))
    sync(connection)
    sim.github_pull(number=7, updated_at=at(3), merged_at=at(2), title="renamed after merge")
    run = sync(connection)

    assert run.updated == 1
    [merged] = events("PullRequestMerged")
    assert merged.data["number"] == 7 and merged.data["mergedAt"] == at(2)


def test_the_schedule_starts_the_connections_whose_cadence_has_passed(db, sim, github):
    from core.runtime import scheduling

    sim.github_issue(number=1, updated_at=at(1))
    scheduling.fire(WORKER, "cadence")
    drain()

    [run] = IntegrationRun.objects.all()
    assert (run.trigger, run.status, run.added) == ("schedule", "succeeded", 1)
    scheduling.fire(WORKER, "cadence", now=timezone.now() + timedelta(minutes=1))
    drain()
    assert IntegrationRun.objects.count() == 1  # its cadence (an hour) has not passed


def test_it_keeps_the_connections_bucket_and_circuit_under_its_tenant(db, sim, github):
    sim.github_issue(number=1, updated_at=at(1))

    assert sync(github).status == "succeeded"

    credential = github.credentials.get()
    bucket = RateBucket.objects.get(key=limit_keys.credential(credential.pk))
    circuit = Circuit.objects.get(key=limit_keys.connection(github.pk))
    assert bucket.tenant_id == circuit.tenant_id == github.tenant_id  # listed by its API
