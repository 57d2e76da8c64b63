"""IntegrationSyncWorker: pull external state into the factory and reconcile.

The handler is integrations.sync.handler.handle: a run is a chain of IntegrationSyncRequested
commands, each for a few pages, whose records, checkpoint and factory events commit with the
message (a crash resumes from the last committed page). The minute's schedule starts runs
for the connections whose cadence has passed; "sync now" (POST
/api/integrations/connections/<id>/sync) starts one at once. One run at a time per connection.
Rate limits and open circuits make a page due again later without spending an attempt
(NotYet); 5xx and network errors are retried by the policy below, then the run fails and
IntegrationFailed hands it to IntegrationRetryWorker.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from integrations.sync.handler import handle, on_dead

WORKER = Worker(
    name="IntegrationSyncWorker",
    module=__name__,
    app="integrations",
    group="reaction",
    purpose="Pull external state into the factory and reconcile.",
    trigger=Trigger(
        schedules=(Schedule("cadence", 1),),
        commands=("IntegrationSyncRequested",),
        description="Schedule (per connection cadence) + on-demand command",
    ),
    retry=RetryPolicy(
        max_attempts=5,
        base_seconds=30,
        cap_seconds=3600,
        description="Backoff per provider rate limit (Retry-After honoured); resume from cursor",
    ),
    # No HandledKey: the run's state is the guard (a command for a page already committed
    # finds the run moved on, or finished, and does nothing).
    idempotency=Idempotency("Cursor/syncToken + contentHash skip unchanged"),
    # One run's message at a time: its pages' writes and its done mark commit together, and a
    # NotYet or a vendor's failure reported for a page keeps the pages before it.
    batch_handler=handle,
    batch_size=1,
    on_dead=on_dead,
)
