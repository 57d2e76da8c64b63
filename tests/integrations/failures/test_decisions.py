"""The retry decisions, pure: backoff per policy, poison, classification, grouping, escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integrations.failures import contract, decisions
from integrations.failures.decisions import Policy

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def delays(policy: Policy, count: int) -> list[float]:
    return [decisions.next_delay(policy, attempts=n).total_seconds() for n in range(1, count + 1)]


def test_it_backs_off_by_the_coefficient_up_to_the_maximum_interval():
    policy = Policy(initial_interval=60, backoff_coefficient=2, maximum_interval=600)

    assert delays(policy, 6) == [60, 120, 240, 480, 600, 600]


def test_it_caps_at_a_hundred_times_the_initial_interval_by_default_as_temporal_does():
    policy = Policy(initial_interval=1, backoff_coefficient=10)

    assert delays(policy, 4) == [1, 10, 100, 100]


def test_it_waits_the_same_with_a_coefficient_of_one_and_survives_huge_exponents():
    assert delays(Policy(initial_interval=30, backoff_coefficient=1), 3) == [30, 30, 30]
    huge = Policy(initial_interval=5, backoff_coefficient=1e6, maximum_interval=3600)
    assert decisions.next_delay(huge, attempts=10_000).total_seconds() == 3600


def test_it_schedules_the_next_attempt_after_the_policys_delay():
    policy = Policy(initial_interval=60, maximum_attempts=5)

    decision = decisions.decide(policy, kind="sync", attempts=2, error_class="transient", now=NOW)

    assert decision.retry and decision.at == NOW + timedelta(seconds=120)


def test_it_honours_a_vendors_wait_only_when_it_is_longer():
    policy = Policy(initial_interval=60, maximum_attempts=5)

    longer = decisions.decide(
        policy, kind="sync", attempts=1, error_class="rate_limited", now=NOW, retry_after=900
    )
    shorter = decisions.decide(
        policy, kind="sync", attempts=1, error_class="rate_limited", now=NOW, retry_after=5
    )

    assert longer.at == NOW + timedelta(seconds=900)
    assert shorter.at == NOW + timedelta(seconds=60)


def test_it_poisons_a_non_retryable_class_at_once():
    policy = Policy(initial_interval=60, maximum_attempts=10, non_retryable=frozenset({"auth"}))

    decision = decisions.decide(policy, kind="sync", attempts=1, error_class="auth", now=NOW)

    assert not decision.retry and decision.at is None
    assert "auth errors are not retryable" in decision.reason


def test_it_poisons_at_the_cap_and_never_with_zero_meaning_unlimited():
    capped = Policy(initial_interval=60, maximum_attempts=3)
    unlimited = Policy(initial_interval=60, maximum_attempts=0)

    assert decisions.decide(capped, kind="sync", attempts=2, error_class="transient", now=NOW).retry
    at_cap = decisions.decide(capped, kind="sync", attempts=3, error_class="transient", now=NOW)
    assert not at_cap.retry and "gave up after 3 of 3 attempts" in at_cap.reason
    assert decisions.decide(
        unlimited, kind="sync", attempts=1000, error_class="transient", now=NOW
    ).retry


def test_it_says_when_the_next_attempt_comes_as_a_person_reads_a_wait():
    policy = Policy(initial_interval=120, maximum_attempts=5)

    decision = decisions.decide(policy, kind="sync", attempts=1, error_class="transient", now=NOW)

    assert decision.reason == "attempt 2 in 2 min 0 s"


def test_it_never_retries_a_webhook_failure_whatever_its_policy():
    generous = Policy(initial_interval=60, maximum_attempts=0)

    decision = decisions.decide(
        generous, kind="webhook", attempts=8, error_class="transient", now=NOW
    )

    assert not decision.retry and "recovered by an operator" in decision.reason


def test_it_prefers_a_database_override_then_the_code_default_exact_before_any_provider():
    mine = Policy(initial_interval=7)
    every = Policy(initial_interval=9)

    def initial(overrides, provider, kind="sync"):
        return decisions.resolve_policy(overrides, provider=provider, kind=kind).initial_interval

    assert initial({("github", "sync"): mine, ("", "sync"): every}, "github") == 7
    assert initial({("", "sync"): every}, "github") == 9
    assert initial({}, "github") == 120  # the code's GitHub default
    assert initial({}, "jira") == 60  # the code's default for every provider
    assert initial({("github", "sync"): mine}, "jira", "rotation") == 300


@pytest.mark.parametrize(
    ("hint", "status", "error", "expected"),
    [
        ("auth", 500, "", "auth"),  # the producer's word wins
        ("", 429, "", "rate_limited"),
        ("", 403, "You have exceeded a secondary rate limit", "rate_limited"),
        ("", 403, "Resource not accessible by integration", "auth"),
        ("", 401, "Bad credentials", "auth"),
        ("", 503, "", "transient"),
        ("", 408, "", "transient"),
        ("", 404, "Not Found", "permanent"),
        ("", 422, "", "permanent"),
        ("", None, "token expired", "auth"),
        ("", None, "Too Many Requests", "rate_limited"),
        ("", None, "ConnectionError: connection reset", "transient"),
        ("bogus", None, "", "transient"),
    ],
)
def test_it_classifies_an_error(hint, status, error, expected):
    assert decisions.classify(hint=hint, status=status, error=error) == expected


def test_it_groups_webhook_failures_per_subscription_and_reply_status():
    def key(subject, status, kind="webhook"):
        return decisions.group_key(
            kind=kind, subject_id=subject, error_class="transient", status=status
        )

    assert key("s-1", 500) == key("s-1", 500)
    assert key("s-1", 500) != key("s-1", 404)
    assert key("s-1", 500) != key("s-2", 500)
    assert key("c-1", 500, "sync") == key("c-1", 404, "sync") == "sync:c-1"


def test_it_escalates_in_the_shape_the_incident_worker_reads():
    from observability.incidents.decisions import signal_of

    escalated = decisions.Escalated(
        failure_id="f-1",
        kind="sync",
        provider="github",
        subject_id="c-1",
        subject="acme/widgets",
        error_class="auth",
        error="401 Bad credentials",
        attempts=1,
        group_key="sync:c-1",
        first_seen=NOW - timedelta(minutes=5),
        reason="auth errors are not retryable",
    )
    data = decisions.alert_data(escalated, now=NOW)

    signal = signal_of("AlertTriggered", __import__("uuid").uuid4(), NOW, data)

    assert signal.trigger_key == "integration:f-1"
    assert signal.group_key == "integrations:sync:c-1"
    assert signal.severity == "critical"
    assert signal.name == "Sync of connection acme/widgets failed"
    assert signal.started_at == NOW - timedelta(minutes=5)
    assert "401 Bad credentials" in signal.reason


def test_it_refuses_a_report_without_what_its_kind_needs():
    with pytest.raises(ValueError, match="failureId"):
        contract.parse({"kind": "sync", "connectionId": "c"})
    with pytest.raises(ValueError, match="kind"):
        contract.parse({"failureId": "f", "kind": "nope"})
    with pytest.raises(ValueError, match="rotationToken"):
        contract.parse({"failureId": "f", "kind": "rotation", "credentialId": "k"})
    with pytest.raises(ValueError, match="attempt"):
        contract.parse({"failureId": "f", "kind": "outage", "connectionId": "c", "attempt": -1})


def test_it_builds_a_report_that_it_reads_back():
    data = contract.failed_data(
        failure_id="f-1",
        kind="rotation",
        error="verification failed: 401",
        status=401,
        credentialId="k-1",
        rotationToken="t-1",
        provider="github",
    )

    report = contract.parse(data)

    assert (report.subject_id, report.error_class, report.attempt) == ("k-1", "auth", 0)
    assert report.detail == {"credentialId": "k-1", "rotationToken": "t-1"}
