"""The connections and credentials API: CRUD, rotate with its idempotency codes, rollback,
policy, the registry; no reply carries a secret; another tenant finds nothing."""

from __future__ import annotations

import logging
import uuid

from tests.integrations.connections.conftest import GENERIC_CONFIG
from tests.integrations.connections.helpers import run_worker

SECRET = "tok-initial"


def create(api, vendor) -> tuple[dict, dict]:
    """A generic connection with the simulator's key API, and a vendor-key credential."""
    connection = api(
        "post",
        "/api/integrations/connections",
        {
            "provider": "generic",
            "name": "acme/app",
            "baseUrl": vendor.url,
            "config": GENERIC_CONFIG,
        },
    )
    assert connection.status_code == 201, connection.json()
    credential = api(
        "post",
        "/api/integrations/credentials",
        {
            "connectionId": connection.json()["id"],
            "secret": {"token": SECRET},
            "kind": "api_key",
            "method": "vendor_key",
            "rotateEveryDays": 30,
        },
    )
    assert credential.status_code == 201, credential.json()
    return connection.json(), credential.json()


def test_it_never_returns_a_secret(api, vendor, caplog):
    caplog.set_level(logging.DEBUG)
    connection, credential = create(api, vendor)
    assert credential["current"]["rotationToken"] == "initial"
    assert credential["current"]["keyFingerprint"]
    cid = credential["id"]
    rotated = api(
        "post", "/api/integrations/credentials/rotate", {"credentialId": cid, "rotationToken": "r1"}
    )
    assert rotated.status_code == 202, rotated.json()
    run_worker()
    new_secret = vendor.token_of("key-1")
    replies = [
        api("get", "/api/integrations/connections"),
        api("get", f"/api/integrations/connections/{connection['id']}"),
        api("get", "/api/integrations/credentials"),
        api("get", f"/api/integrations/credentials/{cid}"),
        api("get", f"/api/integrations/credentials/{cid}/versions"),
        api("post", f"/api/integrations/credentials/{cid}/rollback"),
        api("put", f"/api/integrations/credentials/{cid}/policy", {"rotateEveryDays": 7}),
        api("get", "/api/integrations/providers"),
    ]
    for reply in replies:
        assert reply.status_code == 200, reply.content
        assert SECRET.encode() not in reply.content
        assert new_secret.encode() not in reply.content
    versions = replies[4].json()["results"]
    assert {v["rotationToken"]: v["stage"] for v in versions} == {
        "initial": "previous",
        "r1": "current",
    }  # before the rollback
    assert replies[5].json()["current"]["rotationToken"] == "initial"
    assert replies[6].json()["rotateEveryDays"] == 7
    methods = {p["name"]: p["rotationMethods"] for p in replies[7].json()}
    assert methods["github"] == ["operator", "oauth2_refresh"]
    assert methods["generic"] == ["operator", "oauth2_refresh", "vendor_key"]
    for record in caplog.records:
        assert SECRET not in record.getMessage() and new_secret not in record.getMessage()


def test_it_answers_rotation_tokens_idempotently(api, vendor):
    _, credential = create(api, vendor)
    body = {"credentialId": credential["id"], "rotationToken": "r1"}
    first = api("post", "/api/integrations/credentials/rotate", body)
    again = api("post", "/api/integrations/credentials/rotate", body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api("post", "/api/integrations/credentials/rotate", {**body, "rotationToken": "r2"})
    assert other.status_code == 409
    assert "r1" in other.json()["error"]
    run_worker()
    done = api("post", "/api/integrations/credentials/rotate", body)
    assert done.status_code == 200 and done.json()["stage"] == "current"
    assert vendor.created == 1


def test_it_answers_409_for_a_token_reused_with_another_secret(api, vendor):
    connection, _ = create(api, vendor)
    manual = api(
        "post",
        "/api/integrations/credentials",
        {"connectionId": connection["id"], "secret": {"token": "a"}},
    ).json()
    body = {"credentialId": manual["id"], "rotationToken": "op1", "secret": {"token": "b"}}
    assert api("post", "/api/integrations/credentials/rotate", body).status_code == 202
    assert api("post", "/api/integrations/credentials/rotate", body).status_code == 200
    changed = {**body, "secret": {"token": "c"}}
    assert api("post", "/api/integrations/credentials/rotate", changed).status_code == 409
    missing = {"credentialId": manual["id"], "rotationToken": "op2"}
    assert api("post", "/api/integrations/credentials/rotate", missing).status_code in (400, 409)


def test_it_refuses_what_it_cannot_use(api, vendor):
    bad = [
        {"provider": "nope", "name": "x"},
        {"provider": "github", "name": "x", "streams": ["nope"]},
        {"provider": "github", "name": "x", "baseUrl": "http://10.0.0.1/api"},
    ]
    for body in bad:
        reply = api("post", "/api/integrations/connections", body)
        assert reply.status_code == 400, (body, reply.json())
    create(api, vendor)
    again = api(
        "post",
        "/api/integrations/connections",
        {"provider": "github", "name": "acme/app", "baseUrl": vendor.url},
    )
    assert again.status_code == 409


def test_another_tenant_finds_nothing(api, other_api, vendor):
    connection, credential = create(api, vendor)
    cid, conn = credential["id"], connection["id"]
    assert other_api("get", "/api/integrations/connections").json()["results"] == []
    assert other_api("get", "/api/integrations/credentials").json()["results"] == []
    not_found = [
        other_api("get", f"/api/integrations/connections/{conn}"),
        other_api("patch", f"/api/integrations/connections/{conn}", {"name": "mine"}),
        other_api("delete", f"/api/integrations/connections/{conn}"),
        other_api("get", f"/api/integrations/credentials/{cid}"),
        other_api("delete", f"/api/integrations/credentials/{cid}"),
        other_api("get", f"/api/integrations/credentials/{cid}/versions"),
        other_api("post", f"/api/integrations/credentials/{cid}/rollback"),
        other_api("put", f"/api/integrations/credentials/{cid}/policy", {"rotateEveryDays": 1}),
        other_api(
            "post",
            "/api/integrations/credentials/rotate",
            {"credentialId": cid, "rotationToken": "x"},
        ),
        other_api(
            "post",
            "/api/integrations/credentials",
            {"connectionId": conn, "secret": {"token": "mine"}},
        ),
        other_api("get", f"/api/integrations/credentials/{uuid.uuid4()}"),
    ]
    assert [r.status_code for r in not_found] == [404] * len(not_found)
    # Nothing of theirs changed either.
    mine = api("get", f"/api/integrations/credentials/{cid}").json()
    assert mine["pending"] is None and mine["current"]["rotationToken"] == "initial"
    assert api("get", f"/api/integrations/connections/{conn}").json()["name"] == "acme/app"


def test_it_updates_and_deletes_a_connection(api, vendor):
    connection, credential = create(api, vendor)
    path = f"/api/integrations/connections/{connection['id']}"
    paused = api("patch", path, {"status": "paused", "statusReason": "holiday"})
    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["statusReason"]) == ("paused", "holiday")
    active = api("patch", path, {"status": "active"}).json()
    assert (active["status"], active["statusReason"]) == ("active", "")
    assert api("delete", path).status_code == 204
    assert api("get", f"/api/integrations/credentials/{credential['id']}").status_code == 404
