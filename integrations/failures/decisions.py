"""The retry decisions, pure: plain values in, plain values out, no database and no clock.

The handler (a reported failure, the sweep), the operators' services and the admin all decide
with these: which class an error is, which policy applies, how long to wait before the next
attempt, whether to retry at all or to poison, and what an escalation says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.formats import format_duration

KINDS = ("sync", "rotation", "outage", "webhook")
ERROR_CLASSES = ("transient", "rate_limited", "auth", "permanent")
TRANSIENT, RATE_LIMITED, AUTH, PERMANENT = ERROR_CLASSES
ANY_PROVIDER = ""


@dataclass(frozen=True)
class Policy:
    """Temporal's retry policy. `maximum_attempts` counts executions, the failed run included
    (0 = unlimited, 1 = no retry); `maximum_interval` None is 100 times the initial interval, as
    in Temporal. `attempt_timeout` is how long a retry may run before the sweep counts it as
    failed for want of an outcome (Temporal's start-to-close timeout): an outage's re-probe
    reports nothing while the vendor stays down, so its attempts end this way."""

    initial_interval: float
    backoff_coefficient: float = 2.0
    maximum_interval: float | None = None
    maximum_attempts: int = 0
    non_retryable: frozenset[str] = field(default_factory=frozenset)
    attempt_timeout: float = 3600.0

    def ceiling(self) -> float:
        if self.maximum_interval is not None:
            return self.maximum_interval
        return 100 * self.initial_interval

    def as_dict(self) -> dict[str, Any]:
        return {
            "initialInterval": self.initial_interval,
            "backoffCoefficient": self.backoff_coefficient,
            "maximumInterval": self.ceiling(),
            "maximumAttempts": self.maximum_attempts,
            "nonRetryableErrorClasses": sorted(self.non_retryable),
            "attemptTimeout": self.attempt_timeout,
        }


# The code defaults per (provider, kind); "" is every provider. A RetryPolicy row for the same
# (provider, kind) overrides one (see resolve_policy). Auth and permanent errors do not heal by
# waiting: a person must fix the credential or the configuration, so they poison at once.
DEFAULT_POLICIES: dict[tuple[str, str], Policy] = {
    # A sync resumes from its checkpoint: cheap to retry, for a few hours at most.
    (ANY_PROVIDER, "sync"): Policy(
        initial_interval=60,
        maximum_interval=3600,
        maximum_attempts=6,
        non_retryable=frozenset({AUTH, PERMANENT}),
        attempt_timeout=3600,
    ),
    # The rotation worker has tried four times already before it reports: a few more, slower.
    (ANY_PROVIDER, "rotation"): Policy(
        initial_interval=300,
        maximum_interval=3600,
        maximum_attempts=4,
        non_retryable=frozenset({AUTH, PERMANENT}),
        attempt_timeout=900,
    ),
    # An outage re-probes; an outage that outlasts the ladder (about two hours) escalates.
    (ANY_PROVIDER, "outage"): Policy(
        initial_interval=300,
        maximum_interval=3600,
        maximum_attempts=6,
        non_retryable=frozenset({AUTH, PERMANENT}),
        attempt_timeout=300,
    ),
    # A dead webhook delivery spent its eight attempts at WebhookDeliveryWorker: never retried
    # here, only grouped and escalated; an operator recovers it.
    (ANY_PROVIDER, "webhook"): Policy(
        initial_interval=60, maximum_attempts=1, non_retryable=frozenset(ERROR_CLASSES)
    ),
    # GitHub's secondary limits ask for "at least one minute", then exponential backoff, and
    # continuing "may result in the banning of your integration": start slower.
    ("github", "sync"): Policy(
        initial_interval=120,
        maximum_interval=3600,
        maximum_attempts=6,
        non_retryable=frozenset({AUTH, PERMANENT}),
        attempt_timeout=3600,
    ),
}


def resolve_policy(
    overrides: Mapping[tuple[str, str], Policy], *, provider: str, kind: str
) -> Policy:
    """The policy of a (provider, kind): an override of exactly it, an override of the kind for
    every provider, the code's default of it, the code's default of the kind."""
    for table in (overrides, DEFAULT_POLICIES):
        for key in ((provider, kind), (ANY_PROVIDER, kind)):
            if key in table:
                return table[key]
    return DEFAULT_POLICIES[(ANY_PROVIDER, "sync")]


def next_delay(policy: Policy, *, attempts: int) -> timedelta:
    """The wait after `attempts` failed executions: initial * coefficient^(attempts - 1),
    capped at the maximum interval (no jitter: the sweep's five-minute slots spread them)."""
    exponent = max(0, attempts - 1)
    try:
        seconds = policy.initial_interval * policy.backoff_coefficient**exponent
    except OverflowError:
        seconds = policy.ceiling()
    return timedelta(seconds=min(seconds, policy.ceiling()))


@dataclass(frozen=True)
class Decision:
    """What to do after a failed execution: retry at `at`, or poison (escalate) and stop."""

    retry: bool
    at: datetime | None
    reason: str


def should_retry(policy: Policy, *, kind: str, attempts: int, error_class: str) -> str:
    """Why not to retry, or "" to retry."""
    if kind == "webhook":
        return (
            f"a webhook delivery that spent its {attempts} attempts is recovered by an "
            "operator, never re-sent automatically"
        )
    if error_class in policy.non_retryable:
        return f"{error_class} errors are not retryable for {kind} failures"
    if policy.maximum_attempts and attempts >= policy.maximum_attempts:
        return f"gave up after {attempts} of {policy.maximum_attempts} attempts"
    return ""


def decide(
    policy: Policy,
    *,
    kind: str,
    attempts: int,
    error_class: str,
    now: datetime,
    retry_after: float | None = None,
) -> Decision:
    """After `attempts` failed executions: the next attempt's time, or poison. A vendor's own
    wait (Retry-After) is honoured when it is longer than the policy's (the longest wait
    wins), as Temporal's next_retry_delay overrides its policy."""
    if why := should_retry(policy, kind=kind, attempts=attempts, error_class=error_class):
        return Decision(retry=False, at=None, reason=why)
    delay = next_delay(policy, attempts=attempts)
    if retry_after is not None and retry_after > delay.total_seconds():
        delay = timedelta(seconds=retry_after)
    return Decision(
        retry=True,
        at=now + delay,
        reason=f"attempt {attempts + 1} in {format_duration(delay.total_seconds())}",
    )


_RATE_WORDS = re.compile(r"rate.?limit|too many requests|throttl|quota", re.I)
_AUTH_WORDS = re.compile(
    r"unauthori[sz]ed|forbidden|invalid.{0,20}(token|credential|key|grant)|"
    r"(token|credential|key).{0,20}(expired|revoked)|bad credentials|authenticat",
    re.I,
)
_PERMANENT_WORDS = re.compile(r"not found|no such|invalid|malformed|unsupported|refused", re.I)


def classify(*, hint: str = "", status: int | None = None, error: str = "") -> str:
    """The class of an error: the producer's own word when it is one of ours; else from the
    HTTP status (429 rate-limited; GitHub's secondary limit, a 403 that says so, too; 401
    and 403 auth; 408, 425 and 5xx transient; other 4xx permanent); else from the words of
    the error; else transient, which a retry can tell."""
    if hint in ERROR_CLASSES:
        return hint
    if status is not None:
        if status == 429 or (status == 403 and _RATE_WORDS.search(error)):
            return RATE_LIMITED
        if status in (401, 403, 407):
            return AUTH
        if status in (408, 425) or status >= 500:
            return TRANSIENT
        if 400 <= status < 500:
            return PERMANENT
    if _RATE_WORDS.search(error):
        return RATE_LIMITED
    if _AUTH_WORDS.search(error):
        return AUTH
    if _PERMANENT_WORDS.search(error):
        return PERMANENT
    return TRANSIENT


def group_key(*, kind: str, subject_id: str, error_class: str, status: int | None) -> str:
    """The key failures are grouped under for escalation: a webhook's per subscription and
    reply status (Hookdeck's aggregation on webhook_id and response_status), so that a
    receiver down for an hour is one escalation, not one per dead delivery; the others' per
    kind and subject."""
    if kind == "webhook":
        what = str(status) if status is not None else error_class
        return f"webhook:{subject_id}:{what}"
    return f"{kind}:{subject_id}"


WHAT = {
    "sync": "Sync of connection",
    "rotation": "Rotation of credential",
    "outage": "Outage of connection",
    "webhook": "Webhooks to subscription",
}


@dataclass(frozen=True)
class Escalated:
    """What an escalation says about its failure."""

    failure_id: str
    kind: str
    provider: str
    subject_id: str
    subject: str
    error_class: str
    error: str
    attempts: int
    group_key: str
    first_seen: datetime
    reason: str


def trigger_key(failure_id: str) -> str:
    return f"integration:{failure_id}"


def alert_data(e: Escalated, *, now: datetime) -> dict[str, Any]:
    """AlertTriggered's data for a poisoned failure, in the shape IncidentAnalysisWorker reads
    (observability.incidents.decisions.signal_of): a trigger key of its own, the failure's
    group key, a name, a severity, a reason and the window since it was first seen."""
    name = f"{WHAT.get(e.kind, e.kind)} {e.subject or e.subject_id} failed"
    # The service an incident names: the vendor's, which is what is down.
    service = e.provider or "integrations"
    labels = {
        "kind": e.kind,
        "provider": e.provider,
        "subjectId": e.subject_id,
        "errorClass": e.error_class,
        "service.name": service,
    }
    return {
        "triggerKey": trigger_key(e.failure_id),
        "groupKey": f"integrations:{e.group_key}",
        "ruleName": name[:200],
        "instanceKey": e.failure_id,
        "labels": labels,
        "service": service,
        "severity": "critical",
        "reason": f"{e.reason}: {e.error}"[:2000],
        "windowStart": min(e.first_seen, now).isoformat(),
        "windowEnd": now.isoformat(),
        "traceIds": [],
        "failureId": e.failure_id,
        "kind": e.kind,
        "provider": e.provider,
        "subjectId": e.subject_id,
        "errorClass": e.error_class,
        "attempts": e.attempts,
    }


def resolved_data(e: Escalated, *, now: datetime, why: str) -> dict[str, Any]:
    """AlertResolved's data when an escalated failure is resolved or ignored: the incident's
    trigger resolves with it."""
    return {**alert_data(e, now=now), "reason": why[:2000]}


def active_statuses() -> Iterable[str]:
    return ("open", "retrying", "poisoned", "acknowledged")
