"""Every paged list of the API (core.api.Pager): its cursors page, and a cursor it did not give
is a 400, never a query. A tampered position (text where the ordering field is a number, a NUL,
a time outside the calendar) used to reach the database and answer 500."""

from __future__ import annotations

import uuid
from base64 import b64encode
from datetime import timedelta
from urllib.parse import quote, urlencode

import pytest
from django.utils import timezone

from core import services
from integrations.models import WebhookDelivery, WebhookSubscription
from tests.observability.test_metric_aggregation import MINUTE, T0, add, at, run
from tests.observability.test_query_api import store

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant)


@pytest.fixture
def subscription(tenant) -> WebhookSubscription:
    return WebhookSubscription.objects.create(
        tenant=tenant, url="https://127.0.0.1/hooks", event_types=["*"]
    )


@pytest.fixture
def two_of_each(tenant, subscription):
    """Two rows on every list, so that a page of one has a next."""
    store(tenant, "a" * 32, ("1" * 16, "", "GET /", "web", False))
    store(tenant, "b" * 32, ("2" * 16, "", "GET /", "web", False), start_ns=at(0))
    for minute in (0, 1):
        add(tenant, "queue.size", at(minute, seconds=10), value=1.0)
        run(tenant, "1m", T0 + minute * MINUTE)
    WebhookSubscription.objects.create(tenant=tenant, url="https://127.0.0.1/b", event_types=["*"])
    for age in (1, 2):
        WebhookDelivery.objects.create(
            tenant=tenant,
            subscription=subscription,
            event_id=uuid.uuid4(),
            event_type="DeploymentPromoted",
            payload="{}",
            trace_id="a" * 32,
            span_id="1" * 16,
            created=timezone.now() - timedelta(seconds=age),
        )


def lists(subscription) -> list[str]:
    return [
        "/api/traces",
        "/api/metrics/series",
        "/api/webhooks/subscriptions",
        f"/api/webhooks/subscriptions/{subscription.pk}/deliveries",
    ]


def get(client, key, url: str):
    return client.get(url, headers={"Authorization": f"Bearer {key}"})


def cursor(**tokens: str) -> str:
    """A cursor as DRF encodes one: base64 of its query string (p: position, o, r)."""
    return quote(b64encode(urlencode(tokens).encode()).decode())


def test_it_pages_every_list_with_the_cursors_it_gives(client, key, subscription, two_of_each):
    for url in lists(subscription):
        first = get(client, key, f"{url}?limit=1").json()
        second = get(client, key, first["next"]).json()
        back = get(client, key, second["previous"]).json()

        assert len(first["results"]) == len(second["results"]) == 1, url
        assert second["results"] != first["results"], url
        assert back["results"] == first["results"], url


TAMPERED = {
    "text": cursor(p="abc"),
    "NUL": cursor(p="\x00"),
    "NUL in a number": cursor(p="12\x003"),
    "past int64": cursor(p=str(2**70)),
    "a naive time": cursor(p="2026-01-01 00:00:00"),
    "past the calendar in UTC": cursor(p="9999-12-31 23:59:59-14:00"),
    "bad base64": "YQ",
    "an offset that is not a number": cursor(o="x", p="1"),
}


@pytest.mark.parametrize("tampered", TAMPERED.values(), ids=TAMPERED.keys())
def test_it_refuses_a_cursor_it_did_not_give_on_every_list(client, key, subscription, tampered):
    for url in lists(subscription):
        response = get(client, key, f"{url}?cursor={tampered}")

        assert response.status_code == 400, (url, response.content)
        assert response.json()["error"].startswith("Invalid cursor: follow the next"), url
