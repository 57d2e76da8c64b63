"""A consumer process for tests: drains IncidentAnalysisWorker until nothing is pending, in
batches of INCIDENT_BATCH_SIZE (the environment's), so that two such processes interleave.

Run as `python -m tests.observability.incidents.consume` with
DJANGO_SETTINGS_MODULE=tests.settings and DATABASE_URL pointing at the test database.
"""

import dataclasses
import os

import django

django.setup()

from core.models import Message  # noqa: E402
from core.runtime import dispatch, registry  # noqa: E402

WORKER = "IncidentAnalysisWorker"

if __name__ == "__main__":
    size = int(os.environ.get("INCIDENT_BATCH_SIZE", "5"))
    registry.register(dataclasses.replace(registry.get(WORKER), batch_size=size))
    pending = Message.objects.filter(worker=WORKER, state=Message.State.PENDING)
    while pending.exists():
        dispatch.drain(WORKER)
