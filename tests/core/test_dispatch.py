"""The worker runtime: idempotency, crash recovery, retries, dead letters, tenant guard, tracing."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core import services
from core.models import DeadLetter, Event, Failure, HandledKey, Message
from core.runtime import dispatch, registry, replay, shutdown
from core.runtime.errors import PermanentError, TransientError
from core.runtime.registry import RetryPolicy
from core.telemetry import TraceContextFilter
from tests.effects.models import Effect

pytestmark = pytest.mark.django_db


def record(envelope) -> None:
    Effect.objects.create(event_id=envelope.event_id, worker="TestWorker")


def always(exc: Exception):
    def handler(envelope) -> None:
        Effect.objects.create(event_id=envelope.event_id, worker="failed")  # rolled back
        raise exc

    return handler


def publish(tenant, **data):
    return services.publish(tenant=tenant, type="DeploymentPromoted", data=data)


def come_due(worker_name: str) -> None:
    """Fast-forward: whatever is waiting (backoff, lease) is due now."""
    now = timezone.now()
    Message.objects.filter(worker=worker_name, state="pending").update(due_at=now, leased_until=now)


def message_of(envelope, worker="TestWorker") -> Message:
    return Message.objects.get(event_id=envelope.event_id, worker=worker)


def test_it_handles_a_published_event_once(tenant, make_worker):
    make_worker(handler=record)
    envelope = publish(tenant, service="checkout")

    assert dispatch.drain("TestWorker")["handled"] == 1
    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1
    assert message_of(envelope).state == "done"


def test_it_addresses_no_message_to_a_worker_that_is_not_built(tenant, declared_worker):
    # DeclaredWorker takes IntegrationFailed (as IntegrationRetryWorker did, declared, before
    # issue 12 built it) but has no handler: nothing may be queued for a handler that does not
    # exist, while the built subscribers get theirs.
    envelope = services.publish(tenant=tenant, type="IntegrationFailed", data={})

    addressed = Message.objects.filter(event_id=envelope.event_id).values_list("worker", flat=True)
    assert all(registry.get(name).built for name in addressed)
    assert declared_worker.name not in addressed
    assert "IntegrationRetryWorker" in addressed


def test_it_changes_nothing_when_a_handled_event_is_redelivered(tenant, make_worker):
    make_worker(handler=record)
    envelope = publish(tenant)
    dispatch.drain("TestWorker")

    services.publish_envelopes([envelope])  # the producer sends the same eventId again
    Message.objects.filter(event_id=envelope.event_id).update(due_at=timezone.now())
    dispatch.drain("TestWorker")

    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1
    assert Message.objects.filter(event_id=envelope.event_id, worker="TestWorker").count() == 1


def test_it_handles_once_when_it_crashed_between_the_writes_and_the_mark(
    tenant, make_worker, monkeypatch
):
    make_worker(handler=record)
    envelope = publish(tenant)

    def crash(*args, **kwargs):
        raise SystemExit("killed after the handler's writes, before the mark")

    monkeypatch.setattr(dispatch, "_mark_done", crash)
    with pytest.raises(SystemExit):
        dispatch.drain("TestWorker")
    monkeypatch.undo()

    assert not Effect.objects.exists()  # the writes died with their transaction
    assert message_of(envelope).in_flight  # leased until the lease runs out
    come_due("TestWorker")  # the lease of the dead consumer ran out
    dispatch.drain("TestWorker")

    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1
    assert message_of(envelope).state == "done"


def test_it_rolls_back_a_consumer_whose_lease_was_taken_over(tenant, make_worker):
    worker = make_worker(handler=record)
    envelope = publish(tenant)
    slow = dispatch.claim(worker, limit=10)
    come_due("TestWorker")  # the slow consumer's lease ran out...
    fast = dispatch.claim(worker, limit=10)  # ...and another consumer took the message

    dispatch.run_batch(worker, fast)
    outcome = dispatch.run_batch(worker, slow)

    assert outcome.handled == 0
    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1


def test_it_dead_letters_a_poison_event_after_the_policys_attempts(tenant, make_worker):
    make_worker(
        handler=always(TransientError("upstream down")),
        retry=RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=4),
    )
    envelope = publish(tenant, service="checkout")

    for _ in range(3):
        dispatch.drain("TestWorker")
        come_due("TestWorker")

    message = message_of(envelope)
    dead = DeadLetter.objects.get(message=message)
    assert message.state == "dead" and message.attempts == 3
    assert dead.envelope["eventId"] == str(envelope.event_id)
    assert dead.envelope["data"] == {"service": "checkout"}
    assert dead.envelope["traceId"] == envelope.trace_id
    assert [a["attempt"] for a in dead.attempts] == [1, 2, 3]
    assert all("TransientError: upstream down" in a["traceback"] for a in dead.attempts)
    assert "gave up after 3 attempts" in dead.reason
    assert not Effect.objects.exists()


def test_it_dead_letters_a_permanent_error_at_once(tenant, make_worker):
    make_worker(handler=always(PermanentError("schema v3 is not supported")))
    envelope = publish(tenant)

    outcome = dispatch.drain("TestWorker")

    assert outcome["dead"] == 1
    assert DeadLetter.objects.get(message__event_id=envelope.event_id).reason == (
        "PermanentError: schema v3 is not supported"
    )


def test_it_keeps_handling_the_rest_of_a_batch_when_one_message_fails(tenant, make_worker):
    def picky(envelope):
        if envelope.data["n"] == 2:
            raise PermanentError("not this one")
        record(envelope)

    make_worker(handler=picky)
    for n in range(5):
        publish(tenant, n=n)

    outcome = dispatch.drain("TestWorker")

    assert outcome == {"handled": 4, "retried": 0, "dead": 1, "released": 0}
    assert Effect.objects.count() == 4


def test_it_grows_backoff_delays_as_the_policy_says(tenant, make_worker):
    policy = RetryPolicy(max_attempts=6, base_seconds=10, cap_seconds=40)
    make_worker(handler=always(TransientError("busy")), retry=policy)
    envelope = publish(tenant)

    for attempt in range(1, 6):
        dispatch.drain("TestWorker")
        failed_at = Failure.objects.get(message__event_id=envelope.event_id, attempt=attempt).at
        waits = (message_of(envelope).due_at - failed_at).total_seconds()
        assert 0 <= waits <= policy.ceiling(attempt) + 0.5
        come_due("TestWorker")

    assert [policy.ceiling(n) for n in range(1, 6)] == [10, 20, 40, 40, 40]


def test_it_draws_full_jitter_up_to_the_ceiling():
    policy = RetryPolicy(max_attempts=8, base_seconds=1, cap_seconds=30)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (3, 4), (5, 16), (6, 30), (8, 30)]:
        delays = [policy.delay(attempt, rng=rng).total_seconds() for _ in range(2000)]
        assert 0 <= min(delays) < ceiling * 0.05
        assert ceiling * 0.95 < max(delays) <= ceiling


def test_it_honours_retry_after_over_the_backoff(tenant, make_worker):
    make_worker(handler=always(TransientError("429", retry_after=120)))
    envelope = publish(tenant)

    dispatch.drain("TestWorker")

    waits = (message_of(envelope).due_at - timezone.now()).total_seconds()
    assert 115 < waits <= 120


def test_it_refuses_a_handler_touching_another_tenants_data(tenant, other_tenant, make_worker):
    def nosy(envelope):
        envelope.ensure_tenant(other_tenant.pk)
        record(envelope)

    make_worker(handler=nosy)
    envelope = publish(tenant)

    dispatch.drain("TestWorker")

    dead = DeadLetter.objects.get(message__event_id=envelope.event_id)
    assert dead.reason.startswith("TenantMismatch")
    assert dead.attempts[0]["permanent"] is True
    assert not Effect.objects.exists()


def test_it_refuses_a_message_whose_tenant_differs_from_its_envelope(
    tenant, other_tenant, make_worker
):
    make_worker(handler=record)
    envelope = publish(tenant)
    Message.objects.filter(event_id=envelope.event_id).update(tenant=other_tenant)

    dispatch.drain("TestWorker")

    assert DeadLetter.objects.get(message__event_id=envelope.event_id).reason.startswith(
        "TenantMismatch"
    )
    assert not Effect.objects.exists()


def test_it_dead_letters_a_malformed_envelope_without_holding_up_others(tenant, make_worker):
    make_worker(handler=record)
    bad, good = publish(tenant), publish(tenant)
    # Rows written by something other than publish (an old release, a manual fix) can be bad.
    message_of(bad).event.__class__.objects.filter(id=bad.event_id).update(
        type="DeploymentPromotd", trace_id="nope"
    )

    dispatch.drain("TestWorker")

    reason = DeadLetter.objects.get(message__event_id=bad.event_id).reason
    assert "MalformedEnvelope" in reason and "DeploymentPromotd" in reason
    assert "traceId" in reason
    assert Effect.objects.filter(event_id=good.event_id).count() == 1


def test_it_dead_letters_a_message_that_keeps_killing_its_consumer(tenant, make_worker, settings):
    settings.DISPATCH_MAX_LOST_CLAIMS = 2
    worker = make_worker(handler=record)
    envelope = publish(tenant)
    for _ in range(2):  # two consumers died holding it
        dispatch.claim(worker, limit=1)
        come_due("TestWorker")

    dispatch.drain("TestWorker")

    dead = DeadLetter.objects.get(message__event_id=envelope.event_id)
    assert "claimed 2 times without an outcome" in dead.reason
    assert not Effect.objects.exists()


def test_it_replays_a_dead_letter_once_even_when_asked_twice(tenant, make_worker):
    broken = {"yes": True}

    def flaky(envelope):
        if broken["yes"]:
            raise PermanentError("bug")
        record(envelope)

    make_worker(handler=flaky)
    envelope = publish(tenant)
    dispatch.drain("TestWorker")
    dead = DeadLetter.objects.get()
    broken["yes"] = False  # the bug was fixed

    assert replay.replay(dead) is True
    assert replay.replay(dead) is False
    dispatch.drain("TestWorker")
    assert replay.replay(dead) is False  # handled now: nothing to replay

    assert Effect.objects.filter(event_id=envelope.event_id).count() == 1
    dead.refresh_from_db()
    assert dead.replays == 1 and dead.replayed_at is not None


def test_it_dedups_distinct_events_that_share_the_workers_key(tenant, make_worker):
    make_worker(handler=record, key=lambda e: f"{e.source}:{e.source_id}")
    first = services.publish(
        tenant=tenant, type="DeploymentPromoted", source="ci", source_id="run-7"
    )
    second = services.publish(
        tenant=tenant, type="DeploymentPromoted", source="ci", source_id="run-7"
    )

    dispatch.drain("TestWorker")

    assert Effect.objects.filter(event_id=first.event_id).count() == 1
    assert not Effect.objects.filter(event_id=second.event_id).exists()
    assert message_of(second).state == "done"
    assert HandledKey.objects.get().key == "ci:run-7"


def test_it_dedups_a_batch_by_the_workers_key_in_one_statement(
    tenant, other_tenant, make_worker, django_assert_max_num_queries
):
    handled = []
    make_worker(
        batch_handler=lambda envelopes: handled.extend(e.event_id for e in envelopes),
        batch_size=50,
        key=lambda e: f"{e.source}:{e.source_id}" if e.source else None,
    )
    done_before = services.publish(
        tenant=tenant, type="DeploymentPromoted", source="ci", source_id="run-1"
    )
    dispatch.drain("TestWorker")

    def publish_as(owner, source_id):
        return services.publish(
            tenant=owner, type="DeploymentPromoted", source="ci", source_id=source_id
        )

    again = publish_as(tenant, "run-1")  # handled by an earlier batch
    first, twin = publish_as(tenant, "run-2"), publish_as(tenant, "run-2")  # twice in this one
    elsewhere = publish_as(other_tenant, "run-2")  # a key is its tenant's
    keyless = services.publish(tenant=tenant, type="DeploymentPromoted")
    handled.clear()

    dispatch.drain("TestWorker")

    assert handled == [first.event_id, elsewhere.event_id, keyless.event_id]
    assert {message_of(e).state for e in (again, first, twin, elsewhere, keyless)} == {"done"}
    assert HandledKey.objects.filter(key="ci:run-2").count() == 2
    assert HandledKey.objects.get(key="ci:run-1").event_id == done_before.event_id


def test_it_runs_the_handler_in_a_span_whose_parent_is_the_envelopes_trace(
    tenant, make_worker, spans
):
    make_worker(handler=record)
    envelope = services.publish(
        tenant=tenant,
        type="DeploymentPromoted",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
    )

    dispatch.drain("TestWorker")

    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("TestWorker")]
    assert format(span.context.trace_id, "032x") == envelope.trace_id
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.parent.is_remote
    assert span.attributes["messaging.message.id"] == str(envelope.event_id)


def test_it_stamps_log_records_in_a_handler_with_its_trace(tenant, make_worker):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep()
    keep.addFilter(TraceContextFilter())
    logger = logging.getLogger("tests.handler")
    logger.addHandler(keep)
    make_worker(handler=lambda envelope: logger.warning("handling"))
    envelope = publish(tenant)
    try:
        dispatch.drain("TestWorker")
    finally:
        logger.removeHandler(keep)

    (record_,) = records
    assert record_.trace_id == envelope.trace_id
    assert record_.span_id not in ("-", envelope.span_id)  # the handler's own span


def test_it_stops_between_messages_and_releases_the_rest_when_shutting_down(tenant, make_worker):
    seen = []

    def stop_after_two(envelope):
        record(envelope)
        seen.append(envelope)
        if len(seen) == 2:
            shutdown.request()

    shutdown.install()
    make_worker(handler=stop_after_two)
    for n in range(5):
        publish(tenant, n=n)

    outcome = dispatch.drain("TestWorker")

    assert outcome["handled"] == 2 and outcome["released"] == 3
    released = Message.objects.filter(worker="TestWorker", state="pending")
    assert released.count() == 3
    assert all(m.lease_token is None and not m.in_flight for m in released)
    assert all(m.claims == 0 for m in released)  # a release is not a lost claim


def test_it_takes_only_due_messages(tenant, make_worker):
    make_worker(handler=record)
    later = publish(tenant)
    Message.objects.filter(event_id=later.event_id).update(
        due_at=timezone.now() + timedelta(minutes=5)
    )

    assert dispatch.drain("TestWorker")["handled"] == 0


def test_it_stops_a_batch_at_the_drain_deadline_and_releases_the_rest(tenant, make_worker):
    def slow(envelope):
        record(envelope)
        time.sleep(0.2)

    worker = make_worker(handler=slow)
    for n in range(5):
        publish(tenant, n=n)
    batch = dispatch.claim(worker, limit=10)

    outcome = dispatch.run_batch(worker, batch, deadline=time.monotonic() + 0.3)

    assert (outcome.handled, outcome.released) == (2, 3)
    assert Effect.objects.count() == 2
    released = Message.objects.filter(worker="TestWorker", state="pending")
    assert all(m.lease_token is None and m.claims == 0 for m in released)


# Batch handlers: many envelopes a call


class Batches:
    """A batch handler that records each envelope, and the size of every call; it fails on
    envelopes whose data says so."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, envelopes) -> None:
        self.calls.append(len(envelopes))
        for envelope in envelopes:
            record(envelope)
        for envelope in envelopes:
            if envelope.data.get("poison"):
                raise PermanentError(f"poison {envelope.data['n']}")


