"""Buckets and circuits are written on a connection of their own that commits at once
(integrations.limits.store), so on PostgreSQL a test's rows outlive its transaction; the suite
deletes them after each test that had the database (tests/conftest.py). Two tests, in this
order: the first leaves rows behind, the second lists every row there is and finds only its
own."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.limits import buckets, circuits, keys
from integrations.limits.models import Circuit, RateBucket
from integrations.limits.store import committing

pytestmark = pytest.mark.django_db


def write_limits(tenant, host: str) -> list[str]:
    """A webhook host's bucket and circuit, and a vendor host's bucket (platform-wide)."""
    endpoint, vendor = keys.webhook_host(tenant.pk, f"https://{host}/hooks"), keys.host(host)
    buckets.acquire(key=endpoint, rate=1, burst=5)
    buckets.acquire(key=vendor, rate=1, burst=5)
    circuits.record(key=endpoint, ok=False, reason="503")
    return [endpoint, vendor]


def test_it_commits_buckets_and_circuits_outside_the_tests_transaction(tenant):
    written = write_limits(tenant, "earlier.example")

    with committing() as db:  # on PostgreSQL, another connection: it sees them committed
        assert sorted(RateBucket.objects.using(db.alias).values_list("key", flat=True)) == sorted(
            written
        )
        assert Circuit.objects.using(db.alias).filter(key=written[0]).exists()


def test_it_lists_no_bucket_or_circuit_of_an_earlier_test(admin_client, tenant):
    endpoint, vendor = write_limits(tenant, "later.example")

    listed = {}
    for model in ("ratebucket", "circuit"):
        page = admin_client.get(reverse(f"admin:limits_{model}_changelist"))
        assert page.status_code == 200
        listed[model] = sorted(row.key for row in page.context["cl"].result_list)
    assert listed == {"ratebucket": sorted([endpoint, vendor]), "circuit": [endpoint]}
