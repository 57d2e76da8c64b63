"""The failures API: list with filters, detail with attempts, retry, acknowledge, ignore, bulk
retry; each scoped to the caller's tenant and in the OpenAPI schema."""

from __future__ import annotations

import pytest

from integrations.failures.models import IntegrationFailure, Status
from tests.integrations.failures.support import after, published, report, sweep

pytestmark = pytest.mark.django_db
BASE = "/api/integrations/failures"


def test_it_lists_failures_newest_first_with_filters(tenant, api):
    report(tenant, failure_id="s-1")
    report(tenant, failure_id="r-1", kind="rotation", at=after(1))
    report(tenant, failure_id="a-1", error="401", status=401, at=after(2))

    everything = api("get", BASE).json()["results"]
    poisoned = api("get", f"{BASE}?status=poisoned").json()["results"]
    rotations = api("get", f"{BASE}?kind=rotation").json()["results"]

    assert [f["failureId"] for f in everything] == ["a-1", "r-1", "s-1"]
    assert [f["failureId"] for f in poisoned] == ["a-1"]
    assert [f["failureId"] for f in rotations] == ["r-1"]
    assert rotations[0]["detail"] == {
        "credentialId": rotations[0]["subjectId"],
        "rotationToken": "tok-1",
    }


def test_it_says_which_filter_is_wrong(api):
    response = api("get", f"{BASE}?status=broken")

    assert response.status_code == 400
    assert "status" in response.json()["details"]


def test_it_shows_a_failure_with_its_attempts_by_id_or_failure_id(tenant, api):
    failure = report(tenant)
    sweep(after(5))

    by_id = api("get", f"{BASE}/{failure.pk}").json()
    by_failure_id = api("get", f"{BASE}/f-1").json()

    assert by_id == by_failure_id
    assert by_id["status"] == "retrying"
    assert [(a["number"], a["outcome"], a["by"]) for a in by_id["attemptLog"]] == [
        (1, "failed", "report"),
        (2, "sent", "schedule"),
    ]


def test_it_retries_a_poisoned_failure_now_and_says_why_not_when_in_flight(tenant, api):
    report(tenant, error="401", status=401)

    retried = api("post", f"{BASE}/f-1/retry")
    again = api("post", f"{BASE}/f-1/retry")

    assert retried.status_code == 202, retried.content
    assert retried.json()["status"] == "retrying"
    assert retried.json()["statusBy"].startswith("API key pk_")
    (command,) = published("IntegrationSyncRequested")
    assert command.data["attempt"] == 2
    assert again.status_code == 409
    assert "in flight" in again.json()["error"]


def test_it_acknowledges_and_ignores_and_refuses_what_makes_no_sense(tenant, api):
    report(tenant, error="401", status=401)

    acknowledged = api("post", f"{BASE}/f-1/acknowledge")
    ignored = api("post", f"{BASE}/f-1/ignore")
    late = api("post", f"{BASE}/f-1/acknowledge")

    assert (acknowledged.status_code, acknowledged.json()["status"]) == (200, "acknowledged")
    assert (ignored.status_code, ignored.json()["status"]) == (200, "ignored")
    assert late.status_code == 409 and "ignored" in late.json()["error"]
    assert len(published("AlertResolved")) == 1  # ignoring it clears its escalation


def test_it_retries_in_bulk_by_ids_or_by_status(tenant, api):
    for n in range(3):
        report(tenant, failure_id=f"p-{n}", error="401", status=401, at=after(n))
    report(tenant, failure_id="open-1")

    by_ids = api("post", f"{BASE}/bulk-retry", {"ids": ["p-0", "nope"]}).json()
    by_status = api("post", f"{BASE}/bulk-retry", {"status": "poisoned", "kind": "sync"}).json()

    assert by_ids == {"retried": ["p-0"], "refused": {}, "notFound": ["nope"]}
    assert sorted(by_status["retried"]) == ["p-1", "p-2"]
    assert IntegrationFailure.objects.get(failure_id="open-1").status == Status.OPEN


def test_bulk_retry_asks_what_to_retry(api):
    response = api("post", f"{BASE}/bulk-retry", {})

    assert response.status_code == 400
    assert "ids" in response.json()["details"]["non_field_errors"][0]


def test_no_endpoint_shows_or_touches_another_tenants_failure(tenant, api, other_api):
    failure = report(tenant, error="401", status=401)
    before = published("IntegrationSyncRequested")

    assert other_api("get", BASE).json()["results"] == []
    for path in (f"{BASE}/{failure.pk}", f"{BASE}/f-1"):
        assert other_api("get", path).status_code == 404
        for action in ("retry", "acknowledge", "ignore"):
            response = other_api("post", f"{path}/{action}")
            assert response.status_code == 404, (path, action)
            assert "No integration failure" in response.json()["error"]
    bulk = other_api("post", f"{BASE}/bulk-retry", {"ids": [str(failure.pk), "f-1"]}).json()
    assert bulk == {"retried": [], "refused": {}, "notFound": [str(failure.pk), "f-1"]}
    assert other_api("post", f"{BASE}/bulk-retry", {"status": "poisoned"}).json()["retried"] == []

    failure.refresh_from_db()
    assert failure.status == Status.POISONED
    assert published("IntegrationSyncRequested") == before
    assert api("get", f"{BASE}/f-1").status_code == 200


def test_every_endpoint_needs_a_key(client):
    assert client.get(BASE).status_code == 401
    assert client.post(f"{BASE}/f-1/retry").status_code == 401


def test_the_schema_describes_every_endpoint(client):
    paths = client.get("/api/schema").json()["paths"]

    assert set(paths[BASE]) == {"get"}
    assert set(paths[f"{BASE}/{{failure_id}}"]) == {"get"}
    for action in ("retry", "acknowledge", "ignore"):
        assert set(paths[f"{BASE}/{{failure_id}}/{action}"]) == {"post"}
    assert set(paths[f"{BASE}/bulk-retry"]) == {"post"}
