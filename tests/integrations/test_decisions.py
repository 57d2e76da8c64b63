"""The webhooks domain's decisions (integrations.webhooks.decisions): what a receiver's reply
means, as plain values, with no database and no clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import outbound
from core.runtime.registry import RetryPolicy
from integrations.webhooks import decisions

NOW = datetime(2026, 12, 2, 6, 33, 16, tzinfo=UTC)


def reply(status: int, **headers: str) -> outbound.Reply:
    return outbound.Reply(status=status, headers=headers, body=b"", seconds=0.1, finished=NOW)


def decide(answer, *, failing_since=None, failing_too_long=False) -> decisions.Outcome:
    return decisions.outcome(
        answer,
        failing_since=failing_since,
        failing_too_long=failing_too_long,
        now=NOW,
        retry_cap=3600,
        next_backoff=60,
    )


@pytest.mark.parametrize("status", [200, 202, 299])
def test_it_counts_any_2xx_as_delivered(status):
    assert decide(reply(status)).delivered


def test_it_retries_a_server_error_after_the_workers_backoff():
    decided = decide(reply(500))

    assert (decided.failure, decided.permanent, decided.retry_after, decided.disable) == (
        "the endpoint answered 500", False, None, "",
    )  # fmt: skip


def test_it_retries_a_connection_failure():
    decided = decide(TimeoutError("read timed out"))

    assert (decided.failure, decided.permanent) == ("TimeoutError: read timed out", False)


def test_it_waits_as_long_as_retry_after_says_in_seconds_or_as_a_date_up_to_the_cap():
    in_a_minute = (NOW + timedelta(minutes=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert decide(reply(429, **{"Retry-After": "120"})).retry_after == 120
    assert decide(reply(503, **{"retry-after": in_a_minute})).retry_after == 60
    assert decide(reply(503, **{"Retry-After": "86400"})).retry_after == 3600
    assert decide(reply(500, **{"Retry-After": "120"})).retry_after is None  # 429 and 503 only
    assert decide(reply(429, **{"Retry-After": "soon"})).retry_after is None


def test_a_429_is_a_wait_with_or_without_retry_after():
    assert decide(reply(429, **{"Retry-After": "5"})).wait
    assert decide(reply(429)).wait
    bare = decide(reply(429))
    assert (bare.failure, bare.permanent, bare.retry_after) == (
        "the endpoint answered 429", False, None,
    )  # fmt: skip


def test_a_503_is_a_wait_only_when_its_retry_after_is_longer_than_the_next_backoff():
    assert decide(reply(503, **{"Retry-After": "61"})).wait  # the next backoff is at most 60 s
    assert not decide(reply(503, **{"Retry-After": "60"})).wait
    assert not decide(reply(503)).wait
    assert not decide(reply(500, **{"Retry-After": "600"})).wait


def test_a_wait_is_no_failure_of_a_subscription_failing_too_long():
    since = NOW - timedelta(days=5)

    decided = decide(reply(429), failing_since=since, failing_too_long=True)

    assert decided.wait and not decided.permanent and not decided.disable


def test_a_bare_429_waits_the_next_backoff_then_as_long_as_waited_so_far():
    waits, waited = [], 0.0
    for _ in range(5):
        wait = decisions.wait_seconds(said=None, waited=waited, floor=60, cap=600)
        waits.append(wait)
        waited += wait

    assert waits == [60, 60, 120, 240, 480]
    assert decisions.wait_seconds(said=None, waited=5000, floor=60, cap=600) == 600
    assert decisions.wait_seconds(said=30, waited=5000, floor=60, cap=600) == 30
    assert decisions.wait_seconds(said=0, waited=0, floor=60, cap=600) == 1  # never none


def test_it_bounds_a_rounds_waiting_by_the_retry_schedules_span():
    policy = RetryPolicy(max_attempts=8, base_seconds=60, cap_seconds=6 * 3600)

    assert decisions.retry_span(policy) == 60 * (1 + 2 + 4 + 8 + 16 + 32 + 64)
    assert not decisions.waited_too_long(waited=7000, wait=620, limit=7620)
    assert decisions.waited_too_long(waited=7000, wait=621, limit=7620)


def test_it_gives_up_on_a_refused_destination_without_disabling():
    decided = decide(outbound.BlockedDestination("127.0.0.1 is a loopback address"))

    assert decided.permanent and not decided.disable
    assert decided.failure == "refused to connect: 127.0.0.1 is a loopback address"


def test_it_disables_a_subscription_whose_endpoint_is_gone():
    decided = decide(reply(410))

    assert decided.permanent and decided.disable == "the endpoint answered 410 Gone"


def test_it_disables_a_subscription_failing_for_too_long():
    since = NOW - timedelta(days=5)

    decided = decide(reply(500), failing_since=since, failing_too_long=True)

    assert decided.permanent
    assert decided.disable == f"no successful delivery since {since.isoformat()}"
    assert decided.failure.startswith("the endpoint answered 500; no successful delivery since")


def test_it_derives_the_same_ids_from_the_same_subscription_and_event():
    subscription, event = uuid.uuid4(), uuid.uuid4()

    assert decisions.delivery_id(subscription, event) == decisions.delivery_id(subscription, event)
    assert decisions.delivery_id(subscription, event) != decisions.delivery_id(event, subscription)
    assert decisions.queued_event_id(event) != decisions.delivered_event_id(event, 1)


def test_it_does_not_tell_a_subscription_about_its_own_failures():
    subscription = uuid.uuid4()

    assert decisions.is_about(subscription, {"subscriptionId": str(subscription)})
    assert not decisions.is_about(subscription, {"subscriptionId": str(uuid.uuid4())})
