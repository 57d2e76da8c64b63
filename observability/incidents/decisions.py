"""The incidents domain's decisions, as pure functions: plain values in, plain values out, no
database and no clock. The worker's handler, its schedule's sweep and the operators' actions
all change incidents through these, so the rules below hold whoever acts.

Grouping (`apply`), for each trigger event in time order:

1. An event older than what its trigger has already seen, or seen already (its event id), is
   ignored: redelivery and late replays change nothing (Sentry's `timestamp <= last_update`).
2. A trigger already in an open incident stays there: firing again reactivates it, a higher
   or lower severity changes it, its resolution resolves it.
3. A new firing joins the open incident of its group key (an incident's own key, or that of a
   trigger linked into it) within that incident's rolling window (`window_end`): the group
   window after its latest trigger event, each one extending it (PagerDuty's content-based
   window), and for as long as one of its triggers is active and has had an event within the
   resolve timeout (an alert that keeps firing sends no new event, and is still that
   incident). The database holds one open incident per key, so an open incident past its
   window is resolved by timeout before the trigger goes on.
4. Otherwise it joins an open incident that shares one of its traces (the most shared).
5. Otherwise the resolved incident it was last in, or the newest of its group key, is
   reopened if the trigger comes within the reopen window after it resolved (instead of a
   duplicate: Sentry opens none within 10 minutes). A firing from before that incident's
   resolution (delayed past an operator's resolve, or replayed) is recorded in it as a
   resolved trigger and reopens nothing.
6. Otherwise it opens a new incident, titled after it.

An incident's severity is its highest active trigger's. It resolves when its last active
trigger resolves (AlertResolved, SloRecovered), when an operator resolves it, or by timeout
once its window has passed (its triggers' resolutions never came; PagerDuty's
auto_resolve_timeout), at the window's end. A resolved incident closes after the close delay
and is then never reopened. Each opening (and reopening) and each resolution is a Transition,
published once under an event id derived from (incident, transition, count).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.formats import format_duration
from core.tracecontext import is_trace_id

NAMESPACE = uuid.UUID("0b6f3c52-5d0e-4f4e-8f5a-7c1d2e9a4b33")
KEY_CHARS = 500
MAX_TRACES = 50  # linked to one incident; the first ones, the breach's exemplars
MAX_EVENT_TRACES = 20  # read from one event (the contract's bound)
TITLE_CHARS = 200
SYSTEM = "system"
TIMEOUT = "timeout"

OPEN, ACKNOWLEDGED, RESOLVED, CLOSED = "open", "acknowledged", "resolved", "closed"
OPEN_STATUSES = (OPEN, ACKNOWLEDGED)
ACTIVE, TRIGGER_RESOLVED = "active", "resolved"
WARNING, CRITICAL = "warning", "critical"
RANK = {WARNING: 1, CRITICAL: 2}

# The trigger events: (kind of trigger, fired) for each.
TRIGGER_EVENTS = {
    "AlertTriggered": ("alert", True),
    "AlertResolved": ("alert", False),
    "SloBreached": ("slo", True),
    "SloRecovered": ("slo", False),
}


@dataclass(frozen=True)
class Windows:
    """The durations grouping works with (settings INCIDENT_*_SECONDS)."""

    group: timedelta
    reopen: timedelta
    resolve_timeout: timedelta
    close_after: timedelta


# --- Reading a trigger event -----------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One trigger event, read from its envelope: an alert instance or an SLO row firing
    (`fired`) or resolving."""

    event_id: uuid.UUID
    kind: str  # "alert" or "slo"
    fired: bool
    trigger_key: str
    group_key: str
    severity: str
    at: datetime  # the event's occurredAt
    started_at: datetime  # the breaching window's start, when the event says it
    name: str
    service: str
    reason: str
    trace_ids: tuple[str, ...]
    data: Mapping[str, Any]


def stored_key(key: str) -> str:
    """A key as stored: one longer than the column keeps its head and a digest of the whole,
    so that two long keys differing only at the end stay two keys."""
    if len(key) <= KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_CHARS - len(digest) - 1]}#{digest}"


