"""AlertEvaluationWorker over windows stored the platform's way: OTLP metrics posted, each
minute aggregated by MetricAggregationWorker's slot, and the worker's tick drained."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from core import bulk
from core.models import DeadLetter, Event, Message
from core.runtime import dispatch, replay, scheduling
from observability.alerting import services as alerting
from observability.alerting.evaluation import InstanceState, Kind, decode_state, transition_id
from observability.alerting.models import AlertInstance, AlertRule, AlertStateChange
from observability.alerting.rules import instance_key
from tests.helpers import drain_all
from tests.observability.alerting.stored import (
    TRACE,
    Telemetry,
    aggregate,
    events,
    minute,
    minute_by_minute,
    rule,
    tick,
)

pytestmark = pytest.mark.django_db
CHECKOUT = {"service.name": "checkout"}
KEY = instance_key(CHECKOUT)


def start(telemetry: Telemetry, values, **rule_spec):
    """Points for every minute of `values`, the first minute aggregated and a rule on it."""
    telemetry.gauge("queue.depth", values, exemplars=True)
    aggregate(1)
    return rule(telemetry.tenant, **rule_spec)


def test_it_triggers_and_resolves_from_stored_windows_with_the_contracts_data(tenant):
    found = start(Telemetry(tenant), [50, 95, 95, 95, 50, 50], forSeconds=60)

    tick(1)
    minute_by_minute(6, since=1)

    triggered, resolved = events(tenant)
    assert (triggered.type, resolved.type) == ("AlertTriggered", "AlertResolved")
    rule_id = str(found.pk)
    assert triggered.data == {
        "triggerKey": f"alert:{rule_id}:{KEY}",
        "groupKey": f"alert:{rule_id}:checkout",
        "ruleId": rule_id,
        "ruleRevision": 1,
        "ruleName": "queue too deep",
        "instanceKey": KEY,
        "labels": CHECKOUT,
        "service": "checkout",
        "severity": "critical",
        "value": 95.0,
        "threshold": 90.0,
        "windowStart": minute(2).isoformat(),  # breached at the ends of minutes 1 and 2
        "windowEnd": minute(3).isoformat(),
        "windowSize": "1m",
        "reason": "last of queue.depth was 95: > 90 (critical)",
        "traceIds": [TRACE.format(2), TRACE.format(1)],
    }
    assert triggered.id == transition_id(rule_id, KEY, minute(2), Kind.TRIGGERED)
    assert (triggered.source, triggered.source_id) == ("alerting", str(triggered.id))
    assert resolved.data["windowStart"] == minute(4).isoformat()
    assert resolved.data["value"] == 50.0 and resolved.data["severity"] == "critical"
    instance = AlertInstance.objects.get(rule=found)
    assert (instance.state_name, instance.severity, instance.notified) == ("normal", "", "")
    assert instance.last_window == minute(5)


def test_it_keeps_every_change_with_its_state_as_history(tenant):
    found = start(Telemetry(tenant), [50, 95, 95, 50], forSeconds=60)

    tick(1)
    minute_by_minute(4, since=1)

    changes = AlertStateChange.objects.filter(rule=found).order_by("window_start")
    assert [(c.kind, c.state_name, c.published) for c in changes] == [
        ("pending", "pending", ""),
        ("triggered", "firing", "AlertTriggered"),
        ("resolved", "normal", "AlertResolved"),
    ]
    after_trigger = InstanceState.from_json(changes[1].state)
    assert after_trigger.fired_at == minute(3) and after_trigger.severity == "critical"
    assert changes[1].reason == "last of queue.depth was 95: > 90 (critical)"


def test_it_evaluates_every_window_once_in_order_when_it_catches_up(tenant):
    found = start(Telemetry(tenant), [50, 95, 95, 50, 95, 95, 95])

    tick(1)
    aggregate(7, since=1)  # the ticks of minutes 2..6 never came
    tick(7)

    assert [(e.type, e.data["windowStart"]) for e in events(tenant)] == [
        ("AlertTriggered", minute(1).isoformat()),
        ("AlertResolved", minute(3).isoformat()),
        ("AlertTriggered", minute(4).isoformat()),
    ]
    assert AlertRule.objects.get(pk=found.pk).last_window == minute(6)


def test_it_publishes_nothing_new_when_the_same_windows_are_evaluated_again(tenant):
    found = start(Telemetry(tenant), [50, 95, 95, 50])
    tick(1)
    before = AlertInstance.objects.get(rule=found).state
    minute_by_minute(4, since=1)
    published = {e.id for e in events(tenant)}
    changes = AlertStateChange.objects.count()

    # As if those ticks had never been: the state rolled back, then evaluated afresh.
    AlertInstance.objects.filter(rule=found).update(state=before, notified="")
    AlertRule.objects.filter(pk=found.pk).update(last_window=minute(0))
    tick(5)

    assert {e.id for e in events(tenant)} == published and len(published) == 2
    assert AlertStateChange.objects.count() == changes


def test_it_evaluates_nothing_twice_when_a_tick_is_handled_again(tenant):
    from observability.alerting.handler import tick as handle

    start(Telemetry(tenant), [50, 95, 95])
    tick(1)
    minute_by_minute(3, since=1)
    slot = Event.objects.filter(type="ScheduleFired", tenant=tenant).order_by("occurred_at")
    last = slot.last()
    assert last is not None
    count = Event.objects.count()

    from core.envelope import Envelope

    handle(Envelope.of(last))

    assert Event.objects.count() == count


# Missing data through storage


def test_it_ends_a_series_at_a_point_without_a_recorded_value_in_prometheus_mode(tenant):
    found = start(Telemetry(tenant), [95, 95, "stale", None, None], noData="prometheus")

    tick(1)
    minute_by_minute(5, since=1)

    assert [(e.type, e.data["windowStart"]) for e in events(tenant)] == [
        ("AlertTriggered", minute(0).isoformat()),
        ("AlertResolved", minute(2).isoformat()),
    ]
    resolved = AlertStateChange.objects.get(rule=found, kind="resolved")
    assert "ended (no recorded value)" in resolved.reason


def test_it_keeps_an_alert_open_through_missing_windows_in_nodata_mode(tenant):
    found = start(Telemetry(tenant), [95, 95, None, None, 95])

    tick(1)
    minute_by_minute(5, since=1)

    assert [e.type for e in events(tenant)] == ["AlertTriggered"]
    kinds = list(
        AlertStateChange.objects.filter(rule=found)
        .order_by("window_start")
        .values_list("kind", flat=True)
    )
    assert kinds == ["triggered", "nodata", "firing"]


# Late data


def test_it_triggers_late_when_a_late_point_changes_a_window_it_evaluated(tenant):
    telemetry = Telemetry(tenant)
    found = start(telemetry, [50, 50, 50, 95])
    tick(1)
    minute_by_minute(3, since=1)  # windows 0-2 evaluated: normal
    # A point of minute 2 arrives late, and is the window's newest: 95.
    telemetry.gauge("queue.depth", [95], start=2, second=50)

    minute_by_minute(4, since=3)  # minute 3's slot computes window 2 again, then the tick

    (triggered,) = events(tenant)
    assert triggered.data["reason"].startswith("late data: ")
    assert triggered.data["windowStart"] == minute(2).isoformat()
    late = AlertStateChange.objects.filter(rule=found, late=True)
    assert {c.kind for c in late} >= {"triggered"}
    instance = AlertInstance.objects.get(rule=found)
    assert (instance.state_name, instance.notified, instance.last_window) == (
        "firing",
        "critical",
        minute(3),
    )


def test_it_changes_nothing_when_a_late_point_leaves_the_outcome_as_it_was(tenant):
    telemetry = Telemetry(tenant)
    found = start(telemetry, [50, 50, 50, 50])
    tick(1)
    minute_by_minute(3, since=1)
    telemetry.gauge("queue.depth", [60], start=2, second=50)  # still under 90

    minute_by_minute(4, since=3)

    assert events(tenant) == []
    assert not AlertStateChange.objects.filter(rule=found).exists()


def test_it_does_not_page_twice_for_an_alert_a_late_point_moves(tenant):
    telemetry = Telemetry(tenant)
    start(telemetry, [50, 95, 95, 95, 95])
    tick(1)
    minute_by_minute(3, since=1)  # triggered at window 1
    telemetry.gauge("queue.depth", [50], start=1, second=50)  # window 1 was not a breach

    minute_by_minute(5, since=3)

    assert [e.type for e in events(tenant)] == ["AlertTriggered"]


# Silences


def silence(tenant, *, starts: int, ends: int, **matcher):
    label, value = next(iter(matcher.items())) if matcher else ("service.name", "checkout")
    return alerting.create_silence(
        tenant=tenant,
        matchers=[{"label": label.replace("__", "."), "op": "=", "value": value}],
        starts_at=minute(starts),
        ends_at=minute(ends),
        created_by="ops@example.com",
        comment="deploying the queue",
    )


def test_it_evaluates_a_silenced_instance_and_publishes_nothing(tenant):
    found = start(Telemetry(tenant), [95, 95, 95])
    silence(tenant, starts=0, ends=30)

    tick(1)
    minute_by_minute(3, since=1)

    assert events(tenant) == []
    instance = AlertInstance.objects.get(rule=found)
    assert (instance.state_name, instance.silenced, instance.notified) == ("firing", True, "")
    triggered = AlertStateChange.objects.get(rule=found, kind="triggered")
    assert (triggered.published, triggered.silenced) == ("", True)


def test_it_triggers_when_the_silence_ends_if_the_alert_still_fires(tenant):
    found = start(Telemetry(tenant), [95, 95, 95, 95, 95])
    silence(tenant, starts=0, ends=3)

    tick(1)
    minute_by_minute(5, since=1)

    (triggered,) = events(tenant)
    # Said at the first tick after the silence: the window evaluated then (minute 2's end).
    assert triggered.type == "AlertTriggered"
    assert triggered.data["windowStart"] == minute(2).isoformat()
    assert "held back by a silence" in triggered.data["reason"]
    assert AlertInstance.objects.get(rule=found).notified == "critical"


def test_it_says_nothing_of_an_alert_that_fired_and_resolved_under_a_silence(tenant):
    start(Telemetry(tenant), [95, 95, 50, 50, 50])
    silence(tenant, starts=0, ends=3)

    tick(1)
    minute_by_minute(5, since=1)

    assert events(tenant) == []


def test_it_silences_by_rule_name(tenant):
    telemetry = Telemetry(tenant)
    start(telemetry, [95, 95])
    rule(tenant, name="another", critical=10)
    silence(tenant, starts=0, ends=30, alertname="another")

    tick(1)
    minute_by_minute(2, since=1)

    assert [e.data["ruleName"] for e in events(tenant)] == ["queue too deep"]


# Isolation


@pytest.mark.parametrize("copy_from", [0, 10**9], ids=["through COPY", "through statements"])
def test_it_writes_each_instances_newest_window_whether_it_changed_or_not(
    tenant, monkeypatch, copy_from
):
    # Past COPY_UPDATE_FROM rows core.bulk writes through COPY on PostgreSQL (every instance
    # here, with 0): new, changed and steady instances must come out alike either way.
    monkeypatch.setattr(bulk, "COPY_UPDATE_FROM", copy_from)
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [50, 60, 70, 95, 95], service="checkout")
    telemetry.gauge("queue.depth", [10, 20, 30, 40, 50], service="billing")
    aggregate(1)
    found = rule(tenant)

    tick(1)
    minute_by_minute(5, since=1)

    rows = {i.labels["service.name"]: i for i in AlertInstance.objects.filter(rule=found)}
    firing, steady = rows["checkout"], rows["billing"]
    assert (firing.state_name, firing.severity, firing.last_value) == ("firing", "critical", 95)
    assert (steady.state_name, steady.severity, steady.last_value) == ("normal", "", 50)
    assert firing.last_window == steady.last_window == minute(4)
    assert steady.reason == "last of queue.depth was 50"
    assert steady.since == minute(1)  # its first evaluation: it never changed state since
    state = decode_state(steady.state)
    assert (state.last_window, state.last_value) == (minute(4), 50)
    assert [o.value for o in state.recent] == [10, 20, 30, 40, 50]


def test_it_never_reads_another_tenants_series(tenant, other_tenant):
    mine, theirs = Telemetry(tenant), Telemetry(other_tenant)
    mine.gauge("queue.depth", [50, 50, 50])
    theirs.gauge("queue.depth", [95, 95, 95])
    aggregate(1)
    rule(tenant)

    tick(1)
    minute_by_minute(3, since=1)

    assert events(tenant) == [] and events(other_tenant) == []
    assert AlertInstance.objects.get().last_value == 50.0
    assert not AlertInstance.objects.filter(tenant=other_tenant).exists()


def test_it_puts_a_rule_that_cannot_be_evaluated_in_error_and_evaluates_the_others(tenant):
    telemetry = Telemetry(tenant)
    start(telemetry, [95, 95])
    broken = rule(tenant, name="broken")
    # A specification stored by an older release, which this one cannot read.
    AlertRule.objects.filter(pk=broken.pk).update(spec={"query": "queue.depth > 90"})

    tick(1)
    minute_by_minute(2, since=1)

    assert [e.data["ruleName"] for e in events(tenant)] == ["queue too deep"]
    broken.refresh_from_db()
    assert broken.health == "error"
    assert "query: must be an object" in broken.last_error


def test_it_puts_an_instance_whose_series_cannot_be_combined_in_its_error_state(tenant):
    telemetry = Telemetry(tenant)
    telemetry.histogram("latency", 0, [1, 2, 3], [10.0, 50.0], attributes={"route": "/a"})
    telemetry.histogram("latency", 0, [1, 2, 3, 4], [5.0, 10.0, 50.0], attributes={"route": "/b"})
    aggregate(1)
    found = rule(tenant, query={"metric": "latency", "window": "1m", "field": "p95"}, critical=1)

    tick(1)

    instance = AlertInstance.objects.get(rule=found)
    assert instance.state_name == "error"
    assert "different (or no) histogram buckets" in instance.reason
    assert events(tenant) == []


# Faults


def test_it_replays_a_dead_lettered_tick_with_the_same_result(tenant):
    start(Telemetry(tenant), [95, 95, 95])
    aggregate(3, since=1)
    scheduling.fire("AlertEvaluationWorker", "cadence", now=minute(3))
    # Its consumers died again and again while handling it: it is dead-lettered unhandled.
    Message.objects.filter(worker="AlertEvaluationWorker").update(
        claims=settings.DISPATCH_MAX_LOST_CLAIMS + 1
    )
    dispatch.drain("AlertEvaluationWorker")
    assert DeadLetter.objects.filter(worker="AlertEvaluationWorker").count() == 1
    assert events(tenant) == []

    replay.replay_all(list(DeadLetter.objects.all()))
    drain_all("AlertEvaluationWorker")
    replay.replay_all(list(DeadLetter.objects.all()))  # twice: the effect of once
    drain_all("AlertEvaluationWorker")

    # The rule was new at the tick: it starts at the newest window, minute 2.
    (triggered,) = events(tenant)
    assert triggered.data["windowStart"] == minute(2).isoformat()


def test_it_forgets_an_instance_long_without_a_series(tenant, settings):
    settings.ALERT_INSTANCE_EXPIRY_HOURS = 0
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [50], service="checkout")
    telemetry.gauge("queue.depth", [50, 50], service="cart")
    aggregate(1)
    found = rule(tenant)
    tick(1)

    minute_by_minute(2, since=1)

    assert list(AlertInstance.objects.filter(rule=found).values_list("labels", flat=True)) == [
        {"service.name": "cart"}
    ]


def test_it_prunes_history_past_its_retention(tenant):
    found = start(Telemetry(tenant), [95])
    tick(1)
    assert AlertStateChange.objects.filter(rule=found).exists()

    scheduling.prune(now=minute(0) + timedelta(days=400))

    assert not AlertStateChange.objects.exists()
