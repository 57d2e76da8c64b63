"""A rule's preview, or backtest: a draft rule over the stored windows of a time range, through
the same evaluator as the live tick (evaluation.evaluate), from a fresh state at the range's
first window. For each instance: its values, its state intervals and its transitions, with the
events it would have published. What Prometheus and Grafana offer only on synthetic series or
behind a feature flag (anchors §1, "Preview / backtest").

And what those events would have made of incidents: the triggers the live worker would have
published (handler.publications, handler.event_data: the contract's data), grouped from no
incidents by the incidents domain's own decision (decisions.replay, with the live windows), as
IncidentAnalysisWorker would have grouped them. Silences are left out: a preview says what the
rule does, not what this hour's silences would hide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import TenantId
from observability.alerting import handler, setting
from observability.alerting.evaluation import State, Transition, evaluate, needed_windows
from observability.alerting.models import AlertRule as AlertRuleRow
from observability.alerting.rules import AlertRule, InstanceWindows, NoData, instance_windows
from observability.alerting.specs import DEFAULT_GROUP_KEY
from observability.alerting.windows import Want, series_windows
from observability.incidents import decisions
from observability.incidents import handler as incidents

MAX_INSTANCES = 100  # the preview's reply lists the first instances, by key
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TooLong(ValueError):
    pass


@dataclass(frozen=True)
class Interval:
    state: str
    severity: str
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True)
class Trigger:
    """An event the rule would have published: AlertTriggered (a page or a severity increase)
    or AlertResolved, with the contract's data."""

    event_type: str
    transition: Transition
    data: dict[str, Any]


@dataclass(frozen=True)
class InstancePreview:
    key: str
    labels: dict[str, str]
    values: list[tuple[datetime, float | None]]  # (window start, value) with a series
    intervals: list[Interval]
    transitions: list[Transition]
    triggers: list[Trigger]


@dataclass(frozen=True)
class IncidentPreview:
    """An incident the triggers would have opened, as it stood at the range's end."""

    number: int  # in the order they opened, from 1
    title: str
    group_key: str
    status: str
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    reopened: int
    instance_keys: list[str]
    changes: list[tuple[str, datetime]]  # ("opened" | "resolved", when), reopenings included


@dataclass(frozen=True)
class Preview:
    first: datetime  # the first window evaluated (its start)
    last: datetime  # the last window evaluated (its start)
    windows: int
    instance_count: int
    instances: list[InstancePreview]
    incidents: list[IncidentPreview]

    @property
    def events(self) -> int:
        return len(self.triggers)

    @property
    def triggers(self) -> list[Trigger]:
        """Every instance's, in time order."""
        found = [t for i in self.instances for t in i.triggers]
        return sorted(found, key=lambda t: (t.transition.window_end, t.transition.instance_key))


def span(rule: AlertRule, start: datetime, end: datetime) -> tuple[datetime, datetime, int]:
    """The windows lying wholly in [start, end): (first start, last start, count)."""
    size = rule.size
    first = _align(start, size, up=True)
    last = _align(end, size) - size
    count = (last - first) // size + 1 if last >= first else 0
    limit = setting("ALERT_PREVIEW_MAX_WINDOWS")
    if count > limit:
        raise TooLong(
            f"the range holds {count} windows of {rule.query.window}: at most {limit} "
            "(shorten it, or use a larger window)"
        )
    if count < 1:
        raise TooLong(f"the range holds no whole window of {rule.query.window}")
    return first, last, count


