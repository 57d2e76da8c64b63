"""core.runtime.queue, the one module that talks to django-q2."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ

from core.models import Tenant, WorkerState
from core.runtime import queue

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_queues_a_drain_under_an_open_cursor_without_closing_it(
    expiring_connections, make_worker
):
    # django-q2's own ORM broker closes an old connection (on SQLite: any) on every call, and
    # with it the cursor of a loop that queues work as it reads rows.
    worker = make_worker()
    for n in range(5):
        Tenant.objects.create(slug=f"t{n}", name=f"T{n}")

    seen = []
    for tenant in Tenant.objects.order_by("slug").iterator(chunk_size=2):
        WorkerState.objects.filter(worker=worker.name).update(drains=0)  # a free slot each time
        queue.kick([worker.name])
        seen.append(tenant.slug)

    assert seen == ["t0", "t1", "t2", "t3", "t4"]
    assert OrmQ.objects.count() == 5