def signal_of(
    event_type: str, event_id: uuid.UUID, occurred_at: datetime, data: Mapping[str, Any]
) -> Signal:
    """The Signal of a trigger event (the contract's AlertTriggered/AlertResolved and
    SloBreached/SloRecovered data). ValueError, saying what is missing, for data that names
    no trigger."""
    kind, fired = TRIGGER_EVENTS[event_type]
    trigger_key = _text(data.get("triggerKey")) or _derived_trigger_key(kind, data)
    if not trigger_key:
        needs = "ruleId and instanceKey" if kind == "alert" else "sloId and row"
        raise ValueError(f"{event_type} {event_id} names no triggerKey (nor {needs})")
    service = _text(data.get("service"))
    labels = data.get("labels")
    if not service and isinstance(labels, Mapping):
        service = _text(labels.get("service.name"))
    group_key = _text(data.get("groupKey")) or _default_group_key(kind, data, service)
    name = _text(data.get("ruleName" if kind == "alert" else "sloName")) or trigger_key
    severity = _text(data.get("severity")).lower()
    return Signal(
        event_id=event_id,
        kind=kind,
        fired=fired,
        trigger_key=stored_key(trigger_key),
        group_key=stored_key(group_key or trigger_key),
        severity=CRITICAL if severity in (CRITICAL, "page") else WARNING,
        at=occurred_at,
        started_at=_window_start(data, occurred_at),
        name=name[:TITLE_CHARS],
        service=service[:200],
        reason=_text(data.get("reason"))[:2000],
        trace_ids=trace_ids_of(data),
        data=data,
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _derived_trigger_key(kind: str, data: Mapping[str, Any]) -> str:
    if kind == "alert" and _text(data.get("ruleId")) and _text(data.get("instanceKey")):
        return f"alert:{_text(data.get('ruleId'))}:{_text(data.get('instanceKey'))}"
    if kind == "slo" and _text(data.get("sloId")) and _text(data.get("row")):
        return f"slo:{_text(data.get('sloId'))}:{_text(data.get('row'))}"
    return ""


def _default_group_key(kind: str, data: Mapping[str, Any], service: str) -> str:
    """The contract's defaults: the rule and its service, or the SLO."""
    if kind == "alert" and _text(data.get("ruleId")):
        return f"alert:{_text(data.get('ruleId'))}:{service}"
    if kind == "slo" and _text(data.get("sloId")):
        return f"slo:{_text(data.get('sloId'))}"
    return ""


def _window_start(data: Mapping[str, Any], at: datetime) -> datetime:
    """When the breach began: the alert's window start, if it is a time before the event."""
    try:
        start = datetime.fromisoformat(_text(data.get("windowStart")))
    except ValueError:
        return at
    if start.tzinfo is None or start > at:
        return at
    return start


def trace_ids_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The event's exemplar traces, lowercased, valid ones only, in their order, at most
    MAX_EVENT_TRACES."""
    named = data.get("traceIds")
    found: dict[str, None] = {}
    for candidate in named if isinstance(named, list) else []:
        if is_trace_id(candidate):
            found[candidate.lower()] = None
    return tuple(found)[:MAX_EVENT_TRACES]


# --- The working set ---------------------------------------------------------------------


@dataclass
class Trigger:
    key: str
    group_key: str
    kind: str
    name: str
    service: str
    state: str
    severity: str
    joined_by: str
    first_event_id: uuid.UUID
    last_event_id: uuid.UUID
    first_at: datetime
    last_event_at: datetime
    resolved_at: datetime | None = None
    fired: int = 1
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    pk: int | None = None  # None until stored
    changed: bool = False

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


@dataclass
class OtherActive:
    """An incident's active triggers that the batch does not name, summed up rather than
    loaded (an incident of a storm has thousands): how many, the highest severity, the latest
    event. `resolved_at` is set when the incident resolved them all."""

    count: int = 0
    severity: str = WARNING
    last_event_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass
class Incident:
    """An incident as grouping needs it: its columns, the triggers the batch names (and those
    it adds) by key, its other active triggers summed up, and of its linked traces those the
    batch names."""

    id: uuid.UUID
    number: int | None  # None until the handler numbers a new one
    title: str
    status: str
    severity: str
    group_key: str
    started_at: datetime
    opened_at: datetime
    last_trigger_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    resolved_by: str = ""
    closed_at: datetime | None = None
    services: list[str] = field(default_factory=list)
    reopened: int = 0
    triggers: dict[str, Trigger] = field(default_factory=dict)
    others: OtherActive = field(default_factory=OtherActive)
    trace_ids: set[str] = field(default_factory=set)
    trace_count: int = 0  # every linked trace, not only those in trace_ids
    new: bool = False
    changed: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def active_triggers(self) -> list[Trigger]:
        """The active triggers among those loaded (see `others` for the rest)."""
        return [t for t in self.triggers.values() if t.active]

    def active_count(self) -> int:
        return len(self.active_triggers()) + self.others.count

    def highest_severity(self) -> str | None:
        severities = [t.severity for t in self.active_triggers()]
        severities += [self.others.severity] if self.others.count else []
        return max(severities, key=RANK.__getitem__, default=None)

    def active_events(self) -> list[datetime]:
        """The latest event of each active trigger (of the others, their latest)."""
        found = [t.last_event_at for t in self.active_triggers()]
        latest = self.others.last_event_at
        return [*found, latest] if self.others.count and latest is not None else found


@dataclass(frozen=True)
class Entry:
    """A timeline entry to write."""

    incident_id: uuid.UUID
    at: datetime
    kind: str
    message: str
    actor: str = SYSTEM
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """A trace to link to an incident (its lineage)."""

    incident_id: uuid.UUID
    trace_id: str
    trigger_key: str
    at: datetime


@dataclass(frozen=True)
class Transition:
    """An opening (reopening included) or a resolution, to publish once: IncidentOpened or
    IncidentResolved, with the incident as it stood then (`snapshot`)."""

    incident_id: uuid.UUID
    name: str  # "opened" or "resolved"
    count: int  # the incident's reopen count then: opened#0, resolved#0, opened#1, ...
    at: datetime
    snapshot: Mapping[str, Any]

    @property
    def event_type(self) -> str:
        return "IncidentOpened" if self.name == "opened" else "IncidentResolved"

    @property
    def event_id(self) -> uuid.UUID:
        return transition_event_id(self.incident_id, self.name, self.count)


def transition_event_id(incident_id: uuid.UUID, name: str, count: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{incident_id}:{name}:{count}")


def incident_id_for(event_id: uuid.UUID) -> uuid.UUID:
    """A new incident's id, from the event that opened it: handling that event again (a
    replay) derives the same one."""
    return uuid.uuid5(NAMESPACE, f"incident:{event_id}")


@dataclass
class Outcome:
    entries: list[Entry] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    ignored: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (event id, why)

    def extend(self, other: Outcome) -> None:
        self.entries += other.entries
        self.links += other.links
        self.transitions += other.transitions
        self.ignored += other.ignored


@dataclass
class Book:
    """What the handler loaded for a batch of one tenant: the incidents it may touch (the
    open ones of the batch's group keys or traces, those holding its trigger keys, the newest
    resolved one of each of its group keys), and for each trigger key the newest event seen
    by a trigger of a closed incident. `apply` changes it in place and says what to write.

    Indexed by trigger key, group key and trace, since a storm's batch asks about hundreds of
    triggers among hundreds of incidents: add incidents, triggers and traces through `add`,
    `attach` and `link`, which keep the indexes."""

    incidents: dict[uuid.UUID, Incident]
    closed_seen: dict[str, datetime] = field(default_factory=dict)
    _by_trigger: dict[str, list[tuple[Incident, Trigger]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _by_group: dict[str, dict[uuid.UUID, Incident]] = field(
        default_factory=dict, init=False, repr=False
    )
    _by_trace: dict[str, dict[uuid.UUID, Incident]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        for incident in self.incidents.values():
            self._index(incident)

    def add(self, incident: Incident) -> None:
        self.incidents[incident.id] = incident
        self._index(incident)

    def _index(self, incident: Incident) -> None:
        self._by_group.setdefault(incident.group_key, {})[incident.id] = incident
        for trigger in incident.triggers.values():
            self._index_trigger(incident, trigger)
        for trace_id in incident.trace_ids:
            self._by_trace.setdefault(trace_id, {})[incident.id] = incident

    def _index_trigger(self, incident: Incident, trigger: Trigger) -> None:
        self._by_trigger.setdefault(trigger.key, []).append((incident, trigger))
        self._by_group.setdefault(trigger.group_key, {})[incident.id] = incident

    def attach(self, incident: Incident, trigger: Trigger) -> None:
        incident.triggers[trigger.key] = trigger
        self._index_trigger(incident, trigger)

    def link(self, incident: Incident, trace_id: str) -> None:
        incident.trace_ids.add(trace_id)
        self._by_trace.setdefault(trace_id, {})[incident.id] = incident

    def newest_trigger(self, key: str) -> tuple[Incident, Trigger] | None:
        found = self._by_trigger.get(key, [])
        return max(found, key=lambda pair: pair[1].last_event_at, default=None)

    def open_of_group(self, group_key: str) -> Incident | None:
        """The open incident of the key: its own (the database holds at most one), else the
        first opened of those a trigger of that key joined."""
        found = [i for i in self._by_group.get(group_key, {}).values() if i.is_open]
        mine = [i for i in found if i.group_key == group_key]
        return mine[0] if mine else min(found, key=lambda i: i.opened_at, default=None)

    def open_sharing(self, trace_ids: Iterable[str]) -> Incident | None:
        """The open incident sharing the most of these traces (the first opened, on a tie)."""
        shared: dict[uuid.UUID, int] = {}
        found: dict[uuid.UUID, Incident] = {}
        for trace_id in set(trace_ids):
            for incident in self._by_trace.get(trace_id, {}).values():
                if incident.is_open:
                    shared[incident.id] = shared.get(incident.id, 0) + 1
                    found[incident.id] = incident
        best = min(
            found.values(),
            key=lambda i: (-shared[i.id], i.opened_at, str(i.id)),
            default=None,
        )
        return best

    def resolved_of_group(self, group_key: str) -> Incident | None:
        resolved = [
            i
            for i in self._by_group.get(group_key, {}).values()
            if i.status == RESOLVED and i.group_key == group_key and i.resolved_at is not None
        ]
        return max(resolved, key=lambda i: (i.resolved_at, i.opened_at), default=None)


# --- Grouping ------------------------------------------------------------------------------


def apply(book: Book, signals: Iterable[Signal], windows: Windows) -> Outcome:
    """Group trigger events into the book's incidents (the module docstring's rules)."""
    outcome = Outcome()
    for signal in sorted(signals, key=lambda s: (s.at, str(s.event_id))):
        why = _seen_already(book, signal)
        if why:
            outcome.ignored.append((signal.event_id, why))
        elif signal.fired:
            _fire(book, signal, windows, outcome)
        else:
            _resolve_trigger(book, signal, outcome)
    return outcome


def _seen_already(book: Book, signal: Signal) -> str:
    closed = book.closed_seen.get(signal.trigger_key)
    if closed is not None and signal.at <= closed:
        return "older than its trigger's latest event"
    newest = book.newest_trigger(signal.trigger_key)
    if newest is None:
        return ""
    trigger = newest[1]
    if signal.event_id in (trigger.first_event_id, trigger.last_event_id):
        return "handled already"
    if signal.at < trigger.last_event_at:
        return "older than its trigger's latest event"
    return ""


def _fire(book: Book, signal: Signal, windows: Windows, outcome: Outcome) -> None:
    held = book.newest_trigger(signal.trigger_key)
    if held is not None and held[0].is_open:
        if takes(held[0], signal.at, windows):
            _refire(held[0], held[1], signal, outcome)
            _after_trigger(book, held[0], signal, outcome)
            return
        resolve_timed_out(held[0], windows, outcome)
    incident = book.open_of_group(signal.group_key)
    if incident is not None and not takes(incident, signal.at, windows):
        resolve_timed_out(incident, windows, outcome)
        incident = None
    joined_by, opening = "group", False
    if incident is None and signal.trace_ids:
        incident, joined_by = book.open_sharing(signal.trace_ids), "traces"
    last = held[0] if held is not None else None
    if incident is None and (earlier := _resolved_since(book, signal, last)) is not None:
        _record_before_resolution(book, earlier, signal, outcome)
        return
    if incident is None:
        joined_by, incident = "group", _reopenable(book, signal, windows, last)
        if incident is not None:
            _reopen(incident, signal, outcome)
            opening = True
    if incident is None:
        incident = _new_incident(signal)
        book.add(incident)
        book.attach(incident, _new_trigger(signal, "group"))
        outcome.entries.append(
            Entry(
                incident.id, signal.at, "opened", f"Opened by {_describe(signal)}{_because(signal)}"
            )
        )
        opening = True
    else:
        _join(book, incident, signal, joined_by, outcome)
    _after_trigger(book, incident, signal, outcome)
    if opening:
        outcome.transitions.append(_transition(incident, "opened", at=signal.at))


def takes(incident: Incident, at: datetime, windows: Windows) -> bool:
    """Whether an open incident takes a new trigger of its key at `at`: until the end of its
    rolling window (`window_end`)."""
    return at <= window_end(incident, windows)


def window_end(incident: Incident, windows: Windows) -> datetime:
    """Until when an open incident takes triggers of its key: the group window after its
    latest trigger event, and while one of its triggers is active and has had an event within
    the resolve timeout (an alert that keeps firing sends none). Past it the incident resolves
    by timeout: its triggers' resolutions never came."""
    ends = [incident.last_trigger_at + windows.group]
    ends += [at + windows.resolve_timeout for at in incident.active_events()]
    return max(ends)


