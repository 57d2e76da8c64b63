"""The sync in the console: "Sync now" on a connection's page (and what it says while a run
is running), the connection's runs, streams and credentials on its page, the runs' list and
pages, a stream's "Reset", the records, and the landing page's Integrations section."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from integrations.connections import credentials
from integrations.connections.models import IntegrationConnection, IntegrationCredential
from integrations.sync import handler
from integrations.sync.models import IntegrationRun, SyncRecord, SyncStream
from tests.integrations.failures.support import report
from tests.integrations.sync.conftest import drain

pytestmark = pytest.mark.django_db
RUNS = reverse("admin:sync_integrationrun_changelist")
STREAMS = reverse("admin:sync_syncstream_changelist")
RECORDS = reverse("admin:sync_syncrecord_changelist")


def at(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


def connection_url(connection) -> str:
    return reverse("admin:connections_integrationconnection_change", args=[connection.pk])


def sync_now_url(connection) -> str:
    return reverse("admin:connections_integrationconnection_sync_now", args=[connection.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def listed(response) -> list:
    return list(response.context["cl"].result_list)


@pytest.fixture
def issues(sim):
    for number in range(1, 4):
        sim.github_issue(number=number, updated_at=at(number), title=f"issue {number}")


def test_it_syncs_now_from_the_connections_page_and_shows_its_runs_and_streams(
    admin_client, github, issues
):
    page = admin_client.get(connection_url(github)).content.decode()
    assert "Sync now" in page and "No run yet." in page

    started = admin_client.post(sync_now_url(github), follow=True)

    run = IntegrationRun.objects.get(connection=github)
    assert run.trigger == "manual" and run.status == "running"
    assert messages_of(started) == [
        f"Started run {run.pk}; its pages are read by IntegrationSyncWorker."
    ]
    # A second press while it runs starts nothing: what the API answers with 409.
    again = admin_client.post(sync_now_url(github), follow=True)
    assert messages_of(again) == [f"Not started: Run {run.pk} of this connection is still running."]
    assert IntegrationRun.objects.filter(connection=github).count() == 1

    drain()

    page = admin_client.get(connection_url(github)).content.decode()
    runs = re.search(r'<table class="conn-table" id="connection-runs">.*?</table>', page, re.S)
    assert runs is not None
    row = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", runs.group()))
    assert "manual succeeded 3 0 " in row  # trigger, status, added, updated
    assert reverse("admin:sync_integrationrun_change", args=[run.pk]) in runs.group()
    streams = re.search(r'id="connection-streams">.*?</table>', page, re.S)
    assert streams is not None and f"since={at(3)}" in streams.group()
    credential = IntegrationCredential.objects.get(connection=github)
    assert reverse("admin:connections_integrationcredential_change", args=[credential.pk]) in page
    assert "ghp-good" not in page  # the credential's secret: on no page


def test_it_says_why_a_paused_connection_does_not_sync(admin_client, github):
    github.status, github.status_reason = IntegrationConnection.Status.PAUSED, "by hand"
    github.save()
    assert "Sync now" not in admin_client.get(connection_url(github)).content.decode()

    refused = admin_client.post(sync_now_url(github), follow=True)

    assert messages_of(refused) == ["Not started: The connection is paused: by hand"]
    assert not IntegrationRun.objects.filter(connection=github).exists()


def test_it_lists_runs_by_connection_status_and_trigger_and_shows_one_with_its_checkpoints(
    admin_client, tenant, github, issues, sim
):
    other = credentials.create_connection(
        tenant=tenant, provider="github", name="other", base_url=sim.url, streams=["issues"]
    )
    handler.start_run(connection=github, trigger="manual")
    drain()
    failed = IntegrationRun.objects.create(
        tenant_id=tenant.pk,
        connection=other,
        trigger="schedule",
        status="failed",
        error="VendorError: 502 Bad Gateway from /repos/acme/app/issues\nmore",
        finished=timezone.now(),
    )
    [succeeded] = IntegrationRun.objects.filter(connection=github)

    assert listed(admin_client.get(RUNS)) == [failed, succeeded]  # newest first
    assert listed(admin_client.get(f"{RUNS}?status__exact=failed")) == [failed]
    assert listed(admin_client.get(f"{RUNS}?trigger__exact=manual")) == [succeeded]
    assert listed(admin_client.get(f"{RUNS}?connection__id__exact={github.pk}")) == [succeeded]
    assert "502 Bad Gateway" in admin_client.get(RUNS).content.decode()

    page = admin_client.get(reverse("admin:sync_integrationrun_change", args=[succeeded.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Checkpoints from" in text and f"&quot;since&quot;: &quot;{at(3)}&quot;" in text
    assert b'name="_save"' not in page.content  # read-only
    failed_page = admin_client.get(reverse("admin:sync_integrationrun_change", args=[failed.pk]))
    assert "VendorError: 502 Bad Gateway" in failed_page.content.decode()


def test_it_resets_a_streams_checkpoint_but_not_while_a_run_is_running(
    admin_client, github, issues
):
    handler.start_run(connection=github, trigger="manual")
    drain()
    stream = SyncStream.objects.get(connection=github, name="issues")
    assert stream.checkpoint["since"] == at(3)
    assert listed(admin_client.get(f"{STREAMS}?connection__id__exact={github.pk}")) == [stream]
    reset_url = reverse("admin:sync_syncstream_reset", args=[stream.pk])
    stream_page = admin_client.get(reverse("admin:sync_syncstream_change", args=[stream.pk]))
    assert f'action="{reset_url}" data-object-action="reset"' in stream_page.content.decode()
    run = handler.start_run(connection=github, trigger="manual")

    busy = admin_client.post(reset_url, follow=True)

    assert messages_of(busy) == [f"Not reset: Run {run.pk} of this connection is still running."]
    drain()
    stream.refresh_from_db()
    assert stream.checkpoint["since"] == at(3)

    done = admin_client.post(reset_url, follow=True)

    assert messages_of(done) == ["Reset issues: its next run reads it from the start."]
    stream.refresh_from_db()
    assert stream.checkpoint == {} and stream.state == "idle"
    assert admin_client.get(reset_url).status_code == 405  # a GET changes nothing


def test_it_lists_records_by_stream_and_last_action_and_finds_one_by_external_id(
    admin_client, github, issues, sim
):
    handler.start_run(connection=github, trigger="manual")
    drain()
    sim.github_issue(number=2, updated_at=at(9), title="renamed")
    handler.start_run(connection=github, trigger="manual")
    drain()
    records = {r.data["number"]: r for r in SyncRecord.objects.filter(connection=github)}

    assert listed(admin_client.get(RECORDS)) == [records[3], records[2], records[1]]
    assert listed(admin_client.get(f"{RECORDS}?last_action__exact=updated")) == [records[2]]
    assert listed(admin_client.get(f"{RECORDS}?stream=issues&last_action__exact=added")) == [
        records[3],
        records[1],
    ]
    assert listed(admin_client.get(f"{RECORDS}?stream=pull_requests")) == []
    found = admin_client.get(RECORDS, {"q": records[1].external_id})
    assert listed(found) == [records[1]]
    page = admin_client.get(reverse("admin:sync_syncrecord_change", args=[records[2].pk]))
    assert page.status_code == 200 and "renamed" in page.content.decode()
    assert b'name="_save"' not in page.content


def _section(admin_client) -> str:
    page = admin_client.get(reverse("admin:index")).content.decode()
    found = re.search(r'<section id="integrations">.*?</section>', page, re.S)
    assert found is not None
    return found.group()


def _links(section: str) -> dict[str, str]:
    """The section's figures: their text ("2 active") and where they lead."""
    return {
        text.strip(): url.replace("&amp;", "&")
        for url, text in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', section)
    }


