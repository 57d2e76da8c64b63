"""The registry, hashing, factory events, the generic provider, OAuth 2.0 and the key API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import events, outbound
from integrations.connections import providers
from integrations.connections.providers.base import canonical_json, content_hash, link_next
from tests.integrations.providers.paging import run

GITHUB = providers.get("github")
GENERIC = providers.get("generic")


def test_it_lists_the_providers_and_refuses_an_unknown_one():
    assert providers.names() == ["github", "jira", "jira_datacenter", "generic"]
    assert all(p.describe()["streams"] for p in providers.all())
    with pytest.raises(KeyError, match="Known providers: generic, github"):
        providers.get("gitlab")


def test_it_hashes_canonical_json_without_the_volatile_fields():
    a = {"b": 1, "a": {"y": [1, 2], "x": "é"}, "reactions": {"total_count": 1}}
    b = {"a": {"x": "é", "y": [1, 2]}, "reactions": {"total_count": 9}, "b": 1}
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    assert GITHUB.content_hash("issues", a) == GITHUB.content_hash("issues", b)
    assert GITHUB.content_hash("issues", a) != GITHUB.content_hash("issues", {**a, "b": 2})
    # A nested volatile field: the repository's push time inside a pull request.
    pr = {"head": {"ref": "x", "repo": {"pushed_at": "1", "name": "app"}}}
    moved = {"head": {"ref": "x", "repo": {"pushed_at": "2", "name": "app"}}}
    assert GITHUB.content_hash("pull_requests", pr) == GITHUB.content_hash("pull_requests", moved)
    assert content_hash(pr) != content_hash(moved)
    assert providers.HASH_ALGORITHM == "sha256-canonical-json-v1"


def test_it_maps_github_records_to_catalog_events(sim):
    issue = sim.github_issue(number=7, updated_at="2024-05-01T10:00:00Z", labels=["bug"])
    record = providers.Record(str(issue["id"]), issue["updated_at"], issue)
    kind, data = GITHUB.factory_event("issues", record, "added")
    assert kind == "WorkItemCreated"
    assert data["key"] == "acme/app#7" and data["labels"] == ["bug"]
    assert GITHUB.factory_event("issues", record, "updated")[0] == "WorkItemUpdated"

    open_pr = sim.github_pull(number=8, updated_at="2024-05-01T10:00:00Z")
    merged = sim.github_pull(
        number=8, updated_at="2024-05-01T11:00:00Z", merged_at="2024-05-01T11:00:00Z"
    )
    pr = providers.Record(str(merged["id"]), merged["updated_at"], merged)
    opened = providers.Record(str(open_pr["id"]), open_pr["updated_at"], open_pr)
    assert GITHUB.factory_event("pull_requests", opened, "added") is None
    kind, data = GITHUB.factory_event("pull_requests", pr, "updated", previous=open_pr)
    assert kind == "PullRequestMerged"
    assert data["mergedAt"] == "2024-05-01T11:00:00Z" and data["repository"] == "acme/app"
    # Once: a later change to a merged pull request is no second merge.
    assert GITHUB.factory_event("pull_requests", pr, "updated", previous=merged) is None
    for name in ("WorkItemCreated", "WorkItemUpdated", "PullRequestMerged"):
        assert events.catalog()[name].kind is events.Kind.FACTORY


def test_it_reads_a_generic_api_by_pages_from_an_inclusive_cursor(sim):
    sim.add_token(token="g-1")
    for n in range(1, 6):
        sim.generic_item(id=f"r{n}", updated_at=f"2024-05-01T10:0{n}:00Z", name=f"n{n}")
    config = {
        "path": "/api/items",
        "records_path": "data",
        "cursor_param": "updated_since",
        "pagination": "page",
        "page_size": 2,
    }

    first = run(GENERIC, "records", base_url=sim.url, config=config, secret={"token": "g-1"})
    assert first.ids == ["r1", "r2", "r3", "r4", "r5"]
    assert first.checkpoint["since"] == "2024-05-01T10:05:00Z"

    sim.generic_item(id="r6", updated_at="2024-05-01T10:05:00Z")  # a tie with the last
    second = run(
        GENERIC,
        "records",
        base_url=sim.url,
        config=config,
        secret={"token": "g-1"},
        checkpoint=first.checkpoint,
    )
    assert second.ids == ["r6"]
    assert sim.log("/api/items")[-1].query["updated_since"] == ["2024-05-01T10:05:00Z"]


def test_it_creates_and_revokes_keys_with_the_generic_key_api(sim):
    sim.add_token(token="g-1")
    auth = GENERIC.auth_headers({"token": "g-1"})
    create = GENERIC.key_create_request(base_url=sim.url)
    reply = outbound.request(
        create.method, create.url, headers={**create.headers, **auth}, body=create.body
    )
    key_id, secret = GENERIC.parse_key_created(reply.body)
    verify = GENERIC.verification_request(base_url=sim.url, config={"verify_path": "/api/me"})
    new_auth = GENERIC.auth_headers(secret)
    assert outbound.request("GET", verify.url, headers=new_auth).status == 200

    revoke = GENERIC.key_revoke_request(base_url=sim.url, key_id=key_id)
    assert outbound.request(revoke.method, revoke.url, headers=auth).status == 204
    assert outbound.request("GET", verify.url, headers=new_auth).status == 401


def test_it_refreshes_an_oauth_token_and_keeps_the_rotated_refresh_token(sim):
    sim.add_client(client_id="app", client_secret="shh", refresh_token="rt-1")
    secret = {"client_id": "app", "client_secret": "shh", "refresh_token": "rt-1"}
    now = datetime(2024, 5, 1, tzinfo=UTC)

    ask = GITHUB.token_request(secret=secret, config={"token_url": f"{sim.url}/oauth/token"})
    reply = outbound.request(ask.method, ask.url, headers=dict(ask.headers), body=ask.body)
    fresh = GITHUB.parse_token(secret=secret, body=reply.body, now=now)

    assert sim.log("/oauth/token")[0].body.decode().startswith("client_id=app")
    assert fresh["refresh_token"] != "rt-1" and fresh["access_token"].startswith("at-")
    assert fresh["expires_at"] == "2024-05-01T01:00:00+00:00"
    assert GITHUB.auth_headers(fresh) == {"Authorization": f"Bearer {fresh['access_token']}"}
    # The old refresh token was rotated away.
    again = outbound.request(ask.method, ask.url, headers=dict(ask.headers), body=ask.body)
    assert again.status == 400

    client = {"client_id": "app", "client_secret": "shh"}
    ask = GITHUB.token_request(secret=client, config={"token_url": f"{sim.url}/oauth/token"})
    assert b"grant_type=client_credentials" in ask.body
    reply = outbound.request(ask.method, ask.url, headers=dict(ask.headers), body=ask.body)
    assert reply.status == 200


def test_it_finds_the_next_link():
    header = (
        '<https://api.github.com/repositories/1/issues?page=2>; rel="next", '
        '<https://api.github.com/repositories/1/issues?page=5>; rel="last"'
    )
    assert link_next(header) == "https://api.github.com/repositories/1/issues?page=2"
    assert link_next('<https://x/?page=5>; rel="last"') is None
    assert link_next(None) is None
