"""Integration failures, their retries and escalation: IntegrationRetryWorker (issue 12).

The rooms:
- `contract`: IntegrationFailed's data (every producer builds it with `failed_data`) and the
  resume commands the worker sends.
- `decisions`: Temporal-style retry policies (next delay, retry or poison), classifying an
  error: pure.
- `models`: IntegrationFailure and its FailureAttempts, RetryPolicy (overrides of the code's
  defaults per provider and kind).
- `handler`: IntegrationRetryWorker's handler (integrations/workers/integration_retry.py
  declares the worker); `services`: the steps every actor takes (start an attempt, settle,
  escalate once, resolve a subject).
- `selectors`, `api`, `admin`, `prometheus`.
"""
