"""WebhookDeliveryWorker's batch handler (integrations/workers/webhook_delivery.py declares the
worker): the batch's WebhookDeliveryQueued commands are retries of deliveries, its other events
are new, to be matched."""

from __future__ import annotations

import uuid

from core.envelope import Envelope
from integrations.webhooks import QUEUED, delivery, matching


def handle(envelopes: list[Envelope]) -> dict[uuid.UUID, Exception]:
    """WebhookDeliveryWorker's batch handler: retries first, then new events."""
    failures = delivery.deliver([e for e in envelopes if e.type == QUEUED])
    matching.fan_out([e for e in envelopes if e.type != QUEUED])
    return failures
