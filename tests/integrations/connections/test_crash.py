"""A rotation's process killed (SIGKILL) between the vendor step and promotion resumes with
the same pending version and never mints a second vendor key."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from integrations.connections import credentials
from integrations.connections.models import CredentialVersion
from tests.core.test_processes import spawn, wait_until
from tests.integrations.connections.helpers import come_due, events, run_worker, stages

pytestmark = pytest.mark.django_db(transaction=True)
DRAIN = "from core.runtime import dispatch; dispatch.drain('CredentialRotationWorker')"


def test_it_resumes_a_rotation_killed_before_promotion(credential, connection, vendor, tmp_path):
    version, _ = credentials.request_rotation(credential=credential, token="r1")
    vendor.fail(status=0, delay=60, path="/api/me")  # the verification request hangs
    process = spawn(
        [sys.executable, "manage.py", "shell", "-c", DRAIN],
        tmp_path / "drain.log",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        OUTBOUND_ALLOWED_HOSTS="127.0.0.1",
    )
    try:
        wait_until(
            lambda: vendor.log("/api/me") or process.poll() is not None,
            timeout=60,
            what="verification",
            log=tmp_path / "drain.log",
        )
        assert process.poll() is None, (tmp_path / "drain.log").read_text()[-3000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # Killed mid-verification: the vendor's key was stored, current did not move.
    version.refresh_from_db()
    assert (version.stage, version.step) == ("pending", CredentialVersion.Step.SET)
    assert version.vendor_key_id == "key-1" and vendor.created == 1
    assert credentials.current_secret(connection=connection) == {"token": "tok-initial"}
    come_due()  # the dead consumer's lease, run out
    run_worker()
    assert stages(credential) == {"initial": "previous", "r1": "current"}
    assert credentials.current_secret(connection=connection) == {"token": vendor.token_of("key-1")}
    assert vendor.created == 1
    assert len(events("CredentialRotated")) == 1
