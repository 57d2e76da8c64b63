"""WebhookDeliveryWorker: deliver outbound factory events to subscribed endpoints with signed
payloads.

Declared from the seed catalog. Its handler comes with the webhooks issue; until then it
receives no messages and the health view shows it as not built.
"""

from django.conf import settings

from core.runtime.registry import WILDCARD, Idempotency, RetryPolicy, Trigger, Worker

WORKER = Worker(
    name="WebhookDeliveryWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Deliver outbound factory events to subscribed endpoints with signed payloads.",
    trigger=Trigger(
        events=(WILDCARD,),
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
)
