"""The alert evaluator: one alert instance's state, carried window by window.

`evaluate(rule, instance, previous, newest=...)` is a pure function of the rule, the instance's
windows (observability.alerting.rules.instance_windows) and its previous state: no database,
no clock. The live tick, catch-up after downtime, a replayed dead letter and the console's
preview all call it, so their answers cannot differ.

Each window is evaluated once, in order: from the one after the previous state's last
evaluated window up to `newest` (the newest window the aggregation completed, less the rule's
delay: rules.due_window), at most `max_windows` per call (the rest are left for the next call,
which says how many remain), so a tick after downtime catches up without skipping a window,
which Prometheus does not do (prometheus#17008). Evaluating the same windows from the same
state gives the same state and the same transitions; evaluating from the state it returned
evaluates nothing. A transition's id derives from (rule, instance, window, kind), so a re-run
publishes nothing new.

Times: a window is evaluated at its end, as a Prometheus rule at an evaluation timestamp; the
instance's times (active, fired, resolved) are evaluation times, and `for` and keep-firing are
measured between them: with 1-minute windows, `for: 2m` fires on the third breaching window.

The state machine follows Prometheus 2.42's (rules/alerting.go, anchors §2) and adds what its
users ask for (anchors §7):
- normal → pending on the first breach, → firing once breached for `for` (at once with 0); a
  breach that stops while pending returns to normal, and comes back needing the full `for`.
- A firing instance that stops breaching is recovering (Grafana's name) while it keeps firing
  for `keep_firing_for`, measured from the first window that did not breach, end exclusive, as
  Prometheus 2.42 does; a new breach makes it firing again without a new page.
- Warning and critical on one rule, as Sentry: the warning threshold triggers first (validated)
  and each level must hold for `for`. Severity only rises while an alert is open, so a value
  swinging between warning and critical pages once for each level, not on every swing.
- Hysteresis: an open alert stays open while `op` holds against the resolve threshold (Sentry's
  resolve threshold; Prometheus has none, prometheus#10536).
- Flapping, which no anchor detects: when the condition changed `flap_changes` times or more
  within the last `flap_window` windows, an open alert stays firing and says it is flapping
  instead of resolving, until the changes drop under the limit.
- Missing data, per rule (rules.NoData): Prometheus semantics (a value counts for 5 minutes
  after its window, lookback-delta, unless a NO_RECORDED_VALUE point ended the series; then no
  breach, so the alert resolves); nodata, where an open alert stays open rather than resolve on
  silence (alertmanager#2264, prometheus#17482); alerting; ok; keep last state.
- Errors (a window whose value cannot be computed) put the instance in its error state, with
  the reason, without resolving an open alert: Prometheus freezes such a rule and its alerts
  resolve at Alertmanager for lack of re-sends (anchors §2, "Traps").

With NoData.PROMETHEUS, a 1-minute window and no warning, resolve threshold or flap detection,
the pending and firing intervals equal promtool's (tests/observability/alerting/
test_evaluation_promtool.py runs `promtool test rules` as the oracle).

Late data: a window re-aggregated after it was evaluated changes nothing unless its outcome
changes (`outcome_changed`, from the outcomes the state remembers). If it does, the handler
evaluates again from a state saved before that window (any state an evaluation returned is an
exact checkpoint: the history keeps the state after each change, `InstanceState.to_json`) up to
the window it had reached, records the revised transitions, and publishes only what
`reconcile` returns: at most one page or one resolution, so the outside world never hears
twice of one alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec
from msgspec.structs import replace

from core.envelope import name_uuid
from core.formats import format_duration, format_value
from observability.alerting.rules import (
    MAX_TRACE_IDS,
    OFFSETS,
    OPERATORS,
    AlertRule,
    Comparison,
    InstanceWindows,
    NoData,
    WindowSample,
)

# Prometheus's --query.lookback-delta: a sample counts at evaluations up to 5 minutes after it,
# the bound included in 2.42 (a sample exactly 5 minutes old is still seen).
LOOKBACK_DELTA = timedelta(minutes=5)
# The outcomes an instance remembers (at least): flap detection's window, and how far back a
# late window can be checked for a changed outcome.
REMEMBERED = 10
NAMESPACE = uuid.UUID("5b0c1f6e-9a7d-4e2b-8c35-3f1d2e7a9b60")


class State(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"
    NODATA = "nodata"
    ERROR = "error"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Level(StrEnum):
    """What one window's value says, before the state decides what it means."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    NODATA = "nodata"
    ERROR = "error"


