"""The operator's console: what it shows, what it hides, and replaying dead letters."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core import services
from core.models import ApiKey, DeadLetter, Message
from core.runtime import dispatch, registry
from core.runtime.errors import PermanentError

HEALTH_URL = reverse("admin:core_health")


def _reject(envelope):
    raise PermanentError("the deployment is unknown")


@pytest.fixture
def dead_letter(tenant, make_worker):
    worker = make_worker("RejectingWorker", handler=_reject)
    services.publish(tenant=tenant, type="DeploymentPromoted", data={"deployment": "d-42"})
    dispatch.drain(worker.name)
    return DeadLetter.objects.get(worker=worker.name)


def _replay_selected(admin_client, *dead_letters):
    return admin_client.post(
        reverse("admin:core_deadletter_changelist"),
        {"action": "replay_selected", "_selected_action": [dl.pk for dl in dead_letters]},
        follow=True,
    )


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [reverse("admin:index"), HEALTH_URL, reverse("admin:core_deadletter_changelist")],
)
def test_it_requires_a_staff_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", ["tenant", "apikey", "event", "message", "deadletter"])
def test_it_renders_every_changelist(admin_client, dead_letter, model):
    assert admin_client.get(reverse(f"admin:core_{model}_changelist")).status_code == 200


def test_it_links_the_health_page_from_the_index(admin_client, db):
    assert HEALTH_URL in admin_client.get(reverse("admin:index")).content.decode()


def test_it_lists_every_catalog_worker_on_the_health_page(admin_client, db):
    page = admin_client.get(HEALTH_URL).content.decode()
    assert len(registry.catalog_workers()) == 13
    for worker in registry.catalog_workers():
        assert worker.name in page
    assert "not built yet" in page


def test_it_links_a_workers_dead_letters_from_the_health_page(admin_client, dead_letter):
    page = admin_client.get(HEALTH_URL).content.decode()
    link = reverse("admin:core_deadletter_changelist") + "?worker=RejectingWorker&amp;status=open"
    assert link in page
    listing = admin_client.get(
        reverse("admin:core_deadletter_changelist"), {"worker": "RejectingWorker", "status": "open"}
    )
    assert list(listing.context["cl"].result_list) == [dead_letter]


def test_it_shows_the_envelope_and_attempts_of_a_dead_letter(admin_client, dead_letter):
    url = reverse("admin:core_deadletter_change", args=[dead_letter.pk])
    page = admin_client.get(url).content.decode()
    assert dead_letter.envelope["eventId"] in page
    assert dead_letter.envelope["traceId"] in page
    assert "d-42" in page
    assert "PermanentError: the deployment is unknown" in page
    assert "Traceback" in page
    assert reverse("admin:core_deadletter_replay", args=[dead_letter.pk]) in page


def test_it_replays_selected_dead_letters_once(admin_client, dead_letter):
    response = _replay_selected(admin_client, dead_letter)
    assert "Replayed 1; 0 were already replayed" in _messages(response)
    assert Message.objects.get(pk=dead_letter.message_id).state == Message.State.PENDING

    response = _replay_selected(admin_client, dead_letter)
    assert "Replayed 0; 1 were already replayed" in _messages(response)
    dead_letter.refresh_from_db()
    assert dead_letter.replays == 1


def test_it_replays_from_the_change_page(admin_client, dead_letter):
    url = reverse("admin:core_deadletter_replay", args=[dead_letter.pk])
    response = admin_client.post(url)
    assert response.url == reverse("admin:core_deadletter_change", args=[dead_letter.pk])

    response = admin_client.post(url, follow=True)
    assert any("already replayed" in m for m in _messages(response))
    dead_letter.refresh_from_db()
    assert (dead_letter.replays, dead_letter.is_open) == (1, False)


def test_it_offers_replay_only_while_the_dead_letter_is_open(admin_client, dead_letter):
    page = reverse("admin:core_deadletter_change", args=[dead_letter.pk])
    replay_url = reverse("admin:core_deadletter_replay", args=[dead_letter.pk])
    admin_client.post(replay_url)

    assert replay_url not in admin_client.get(page).content.decode()
    missing = reverse("admin:core_deadletter_replay", args=[dead_letter.pk + 1000])
    assert admin_client.post(missing).status_code == 404


def test_it_replays_only_on_post(admin_client, client, dead_letter):
    url = reverse("admin:core_deadletter_replay", args=[dead_letter.pk])
    assert admin_client.get(url).status_code == 405
    assert client.post(url).url.startswith(reverse("admin:login"))
    assert DeadLetter.objects.get(pk=dead_letter.pk).replays == 0


def test_it_never_shows_an_api_key_digest(admin_client, tenant):
    plain = services.issue_api_key(tenant=tenant, name="ci")
    key = ApiKey.objects.get()
    for url in [
        reverse("admin:core_apikey_changelist"),
        reverse("admin:core_apikey_change", args=[key.pk]),
    ]:
        page = admin_client.get(url).content.decode()
        assert f"pk_{key.lookup}_…" in page
        assert key.digest not in page
        assert plain not in page


def test_it_cannot_add_an_api_key(admin_client, db):
    assert admin_client.get(reverse("admin:core_apikey_add")).status_code == 403


def test_it_revokes_api_keys(admin_client, tenant):
    services.issue_api_key(tenant=tenant)
    key = ApiKey.objects.get()
    admin_client.post(
        reverse("admin:core_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked is not None


@pytest.mark.parametrize("model", ["event", "message"])
def test_it_shows_runtime_rows_read_only(admin_client, dead_letter, model):
    obj = dead_letter.message if model == "message" else dead_letter.message.event
    page = admin_client.get(reverse(f"admin:core_{model}_change", args=[obj.pk])).content.decode()
    assert "PermanentError: the deployment is unknown" in page  # a message or its failure
    assert 'name="_save"' not in page
    assert admin_client.get(reverse(f"admin:core_{model}_add")).status_code == 403
