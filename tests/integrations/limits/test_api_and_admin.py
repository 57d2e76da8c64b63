"""The limits' API (tenant-scoped circuits and rate buckets, isolate and close) and admin
(read-only pages, isolate and close as object actions)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from integrations.limits import buckets, circuits, keys
from integrations.limits.models import Circuit

pytestmark = pytest.mark.django_db


@pytest.fixture
def mine(tenant):
    key = keys.webhook_host(tenant.pk, f"https://{uuid.uuid4().hex}.example/hooks")
    for _ in range(5):
        circuits.record(key=key, ok=False, reason="503")
    buckets.acquire(key=key, rate=0.01, burst=10)  # 100 s a token
    return key


@pytest.fixture
def theirs(other_tenant):
    key = keys.connection(uuid.uuid4())
    circuits.record(key=key, ok=True, tenant_id=other_tenant.pk)
    buckets.acquire(key=key, rate=5, burst=10, tenant_id=other_tenant.pk)
    return key


def test_it_lists_only_the_tenants_circuits(api, mine, theirs):
    reply = api("get", "/api/integrations/circuits")

    assert reply.status_code == 200
    (circuit,) = reply.json()["results"]
    assert (circuit["key"], circuit["state"], circuit["trips"]) == (mine, "open", 1)
    assert circuit["openUntil"] and "5 of 5 calls failed" in circuit["reason"]
    assert api("get", "/api/integrations/circuits?state=closed").json()["results"] == []
    assert api("get", "/api/integrations/circuits?state=ajar").status_code == 400


def test_it_lists_only_the_tenants_rate_buckets(api, mine, theirs):
    (bucket,) = api("get", "/api/integrations/rate-buckets").json()["results"]

    assert (bucket["key"], bucket["rate"], bucket["burst"], bucket["grants"]) == (mine, 0.01, 10, 1)
    assert bucket["available"] == pytest.approx(9, abs=0.01) and bucket["blockedUntil"] is None


def test_it_isolates_and_closes_a_circuit(api, mine):
    isolated = api("post", f"/api/integrations/circuits/{mine}/isolate", {"reason": "upgrade"})

    assert isolated.status_code == 200
    assert (isolated.json()["state"], isolated.json()["reason"]) == ("isolated", "upgrade")
    assert circuits.permit(key=mine) is not None

    closed = api("post", f"/api/integrations/circuits/{mine}/close")
    assert (closed.status_code, closed.json()["state"], closed.json()["trips"]) == (
        200,
        "closed",
        0,
    )
    assert circuits.permit(key=mine) is None


def test_it_finds_no_circuit_of_another_tenant(api, theirs):
    for action in ("isolate", "close"):
        reply = api("post", f"/api/integrations/circuits/{theirs}/{action}")
        assert reply.status_code == 404
    assert Circuit.objects.get(key=theirs).state == "closed"


def test_the_admin_shows_buckets_and_circuits_read_only(admin_client, mine):
    for model in ("ratebucket", "circuit"):
        # Searched for: rows the limits' own connection committed in earlier tests remain (it
        # commits outside the test's transaction), and a list page shows only the first 100.
        page = admin_client.get(reverse(f"admin:limits_{model}_changelist"), {"q": mine})
        assert page.status_code == 200 and mine in page.content.decode()
    circuit = Circuit.objects.get(key=mine)
    page = admin_client.get(reverse("admin:limits_circuit_change", args=[circuit.pk]))
    assert page.status_code == 200 and b"Isolate" in page.content
    assert admin_client.get(reverse("admin:limits_circuit_add")).status_code == 403


def test_the_admin_isolates_and_closes_a_circuit(admin_client, mine):
    circuit = Circuit.objects.get(key=mine)
    isolate = reverse("admin:limits_circuit_isolate", args=[circuit.pk])
    close = reverse("admin:limits_circuit_close", args=[circuit.pk])

    admin_client.post(isolate)
    assert Circuit.objects.get(key=mine).state == "isolated"
    admin_client.post(close)
    assert Circuit.objects.get(key=mine).state == "closed"
