"""On call for webhooks: a delivery that could not be sent, sent again from the console, and seen
arriving at the subscriber's receiver through a real cluster."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from integrations.models import WebhookDelivery
from tests.browser.console import Console
from tests.browser.data import settle
from tests.core.test_processes import wait_until
from tests.integrations.receiver import Receiver


@pytest.fixture
def refused(api, receiver, settings) -> str:
    """A subscription of the receiver whose delivery was refused (its address was not allowed
    then) and dead-lettered; the delivery's webhook-id."""
    subscription = api.post(
        "/api/webhooks/subscriptions",
        {"url": receiver.url, "eventTypes": ["DeploymentPromoted"]},
        expect=201,
    )
    receiver.secrets.append(subscription["secret"])
    api.post(
        "/api/events",
        {"type": "DeploymentPromoted", "data": {"service": "checkout", "version": "1.4.2"}},
        expect=202,
    )
    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = [], False
    settle("WebhookDeliveryWorker")
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == WebhookDelivery.State.DEAD
    return delivery.webhook_id


@pytest.fixture
def allowed(cluster, receiver) -> None:
    """A cluster that may now reach the receiver: its address and port are allowed."""
    allow = f"127.0.0.1:{receiver.server.server_port}"
    cluster(WEBHOOK_ALLOWED_HOSTS=allow, WEBHOOK_REQUIRE_HTTPS="0")


def arrived(receiver: Receiver, webhook_id: str) -> None:
    receiver.wait_for_arrivals(1, timeout=60)
    (request,) = receiver.received
    assert request.verified, "the receiver could not verify the signature"
    assert request.headers["webhook-id"] == webhook_id
    wait_until(
        lambda: WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED).exists(),
        timeout=30,
        what="the delivery to be recorded as delivered",
    )


def test_it_replays_a_dead_letter_from_its_page_and_the_delivery_arrives(
    staff_console: Console, receiver, refused, allowed
):
    page = staff_console.page
    staff_console.follow("Worker health")
    staff_console.follow(staff_console.row("WebhookDeliveryWorker").get_by_role("link", name="1"))
    staff_console.follow_result()  # the one open dead letter
    expect(page.get_by_text("refused to connect").first).to_be_visible()

    staff_console.press("Replay")

    staff_console.expect_message("Replayed")
    expect(page.get_by_role("button", name="Replay")).to_have_count(0)
    arrived(receiver, refused)
    staff_console.open("/admin/integrations/webhookdelivery/")
    expect(staff_console.row(receiver.url)).to_contain_text("Delivered")


def test_it_recovers_a_subscriptions_failed_deliveries(
    staff_console: Console, receiver, refused, allowed
):
    staff_console.follow("Webhook subscriptions")

    staff_console.run_action("Recover failed deliveries (last 7 days)", receiver.url)

    staff_console.expect_message("Re-sent 1 failed deliveries of 1 subscription(s).")
    arrived(receiver, refused)
