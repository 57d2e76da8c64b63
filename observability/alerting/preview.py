"""A rule's preview, or backtest: a draft rule over the stored windows of a time range, through
the same evaluator as the live tick (evaluation.evaluate), from a fresh state at the range's
first window. For each instance: its values, its state intervals and its transitions, with the
events it would have published. What Prometheus and Grafana offer only on synthetic series or
behind a feature flag (anchors §1, "Preview / backtest").

And what those events would have made of incidents: the triggers the live worker would have
published (handler.publications, handler.event_data: the contract's data), grouped from no
incidents by the incidents domain's own decision (decisions.replay, with the live windows), as
IncidentAnalysisWorker would have grouped them. The silences stored for the range hold triggers
back as they do live (the tick's handler._decide): an instance is evaluated and shown with its
states whatever holds it, but while a silence matches it at a window's end, nothing it does is
heard; if it still fires when the silence ends, it triggers then (handler.publications, said at
that window). So a silenced instance's triggers open no incident."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import TenantId
from observability.alerting import handler, setting, silences
from observability.alerting.evaluation import (
    InstanceState,
    Severity,
    State,
    Transition,
    evaluate,
    needed_windows,
)
from observability.alerting.models import AlertRule as AlertRuleRow
from observability.alerting.models import Silence
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
    silenced: tuple[str, ...] = ()  # the silences that held it at some window of the range


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
    spans = range_silences(tenant_id, first, last + rule.size)
    found = [
        _instance(rule, row, windows, first, last, count, spans)
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


def range_silences(tenant_id: TenantId, start: datetime, end: datetime) -> list[silences.Span]:
    """The tenant's silences active at some instant of [start, end], stored or expired since
    (a deleted one is gone: it holds nothing back)."""
    found = []
    rows = Silence.objects.filter(tenant_id=tenant_id, starts_at__lte=end, ends_at__gt=start)
    for silence_id, matchers, starts_at, ends_at in rows.values_list(
        "id", "matchers", "starts_at", "ends_at"
    ):
        try:
            parsed = silences.matchers_of(matchers)
        except ValueError:
            continue  # validated on save; a hand-edited row silences nothing (as live)
        found.append(silences.Span(str(silence_id), parsed, starts_at, ends_at))
    return found


def _instance(
    rule: AlertRule,
    row: AlertRuleRow,
    windows: InstanceWindows,
    first: datetime,
    last: datetime,
    count: int,
    spans: list[silences.Span],
) -> InstancePreview:
    labels = dict(windows.labels)
    matched = silences.instance_labels(labels, row.name)
    holding = [span for span in spans if span.matches(matched)]
    state: InstanceState | None = None
    heard: Severity | None = None
    transitions: list[Transition] = []
    published: list[tuple[Transition, str]] = []
    held: dict[str, None] = {}
    # Evaluated in runs of windows that the silences hold alike (one run without any), each
    # from the state the one before left: the same evaluate as a tick catching up.
    for run_count, silenced in _runs(rule, first, count, holding, matched):
        evaluation = evaluate(rule, windows, state, newest=last, start=first, max_windows=run_count)
        state = evaluation.state
        transitions += evaluation.transitions
        if silenced:
            held.update(dict.fromkeys(silenced))
            continue
        step = (evaluation.transitions, state)
        heard, sent = handler.publications(rule, windows.key, heard, [step], state)
        published += sent
    intervals = []
    current, severity, reason, since = State.NORMAL.value, "", "", first
    for t in transitions:
        new_severity = (t.severity.value if t.severity else "") if t.state != "normal" else ""
        if (t.state.value, new_severity) == (current, severity):
            reason = t.reason
            continue
        if t.window_start > since:
            intervals.append(Interval(current, severity, since, t.window_start, reason))
        current, severity, reason, since = t.state.value, new_severity, t.reason, t.window_start
    intervals.append(Interval(current, severity, since, last + rule.size, reason))
    values = [(s.start, s.value) for s in windows.samples if first <= s.start <= last]
    triggers = [
        Trigger(event_type, t, handler.event_data(row, rule, labels, t))
        for t, event_type in published
    ]
    return InstancePreview(
        key=windows.key,
        labels=dict(windows.labels),
        values=values,
        intervals=intervals,
        transitions=transitions,
        triggers=triggers,
        silenced=tuple(held),
    )


def _runs(
    rule: AlertRule,
    first: datetime,
    count: int,
    holding: list[silences.Span],
    labels: dict[str, str],
) -> list[tuple[int, tuple[str, ...]]]:
    """The range's windows, in order, as runs (how many windows, the silences holding them): a
    window is held by the silences active at its end, when the tick hears of it. The first
    window after a held run is a run of its own: the tick that evaluates it is where what the
    silence held back (a trigger still firing) is said."""
    if not holding:
        return [(count, ())]
    runs: list[tuple[int, tuple[str, ...]]] = []
    closed = False  # the last run is the first window after a held run
    for i in range(count):
        ids = tuple(silences.silencing(holding, labels, first + (i + 1) * rule.size))
        if runs and runs[-1][1] == ids and not closed:
            runs[-1] = (runs[-1][0] + 1, ids)
        else:
            closed = bool(runs) and bool(runs[-1][1]) and not ids
            runs.append((1, ids))
    return runs
