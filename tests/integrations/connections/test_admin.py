"""The credentials console: the secret is entered once and shown on no page after; rotate now
and roll back as object actions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.connections.models import CredentialVersion, IntegrationCredential
from tests.integrations.connections.helpers import run_worker, stages

pytestmark = pytest.mark.django_db
CREDENTIALS = reverse("admin:connections_integrationcredential_changelist")
CONNECTIONS = reverse("admin:connections_integrationconnection_changelist")
SECRET = "typed-once-s3cret"


def change_url(credential) -> str:
    return reverse("admin:connections_integrationcredential_change", args=[credential.pk])


def action_url(credential, name: str) -> str:
    return reverse(f"admin:connections_integrationcredential_{name}", args=[credential.pk])


def test_it_takes_the_secret_once_and_never_shows_it(admin_client, connection, vendor):
    add = reverse("admin:connections_integrationcredential_add")
    form = admin_client.get(add)
    assert form.status_code == 200 and b'name="secret"' in form.content
    # A form sent back with an error does not echo the secret.
    refused = admin_client.post(add, {"connection": connection.pk, "secret": f'["{SECRET}"]'})
    assert refused.status_code == 200 and SECRET.encode() not in refused.content
    created = admin_client.post(
        add,
        {
            "connection": connection.pk,
            "name": "deploy",
            "kind": "api_key",
            "method": "vendor_key",
            "grace_seconds": 3600,
            "secret": f'{{"token": "{SECRET}"}}',
        },
    )
    assert created.status_code == 302, created.content[:2000]
    credential = IntegrationCredential.objects.get(name="deploy")
    assert credential.versions.get().value == {"token": SECRET}
    pages = [
        CREDENTIALS,
        change_url(credential),
        CONNECTIONS,
        reverse("admin:connections_integrationconnection_change", args=[connection.pk]),
    ]
    for url in pages:
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert SECRET.encode() not in page.content, url


def test_it_rotates_now_and_rolls_back(admin_client, credential, vendor):
    page = admin_client.get(change_url(credential))
    assert b"Rotate now" in page.content and b"Roll back" not in page.content
    rotated = admin_client.post(action_url(credential, "rotate_now"), follow=True)
    assert any("started" in str(m) for m in rotated.context["messages"])
    run_worker()
    assert stages(credential)["initial"] == "previous"
    page = admin_client.get(change_url(credential))
    assert b"Roll back" in page.content
    assert vendor.token_of("key-1").encode() not in page.content
    assert b"tok-initial" not in page.content
    admin_client.post(action_url(credential, "roll_back"), follow=True)
    assert stages(credential)["initial"] == "current"


def test_it_rotates_an_operator_credential_to_the_secret_given(admin_client, connection, vendor):
    from integrations.connections import credentials

    credential = credentials.create_credential(
        connection=connection, secret={"token": "tok-initial"}
    )
    vendor.add_key(key_id="mine", token=SECRET)
    form = admin_client.get(action_url(credential, "rotate_to_secret"))
    assert form.status_code == 200
    admin_client.post(
        action_url(credential, "rotate_to_secret"), {"secret": f'{{"token": "{SECRET}"}}'}
    )
    run_worker()
    current = CredentialVersion.objects.get(credential=credential, stage="current")
    assert current.value == {"token": SECRET} and current.source == "operator"
    assert SECRET.encode() not in admin_client.get(change_url(credential)).content


def test_it_judges_a_connection_as_the_api_does(admin_client, tenant, vendor):
    add = reverse("admin:connections_integrationconnection_add")
    data = {
        "tenant": tenant.pk,
        "provider": "github",
        "name": "acme/web",
        "base_url": vendor.url,
        "config": "{}",
        "streams": '["nope"]',
        "cadence_seconds": 3600,
        "status": "active",
    }
    refused = admin_client.post(add, data)
    assert refused.status_code == 200 and b"Unknown streams" in refused.content
    created = admin_client.post(add, {**data, "streams": "[]"})
    assert created.status_code == 302
    assert tenant.pk and admin_client.get(CONNECTIONS).status_code == 200
