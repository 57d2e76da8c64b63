"""The incidents console: the list, an incident's page with its timeline, triggers and lineage
(each stored trace a link to its waterfall), and the Acknowledge and Resolve buttons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from core.models import Event
from observability.incidents.models import Incident
from observability.models import TraceRecord
from tests.observability.incidents.factories import T0, TRACE_A, TRACE_B, clear, fire, handle

pytestmark = pytest.mark.django_db
INCIDENTS = reverse("admin:incidents_incident_changelist")


def page_of(incident: Incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def action(incident: Incident, name: str) -> str:
    return reverse(f"admin:incidents_incident_{name}", args=[incident.pk])


@pytest.fixture
def incident(tenant) -> Incident:
    fire(tenant, instance="eu-1", traces=(TRACE_A, TRACE_B))
    fire(tenant, instance="eu-2", severity="warning", at=T0 + timedelta(minutes=1))
    handle()
    return Incident.objects.get()


def test_it_lists_incidents_with_status_severity_and_trigger_counts(admin_client, incident):
    response = admin_client.get(INCIDENTS)

    page = response.content.decode()
    assert response.status_code == 200
    assert "#1" in page and "checkout errors on checkout" in page
    assert "2 (2)" in page  # triggers (active)


def test_it_finds_an_incident_by_its_number(admin_client, incident, tenant):
    fire(tenant, service="search", instance="s-1")
    handle()

    listing = admin_client.get(INCIDENTS, {"q": "#1"})

    assert [i.number for i in listing.context["cl"].result_list] == [1]


def test_it_shows_the_timeline_triggers_and_lineage_linking_stored_traces(
    admin_client, incident, tenant
):
    record = TraceRecord.objects.create(
        tenant=tenant, trace_id=TRACE_A, root_name="GET /cart", root_service="checkout",
        services=["checkout"], span_count=4, error_count=1, start_ns=1, end_ns=2, status="error",
    )  # fmt: skip

    page = admin_client.get(page_of(incident)).content.decode()

    assert "Opened by checkout errors on checkout (critical)" in page
    assert "eu-2" in page and "warning" in page
    trace_page = reverse("admin:observability_tracerecord_change", args=[record.pk])
    assert f'href="{trace_page}"' in page
    assert TRACE_B in page  # not stored yet: shown, not linked
    assert action(incident, "acknowledge") in page and action(incident, "resolve") in page


def test_it_acknowledges_then_resolves_an_incident_from_its_page(admin_client, incident):
    acknowledged = admin_client.post(action(incident, "acknowledge"), follow=True)
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("acknowledged", "console user admin")
    assert "Acknowledged incident #1." in acknowledged.content.decode()
    assert action(incident, "acknowledge") not in acknowledged.content.decode()

    resolved = admin_client.post(action(incident, "resolve"), follow=True)
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by) == ("resolved", "console user admin")
    assert "Resolved incident #1." in resolved.content.decode()
    assert Event.objects.filter(type="IncidentResolved").count() == 1
    kinds = list(incident.timeline.order_by("at", "id").values_list("kind", "actor"))
    assert kinds[-2:] == [
        ("acknowledged", "console user admin"),
        ("resolved", "console user admin"),
    ]


def test_it_offers_no_button_on_a_resolved_incident(admin_client, incident, tenant):
    clear(tenant, instance="eu-1", at=T0 + timedelta(minutes=5))
    clear(tenant, instance="eu-2", at=T0 + timedelta(minutes=5))
    handle()

    page = admin_client.get(page_of(incident)).content.decode()

    assert action(incident, "acknowledge") not in page
    assert action(incident, "resolve") not in page


def test_it_lets_a_staff_member_who_may_only_view_incidents_change_nothing(client, incident):
    viewer = User.objects.create_user("viewer", password="unused-in-this-test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_incident"))
    client.force_login(viewer)

    page = client.get(page_of(incident)).content.decode()

    assert "checkout errors on checkout" in page
    assert action(incident, "resolve") not in page
    assert client.post(action(incident, "resolve")).status_code == 403
    incident.refresh_from_db()
    assert incident.status == "open"


def test_it_adds_and_deletes_no_incident_by_hand(admin_client, incident):
    assert admin_client.get(reverse("admin:incidents_incident_add")).status_code == 403
    delete = reverse("admin:incidents_incident_delete", args=[incident.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_it_puts_a_comment_from_the_incidents_page_on_its_timeline(admin_client, incident):
    page = admin_client.get(page_of(incident)).content.decode()
    assert f'<form method="post" action="{action(incident, "comment")}"' in page

    done = admin_client.post(
        action(incident, "comment"), {"text": "  rolled back 4.2  "}, follow=True
    )

    assert "Commented on incident #1." in done.content.decode()
    entry = incident.timeline.order_by("at", "id").last()
    assert (entry.kind, entry.actor, entry.message) == (
        "comment",
        "console user admin",
        "rolled back 4.2",
    )
    assert "rolled back 4.2" in done.content.decode()  # back on the page, on its timeline
    incident.refresh_from_db()
    assert incident.status == "open"  # a comment changes nothing else


def test_it_asks_again_for_a_comment_without_text(admin_client, incident):
    entries = incident.timeline.count()

    answer = admin_client.post(action(incident, "comment"), {"text": "   "})

    page = answer.content.decode()
    assert answer.status_code == 200 and "This field is required." in page
    assert 'name="text"' in page  # the form again, on the action's own page
    assert incident.timeline.count() == entries


def test_it_lets_no_viewer_comment(client, incident):
    viewer = User.objects.create_user("viewer", password="unused-in-this-test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_incident"))
    client.force_login(viewer)

    assert action(incident, "comment") not in client.get(page_of(incident)).content.decode()
    assert client.post(action(incident, "comment"), {"text": "hi"}).status_code == 403
    assert not incident.timeline.filter(kind="comment").exists()
