"""A row the database refuses is refused on every attempt: a worker that meets one dead-letters
its message at once, with the reason, instead of retrying it five times."""

from __future__ import annotations

import secrets

import pytest
from django.db import IntegrityError, connection, transaction

from core import services
from core.models import DeadLetter, Failure, Message
from core.runtime import dispatch
from core.runtime.errors import is_permanent
from observability.models import Span
from tests.effects.models import Effect

pytestmark = pytest.mark.django_db


def refused(write) -> Exception:
    """What the database raises for `write`, as a handler would meet it."""
    with pytest.raises(Exception) as caught, transaction.atomic():
        write()
    return caught.value


def out_of_range():
    Effect.objects.create(event_id="00000000-0000-0000-0000-000000000001", worker="w", pid=2**70)


def span(tenant, **fields) -> Span:
    return Span.objects.create(
        tenant=tenant, trace_id="a" * 32, span_id="b" * 16, name="x", start_ns=1, end_ns=2, **fields
    )


def breaks_a_check(tenant):
    span(tenant, kind=-1)  # kind is a PositiveSmallIntegerField: CHECK (kind >= 0)


def test_it_takes_a_value_the_database_refuses_for_permanent(tenant):
    # PostgreSQL: DataError (integer out of range); SQLite: OverflowError from the driver.
    assert is_permanent(refused(out_of_range))
    # A CHECK constraint: an IntegrityError that no retry can pass.
    assert is_permanent(refused(lambda: breaks_a_check(tenant)))


def nul_in_text():
    Effect.objects.create(event_id="00000000-0000-0000-0000-000000000002", worker="a\x00b")


def test_it_takes_a_nul_in_text_for_permanent_on_postgresql(postgres):
    assert is_permanent(refused(nul_in_text))  # DataError: PostgreSQL's text cannot hold NUL


def test_it_takes_a_limit_of_the_database_for_permanent_on_postgresql(postgres):
    def too_large_for_an_index():
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE limited (x text)")
            cursor.execute("CREATE INDEX ON limited (x)")
            cursor.execute("INSERT INTO limited VALUES (%s)", [secrets.token_hex(4000)])

    error = refused(too_large_for_an_index)  # index row size exceeds the maximum: 54000

    assert is_permanent(error)


def test_it_still_takes_a_unique_violation_for_transient(tenant):
    # A concurrent transaction's row: the retry finds it stored and leaves it out.
    span(tenant)
    error = refused(lambda: span(tenant))
    assert isinstance(error, IntegrityError) and not is_permanent(error)


@pytest.mark.parametrize("write", ["out of range", "check", "nul"])
def test_it_dead_letters_at_once_a_message_whose_write_the_database_refuses(
    tenant, make_worker, write
):
    if write == "nul" and connection.vendor != "postgresql":
        pytest.skip("SQLite stores NUL in text")
    writes = {
        "out of range": out_of_range,
        "check": lambda: breaks_a_check(tenant),
        "nul": nul_in_text,
    }

    def handler(envelope) -> None:
        Effect.objects.create(event_id=envelope.event_id, worker="TestWorker")  # rolled back
        writes[write]()

    make_worker(handler=handler)
    envelope = services.publish(tenant=tenant, type="DeploymentPromoted", data={})

    outcome = dispatch.drain("TestWorker")

    assert outcome["dead"] == 1 and outcome["retried"] == 0
    message = Message.objects.get(event_id=envelope.event_id, worker="TestWorker")
    assert (message.state, message.attempts) == ("dead", 1)
    (failure,) = Failure.objects.filter(message=message)
    assert failure.permanent
    dead = DeadLetter.objects.get(message=message)
    assert dead.reason == failure.error and "gave up" not in dead.reason
    assert not Effect.objects.filter(worker="TestWorker").exists()
