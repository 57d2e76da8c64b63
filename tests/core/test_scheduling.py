"""Schedules are code: django-q2 Schedule rows, schedule slots as messages, sweeps, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from django_q.models import Schedule as QSchedule

from core import services
from core.models import DeadLetter, Event, HandledKey, Message, WorkerState
from core.runtime import dispatch, queue, registry, scheduling
from core.runtime.errors import PermanentError
from core.runtime.registry import WILDCARD, Schedule

pytestmark = pytest.mark.django_db

FIVE_MINUTES = (Schedule("5m", 5),)
AT_10_07 = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)


def platform_schedules() -> dict[str, QSchedule]:
    return {s.name: s for s in QSchedule.objects.filter(name__startswith="platform:")}


def fired(worker: str = "TestWorker"):
    return Message.objects.filter(worker=worker, event__type="ScheduleFired")


def drains_queued() -> list[tuple[str, tuple]]:
    """(cluster key, args) of every drain task waiting in django-q2's ORM queue."""
    return sorted(
        (row.key, tuple(row.args())) for row in OrmQ.objects.all() if row.func() == queue.DRAIN_TASK
    )


def due_message(tenant, worker: str, *, due_in=timedelta(0)):
    envelope = services.send(tenant=tenant, worker=worker, type="DeploymentPromoted")
    Message.objects.filter(event_id=envelope.event_id).update(due_at=timezone.now() + due_in)
    return envelope


def age(envelope, days: int) -> None:
    Event.objects.filter(id=envelope.event_id).update(
        recorded_at=timezone.now() - timedelta(days=days)
    )


# sync(): registry schedules become django-q2 Schedule rows


