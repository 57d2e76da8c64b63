"""WebhookDeliveryWorker: deliver outbound factory events to subscribed endpoints with signed
payloads.

Every public event that an enabled subscription of its tenant wants reaches it (the wildcard,
narrowed at publish by `takes`). Matching fans the event out to one WebhookDelivery per
matching subscription and makes each first attempt at once, a signed POST (Standard
Webhooks, integrations.webhooks). A delivery that fails gets a WebhookDeliveryQueued command,
which comes back to this worker for each retry: full-jitter backoff (WEBHOOK_RETRY_BASE_SECONDS,
..._MAX_SECONDS) or the receiver's Retry-After, eight attempts in all, then a dead letter and
IntegrationFailed. A 429, or a 503 with a Retry-After longer than the next backoff, is a wait
that spends no attempt (NotYet), bounded by WEBHOOK_MAX_WAIT_SECONDS in all. The delivery's
state machine keeps a delivered one from going out again.
"""

from django.conf import settings

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker
from integrations.webhooks.delivery import mark_dead
from integrations.webhooks.handler import handle
from integrations.webhooks.matching import takes

WORKER = Worker(
    name="WebhookDeliveryWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Deliver outbound factory events to subscribed endpoints with signed payloads.",
    trigger=Trigger(
        events=(WILDCARD,),
        commands=("WebhookDeliveryQueued",),
        description="WebhookDelivery queued (event/command): every public event is matched",
    ),
    # Attempt 7 waits up to an hour: minutes to hours between the last attempts.
    retry=RetryPolicy(
        max_attempts=8,
        base_seconds=settings.WEBHOOK_RETRY_BASE_SECONDS,
        cap_seconds=settings.WEBHOOK_RETRY_MAX_SECONDS,
        description="Exponential backoff, max 8 attempts, then dead-letter",
    ),
    idempotency=Idempotency("Dedup on deliveryId; delivery state machine guards re-send"),
    batch_handler=handle,
    # WEBHOOK_BATCH_SIZE deliveries a call, POSTed concurrently (WEBHOOK_CONCURRENCY,
    # WEBHOOK_PER_ENDPOINT_CONCURRENCY); their outcomes are written together.
    batch_size=settings.WEBHOOK_BATCH_SIZE,
    on_dead=mark_dead,
    takes=takes,
)