def _align(moment: datetime, size: timedelta, *, up: bool = False) -> datetime:
    """The window boundary at or before `moment` (at or after it with `up`)."""
    down = EPOCH + ((moment - EPOCH) // size) * size
    return down + size if up and down < moment else down


@dataclass(frozen=True)
class Named:
    """What the events and incidents say of the rule beyond what it evaluates (its row's
    columns; a draft's are made up)."""

    name: str = "preview"
    group_key: str = DEFAULT_GROUP_KEY
    revision: int = 0


def preview(
    tenant_id: TenantId,
    rule: AlertRule,
    start: datetime,
    end: datetime,
    named: Named | None = None,
) -> Preview:
    first, last, count = span(rule, start, end)
    row = _row(rule, named or Named())
    queries = [q for q in (rule.query, rule.denominator) if q is not None]
    wants = [
        Want(q.window, q.metric, lo, hi)
        for q in queries
        for lo, hi in needed_windows(rule, first, last)
    ]
    ends = {(q.window, q.metric) for q in queries} if rule.nodata is NoData.PROMETHEUS else set()
    loaded = series_windows(tenant_id, wants, ends=ends)
    numerator = loaded.get((rule.query.window, rule.query.metric), [])
    denominator = (
        loaded.get((rule.denominator.window, rule.denominator.metric), [])
        if rule.denominator
        else []
    )
    groups = instance_windows(rule, numerator, denominator)
    inside = {
        key: windows
        for key, windows in sorted(groups.items())
        if any(first <= s.start <= last for s in windows.samples)
    }
    found = [
        _instance(rule, row, windows, first, last, count)
        for windows in list(inside.values())[:MAX_INSTANCES]
    ]
    until = last + rule.size
    return Preview(first, last, count, len(inside), found, incidents_of(found, until))


def _row(rule: AlertRule, named: Named) -> AlertRuleRow:
    """An unsaved rule row for handler.event_data: the events' data is the live tick's."""
    return AlertRuleRow(
        id=rule.id, name=named.name, group_key=named.group_key, revision=named.revision
    )


def incidents_of(instances: list[InstancePreview], until: datetime) -> list[IncidentPreview]:
    """The incidents the instances' triggers would have opened, reopened and resolved by
    `until` (the end of the range's last window), with the live grouping windows."""
    signals = [
        decisions.signal_of(t.event_type, t.transition.id, t.transition.window_end, t.data)
        for instance in instances
        for t in instance.triggers
    ]
    found, outcome = decisions.replay(signals, incidents.windows(), until=until)
    changes: dict[Any, list[tuple[str, datetime]]] = {}
    for change in outcome.transitions:
        changes.setdefault(change.incident_id, []).append((change.name, change.at))
    return [
        IncidentPreview(
            number=number,
            title=incident.title,
            group_key=incident.group_key,
            status=incident.status,
            severity=incident.severity,
            opened_at=incident.opened_at,
            resolved_at=incident.resolved_at,
            reopened=incident.reopened,
            instance_keys=sorted(
                str(t.data.get("instanceKey", t.key)) for t in incident.triggers.values()
            ),
            changes=changes.get(incident.id, []),
        )
        for number, incident in enumerate(found, 1)
    ]


def _instance(
    rule: AlertRule,
    row: AlertRuleRow,
    windows: InstanceWindows,
    first: datetime,
    last: datetime,
    count: int,
) -> InstancePreview:
    evaluation = evaluate(rule, windows, None, newest=last, start=first, max_windows=count)
    intervals = []
    state, severity, reason, since = State.NORMAL.value, "", "", first
    for t in evaluation.transitions:
        new_severity = (t.severity.value if t.severity else "") if t.state != "normal" else ""
        if (t.state.value, new_severity) == (state, severity):
            reason = t.reason
            continue
        if t.window_start > since:
            intervals.append(Interval(state, severity, since, t.window_start, reason))
        state, severity, reason, since = t.state.value, new_severity, t.reason, t.window_start
    intervals.append(Interval(state, severity, since, last + rule.size, reason))
    values = [(s.start, s.value) for s in windows.samples if first <= s.start <= last]
    step = (evaluation.transitions, evaluation.state)
    _, published = handler.publications(rule, windows.key, None, [step], evaluation.state)
    labels = dict(windows.labels)
    triggers = [
        Trigger(event_type, t, handler.event_data(row, rule, labels, t))
        for t, event_type in published
    ]
    return InstancePreview(
        key=windows.key,
        labels=dict(windows.labels),
        values=values,
        intervals=intervals,
        transitions=list(evaluation.transitions),
        triggers=triggers,
    )