def _reopenable(
    book: Book, signal: Signal, windows: Windows, last: Incident | None
) -> Incident | None:
    """The resolved incident a firing reopens: the one its trigger was last in, else the newest
    of its group key, if it resolved within the reopen window (and has not closed)."""
    for incident in (last, book.resolved_of_group(signal.group_key)):
        if incident is None or incident.status != RESOLVED or incident.resolved_at is None:
            continue
        after = signal.at - incident.resolved_at
        if after <= windows.reopen and after < windows.close_after:
            return incident
    return None


def _resolved_since(book: Book, signal: Signal, last: Incident | None) -> Incident | None:
    """The resolved incident that was still open when the trigger fired: the one its trigger
    was last in, else the newest of its group key, resolved at or after the event's time (an
    event delayed past an operator's resolve, or replayed from the dead letters later)."""
    for incident in (last, book.resolved_of_group(signal.group_key)):
        if incident is None or incident.status != RESOLVED or incident.resolved_at is None:
            continue
        if incident.opened_at <= signal.at <= incident.resolved_at:
            return incident
    return None


def _record_before_resolution(
    book: Book, incident: Incident, signal: Signal, outcome: Outcome
) -> None:
    """A firing from before the incident resolved is part of its history, not a new breach:
    recorded as a trigger resolved with it, its traces linked, and the incident left resolved
    (reopening it would page for what the resolution already covered)."""
    assert incident.resolved_at is not None
    trigger = incident.triggers.get(signal.trigger_key)
    if trigger is None:
        trigger = _new_trigger(signal, "group")
        book.attach(incident, trigger)
    elif signal.at > trigger.last_event_at:
        trigger.last_event_id, trigger.last_event_at = signal.event_id, signal.at
    trigger.state, trigger.resolved_at = TRIGGER_RESOLVED, incident.resolved_at
    trigger.changed = True
    if signal.service and signal.service not in incident.services:
        incident.services = sorted([*incident.services, signal.service])
    _link_traces(book, incident, signal, outcome)
    incident.changed = True
    resolved = incident.resolved_at.isoformat(timespec="seconds")
    outcome.entries.append(
        Entry(
            incident.id,
            signal.at,
            "trigger",
            f"{_describe(signal)} fired before this incident was resolved (at {resolved}); "
            f"it arrived later and is recorded here without reopening it{_because(signal)}",
        )
    )


