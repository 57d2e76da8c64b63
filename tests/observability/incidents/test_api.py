"""GET /api/incidents (filters, pages), GET /api/incidents/<id> (triggers, lineage, timeline),
and POST .../acknowledge, .../resolve, .../comments; each tenant sees and changes its own
incidents only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core import services
from core.models import Event
from observability.incidents.models import Incident, IncidentTimelineEntry
from tests.observability.incidents.factories import T0, TRACE_A, clear, fire, handle

pytestmark = pytest.mark.django_db
MIN = timedelta(minutes=1)


@pytest.fixture
def key(tenant) -> str:
    return services.issue_api_key(tenant=tenant, name="pager")


@pytest.fixture
def api(client, key):
    class Api:
        def get(self, path: str, **params):
            return client.get(path, params, headers={"Authorization": f"Bearer {key}"})

        def post(self, path: str, body: dict | None = None):
            return client.post(
                path,
                body or {},
                content_type="application/json",
                headers={"Authorization": f"Bearer {key}"},
            )

    return Api()


@pytest.fixture
def incident(tenant) -> Incident:
    fire(tenant, instance="eu-1", traces=(TRACE_A,))
    fire(tenant, instance="eu-2", severity="warning", at=T0 + MIN)
    handle()
    return Incident.objects.get()


def test_it_lists_incidents_newest_first_with_their_trigger_counts(api, tenant, incident):
    fire(tenant, service="search", instance="s-1", severity="warning", at=T0 + 2 * MIN)
    handle()

    body = api.get("/api/incidents").json()

    assert [(i["number"], i["title"]) for i in body["results"]] == [
        (2, "checkout errors on search"),
        (1, "checkout errors on checkout"),
    ]
    first = body["results"][1]
    assert (first["status"], first["severity"], first["services"]) == (
        "open",
        "critical",
        ["checkout"],
    )
    assert (first["triggerCount"], first["activeTriggerCount"]) == (2, 2)


def test_it_filters_incidents_by_status_severity_service_and_since(api, tenant, incident):
    fire(tenant, service="search", instance="s-1", severity="warning", at=T0 + 2 * MIN)
    clear(tenant, service="search", instance="s-1", at=T0 + 3 * MIN)
    handle()

    def numbers(**params) -> list[int]:
        response = api.get("/api/incidents", **params)
        assert response.status_code == 200, response.content
        return [i["number"] for i in response.json()["results"]]

    assert numbers(status="resolved") == [2]
    assert numbers(severity="critical") == [1]
    assert numbers(service="search") == [2]
    assert numbers(since=(T0 + MIN).isoformat()) == [2]
    assert numbers(since="1h") == []  # opened in 2026-03, not in the last hour
    assert numbers(status="") == [2, 1]


def test_it_pages_incidents_with_a_cursor(api, tenant, incident):
    fire(tenant, service="search", instance="s-1", at=T0 + 2 * MIN)
    handle()

    first = api.get("/api/incidents", limit=1).json()
    second = api.get(first["next"]).json()

    assert [i["number"] for i in first["results"] + second["results"]] == [2, 1]
    assert second["next"] is None


def test_it_refuses_an_unknown_filter_value_saying_which_are_known(api):
    response = api.get("/api/incidents", status="firing")

    assert response.status_code == 400
    assert "status" in response.json()["details"]


def test_it_shows_an_incident_with_triggers_lineage_and_timeline(api, incident):
    body = api.get(f"/api/incidents/{incident.pk}").json()

    assert body["number"] == 1
    assert [(t["name"], t["severity"], t["state"]) for t in body["triggers"]] == [
        ("checkout errors", "critical", "active"),
        ("checkout errors", "warning", "active"),
    ]
    assert [t["traceId"] for t in body["lineage"]] == [TRACE_A]
    assert [e["kind"] for e in body["timeline"]] == ["opened", "trigger"]
    assert body["timeline"][0]["actor"] == "system"


def test_it_finds_an_incident_by_its_number_too(api, incident):
    assert api.get("/api/incidents/1").json()["id"] == str(incident.pk)
    assert api.get("/api/incidents/%231").json()["id"] == str(incident.pk)


@pytest.mark.parametrize("incident_id", ["7", "not-an-id", "00000000-0000-0000-0000-000000000000"])
def test_it_answers_404_for_an_incident_it_does_not_have(api, incident, incident_id):
    response = api.get(f"/api/incidents/{incident_id}")

    assert response.status_code == 404
    assert "GET /api/incidents lists them" in response.json()["error"]


def test_it_acknowledges_an_incident_under_the_keys_name_once(api, incident, key):
    first = api.post(f"/api/incidents/{incident.pk}/acknowledge")
    again = api.post(f"/api/incidents/{incident.pk}/acknowledge")

    assert first.status_code == again.status_code == 200
    body = again.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledgedBy"] == f"API key {key[:19]} (pager)"
    assert IncidentTimelineEntry.objects.filter(kind="acknowledged").count() == 1


def test_it_refuses_to_acknowledge_a_resolved_incident_saying_why(api, incident):
    api.post(f"/api/incidents/{incident.pk}/resolve")

    response = api.post(f"/api/incidents/{incident.pk}/acknowledge")

    assert response.status_code == 409
    assert "only an open incident is acknowledged" in response.json()["error"]


def test_it_resolves_an_incident_and_publishes_incident_resolved_once(api, incident):
    first = api.post(f"/api/incidents/{incident.pk}/resolve")
    again = api.post(f"/api/incidents/{incident.pk}/resolve")

    assert first.status_code == again.status_code == 200
    body = again.json()
    assert (body["status"], body["activeTriggerCount"]) == ("resolved", 0)
    assert body["resolvedBy"].startswith("API key pk_")
    assert Event.objects.filter(type="IncidentResolved").count() == 1
    assert timezone.now() - Incident.objects.get().resolved_at < timedelta(minutes=5)


def test_it_adds_a_comment_to_the_timeline(api, incident):
    response = api.post(f"/api/incidents/{incident.pk}/comments", {"text": "rolling back 2.4"})

    assert response.status_code == 201
    assert response.json()["kind"] == "comment"
    entry = IncidentTimelineEntry.objects.get(kind="comment")
    assert (entry.message, entry.actor.startswith("API key pk_")) == ("rolling back 2.4", True)


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": "x" * 10_001}])
def test_it_refuses_an_empty_or_overlong_comment(api, incident, body):
    response = api.post(f"/api/incidents/{incident.pk}/comments", body)

    assert response.status_code == 400
    assert "text" in response.json()["details"]


ENDPOINTS = [
    ("get", "/api/incidents/{id}"),
    ("post", "/api/incidents/{id}/acknowledge"),
    ("post", "/api/incidents/{id}/resolve"),
    ("post", "/api/incidents/{id}/comments"),
]


@pytest.mark.parametrize("method, path", ENDPOINTS)
@pytest.mark.parametrize("by", ["id", "number"])
def test_it_keeps_another_tenants_incident_out_of_reach(
    client, incident, other_tenant, method, path, by
):
    other = services.issue_api_key(tenant=other_tenant)
    named = incident.pk if by == "id" else incident.number
    url = path.format(id=named)

    response = getattr(client, method)(
        url,
        {"text": "not mine"} if method == "post" else {},
        content_type="application/json",
        headers={"Authorization": f"Bearer {other}"},
    )

    assert response.status_code == 404
    incident.refresh_from_db()
    assert incident.status == "open"
    assert not IncidentTimelineEntry.objects.filter(kind="comment").exists()


def test_it_lists_only_the_callers_incidents(client, incident, other_tenant):
    fire(other_tenant, service="search")
    handle()
    other = services.issue_api_key(tenant=other_tenant)

    body = client.get("/api/incidents", headers={"Authorization": f"Bearer {other}"}).json()

    assert [i["title"] for i in body["results"]] == ["checkout errors on search"]


@pytest.mark.parametrize("method, path", [("get", "/api/incidents"), *ENDPOINTS])
def test_it_asks_for_an_api_key(client, incident, method, path):
    response = getattr(client, method)(path.format(id=incident.pk))

    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]
