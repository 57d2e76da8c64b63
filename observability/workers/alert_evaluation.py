"""AlertEvaluationWorker: evaluate AlertRule conditions against metrics and signals.

A schedule slot each minute sends every tenant a ScheduleFired tick; the handler is
observability.alerting.handler.tick. At the slot's time (never the clock's, so a redelivered or
replayed tick decides the same) it evaluates the tenant's rules whose cadence divides that
minute, every window once, in order, up to the newest window the aggregation completed, and the
tenant's SLOs; it publishes AlertTriggered, AlertResolved, SloBreached and SloRecovered with
event ids derived from (rule, instance, window, transition), so a re-run publishes nothing new.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker
from observability.alerting.handler import tick

WORKER = Worker(
    name="AlertEvaluationWorker",
    module=__name__,
    app="observability",
    group="reaction",
    purpose="Evaluate AlertRule conditions against metrics and signals.",
    trigger=Trigger(
        schedules=(Schedule("cadence", 1),),
        description="Schedule (per rule cadence): a tick each minute evaluates the rules due",
    ),
    # "Retry next cadence": the next tick evaluates the rule again (it catches up on every
    # window since the rule's last), so a failed tick is not retried; it goes to the dead
    # letters at once so that the failure is seen, and replaying it evaluates the same windows.
    retry=RetryPolicy(max_attempts=1, description="Retry next cadence"),
    idempotency=Idempotency("Dedup trigger per (ruleId, window)"),
    handler=tick,
)
