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
    # What failed: the event delivered, to which subscription and URL, and why.
    facts = page.locator(".field-subject_facts")
    expect(facts).to_contain_text("webhook delivery DeploymentPromoted to " + receiver.url)
    expect(facts.get_by_role("link", name="DeploymentPromoted to " + receiver.url)).to_be_visible()
    expect(page.locator(".field-original_event")).to_contain_text("DeploymentPromoted")
    expect(page.get_by_text("refused to connect").first).to_be_visible()

    staff_console.follow("Replay…")  # first, what it would do: nothing has changed yet
    expect(page.get_by_role("heading", name="Replay this dead letter?")).to_be_visible()
    expect(page.locator(".preview-summary")).to_contain_text(
        "1 of 1 would go back to WebhookDeliveryWorker (1). Nothing has changed yet."
    )
    expect(page.locator("#preview")).to_contain_text(receiver.url)
    assert not receiver.received

    staff_console.press("Yes, replay 1")

    staff_console.expect_message("Replayed")
    expect(page.get_by_role("link", name="Replay…")).to_have_count(0)
    expect(page.locator(".field-status")).to_contain_text("Replayed at")
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
