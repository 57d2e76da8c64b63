"""The decisions of rate limits and circuits, as pure functions: plain values in, plain values
out, no database and no clock. buckets.py and circuits.py load a row, call these, and write
what they return; the admin and the health worker call the same functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

# --- Rate limits: what a vendor's reply says -------------------------------------------------


class HeaderPolicy(Protocol):
    """How a vendor reports its limits; the provider registry's RateLimitPolicy is one."""

    @property
    def remaining_header(self) -> str: ...
    @property
    def reset_header(self) -> str: ...
    @property
    def reset_kind(self) -> str: ...
    @property
    def retry_after_header(self) -> str: ...
    @property
    def statuses(self) -> tuple[int, ...]: ...
    @property
    def default_wait_seconds(self) -> float: ...


@dataclass(frozen=True)
class Headers:
    """A HeaderPolicy of our own, for callers without a provider (webhook endpoints)."""

    remaining_header: str = ""
    reset_header: str = ""
    # epoch: UTC epoch seconds (GitHub); seconds: from now (IETF); iso: an instant;
    # "": guess (a value above 10^9 is an epoch time).
    reset_kind: str = ""
    retry_after_header: str = "retry-after"
    # Statuses that mean "rate limited" with no header to say more.
    statuses: tuple[int, ...] = (429,)
    # How long such a status makes us wait with no header to go by (GitHub's secondary limits:
    # "wait for at least one minute"); 0 for not at all.
    default_wait_seconds: float = 0.0


GITHUB = Headers(
    remaining_header="x-ratelimit-remaining",
    reset_header="x-ratelimit-reset",
    reset_kind="epoch",
    statuses=(403, 429),
    default_wait_seconds=60.0,
)
# A webhook receiver: Retry-After on 429 and 503, and any of the common headers it may send.
WEBHOOK = Headers(statuses=(429, 503))
# The longest a vendor's word makes us wait: beyond it, the value is more likely wrong than
# meant (a reset sent in milliseconds, a date decades away).
MAX_WAIT = timedelta(days=1)


@dataclass(frozen=True)
class Tightening:
    """What a reply says about the budget: wait until `until` (None: no need); `remaining`
    requests are left until `reset` (None: not said)."""

    until: datetime | None = None
    reason: str = ""
    remaining: int | None = None
    reset: datetime | None = None


def header(headers: Mapping[str, str], name: str) -> str | None:
    if not name:
        return None
    value = headers.get(name)
    if value is None:  # a plain dict: look for the name in any case
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value.strip() if value is not None else None


def retry_after(value: str | None, *, now: datetime) -> datetime | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; None if absent or unreadable."""
    if not value:
        return None
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when, now)


def reset_time(value: str | None, kind: str, *, now: datetime) -> datetime | None:
    if not value:
        return None
    try:
        if kind == "iso":
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        number = float(value)
    except ValueError:
        return None
    if kind == "epoch" or (kind == "" and number > 1e9):
        return datetime.fromtimestamp(number, tz=UTC)
    return now + timedelta(seconds=number)


_STRUCTURED = re.compile(r"(?:^|[;,\s])(r|remaining|t|reset)=(\d+)")


def _ietf(headers: Mapping[str, str], *, now: datetime) -> list[tuple[int, datetime | None]]:
    """(remaining, reset) from the IETF drafts: RateLimit-Remaining / RateLimit-Reset (delta
    seconds; Airbyte's defaults), and the RateLimit field (`"default";r=0;t=30`, or the older
    `limit=100, remaining=0, reset=30`)."""
    found = []
    remaining = header(headers, "ratelimit-remaining")
    if remaining and remaining.isdigit():
        reset = reset_time(header(headers, "ratelimit-reset"), "seconds", now=now)
        found.append((int(remaining), reset))
    field = header(headers, "ratelimit")
    if field:
        short = {"remaining": "r", "reset": "t"}
        values = {short.get(n, n): int(v) for n, v in _STRUCTURED.findall(field)}
        if "r" in values:
            reset = now + timedelta(seconds=values["t"]) if "t" in values else None
            found.append((values["r"], reset))
    return found


def tightening(
    headers: Mapping[str, str], *, status: int, policy: HeaderPolicy, now: datetime
) -> Tightening:
    """What a reply's headers and status say about the budget. Every source counts, and the
    longest wait wins (Nango's "most restrictive"): Retry-After (on a limited status or 503),
    the policy's remaining/reset pair (remaining 0: wait for the reset), the IETF headers
    likewise; a limited status with none of these waits the policy's default (GitHub's
    secondary limits), except a 403, which without its headers is a refusal, not a limit.
    No wait is longer than MAX_WAIT."""
    waits: list[tuple[datetime, str]] = []
    limited = status in policy.statuses
    if limited or status == 503:
        name = policy.retry_after_header or "retry-after"
        if (after := retry_after(header(headers, name), now=now)) is not None:
            waits.append((after, f"{status} with {name}"))
    budgets = []
    remaining = header(headers, policy.remaining_header)
    if remaining is not None and remaining.lstrip("-").isdigit():
        reset = reset_time(header(headers, policy.reset_header), policy.reset_kind, now=now)
        budgets.append((max(0, int(remaining)), reset, policy.remaining_header))
    budgets += [(left, reset, "RateLimit") for left, reset in _ietf(headers, now=now)]
    for left, reset, name in budgets:
        if left == 0 and reset is not None:
            waits.append((reset, f"{name} 0 until the reset"))
    if limited and not waits and status != 403 and policy.default_wait_seconds > 0:
        waits.append((now + timedelta(seconds=policy.default_wait_seconds), f"{status}"))
    lowest = min(budgets, key=lambda b: b[0], default=None)
    until, reason = max(waits, default=(None, ""))
    if until is not None:
        until = min(until, now + MAX_WAIT)
        if until <= now:
            until, reason = None, ""
    return Tightening(
        until=until,
        reason=reason,
        remaining=lowest[0] if lowest else None,
        reset=lowest[1] if lowest else None,
    )


def interval(rate: float) -> int:
    """A bucket's emission interval in microseconds (at least one)."""
    return max(1, round(1_000_000 / rate))


