"""The sync API: sync now (202, then 409 while running), runs, and the records feed read
from a consumer's own cursor."""

from __future__ import annotations

import json

from integrations.connections import credentials
from tests.integrations.sync.conftest import drain


def at(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


def test_it_syncs_on_demand_and_feeds_changes_from_a_cursor(db, sim, github, api):
    for number in range(1, 4):
        sim.github_issue(number=number, updated_at=at(number))
    base = f"/api/integrations/connections/{github.pk}"

    started = api("post", f"{base}/sync", {})
    assert started.status_code == 202, started.content
    again = api("post", f"{base}/sync", {})
    assert again.status_code == 409
    assert again.json()["runId"] == started.json()["id"]
    drain()

    runs = api("get", f"{base}/runs").json()
    [run] = runs["results"]
    assert (run["status"], run["added"], run["trigger"]) == ("succeeded", 3, "manual")
    assert run["checkpointsTo"]["issues"]["since"] == at(3)

    first = api("get", f"{base}/records?limit=2").json()
    assert [r["data"]["number"] for r in first["records"]] == [1, 2]
    assert first["records"][0]["metadata"]["lastAction"] == "added"
    rest = api("get", f"{base}/records?cursor={first['nextCursor']}").json()
    assert [r["data"]["number"] for r in rest["records"]] == [3]
    idle = api("get", f"{base}/records?cursor={rest['nextCursor']}").json()
    assert idle == {"records": [], "nextCursor": rest["nextCursor"]}

    sim.github_issue(number=1, updated_at=at(9), title="changed")
    assert api("post", f"{base}/sync", {}).status_code == 202
    drain()
    changed = api("get", f"{base}/records?cursor={rest['nextCursor']}&stream=issues").json()
    assert [(r["data"]["number"], r["metadata"]["lastAction"]) for r in changed["records"]] == [
        (1, "updated")
    ]
    assert api("get", f"{base}/records?filter=deleted").json()["records"] == []

    everything = json.dumps([runs, first, rest, changed])
    assert "ghp-good" not in everything


def test_it_answers_for_the_callers_connections_only(db, sim, github, api, other_tenant):
    theirs = credentials.create_connection(
        tenant=other_tenant, provider="github", name="theirs", config={"owner": "a", "repo": "b"}
    )
    for path in ("records", "runs"):
        assert api("get", f"/api/integrations/connections/{theirs.pk}/{path}").status_code == 404
    assert api("post", f"/api/integrations/connections/{theirs.pk}/sync", {}).status_code == 404
    base = f"/api/integrations/connections/{github.pk}"
    assert api("get", f"{base}/records?cursor=abc").status_code == 400
    assert api("get", f"{base}/records?filter=gone").status_code == 400


def test_it_refuses_to_sync_a_connection_in_error(db, sim, github, api):
    github.status, github.status_reason = "error", "auth: refused"
    github.save()
    reply = api("post", f"/api/integrations/connections/{github.pk}/sync", {})
    assert reply.status_code == 409
    assert "error" in reply.json()["error"]


def test_it_shows_streams_and_resets_one_to_a_full_read(db, sim, github, api):
    issues = [sim.github_issue(number=n, updated_at=at(n)) for n in range(1, 4)]
    base = f"/api/integrations/connections/{github.pk}"
    api("post", f"{base}/sync", {})
    drain()
    [stream] = api("get", f"{base}/streams").json()
    assert stream["name"] == "issues" and stream["checkpoint"]["since"] == at(3)

    sim.delete(kind="issues", id=str(issues[0]["id"]))
    reset = api("post", f"{base}/streams/issues/reset")
    assert reset.status_code == 200 and reset.json()["checkpoint"] == {}
    assert api("post", f"{base}/streams/nope/reset").status_code == 404
    api("post", f"{base}/sync", {})
    drain()

    [run, _] = api("get", f"{base}/runs").json()["results"]
    assert (run["full"], run["added"], run["deleted"]) == (["issues"], 0, 1)
    deleted = api("get", f"{base}/records?filter=deleted").json()["records"]
    assert [r["data"]["number"] for r in deleted] == [1]
