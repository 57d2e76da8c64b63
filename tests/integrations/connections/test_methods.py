"""A credential rotates only as its provider can: GitHub and Jira have no key API (their tokens
rotate by OAuth refresh or by an operator's hand), the generic API has the one its connection
configures. Refused when the credential is made or scheduled (the API's 400 and the admin's
form name the field), and at rotation time for a row from before the registry said so: given
up at once, reported once, current untouched, nothing sent to the vendor."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from core.models import DeadLetter
from core.runtime.errors import PermanentError
from integrations.connections import credentials, rotation
from integrations.connections import vendor as vendor_api
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)
from tests.integrations.connections.helpers import events, run_worker, stages

Method, Kind = IntegrationCredential.Method, IntegrationCredential.Kind


def legacy_key_credential(connection) -> IntegrationCredential:
    """A GitHub credential rotating through a key API, as rows were made before the registry
    refused them (straight into the tables: no service would make one now)."""
    credential = IntegrationCredential.objects.create(
        tenant_id=connection.tenant_id,
        connection=connection,
        name="legacy",
        kind=Kind.TOKEN,
        method=Method.VENDOR_KEY,
    )
    CredentialVersion.objects.create(
        tenant_id=connection.tenant_id,
        credential=credential,
        stage=CredentialVersion.Stage.CURRENT,
        step=CredentialVersion.Step.DONE,
        rotation_token="initial",
        source="initial",
        secret='{"token": "tok-initial"}',
    )
    return credential


def test_it_refuses_a_github_or_jira_credential_that_would_rotate_by_a_key_api(
    tenant, github, vendor
):
    with pytest.raises(ValidationError) as refused:
        credentials.create_credential(
            connection=github, secret={"token": "ghp"}, method=Method.VENDOR_KEY
        )
    (message,) = refused.value.message_dict["method"]
    assert message.startswith("GitHub cannot rotate by vendor_key")
    assert "Use one of: operator, oauth2_refresh" in message
    for provider in ("jira", "jira_datacenter"):
        jira = credentials.create_connection(
            tenant=tenant,
            provider=provider,
            name=provider,
            base_url=vendor.url,
            config={"project": "ABC"},
        )
        with pytest.raises(ValidationError) as refused:
            credentials.create_credential(
                connection=jira, secret={"token": "t"}, method=Method.VENDOR_KEY
            )
        assert "method" in refused.value.message_dict
    # Jira Data Center declares no OAuth 2.0 token endpoint either.
    with pytest.raises(ValidationError, match=r"declares no OAuth 2\.0 token endpoint"):
        credentials.create_credential(
            connection=jira, secret={"token": "t"}, method=Method.OAUTH2_REFRESH
        )
    assert not IntegrationCredential.objects.exists()


def test_it_lets_a_generic_connection_rotate_by_a_key_api_only_when_configured(tenant, vendor):
    bare = credentials.create_connection(
        tenant=tenant, provider="generic", name="bare", base_url=vendor.url, config={"path": "/x"}
    )
    with pytest.raises(ValidationError, match="key_create_path"):
        credentials.create_credential(
            connection=bare, secret={"token": "t"}, method=Method.VENDOR_KEY
        )
    bare.config = {"path": "/x", "key_create_path": "/api/keys"}
    bare.save()
    made = credentials.create_credential(
        connection=bare, secret={"token": "t"}, method=Method.VENDOR_KEY
    )
    assert made.method == Method.VENDOR_KEY


def test_it_refuses_an_auth_kind_or_an_oauth_secret_the_provider_cannot_use(github):
    with pytest.raises(ValidationError) as refused:
        credentials.create_credential(connection=github, secret={"token": "t"}, kind=Kind.BASIC)
    assert "GitHub accepts these auth kinds: token, oauth2" in refused.value.message_dict["kind"][0]
    with pytest.raises(ValidationError) as refused:
        credentials.create_credential(
            connection=github,
            secret={"access_token": "at"},  # no client, no refresh token
            kind=Kind.OAUTH2,
            method=Method.OAUTH2_REFRESH,
        )
    assert "refresh_token" in refused.value.message_dict["secret"][0]


def test_it_refuses_a_jira_3lo_credential_on_the_sites_own_url(tenant):
    # Stored as it is (no name resolves here, and the egress guard asks for one).
    site = IntegrationConnection.objects.create(
        tenant=tenant, provider="jira", name="acme", base_url="https://acme.atlassian.net"
    )
    refresh = {"client_id": "app", "client_secret": "shh", "refresh_token": "rt"}

    with pytest.raises(ValidationError) as refused:
        credentials.create_credential(
            connection=site, secret=refresh, kind=Kind.OAUTH2, method=Method.OAUTH2_REFRESH
        )

    assert "api.atlassian.com/ex/jira/<cloudId>" in refused.value.message_dict["kind"][0]
    assert not IntegrationCredential.objects.exists()


def test_the_api_answers_400_naming_the_method(api, github):
    reply = api(
        "post",
        "/api/integrations/credentials",
        {"connectionId": str(github.pk), "secret": {"token": "ghp"}, "method": "vendor_key"},
    )
    assert reply.status_code == 400, reply.json()
    assert list(reply.json()["details"]) == ["method"]
    assert "GitHub cannot rotate by vendor_key" in reply.json()["details"]["method"][0]
    kind = api(
        "post",
        "/api/integrations/credentials",
        {"connectionId": str(github.pk), "secret": {"token": "ghp"}, "kind": "api_key"},
    )
    assert kind.status_code == 400 and list(kind.json()["details"]) == ["kind"]
    assert not IntegrationCredential.objects.exists()


def test_the_api_refuses_a_schedule_for_a_row_its_provider_cannot_rotate(api, github):
    legacy = legacy_key_credential(github)
    path = f"/api/integrations/credentials/{legacy.pk}/policy"
    reply = api("put", path, {"rotateEveryDays": 30})
    assert reply.status_code == 400, reply.json()
    refused = reply.json()["details"]["rotateEveryDays"][0]
    assert "GitHub cannot rotate by vendor_key" in refused
    # Without a schedule, its other settings still change.
    assert api("put", path, {"rotateEveryDays": None, "graceSeconds": 60}).status_code == 200
    legacy.refresh_from_db()
    assert (legacy.next_rotation_at, legacy.grace_seconds) == (None, 60)


def test_the_admin_form_refuses_it_on_the_method_field(admin_client, github):
    add = reverse("admin:connections_integrationcredential_add")
    page = admin_client.post(
        add,
        {
            "connection": github.pk,
            "name": "deploy",
            "kind": "token",
            "method": "vendor_key",
            "grace_seconds": 3600,
            "secret": '{"token": "typed-once"}',
        },
    )
    assert page.status_code == 200
    assert (
        page.context["adminform"]
        .form.errors["method"][0]
        .startswith("GitHub cannot rotate by vendor_key")
    )
    assert b"typed-once" not in page.content
    assert not IntegrationCredential.objects.exists()
    legacy = legacy_key_credential(github)
    change = reverse("admin:connections_integrationcredential_change", args=[legacy.pk])
    page = admin_client.post(
        change, {"name": "legacy", "rotate_every_days": 7, "grace_seconds": 60}
    )
    assert page.status_code == 200
    assert "GitHub cannot rotate" in page.context["adminform"].form.errors["rotate_every_days"][0]
    legacy.refresh_from_db()
    assert legacy.rotate_every_days is None


def test_it_gives_up_at_once_on_a_github_key_rotation_and_leaves_current(github, vendor):
    legacy = legacy_key_credential(github)
    credentials.request_rotation(credential=legacy, token="r1")
    run_worker()
    version = CredentialVersion.objects.get(credential=legacy, rotation_token="r1")
    assert (version.stage, version.step) == ("retired", CredentialVersion.Step.FAILED)
    assert "MethodRefused: GitHub cannot rotate by vendor_key" in version.last_error
    assert stages(legacy) == {"initial": "current", "r1": "retired"}
    assert credentials.current_secret(connection=github) == {"token": "tok-initial"}
    # Permanent: no retries, one dead letter, one IntegrationFailed, and the vendor was never
    # asked (no POST /keys, no verification).
    assert vendor.requests == [] and vendor.created == 0
    assert DeadLetter.objects.count() == 1
    (failed,) = events("IntegrationFailed")
    assert failed.data["kind"] == "rotation" and failed.data["errorClass"] == "permanent"
    assert not events("CredentialRotated")


def test_the_schedule_reports_a_refused_rotation_once(tenant, github, vendor):
    legacy = legacy_key_credential(github)
    due = legacy.created - timedelta(hours=1)
    IntegrationCredential.objects.filter(pk=legacy.pk).update(
        rotate_every_days=30, next_rotation_at=due
    )
    for hours in (1, 2, 3):
        rotation.start_due(tenant_id=tenant.pk, now=due + timedelta(hours=hours))
        run_worker()
    assert len(events("IntegrationFailed")) == 1
    assert stages(legacy)["initial"] == "current" and vendor.requests == []


def test_every_vendor_call_goes_through_the_registry(tenant, connection, vendor):
    # The generic connection's own auth header, on key requests too.
    connection.config = {**connection.config, "auth_header": "X-Api-Key"}
    assert vendor_api.auth_headers(connection, {"token": "k"}) == {"X-Api-Key": "k"}
    # A provider the registry no longer knows is no guess at GET /user with a Bearer token.
    IntegrationConnection.objects.filter(pk=connection.pk).update(provider="retired")
    connection.refresh_from_db()
    for call in (
        lambda: vendor_api.verify(connection, {"token": "tok-initial"}),
        lambda: vendor_api.auth_headers(connection, {"token": "tok-initial"}),
        lambda: vendor_api.create_key(connection, {"token": "t"}, idempotency_key="i", name="n"),
    ):
        with pytest.raises(PermanentError, match="not in the registry"):
            call()
    assert vendor.requests == []


def test_a_change_of_config_that_would_strand_a_key_rotation_is_refused(
    api, connection, credential
):
    path = f"/api/integrations/connections/{connection.pk}"
    without_key_api = {k: v for k, v in connection.config.items() if not k.startswith("key_")}

    reply = api("patch", path, {"config": without_key_api})

    assert reply.status_code == 400, reply.json()
    refused = reply.json()["details"]["config"][0]
    assert refused.startswith(f"Credential {credential.name!r} rotates by vendor_key")
    assert "key_create_path" in refused
    connection.refresh_from_db()
    assert connection.config.get("key_create_path")  # unchanged
    # Any other change still goes through, and so does a config that keeps the key API.
    assert api("patch", path, {"name": "renamed"}).status_code == 200
    kept = {**connection.config, "page_size": 50}
    assert api("patch", path, {"config": kept}).status_code == 200


def test_a_credential_that_never_worked_does_not_block_its_connections_changes(api, github):
    legacy_key_credential(github)  # GitHub has no key API: refused at rotation, as before
    path = f"/api/integrations/connections/{github.pk}"

    reply = api("patch", path, {"name": "renamed", "config": {"owner": "acme", "repo": "web"}})

    assert reply.status_code == 200, reply.json()


def test_the_admin_form_refuses_it_on_the_connection(admin_client, connection, credential):
    change = reverse("admin:connections_integrationconnection_change", args=[connection.pk])
    without_key_api = {k: v for k, v in connection.config.items() if not k.startswith("key_")}
    page = admin_client.post(
        change,
        {
            "tenant": connection.tenant_id,
            "provider": connection.provider,
            "name": connection.name,
            "base_url": connection.base_url,
            "config": json.dumps(without_key_api),
            "streams": json.dumps(connection.streams),
            "cadence_seconds": connection.cadence_seconds,
            "status": connection.status,
            "status_reason": "",
        },
    )

    assert page.status_code == 200
    errors = page.context["adminform"].form.non_field_errors()
    assert any("rotates by vendor_key" in e for e in errors), errors
    connection.refresh_from_db()
    assert connection.config.get("key_create_path")
