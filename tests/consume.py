"""A consumer process for tests: drains EffectWorker until nothing is pending.

Run as `python -m tests.consume` with DJANGO_SETTINGS_MODULE=tests.settings,
WORKER_MODULES=tests.workers_for_tests and DATABASE_URL pointing at the test database.
"""

import django

django.setup()

from core.models import Message  # noqa: E402
from core.runtime import dispatch  # noqa: E402

if __name__ == "__main__":
    pending = Message.objects.filter(worker="EffectWorker", state=Message.State.PENDING)
    while pending.exists():
        dispatch.drain("EffectWorker")