class Kind(StrEnum):
    """A transition's kind. TRIGGERED and SEVERITY_INCREASED publish AlertTriggered, RESOLVED
    publishes AlertResolved; the others are history only."""

    PENDING = "pending"
    TRIGGERED = "triggered"
    SEVERITY_INCREASED = "severity_increased"
    FIRING = "firing"  # firing again after recovering, nodata or error: the alert stayed open
    RECOVERING = "recovering"
    FLAPPING = "flapping"
    RESOLVED = "resolved"
    NORMAL = "normal"  # out of pending, nodata or error without an open alert
    NODATA = "nodata"
    ERROR = "error"


EVENTS = {
    Kind.TRIGGERED: "AlertTriggered",
    Kind.SEVERITY_INCREASED: "AlertTriggered",
    Kind.RESOLVED: "AlertResolved",
}


class Outcome(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one evaluated window said. `level` and `sustained` (the condition holds against
    the resolve threshold) depend on the window's data only; `breached` is what the instance
    took it for (sustained while an alert is open, else level above OK; None: no data or an
    error), whose changes flap detection counts."""

    start: datetime
    level: Level
    value: float | None
    sustained: bool
    breached: bool | None


class InstanceState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One instance of one rule, after its `last_window`. `severity` is the open alert's: set
    when it triggered (AlertTriggered published), None once resolved (AlertResolved).

    A msgspec struct, stored as a JSON array (`encode_state`, `decode_state`): a tick reads
    and writes every due instance's state, and msgspec does each in one C call (a dict with
    ISO strings built and parsed in Python took most of a tick's time)."""

    state: State = State.NORMAL
    severity: Severity | None = None
    reason: str = ""
    active_at: datetime | None = None  # the current breach's first evaluation
    critical_since: datetime | None = None  # the current critical breach's first evaluation
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    keep_firing_since: datetime | None = None  # the open alert's first non-breaching window
    last_window: datetime | None = None  # start of the newest window evaluated
    last_value: float | None = None
    flapping: bool = False
    recent: tuple[Outcome, ...] = ()  # oldest first
    trace_ids: tuple[str, ...] = ()  # exemplars of the breach's windows, newest first

    def to_json(self) -> Any:
        """For a JSONField: from_json gives back an equal state."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_json(cls, data: Any) -> InstanceState:
        """A state as to_json gave it, or as it was stored before it was an array (a dict with
        named keys: history kept from then is still read as a checkpoint)."""
        if isinstance(data, Mapping):
            return _from_dict(data)
        return msgspec.convert(data, cls)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(InstanceState)


def encode_state(state: InstanceState) -> str:
    """The state as the JSON text to_json gives (what the handler writes)."""
    return _ENCODER.encode(state).decode()


def decode_state(text: str | bytes) -> InstanceState:
    """A state from its stored JSON text, in either form from_json reads."""
    try:
        return _DECODER.decode(text)
    except msgspec.ValidationError:
        return _from_dict(msgspec.json.decode(text))


def _from_dict(data: Mapping[str, Any]) -> InstanceState:
    return InstanceState(
        state=State(data["state"]),
        severity=Severity(data["severity"]) if data["severity"] else None,
        reason=data["reason"],
        active_at=_moment(data["active_at"]),
        critical_since=_moment(data["critical_since"]),
        fired_at=_moment(data["fired_at"]),
        resolved_at=_moment(data["resolved_at"]),
        keep_firing_since=_moment(data["keepFiringSince"]),
        last_window=_moment(data["lastWindow"]),
        last_value=data["lastValue"],
        flapping=data["flapping"],
        recent=tuple(
            Outcome(_at(start), Level(level), value, sustained, breached)
            for start, level, value, sustained, breached in data["recent"]
        ),
        trace_ids=tuple(data["traceIds"]),
    )


def _moment(text: str | None) -> datetime | None:
    return None if text is None else _at(text)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an instance, in the window that caused it. `state` is the state entered;
    `threshold` the one crossed (None for no data and errors)."""

    rule_id: str
    instance_key: str
    kind: Kind
    window_start: datetime
    window_end: datetime
    previous: State
    state: State
    severity: Severity | None
    value: float | None
    threshold: float | None
    reason: str
    trace_ids: tuple[str, ...] = ()
    late: bool = False  # published by reconcile after late data changed an outcome
    # transition_id of the above, worked out once: the handler reads it for the event, the
    # history row and each comparison (a uuid5 of an ISO time, each time, was a twentieth of
    # a tick).
    id: uuid.UUID = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        id_ = transition_id(self.rule_id, self.instance_key, self.window_start, self.kind)
        object.__setattr__(self, "id", id_)

    @property
    def event_type(self) -> str | None:
        """The event this transition publishes, if any."""
        return EVENTS.get(self.kind)


def transition_id(rule_id: str, instance_key: str, window_start: datetime, kind: Kind) -> uuid.UUID:
    """The same (rule, instance, window, kind) gives the same id: the event id, the history
    row's key."""
    moment = window_start.astimezone(UTC).isoformat()
    return name_uuid(NAMESPACE, f"{rule_id}|{instance_key}|{moment}|{kind.value}")


class Evaluation(msgspec.Struct, frozen=True, gc=False):
    state: InstanceState
    transitions: tuple[Transition, ...]
    evaluated: int  # windows evaluated by this call
    remaining: int  # windows due but left for the next call (max_windows reached)
    # Per window that had transitions, in order: they and the state after it (its checkpoint,
    # which the handler keeps in the history). What one call per window would have returned.
    steps: tuple[tuple[tuple[Transition, ...], InstanceState], ...] = ()


# The windows to evaluate, and to load


def windows_due(
    rule: AlertRule,
    previous: InstanceState | None,
    *,
    newest: datetime,
    start: datetime | None = None,
    max_windows: int = 60,
) -> tuple[datetime, int, int]:
    """(the first window to evaluate, how many to evaluate now, how many remain after). With
    no previous window, evaluation starts at `start`, by default at `newest`: a new rule or a
    new instance starts now."""
    if max_windows < 1:
        raise ValueError("max_windows must be at least 1")
    size = rule.size
    last = previous.last_window if previous is not None else None
    first = last + size if last is not None else (newest if start is None else start)
    due = (newest - first) // size + 1
    if due <= 0:
        return first, 0, 0
    now = due if due < max_windows else max_windows
    return first, now, due - now


def needed_windows(
    rule: AlertRule, first: datetime, last: datetime
) -> tuple[tuple[datetime, datetime], ...]:
    """The window starts (inclusive ranges) whose samples evaluating first..last reads: the
    windows themselves, the 5 minutes before them in Prometheus mode, and the same an offset
    earlier for a percent change."""
    back = (
        (LOOKBACK_DELTA // rule.size) * rule.size
        if rule.nodata is NoData.PROMETHEUS
        else timedelta(0)
    )
    ranges = [(first - back, last)]
    if rule.comparison is Comparison.PERCENT_CHANGE and rule.offset in OFFSETS:
        offset = OFFSETS[rule.offset]
        ranges.append((first - offset - back, last - offset))
    return tuple(ranges)


# The evaluator


@dataclass(frozen=True, slots=True)
class _Derived:
    """What the evaluator reads of a rule at every window, worked out once per rule and kept
    on it (AlertRule.derived): a tick evaluates every instance of a rule with the same rule,
    and describing it or making timedeltas of its times at each window was a tenth of the
    evaluation."""

    size: timedelta
    described: str  # rule.describe()
    holds: Callable[[float, float], bool]  # rule.op.holds
    plain: bool  # a static comparison of each window's own sample (not Prometheus mode)
    hold: timedelta  # `for`
    keep: timedelta  # keep_firing_for
    holding: str  # `for`, as a person reads it
    keeping: str  # keep_firing_for, as a person reads it
    remembered: int  # the outcomes a state keeps
    flap_span: timedelta  # from the oldest window flap detection counts to the newest
    resolve_at: float  # where an open alert resolves


def _derived(rule: AlertRule) -> _Derived:
    derived = rule.derived
    if derived is None:
        size = rule.size
        derived = _Derived(
            size=size,
            described=rule.describe(),
            holds=OPERATORS[rule.op],
            plain=rule.comparison is Comparison.STATIC and rule.nodata is not NoData.PROMETHEUS,
            hold=timedelta(seconds=rule.for_seconds),
            keep=timedelta(seconds=rule.keep_firing_for_seconds),
            holding=format_duration(rule.for_seconds),
            keeping=format_duration(rule.keep_firing_for_seconds),
            remembered=max(rule.flap_window, REMEMBERED),
            flap_span=(rule.flap_window - 1) * size,
            resolve_at=rule.lowest_threshold if rule.resolve is None else rule.resolve,
        )
        object.__setattr__(rule, "derived", derived)  # a cache, not part of the rule's value
    assert isinstance(derived, _Derived)
    return derived


def evaluate(
    rule: AlertRule,
    instance: InstanceWindows,
    previous: InstanceState | None = None,
    *,
    newest: datetime,
    start: datetime | None = None,
    max_windows: int = 60,
) -> Evaluation:
    """Evaluate the instance's windows after `previous` up to `newest` (window starts), in
    order, at most `max_windows` of them (see windows_due). The rule must be valid
    (rules.validate). `instance.samples` must hold the windows needed_windows names; a window
    without a sample has no series (no data)."""
    first, count, remaining = windows_due(
        rule, previous, newest=newest, start=start, max_windows=max_windows
    )
    state = previous or InstanceState()
    if not count:
        return Evaluation(state, (), 0, remaining)
    derived = _derived(rule)
    if count == 1 and derived.plain and state.state is State.NORMAL and instance.samples:
        # Most instances at most ticks: one window, its own value, still under the thresholds.
        # What the loop below does for it, without the loop (test_evaluation_properties checks
        # the two agree, tick by tick against one call).
        sample = instance.samples[-1]
        if sample.start == first and sample.value is not None and not sample.error:
            seen = _compare(rule, derived, sample.value, sample.trace_ids)
            if seen.level is Level.OK and state.severity is None:
                recent, flapping = _remember(rule, derived, state, first, seen, False)
                return Evaluation(_normal(state, first, seen, recent, flapping), (), 1, remaining)
    samples = {sample.start: sample for sample in instance.samples}
    key, size = instance.key, derived.size
    transitions: list[Transition] = []
    steps: list[tuple[tuple[Transition, ...], InstanceState]] = []
    window = first
    for _ in range(count):
        before = len(transitions)
        seen = _observe(rule, derived, samples, window)
        state = _step(rule, derived, key, state, window, seen, transitions)
        if len(transitions) > before:
            steps.append((tuple(transitions[before:]), state))
        window += size
    return Evaluation(state, tuple(transitions), count, remaining, tuple(steps))


class Observation(msgspec.Struct, frozen=True, gc=False):
    """One window's value as the rule compares it, and what the comparison says."""

    level: Level
    value: float | None
    sustained: bool
    text: str  # "p95 of http.duration was 1.32", or why there is no value
    trace_ids: tuple[str, ...] = ()


def observe(
    rule: AlertRule, samples: Mapping[datetime, WindowSample], start: datetime
) -> Observation:
    """What the window starting at `start` says, from the samples by window start; independent
    of the instance's state."""
    return _observe(rule, _derived(rule), samples, start)


def _observe(
    rule: AlertRule, derived: _Derived, samples: Mapping[datetime, WindowSample], start: datetime
) -> Observation:
    if derived.plain:  # most rules: the window's own value, compared as it is
        sample = samples.get(start)
        if sample is not None and sample.value is not None and not sample.error:
            return _compare(rule, derived, sample.value, sample.trace_ids)
    value, sample, why = _value_at(rule, derived, samples, start)
    if sample is not None and sample.error:
        return Observation(Level.ERROR, None, False, sample.error)
    trace_ids = sample.trace_ids if sample is not None else ()
    if rule.comparison is Comparison.PERCENT_CHANGE and value is not None:
        offset = rule.offset or ""
        base, base_sample, _ = _value_at(rule, derived, samples, start - OFFSETS[offset])
        if base_sample is not None and base_sample.error:
            return Observation(Level.ERROR, None, False, f"{offset} ago: {base_sample.error}")
        if base is None or base == 0:
            # Sentry skips such an update; here it is plainly no data, for the rule's mode.
            why = (
                f"no value {offset} ago to compare with"
                if base is None
                else f"the value {offset} ago was 0"
            )
            value = None
        else:
            value = (value - base) / abs(base) * 100
    if value is None:
        if rule.nodata is NoData.ALERTING:
            return Observation(
                Level.CRITICAL, None, True, f"{why}, which this rule takes as critical"
            )
        if rule.nodata in (NoData.PROMETHEUS, NoData.OK):
            return Observation(Level.OK, None, False, why)
        return Observation(Level.NODATA, None, False, why)
    return _compare(rule, derived, value, trace_ids)


def _compare(
    rule: AlertRule, derived: _Derived, value: float, trace_ids: tuple[str, ...]
) -> Observation:
    holds = derived.holds
    if holds(value, rule.critical):
        level = Level.CRITICAL
    elif rule.warning is not None and holds(value, rule.warning):
        level = Level.WARNING
    else:
        level = Level.OK
    sustained = level is not Level.OK or (rule.resolve is not None and holds(value, rule.resolve))
    text = f"{derived.described} was {format_value(value)}"
    return Observation(level, value, sustained, text, trace_ids)


def _value_at(
    rule: AlertRule, derived: _Derived, samples: Mapping[datetime, WindowSample], start: datetime
) -> tuple[float | None, WindowSample | None, str]:
    """The window's value, the sample it came from and, without a value, why not."""
    if rule.nodata is not NoData.PROMETHEUS:
        sample = samples.get(start)
        if sample is None:
            return None, None, f"no series of {rule.query.metric} in the window"
        if sample.value is None:
            return None, sample, f"no value of {derived.described} in the window"
        return sample.value, sample, ""
    # Prometheus: the newest sample at most LOOKBACK_DELTA before the evaluation, unless it
    # is a staleness marker. A sample without a value is NaN to Prometheus: no breach.
    back = timedelta(0)
    while back <= LOOKBACK_DELTA:
        sample = samples.get(start - back)
        if sample is not None:
            if sample.stale:
                return None, sample, f"the series of {rule.query.metric} ended (no recorded value)"
            if sample.value is None:
                return None, sample, f"no value of {derived.described} in the window"
            return sample.value, sample, ""
        back += derived.size
    lookback = format_duration(LOOKBACK_DELTA.total_seconds())
    return None, None, f"no value of {rule.query.metric} in the last {lookback}"


def _step(
    rule: AlertRule,
    derived: _Derived,
    key: str,
    state: InstanceState,
    start: datetime,
    seen: Observation,
    out: list[Transition],
) -> InstanceState:
    """One window: the state after it; its transitions appended to `out`. Each way out builds
    the new state with one `replace`: this runs for every instance at every window."""
    at = start + derived.size  # the evaluation time

    def record(kind: Kind, new: InstanceState, threshold: float | None) -> None:
        out.append(
            Transition(
                rule_id=rule.id,
                instance_key=key,
                kind=kind,
                window_start=start,
                window_end=at,
                previous=state.state,
                state=new.state,
                severity=new.severity or state.severity,
                value=seen.value,
                threshold=threshold,
                reason=new.reason,
                trace_ids=new.trace_ids,
            )
        )

    level = seen.level
    is_open = state.severity is not None
    if level is Level.NODATA or level is Level.ERROR:
        recent, flapping = _remember(rule, derived, state, start, seen, None)
        if rule.nodata is NoData.KEEP_LAST and level is Level.NODATA:
            # Grafana's Keep Last State: nothing changes
            return replace(
                state, last_window=start, last_value=seen.value, recent=recent, flapping=flapping
            )
        # A pending breach did not hold; an open alert stays open, neither resolved nor paged.
        target = State.NODATA if level is Level.NODATA else State.ERROR
        new = replace(
            state,
            last_window=start,
            last_value=seen.value,
            recent=recent,
            flapping=flapping,
            state=target,
            reason=seen.text,
            active_at=None,
            critical_since=None,
            trace_ids=state.trace_ids if is_open else (),
        )
        if state.state is not target:
            record(Kind.NODATA if target is State.NODATA else Kind.ERROR, new, None)
        return new

    breached = seen.sustained if is_open else level is not Level.OK
    recent, flapping = _remember(rule, derived, state, start, seen, breached)
    if not breached and not is_open:  # most instances, most windows
        new = _normal(state, start, seen, recent, flapping)
        if state.state is not State.NORMAL:
            record(Kind.NORMAL, new, rule.lowest_threshold)
        return new

    # The exemplars of the breach's windows; an open alert keeps its own until it resolves.
    new = replace(
        state,
        last_window=start,
        last_value=seen.value,
        recent=recent,
        flapping=flapping,
        active_at=(state.active_at or at) if breached else None,
        critical_since=(state.critical_since or at) if level is Level.CRITICAL else None,
        trace_ids=(
            _merge(seen.trace_ids, state.trace_ids)
            if breached
            else (state.trace_ids if is_open else ())
        ),
    )
    hold = derived.hold
    critical_held = new.critical_since is not None and at - new.critical_since >= hold

    if is_open and breached:
        if critical_held and state.severity is Severity.WARNING:
            new = replace(
                new,
                state=State.FIRING,
                keep_firing_since=None,
                severity=Severity.CRITICAL,
                reason=f"{seen.text}: {rule.op} {rule.critical:g} (critical)",
            )
            record(Kind.SEVERITY_INCREASED, new, rule.critical)
        else:
            new = replace(
                new,
                state=State.FIRING,
                keep_firing_since=None,
                reason=_firing_reason(rule, derived, seen, new),
            )
            if state.state is not State.FIRING:
                record(Kind.FIRING, new, _threshold(rule, new.severity))
    elif is_open:
        since = state.keep_firing_since or at
        resolve_at = derived.resolve_at
        if new.flapping:
            changes = _changes(derived, new.recent, start)
            reason = (
                f"flapping: {changes} changes in the last {rule.flap_window} windows; "
                f"stays firing until it settles ({seen.text})"
            )
            new = replace(new, keep_firing_since=since, state=State.FIRING, reason=reason)
            if state.state is not State.FIRING:
                record(Kind.FIRING, new, resolve_at)
        elif at - since < derived.keep:
            reason = (
                f"{_no_longer(rule, seen, resolve_at)}; keeps firing for up to {derived.keeping}"
            )
            new = replace(new, keep_firing_since=since, state=State.RECOVERING, reason=reason)
            if state.state is not State.RECOVERING:
                record(Kind.RECOVERING, new, resolve_at)
        else:
            new = replace(
                new,
                state=State.NORMAL,
                severity=None,
                reason=_no_longer(rule, seen, resolve_at),
                resolved_at=at,
                active_at=None,
                critical_since=None,
                keep_firing_since=None,
                trace_ids=(),
            )
            out.append(
                Transition(
                    rule_id=rule.id,
                    instance_key=key,
                    kind=Kind.RESOLVED,
                    window_start=start,
                    window_end=at,
                    previous=state.state,
                    state=State.NORMAL,
                    severity=state.severity,
                    value=seen.value,
                    threshold=resolve_at,
                    reason=new.reason,
                    trace_ids=state.trace_ids,
                )
            )
    elif new.active_at is not None and at - new.active_at >= hold:  # breached
        severity = Severity.CRITICAL if critical_held else Severity.WARNING
        new = replace(
            new,
            state=State.FIRING,
            severity=severity,
            fired_at=at,
            resolved_at=None,
            keep_firing_since=None,
        )
        new = replace(new, reason=_firing_reason(rule, derived, seen, new))
        record(Kind.TRIGGERED, new, _threshold(rule, severity))
    else:  # breached, not for long enough yet
        level_ = Severity.CRITICAL if level is Level.CRITICAL else Severity.WARNING
        reason = f"{_breach(rule, seen, level_)}; fires once it holds for {derived.holding}"
        new = replace(new, state=State.PENDING, reason=reason)
        if state.state is not State.PENDING:
            out.append(
                Transition(
                    rule_id=rule.id,
                    instance_key=key,
                    kind=Kind.PENDING,
                    window_start=start,
                    window_end=at,
                    previous=state.state,
                    state=State.PENDING,
                    severity=level_,
                    value=seen.value,
                    threshold=_threshold(rule, level_),
                    reason=reason,
                    trace_ids=new.trace_ids,
                )
            )

    if new.flapping and not state.flapping and new.severity is not None:
        record(Kind.FLAPPING, new, None)
    return new


def _normal(
    state: InstanceState,
    start: datetime,
    seen: Observation,
    recent: tuple[Outcome, ...],
    flapping: bool,
) -> InstanceState:
    """The state after a window without a breach, for an instance with no open alert."""
    return replace(
        state,
        state=State.NORMAL,
        reason=seen.text,
        active_at=None,
        critical_since=None,
        last_window=start,
        last_value=seen.value,
        recent=recent,
        flapping=flapping,
        trace_ids=(),
    )


def _remember(
    rule: AlertRule,
    derived: _Derived,
    state: InstanceState,
    start: datetime,
    seen: Observation,
    breached: bool | None,
) -> tuple[tuple[Outcome, ...], bool]:
    """The state's outcomes with this window's remembered, and whether it is now flapping."""
    outcome = Outcome(start, seen.level, seen.value, seen.sustained, breached)
    recent = (*state.recent[1 - derived.remembered :], outcome)  # remembered >= REMEMBERED > 1
    if breached is None:
        return recent, state.flapping
    return recent, 0 < rule.flap_changes <= _changes(derived, recent, start)


def _changes(derived: _Derived, recent: Sequence[Outcome], start: datetime) -> int:
    """How often the condition changed within the last flap_window windows (up to `start`)."""
    since = start - derived.flap_span
    changes, last = 0, None
    for outcome in recent:  # a loop, not pairwise over a list: it runs for every window
        breached = outcome.breached
        if breached is None or outcome.start < since:
            continue
        if last is not None and breached != last:
            changes += 1
        last = breached
    return changes


def _merge(new: Sequence[str], old: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*new, *old]))[:MAX_TRACE_IDS]


