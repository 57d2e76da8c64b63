"""QualityScoreWorker: recompute QualityScore per project and artifact.

Declared from the seed catalog. Its handler comes with the feedback issue; until then it
receives no messages and the health view shows it as not built.
"""

from core.runtime.registry import Idempotency, RetryPolicy, Schedule, Trigger, Worker

WORKER = Worker(
    name="QualityScoreWorker",
    module=__name__,
    app="feedback",
    group="reaction",
    purpose="Recompute QualityScore per project and artifact.",
    trigger=Trigger(
        events=("FeedbackItemCreated",),
        schedules=(Schedule("hourly", 60),),
        description="Schedule + event FeedbackItemCreated",
    ),
    retry=RetryPolicy(
        max_attempts=5, base_seconds=60, cap_seconds=900, description="Re-run (idempotent)"
    ),
    idempotency=Idempotency("Deterministic per (project, window)"),
)
