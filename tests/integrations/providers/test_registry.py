"""The registry, hashing, factory events, the generic provider, OAuth 2.0 and the key API."""

from __future__ import annotations

import json
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


KEYS = {"verify_path": "/api/me", "key_create_path": "/api/keys"}


def test_it_creates_and_revokes_keys_with_the_key_api_a_generic_connection_configures(sim):
    sim.add_token(token="g-1")
    auth = GENERIC.auth_headers({"token": "g-1"})
    create = GENERIC.key_create_request(base_url=sim.url, config=KEYS, name="deploy")
    assert (create.method, create.url) == ("POST", f"{sim.url}/api/keys")
    reply = outbound.request(
        create.method, create.url, headers={**create.headers, **auth}, body=create.body
    )
    key_id, secret = GENERIC.parse_key_created(
        config=KEYS, secret={"token": "g-1", "account": "acme"}, body=reply.body
    )
    # The new token in place of the old, the secret's other fields kept.
    assert secret == {"token": sim.token_of(key_id), "account": "acme"}
    verify = GENERIC.verification_request(base_url=sim.url, config=KEYS)
    new_auth = GENERIC.auth_headers(secret)
    assert outbound.request("GET", verify.url, headers=new_auth).status == 200

    revoke = GENERIC.key_revoke_request(base_url=sim.url, config=KEYS, key_id=key_id)
    assert (revoke.method, revoke.url) == ("DELETE", f"{sim.url}/api/keys/{key_id}")
    assert outbound.request(revoke.method, revoke.url, headers=auth).status == 204
    assert outbound.request("GET", verify.url, headers=new_auth).status == 401


def test_it_reads_a_key_api_of_another_shape_from_the_connections_config():
    config = {
        "key_create_path": "/v2/tokens",
        "key_revoke_path": "/v2/tokens/{id}/revoke",
        "key_revoke_method": "POST",
        "key_id_path": "data.uid",
        "key_token_path": "data.secret",
    }
    revoke = GENERIC.key_revoke_request(base_url="https://x.example", config=config, key_id="a/b")
    assert (revoke.method, revoke.url) == ("POST", "https://x.example/v2/tokens/a%2Fb/revoke")
    body = b'{"data": {"uid": 7, "secret": "s-7"}}'
    assert GENERIC.parse_key_created(config=config, secret={}, body=body) == ("7", {"token": "s-7"})
    with pytest.raises(ValueError, match="no id"):
        GENERIC.parse_key_created(config=config, secret={}, body=b'{"id": 1, "token": "t"}')
    # A revocation path that cannot name its key is no key API at all.
    assert GENERIC.key_api_for({**config, "key_revoke_path": "/v2/tokens"}) is None


def test_it_says_how_each_provider_can_rotate():
    jira, jira_dc = providers.get("jira"), providers.get("jira_datacenter")
    assert GITHUB.rotation_methods({}) == ("operator", "oauth2_refresh")
    assert jira.rotation_methods({}) == ("operator", "oauth2_refresh")
    assert jira_dc.rotation_methods({}) == ("operator",)
    # The generic API: what its connection's config declares.
    assert GENERIC.rotation_methods({}) == ("operator",)
    assert GENERIC.rotation_methods({"token_url": "https://x/token", **KEYS}) == (
        "operator",
        "oauth2_refresh",
        "vendor_key",
    )
    refused = GITHUB.refuse_method("vendor_key", {})
    assert refused and "GitHub has no API that creates personal access tokens" in refused
    assert "Use one of: operator, oauth2_refresh" in refused
    assert GITHUB.refuse_method("vendor_key", KEYS) == refused  # config cannot add one
    assert "key_create_path" in (GENERIC.refuse_method("vendor_key", {}) or "")
    assert GENERIC.refuse_method("vendor_key", KEYS) is None
    assert jira_dc.refuse_method("oauth2_refresh", {})
    assert GITHUB.refuse_kind("basic") and GITHUB.refuse_kind("token") is None
    with pytest.raises(ValueError, match="cannot mint keys"):
        GITHUB.key_create_request(base_url="", config=KEYS, name="x")
    described = {p.name: p.describe()["rotationMethods"] for p in providers.all()}
    assert described["github"] == ["operator", "oauth2_refresh"]
    assert described["generic"] == ["operator", "oauth2_refresh", "vendor_key"]


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

    # GitHub has no client_credentials grant: a client without a refresh token mints nothing
    # there; the generic provider, which declares the grant, asks for it.
    client = {"client_id": "app", "client_secret": "shh"}
    token_url = {"token_url": f"{sim.url}/oauth/token"}
    assert GITHUB.token_request(secret=client, config=token_url) is None
    ask = GENERIC.token_request(secret=client, config=token_url)
    assert ask is not None and b"grant_type=client_credentials" in ask.body
    reply = outbound.request(ask.method, ask.url, headers=dict(ask.headers), body=ask.body)
    assert reply.status == 200


def test_it_refreshes_a_jira_token_with_the_json_body_atlassian_documents(sim):
    jira = providers.get("jira")
    sim.add_client(client_id="app", client_secret="shh", refresh_token="rt-1")
    secret = {"client_id": "app", "client_secret": "shh", "refresh_token": "rt-1"}

    ask = jira.token_request(secret=secret, config={"token_url": f"{sim.url}/oauth/token"})
    reply = outbound.request(ask.method, ask.url, headers=dict(ask.headers), body=ask.body)

    assert dict(ask.headers)["Content-Type"] == "application/json"
    assert json.loads(ask.body) == {
        "client_id": "app",
        "client_secret": "shh",
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
    }
    assert reply.status == 200 and sim.token_bodies == ["json"]
    assert jira.oauth2.token_url == "https://auth.atlassian.com/oauth/token"


def test_it_refuses_a_3lo_token_on_a_jira_sites_own_url_and_takes_it_through_the_gateway():
    jira = providers.get("jira")

    refused = jira.refuse_kind("oauth2", base_url="https://acme.atlassian.net")

    assert refused and "https://api.atlassian.com/ex/jira/<cloudId>" in refused
    assert jira.refuse_kind("oauth2", base_url="https://api.atlassian.com/ex/jira/1a2b") is None
    assert jira.refuse_kind("basic", base_url="https://acme.atlassian.net") is None


def test_it_finds_the_next_link():
    header = (
        '<https://api.github.com/repositories/1/issues?page=2>; rel="next", '
        '<https://api.github.com/repositories/1/issues?page=5>; rel="last"'
    )
    assert link_next(header) == "https://api.github.com/repositories/1/issues?page=2"
    assert link_next('<https://x/?page=5>; rel="last"') is None
    assert link_next(None) is None
