"""`since` as operators and API clients write it (core.since): every value is a time in UTC or
a ValueError that says why, never an OverflowError (a 500 on /api/traces and on recover)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import services
from core.since import parse_since
from integrations.models import WebhookSubscription

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", datetime(2026, 1, 31, 11, 30, tzinfo=UTC)),
        ("2w", datetime(2026, 1, 17, 12, 0, tzinfo=UTC)),
        ("2025-01-31T14:00:00Z", datetime(2025, 1, 31, 14, 0, tzinfo=UTC)),
        ("2025-01-31T16:00:00+02:00", datetime(2025, 1, 31, 14, 0, tzinfo=UTC)),
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),  # naive: the server's time zone
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        (f"{NOW.toordinal() - 1}d", datetime(1, 1, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_it_reads_a_duration_or_an_iso_time_as_utc(value, expected):
    since = parse_since(value, now=NOW)

    assert since == expected and since.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("99999999999d", "goes back before the year 1"),
        (f"{NOW.toordinal()}d", "goes back before the year 1"),  # one day before it
        ("9" * 5000 + "m", "goes back before the year 1"),
        ("9999-12-31T23:59:59-14:00", "is outside the calendar"),
        ("0001-01-01T00:00:00+14:00", "is outside the calendar"),
        ("yesterday", "is neither an ISO datetime"),
        ("2h\x00", "is neither an ISO datetime"),
    ],
)
def test_it_says_why_a_since_is_not_one(value, says):
    with pytest.raises(ValueError, match=says):
        parse_since(value, now=NOW)


@pytest.mark.django_db
def test_it_refuses_a_recover_since_before_the_calendar(client, tenant):
    key = services.issue_api_key(tenant=tenant)
    subscription = WebhookSubscription.objects.create(
        tenant=tenant, url="https://127.0.0.1/hooks", event_types=["*"]
    )

    response = client.post(
        f"/api/webhooks/subscriptions/{subscription.pk}/recover?since=99999999999d",
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 400
    assert "goes back before the year 1" in response.json()["details"]["since"][0]
