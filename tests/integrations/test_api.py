"""The webhook subscriptions API, end to end through the worker and a real receiver."""

from __future__ import annotations

import pytest
from django.utils import timezone

from core import services as core_services
from core.models import Message
from core.runtime import dispatch
from integrations.models import WebhookDelivery, WebhookSubscription
from tests.integrations.receiver import Answer

pytestmark = pytest.mark.django_db
BASE = "/api/webhooks/subscriptions"


def create(api, receiver, types=("DeploymentPromoted",)):
    response = api("post", BASE, {"url": receiver.url, "eventTypes": list(types)})
    assert response.status_code == 201, response.content
    receiver.secrets.append(response.json()["secret"])
    return response.json()


def deliver_all() -> None:
    for _ in range(2):
        dispatch.drain("WebhookDeliveryWorker")


def test_it_creates_a_subscription_and_shows_its_secret_only_once(api, receiver):
    created = create(api, receiver)

    assert created["secret"].startswith("whsec_")
    assert created["eventTypes"] == ["DeploymentPromoted"] and created["enabled"] is True
    listed = api("get", BASE).json()["results"]
    fetched = api("get", f"{BASE}/{created['id']}").json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0] and "secret" not in fetched
    assert created["secret"] not in str(listed) + str(fetched)


def test_it_refuses_an_unknown_event_type_with_the_known_ones(api, receiver):
    response = api("post", BASE, {"url": receiver.url, "eventTypes": ["DeploymentPromotd"]})

    assert response.status_code == 400
    assert "DeploymentPromotd" in response.json()["error"]
    assert "DeploymentPromoted" in response.json()["error"]


def test_it_accepts_wildcards_that_match_some_type(api, receiver):
    assert create(api, receiver, types=["Incident*"])["eventTypes"] == ["Incident*"]
    refused = api("post", BASE, {"url": receiver.url, "eventTypes": ["Nothing*"]})
    assert refused.status_code == 400


def test_it_requires_https_outside_debug(api, settings):
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = api("post", BASE, {"url": "http://example.com/h", "eventTypes": ["*"]})

    assert response.status_code == 400
    assert "https://" in response.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/h",
        "http://10.1.2.3/h",
        "http://192.168.0.1/h",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/h",
        "http://localhost/h",  # a host name that resolves to 127.0.0.1
        "http://[64:ff9b::7f00:1]/h",  # NAT64 of 127.0.0.1
        "http://[64:ff9b:1::a00:1]/h",
        "http://[2002:a00:1::1]/h",  # 6to4 of 10.0.0.1
        "http://[::127.0.0.1]/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://224.0.0.1/h",
        "http://[ff02::1]/h",
    ],
)
def test_it_refuses_private_loopback_and_link_local_targets(api, settings, url):
    settings.WEBHOOK_REQUIRE_HTTPS = False
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = api("post", BASE, {"url": url, "eventTypes": ["*"]})

    assert response.status_code == 400
    assert "WEBHOOK_ALLOWED_HOSTS" in response.json()["error"]


def test_it_accepts_a_private_target_an_operator_allowlisted_by_cidr(api, settings):
    settings.WEBHOOK_REQUIRE_HTTPS = False
    settings.WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8", "hooks.internal"]
    response = api("post", BASE, {"url": "http://10.1.2.3/h", "eventTypes": ["*"]})

    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("{url}\r\nX-Injected: 1", "a carriage return (CR)"),
        ("{url}\nX-Injected: 1", "a line feed (LF)"),
        ("{url}/a b", "a space"),
        ("{url} ", "a space"),
        ("{url}\t", "U+0009"),
        ("{url}\x00", "Null characters are not allowed"),  # DRF's own check, first
    ],
)
def test_it_refuses_a_url_with_a_space_or_a_control_character(api, receiver, url, what):
    created = create(api, receiver)
    bad = url.format(url=receiver.url)

    refused = api("post", BASE, {"url": bad, "eventTypes": ["*"]})
    patched = api("patch", f"{BASE}/{created['id']}", {"url": bad})

    for response in (refused, patched):
        assert response.status_code == 400
        assert what in str(response.json())
    assert WebhookSubscription.objects.get().url == receiver.url