def test_it_calls_a_batch_handler_with_up_to_its_batch_size(tenant, make_worker):
    handler = Batches()
    make_worker(batch_handler=handler, batch_size=4)
    envelopes = [publish(tenant, n=n) for n in range(10)]

    assert dispatch.drain("TestWorker")["handled"] == 10

    assert handler.calls == [4, 4, 2]
    assert Effect.objects.count() == 10
    assert all(message_of(e).state == "done" for e in envelopes)


def test_it_retries_only_the_message_a_batch_handler_failed_on(tenant, make_worker):
    handler = Batches()
    make_worker(batch_handler=handler, batch_size=4)
    envelopes = [publish(tenant, n=n, poison=n == 5) for n in range(8)]

    outcome = dispatch.drain("TestWorker")

    assert (outcome["handled"], outcome["dead"]) == (7, 1)
    assert message_of(envelopes[5]).state == "dead"
    assert "poison 5" in DeadLetter.objects.get().reason
    # The failed call's writes were rolled back: every other envelope's effect is there once.
    assert sorted(Effect.objects.values_list("event_id", flat=True)) == sorted(
        e.event_id for n, e in enumerate(envelopes) if n != 5
    )


def test_it_does_not_give_a_batch_handler_what_another_event_did_already(tenant, make_worker):
    handler = Batches()
    make_worker(batch_handler=handler, batch_size=10, key=lambda e: e.source_id)
    for n in range(3):
        services.publish(tenant=tenant, type="DeploymentPromoted", source_id="same", data={"n": n})

    assert dispatch.drain("TestWorker")["handled"] == 3

    assert handler.calls == [1]


