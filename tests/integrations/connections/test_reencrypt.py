"""manage.py reencrypt_secrets with two FERNET_KEYS: every secret (credential versions and
webhook subscription secrets) ends up under the newest key, and a second run changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db

from integrations.connections import credentials, keyring
from integrations.connections.models import CredentialVersion
from integrations.models import WebhookSubscription
from integrations.webhooks.subscriptions import create_subscription


def reencrypt() -> str:
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    return out.getvalue()


def raw_tokens(model, column) -> list[bytes]:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table}")
        return [bytes(row[0]) for row in cursor.fetchall()]


def test_it_reencrypts_every_secret_under_the_newest_key(settings, tenant, connection, vendor):
    settings.FERNET_KEYS = ["old key"]
    old = keyring.newest_fingerprint()
    _, webhook_secret = create_subscription(
        tenant=tenant, url=f"{vendor.url}/hooks", event_types=["*"]
    )
    credentials.create_credential(connection=connection, secret={"token": "s3cret-value"})
    assert CredentialVersion.objects.get().key_fingerprint == old

    settings.FERNET_KEYS = ["new key", "old key"]
    new = keyring.newest_fingerprint()
    assert new != old
    first = reencrypt()
    # The version's secret, and the subscription's secret and previous secret.
    assert f"Re-encrypted 3 values under {new}." in first
    assert f"{old}: 1" in first
    assert "s3cret-value" not in first and webhook_secret not in first
    version = CredentialVersion.objects.get()
    assert version.key_fingerprint == new
    for token in raw_tokens(CredentialVersion, "secret") + raw_tokens(
        WebhookSubscription, "secret"
    ):
        assert keyring.key_of(token) == new

    # Idempotent: nothing left to do.
    assert f"Re-encrypted 0 values under {new}." in reencrypt()

    # The old key can go: everything reads with the new one alone.
    settings.FERNET_KEYS = ["new key"]
    assert credentials.current_secret(connection=connection) == {"token": "s3cret-value"}
    assert WebhookSubscription.objects.get().secret == webhook_secret


def test_it_fails_when_a_value_needs_a_key_that_is_gone(settings, connection):
    settings.FERNET_KEYS = ["lost key"]
    credentials.create_credential(connection=connection, secret={"token": "x"})
    settings.FERNET_KEYS = ["new key"]
    with pytest.raises(CommandError, match="decrypt under none"):
        reencrypt()