def _new_incident(signal: Signal) -> Incident:
    return Incident(
        id=incident_id_for(signal.event_id),
        number=None,
        title=title_of(signal),
        status=OPEN,
        severity=signal.severity,
        group_key=signal.group_key,
        started_at=signal.started_at,
        opened_at=signal.at,
        last_trigger_at=signal.at,
        services=[signal.service] if signal.service else [],
        new=True,
    )


def title_of(signal: Signal) -> str:
    """The first trigger's name, and its service: "checkout errors on checkout"."""
    what = signal.name if signal.kind == "alert" else f"SLO {signal.name} burning error budget"
    title = f"{what} on {signal.service}" if signal.service else what
    return title[:TITLE_CHARS]


def _new_trigger(signal: Signal, joined_by: str) -> Trigger:
    return Trigger(
        key=signal.trigger_key,
        group_key=signal.group_key,
        kind=signal.kind,
        name=signal.name,
        service=signal.service,
        state=ACTIVE,
        severity=signal.severity,
        joined_by=joined_by,
        first_event_id=signal.event_id,
        last_event_id=signal.event_id,
        first_at=signal.at,
        last_event_at=signal.at,
        reason=signal.reason,
        data=signal.data,
        changed=True,
    )


def _join(book: Book, incident: Incident, signal: Signal, joined_by: str, outcome: Outcome) -> None:
    """A trigger new to the incident (or back after it resolved, on a reopened one)."""
    known = incident.triggers.get(signal.trigger_key)
    if known is not None:
        _refire(incident, known, signal, outcome, quiet=True)
        return
    book.attach(incident, _new_trigger(signal, joined_by))
    if joined_by == "traces":
        shared = sorted(incident.trace_ids & set(signal.trace_ids))
        message = (
            f"{_describe(signal)} fired, linked here: it shares trace "
            f"{', '.join(shared[:3])}{' and more' if len(shared) > 3 else ''} with this "
            f"incident{_because(signal)}"
        )
        outcome.entries.append(
            Entry(incident.id, signal.at, "linked", message, data={"traceIds": shared})
        )
    else:
        outcome.entries.append(
            Entry(incident.id, signal.at, "trigger", f"{_describe(signal)} fired{_because(signal)}")
        )


