"""The one-open-incident guarantee under concurrent consumers, on PostgreSQL: two threads
racing to open the incident of one group key, and two consumer processes draining a storm."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, transaction

from core.models import Event, Failure, Message
from observability.incidents import handler, store
from observability.incidents.models import Incident, IncidentTrigger
from tests.core.test_processes import spawn
from tests.observability.incidents.factories import T0, WORKER, alert_data, envelope, fire

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def waiting_for_a_lock() -> bool:
    """Whether another backend waits for a lock held by this one's transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


def race(first: Callable[[], None], second: Callable[[], None]) -> list[BaseException]:
    """Run `first` in a transaction that stays open until `second`, started in another
    thread, is seen waiting on a lock it holds; then commit it and let `second` finish."""
    errors: list[BaseException] = []
    started = threading.Event()

    def run_first() -> None:
        try:
            with transaction.atomic():
                first()
                started.set()
                deadline = time.monotonic() + 30
                while not waiting_for_a_lock():
                    assert time.monotonic() < deadline, "the second consumer never waited"
                    time.sleep(0.05)
        except BaseException as exc:
            started.set()
            errors.append(exc)
        finally:
            connection.close()

    def run_second() -> None:
        started.wait(30)
        try:
            with transaction.atomic():
                second()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_it_lets_the_loser_of_a_race_join_the_winners_incident(postgres, tenant):
    one = envelope(tenant, "AlertTriggered", alert_data(instance="eu-1"))
    two = envelope(
        tenant, "AlertTriggered", alert_data(instance="eu-2"), at=T0 + timedelta(seconds=1)
    )

    errors = race(lambda: handler.handle([one]), lambda: handler.handle([two]))

    assert not errors, errors
    incident = Incident.objects.get()
    assert incident.triggers.count() == 2
    assert Event.objects.filter(type="IncidentOpened").count() == 1


def test_it_refuses_a_second_open_incident_in_the_database_and_the_retry_joins(
    postgres, tenant, monkeypatch
):
    # Without the handler's lock, both consumers open an incident: the index refuses the
    # second, whose batch is retried (a TransientError) and then joins the first's.
    monkeypatch.setattr(store, "lock_groups", lambda tenant_id, keys: None)
    one = envelope(tenant, "AlertTriggered", alert_data(instance="eu-1"))
    two = envelope(
        tenant, "AlertTriggered", alert_data(instance="eu-2"), at=T0 + timedelta(seconds=1)
    )

    errors = race(lambda: handler.handle([one]), lambda: handler.handle([two]))

    assert [type(e).__name__ for e in errors] == ["TransientError"]
    assert "on retry the triggers join it" in str(errors[0])
    with transaction.atomic():
        handler.handle([two])
    assert Incident.objects.get().triggers.count() == 2


def test_it_keeps_one_open_incident_per_group_key_with_two_consumer_processes(
    postgres, tenant, tmp_path
):
    keys, per_key = 8, 40
    for n in range(keys * per_key):
        fire(tenant, service=f"svc-{n % keys}", instance=f"i-{n}", at=T0 + timedelta(seconds=n))

    consumers = [
        spawn(
            [sys.executable, "-m", "tests.observability.incidents.consume"],
            tmp_path / f"consumer{i}.log",
            INCIDENT_BATCH_SIZE="7",
            WORKER_MODULES="",
        )
        for i in range(2)
    ]
    for i, consumer in enumerate(consumers):
        assert consumer.wait(timeout=240) == 0, (tmp_path / f"consumer{i}.log").read_text()

    assert not Message.objects.filter(worker=WORKER).exclude(state="done").exists()
    assert not Failure.objects.exists()
    incidents = Counter(Incident.objects.values_list("group_key", flat=True))
    assert len(incidents) == keys and set(incidents.values()) == {1}
    assert IncidentTrigger.objects.count() == keys * per_key
    assert sorted(Incident.objects.values_list("number", flat=True)) == list(range(1, keys + 1))
    assert Event.objects.filter(type="IncidentOpened").count() == keys
