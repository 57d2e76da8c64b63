"""A sync message fetches its pages before it takes a lock, and writes them only if its run is
still where the fetch began: a slow vendor holds no lock, a second delivery of the same
command writes nothing twice, and a message stops fetching after SYNC_FETCH_SECONDS."""

from __future__ import annotations

import threading
import time
from time import monotonic

import pytest
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from core import outbound
from core.models import Event, Message
from core.runtime import dispatch, registry
from integrations.limits import keys as limit_keys
from integrations.limits.models import RateBucket
from integrations.sync import handler
from integrations.sync.models import IntegrationRun, SyncLock, SyncRecord, SyncStream
from tests.integrations.sync.conftest import WORKER, drain


def at(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


def one_message() -> None:
    worker = registry.get(WORKER)
    dispatch.run_batch(worker, dispatch.claim(worker, limit=1), deadline=monotonic() + 60)


def first_page_bytes(connection) -> int:
    """The size of the body the vendor answers a stream's first page with."""
    request = handler._provider(connection).first_request(
        "issues", base_url=connection.base_url, checkpoint={}, config=connection.config
    )
    headers = {**request.headers, "Authorization": "Bearer ghp-good"}
    reply = outbound.request(request.method, request.url, headers=headers)
    assert reply.status == 200
    return len(reply.body)


def pending_pages() -> int:
    return Message.objects.filter(
        worker=WORKER, state=Message.State.PENDING, event__type=handler.COMMAND
    ).count()


def test_it_writes_a_messages_pages_together(db, sim, github):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))
    run = handler.start_run(connection=github, trigger="manual")

    one_message()

    run.refresh_from_db()
    assert (run.status, run.pages, run.added) == ("succeeded", 4, 5)


def test_it_takes_requests_from_the_bucket_ahead_and_gives_back_what_it_did_not_make(
    db, sim, github
):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))

    run = handler.start_run(connection=github, trigger="manual")
    one_message()  # four pages: taken 1, then 2, then 4 of which it used 1

    run.refresh_from_db()
    assert (run.status, run.requests) == ("succeeded", 4)
    bucket = RateBucket.objects.get(key=limit_keys.credential(github.credentials.get().pk))
    assert bucket.grants == 4
    assert bucket.last_taken == 4  # its last take was for four requests


def test_it_takes_at_most_sixteen_requests_from_the_bucket_at_once(db, github):
    provider = handler._provider(github)
    tokens = handler.Tokens(handler._limit_keys(github, provider), provider)
    key = limit_keys.credential(github.credentials.get().pk)
    takes = []
    for _ in range(1 + 2 + 4 + 8 + 16 + 16):
        before = RateBucket.objects.filter(key=key).values_list("grants", flat=True).first()
        tokens.take(most=100, now=timezone.now())
        bucket = RateBucket.objects.get(key=key)
        if bucket.grants != before:
            takes.append(bucket.last_taken)

    assert takes == [1, 2, 4, 8, 16, 16]


@pytest.mark.parametrize(
    "bound",
    [
        {"SYNC_FETCH_SECONDS": 0},  # its time spent after the first page
        {"SYNC_MESSAGE_BYTES": 1},  # the first reply is past it
    ],
)
def test_it_starts_no_further_page_once_a_bound_is_reached(db, sim, github, settings, bound):
    for name, value in bound.items():
        setattr(settings, name, value)
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))
    run = handler.start_run(connection=github, trigger="manual")

    one_message()

    run.refresh_from_db()
    assert (run.status, run.pages, run.added, run.requests) == ("running", 1, 2, 1)
    assert pending_pages() == 1  # the next message goes on from the checkpoint
    bucket = RateBucket.objects.get(key=limit_keys.credential(github.credentials.get().pk))
    assert bucket.grants == 1  # nor a token taken for a page it did not read
    drain()
    run.refresh_from_db()
    assert (run.status, run.pages, run.added, run.requests) == ("succeeded", 4, 5, 4)


