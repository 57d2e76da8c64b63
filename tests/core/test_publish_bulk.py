"""Many new rows are written once: COPY'd straight into their table, staged for ON CONFLICT DO
NOTHING only when one of them is stored already. And a bulk publish's envelopes are checked as
one by one."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import bulk, services
from core.models import Event
from core.services import EVENT_COLUMNS

pytestmark = pytest.mark.django_db


def row(tenant, text: str) -> tuple:
    now = timezone.now()
    return (
        uuid.uuid4(), "BuildCompleted", tenant.pk, "a" * 32, "b" * 16, text, text, text, now,
        now, json.dumps({"text": text}), "",
    )  # fmt: skip


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_it_copies_many_new_rows_without_staging_them(tenant):
    rows = [row(tenant, str(n)) for n in range(bulk.COPY_NEW_FROM + 10)]

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        bulk.insert_new(Event, EVENT_COLUMNS, rows)

    assert not [q for q in queries.captured_queries if "_new_" in q["sql"]]
    assert Event.objects.filter(tenant_id=tenant.pk).count() == len(rows)


def test_it_stages_many_rows_when_one_is_stored_and_keeps_the_stored_one(tenant):
    rows = [row(tenant, str(n)) for n in range(bulk.COPY_NEW_FROM + 10)]
    first = rows[7]
    bulk.insert_new(Event, EVENT_COLUMNS, [(*first[:5], "stored", *first[6:])])

    with transaction.atomic():
        bulk.insert_new(Event, EVENT_COLUMNS, rows)
        bulk.insert_new(Event, EVENT_COLUMNS, [*rows, row(tenant, "last")])

    assert Event.objects.filter(tenant_id=tenant.pk).count() == len(rows) + 1
    assert Event.objects.get(id=first[0]).correlation_id == "stored"


def test_it_checks_each_envelope_of_a_bulk_build_with_a_bad_id(tenant):
    good = services.build_envelope(
        tenant_id=tenant.pk, type="BuildCompleted", trace_id="a" * 32, span_id="b" * 16
    )
    assert (good.trace_id, good.span_id) == ("a" * 32, "b" * 16)
    for trace_id, span_id in [("A" * 32, "b" * 16), ("a" * 32, "0" * 16), ("a" * 31, "b" * 16)]:
        with pytest.raises(ValidationError):
            services.build_envelope(
                tenant_id=tenant.pk, type="BuildCompleted", trace_id=trace_id, span_id=span_id
            )


def test_it_stores_event_data_as_json_dumps_would_have(tenant):
    data = {"big": 2**70, "float": 1e16, "text": 'é 漢字 🙂 "q" \\ \n', "list": [None, True, 0.5]}
    plain = {"number": 42, "labels": ["bug", "p2"], "closedAt": None, "title": "日本語"}

    first = services.publish(tenant=tenant, type="BuildCompleted", data=data)
    second = services.publish(tenant=tenant, type="BuildCompleted", data=plain)

    assert Event.objects.get(id=first.event_id).data == json.loads(json.dumps(data))
    assert Event.objects.get(id=second.event_id).data == plain


def test_it_stores_plain_data_by_msgspec_as_json_dumps_would_have(tenant):
    data = {"big": 2**70, "float": 1e16, "text": 'é 漢字 🙂 "q" \\ \n', "list": [None, True, 0.5]}
    envelope = services.build_envelope(tenant_id=tenant.pk, type="BuildCompleted", data=data)

    services.publish_envelopes([envelope], plain_data=True)

    assert Event.objects.get(id=envelope.event_id).data == json.loads(json.dumps(data))


def test_it_refuses_data_that_is_not_json_even_when_told_it_is_plain(tenant):
    envelope = services.build_envelope(
        tenant_id=tenant.pk, type="BuildCompleted", data={"at": object()}
    )
    with pytest.raises(TypeError), transaction.atomic():
        services.publish_envelopes([envelope], plain_data=True)


def test_it_refuses_event_data_that_is_not_json_as_before(tenant):
    with pytest.raises(TypeError), transaction.atomic():
        services.publish(tenant=tenant, type="BuildCompleted", data={"id": uuid.uuid4()})