def _threshold(rule: AlertRule, severity: Severity | None) -> float:
    if severity is Severity.WARNING and rule.warning is not None:
        return rule.warning
    return rule.critical


def _breach(rule: AlertRule, seen: Observation, severity: Severity) -> str:
    return f"{seen.text}: {rule.op} {_threshold(rule, severity):g} ({severity})"


def _firing_reason(
    rule: AlertRule, derived: _Derived, seen: Observation, state: InstanceState
) -> str:
    severity = state.severity or Severity.CRITICAL
    if seen.value is None or seen.level is Level.OK:
        # No data taken as critical, or a value inside the hysteresis band.
        return f"{seen.text}; still firing ({severity})"
    level = Severity.CRITICAL if seen.level is Level.CRITICAL else Severity.WARNING
    reason = _breach(rule, seen, level)
    if level is Severity.CRITICAL and severity is Severity.WARNING:
        return f"{reason}; critical once it holds for {derived.holding}"
    if level is Severity.WARNING and severity is Severity.CRITICAL:
        return f"{reason}; still firing (critical)"
    return reason


def _no_longer(rule: AlertRule, seen: Observation, threshold: float) -> str:
    if seen.value is None:
        return seen.text
    return f"{seen.text}: no longer {rule.op} {threshold:g}"