def test_it_refuses_the_platforms_own_port_even_when_allowlisted(api, receiver, settings):
    settings.PORT = 8000
    response = api("post", BASE, {"url": "http://127.0.0.1:8000/api/events", "eventTypes": ["*"]})

    assert response.status_code == 400
    assert "this platform's own address" in response.json()["error"]


def test_it_refuses_a_url_with_credentials_or_without_a_host(api, receiver):
    for url in ("http://user:pw@127.0.0.1/h", "http:///h", "ftp://127.0.0.1/h"):
        response = api("post", BASE, {"url": url, "eventTypes": ["*"]})
        assert response.status_code == 400, url


def test_it_patches_a_subscription_and_checks_the_new_url(api, receiver, settings):
    created = create(api, receiver)
    path = f"{BASE}/{created['id']}"

    patched = api("patch", path, {"eventTypes": ["Build*"], "description": "CI"}).json()
    refused = api("patch", path, {"url": "http://10.0.0.1/h"})

    assert patched["eventTypes"] == ["Build*"] and patched["description"] == "CI"
    assert refused.status_code == 400
    assert WebhookSubscription.objects.get().url == receiver.url


def test_re_enabling_clears_the_reason_it_was_disabled(api, receiver):
    created = create(api, receiver)
    WebhookSubscription.objects.update(
        enabled=False, disabled_reason="410", failing_since=timezone.now()
    )
    enabled = api("patch", f"{BASE}/{created['id']}", {"enabled": True}).json()

    assert enabled["enabled"] is True
    assert enabled["disabledReason"] == "" and enabled["failingSince"] is None


def test_it_deletes_a_subscription_with_its_deliveries(api, receiver, tenant):
    created = create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()

    assert api("delete", f"{BASE}/{created['id']}").status_code == 204
    assert api("get", f"{BASE}/{created['id']}").status_code == 404
    assert not WebhookSubscription.objects.exists() and not WebhookDelivery.objects.exists()


def test_it_shows_nothing_of_a_deleted_subscription_whose_rows_wait_for_a_batch(
    api, receiver, tenant
):
    receiver.answer(Answer(status=500))
    created = create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    WebhookSubscription.objects.update(deleted=timezone.now(), enabled=False)

    assert api("get", BASE).json()["results"] == []
    for path in ("", "/deliveries"):
        assert api("get", f"{BASE}/{created['id']}{path}").status_code == 404
    assert api("post", f"{BASE}/{created['id']}/recover?since=1h").status_code == 404
    assert api("post", f"/api/webhooks/deliveries/{delivery.pk}/redeliver").status_code == 404


def test_a_key_of_one_tenant_never_sees_another_tenants_subscriptions(
    api, receiver, other_tenant, client
):
    created = create(api, receiver)
    other_key = core_services.issue_api_key(tenant=other_tenant)
    headers = {"Authorization": f"Bearer {other_key}"}

    assert client.get(BASE, headers=headers).json()["results"] == []
    for path in ("", "/deliveries"):
        assert client.get(f"{BASE}/{created['id']}{path}", headers=headers).status_code == 404
    assert client.delete(f"{BASE}/{created['id']}", headers=headers).status_code == 404
    assert WebhookSubscription.objects.count() == 1


def test_it_needs_an_api_key(client):
    response = client.get(BASE)

    assert response.status_code in (401, 403)
    assert "Bearer" in response.json()["error"]


def test_it_rotates_the_secret_and_both_verify_during_the_overlap(api, receiver, tenant):
    created = create(api, receiver)
    rotated = api("post", f"{BASE}/{created['id']}/rotate-secret").json()
    assert rotated["secret"] != created["secret"] and rotated["previousSecretExpires"]

    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()
    (got,) = receiver.received
    for secret in (created["secret"], rotated["secret"]):
        receiver.secrets = [secret]
        assert receiver.verify(got.body, got.headers) is not None


def test_it_lists_deliveries_with_their_attempts(api, receiver, tenant):
    receiver.answer(Answer(status=500, body=b"try later"))
    created = create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()

    (delivery,) = api("get", f"{BASE}/{created['id']}/deliveries").json()["results"]
    assert delivery["state"] == "retrying" and delivery["lastStatus"] == 500
    (attempt,) = delivery["attemptLog"]
    assert attempt["statusCode"] == 500 and attempt["responseBody"] == "try later"
    assert delivery["webhookId"] == receiver.received[0].headers["webhook-id"]
    failed = api("get", f"{BASE}/{created['id']}/deliveries?state=delivered").json()
    assert failed["results"] == []


