"""Bulk inserts: whatever the text, it is stored as given, and rows already stored are kept."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from core import bulk
from core.models import Event, Message
from core.services import EVENT_COLUMNS, MESSAGE_COLUMNS

pytestmark = pytest.mark.django_db

AWKWARD = [
    'quote " and backslash \\ and \\"both\\"',
    "braces {a,b} and commas, , and NULL",
    "NULL",
    "",
    "tab\tnewline\nreturn\r",
    "unicode é 漢字 🙂",
    "'single' quotes; DROP TABLE core_event; --",
]


def row(tenant, text: str, data) -> tuple:
    now = timezone.now()
    return (
        uuid.uuid4(), "BuildCompleted", tenant.pk, "a" * 32, "b" * 16, text, text, text, now,
        now, json.dumps(data), "",
    )  # fmt: skip


def test_it_stores_awkward_text_and_json_as_given(tenant):
    rows = [row(tenant, text, {"text": text, "nested": [text, None, 1.5]}) for text in AWKWARD]

    bulk.insert_new(Event, EVENT_COLUMNS, rows)

    stored = {e.id: e for e in Event.objects.all()}
    for event_id, *_, text, _occurred, _recorded, data, _to in rows:
        event = stored[event_id]
        assert (event.correlation_id, event.source, event.source_id) == (text, text, text)
        assert event.data == json.loads(data)


def test_it_keeps_a_row_already_stored(tenant):
    first = row(tenant, "first", {})
    bulk.insert_new(Event, EVENT_COLUMNS, [first])

    bulk.insert_new(Event, EVENT_COLUMNS, [(*first[:5], "second", *first[6:]), row(tenant, "", {})])

    assert Event.objects.count() == 2
    assert Event.objects.get(id=first[0]).correlation_id == "first"


def test_it_inserts_more_rows_than_one_statement_binds(tenant):
    rows = [row(tenant, str(n), {"n": n}) for n in range(1234)]

    bulk.insert_new(Event, EVENT_COLUMNS, rows)

    assert Event.objects.count() == 1234


def test_it_keeps_rows_already_stored_among_many(tenant):
    # Past bulk.COPY_NEW_FROM rows, PostgreSQL takes them through COPY into a staging table.
    stored = [row(tenant, "first", {}) for _ in range(3)]
    bulk.insert_new(Event, EVENT_COLUMNS, stored)
    again = [(*r[:5], "second", *r[6:]) for r in stored]
    many = again + [row(tenant, text, {"text": text}) for text in AWKWARD * 50]
    assert len(many) >= bulk.COPY_NEW_FROM

    with transaction.atomic():
        bulk.insert_new(Event, EVENT_COLUMNS, many)
        bulk.insert_new(Event, EVENT_COLUMNS, many[:-1])  # the same transaction: nothing new

    assert Event.objects.count() == 3 + len(AWKWARD) * 50
    assert set(Event.objects.filter(id__in=[r[0] for r in stored]).values_list(
        "correlation_id", flat=True
    )) == {"first"}  # fmt: skip
    for event_id, *_, text, _occurred, _recorded, data, _to in many[3:]:
        event = Event.objects.get(id=event_id)
        assert (event.source_id, event.data) == (text, json.loads(data))


@pytest.mark.django_db(transaction=True)
def test_it_inserts_many_rows_outside_a_transaction(tenant):
    rows = [row(tenant, str(n), {}) for n in range(bulk.COPY_NEW_FROM)]

    bulk.insert_new(Event, EVENT_COLUMNS, rows)

    assert Event.objects.count() == len(rows)


def test_it_inserts_many_rows_into_a_table_with_generated_ids(tenant):
    events = [row(tenant, str(n), {}) for n in range(bulk.COPY_NEW_FROM + 5)]
    bulk.insert_new(Event, EVENT_COLUMNS, events)
    now = timezone.now()
    messages = [(r[0], "W", tenant.pk, "pending", now, 0, 0, now, "") for r in events]

    bulk.insert_new(Message, MESSAGE_COLUMNS, messages)
    bulk.insert_new(Message, MESSAGE_COLUMNS, messages)

    assert Message.objects.filter(worker="W").count() == len(events)


@pytest.mark.parametrize("copy_from", [0, 10**9], ids=["through COPY", "through arrays"])
def test_it_upserts_only_the_columns_it_is_told(tenant, monkeypatch, copy_from):
    monkeypatch.setattr(bulk, "COPY_UPDATE_FROM", copy_from)  # PostgreSQL's two ways
    first = row(tenant, "first", {"v": 1})
    bulk.insert_new(Event, EVENT_COLUMNS, [first])
    changed = (*first[:5], "second", "source 2", *first[7:10], json.dumps({"v": 2}), "")

    bulk.upsert(
        Event, EVENT_COLUMNS, [changed, row(tenant, "new", {})], unique=["id"], update=["data"]
    )

    event = Event.objects.get(id=first[0])
    assert (event.correlation_id, event.source, event.data) == ("first", "first", {"v": 2})
    assert Event.objects.count() == 2


def test_it_finds_rows_among_many_values_bound_as_one(tenant):
    rows = [row(tenant, text, {}) for text in AWKWARD]
    bulk.insert_new(Event, EVENT_COLUMNS, rows)
    wanted = [*AWKWARD[:3], "not there", *(f"filler {n}" for n in range(500))]

    found = Event.objects.filter(correlation_id__one_of=wanted)

    assert sorted(found.values_list("correlation_id", flat=True)) == sorted(AWKWARD[:3])
    assert not Event.objects.filter(correlation_id__one_of=[]).exists()


def test_it_finds_rows_among_many_ids_and_uuids(tenant):
    rows = [row(tenant, str(n), {}) for n in range(5)]
    bulk.insert_new(Event, EVENT_COLUMNS, rows)
    uuids = [r[0] for r in rows[:2]]

    assert set(Event.objects.filter(id__one_of=uuids).values_list("id", flat=True)) == set(uuids)
    assert Event.objects.filter(tenant_id__one_of=[tenant.pk]).count() == 5


@pytest.mark.parametrize("copy_from", [0, 10**9], ids=["through COPY", "through arrays"])
def test_it_updates_each_row_to_its_own_values_and_leaves_the_others(
    tenant, monkeypatch, copy_from
):
    monkeypatch.setattr(bulk, "COPY_UPDATE_FROM", copy_from)  # PostgreSQL's two ways
    rows = [row(tenant, f"text {n}", {}) for n in range(4)]
    bulk.insert_new(Event, EVENT_COLUMNS, rows)
    later = timezone.now() + timezone.timedelta(hours=1)
    changes = [(r[0], text, later) for r, text in zip(rows[:3], AWKWARD, strict=False)]

    bulk.update_rows(Event, ["source", "occurred_at"], changes)

    stored = {e.id: e for e in Event.objects.all()}
    for event_id, text, when in changes:
        assert (stored[event_id].source, stored[event_id].occurred_at) == (text, when)
    assert stored[rows[3][0]].source == "text 3"