def _refire(
    incident: Incident, trigger: Trigger, signal: Signal, outcome: Outcome, *, quiet: bool = False
) -> None:
    """A trigger of the incident fires again: back from resolved, or at another severity."""
    was_active, old = trigger.active, trigger.severity
    trigger.state, trigger.resolved_at = ACTIVE, None
    trigger.severity, trigger.reason, trigger.data = signal.severity, signal.reason, signal.data
    trigger.last_event_id, trigger.last_event_at = signal.event_id, signal.at
    trigger.fired += 0 if was_active else 1
    trigger.changed = True
    if not was_active and not quiet:
        outcome.entries.append(
            Entry(
                incident.id,
                signal.at,
                "trigger",
                f"{_describe(signal)} fired again{_because(signal)}",
            )
        )
    elif was_active and old != signal.severity:
        verb = "raised" if RANK[signal.severity] > RANK[old] else "lowered"
        outcome.entries.append(
            Entry(
                incident.id,
                signal.at,
                "severity",
                f"{signal.name} {verb} from {old} to {signal.severity}{_because(signal)}",
            )
        )


def _reopen(incident: Incident, signal: Signal, outcome: Outcome) -> None:
    assert incident.resolved_at is not None
    after = format_duration((signal.at - incident.resolved_at).total_seconds())
    incident.status, incident.reopened = OPEN, incident.reopened + 1
    incident.resolved_at, incident.resolved_by = None, ""
    # A reopened incident pages again: whoever acknowledged the last one may be gone.
    incident.acknowledged_at, incident.acknowledged_by = None, ""
    incident.changed = True
    outcome.entries.append(
        Entry(
            incident.id,
            signal.at,
            "reopened",
            f"Reopened by {_describe(signal)}, {after} after it resolved{_because(signal)}",
        )
    )