def test_it_redelivers_a_failed_delivery_now_and_refuses_a_delivered_one(api, receiver, tenant):
    receiver.answer(Answer(status=500))
    create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()
    delivery = WebhookDelivery.objects.get()

    response = api("post", f"/api/webhooks/deliveries/{delivery.webhook_id}/redeliver")
    assert response.status_code == 202
    deliver_all()  # due now, not in an hour
    again = api("post", f"/api/webhooks/deliveries/{delivery.pk}/redeliver")

    assert len(receiver.received) == 2
    assert WebhookDelivery.objects.get().state == WebhookDelivery.State.DELIVERED
    assert again.status_code == 409 and "delivered" in again.json()["error"]


def test_it_recovers_the_dead_deliveries_of_a_subscription(api, receiver, tenant):
    receiver.default = Answer(status=500)
    created = create(api, receiver)
    for n in range(3):
        core_services.publish(tenant=tenant, type="DeploymentPromoted", data={"n": n})
    deliver_all()
    for _ in range(7):
        Message.objects.filter(state="pending").update(due_at=timezone.now())
        deliver_all()
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"dead"}
    receiver.default = Answer(status=200)

    response = api("post", f"{BASE}/{created['id']}/recover?since=1h")
    deliver_all()

    assert response.status_code == 202 and response.json()["recovered"] == 3
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}
    assert api("post", f"{BASE}/{created['id']}/recover?since=1h").json()["recovered"] == 0


@pytest.mark.django_db(transaction=True)
def test_it_recovers_dead_and_retrying_deliveries_and_counts_each_once(
    api, receiver, tenant, expiring_connections
):
    # On SQLite every connection is past its age: recovering answered 500 ("Cannot operate on
    # a closed database") after queueing the work, and a second call then said 0.
    receiver.default = Answer(status=500)
    created = create(api, receiver)
    for n in range(3):
        core_services.publish(tenant=tenant, type="DeploymentPromoted", data={"n": n})
    deliver_all()
    for _ in range(7):
        Message.objects.filter(state="pending").update(due_at=timezone.now())
        deliver_all()
    for n in range(3, 5):
        core_services.publish(tenant=tenant, type="DeploymentPromoted", data={"n": n})
    deliver_all()
    states = sorted(WebhookDelivery.objects.values_list("state", flat=True))
    assert states == ["dead"] * 3 + ["retrying"] * 2
    receiver.default = Answer(status=200)

    first = api("post", f"{BASE}/{created['id']}/recover?since=1h")
    second = api("post", f"{BASE}/{created['id']}/recover?since=1h")
    deliver_all()

    assert first.status_code == 202 and first.json()["recovered"] == 5
    assert second.status_code == 202 and second.json()["recovered"] == 0
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}
    delivered = [r.headers["webhook-id"] for r in receiver.received if r.headers and r.verified]
    assert len(set(delivered)) == 5


def test_it_does_not_count_a_retry_that_is_being_sent_at_this_moment(api, receiver, tenant):
    receiver.default = Answer(status=500)
    created = create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()
    claimed = timezone.now() + timezone.timedelta(minutes=2)
    Message.objects.filter(state="pending", worker="WebhookDeliveryWorker").update(
        leased_until=claimed
    )

    response = api("post", f"{BASE}/{created['id']}/recover?since=1h")

    assert response.json()["recovered"] == 0


def test_recover_needs_a_since(api, receiver):
    created = create(api, receiver)
    response = api("post", f"{BASE}/{created['id']}/recover")

    assert response.status_code == 400
    assert "since" in str(response.json())


def test_it_refuses_to_redeliver_to_a_disabled_subscription(api, receiver, tenant):
    receiver.answer(Answer(status=500))
    created = create(api, receiver)
    core_services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    deliver_all()
    api("patch", f"{BASE}/{created['id']}", {"enabled": False})
    delivery = WebhookDelivery.objects.get()

    redeliver = api("post", f"/api/webhooks/deliveries/{delivery.pk}/redeliver")
    recover = api("post", f"{BASE}/{created['id']}/recover?since=1h")

    for response in (redeliver, recover):
        assert response.status_code == 400
        assert "disabled by its owner" in response.json()["error"]
        assert "enable it" in response.json()["error"]
