"""The alerting API: rules with revisions and preview, instances and their history, silences
and SLOs; per-tenant key, errors beside their fields."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from core import services
from core.runtime import scheduling
from observability.alerting.models import AlertRule
from observability.incidents.models import Incident
from tests.helpers import drain_all
from tests.observability.alerting.stored import (
    Telemetry,
    aggregate,
    events,
    minute,
    minute_by_minute,
    rule,
    tick,
)

pytestmark = pytest.mark.django_db
SPEC = {
    "query": {"metric": "queue.depth", "window": "1m", "field": "last"},
    "groupBy": ["service.name"],
    "op": ">",
    "critical": 90,
    "flapChanges": 0,
}


class Api:
    def __init__(self, tenant):
        self.key = services.issue_api_key(tenant=tenant, name="tests")
        self.client = Client()

    def __call__(self, method: str, path: str, body=None, **query):
        headers = {"Authorization": f"Bearer {self.key}"}
        if method == "get":
            return self.client.get(path, query, headers=headers)
        return getattr(self.client, method)(
            path, json.dumps(body or {}), content_type="application/json", headers=headers
        )


@pytest.fixture
def stored(tenant):
    """queue.depth of checkout and cart, minutes 0-5, aggregated."""
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [50, 95, 95, 95, 50, 50], service="checkout")
    telemetry.gauge("queue.depth", [10, 10, 10, 10, 10, 10], service="cart")
    telemetry.histogram("latency", 0, [1, 2, 3], [10.0, 50.0])
    aggregate(6)
    return telemetry


@pytest.fixture
def api(tenant):
    return Api(tenant)


# Rules


def test_it_creates_a_rule_with_every_field_written_out_and_its_first_revision(api, stored):
    reply = api("post", "/api/alerts/rules", {"name": "queue too deep", "spec": SPEC})

    assert reply.status_code == 201, reply.content
    created = reply.json()
    assert created["revision"] == 1 and created["groupKey"] == "alert:{ruleId}:{service}"
    assert created["spec"]["noData"] == "nodata" and created["spec"]["denominator"] is None
    assert created["createdBy"].startswith("API key pk_") and "(tests)" in created["createdBy"]
    revisions = api("get", f"/api/alerts/rules/{created['id']}/revisions").json()
    assert [r["revision"] for r in revisions["results"]] == [1]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"query": {"metric": "queue.size"}}, "spec.query.metric", "no metric named"),
        ({"query": {"metric": "queue.depth", "field": "p95"}}, "spec.query.field", "a gauge"),
        ({"query": {"metric": "latency", "field": "delta"}}, "spec.query.field", "histogram"),
        ({"warning": 95}, "spec.warning", "must be under critical (90) to trigger first"),
        ({"resolve": 99}, "spec.resolve", "would resolve while it still breaches"),
        ({"comparison": "percent_change"}, "spec.offset", "needs one of 1h, 1d, 1w"),
        ({"cadenceSeconds": 90}, "spec.cadenceSeconds", "whole minutes"),
    ],
)
def test_it_refuses_a_rule_with_the_reason_beside_the_field(api, stored, change, field, words):
    reply = api("post", "/api/alerts/rules", {"name": "bad", "spec": SPEC | change})

    assert reply.status_code == 400, reply.content
    details = reply.json()["details"]
    assert words in " ".join(details[field]), details
    assert not AlertRule.objects.exists()


def test_it_refuses_a_group_key_naming_a_label_it_does_not_group_by(api, stored):
    body = {"name": "bad", "spec": SPEC, "groupKey": "alert:{region}"}

    reply = api("post", "/api/alerts/rules", body)

    assert reply.status_code == 400
    assert "{region} is unknown" in reply.json()["details"]["groupKey"][0]


def test_it_refuses_a_second_rule_of_the_same_name(api, stored):
    api("post", "/api/alerts/rules", {"name": "queue", "spec": SPEC})

    reply = api("post", "/api/alerts/rules", {"name": "queue", "spec": SPEC})

    assert reply.status_code == 400 and "exists already" in reply.json()["details"]["name"][0]


def test_it_saves_a_revision_on_every_change(api, stored):
    rule_id = api("post", "/api/alerts/rules", {"name": "queue", "spec": SPEC}).json()["id"]

    reply = api("patch", f"/api/alerts/rules/{rule_id}", {"spec": SPEC | {"critical": 80}})
    api("patch", f"/api/alerts/rules/{rule_id}", {"enabled": False})

    assert reply.status_code == 200 and reply.json()["spec"]["critical"] == 80
    revisions = api("get", f"/api/alerts/rules/{rule_id}/revisions").json()["results"]
    assert [(r["revision"], r["spec"]["critical"], r["enabled"]) for r in revisions] == [
        (3, 80, False),
        (2, 80, True),
        (1, 90, True),
    ]


def test_it_resolves_the_open_alerts_of_a_rule_it_deletes(api, tenant, stored):
    found = rule(tenant)
    tick(3)  # minute 2: 95
    assert [e.type for e in events(tenant)] == ["AlertTriggered"]

    reply = api("delete", f"/api/alerts/rules/{found.pk}")

    assert reply.status_code == 204
    resolved = events(tenant)[-1]
    assert resolved.type == "AlertResolved"
    assert resolved.data["reason"] == "the rule was deleted: the alert no longer fires"
    assert resolved.data["triggerKey"] == events(tenant)[0].data["triggerKey"]


# Preview


def test_it_previews_a_draft_rule_with_the_live_evaluator(api, tenant, stored):
    body = {
        "spec": SPEC | {"forSeconds": 60},
        "start": minute(0).isoformat(),
        "end": minute(6).isoformat(),
    }

    reply = api("post", "/api/alerts/rules/preview", body)

    assert reply.status_code == 200, reply.content
    found = reply.json()
    assert (found["windows"], found["instanceCount"], found["events"]) == (6, 2, 2)
    checkout = next(i for i in found["instances"] if i["labels"] == {"service.name": "checkout"})
    assert [(i["state"], i["start"][11:16], i["end"][11:16]) for i in checkout["intervals"]] == [
        ("normal", "09:00", "09:01"),
        ("pending", "09:01", "09:02"),
        ("firing", "09:02", "09:04"),
        ("normal", "09:04", "09:06"),
    ]
    assert [t["event"] for t in checkout["transitions"]] == [
        None,
        "AlertTriggered",
        "AlertResolved",
    ]
    assert [v["value"] for v in checkout["values"]] == [50, 95, 95, 95, 50, 50]
    # The live tick of the same rule over the same windows says the same.
    rule(tenant, forSeconds=60)
    AlertRule.objects.update(last_window=None)
    minute_by_minute(6, since=0)
    live = [(e.type, e.data["windowStart"]) for e in events(tenant)]
    previewed = [(t["event"], t["windowStart"]) for t in checkout["transitions"] if t["event"]]
    assert [(kind, start[:19]) for kind, start in live[-2:]] == [
        (kind, start[:19]) for kind, start in previewed
    ]


def test_it_previews_the_triggers_and_the_incidents_the_live_workers_would_have_made(
    api, tenant, stored
):
    body = {"spec": SPEC, "start": minute(0).isoformat(), "end": minute(6).isoformat()}

    reply = api("post", "/api/alerts/rules/preview", body)

    assert reply.status_code == 200, reply.content
    found = reply.json()
    assert [(t["event"], t["data"]["windowEnd"][11:16]) for t in found["triggers"]] == [
        ("AlertTriggered", "09:02"),
        ("AlertResolved", "09:05"),
    ]
    assert found["triggers"][0]["data"]["groupKey"] == "alert:preview:checkout"
    (incident,) = found["incidents"]
    assert (incident["number"], incident["status"], incident["severity"]) == (
        1,
        "resolved",
        "critical",
    )
    assert [(c["change"], c["at"][11:16]) for c in incident["changes"]] == [
        ("opened", "09:02"),
        ("resolved", "09:05"),
    ]
    # IncidentAnalysisWorker, fed by the live tick of the same rule, says the same.
    rule(tenant)
    AlertRule.objects.update(last_window=None)
    minute_by_minute(6, since=0)
    drain_all("IncidentAnalysisWorker")
    live = Incident.objects.get(tenant=tenant)
    assert (live.status, live.severity, live.title) == (
        "resolved",
        "critical",
        incident["title"].replace("preview", "queue too deep"),
    )
    assert (live.opened_at.isoformat()[:19], live.resolved_at.isoformat()[:19]) == (
        incident["openedAt"][:19],
        incident["resolvedAt"][:19],
    )


def test_it_groups_a_previews_instances_by_the_group_key_it_is_given(api, stored):
    body = {
        "spec": SPEC | {"critical": 5},
        "name": "queues",
        "groupKey": "alert:{ruleId}",
        "start": minute(0).isoformat(),
        "end": minute(6).isoformat(),
    }

    found = api("post", "/api/alerts/rules/preview", body).json()

    assert [t["event"] for t in found["triggers"]] == ["AlertTriggered", "AlertTriggered"]
    (incident,) = found["incidents"]
    assert incident["title"] in ("queues on cart", "queues on checkout")  # the first trigger's
    assert (incident["status"], incident["groupKey"]) == ("open", "alert:preview")
    assert len(incident["instanceKeys"]) == 2
    assert [c["change"] for c in incident["changes"]] == ["opened"]


def test_it_refuses_a_preview_whose_group_key_names_a_label_it_does_not_group_by(api, stored):
    body = {"spec": SPEC, "groupKey": "alert:{region}", "start": minute(0).isoformat()}

    reply = api("post", "/api/alerts/rules/preview", body)

    assert reply.status_code == 400
    assert "groupKey" in reply.json()["details"]


def test_it_refuses_a_preview_longer_than_its_limit(api, stored, settings):
    settings.ALERT_PREVIEW_MAX_WINDOWS = 10
    body = {"spec": SPEC, "start": minute(0).isoformat(), "end": minute(60).isoformat()}

    reply = api("post", "/api/alerts/rules/preview", body)

    assert reply.status_code == 400
    assert "60 windows of 1m: at most 10" in reply.json()["details"]["start"][0]


# Instances and history


def test_it_lists_instances_with_their_state_and_filters_them(api, tenant, stored):
    found = rule(tenant)
    tick(3)

    everything = api("get", "/api/alerts/instances").json()["results"]
    firing = api("get", "/api/alerts/instances", state="firing").json()["results"]
    cart = api("get", "/api/alerts/instances", service="cart").json()["results"]

    assert len(everything) == 2
    assert [(i["labels"], i["severity"], i["ruleId"]) for i in firing] == [
        ({"service.name": "checkout"}, "critical", str(found.pk))
    ]
    assert firing[0]["reason"] == "last of queue.depth was 95: > 90 (critical)"
    assert [i["state"] for i in cart] == ["normal"]


def test_it_lists_the_changes_that_explain_an_alert(api, tenant, stored):
    found = rule(tenant)
    tick(3)

    changes = api("get", "/api/alerts/changes", rule=str(found.pk)).json()["results"]

    assert [(c["kind"], c["published"], c["value"]) for c in changes] == [
        ("triggered", "AlertTriggered", 95.0)
    ]


# Silences


def silence_body(**overrides):
    body = {
        "matchers": [{"label": "service.name", "op": "=", "value": "checkout"}],
        "endsAt": minute(60).isoformat(),
        "startsAt": minute(0).isoformat(),
        "createdBy": "ops@example.com",
        "comment": "deploying",
    }
    return body | overrides


def test_it_creates_and_changes_a_silence(api):
    reply = api("post", "/api/alerts/silences", silence_body())
    assert reply.status_code == 201, reply.content
    silence_id = reply.json()["id"]

    changed = api("patch", f"/api/alerts/silences/{silence_id}", {"comment": "longer"})

    assert changed.json()["comment"] == "longer" and changed.json()["state"] == "expired"
    assert api("delete", f"/api/alerts/silences/{silence_id}").status_code == 204
    assert api("get", f"/api/alerts/silences/{silence_id}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"matchers": []}, "matchers", "at least one matcher"),
        ({"matchers": [{"label": "x", "op": "=~", "value": ".*"}]}, "matchers", "silence of"),
        ({"matchers": [{"label": "x", "op": "=~", "value": "("}]}, "matchers", "not a regex"),
        ({"endsAt": minute(0).isoformat()}, "endsAt", "after startsAt"),
        ({"comment": " "}, "comment", ""),
    ],
)
def test_it_refuses_a_silence_with_the_reason(api, change, field, words):
    reply = api("post", "/api/alerts/silences", silence_body(**change))

    assert reply.status_code == 400
    assert words in " ".join(reply.json()["details"][field])


def test_it_previews_the_instances_a_silence_matches_in_every_state(api, tenant, stored):
    rule(tenant)
    tick(3)

    reply = api(
        "post",
        "/api/alerts/silences/preview",
        {"matchers": [{"label": "service.name", "op": "=~", "value": "c.*"}]},
    )

    found = reply.json()
    assert found["matched"] == 2
    assert sorted(i["state"] for i in found["instances"]) == ["firing", "normal"]


# SLOs

NEVER = {"name": "x", "severity": "page", "burnRate": 200, "longWindow": "1h", "shortWindow": "5m"}
SLO = {
    "service": "checkout",
    "sli": {"type": "latency", "histogram": {"metric": "latency"}, "bound": 50.0},
    "objective": 0.99,
}


def test_it_creates_an_slo_and_reports_its_status(api, stored):
    reply = api("post", "/api/slos", {"name": "checkout latency", "spec": SLO})
    assert reply.status_code == 201, reply.content
    slo_id = reply.json()["id"]
    assert [r["name"] for r in reply.json()["spec"]["rows"]] == [
        "page-fast",
        "page-slow",
        "ticket-fast",
        "ticket-slow",
    ]

    scheduling.fire("MetricAggregationWorker", "1h", now=minute(60))  # the hour of minute 0
    drain_all("MetricAggregationWorker")

    status = api("get", f"/api/slos/{slo_id}/status").json()

    # Three of the six observations were over 50 ms, days ago: in the period, not in the
    # last day, whose rows cannot tell.
    assert (status["sli"], status["period"]["total"], status["state"]) == (0.5, 6, "absent")
    assert {b["window"] for b in status["burns"]} >= {"5m", "1h", "6h", "1d", "3d"}
    assert "the metric is absent" in status["reason"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"objective": 99.9}, "spec.objective", "99.9% is 0.999"),
        ({"sli": SLO["sli"] | {"bound": 30.0}}, "spec.sli", "choose one of: 10, 50"),
        ({"rows": [NEVER]}, "spec.rows", "can never fire"),
    ],
)
def test_it_refuses_an_slo_with_the_reason(api, stored, change, field, words):
    reply = api("post", "/api/slos", {"name": "bad", "spec": SLO | change})

    assert reply.status_code == 400, reply.content
    assert words in " ".join(reply.json()["details"][field])


# Tenants


def test_it_shows_no_tenant_anothers_rules_instances_silences_or_slos(tenant, other_tenant, stored):
    found = rule(tenant)
    tick(3)
    api = Api(tenant)
    silence_id = api("post", "/api/alerts/silences", silence_body()).json()["id"]
    slo_id = api("post", "/api/slos", {"name": "latency", "spec": SLO}).json()["id"]
    other = Api(other_tenant)

    for path in (
        f"/api/alerts/rules/{found.pk}",
        f"/api/alerts/rules/{found.pk}/revisions",
        f"/api/alerts/silences/{silence_id}",
        f"/api/slos/{slo_id}",
        f"/api/slos/{slo_id}/status",
    ):
        assert other("get", path).status_code == 404, path
    for path in (
        "/api/alerts/rules",
        "/api/alerts/instances",
        "/api/alerts/changes",
        "/api/alerts/silences",
        "/api/slos",
    ):
        assert other("get", path).json()["results"] == [], path
    assert other("patch", f"/api/alerts/rules/{found.pk}", {"enabled": False}).status_code == 404
    assert other("delete", f"/api/slos/{slo_id}").status_code == 404
    preview = other(
        "post",
        "/api/alerts/silences/preview",
        {"matchers": [{"label": "service.name", "op": "=", "value": "checkout"}]},
    )
    assert preview.json()["matched"] == 0
    draft = {"spec": SPEC, "start": minute(0).isoformat(), "end": minute(6).isoformat()}
    assert other("post", "/api/alerts/rules/preview", draft).status_code == 400  # no metric


def test_it_needs_a_key(client):
    assert client.get("/api/alerts/rules").status_code == 401
    assert client.get("/api/slos").status_code == 401


def test_it_answers_a_malformed_id_with_not_found(api):
    assert api("get", "/api/alerts/rules/not-a-uuid").status_code == 404
    assert api("get", "/api/slos/x" + "0" * 40 + "/status").status_code == 404
