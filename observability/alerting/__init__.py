"""The alerting domain: alert rules and their instances, state history, silences and SLOs.

The rooms:
- `rules` and `evaluation` (the alert evaluator) and `slo` (SLO math): the pure decisions;
  `silences` (matchers) and `specs` (a rule's or an SLO's JSON specification to and from the
  pure values, and the group-key template) are pure too.
- `models`: AlertRule (with AlertRuleRevision, one per save), AlertInstance (one per rule and
  label group, with its InstanceState as JSON), AlertStateChange (every evaluation that changed
  an instance's state), Silence, Slo.
- `windows`: loading the stored MetricSeries windows a rule or an SLO reads, in bulk.
- `handler`: AlertEvaluationWorker's handler (observability/workers/alert_evaluation.py
  declares the worker): one tick per tenant and minute evaluates the rules due and the SLOs,
  writes in bulk and publishes AlertTriggered, AlertResolved, SloBreached and SloRecovered with
  event ids derived from what they say, so that a re-run publishes nothing new.
- `services` (writes of the API and the admin, with revisions), `selectors` (reads), `preview`
  (a draft rule over stored windows: the same evaluate), `api`, `admin`.

Settings (with the defaults below): ALERT_CATCH_UP_WINDOWS, how many windows of one rule a
tick evaluates at most (a tick after downtime catches up over several ticks);
ALERT_HISTORY_RETENTION_DAYS, how long state changes are kept; ALERT_INSTANCE_EXPIRY_HOURS, after
how long without a series an instance without an open alert is forgotten;
ALERT_PREVIEW_MAX_WINDOWS, the most windows a preview evaluates.
"""

DEFAULTS = {
    "ALERT_CATCH_UP_WINDOWS": 60,
    "ALERT_HISTORY_RETENTION_DAYS": 30,
    "ALERT_INSTANCE_EXPIRY_HOURS": 24,
    "ALERT_PREVIEW_MAX_WINDOWS": 1440,
}


def setting(name: str) -> int:
    from django.conf import settings

    return int(getattr(settings, name, DEFAULTS[name]))
