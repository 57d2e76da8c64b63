"""The Jira providers against the simulator: JQL at minute precision, ties inside a minute at
page and run boundaries, Cloud's nextPageToken and Data Center's startAt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from integrations.connections import providers
from tests.integrations.providers.paging import run

CLOUD = providers.get("jira")
DATA_CENTER = providers.get("jira_datacenter")
BASIC = {"email": "ann@example.com", "api_token": "jira-token"}
CONFIG = {"project": "ABC", "max_results": 2}


def at(minute: int, second: int = 0, ms: int = 0) -> str:
    return f"2024-05-01T10:{minute:02d}:{second:02d}.{ms:03d}+0000"


@pytest.fixture(params=["cloud", "datacenter"])
def jira(request):
    return CLOUD if request.param == "cloud" else DATA_CENTER


def test_it_writes_the_jql_the_vendor_documents():
    assert CLOUD.jql({"project": "ABC"}, None) == 'project = "ABC" ORDER BY updated ASC, key ASC'
    assert CLOUD.jql({"project": "ABC"}, "2024-05-01T10:07:00Z") == (
        'project = "ABC" AND updated >= "2024-05-01 10:07" ORDER BY updated ASC, key ASC'
    )
    # In the credential's user's time zone (Berlin is UTC+2 in May).
    berlin = {"project": "ABC", "timezone": "Europe/Berlin", "jql": "labels = ops"}
    assert CLOUD.jql(berlin, "2024-05-01T10:07:00Z") == (
        '(labels = ops) AND project = "ABC" AND updated >= "2024-05-01 12:07" '
        "ORDER BY updated ASC, key ASC"
    )


def test_it_searches_cloud_with_the_enhanced_search_and_basic_auth(sim):
    sim.jira_issue(key="ABC-1", updated=at(1))
    sim.jira_issue(key="ABC-2", updated=at(2))
    sim.jira_issue(key="ABC-3", updated=at(3))

    result = run(CLOUD, "issues", base_url=sim.url, config=CONFIG, secret=BASIC)

    assert [r.data["key"] for r in result.records] == ["ABC-1", "ABC-2", "ABC-3"]
    first = sim.log("/search")[0]
    assert (first.method, first.path) == ("POST", "/rest/api/3/search/jql")
    assert first.headers["authorization"].startswith("Basic ")
    body = first.json()
    assert body["jql"] == 'project = "ABC" ORDER BY updated ASC, key ASC'
    assert body["maxResults"] == 2 and "updated" in body["fields"]
    assert "nextPageToken" not in body
    assert result.checkpoint == {
        "since": "2024-05-01T10:03:00Z",
        "seen": {
            result.records[-1].external_id: CLOUD.content_hash("issues", result.records[-1].data)
        },
    }


def test_it_searches_data_center_with_start_at_and_a_personal_access_token(sim):
    sim.add_token(token="pat-1")
    for n in range(1, 4):
        sim.jira_issue(key=f"ABC-{n}", updated=at(n))

    result = run(DATA_CENTER, "issues", base_url=sim.url, config=CONFIG, secret={"token": "pat-1"})

    assert [r.data["key"] for r in result.records] == ["ABC-1", "ABC-2", "ABC-3"]
    first = sim.log("/search")[0]
    assert (first.method, first.path) == ("GET", "/rest/api/2/search")
    assert first.query["startAt"] == ["0"] and first.query["maxResults"] == ["2"]
    assert first.headers["authorization"] == "Bearer pat-1"


def test_it_keeps_ties_inside_one_minute_across_pages(sim, jira):
    # Five issues in one minute, two to a page: the minute is re-read and its issues
    # de-duplicated; the vendor's own paging carries on while a page stays inside it.
    for n in range(1, 6):
        sim.jira_issue(key=f"ABC-{n}", updated=at(7, second=n))
    sim.jira_issue(key="ABC-9", updated=at(8))

    result = run(jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC)

    assert [r.data["key"] for r in result.records] == [f"ABC-{n}" for n in (1, 2, 3, 4, 5, 9)]
    assert result.checkpoint["since"] == "2024-05-01T10:08:00Z"


def test_it_reads_a_late_arrival_inside_the_boundary_minute_on_the_next_run(sim, jira):
    sim.jira_issue(key="ABC-1", updated=at(7, second=10))
    sim.jira_issue(key="ABC-2", updated=at(7, second=50))
    first = run(jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC)
    assert first.checkpoint["since"] == "2024-05-01T10:07:00Z"

    # Committed by Jira after the first run read the minute, with an earlier second than
    # the last issue seen: a checkpoint of "10:07:50" (or an exclusive one) would lose it.
    sim.jira_issue(key="ABC-3", updated=at(7, second=30))
    second = run(
        jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC, checkpoint=first.checkpoint
    )

    assert [r.data["key"] for r in second.records] == ["ABC-3"]
    assert sum(page.skipped for page in second.pages) == 2
    assert set(second.checkpoint["seen"]) == {r.external_id for r in first.records} | {
        second.records[0].external_id
    }
    # And nothing more the run after.
    third = run(
        jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC, checkpoint=second.checkpoint
    )
    assert third.records == []


def test_it_resumes_inside_a_crowded_minute_from_a_saved_page(sim, jira):
    for n in range(1, 6):
        sim.jira_issue(key=f"ABC-{n}", updated=at(7, second=n))
    everything = [
        r.external_id
        for r in run(jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC).records
    ]
    for pages in (2, 3):
        # Stopped after `pages` committed pages, as a crash would leave it.
        partial = run(
            jira, "issues", base_url=sim.url, config=CONFIG, secret=BASIC, stop_after=pages
        )
        assert partial.checkpoint.get("page")  # inside the crowded minute, by vendor paging

        rest = run(
            jira,
            "issues",
            base_url=sim.url,
            config=CONFIG,
            secret=BASIC,
            checkpoint=partial.checkpoint,
        )

        assert partial.ids + rest.ids == everything


def test_it_reads_jql_dates_in_the_users_time_zone(sim):
    sim.set(jira_timezone="America/New_York")
    sim.jira_issue(key="ABC-1", updated=at(7))
    config = {**CONFIG, "timezone": "America/New_York"}
    first = run(CLOUD, "issues", base_url=sim.url, config=config, secret=BASIC)
    sim.jira_issue(key="ABC-2", updated=at(7, second=40))

    second = run(
        CLOUD, "issues", base_url=sim.url, config=config, secret=BASIC, checkpoint=first.checkpoint
    )

    assert [r.data["key"] for r in second.records] == ["ABC-2"]
    assert '"2024-05-01 06:07"' in sim.log("/search")[-1].json()["jql"]


def test_it_ignores_the_viewers_last_viewed_time(sim):
    sim.jira_issue(key="ABC-1", updated=at(7))
    config = {**CONFIG, "fields": ["summary", "updated", "lastViewed"]}
    first = run(CLOUD, "issues", base_url=sim.url, config=config, secret=BASIC)
    assert "lastViewed" in first.records[0].data["fields"]

    second = run(
        CLOUD, "issues", base_url=sim.url, config=config, secret=BASIC, checkpoint=first.checkpoint
    )

    assert second.records == []  # lastViewed differs; the issue does not


def test_it_reads_cloud_rate_limit_headers():
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    headers = {"Retry-After": "5", "X-RateLimit-Reset": "2024-05-01T10:01Z"}
    assert CLOUD.classify(429, headers) == "rate_limited"
    assert CLOUD.wait_until(429, headers, now=now) == now + timedelta(minutes=1)
    assert CLOUD.classify(503, {"Retry-After": "3"}) == "retryable"
    assert CLOUD.wait_until(503, {"Retry-After": "3"}, now=now) == now + timedelta(seconds=3)


def test_it_maps_an_issue_to_work_item_events(sim):
    issue = sim.jira_issue(key="ABC-1", updated=at(7), summary="Fix it", status="In Progress")
    issue = json.loads(json.dumps({k: v for k, v in issue.items() if not k.startswith("_")}))
    record = providers.Record(
        external_id=issue["id"], cursor=issue["fields"]["updated"], data=issue
    )

    kind, data = CLOUD.factory_event("issues", record, "added")

    assert kind == "WorkItemCreated"
    assert data["key"] == "ABC-1" and data["title"] == "Fix it" and data["state"] == "In Progress"
    assert data["url"] == f"{sim.url}/browse/ABC-1"
    assert CLOUD.factory_event("issues", record, "updated")[0] == "WorkItemUpdated"
    assert CLOUD.factory_event("issues", record, "deleted")[1]["deleted"] is True