def test_it_dead_letters_a_malformed_envelope_of_a_batch_alone(tenant, make_worker):
    handler = Batches()
    make_worker(batch_handler=handler, batch_size=10)
    good, bad = publish(tenant, n=1), publish(tenant, n=2)
    Event.objects.filter(id=bad.event_id).update(trace_id="not-a-trace")

    dispatch.drain("TestWorker")

    assert (message_of(good).state, message_of(bad).state) == ("done", "dead")
    assert handler.calls == [1]


def test_it_links_a_batch_span_to_every_envelopes_trace(tenant, make_worker, spans):
    make_worker(batch_handler=Batches(), batch_size=10)
    envelopes = [publish(tenant, n=n) for n in range(3)]

    dispatch.drain("TestWorker")

    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("TestWorker")]
    linked = {(format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
              for link in span.links}  # fmt: skip
    assert linked == {(e.trace_id, e.span_id) for e in envelopes}
    assert span.attributes["messaging.batch.message_count"] == 3


def test_it_refuses_a_worker_with_both_kinds_of_handler():
    with pytest.raises(ValueError, match="not both"):
        registry.Worker(
            name="Both",
            app="tests",
            group="reaction",
            purpose="",
            trigger=registry.Trigger(),
            retry=RetryPolicy(max_attempts=1),
            idempotency=registry.Idempotency(""),
            module="tests",
            handler=record,
            batch_handler=Batches(),
        )


def test_it_keeps_a_batch_handlers_writes_for_the_failures_it_reports(tenant, make_worker):
    def handler(envelopes):
        for envelope in envelopes:
            Effect.objects.create(event_id=envelope.event_id, worker="attempted")
        return {envelopes[0].event_id: TransientError("the receiver answered 500")}

    make_worker(batch_handler=handler, batch_size=10)
    failing, passing = publish(tenant, n=1), publish(tenant, n=2)
    dispatch.drain("TestWorker")

    assert Effect.objects.filter(worker="attempted").count() == 2  # nothing rolled back
    states = dict(Message.objects.filter(worker="TestWorker").values_list("event_id", "state"))
    assert states == {failing.event_id: "pending", passing.event_id: "done"}
    failure = Failure.objects.get(worker="TestWorker")
    assert "answered 500" in failure.error and failure.attempt == 1


def test_it_handles_a_keyed_message_whose_failure_a_batch_handler_reported_when_it_returns(
    tenant, make_worker
):
    calls = []

    def handler(envelopes):
        calls.append([e.event_id for e in envelopes])
        if len(calls) == 1:
            return {envelopes[0].event_id: TransientError("the receiver answered 500")}
        return {}

    make_worker(batch_handler=handler, batch_size=10, key=lambda e: f"{e.source}:{e.source_id}")
    envelope = services.publish(
        tenant=tenant, type="DeploymentPromoted", source="ci", source_id="run-9"
    )
    dispatch.drain("TestWorker")
    Message.objects.filter(event_id=envelope.event_id).update(due_at=timezone.now())

    dispatch.drain("TestWorker")

    assert calls == [[envelope.event_id], [envelope.event_id]]  # not skipped as done already
    assert message_of(envelope).state == "done"
    assert HandledKey.objects.get().key == "ci:run-9"


def test_it_tells_the_worker_when_one_of_its_messages_is_dead_lettered(tenant, make_worker):
    told = []

    def fail(envelope):
        raise PermanentError("bad data")

    make_worker(handler=fail, on_dead=lambda envelope, reason: told.append((envelope, reason)))
    envelope = publish(tenant)
    dispatch.drain("TestWorker")

    ((dead, reason),) = told
    assert dead.event_id == envelope.event_id and "bad data" in reason
    assert DeadLetter.objects.filter(worker="TestWorker").count() == 1


def test_it_releases_unattempted_what_a_batch_handler_defers(tenant, make_worker):
    from core.runtime.errors import Deferred

    calls = []

    def handler(envelopes):
        calls.append(len(envelopes))
        if len(calls) == 1:  # the first call gets to one of its two messages
            return {envelopes[1].event_id: Deferred("no time left")}
        return {}

    make_worker(batch_handler=handler, batch_size=10)
    publish(tenant, n=1)
    publish(tenant, n=2)
    dispatch.drain("TestWorker")

    assert calls == [2, 1]
    assert set(
        Message.objects.filter(worker="TestWorker").values_list("state", "attempts", "claims")
    ) == {("done", 0, 1)}
    assert not Failure.objects.exists()
