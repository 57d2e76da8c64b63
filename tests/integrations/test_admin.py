"""The webhooks console: what it shows, what it never shows, and sending deliveries again."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from core.models import Message
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks.subscriptions import rotate_secret
from tests.integrations.receiver import Answer
from tests.integrations.webhooks import (
    WORKER,
    come_due,
    fail_eight_times,
    publish,
    run_worker,
    subscribe,
)

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State
SUBSCRIPTIONS = reverse("admin:integrations_webhooksubscription_changelist")
DELIVERIES = reverse("admin:integrations_webhookdelivery_changelist")


def dead_delivery(tenant, receiver) -> WebhookDelivery:
    """A delivery that failed all eight attempts."""
    fail_eight_times(tenant, receiver)
    return WebhookDelivery.objects.get()


def change_url(obj) -> str:
    return reverse(f"admin:integrations_{obj._meta.model_name}_change", args=[obj.pk])


def readonly_field(page: str, name: str) -> str:
    """What a change page shows in a read-only field."""
    found = re.search(rf'field-{name}\b.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert found, f"no read-only field {name}"
    return found.group(1).strip()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def action(client, url, name, *objects):
    return client.post(
        url, {"action": name, "_selected_action": [o.pk for o in objects]}, follow=True
    )


def edit(client, subscription, **fields):
    data = {"event_types": "DeploymentPromoted", "description": "", "_save": "Save", **fields}
    if data.pop("enabled", True):
        data["enabled"] = "on"
    return client.post(change_url(subscription), data)


@pytest.fixture
def delivered(tenant, receiver) -> WebhookDelivery:
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    return WebhookDelivery.objects.get()


@pytest.mark.parametrize("url", [SUBSCRIPTIONS, DELIVERIES])
def test_it_sends_anonymous_and_non_staff_users_to_the_login_page(client, url):
    assert client.get(url).url.startswith(reverse("admin:login"))
    client.force_login(User.objects.create_user("dev", password="unused-in-this-test"))
    assert client.get(url).url.startswith(reverse("admin:login"))


def test_it_renders_the_lists_and_pages_of_subscriptions_and_deliveries(admin_client, delivered):
    for url in [
        SUBSCRIPTIONS,
        DELIVERIES,
        change_url(delivered.subscription),
        change_url(delivered),
        f"{DELIVERIES}?state=delivered&event_type=DeploymentPromoted",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_it_never_shows_a_subscriptions_secrets(admin_client, delivered):
    subscription = delivered.subscription
    rotate_secret(subscription=subscription)
    subscription.refresh_from_db()
    assert subscription.previous_secret
    secrets = [subscription.secret, subscription.previous_secret]

    for url in [
        SUBSCRIPTIONS,
        change_url(subscription),
        reverse("admin:integrations_webhooksubscription_history", args=[subscription.pk]),
        DELIVERIES,
        change_url(delivered),
    ]:
        response = admin_client.get(url)
        page = response.content.decode()
        assert "whsec_" not in page, url
        for secret in secrets:
            assert secret.removeprefix("whsec_") not in page, url
    form = admin_client.get(change_url(subscription)).context["adminform"].form
    assert set(form.fields) == {"event_types", "description", "enabled"}


def test_it_cannot_add_or_delete_a_subscription(admin_client, delivered):
    subscription = delivered.subscription
    add = reverse("admin:integrations_webhooksubscription_add")
    assert admin_client.get(add).status_code == 403
    delete = reverse("admin:integrations_webhooksubscription_delete", args=[subscription.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert WebhookSubscription.objects.filter(pk=subscription.pk).exists()


def test_it_shows_every_attempt_in_order_with_escaped_response_snippets(
    admin_client, tenant, receiver
):
    receiver.answer(Answer(status=500, body=b"<script>alert('boom')</script>"))
    subscribe(tenant, receiver)
    publish(tenant, note="<b>promoted</b>")
    run_worker()
    come_due()
    run_worker()
    delivery = WebhookDelivery.objects.get()

    page = admin_client.get(change_url(delivery)).content.decode()
    first = page.index('<td class="wh-status">500</td>')
    second = page.index('<td class="wh-status">200</td>')
    assert first < second
    assert "&lt;script&gt;alert(&#x27;boom&#x27;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    assert "&lt;b&gt;promoted&lt;/b&gt;" in page and "<b>promoted" not in page
    assert delivery.webhook_id in page


def test_it_shows_how_long_a_delivery_waited_on_a_429_without_spending_attempts(
    admin_client, tenant, receiver
):
    receiver.answer(Answer(status=429, headers={"Retry-After": "125"}))
    subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.round_attempts, round(delivery.waited_seconds)) == (0, 125)

    page = admin_client.get(change_url(delivery)).content.decode()
    assert readonly_field(page, "waited") == "2 min 5 s, no attempt spent"
    listed = admin_client.get(DELIVERIES).content.decode()
    assert "waited 2 min 5 s" in listed


def test_it_shows_no_wait_for_a_delivery_that_never_waited(admin_client, delivered):
    page = admin_client.get(change_url(delivered)).content.decode()
    assert readonly_field(page, "waited") == "-"
    assert "waited " not in admin_client.get(DELIVERIES).content.decode()


def test_it_redelivers_a_failed_delivery_with_the_same_webhook_id_and_not_a_delivered_one(
    admin_client, delivered, tenant, receiver
):
    receiver.answer(Answer(status=500))
    publish(tenant, version="2.0.0")
    run_worker()
    failed = WebhookDelivery.objects.get(state=State.RETRYING)

    response = action(admin_client, DELIVERIES, "redeliver_selected", delivered, failed)
    assert "1 re-sent, 1 were not failed" in messages_of(response)
    run_worker()

    assert [r.headers["webhook-id"] for r in receiver.received] == [
        delivered.webhook_id,
        failed.webhook_id,
        failed.webhook_id,
    ]
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.state, failed.attempts) == (State.DELIVERED, 2)
    assert (delivered.state, delivered.attempts) == (State.DELIVERED, 1)


def test_it_redelivers_a_dead_delivery_from_its_page(admin_client, tenant, receiver):
    delivery = dead_delivery(tenant, receiver)
    url = reverse("admin:integrations_webhookdelivery_redeliver", args=[delivery.pk])
    assert url in admin_client.get(change_url(delivery)).content.decode()
    assert admin_client.get(url).status_code == 405

    response = admin_client.post(url, follow=True)
    assert f"Re-sent {delivery.webhook_id}." in messages_of(response)
    run_worker()

    assert len(receiver.received) == 9
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.webhook_id}
    delivery.refresh_from_db()
    assert delivery.state == State.DELIVERED
    page = admin_client.get(change_url(delivery)).content.decode()
    assert url not in page  # delivered: nothing to redeliver


def test_it_recovers_a_subscriptions_failed_deliveries(admin_client, tenant, receiver):
    delivery = dead_delivery(tenant, receiver)

    response = action(admin_client, SUBSCRIPTIONS, "recover_failed", delivery.subscription)
    assert "Re-sent 1 failed deliveries of 1 subscription(s)." in messages_of(response)
    run_worker()

    assert len(receiver.received) == 9
    assert receiver.received[-1].headers["webhook-id"] == delivery.webhook_id
    assert receiver.received[-1].verified
    delivery.refresh_from_db()
    assert delivery.state == State.DELIVERED
    response = action(admin_client, SUBSCRIPTIONS, "recover_failed", delivery.subscription)
    assert "Re-sent 0 failed deliveries of 1 subscription(s)." in messages_of(response)


@pytest.mark.django_db(transaction=True)
def test_it_recovers_the_failed_deliveries_of_several_subscriptions_at_once(
    admin_client, tenant, receiver, expiring_connections
):
    # On SQLite the action answered 500 ("Cannot operate on a closed database") after the
    # first subscription's deliveries were queued.
    receiver.default = Answer(status=500)
    subscriptions = [subscribe(tenant, receiver), subscribe(tenant, receiver)]
    publish(tenant, n=1)
    publish(tenant, n=2)
    run_worker()
    for _ in range(7):
        come_due()
        run_worker()
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {State.DEAD}
    receiver.default = Answer(status=200)

    response = action(admin_client, SUBSCRIPTIONS, "recover_failed", *subscriptions)
    again = action(admin_client, SUBSCRIPTIONS, "recover_failed", *subscriptions)
    run_worker()

    assert "Re-sent 4 failed deliveries of 2 subscription(s)." in messages_of(response)
    assert "Re-sent 0 failed deliveries of 2 subscription(s)." in messages_of(again)
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {State.DELIVERED}


def test_it_sends_nothing_to_a_disabled_subscription_until_it_is_enabled_again(
    admin_client, tenant, receiver
):
    receiver.answer(Answer(status=410))
    subscription = subscribe(tenant, receiver)
    publish(tenant)
    run_worker()
    subscription.refresh_from_db()
    assert not subscription.enabled and subscription.failing_since is not None
    delivery = WebhookDelivery.objects.get()

    response = action(admin_client, DELIVERIES, "redeliver_selected", delivery)
    assert "0 re-sent, 0 were not failed; 1 skipped" in messages_of(response)[0]
    response = action(admin_client, SUBSCRIPTIONS, "recover_failed", subscription)
    assert any("Skipped 1 disabled subscription(s)" in m for m in messages_of(response))
    run_worker()
    assert len(receiver.received) == 1

    assert edit(admin_client, subscription, enabled=True).status_code == 302
    subscription.refresh_from_db()
    # Enabled again through the service: a fresh failing period, no stale reason.
    assert (subscription.enabled, subscription.disabled_reason) == (True, "")
    assert subscription.failing_since is None
    response = action(admin_client, DELIVERIES, "redeliver_selected", delivery)
    assert "1 re-sent, 0 were not failed" in messages_of(response)
    run_worker()
    assert len(receiver.received) == 2


def test_it_edits_enabled_event_types_and_description(admin_client, delivered):
    subscription = delivered.subscription
    response = edit(
        admin_client,
        subscription,
        enabled=False,
        event_types="Incident*, DeploymentPromoted",
        description="the CD bot",
    )
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert not subscription.enabled
    assert subscription.event_types == ["DeploymentPromoted", "Incident*"]
    assert subscription.description == "the CD bot"


def test_it_saves_no_url_a_form_sends_it(admin_client, delivered):
    # The URL is read-only here (the API checks it when saved): one posted is not taken.
    subscription = delivered.subscription
    url = subscription.url
    response = edit(admin_client, subscription, url=f"{url}\r\nX-Injected: 1")

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.url == url


def test_it_hides_a_deleted_subscription_whose_rows_wait_for_a_batch(admin_client, delivered):
    subscription = delivered.subscription
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        deleted=timezone.now(), enabled=False
    )

    assert admin_client.get(change_url(subscription)).status_code == 302  # "doesn't exist"
    assert subscription.url not in admin_client.get(SUBSCRIPTIONS).content.decode()


def test_it_refuses_an_unknown_event_type_as_a_form_error(admin_client, delivered):
    subscription = delivered.subscription
    response = edit(admin_client, subscription, event_types="NoSuchEvent", enabled=False)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["event_types"]
    assert "'NoSuchEvent' matches no event type" in errors[0]
    subscription.refresh_from_db()
    assert (subscription.enabled, subscription.event_types) == (True, ["DeploymentPromoted"])


def test_it_lists_a_subscriptions_latest_deliveries_on_its_page(admin_client, delivered):
    page = admin_client.get(change_url(delivered.subscription)).content.decode()
    assert f'<a href="{change_url(delivered)}">{delivered.webhook_id}</a>' in page
    assert "0 failed (retrying or dead) in the last 7 days" in page

    listing = admin_client.get(DELIVERIES, {"subscription__id__exact": delivered.subscription_id})
    assert list(listing.context["cl"].result_list) == [delivered]


@pytest.mark.parametrize("term", ["webhook_id", "pk", "event_id"])
def test_it_finds_a_delivery_by_its_ids(admin_client, delivered, term):
    listing = admin_client.get(DELIVERIES, {"q": str(getattr(delivered, term))})
    assert list(listing.context["cl"].result_list) == [delivered]
    listing = admin_client.get(DELIVERIES, {"q": "not-an-id"})
    assert list(listing.context["cl"].result_list) == []


def test_it_lets_a_staff_member_who_may_only_view_deliveries_redeliver_nothing(
    client, tenant, receiver
):
    delivery = dead_delivery(tenant, receiver)
    viewer = User.objects.create_user("viewer", password="unused-in-this-test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)

    response = client.get(change_url(delivery))
    page = response.content.decode()
    listing = client.get(DELIVERIES)
    assert (response.status_code, listing.status_code) == (200, 200)
    assert "redeliver_selected" not in listing.content.decode()
    assert delivery.webhook_id in page
    url = reverse("admin:integrations_webhookdelivery_redeliver", args=[delivery.pk])
    assert url not in page
    assert client.post(url).status_code == 403
    assert Message.objects.get(worker=WORKER, state=Message.State.DEAD)


# Rotating a subscription's signing secret: the API's service, the new secret shown once.


def rotate_url(subscription) -> str:
    return reverse("admin:integrations_webhooksubscription_rotate", args=[subscription.pk])


def shown_secret(page: str) -> str:
    (secret,) = re.findall(r'id="signing-secret"[^>]*value="(whsec_[^"]+)"', page, re.S)
    return secret


def test_it_asks_before_rotating_a_secret_and_changes_nothing_until_then(admin_client, delivered):
    subscription = delivered.subscription
    before = WebhookSubscription.objects.get(pk=subscription.pk).secret

    page = admin_client.get(change_url(subscription)).content.decode()
    confirm = admin_client.get(rotate_url(subscription))

    assert f'href="{rotate_url(subscription)}"' in page  # the button on its page
    text = confirm.content.decode()
    assert confirm.status_code == 200 and "Rotate the signing secret" in text
    assert (
        subscription.url in text
        and "keeps signing beside it until about" in text
        and "(1 d 0 h)" in text
    )
    assert 'value="Rotate the secret"' in text and "whsec_" not in text
    assert WebhookSubscription.objects.get(pk=subscription.pk).secret == before


def test_it_rotates_a_secret_and_shows_the_new_one_once(admin_client, delivered, receiver):
    subscription = delivered.subscription
    before = WebhookSubscription.objects.get(pk=subscription.pk).secret

    response = admin_client.post(rotate_url(subscription))

    page = response.content.decode()
    stored = WebhookSubscription.objects.get(pk=subscription.pk)
    assert response.status_code == 200  # the page itself, not a redirect to it
    assert shown_secret(page) == stored.secret != before
    assert stored.previous_secret == before and stored.previous_secret_expires
    assert "Cache-Control" in response and "no-store" in response["Cache-Control"]
    assert [m for m in messages_of(response) if m.startswith("Rotated the signing secret")]
    history = reverse("admin:integrations_webhooksubscription_history", args=[subscription.pk])
    assert "Rotated the signing secret" in admin_client.get(history).content.decode()
    for url in [change_url(subscription), SUBSCRIPTIONS, history]:
        assert stored.secret.removeprefix("whsec_") not in admin_client.get(url).content.decode()
    # The subscriber who copied it verifies the next delivery with it alone.
    receiver.secrets[:] = [shown_secret(page)]
    publish(subscription.tenant)
    run_worker()
    assert receiver.received[-1].verified


def test_it_rotates_through_the_same_service_as_the_api(admin_client, delivered, api, settings):
    settings.WEBHOOK_SECRET_OVERLAP_SECONDS = 60
    subscription = delivered.subscription
    path = f"/api/webhooks/subscriptions/{subscription.pk}/rotate-secret"
    by_api = api("post", path).json()["secret"]

    admin_client.post(rotate_url(subscription))

    stored = WebhookSubscription.objects.get(pk=subscription.pk)
    assert stored.previous_secret == by_api  # the API's, now the one signing beside
    now = timezone.now()
    assert stored.signing_secrets(now=now) == [stored.secret, by_api]
    assert stored.previous_secret_expires <= now + timedelta(seconds=60)


def test_it_says_a_recent_rotations_secret_stops_signing_when_rotated_again(
    admin_client, delivered
):
    subscription = delivered.subscription
    rotate_secret(subscription=subscription)

    text = admin_client.get(rotate_url(subscription)).content.decode()

    assert "stops signing now" in text


def test_it_lets_a_staff_member_who_may_only_view_subscriptions_rotate_nothing(client, delivered):
    subscription = delivered.subscription
    before = WebhookSubscription.objects.get(pk=subscription.pk).secret
    viewer = User.objects.create_user("viewer", password="unused-in-this-test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhooksubscription"))
    client.force_login(viewer)

    page = client.get(change_url(subscription)).content.decode()

    assert rotate_url(subscription) not in page
    assert client.get(rotate_url(subscription)).status_code == 403
    assert client.post(rotate_url(subscription)).status_code == 403
    assert WebhookSubscription.objects.get(pk=subscription.pk).secret == before


def test_it_rotates_no_deleted_subscription(admin_client, delivered, api):
    subscription = delivered.subscription
    assert api("delete", f"/api/webhooks/subscriptions/{subscription.pk}").status_code == 204

    assert admin_client.post(rotate_url(subscription)).status_code == 404