def _after_trigger(book: Book, incident: Incident, signal: Signal, outcome: Outcome) -> None:
    """What every trigger event changes: the latest trigger time, the severity, the services
    and the traces."""
    incident.last_trigger_at = max(incident.last_trigger_at, signal.at)
    if signal.service and signal.service not in incident.services:
        incident.services = sorted([*incident.services, signal.service])
    _reassess_severity(incident, signal.at, outcome)
    _link_traces(book, incident, signal, outcome)
    incident.changed = True


def _reassess_severity(incident: Incident, at: datetime, outcome: Outcome) -> None:
    highest = incident.highest_severity()
    if highest is not None and highest != incident.severity:
        outcome.entries.append(
            Entry(
                incident.id,
                at,
                "severity",
                f"Severity {incident.severity} → {highest} (its highest active trigger's).",
            )
        )
        incident.severity = highest


def _link_traces(book: Book, incident: Incident, signal: Signal, outcome: Outcome) -> None:
    for trace_id in signal.trace_ids:
        if trace_id in incident.trace_ids:
            continue
        if incident.trace_count >= MAX_TRACES:
            break
        book.link(incident, trace_id)
        incident.trace_count += 1
        outcome.links.append(Link(incident.id, trace_id, signal.trigger_key, signal.at))


def _resolve_trigger(book: Book, signal: Signal, outcome: Outcome) -> None:
    held = book.newest_trigger(signal.trigger_key)
    if held is None:
        outcome.ignored.append((signal.event_id, "its trigger is in no incident"))
        return
    incident, trigger = held
    was_active = trigger.active
    trigger.state = TRIGGER_RESOLVED
    trigger.resolved_at = trigger.resolved_at if not was_active else signal.at
    trigger.last_event_id, trigger.last_event_at = signal.event_id, signal.at
    trigger.reason, trigger.data = signal.reason or trigger.reason, signal.data
    trigger.changed = True
    if not (was_active and incident.is_open):
        return  # resolved with its incident already (timeout, operator): only recorded
    incident.last_trigger_at = max(incident.last_trigger_at, signal.at)
    incident.changed = True
    message = f"{signal.name} resolved{_because(signal)}"
    outcome.entries.append(Entry(incident.id, signal.at, "trigger_resolved", message))
    if incident.active_count():
        _reassess_severity(incident, signal.at, outcome)
        return
    _resolve(incident, signal.at, SYSTEM, "Resolved: its last trigger resolved.", outcome)