def test_it_creates_a_schedule_row_for_each_schedule_of_a_built_worker(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    scheduling.sync()

    row = platform_schedules()["platform:TestWorker:5m"]
    assert row.func == "core.runtime.scheduling.fire"
    assert row.args == repr(("TestWorker", "5m"))
    assert (row.schedule_type, row.minutes, row.repeats) == (QSchedule.MINUTES, 5, -1)
    assert row.cluster is None  # the default cluster


def test_it_starts_a_schedule_on_its_next_whole_slot(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    before = timezone.now()

    scheduling.sync()

    next_run = platform_schedules()["platform:TestWorker:5m"].next_run
    assert next_run.minute % 5 == 0 and (next_run.second, next_run.microsecond) == (0, 0)
    assert before < next_run <= before + timedelta(minutes=5)


def test_it_leaves_the_same_rows_when_synced_again(make_worker):
    make_worker(events=(), schedules=(*FIVE_MINUTES, Schedule("1h", 60)))
    scheduling.sync()
    first = {name: (row.pk, row.next_run) for name, row in platform_schedules().items()}

    scheduling.sync()

    assert {name: (row.pk, row.next_run) for name, row in platform_schedules().items()} == first
    assert QSchedule.objects.filter(name__startswith="platform:TestWorker:").count() == 2


def test_it_updates_a_schedule_whose_cadence_changed_in_place(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    scheduling.sync()
    row = platform_schedules()["platform:TestWorker:5m"]

    registry.unregister("TestWorker")
    make_worker(events=(), schedules=(Schedule("5m", 10),))
    scheduling.sync()

    changed = platform_schedules()["platform:TestWorker:5m"]
    assert (changed.pk, changed.minutes) == (row.pk, 10)


def test_it_runs_a_schedule_whose_cadence_shrank_on_the_new_cadence(make_worker, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: AT_10_07)
    make_worker(events=(), schedules=(Schedule("daily", 1440),))
    scheduling.sync()

    registry.unregister("TestWorker")
    make_worker(events=(), schedules=(Schedule("daily", 5),))
    scheduling.sync()

    next_run = platform_schedules()["platform:TestWorker:daily"].next_run
    assert next_run == datetime(2026, 3, 2, 10, 10, tzinfo=UTC)


def test_it_deletes_a_schedule_no_longer_declared(make_worker):
    make_worker(events=(), schedules=(*FIVE_MINUTES, Schedule("1h", 60)))
    scheduling.sync()

    registry.unregister("TestWorker")
    make_worker(events=(), schedules=FIVE_MINUTES)
    scheduling.sync()

    assert "platform:TestWorker:1h" not in platform_schedules()
    assert "platform:TestWorker:5m" in platform_schedules()


def test_it_deletes_the_schedules_of_a_worker_that_is_gone(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    scheduling.sync()

    registry.unregister("TestWorker")
    scheduling.sync()

    assert not QSchedule.objects.filter(name__startswith="platform:TestWorker").exists()


def test_it_leaves_schedules_it_does_not_own_alone(make_worker):
    mine = QSchedule.objects.create(name="nightly report", func="reports.nightly", minutes=1440)

    scheduling.sync()

    assert QSchedule.objects.filter(pk=mine.pk).exists()


def test_it_schedules_no_worker_that_is_not_built(db):
    scheduling.sync()

    unbuilt = [w for w in registry.catalog_workers() if w.trigger.schedules and not w.built]
    assert any(w.name == "CostAnomalyWorker" for w in unbuilt)  # they declare schedules...
    for worker in unbuilt:  # ...but have no handler yet
        assert not any(name.startswith(f"platform:{worker.name}:") for name in platform_schedules())


def test_it_schedules_a_built_worker_at_each_of_its_cadences(db):
    scheduling.sync()

    assert {
        name: row.minutes
        for name, row in platform_schedules().items()
        if name.startswith("platform:MetricAggregationWorker:")
    } == {
        "platform:MetricAggregationWorker:1m": 1,
        "platform:MetricAggregationWorker:5m": 5,
        "platform:MetricAggregationWorker:1h": 60,
    }


def test_it_schedules_the_pruning_of_old_events(db):
    scheduling.sync()

    prune = platform_schedules()["platform:prune"]
    assert prune.func == "core.runtime.scheduling.prune"
    assert prune.minutes == 60


def test_it_records_a_worker_state_for_every_worker(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    scheduling.sync()

    states = set(WorkerState.objects.values_list("worker", flat=True))
    assert {w.name for w in registry.all_workers()} <= states


# fire(): a schedule slot is one ScheduleFired message per tenant, addressed to the worker


def test_it_sends_each_tenant_the_slot_addressed_to_the_worker(tenant, other_tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    make_worker("SameSchedule", events=(), schedules=FIVE_MINUTES)
    make_worker("Everything", events=(WILDCARD,))

    assert scheduling.fire("TestWorker", "5m", now=AT_10_07) == 2

    assert set(Message.objects.values_list("worker", "tenant")) == {
        ("TestWorker", tenant.pk),
        ("TestWorker", other_tenant.pk),
    }
    assert set(Event.objects.values_list("type", "to_worker")) == {("ScheduleFired", "TestWorker")}


def test_it_gives_the_slot_its_window(tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    scheduling.fire("TestWorker", "5m", now=AT_10_07)

    event = Event.objects.get()
    assert event.data == {
        "schedule": "5m",
        "windowStart": "2026-03-02T10:00:00+00:00",
        "windowEnd": "2026-03-02T10:05:00+00:00",
    }
    assert event.occurred_at == datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    assert event.source == "schedule:TestWorker:5m"


def test_it_gives_the_slot_the_event_id_slot_event_id_derives(tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    scheduling.fire("TestWorker", "5m", now=AT_10_07)

    slot = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    expected = scheduling.slot_event_id("TestWorker", "5m", tenant.pk, slot)
    assert Event.objects.get().pk == expected


def test_it_adds_nothing_when_the_same_slot_fires_again(tenant, other_tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    scheduling.fire("TestWorker", "5m", now=AT_10_07)

    scheduling.fire("TestWorker", "5m", now=AT_10_07)
    scheduling.fire("TestWorker", "5m", now=AT_10_07 + timedelta(minutes=2))  # 10:09:30

    assert fired().count() == 2
    assert Event.objects.count() == 2


def test_it_adds_a_message_per_tenant_for_the_next_slot(tenant, other_tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)
    scheduling.fire("TestWorker", "5m", now=AT_10_07)

    scheduling.fire("TestWorker", "5m", now=AT_10_07 + timedelta(minutes=3))  # 10:10:30

    assert fired().count() == 4
    windows = Event.objects.values_list("data__windowEnd", flat=True)
    assert sorted(windows) == [
        "2026-03-02T10:05:00+00:00",
        "2026-03-02T10:05:00+00:00",
        "2026-03-02T10:10:00+00:00",
        "2026-03-02T10:10:00+00:00",
    ]


def test_it_runs_the_handler_once_per_tenant_for_a_slot(tenant, other_tenant, make_worker):
    seen = []
    make_worker(events=(), schedules=FIVE_MINUTES, handler=seen.append)
    scheduling.fire("TestWorker", "5m", now=AT_10_07)
    scheduling.fire("TestWorker", "5m", now=AT_10_07)

    assert dispatch.drain("TestWorker")["handled"] == 2
    assert dispatch.drain("TestWorker")["handled"] == 0

    assert sorted(e.tenant_id for e in seen) == sorted([tenant.pk, other_tenant.pk])
    assert {e.type for e in seen} == {"ScheduleFired"}
    assert {e.data["windowEnd"] for e in seen} == {"2026-03-02T10:05:00+00:00"}


def test_it_sends_no_slot_when_there_are_no_tenants(make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    assert scheduling.fire("TestWorker", "5m", now=AT_10_07) == 0
    assert not Event.objects.exists()


def test_it_refuses_to_fire_a_worker_it_does_not_know(db):
    with pytest.raises(LookupError, match="no worker named 'GoneWorker'"):
        scheduling.fire("GoneWorker", "5m", now=AT_10_07)


def test_it_refuses_to_fire_a_schedule_the_worker_does_not_declare(tenant, make_worker):
    make_worker(events=(), schedules=FIVE_MINUTES)

    with pytest.raises(LookupError, match="hourly"):
        scheduling.fire("TestWorker", "hourly", now=AT_10_07)


@pytest.mark.parametrize(
    ("now", "minutes", "slot"),
    [
        (datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC), 5, datetime(2026, 3, 2, 10, 5, tzinfo=UTC)),
        (datetime(2026, 3, 2, 10, 5, 0, tzinfo=UTC), 5, datetime(2026, 3, 2, 10, 5, tzinfo=UTC)),
        (datetime(2026, 3, 2, 10, 59, 59, tzinfo=UTC), 60, datetime(2026, 3, 2, 10, tzinfo=UTC)),
        (datetime(2026, 3, 2, 23, 59, tzinfo=UTC), 1440, datetime(2026, 3, 2, tzinfo=UTC)),
    ],
)
def test_it_puts_a_firing_in_the_latest_slot_at_or_before_it(now, minutes, slot):
    assert scheduling.slot_of(now, minutes) == slot


# sweep(): kick the workers that have due messages


def test_it_sweeps_only_workers_with_due_messages(tenant, make_worker):
    for name in ("Busy", "Later", "Idle"):
        make_worker(name)
    due_message(tenant, "Busy")
    due_message(tenant, "Later", due_in=timedelta(minutes=5))

    assert scheduling.sweep("platform") == ["Busy"]

    assert drains_queued() == [("platform", ("Busy",))]
    drains = WorkerState.objects.filter(worker__in=["Busy", "Later", "Idle"])
    assert dict(drains.values_list("worker", "drains")) == {"Busy": 1}


def test_it_queues_no_second_drain_while_one_is_queued(tenant, make_worker):
    make_worker()
    due_message(tenant, "TestWorker")
    scheduling.sweep("platform")

    scheduling.sweep("platform")

    assert drains_queued() == [("platform", ("TestWorker",))]


def test_it_sweeps_only_the_workers_of_its_own_cluster(tenant, make_worker, settings):
    settings.WORKER_CLUSTERS = "split"
    make_worker("Ingest", group="ingestion")
    make_worker("React", group="reaction")
    due_message(tenant, "Ingest")
    due_message(tenant, "React")

    assert scheduling.sweep("ingestion") == ["Ingest"]
    assert drains_queued() == [("ingestion", ("Ingest",))]


def test_it_sweeps_no_worker_that_is_not_built(tenant):
    scheduling.sync()

    assert scheduling.sweep("platform") == []
    assert drains_queued() == []


def test_it_recovers_drains_counted_by_a_cluster_that_died(tenant, make_worker):
    make_worker()
    due_message(tenant, "TestWorker")
    WorkerState.objects.create(worker="TestWorker", drains=1, drains_changed=timezone.now())
    assert scheduling.sweep("platform") == ["TestWorker"]
    assert drains_queued() == []  # the counted drain is assumed to be running

    scheduling.recover("platform")

    assert drains_queued() == [("platform", ("TestWorker",))]


# prune(): old handled events go, the dead-letter store and the backlog stay


@pytest.fixture
def runtime_only(without_workers):
    """Pruning turns on which workers received an event: only the test's own, not the wildcard
    TelemetryCorrelationWorker that receives every public event too."""
    without_workers("TelemetryCorrelationWorker", "WebhookDeliveryWorker")


def test_it_prunes_old_events_whose_messages_are_all_handled(
    tenant, make_worker, settings, runtime_only
):
    settings.EVENT_RETENTION_DAYS = 14
    make_worker(handler=lambda e: None)
    old, recent = (services.publish(tenant=tenant, type="DeploymentPromoted") for _ in range(2))
    dispatch.drain("TestWorker")
    age(old, 15)
    age(recent, 13)

    assert scheduling.prune() == 1

    assert list(Event.objects.values_list("id", flat=True)) == [recent.event_id]
    assert not Message.objects.filter(event_id=old.event_id).exists()


def test_it_prunes_old_events_that_no_worker_received(tenant, runtime_only):
    unheard = services.publish(tenant=tenant, type="BuildCompleted")
    age(unheard, 30)

    assert scheduling.prune() == 1
    assert not Event.objects.exists()


def test_it_keeps_old_dead_and_pending_events(tenant, make_worker, runtime_only):
    def refuse(envelope):
        if envelope.data.get("poison"):
            raise PermanentError("poison")

    make_worker(handler=refuse)
    dead = services.publish(tenant=tenant, type="DeploymentPromoted", data={"poison": True})
    dispatch.drain("TestWorker")
    pending = services.publish(tenant=tenant, type="DeploymentPromoted")
    for envelope in (dead, pending):
        age(envelope, 30)

    assert scheduling.prune() == 0

    assert Event.objects.count() == 2
    assert DeadLetter.objects.get().message.event_id == dead.event_id
    assert Message.objects.get(event_id=pending.event_id).state == "pending"


def test_it_keeps_an_old_event_until_every_worker_has_handled_it(tenant, make_worker, runtime_only):
    make_worker("Fast")
    make_worker("Slow")
    envelope = services.publish(tenant=tenant, type="DeploymentPromoted")
    dispatch.drain("Fast")
    age(envelope, 30)

    assert scheduling.prune() == 0
    dispatch.drain("Slow")
    assert scheduling.prune() == 1


def test_it_prunes_relative_to_the_time_it_is_given(tenant, runtime_only):
    envelope = services.publish(tenant=tenant, type="BuildCompleted")

    assert scheduling.prune(now=timezone.now() + timedelta(days=13)) == 0
    assert scheduling.prune(now=timezone.now() + timedelta(days=15)) == 1
    assert not Event.objects.filter(id=envelope.event_id).exists()


def test_it_prunes_old_idempotency_keys(tenant, make_worker):
    make_worker(key=lambda e: f"{e.source}:{e.source_id}")
    envelope = services.publish(
        tenant=tenant, type="DeploymentPromoted", source="ci", source_id="run-1"
    )
    dispatch.drain("TestWorker")
    assert HandledKey.objects.filter(event_id=envelope.event_id).exists()

    scheduling.prune(now=timezone.now() + timedelta(days=15))

    assert not HandledKey.objects.exists()


# Split clusters: ingestion and reaction workers scale separately


def test_it_puts_a_worker_on_its_groups_cluster_when_split(make_worker, settings):
    ingest = make_worker("Ingest", group="ingestion")
    react = make_worker("React", group="reaction")

    assert (ingest.cluster, react.cluster) == ("platform", "platform")
    settings.WORKER_CLUSTERS = "split"
    assert (ingest.cluster, react.cluster) == ("ingestion", "reaction")


def test_it_queues_a_drain_on_the_workers_cluster_when_split(tenant, make_worker, settings):
    settings.WORKER_CLUSTERS = "split"
    make_worker("Ingest", group="ingestion")

    queue.kick(["Ingest"])

    (row,) = OrmQ.objects.all()
    assert row.key == "ingestion"
    assert (row.func(), tuple(row.args())) == (queue.DRAIN_TASK, ("Ingest",))


def test_it_kicks_a_published_events_worker_on_its_cluster_at_commit(
    tenant, make_worker, settings, django_capture_on_commit_callbacks
):
    settings.WORKER_CLUSTERS = "split"
    make_worker("Ingest", group="ingestion")

    with django_capture_on_commit_callbacks(execute=True):
        services.publish(tenant=tenant, type="DeploymentPromoted")

    assert ("ingestion", ("Ingest",)) in drains_queued()


def test_it_runs_a_split_workers_schedule_on_its_cluster(make_worker, settings):
    settings.WORKER_CLUSTERS = "split"
    make_worker("Ingest", events=(), schedules=FIVE_MINUTES, group="ingestion")
    make_worker("React", events=(), schedules=FIVE_MINUTES, group="reaction")

    scheduling.sync()

    rows = platform_schedules()
    assert rows["platform:Ingest:5m"].cluster == "ingestion"
    assert rows["platform:React:5m"].cluster == "reaction"


def test_it_prunes_on_the_default_cluster_when_not_split(db):
    scheduling.sync()

    assert platform_schedules()["platform:prune"].cluster is None


def test_it_prunes_on_a_cluster_that_runs_when_split(db, settings):
    settings.WORKER_CLUSTERS = "split"

    scheduling.sync()

    assert platform_schedules()["platform:prune"].cluster in {"ingestion", "reaction"}


def test_it_gives_a_slot_only_to_the_workers_that_have_one_free(db):
    WorkerState.objects.create(worker="Busy", drains=1, drains_changed=timezone.now())
    WorkerState.objects.create(worker="Idle", drains=0)
    WorkerState.objects.create(
        worker="Stale", drains=1, drains_changed=timezone.now() - timedelta(hours=1)
    )

    taken = queue._take_drain_slots(["Busy", "Idle", "New", "Stale"], limit=1)

    assert sorted(taken) == ["Idle", "New", "Stale"]
    mine = WorkerState.objects.filter(worker__in=["Busy", "Idle", "New", "Stale"])
    assert set(mine.values_list("drains", flat=True)) == {1}
    assert queue._take_drain_slots(["Idle", "New"], limit=1) == []
