"""The incidents domain: triggers (alert instances and SLO burn-rate rows) correlated into
incidents, with their timeline and the traces behind them.

IncidentAnalysisWorker (observability/workers/incident_analysis.py) receives AlertTriggered,
AlertResolved, SloBreached and SloRecovered, and its schedule's slots; `handler.handle` reads
each batch's trigger events, loads what grouping needs for them in bulk (`store`), lets
`decisions` group them (join, link by shared traces, reopen, open; severity; resolution), writes
what changed in bulk and publishes IncidentOpened and IncidentResolved once per transition,
with event ids derived from (incident, transition, count): handling the same events again
changes nothing and publishes nothing new. The schedule's slots resolve incidents whose triggers
went quiet (the resolve timeout) and close resolved ones after the close delay.

The rooms: `models`, `decisions` (the pure rules), `store` (loading, locking, writing and
publishing, shared by the handler and the operators' actions), `handler` (the worker's batch
handler), `services` (acknowledge, resolve, comment: every change on the timeline with who and
when), `selectors` (reads), `api`, `admin`.

The windows are settings (seconds), with the defaults below: INCIDENT_GROUP_WINDOW_SECONDS,
INCIDENT_REOPEN_WINDOW_SECONDS, INCIDENT_RESOLVE_TIMEOUT_SECONDS, INCIDENT_CLOSE_AFTER_SECONDS;
INCIDENT_BATCH_SIZE is how many trigger events one call of the handler takes.
"""

WORKER = "IncidentAnalysisWorker"
DEFAULTS = {
    # PagerDuty's content-based grouping window is 5 min to 1 h, rolling.
    "INCIDENT_GROUP_WINDOW_SECONDS": 3600,
    # Sentry opens no new incident for the same trigger within 10 minutes; a flapping alert
    # often takes longer to come back.
    "INCIDENT_REOPEN_WINDOW_SECONDS": 1800,
    # AlertEvaluationWorker sends nothing while an alert keeps firing, so this only resolves
    # incidents whose triggers' resolutions never came (a rule deleted while firing).
    "INCIDENT_RESOLVE_TIMEOUT_SECONDS": 24 * 3600,
    "INCIDENT_CLOSE_AFTER_SECONDS": 24 * 3600,
    "INCIDENT_BATCH_SIZE": 500,
}