def _resolve(incident: Incident, at: datetime, by: str, message: str, outcome: Outcome) -> None:
    incident.status, incident.resolved_at, incident.resolved_by = RESOLVED, at, by
    incident.changed = True
    for trigger in incident.active_triggers():
        trigger.state, trigger.resolved_at, trigger.changed = TRIGGER_RESOLVED, at, True
    if incident.others.count:
        incident.others = OtherActive(resolved_at=at)
    actor = by if by not in (SYSTEM, TIMEOUT) else SYSTEM
    outcome.entries.append(Entry(incident.id, at, "resolved", message, actor=actor))
    outcome.transitions.append(_transition(incident, "resolved", at=at))


def _transition(incident: Incident, name: str, *, at: datetime) -> Transition:
    return Transition(
        incident_id=incident.id,
        name=name,
        count=incident.reopened,
        at=at,
        snapshot={
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "groupKey": incident.group_key,
            "services": list(incident.services),
            "openedAt": (at if name == "opened" else incident.opened_at).isoformat(),
            "resolvedAt": incident.resolved_at.isoformat() if incident.resolved_at else None,
        },
    )


def _describe(signal: Signal) -> str:
    """ "checkout errors on checkout (critical)"."""
    where = f" on {signal.service}" if signal.service else ""
    return f"{signal.name}{where} ({signal.severity})"