def granted(*, tat: int, now: int, period: int, burst: int, want: int = 1) -> int:
    """How many of `want` requests GCRA grants at `now` (Unix µs) to a bucket whose theoretical
    arrival time is `tat`: it grants while max(tat, now) + period <= now + burst·period,
    moving tat on by `period` for each. buckets.take's UPDATE says the same in SQL."""
    start = max(tat, now)
    return max(0, min(want, (now + burst * period - start) // period))


def next_grant(*, tat: int, period: int, burst: int, blocked_until: int) -> int:
    """When (Unix µs) the next request would be granted: the reset the vendor said, and the
    time from which max(tat, t) + period <= t + burst·period."""
    return max(blocked_until, tat - (burst - 1) * period)


# --- Circuits ----------------------------------------------------------------------------------


CLOSED, OPEN, HALF_OPEN, ISOLATED = "closed", "open", "half_open", "isolated"


@dataclass(frozen=True)
class CircuitPolicy:
    """resilience4j's time-based breaker with Polly's growing break (BreakDurationGenerator)
    and isolation, shared by every process through its row."""

    window: timedelta = timedelta(seconds=60)  # outcomes count within one such window
    minimum_calls: int = 5  # no verdict on fewer
    failure_rate: float = 0.5  # opens at or above this share of failures...
    slow_rate: float = 1.0  # ...or of slow calls
    # ...and the window has lasted this long: failing for a while, not a burst of retries.
    sustained: timedelta = timedelta(0)
    open_for: timedelta = timedelta(seconds=30)  # the first trip; each further doubles it
    max_open_for: timedelta = timedelta(minutes=30)
    permits: int = 3  # half-open trial calls; all must succeed to close
    # A half-open trial whose permits have not come back (a caller died holding one) hands
    # them out again after this long: resilience4j's "stuck in half open" (r4j#903).
    permit_timeout: timedelta = timedelta(seconds=60)
    # A caller without a permit while the trial runs comes back after this long.
    trial_wait: timedelta = timedelta(seconds=5)
    # Closed for this long since the last trip: the next trip starts over at open_for.
    forget_trips_after: timedelta = timedelta(hours=1)
    # An isolated circuit's callers come back this often to see whether it was closed.
    isolated_wait: timedelta = timedelta(minutes=5)


POLICY = CircuitPolicy()


@dataclass(frozen=True)
class CircuitState:
    state: str = CLOSED
    window_start: datetime | None = None
    calls: int = 0
    failures: int = 0
    slow: int = 0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    closed_at: datetime | None = None
    trips: int = 0
    permits_left: int = 0
    permits_given_at: datetime | None = None
    reason: str = ""


def open_duration(trips: int, policy: CircuitPolicy = POLICY) -> timedelta:
    """The break of the n-th trip in a row: open_for, doubled each time, capped."""
    return min(policy.max_open_for, policy.open_for * 2 ** max(0, trips - 1))


def permit(
    circuit: CircuitState, *, now: datetime, policy: CircuitPolicy = POLICY
) -> tuple[datetime | None, CircuitState]:
    """May a call go now? (None, state) to go, with the state after (a permit taken), or
    (the time to come back, state)."""
    if circuit.state == CLOSED:
        return None, circuit
    if circuit.state == ISOLATED:
        return now + policy.isolated_wait, circuit
    if circuit.state == OPEN:
        if circuit.open_until is not None and now < circuit.open_until:
            return circuit.open_until, circuit
        circuit = _trial(circuit, now=now, policy=policy)
    given = circuit.permits_given_at
    if circuit.permits_left == 0 and given is not None and now - given >= policy.permit_timeout:
        circuit = _trial(circuit, now=now, policy=policy)  # the last ones never came back
    if circuit.permits_left > 0:
        return None, replace(circuit, permits_left=circuit.permits_left - 1)
    return now + policy.trial_wait, circuit


def _trial(circuit: CircuitState, *, now: datetime, policy: CircuitPolicy) -> CircuitState:
    return replace(
        circuit,
        state=HALF_OPEN,
        calls=0,
        failures=0,
        slow=0,
        window_start=now,
        permits_left=policy.permits,
        permits_given_at=now,
    )


def record(
    circuit: CircuitState,
    *,
    ok: bool,
    slow: bool = False,
    count: int = 1,
    now: datetime,
    policy: CircuitPolicy = POLICY,
    reason: str = "",
) -> CircuitState:
    """Count `count` outcomes of one kind. Closed: opens when the window's failures (or slow
    calls) reach their rate over at least minimum_calls. Half-open: one failure opens it again
    for longer; `permits` successes close it. Open or isolated: a late outcome changes nothing."""
    if count <= 0 or circuit.state in (OPEN, ISOLATED):
        return circuit
    if circuit.state == HALF_OPEN:
        if not ok:
            return _trip(circuit, now=now, policy=policy, reason=reason or "a trial call failed")
        successes = circuit.calls + count
        if successes >= policy.permits:
            return replace(
                circuit,
                state=CLOSED,
                calls=0,
                failures=0,
                slow=0,
                window_start=now,
                closed_at=now,
                open_until=None,
                permits_left=0,
                permits_given_at=None,
                reason="",
            )
        return replace(circuit, calls=successes)
    start = circuit.window_start
    if start is None or now - start >= policy.window:
        circuit = replace(circuit, window_start=now, calls=0, failures=0, slow=0)
        start = now
    circuit = replace(
        circuit,
        calls=circuit.calls + count,
        failures=circuit.failures + (0 if ok else count),
        slow=circuit.slow + (count if slow else 0),
    )
    if circuit.calls < policy.minimum_calls or now - start < policy.sustained:
        return circuit
    if circuit.failures / circuit.calls >= policy.failure_rate:
        why = f"{circuit.failures} of {circuit.calls} calls failed"
        return _trip(circuit, now=now, policy=policy, reason=f"{why}: {reason}" if reason else why)
    if circuit.slow / circuit.calls >= policy.slow_rate:
        why = f"{circuit.slow} of {circuit.calls} calls were slow"
        return _trip(circuit, now=now, policy=policy, reason=why)
    return circuit


def _trip(
    circuit: CircuitState, *, now: datetime, policy: CircuitPolicy, reason: str
) -> CircuitState:
    quiet = circuit.closed_at is not None and now - circuit.closed_at >= policy.forget_trips_after
    trips = 1 if quiet or circuit.trips == 0 else circuit.trips + 1
    return replace(
        circuit,
        state=OPEN,
        trips=trips,
        opened_at=now,
        open_until=now + open_duration(trips, policy),
        calls=0,
        failures=0,
        slow=0,
        permits_left=0,
        permits_given_at=None,
        reason=reason[:500],
    )


def trip(
    circuit: CircuitState, *, now: datetime, reason: str, policy: CircuitPolicy = POLICY
) -> CircuitState:
    """Opened by a verdict from outside its own counts (the health worker found the vendor
    down): as a trip of its own, unless it is open already or isolated."""
    if circuit.state in (OPEN, ISOLATED):
        return circuit
    return _trip(circuit, now=now, policy=policy, reason=reason)


def isolate(circuit: CircuitState, *, now: datetime, reason: str = "") -> CircuitState:
    """Held open by an operator (Polly's Isolate) until closed by one."""
    return replace(
        circuit,
        state=ISOLATED,
        opened_at=now,
        open_until=None,
        permits_left=0,
        permits_given_at=None,
        reason=(reason or "isolated by an operator")[:500],
    )


def close(circuit: CircuitState, *, now: datetime) -> CircuitState:
    """Closed by an operator: a fresh window, and the trips forgotten."""
    return replace(
        circuit,
        state=CLOSED,
        window_start=now,
        calls=0,
        failures=0,
        slow=0,
        open_until=None,
        closed_at=now,
        trips=0,
        permits_left=0,
        permits_given_at=None,
        reason="",
    )
