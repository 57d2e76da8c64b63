"""The webhooks domain: subscriptions, matching events to them, and delivering.

WebhookDeliveryWorker (integrations/workers/webhook_delivery.py) receives every public event and
the WebhookDeliveryQueued commands that matching sends it; `handler.handle` splits a batch
between the two:

- matching (`matching.fan_out`) writes one WebhookDelivery per matching enabled subscription,
  and one WebhookDeliveryQueued command per delivery that failed its first attempt, in the
  transaction that handles the event; both have ids derived from (subscription, event), so
  handling an event twice adds nothing;
- delivering (`delivery.deliver`) locks the batch's deliveries, skips those already delivered
  (the same delivery claimed twice waits on the row lock, then finds it delivered), POSTs the
  rest concurrently, and records every attempt. A failed POST is reported to the runtime,
  which retries it with the worker's backoff (or the receiver's Retry-After) and dead-letters
  it after the last attempt; `delivery.mark_dead` then marks the delivery dead and publishes
  IntegrationFailed. Replaying the dead letter sends the same delivery, same webhook-id, again.

The rooms: `subscriptions` (a subscriber's writes: create, change, rotate, delete),
`matching`, `delivery` (sending, redelivering, pruning), `decisions` (the pure functions: ids,
what a reply means), `handler` (the worker's batch handler). The models are
integrations.models; reads are integrations.selectors. Connections, sync, credentials, health
probes and retries of integrations get rooms of their own beside this one.
"""

WORKER = "WebhookDeliveryWorker"
QUEUED = "WebhookDeliveryQueued"  # the command that carries a failed delivery to its retries
