"""CredentialRotationWorker against a live vendor: staged versions, idempotent tokens, failed
steps that keep current, crash and resume, rollback, the schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.models import DeadLetter, Message
from core.runtime.dispatch import drain
from integrations.connections import credentials, rotation
from integrations.connections.models import CredentialVersion, IntegrationCredential
from tests.integrations.connections.helpers import come_due, events, run_worker, stages

Stage = CredentialVersion.Stage
# GET /api/me, the generic connection's verification request, refused whatever the token:
# until clear_faults().
REFUSED = {"status": 401, "path": "/api/me", "times": 100, "body": {"message": "Bad credentials"}}


def test_it_rotates_through_the_vendor_key_api(credential, connection, vendor):
    version, created = credentials.request_rotation(credential=credential, token="r1")
    assert created and version.stage == Stage.PENDING
    # Until it is promoted, the connection authenticates as before.
    assert credentials.current_secret(connection=connection) == {"token": "tok-initial"}
    run_worker()
    assert stages(credential) == {"initial": "previous", "r1": "current"}
    assert credentials.current_secret(connection=connection) == {"token": vendor.token_of("key-1")}
    assert vendor.created == 1
    rotated = events("CredentialRotated")
    assert len(rotated) == 1
    assert rotated[0].data["rotationToken"] == "r1"
    assert vendor.token_of("key-1") not in str(rotated[0].data)
    # The previous version keeps working for the grace period.
    usable = credentials.usable_versions(credential=credential)
    assert [v.rotation_token for v in usable] == ["r1", "initial"]
    later = timezone.now() + timedelta(seconds=credential.grace_seconds + 1)
    assert [
        v.rotation_token for v in credentials.usable_versions(credential=credential, now=later)
    ] == ["r1"]


def test_it_treats_the_same_token_twice_as_one_version(credential, vendor):
    first, created = credentials.request_rotation(credential=credential, token="r1")
    again, created_again = credentials.request_rotation(credential=credential, token="r1")
    assert (first.pk, created) == (again.pk, True) and created_again is False
    run_worker()
    # After it finished, the same token is a no-op: current already is its version.
    done, created = credentials.request_rotation(credential=credential, token="r1")
    assert done.pk == first.pk and done.stage == Stage.CURRENT and not created
    run_worker()
    assert vendor.created == 1
    assert len(events("CredentialRotated")) == 1


def test_it_refuses_the_same_token_with_another_secret(connection):
    credential = credentials.create_credential(connection=connection, secret={"token": "a"})
    credentials.request_rotation(credential=credential, token="op-1", secret={"token": "b"})
    with pytest.raises(credentials.Conflict):
        credentials.request_rotation(credential=credential, token="op-1", secret={"token": "c"})
    same, created = credentials.request_rotation(
        credential=credential, token="op-1", secret={"token": "b"}
    )
    assert not created and same.rotation_token == "op-1"


def test_it_refuses_another_token_while_one_is_pending(credential):
    credentials.request_rotation(credential=credential, token="r1")
    with pytest.raises(credentials.Conflict):
        credentials.request_rotation(credential=credential, token="r2")


def test_it_asks_an_operator_credential_for_its_secret(connection):
    credential = credentials.create_credential(connection=connection, secret={"token": "a"})
    with pytest.raises(ValidationError):
        credentials.request_rotation(credential=credential, token="r1")


def test_it_keeps_current_when_verification_fails(credential, connection, vendor):
    vendor.fail(**REFUSED)
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    for _ in range(4):
        assert credentials.current_secret(connection=connection) == {"token": "tok-initial"}
        come_due()
        run_worker()
    # Four attempts (three retries), then it gave up: current untouched, the version failed.
    version = CredentialVersion.objects.get(credential=credential, rotation_token="r1")
    assert (version.stage, version.step) == (Stage.RETIRED, CredentialVersion.Step.FAILED)
    assert "verification answered 401" in version.last_error
    assert stages(credential)["initial"] == "current"
    assert credentials.current_secret(connection=connection) == {"token": "tok-initial"}
    failed = events("IntegrationFailed")
    assert len(failed) == 1
    assert failed[0].data["kind"] == "rotation" and failed[0].data["failureId"]
    assert failed[0].data["errorClass"] == "auth"
    assert not events("CredentialRotated")
    assert DeadLetter.objects.count() == 1
    assert vendor.created == 1  # one key minted, never a second for the retries
    # The same token again revives it from its step, and with the vendor fixed it finishes.
    vendor.clear_faults()
    revived, created = credentials.request_rotation(credential=credential, token="r1")
    assert created and revived.stage == Stage.PENDING
    run_worker()
    assert stages(credential) == {"initial": "previous", "r1": "current"}
    assert vendor.created == 1


def test_it_retries_a_vendor_that_cannot_answer_now(credential, connection, vendor):
    vendor.fail(status=503, path="/keys", body={"message": "try later"})
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    assert stages(credential)["r1"] == "pending"
    # Retried by the runtime, which says why.
    assert Message.objects.filter(worker="CredentialRotationWorker", last_error__contains="503")
    come_due()
    run_worker()
    assert stages(credential)["r1"] == "current"
    assert vendor.created == 1


def test_it_gets_the_same_key_back_when_the_vendor_answered_a_lost_request(
    credential, connection, vendor
):
    """A crash after the vendor minted the key and before the answer was stored: the worker
    asks again under the same Idempotency-Key and gets the same key, not a second one."""
    version, _ = credentials.request_rotation(credential=credential, token="r1")
    from integrations.connections import vendor as vendor_api

    lost_id, _ = vendor_api.create_key(
        connection, {"token": "tok-initial"}, idempotency_key=f"rotation-{version.pk}", name="x"
    )
    assert vendor.created == 1
    run_worker()
    version.refresh_from_db()
    assert version.stage == Stage.CURRENT and version.vendor_key_id == lost_id
    assert vendor.created == 1


def test_it_rolls_back_to_the_previous_version_in_one_step(credential, connection, vendor):
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    restored = credentials.rollback(credential=credential)
    assert restored.rotation_token == "initial"
    assert stages(credential) == {"initial": "current", "r1": "previous"}
    assert credentials.current_secret(connection=connection) == {"token": "tok-initial"}
    # Nothing to roll back to: a credential with one version.
    fresh = credentials.create_credential(connection=connection, secret={"token": "z"})
    with pytest.raises(credentials.Conflict):
        credentials.rollback(credential=fresh)


def test_it_rotates_a_github_app_user_token_by_oauth2_refresh(github, vendor):
    connection = github
    connection.config = {"token_url": f"{vendor.url}/oauth/token"}
    connection.save()
    vendor.add_client(client_id="app", client_secret="shh", refresh_token="rt-1")
    vendor.add_token(token="at-0")
    credential = credentials.create_credential(
        connection=connection,
        secret={
            "access_token": "at-0",
            "refresh_token": "rt-1",
            "client_id": "app",
            "client_secret": "shh",
        },
        kind=IntegrationCredential.Kind.OAUTH2,
        method=IntegrationCredential.Method.OAUTH2_REFRESH,
    )
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    secret = credentials.current_secret(connection=connection)
    # The token the vendor minted (verified with it), and its rotated refresh token.
    assert secret["access_token"] != "at-0" and vendor.tokens[secret["access_token"]]
    assert vendor.refresh_tokens == {secret["refresh_token"]: "app"}
    # GitHub's own requests only: its token endpoint and its verification (GET /user).
    assert [(r.method, r.path) for r in vendor.requests] == [
        ("POST", "/oauth/token"),
        ("GET", "/user"),
    ]


def test_the_schedule_rotates_due_credentials_and_revokes_expired_keys(
    tenant, credential, connection, vendor
):
    credentials.set_policy(credential=credential, rotate_every_days=30, grace_seconds=60)
    credential.refresh_from_db()
    slot = credential.next_rotation_at + timedelta(minutes=1)
    rotation.start_due(tenant_id=tenant.pk, now=slot)
    rotation.start_due(tenant_id=tenant.pk, now=slot)  # the same slot again: nothing new
    run_worker()
    rotated = CredentialVersion.objects.get(credential=credential, stage=Stage.CURRENT)
    assert rotated.rotation_token.startswith("scheduled-")
    assert vendor.created == 1
    credential.refresh_from_db()
    assert credential.next_rotation_at > timezone.now() + timedelta(days=29)
    # A second rotation: the first key (key-0's version) retires, and its key is revoked
    # once its grace period is over.
    credentials.request_rotation(credential=credential, token="r2")
    run_worker()
    assert stages(credential)["initial"] == "retired"
    later = timezone.now() + timedelta(seconds=61)
    rotation.retire_expired(tenant_id=tenant.pk, now=later)
    assert stages(credential)[rotated.rotation_token] == "retired"
    rotated.refresh_from_db()
    assert vendor.revoked(rotated.vendor_key_id) and rotated.vendor_revoked_at
    assert not vendor.revoked("key-2")


def test_it_resumes_a_failed_rotation_when_integration_retry_worker_asks(
    tenant, credential, connection, vendor, caplog
):
    """IntegrationRetryWorker's resume command (failureId, attempt) revives the version that
    gave up, from its step; a failure again is reported as that attempt of that failure; a
    promotion resolves the failure."""
    from core import services as core_services
    from integrations.failures.models import IntegrationFailure

    vendor.fail(**REFUSED)
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    for _ in range(4):
        come_due()
        run_worker()
    (first,) = events("IntegrationFailed")
    failure_id = first.data["failureId"]
    assert first.data["attempt"] == 0 and first.data["rotationToken"] == "r1"
    assert "step set" in first.data["error"]
    drain("IntegrationRetryWorker")
    assert IntegrationFailure.objects.filter(subject_id=str(credential.pk)).exists()

    vendor.clear_faults()
    resume = {"credentialId": str(credential.pk), "rotationToken": "r1"}
    core_services.send(
        tenant=tenant,
        worker="CredentialRotationWorker",
        type="CredentialRotationRequested",
        data={**resume, "failureId": failure_id, "attempt": 2},
    )
    run_worker()
    assert stages(credential) == {"initial": "previous", "r1": "current"}
    assert vendor.created == 1  # the key minted the first time, verified now
    assert len(events("IntegrationFailed")) == 1
    failure = IntegrationFailure.objects.get(subject_id=str(credential.pk))
    assert failure.status == "resolved"
    for record in caplog.records:
        assert vendor.token_of("key-1") not in record.getMessage()
        assert "tok-initial" not in record.getMessage()


def test_the_schedule_slot_starts_due_rotations_through_the_runtime(tenant, credential, vendor):
    from core.runtime import scheduling

    credentials.set_policy(credential=credential, rotate_every_days=1)
    IntegrationCredential.objects.filter(pk=credential.pk).update(
        next_rotation_at=timezone.now() - timedelta(hours=2)
    )
    scheduling.fire("CredentialRotationWorker", "policy")
    run_worker()
    assert CredentialVersion.objects.get(credential=credential, stage=Stage.CURRENT).source == (
        "vendor_key"
    )
    assert len(events("CredentialRotated")) == 1


def test_it_waits_for_a_rate_limit_or_an_open_circuit_without_spending_attempts(
    credential, connection, vendor
):
    from integrations.limits import circuits, keys

    vendor.fail(status=429, path="/api/me", times=100, headers={"Retry-After": "120"})
    credentials.request_rotation(credential=credential, token="r1")
    run_worker()
    waiting = Message.objects.get(worker="CredentialRotationWorker", state="pending")
    assert waiting.attempts == 0
    assert waiting.due_at > timezone.now() + timedelta(seconds=100)  # the vendor's Retry-After
    assert stages(credential)["r1"] == "pending"
    assert not DeadLetter.objects.exists()

    vendor.clear_faults()
    circuits.isolate(keys.connection(connection.pk), reason="vendor down")
    come_due()
    run_worker()
    waiting.refresh_from_db()
    assert waiting.state == "pending" and waiting.attempts == 0
    assert stages(credential)["r1"] == "pending"

    circuits.close(keys.connection(connection.pk))
    come_due()
    run_worker()
    assert stages(credential) == {"initial": "previous", "r1": "current"}