def test_it_reads_pages_until_their_bytes_reach_the_bound(db, sim, github, settings):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))
    first = first_page_bytes(github)
    settings.SYNC_MESSAGE_BYTES = first + 1  # past one page's reply, not two
    run = handler.start_run(connection=github, trigger="manual")

    one_message()

    run.refresh_from_db()
    assert (run.status, run.pages, run.requests) == ("running", 2, 2)


def test_it_drops_the_pages_of_a_delivery_whose_run_moved_on_while_it_fetched(
    db, sim, github, settings, monkeypatch
):
    settings.SYNC_PAGES_PER_MESSAGE = 1
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(number))
    run = handler.start_run(connection=github, trigger="manual")
    fetch, raced = handler._fetch, []

    def fetch_while_another_delivery_writes(*args, **kwargs):
        fetched = fetch(*args, **kwargs)
        if not raced:  # the same command, delivered again, runs to its commit meanwhile
            raced.append(True)
            handler.step(run_id=run.pk, tenant_id=run.tenant_id)
        return fetched

    monkeypatch.setattr(handler, "_fetch", fetch_while_another_delivery_writes)
    one_message()
    assert pending_pages() == 1  # one next page, not two chains
    drain()

    run.refresh_from_db()
    assert (run.status, run.pages, run.added, run.unchanged) == ("succeeded", 4, 5, 3)
    records = SyncRecord.objects.filter(connection=github).order_by("change")
    assert [r.change for r in records] == [1, 2, 3, 4, 5]
    assert Event.objects.filter(type="WorkItemCreated").count() == 5


@pytest.mark.django_db(transaction=True)
def test_it_holds_no_lock_while_a_slow_vendor_answers(postgres, tenant, sim, github):
    for number in range(1, 4):
        sim.github_issue(number=number, updated_at=at(number))
    run = handler.start_run(connection=github, trigger="manual")
    sim.fail(status=0, delay=1.5, path="/repos/acme/app/issues")
    worker = threading.Thread(target=_one_message_and_close)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not sim.log("/repos/acme/app/issues") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.log("/repos/acme/app/issues"), "the message never asked the vendor"
        # Mid-reply: the run's lock, its stream and the run itself can be taken at once.
        with transaction.atomic():
            SyncLock.objects.select_for_update(nowait=True).get(connection=github)
            SyncStream.objects.select_for_update(nowait=True).get(connection=github)
            IntegrationRun.objects.select_for_update(nowait=True).get(pk=run.pk)
    finally:
        worker.join(timeout=30)
    run.refresh_from_db()
    assert (run.status, run.added) == ("succeeded", 3)


def _one_message_and_close() -> None:
    try:
        one_message()
    finally:
        db.close()


def test_it_stops_spending_tokens_taken_ahead_once_the_vendor_says_none_remain(
    db, sim, github, monkeypatch
):
    for number in range(1, 11):
        sim.github_issue(number=number, updated_at=at(number))
    run = handler.start_run(connection=github, trigger="manual")
    send, sent = handler._send_soon, []

    def another_client_spends_the_quota(*args, **kwargs):
        sent.append(True)
        if len(sent) == 2:  # the second page's token came with a third's, taken ahead
            sim.set(rate_remaining=1, rate_reset=int(time.time()) + 60)
        return send(*args, **kwargs)

    monkeypatch.setattr(handler, "_send_soon", another_client_spends_the_quota)
    one_message()

    # The second reply says 0 remain: the token held for a third page is not spent on a
    # request the vendor would refuse; the run waits for the reset instead (no attempt spent).
    assert len(sim.log("/repos/acme/app/issues")) == 2
    run.refresh_from_db()
    assert (run.status, run.pages, run.requests) == ("running", 2, 2)
    waiting = Message.objects.get(worker=WORKER, state=Message.State.PENDING)
    assert waiting.attempts == 0
