"""A webhook delivery process that a test drives one command at a time over stdin, so that it
knows which process did what: `python -m tests.integrations.limits.deliverer` with
DJANGO_SETTINGS_MODULE and DATABASE_URL set. It prints "ready", then answers each command with
one JSON line of the runtime's outcome counts (handled, retried, dead, released):

- `step`: claim one batch of WebhookDeliveryWorker's due messages and run it (the runtime's
  own claim and batch, as a drain does once);
- `drain`: dispatch.drain, until nothing is due;
- `quit`.
"""

import json
import sys
from dataclasses import asdict

import django

django.setup()

from core.models import Message  # noqa: E402
from core.runtime import dispatch, registry  # noqa: E402

WORKER = "WebhookDeliveryWorker"

if __name__ == "__main__":
    worker = registry.get(WORKER)
    Message.objects.filter(worker=WORKER).exists()  # connected before "ready"
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "step":
            batch = dispatch.claim(worker, limit=worker.claim_size)
            outcome = asdict(dispatch.run_batch(worker, batch)) if batch else {}
        elif command == "drain":
            outcome = dispatch.drain(WORKER)
        else:
            raise SystemExit(f"unknown command {command!r}")
        counts = {"handled": 0, "retried": 0, "dead": 0, "released": 0, **outcome}
        print(json.dumps(counts), flush=True)