def test_it_counts_connections_runs_and_failures_on_the_landing_page(
    admin_client, tenant, github, sim
):
    broken = credentials.create_connection(
        tenant=tenant, provider="github", name="broken", base_url=sim.url
    )
    broken.status, broken.status_reason = "error", "401 after a token refresh"
    broken.save()
    now = timezone.now()
    for status, finished in [
        ("succeeded", now),
        ("succeeded", now - timedelta(minutes=10)),
        ("failed", now - timedelta(minutes=5)),
        ("failed", now - timedelta(hours=2)),  # not in the last hour
    ]:
        IntegrationRun.objects.create(
            tenant_id=tenant.pk, connection=github, trigger="schedule", status=status,
            finished=finished,
        )  # fmt: skip
    failure = report(tenant, failure_id="sync-1")

    section = _section(admin_client)
    links = _links(section)

    assert {"1 active", "0 paused", "1 error", "2 succeeded", "1 failed"} <= set(links)
    assert listed(admin_client.get(links["1 error"])) == [broken]
    [recent] = listed(admin_client.get(links["1 failed"]))
    assert recent.status == "failed" and recent.finished > now - timedelta(hours=1)
    assert len(listed(admin_client.get(links["2 succeeded"]))) == 2
    failures = _links(section)[f"1 {failure.status}"]
    assert listed(admin_client.get(failures)) == [failure]
    assert "401 after a token refresh" in section
    assert connection_url(broken) in section


def test_it_says_when_no_connection_is_in_trouble_on_the_landing_page(admin_client, github):
    section = _section(admin_client)
    assert "No connection is in error or paused." in section
    assert 'Open failures: <span class="quiet">none</span>' in section


def test_it_finds_a_run_by_its_id(admin_client, tenant, github):
    run = IntegrationRun.objects.create(tenant_id=tenant.pk, connection=github, trigger="manual")

    assert listed(admin_client.get(RUNS, {"q": str(run.pk)})) == [run]
    assert listed(admin_client.get(RUNS, {"q": "not-a-uuid"})) == []


def test_it_offers_sync_now_and_reset_only_to_who_may_change_them(client, github):
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_integrationconnection", "view_syncstream"])
    )
    client.force_login(viewer)
    stream = SyncStream.objects.create(tenant_id=github.tenant_id, connection=github, name="issues")

    page = client.get(connection_url(github))
    assert page.status_code == 200 and "Sync now" not in page.content.decode()
    assert client.post(sync_now_url(github)).status_code == 403
    reset_url = reverse("admin:sync_syncstream_reset", args=[stream.pk])
    assert client.post(reset_url).status_code == 403
    assert not IntegrationRun.objects.exists()
