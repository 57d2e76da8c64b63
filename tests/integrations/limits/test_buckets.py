"""Rate buckets: GCRA in one conditional UPDATE, shared by processes, tightened by vendors'
headers. On PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from integrations.limits import buckets, decisions
from integrations.limits.models import RateBucket
from tests.core.test_processes import ROOT, database_url

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def key():
    # A key of its own per test: buckets are written on a connection that commits at once.
    return f"connection:{uuid.uuid4()}"


@pytest.mark.django_db
def test_it_grants_exactly_the_burst_at_once_then_the_rate(key):
    grants = [buckets.acquire(key=key, rate=2, burst=5, now=T0) for _ in range(6)]

    assert grants[:5] == [None] * 5
    assert grants[5] == at(0.5)  # the next one comes at 1/rate
    assert buckets.acquire(key=key, rate=2, burst=5, now=at(0.49)) == at(0.5)
    assert buckets.acquire(key=key, rate=2, burst=5, now=at(0.5)) is None
    assert buckets.acquire(key=key, rate=2, burst=5, now=at(0.5)) == at(1.0)
    # Over ten seconds, twenty more: the rate, never more.
    granted = sum(
        buckets.acquire(key=key, rate=2, burst=5, now=at(0.5 + i * 0.1)) is None
        for i in range(1, 101)
    )
    assert granted == 20
    assert RateBucket.objects.get(key=key).grants == 5 + 1 + 20


@pytest.mark.django_db
def test_it_fills_up_to_the_burst_while_quiet_and_no_further(key):
    for _ in range(3):
        assert buckets.acquire(key=key, rate=1, burst=3, now=T0) is None
    # An hour of quiet is worth the burst, not 3,600 requests.
    granted = [buckets.acquire(key=key, rate=1, burst=3, now=at(3600)) for _ in range(4)]
    assert granted[:3] == [None] * 3 and granted[3] == at(3601)


@pytest.mark.django_db
def test_it_takes_as_many_as_it_allows_of_a_batch(key):
    assert buckets.take(key=key, rate=10, burst=4, want=3, now=T0) == (3, None)
    assert buckets.take(key=key, rate=10, burst=4, want=3, now=T0) == (1, at(0.1))
    assert buckets.take(key=key, rate=10, burst=4, want=3, now=T0) == (0, at(0.1))
    assert buckets.take(key=key, rate=10, burst=4, want=3, now=at(0.25)) == (2, at(0.3))


@pytest.mark.django_db
def test_it_takes_back_requests_taken_ahead_and_not_made(key):
    ahead = buckets.reserve(key=key, rate=10, burst=4, want=4, now=T0)
    assert (ahead.count, ahead.retry) == (4, None)

    assert buckets.give_back(key=key, rate=10, count=3, tat=ahead.tat)

    assert RateBucket.objects.get(key=key).grants == 1
    assert buckets.take(key=key, rate=10, burst=4, want=4, now=T0) == (3, at(0.1))


@pytest.mark.django_db
def test_it_keeps_requests_taken_ahead_spent_once_another_has_taken_since(key):
    ahead = buckets.reserve(key=key, rate=10, burst=4, want=2, now=T0)
    assert buckets.take(key=key, rate=10, burst=4, want=1, now=T0) == (1, None)

    # Moving the bucket's time back now would hand out requests the other take made.
    assert not buckets.give_back(key=key, rate=10, count=2, tat=ahead.tat)

    assert RateBucket.objects.get(key=key).grants == 3
    assert buckets.take(key=key, rate=10, burst=4, want=4, now=T0) == (1, at(0.1))


@pytest.mark.django_db
def test_it_keeps_requests_taken_ahead_spent_once_a_vendor_tightened_the_bucket(key):
    ahead = buckets.reserve(key=key, rate=10, burst=10, want=5, now=T0)
    headers = {"x-ratelimit-remaining": "2", "x-ratelimit-reset": str(int(at(3600).timestamp()))}
    buckets.observe(key=key, headers=headers, status=200, policy=decisions.GITHUB, now=T0)

    assert not buckets.give_back(key=key, rate=10, count=4, tat=ahead.tat)

    assert buckets.take(key=key, rate=10, burst=10, want=10, now=T0)[0] == 2


@pytest.mark.django_db
def test_it_applies_a_changed_policy_at_once(key):
    for _ in range(2):
        buckets.acquire(key=key, rate=1, burst=2, now=T0)
    assert buckets.acquire(key=key, rate=1, burst=2, now=T0) == at(1)
    assert buckets.acquire(key=key, rate=1, burst=10, now=T0) is None  # the vendor raised it


@pytest.mark.django_db
def test_it_refuses_a_nonsense_policy(key):
    with pytest.raises(ValueError):
        buckets.acquire(key=key, rate=0, burst=1)


@pytest.mark.django_db(transaction=True)
def test_it_never_grants_more_than_allowed_to_processes_sharing_a_bucket(tmp_path):
    key, rate, burst, seconds = f"host:{uuid.uuid4()}", 40.0, 5, 1.5
    started = timezone.now()
    argv = [sys.executable, "-m", "tests.integrations.limits.hammer", key, str(rate), str(burst)]
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    hammers = [
        subprocess.Popen(
            [*argv, str(seconds)], cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = [json.loads(h.communicate(timeout=60)[0]) for h in hammers]
    elapsed = (timezone.now() - started).total_seconds()

    granted = sum(r["granted"] for r in results)
    assert all(r["tries"] > r["granted"] > 0 for r in results)  # each hit the limit, and got some
    assert granted == RateBucket.objects.get(key=key).grants
    assert granted <= burst + rate * elapsed
    assert granted >= rate * seconds * 0.5  # and the budget was used, not wasted


# --- The vendor's word -------------------------------------------------------------------------


GITHUB = decisions.GITHUB


@pytest.mark.django_db
def test_it_waits_for_githubs_reset_when_nothing_remains(key):
    buckets.acquire(key=key, rate=10, burst=10, now=T0)
    reset = int(at(120).timestamp())
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}

    assert buckets.observe(key=key, headers=headers, status=403, policy=GITHUB, now=T0) == at(120)
    assert buckets.acquire(key=key, rate=10, burst=10, now=at(119)) == at(120)
    assert buckets.acquire(key=key, rate=10, burst=10, now=at(120)) is None


@pytest.mark.django_db
def test_it_lets_the_longest_wait_win_and_never_shortens_one(key):
    buckets.acquire(key=key, rate=10, burst=10, now=T0)
    headers = {
        "retry-after": "30",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(at(90).timestamp())),
    }
    assert buckets.observe(key=key, headers=headers, status=429, policy=GITHUB, now=T0) == at(90)
    # A later reply that says less does not shorten it.
    buckets.observe(key=key, headers={"Retry-After": "5"}, status=429, policy=GITHUB, now=T0)
    assert buckets.acquire(key=key, rate=10, burst=10, now=at(60)) == at(90)


@pytest.mark.django_db
def test_it_honours_retry_after_as_an_http_date(key):
    buckets.acquire(key=key, rate=10, burst=10, now=T0)
    headers = {"Retry-After": format_datetime(at(45), usegmt=True)}
    assert buckets.observe(key=key, headers=headers, status=503, policy=decisions.WEBHOOK, now=T0)
    assert buckets.acquire(key=key, rate=10, burst=10, now=at(44)) == at(45)


@pytest.mark.django_db
def test_it_spends_no_more_than_the_vendor_says_remain(key):
    buckets.acquire(key=key, rate=1, burst=10, now=T0)
    headers = {"x-ratelimit-remaining": "2", "x-ratelimit-reset": str(int(at(3600).timestamp()))}
    assert buckets.observe(key=key, headers=headers, status=200, policy=GITHUB, now=T0) is None

    grants = [buckets.acquire(key=key, rate=1, burst=10, now=T0) for _ in range(3)]
    assert grants[:2] == [None, None] and grants[2] is not None


@pytest.mark.parametrize(
    ("status", "headers", "wait", "remaining"),
    [
        (200, {"x-ratelimit-remaining": "4999"}, None, 4999),
        (403, {}, None, None),  # a refusal, not a limit
        (403, {"retry-after": "60"}, 60, None),  # GitHub's secondary limit
        (429, {}, 60, None),  # no header: at least one minute
        (429, {"retry-after": "0"}, None, None),
        (200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "30"}, 30, 0),  # IETF draft
        (429, {"RateLimit": '"default";r=0;t=15'}, 15, 0),  # IETF structured
        (429, {"RateLimit": "limit=100, remaining=0, reset=20"}, 20, 0),
        (429, {"retry-after": "Wed, 02 Dec 2026 12:00:40 GMT", "ratelimit": "r=0;t=10"}, 40, 0),
        (429, {"retry-after": "garbage"}, 60, None),
        (429, {"retry-after": "99999999"}, 86400, None),  # capped: a day at most
    ],
)
def test_it_reads_what_a_reply_says_about_the_budget(status, headers, wait, remaining):
    said = decisions.tightening(headers, status=status, policy=GITHUB, now=T0)

    assert said.until == (at(wait) if wait is not None else None)
    assert said.remaining == remaining


def test_it_reads_a_webhook_receivers_retry_after_only_when_it_is_limited():
    policy = decisions.WEBHOOK
    assert (
        decisions.tightening({"Retry-After": "9"}, status=500, policy=policy, now=T0).until is None
    )
    assert decisions.tightening(
        {"Retry-After": "9"}, status=503, policy=policy, now=T0
    ).until == at(9)
    assert decisions.tightening({}, status=429, policy=policy, now=T0).until is None


def test_it_computes_gcra_the_same_in_python():
    period = decisions.interval(4)  # 250 ms
    assert decisions.granted(tat=0, now=10**12, period=period, burst=3, want=5) == 3
    tat = 10**12 + 3 * period
    assert decisions.granted(tat=tat, now=10**12, period=period, burst=3) == 0
    assert decisions.next_grant(tat=tat, period=period, burst=3, blocked_until=0) == 10**12 + period
