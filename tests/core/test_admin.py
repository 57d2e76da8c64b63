"""The operator's console: the landing page, what it shows and hides, finding events and
messages, API keys, and replaying dead letters."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from core import console, prometheus, services
from core.models import ApiKey, ClusterHeartbeat, DeadLetter, Message
from core.runtime import dispatch, registry
from core.runtime.errors import PermanentError
from integrations.webhooks import prometheus as webhook_metrics
from observability import prometheus as ingest_metrics

HEALTH_URL = reverse("admin:core_health")


def _reject(envelope):
    raise PermanentError("the deployment is unknown")


@pytest.fixture
def dead_letter(tenant, make_worker):
    worker = make_worker("RejectingWorker", handler=_reject)
    services.publish(tenant=tenant, type="DeploymentPromoted", data={"deployment": "d-42"})
    dispatch.drain(worker.name)
    return DeadLetter.objects.get(worker=worker.name)


def _replay_selected(admin_client, *dead_letters, confirmed=True):
    """Run the list action; `confirmed`: as the confirmation page's button posts it."""
    data = {"action": "replay_selected", "_selected_action": [dl.pk for dl in dead_letters]}
    if confirmed:
        data["post"] = "yes"
    return admin_client.post(reverse("admin:core_deadletter_changelist"), data, follow=True)


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


def test_it_shows_what_replaying_selected_dead_letters_would_do_before_doing_it(
    admin_client, dead_letter
):
    page = _replay_selected(admin_client, dead_letter, confirmed=False)

    assert page.templates[0].name == "admin/confirm_action.html"
    text = page.content.decode()
    assert "1 of 1 would go back to RejectingWorker (1)" in text
    assert "Nothing has changed yet." in text
    assert 'value="Yes, replay 1"' in text
    assert '<input type="hidden" name="post" value="yes">' in text
    assert Message.objects.get(pk=dead_letter.message_id).state == Message.State.DEAD

    _replay_selected(admin_client, dead_letter)
    again = _replay_selected(admin_client, dead_letter, confirmed=False).content.decode()
    assert "1 already replayed would be left as they are. Nothing would be replayed." in again
    assert "Yes, replay" not in again


def test_it_replays_from_the_change_page_after_showing_what_it_would_do(admin_client, dead_letter):
    url = reverse("admin:core_deadletter_replay", args=[dead_letter.pk])
    page = reverse("admin:core_deadletter_change", args=[dead_letter.pk])
    assert f'href="{url}"' in admin_client.get(page).content.decode()  # a link to the dry run

    preview = admin_client.get(url).content.decode()
    assert "Replay this dead letter?" in preview
    assert "1 of 1 would go back to RejectingWorker (1)" in preview
    assert Message.objects.get(pk=dead_letter.message_id).state == Message.State.DEAD

    response = admin_client.post(url)
    assert response.url == page
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
    assert admin_client.get(url).status_code == 200  # the dry run
    assert admin_client.put(url).status_code == 405
    assert client.post(url).url.startswith(reverse("admin:login"))
    assert DeadLetter.objects.get(pk=dead_letter.pk).replays == 0


def test_it_shows_a_replayed_dead_letter_as_done_and_an_open_one_as_waiting(
    admin_client, dead_letter
):
    listing = reverse("admin:core_deadletter_changelist")
    open_row = admin_client.get(listing).content.decode()
    assert 'icon-no.svg" alt="False"' in open_row  # not replayed: the operator's to do

    _replay_selected(admin_client, dead_letter)
    replayed_row = admin_client.get(listing).content.decode()
    assert 'icon-yes.svg" alt="True"' in replayed_row
    assert "icon-no.svg" not in replayed_row


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