def _because(signal: Signal) -> str:
    """The end of a timeline sentence: the trigger's reason, when it gives one."""
    return f": {signal.reason}" if signal.reason else "."


# --- Timeouts and closing (the worker's schedule) ------------------------------------------


def resolve_timed_out(incident: Incident, windows: Windows, outcome: Outcome) -> None:
    waited = format_duration(windows.resolve_timeout.total_seconds())
    _resolve(
        incident,
        window_end(incident, windows),
        TIMEOUT,
        f"Resolved by timeout: its triggers had no event for {waited}, and their "
        "resolutions never came.",
        outcome,
    )


def sweep(incidents: Iterable[Incident], now: datetime, windows: Windows) -> Outcome:
    """Resolve the open incidents whose timeout has passed, and close the resolved ones past
    the close delay. `now` is the schedule slot's time, so a slot handled twice decides the
    same."""
    outcome = Outcome()
    for incident in incidents:
        if incident.is_open and window_end(incident, windows) <= now:
            resolve_timed_out(incident, windows, outcome)
        if (
            incident.status == RESOLVED
            and incident.resolved_at is not None
            and incident.resolved_at + windows.close_after <= now
        ):
            at = incident.resolved_at + windows.close_after
            incident.status, incident.closed_at, incident.changed = CLOSED, at, True
            resolved_for = format_duration(windows.close_after.total_seconds())
            outcome.entries.append(
                Entry(incident.id, at, "closed", f"Closed: resolved for {resolved_for}.")
            )
    return outcome


# --- Operators' actions ----------------------------------------------------------------------


class Refused(Exception):
    """An action that does not apply to the incident as it is, saying why and what would."""


def acknowledge(incident: Incident, *, actor: str, at: datetime) -> Outcome:
    """Acknowledge an open incident: nothing for one acknowledged already."""
    if incident.status == ACKNOWLEDGED:
        return Outcome()
    if incident.status != OPEN:
        raise Refused(
            f"Incident #{incident.number} is {incident.status}: only an open incident is "
            "acknowledged. A new trigger reopens a resolved one."
        )
    incident.status, incident.acknowledged_at, incident.acknowledged_by = ACKNOWLEDGED, at, actor
    incident.changed = True
    return Outcome(entries=[Entry(incident.id, at, "acknowledged", "Acknowledged.", actor=actor)])


def resolve(incident: Incident, *, actor: str, at: datetime) -> Outcome:
    """Resolve an open or acknowledged incident and its active triggers: nothing for one
    resolved or closed already."""
    outcome = Outcome()
    if incident.is_open:
        _resolve(incident, at, actor, "Resolved.", outcome)
    return outcome


def comment(incident: Incident, *, actor: str, at: datetime, text: str) -> Outcome:
    text = text.strip()
    if not text:
        raise Refused("A comment needs some text.")
    return Outcome(entries=[Entry(incident.id, at, "comment", text, actor=actor)])


# --- Backtests -------------------------------------------------------------------------------


def replay(
    signals: Iterable[Signal], windows: Windows, *, until: datetime
) -> tuple[list[Incident], Outcome]:
    """What trigger events would have made of no incidents at all, as the worker would: grouped
    in time order (`apply`), then swept at `until` (the timeouts and closing that the worker's
    schedule runs between batches). A rule's preview calls this on the events its backtest
    would have published, so its incidents are the live worker's by construction. Returns the
    incidents in the order they opened, and what happened to them."""
    book = Book(incidents={})
    outcome = apply(book, signals, windows)
    outcome.extend(sweep(book.incidents.values(), until, windows))
    found = sorted(book.incidents.values(), key=lambda i: (i.opened_at, str(i.id)))
    return found, outcome
