"""A consumer process for the NotYet tests: drains NotYetWorker until nothing is pending,
waiting a little between drains while its messages are not due yet.

Run as `python -m tests.core.not_yet_consume` with DJANGO_SETTINGS_MODULE=tests.settings,
WORKER_MODULES=tests.core.not_yet_workers and DATABASE_URL pointing at the test database.
"""

import time

import django

django.setup()

from core.models import Message  # noqa: E402
from core.runtime import dispatch  # noqa: E402
from tests.core.not_yet_workers import NAME  # noqa: E402

if __name__ == "__main__":
    pending = Message.objects.filter(worker=NAME, state=Message.State.PENDING)
    while pending.exists():
        if not dispatch.drain(NAME)["handled"]:
            time.sleep(0.02)