def test_it_creates_an_api_key_and_shows_it_once(admin_client, client, tenant):
    form = admin_client.get(reverse("admin:core_apikey_add")).content.decode()
    assert 'name="tenant"' in form and 'name="name"' in form
    assert 'name="digest"' not in form and 'name="lookup"' not in form

    page = admin_client.post(reverse("admin:core_apikey_add"), {"tenant": tenant.pk, "name": "ci"})

    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    key = ApiKey.objects.get()
    plain = page.context["plain"]
    assert plain.startswith(f"pk_{key.lookup}_") and plain in page.content.decode()
    assert "shown this once" in page.content.decode()
    assert (key.tenant, key.name, key.revoked) == (tenant, "ci", None)
    assert key.matches(plain.removeprefix(f"pk_{key.lookup}_"))
    for url in [
        reverse("admin:core_apikey_changelist"),
        reverse("admin:core_apikey_change", args=[key.pk]),
    ]:
        assert plain not in admin_client.get(url).content.decode()
    # Used once against the API, which the list then says.
    reply = client.post(
        "/api/events",
        {"type": "DeploymentPromoted", "data": {}},
        content_type="application/json",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert reply.status_code == 202
    key.refresh_from_db()
    assert key.last_used is not None


def test_it_revokes_api_keys_from_the_list_and_from_a_keys_page(admin_client, tenant):
    services.issue_api_key(tenant=tenant, name="one")
    services.issue_api_key(tenant=tenant, name="two")
    one, two = ApiKey.objects.order_by("name")
    admin_client.post(
        reverse("admin:core_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [one.pk]},
    )
    revoke = reverse("admin:core_apikey_revoke", args=[two.pk])
    page = admin_client.get(reverse("admin:core_apikey_change", args=[two.pk])).content.decode()
    assert revoke in page
    admin_client.post(revoke)

    assert all(key.revoked is not None for key in ApiKey.objects.all())
    page = admin_client.get(reverse("admin:core_apikey_change", args=[two.pk])).content.decode()
    assert revoke not in page


@pytest.mark.parametrize("model", ["event", "message"])
def test_it_shows_runtime_rows_read_only(admin_client, dead_letter, model):
    obj = dead_letter.message if model == "message" else dead_letter.message.event
    page = admin_client.get(reverse(f"admin:core_{model}_change", args=[obj.pk])).content.decode()
    assert "PermanentError: the deployment is unknown" in page  # a message or its failure
    assert 'name="_save"' not in page
    assert admin_client.get(reverse(f"admin:core_{model}_add")).status_code == 403


# --- What a dead letter says ---------------------------------------------------------------------


@pytest.fixture
def dead_delivery(tenant, settings):
    """A webhook delivery to a port nothing listens on: its retry command, dead after eight
    attempts."""
    from integrations.models import WebhookDelivery
    from integrations.webhooks.subscriptions import create_subscription

    settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_REQUIRE_HTTPS = ["127.0.0.1"], False
    subscription, _ = create_subscription(
        tenant=tenant, url="http://127.0.0.1:9/hooks", event_types=["DeploymentPromoted"]
    )
    event = services.publish(tenant=tenant, type="DeploymentPromoted", data={"version": "1"})
    dispatch.drain("WebhookDeliveryWorker")  # matching, and the first attempt: refused
    retries = Message.objects.filter(worker="WebhookDeliveryWorker", state=Message.State.PENDING)
    while retries.exists():  # each retry as its time comes, until the last gives up
        retries.update(due_at=timezone.now())
        dispatch.drain("WebhookDeliveryWorker")
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == WebhookDelivery.State.DEAD
    return event, subscription, delivery, DeadLetter.objects.get(event_type="WebhookDeliveryQueued")


def test_it_says_which_event_went_to_which_subscription_on_a_webhooks_dead_letter(
    admin_client, dead_delivery
):
    event, subscription, delivery, letter = dead_delivery
    delivery_url = reverse("admin:integrations_webhookdelivery_change", args=[delivery.pk])
    event_url = reverse("admin:core_event_change", args=[event.event_id])

    listing = admin_client.get(reverse("admin:core_deadletter_changelist")).content.decode()
    event_link = f'<a href="{event_url}" title="eventId {event.event_id}">DeploymentPromoted</a>'
    assert event_link in listing
    assert f'href="{delivery_url}"' in listing
    assert "DeploymentPromoted to http://127.0.0.1:9/hooks" in listing  # the subject's tooltip
    assert ">to http://127.0.0.1:9/hooks</a>" in listing  # under its event

    page = admin_client.get(reverse("admin:core_deadletter_change", args=[letter.pk]))
    text = page.content.decode()
    assert f'href="{delivery_url}"' in text
    subscription_url = reverse(
        "admin:integrations_webhooksubscription_change", args=[subscription.pk]
    )
    assert f'<a href="{subscription_url}">{subscription.pk}</a>' in text
    assert "URL: http://127.0.0.1:9/hooks" in text
    original = f'<a href="{event_url}">DeploymentPromoted</a> <span class="quiet">eventId '
    assert f"{original}{event.event_id}</span>" in text
    assert "gave up after 8 attempts; last: TransientError: NewConnectionError" in text
    assert "Open: replay it once the cause is fixed." in text


def test_it_lists_a_pages_dead_letters_with_one_query_per_kind_of_subject(
    admin_client, dead_delivery, django_assert_max_num_queries
):
    listing = reverse("admin:core_deadletter_changelist")
    admin_client.get(listing)  # the session and content types, once
    with django_assert_max_num_queries(12):
        assert admin_client.get(listing).status_code == 200


# --- Events and messages --------------------------------------------------------------------------


@pytest.fixture
def published(tenant):
    # Each names a trace, so the wildcard TelemetryCorrelationWorker takes it: a message each.
    named = {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736"}
    first = services.publish(
        tenant=tenant, type="BuildCompleted", data=named, source="ci", source_id="build-7"
    )
    second = services.publish(tenant=tenant, type="DeploymentPromoted", data=named)
    return first, second


def _listed(admin_client, model: str, **params) -> list:
    response = admin_client.get(reverse(f"admin:core_{model}_changelist"), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_it_lists_events_newest_first_and_finds_one_by_its_ids(admin_client, published):
    first, second = published
    assert [e.pk for e in _listed(admin_client, "event")] == [second.event_id, first.event_id]

    def found(term: str) -> list:
        return [e.pk for e in _listed(admin_client, "event", q=term)]

    assert found(str(first.event_id)) == [first.event_id]
    assert found(first.trace_id) == [first.event_id]
    assert found(first.trace_id.upper()) == [first.event_id]
    assert found("build-7") == [first.event_id]
    assert found("build") == []  # exact, never a LIKE
    only = _listed(admin_client, "event", type="DeploymentPromoted")
    assert [e.pk for e in only] == [second.event_id]


def test_it_finds_messages_by_their_event_and_filters_them_by_worker_and_state(
    admin_client, dead_letter
):
    message = dead_letter.message
    by_event = _listed(admin_client, "message", q=str(message.event_id))
    assert message in by_event
    assert _listed(admin_client, "message", q=str(message.pk)) == [message]
    assert _listed(admin_client, "message", worker="RejectingWorker", state__exact="dead") == [
        message
    ]
    assert _listed(admin_client, "message", worker="RejectingWorker", state__exact="done") == []
    assert _listed(admin_client, "message", q="not an id") == []


def test_it_links_each_worker_of_the_health_page_by_name(admin_client, db):
    page = admin_client.get(HEALTH_URL).content.decode()
    assert 'id="worker-WebhookDeliveryWorker"' in page


def test_it_finds_events_by_their_exact_source(admin_client, published):
    first, _ = published
    page = admin_client.get(reverse("admin:core_event_changelist")).content.decode()
    assert 'name="source"' in page  # the filter's box

    assert [e.pk for e in _listed(admin_client, "event", source="ci")] == [first.event_id]
    assert _listed(admin_client, "event", source="c") == []  # exact
    both = _listed(admin_client, "event", source="ci", q="build-7", type="BuildCompleted")
    assert [e.pk for e in both] == [first.event_id]


def test_it_finds_messages_by_their_events_ids_type_and_source(admin_client, published):
    first, second = published
    mine = set(Message.objects.filter(event_id=first.event_id))
    assert mine and set(Message.objects.filter(event_id=second.event_id))  # both have some
    for params in [
        {"q": first.trace_id},
        {"q": "build-7"},
        {"q": str(first.event_id)},
        {"type": "BuildCompleted"},
        {"source": "ci"},
    ]:
        assert set(_listed(admin_client, "message", **params)) == mine, params
    listed = [m.pk for m in _listed(admin_client, "message")]
    assert listed == sorted(listed, reverse=True)  # newest first


# --- The landing page -----------------------------------------------------------------------------

INDEX_URL = reverse("admin:index")


def _landing(admin_client) -> str:
    page = admin_client.get(INDEX_URL).content.decode()
    assert 'id="landing"' in page
    return page


def test_it_shows_the_overall_health_and_each_workers_dead_letters_on_the_landing_page(
    admin_client, dead_letter
):
    page = _landing(admin_client)

    assert 'Health: <span class="health-badge health-unhealthy">unhealthy</span>' in page
    assert "No cluster is running" in page
    row = _row(page, "landing-worker-RejectingWorker")
    dead = reverse("admin:core_deadletter_changelist") + "?worker=RejectingWorker&amp;status=open"
    assert f'<a class="alarming" href="{dead}">1</a>' in row
    assert f'href="{HEALTH_URL}#worker-RejectingWorker"' in row


def _row(page: str, row_id: str) -> str:
    found = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert found, f"no row {row_id}"
    return found.group(1)


def test_it_shows_each_clusters_heartbeat_on_the_landing_page(admin_client, db):
    now = timezone.now()
    ClusterHeartbeat.objects.create(
        cluster_id=uuid.uuid4(),
        name="ingestion",
        host="web-1",
        pid=4242,
        started=now - timedelta(hours=2, minutes=5),
        beat_at=now,
    )

    clusters = re.search(r'<table id="clusters">.*?</table>', _landing(admin_client), re.S)

    assert clusters is not None
    assert "ingestion" in clusters.group() and "web-1" in clusters.group()
    assert "2 h 5 min" in clusters.group()  # up for
    assert "No cluster is running" not in _landing(admin_client)


def test_it_links_a_workers_backlog_to_the_message_waiting_longest(
    admin_client, tenant, make_worker
):
    worker = make_worker("SlowWorker")
    for _ in range(3):
        services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    mine = Message.objects.filter(worker=worker.name)
    mine.update(due_at=timezone.now() - timedelta(minutes=1))
    longest = mine.order_by("id")[1]
    mine.filter(pk=longest.pk).update(due_at=timezone.now() - timedelta(minutes=10))

    row = _row(_landing(admin_client), "landing-worker-SlowWorker")

    url = console.pending_url(worker.name).replace("&", "&amp;")
    assert f'<a href="{url}">3</a>' in row  # the backlog
    assert re.search(r">10 min \d+ s</a>", row)  # the oldest due, linked the same
    listed = admin_client.get(console.pending_url(worker.name)).context["cl"].result_list
    assert next(iter(listed)).pk == longest.pk
    assert set(listed) == set(mine)


def test_it_draws_the_last_hours_rates_a_minute_a_point(
    admin_client, tenant, django_capture_on_commit_callbacks
):
    services.publish(tenant=tenant, type="DeploymentPromoted", data={})
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        prometheus.add({(ingest_metrics.OTLP_ITEMS, ("traces", "accepted")): 4}, now=now)
        prometheus.add(
            {
                (ingest_metrics.OTLP_ITEMS, ("traces", "accepted")): 3,
                (ingest_metrics.OTLP_REQUESTS, ("traces", "429")): 2,
                (ingest_metrics.OTLP_REQUESTS, ("traces", "200")): 5,
                (webhook_metrics.ATTEMPTS, ("5xx",)): 1,
                (webhook_metrics.ATTEMPTS, ("2xx",)): 6,
            },
            now=now - timedelta(minutes=5),
        )
        prometheus.add(  # older than the hour: not shown
            {(ingest_metrics.OTLP_ITEMS, ("traces", "accepted")): 100},
            now=now - timedelta(minutes=61),
        )

    rates = {r.name: r for group in console.rates(now=now).values() for r in group}

    spans = rates["Spans accepted"]
    assert len(spans.counts) == 60
    assert (spans.counts[-1], spans.counts[-6], spans.total) == (4, 3, 7)
    refused = rates["OTLP requests refused"]
    assert (refused.total, refused.note, refused.alarming) == (2, "429: 2", True)
    assert rates["Webhook attempts delivered (2xx)"].total == 6
    assert rates["Webhook attempts failed"].note == "5xx: 1"
    assert rates["Events published"].counts[-1] >= 1
    assert not rates["Log records accepted"].alarming
    page = _landing(admin_client)
    assert 'aria-label="Spans accepted per minute, the last hour"' in page
    assert "<polyline" in page


def test_it_lists_the_latest_failures_each_a_click_from_its_message_and_dead_letter(
    admin_client, dead_letter
):
    page = _landing(admin_client)
    section = re.search(r'<section id="latest-failures">.*?</section>', page, re.S)

    assert section is not None
    assert "PermanentError: the deployment is unknown" in section.group()
    assert reverse("admin:core_message_change", args=[dead_letter.message_id]) in section.group()
    assert reverse("admin:core_deadletter_change", args=[dead_letter.pk]) in section.group()


def test_it_draws_the_landing_page_in_a_few_queries(
    admin_client, dead_letter, django_assert_max_num_queries
):
    admin_client.get(INDEX_URL)  # the session, content types and the cache table, once
    # The session and user, the admin's log, and the sections' fourteen (see core.console): the
    # incidents section added three (its incidents, their counts, the instances firing), the
    # integrations section two (its counts as one UNION, the connections in trouble).
    with django_assert_max_num_queries(17):
        _landing(admin_client)


def test_it_shows_the_landing_page_to_who_may_see_the_platforms_tables_only(client, db):
    user = get_user_model().objects.create_user("auditor", password="pw", is_staff=True)
    client.force_login(user)
    assert 'id="landing"' not in client.get(INDEX_URL).content.decode()

    user.user_permissions.add(Permission.objects.get(codename="view_deadletter"))

    assert 'id="landing"' in client.get(INDEX_URL).content.decode()


def test_it_draws_a_section_a_domain_adds_to_the_landing_page(admin_client, db, monkeypatch):
    connections = console.Section(
        "connections", "admin/core/landing/failures.html", lambda now: {"failures": []}
    )
    monkeypatch.setattr(console, "SECTIONS", [*console.SECTIONS, connections])

    page = _landing(admin_client)

    ids = re.findall(r'<section id="([\w-]+)">', page)
    assert ids == ["health", "rates", "latest-failures", "incidents", "integrations", "connections"]


def test_it_lists_the_open_incidents_critical_and_newest_first_on_the_landing_page(
    admin_client, tenant
):
    from observability.alerting.models import AlertInstance, AlertRule
    from observability.incidents.models import Incident
    from tests.observability.incidents.factories import T0, fire, handle

    minute = timedelta(minutes=1)

    fire(tenant, rule="r1", name="queue deep", severity="warning", at=T0)
    fire(tenant, rule="r2", name="errors up", at=T0 + minute)
    fire(tenant, rule="r3", name="latency up", at=T0 + 2 * minute)
    handle()
    rule = AlertRule.objects.create(tenant=tenant, name="queue deep", spec={})
    for key, state in (("a", "firing"), ("b", "firing"), ("c", "recovering"), ("d", "normal")):
        AlertInstance.objects.create(
            tenant=tenant, rule=rule, instance_key=key, state={}, state_name=state, since=T0
        )

    section = re.search(r'<section id="incidents">.*?</section>', _landing(admin_client), re.S)

    assert section is not None
    html = section.group()
    titles = re.findall(r'<td><a href="[^"]+">([^<]+)</a></td>', html)
    assert titles == ["latency up on checkout", "errors up on checkout", "queue deep on checkout"]
    incident = Incident.objects.get(title="latency up on checkout")
    assert reverse("admin:incidents_incident_change", args=[incident.pk]) in html
    assert "2 open critical" in html and "1 open warning" in html
    assert "2 alert instances firing" in html and "1 recovering" in html
