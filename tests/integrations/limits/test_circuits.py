"""Circuits: closed, open on sustained failures, half-open with a few permits, a break that
grows with each trip (capped), isolated by an operator. The decisions alone, then the rows
every process shares."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from integrations.limits import circuits, decisions
from integrations.limits.decisions import (
    CLOSED,
    HALF_OPEN,
    ISOLATED,
    OPEN,
    POLICY,
    CircuitState,
)
from integrations.limits.models import Circuit

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fail(state: CircuitState, n: int, now: datetime) -> CircuitState:
    for _ in range(n):
        state = decisions.record(state, ok=False, now=now)
    return state


# --- The decisions -------------------------------------------------------------------------------


def test_it_opens_only_on_sustained_failures():
    state = fail(CircuitState(), POLICY.minimum_calls - 1, T0)
    assert state.state == CLOSED  # too few calls to judge

    state = decisions.record(state, ok=False, now=T0)
    assert (state.state, state.open_until, state.trips) == (OPEN, T0 + POLICY.open_for, 1)
    assert "5 of 5 calls failed" in state.reason


def test_it_stays_closed_below_the_failure_rate_and_forgets_an_old_window():
    state = decisions.record(CircuitState(), ok=True, count=6, now=T0)
    state = fail(state, 5, T0)  # 5 of 11: below half
    assert state.state == CLOSED
    state = fail(state, 4, at(61))  # a new window: 4 calls are too few
    assert (state.state, state.calls, state.failures) == (CLOSED, 4, 4)


def test_it_opens_when_every_call_is_slow():
    state = decisions.record(CircuitState(), ok=True, slow=True, count=5, now=T0)
    assert state.state == OPEN and "slow" in state.reason


def test_it_refuses_while_open_then_hands_out_a_few_permits():
    state = fail(CircuitState(), 5, T0)
    until, state = decisions.permit(state, now=at(10))
    assert until == T0 + POLICY.open_for

    given = []
    for _ in range(POLICY.permits + 1):
        until, state = decisions.permit(state, now=at(30))
        given.append(until)
    assert state.state == HALF_OPEN
    assert given == [None] * POLICY.permits + [at(30) + POLICY.trial_wait]


def test_it_closes_when_the_trial_calls_succeed():
    state = fail(CircuitState(), 5, T0)
    for _ in range(POLICY.permits):
        _, state = decisions.permit(state, now=at(30))
    for _ in range(POLICY.permits):
        state = decisions.record(state, ok=True, now=at(31))
    assert (state.state, state.closed_at, state.trips) == (CLOSED, at(31), 1)
    assert decisions.permit(state, now=at(31))[0] is None


def test_it_opens_again_for_longer_after_each_failed_trial_up_to_the_cap():
    state, now, breaks = fail(CircuitState(), 5, T0), T0, []
    for _ in range(8):
        breaks.append(state.open_until - state.opened_at)
        now = state.open_until
        _, state = decisions.permit(state, now=now)
        state = decisions.record(state, ok=False, now=now)
    assert [b.total_seconds() for b in breaks] == [30, 60, 120, 240, 480, 960, 1800, 1800]


def test_it_starts_over_after_a_quiet_spell():
    state = replace(fail(CircuitState(), 5, T0), trips=4)
    for _ in range(POLICY.permits):
        _, state = decisions.permit(state, now=state.open_until)
        state = decisions.record(state, ok=True, now=at(1000))
    assert fail(state, 5, at(1100)).trips == 5  # soon after: the break keeps growing
    assert fail(state, 5, at(1000 + 3601)).trips == 1  # an hour later: it starts over


def test_it_hands_out_permits_again_when_the_last_ones_never_came_back():
    state = fail(CircuitState(), 5, T0)
    for _ in range(POLICY.permits):
        _, state = decisions.permit(state, now=at(30))
    assert decisions.permit(state, now=at(89))[0] == at(89) + POLICY.trial_wait
    until, state = decisions.permit(state, now=at(90))  # resilience4j's "stuck in half open"
    assert until is None and state.permits_left == POLICY.permits - 1


def test_it_holds_an_isolated_circuit_open_until_closed():
    state = decisions.isolate(CircuitState(), now=T0, reason="vendor maintenance")
    assert decisions.permit(state, now=at(3600))[0] == at(3600) + POLICY.isolated_wait
    assert decisions.record(state, ok=True, count=100, now=at(1)) == state
    closed = decisions.close(state, now=at(2))
    assert (closed.state, closed.trips, closed.reason) == (CLOSED, 0, "")


# --- The rows ------------------------------------------------------------------------------------


@pytest.fixture
def key():
    return f"connection:{uuid.uuid4()}"


@pytest.mark.django_db
def test_it_lets_calls_through_a_circuit_it_has_never_seen(key):
    assert circuits.permit(key=key, now=T0) is None
    assert not Circuit.objects.filter(key=key).exists()  # a read, no row


@pytest.mark.django_db
def test_it_shares_a_circuit_through_its_row(key):
    for _ in range(4):
        assert circuits.record(key=key, ok=False, now=T0) == CLOSED
    assert circuits.record(key=key, ok=False, now=T0, reason="503") == OPEN

    row = Circuit.objects.get(key=key)
    assert (row.state, row.trips, row.open_until) == (OPEN, 1, T0 + POLICY.open_for)
    assert circuits.permit(key=key, now=at(5)) == T0 + POLICY.open_for
    assert [circuits.permit(key=key, now=at(30)) for _ in range(4)] == [None] * 3 + [
        at(30) + POLICY.trial_wait
    ]
    assert Circuit.objects.get(key=key).state == HALF_OPEN
    assert circuits.record(key=key, ok=True, count=3, now=at(31)) == CLOSED


@pytest.mark.django_db
def test_it_isolates_and_closes_a_circuit_for_an_operator(key, tenant):
    isolated = circuits.isolate(key, reason="vendor maintenance", tenant_id=tenant.pk)
    assert isolated.state == ISOLATED and isolated.tenant_id == tenant.pk
    assert circuits.permit(key=key) is not None

    assert circuits.close(key).state == CLOSED
    assert circuits.permit(key=key) is None
