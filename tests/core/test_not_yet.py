"""NotYet, the runtime's "due again at T, no attempt spent": a vendor's rate limit or an open
circuit puts a message off without using up its attempts, and it comes back at T."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from core import services
from core.models import DeadLetter, Failure, HandledKey, Message
from core.runtime import dispatch, registry
from core.runtime.errors import NotYet, TransientError
from core.runtime.registry import RetryPolicy
from tests.core import not_yet_workers
from tests.core.test_processes import spawn
from tests.effects.models import Effect

ONE_ATTEMPT = RetryPolicy(max_attempts=1, base_seconds=1, cap_seconds=1)


def publish(tenant, **data):
    return services.publish(tenant=tenant, type="DeploymentPromoted", data=data)


def message_of(envelope, worker="TestWorker") -> Message:
    return Message.objects.get(event_id=envelope.event_id, worker=worker)


def come_due(worker_name: str = "TestWorker") -> None:
    Message.objects.filter(worker=worker_name, state="pending").update(due_at=timezone.now())


def later(seconds: float = 3600) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.django_db
def test_it_makes_a_message_due_at_its_time_with_its_attempts_unspent(tenant, make_worker, caplog):
    until = later()

    def handler(envelope):
        Effect.objects.create(event_id=envelope.event_id, worker="rolled back")
        raise NotYet(until, "github: x-ratelimit-remaining 0")

    make_worker(handler=handler, retry=ONE_ATTEMPT)
    envelope = publish(tenant)
    with caplog.at_level(logging.INFO, logger="core.runtime.dispatch"):
        outcome = dispatch.drain("TestWorker")

    assert outcome == {"handled": 0, "retried": 0, "dead": 0, "released": 1}
    message = message_of(envelope)
    assert (message.state, message.due_at, message.attempts, message.claims) == (
        "pending",
        until,
        0,
        0,
    )
    assert message.lease_token is None and message.leased_until is None
    assert not Failure.objects.exists() and not DeadLetter.objects.exists()
    assert not Effect.objects.exists()  # a raising handler's writes roll back
    (record,) = [r for r in caplog.records if "not yet" in r.getMessage()]
    assert record.levelno == logging.INFO and "x-ratelimit-remaining 0" in record.getMessage()
    assert dispatch.drain("TestWorker")["handled"] == 0  # not before its time


@pytest.mark.django_db
def test_it_never_dead_letters_a_message_however_often_it_is_not_yet(tenant, make_worker, settings):
    settings.DISPATCH_MAX_LOST_CLAIMS = 2
    waits = {"left": 10}

    def handler(envelope):
        if waits["left"]:
            waits["left"] -= 1
            raise NotYet(later(60), "circuit host:hooks.example open")
        Effect.objects.create(event_id=envelope.event_id, worker="TestWorker")

    make_worker(handler=handler, retry=ONE_ATTEMPT)
    envelope = publish(tenant)
    for _ in range(10):
        dispatch.drain("TestWorker")
        come_due()

    assert (message_of(envelope).attempts, message_of(envelope).claims) == (0, 0)
    dispatch.drain("TestWorker")

    message = message_of(envelope)
    assert (message.state, message.attempts, message.claims) == ("done", 0, 1)
    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1
    assert not Failure.objects.exists() and not DeadLetter.objects.exists()


@pytest.mark.django_db
def test_it_makes_a_time_already_past_due_at_once(tenant, make_worker):
    def handler(envelope):
        raise NotYet(later(-60), "a reset already past")

    worker = make_worker(handler=handler)
    envelope = publish(tenant)
    before = timezone.now()
    dispatch.run_batch(worker, dispatch.claim(worker, limit=1))

    assert before <= message_of(envelope).due_at <= timezone.now()


@pytest.mark.django_db
def test_it_keeps_a_failures_attempts_apart_from_its_waits(tenant, make_worker):
    outcomes = [TransientError("503"), NotYet(later(), "Retry-After 3600")]

    def handler(envelope):
        raise outcomes.pop(0)

    make_worker(handler=handler)
    envelope = publish(tenant)
    dispatch.drain("TestWorker")
    come_due()
    dispatch.drain("TestWorker")

    message = message_of(envelope)
    assert (message.attempts, message.claims, message.state) == (1, 1, "pending")
    assert Failure.objects.count() == 1
    assert "503" in message.last_error  # the last failure, not the wait


@pytest.mark.django_db
def test_it_puts_off_what_a_batch_handler_reports_not_yet_and_keeps_its_writes(tenant, make_worker):
    until = later()

    def handler(envelopes):
        for envelope in envelopes:
            Effect.objects.create(event_id=envelope.event_id, worker="attempted")
        return {envelopes[0].event_id: NotYet(until, "host bucket empty")}

    make_worker(batch_handler=handler, batch_size=10, retry=ONE_ATTEMPT)
    waiting, passing = publish(tenant, n=1), publish(tenant, n=2)
    outcome = dispatch.drain("TestWorker")

    assert (outcome["handled"], outcome["released"]) == (1, 1)
    assert Effect.objects.filter(worker="attempted").count() == 2  # nothing rolled back
    assert message_of(passing).state == "done"
    message = message_of(waiting)
    assert (message.state, message.due_at, message.attempts, message.claims) == (
        "pending",
        until,
        0,
        0,
    )
    assert not Failure.objects.exists()


@pytest.mark.django_db
def test_it_handles_a_reported_wait_again_under_the_workers_own_key(tenant, make_worker):
    calls = []

    def handler(envelopes):
        calls.append([e.event_id for e in envelopes])
        if len(calls) == 1:
            return {envelopes[0].event_id: NotYet(later(), "wait")}
        return {}

    make_worker(batch_handler=handler, batch_size=10, key=lambda envelope: "the same thing")
    envelope = publish(tenant)
    dispatch.drain("TestWorker")
    assert not HandledKey.objects.exists()  # not handled yet: its key is free again

    come_due()
    dispatch.drain("TestWorker")

    assert calls == [[envelope.event_id], [envelope.event_id]]
    assert message_of(envelope).state == "done"
    assert HandledKey.objects.filter(event_id=envelope.event_id).count() == 1


@pytest.fixture
def not_yet_worker():
    registry.register(not_yet_workers.WORKER)
    yield not_yet_workers.WORKER
    registry.unregister(not_yet_workers.NAME)


@pytest.mark.django_db(transaction=True)
def test_it_brings_a_message_back_at_its_time_in_real_consumers(tenant, not_yet_worker, tmp_path):
    # Two consumer processes drain NotYetWorker, whose one attempt a spent wait would use up;
    # its vendor refuses the event for one more second.
    until = later(1.0)
    envelope = publish(tenant, until=until.isoformat())
    consumers = [
        spawn(
            [sys.executable, "-m", "tests.core.not_yet_consume"],
            tmp_path / f"consumer{i}.log",
            WORKER_MODULES="tests.core.not_yet_workers",
        )
        for i in range(2)
    ]
    for i, consumer in enumerate(consumers):
        assert consumer.wait(timeout=60) == 0, (tmp_path / f"consumer{i}.log").read_text()

    (effect,) = Effect.objects.filter(event_id=envelope.event_id)
    assert effect.created >= until  # it came back at its time, not before
    message = message_of(envelope, worker=not_yet_workers.NAME)
    assert (message.state, message.attempts, message.claims) == ("done", 0, 1)
    assert not Failure.objects.exists() and not DeadLetter.objects.exists()
