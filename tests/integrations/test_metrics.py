"""What webhooks show in GET /metrics: every attempt by outcome, the failed deliveries by state."""

from __future__ import annotations

import pytest
import urllib3
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core import outbound
from integrations.webhooks.prometheus import attempt_outcome
from tests.integrations.receiver import Answer
from tests.integrations.webhooks import come_due, fail_eight_times, publish, run_worker, subscribe

pytestmark = pytest.mark.django_db
TOKEN = "scrape-me"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_BEARER_TOKEN = TOKEN

    def read() -> dict[tuple[str, str], float]:
        """(metric, its one label's value) -> value"""
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        return {
            (sample.name, next(iter(sample.labels.values()), "")): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
            if sample.name.startswith("platform_webhook_")
        }

    return read


def test_it_counts_each_attempt_by_outcome(
    tenant, receiver, scrape, django_capture_on_commit_callbacks
):
    receiver.answer(Answer(status=503), Answer(status=200))
    subscribe(tenant, receiver)
    publish(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        run_worker()
    failed = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        come_due()
        run_worker()
    delivered = scrape()

    assert failed["platform_webhook_attempts_total", "5xx"] == 1
    assert failed["platform_webhook_attempts_total", "2xx"] == 0
    assert failed["platform_webhook_failed_deliveries", "retrying"] == 1
    assert delivered["platform_webhook_attempts_total", "2xx"] == 1
    assert delivered["platform_webhook_failed_deliveries", "retrying"] == 0


def test_it_shows_a_dead_delivery(tenant, receiver, scrape, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        fail_eight_times(tenant, receiver)

    found = scrape()

    assert found["platform_webhook_failed_deliveries", "dead"] == 1
    assert found["platform_webhook_attempts_total", "5xx"] == 8


def reply(status: int) -> outbound.Reply:
    return outbound.Reply(status=status, headers={}, body=b"", seconds=0.1, finished=timezone.now())


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (reply(204), "2xx"),
        (reply(302), "3xx"),
        (reply(410), "4xx"),
        (reply(500), "5xx"),
        (urllib3.exceptions.ConnectTimeoutError("connect timed out"), "timeout"),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), "timeout"),
        (urllib3.exceptions.NewConnectionError(None, "connection refused"), "connection_error"),
        (urllib3.exceptions.ProtocolError("connection aborted"), "connection_error"),
        (outbound.BlockedDestination("127.0.0.1 is not public"), "blocked"),
    ],
)
def test_it_names_an_attempts_outcome(result, outcome):
    assert attempt_outcome(result) == outcome
