"""AlertEvaluationWorker: evaluate AlertRule conditions against metrics and signals.

Declared from the seed catalog. Its handler comes with the alerting issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

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
    # "Retry next cadence": the next tick evaluates the rule again, so a failed tick is not
    # retried; it goes to the dead letters at once so that the failure is seen.
    retry=RetryPolicy(max_attempts=1, description="Retry next cadence"),
    idempotency=Idempotency("Dedup trigger per (ruleId, window)"),
)