# Late data


def outcome_changed(
    rule: AlertRule, state: InstanceState, instance: InstanceWindows, since: datetime
) -> bool | None:
    """Whether the windows' samples, re-aggregated from `since` on, change the outcome of a
    window already evaluated (in Prometheus mode a window's value also counts in the next 5
    minutes' windows, so every remembered window from `since` on is checked). None when
    `since` is older than the outcomes the state remembers: the handler must evaluate again
    from a saved state to know."""
    if not state.recent or state.recent[0].start > since:
        return None
    samples = {sample.start: sample for sample in instance.samples}
    for outcome in state.recent:
        if outcome.start >= since:
            seen = observe(rule, samples, outcome.start)
            if (seen.level, seen.sustained) != (outcome.level, outcome.sustained):
                return True
    return False


SEVERITY_RANK = {None: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def reconcile(
    rule: AlertRule, key: str, current: InstanceState, revised: Evaluation
) -> tuple[Transition, ...]:
    """What to publish after late data: `revised` re-evaluated, from a state saved before the
    changed windows, the windows `current` had evaluated. Only the difference between what was
    published (current's open alert) and what is now true (revised's) goes out, marked late:
    the trigger of the revised open alert if none was open, its resolution if one was, a
    severity increase; nothing for an alert that was and is open, or a breach that came and
    went within the late windows (it stays in the revised history)."""
    was, now = current.severity, revised.state.severity
    if SEVERITY_RANK[now] <= SEVERITY_RANK[was] and (now is None) == (was is None):
        return ()
    state, start = revised.state, revised.state.last_window
    if start is None:
        return ()
    if now is None:
        wanted, found = Kind.RESOLVED, [t for t in revised.transitions if t.kind is Kind.RESOLVED]
    else:
        wanted = Kind.TRIGGERED if was is None else Kind.SEVERITY_INCREASED
        found = [
            t for t in revised.transitions if t.event_type == "AlertTriggered" and t.severity is now
        ]
    # Said at the newest window evaluated, whose id no earlier publication can have taken: the
    # revised trigger itself may be one the world heard of before it heard it resolve.
    source = found[-1] if found else None
    return (
        Transition(
            rule_id=rule.id,
            instance_key=key,
            kind=wanted,
            window_start=start,
            window_end=start + rule.size,
            previous=current.state,
            state=state.state,
            severity=now or was,
            value=source.value if source else state.last_value,
            threshold=source.threshold if source else None,
            reason=f"late data: {source.reason if source else state.reason}",
            trace_ids=source.trace_ids if source else state.trace_ids,
            late=True,
        ),
    )
