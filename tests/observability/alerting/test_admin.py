"""The console for alerting: rule editing with the API's validation beside each field, its
preview over stored windows, revisions; instances, silences and SLOs."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from observability import aggregation
from observability.alerting import charts, slo, specs
from observability.alerting import services as alerting
from observability.alerting.models import AlertRule, AlertRuleRevision, Silence, Slo
from tests.observability.alerting.stored import (
    T0,
    Telemetry,
    aggregate,
    events,
    rule,
    tick,
)

pytestmark = pytest.mark.django_db
ADD = "admin:alerting_alertrule_add"


@pytest.fixture
def recent(tenant):
    """queue.depth of checkout over the last half hour (so that a preview of the last hour
    sees it): 50, then 95 from the tenth minute on."""
    first = int((timezone.now() - T0 - timedelta(minutes=35)) / timedelta(minutes=1))
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [50] * 10 + [95] * 20, start=first)
    aggregate(first + 30, since=first)
    return first


def form(tenant, **overrides):
    data = {
        "tenant": str(tenant.pk),
        "name": "queue too deep",
        "enabled": "on",
        "description": "",
        "metric": "queue.depth",
        "window": "1m",
        "field": "last",
        "filters": "service.name=checkout",
        "denominator_metric": "",
        "denominator_field": "delta",
        "denominator_filters": "",
        "group_by": "service.name",
        "op": ">",
        "critical": "90",
        "warning": "",
        "resolve": "",
        "comparison": "static",
        "offset": "",
        "for_seconds": "120",
        "keep_firing_for_seconds": "0",
        "delay_seconds": "0",
        "cadence_seconds": "60",
        "nodata": "nodata",
        "flap_window": "10",
        "flap_changes": "4",
        "group_key": "alert:{ruleId}:{service}",
        "preview_range": "1h",
    }
    return data | overrides


def field_errors(page: str, field: str) -> str:
    """The text of the error list in the form row of `field`."""
    start = page.find(f"field-{field}")
    assert start >= 0, field
    row = page[start : page.find('<div class="form-row', start + 1)]
    return unescape(row) if "errorlist" in row else ""


def test_it_shows_a_threshold_that_cannot_trigger_first_beside_its_field(
    admin_client, tenant, recent
):
    reply = admin_client.post(reverse(ADD), form(tenant, warning="95"))

    page = reply.content.decode()
    assert reply.status_code == 200
    assert "must be under critical (90) to trigger first" in field_errors(page, "warning")
    assert not AlertRule.objects.exists()


def test_it_refuses_a_field_that_does_not_fit_the_metric_beside_the_field(
    admin_client, tenant, recent
):
    reply = admin_client.post(reverse(ADD), form(tenant, field="p95"))

    assert "p95 does not fit queue.depth, a gauge" in field_errors(reply.content.decode(), "field")


def test_it_previews_a_draft_without_saving_it(admin_client, tenant, recent):
    reply = admin_client.post(reverse(ADD), form(tenant, _preview="Preview"))

    page = reply.content.decode()
    assert reply.status_code == 200
    assert 'id="rule-preview"' in page and "<svg" in page
    assert "service.name=checkout" in page
    assert "1 event it would have published" in page or "events it would have" in page
    assert "firing critical from" in unescape(page)  # a state band's tooltip
    assert not AlertRule.objects.exists()


def test_it_previews_the_triggers_and_the_incident_a_draft_would_have_made(
    admin_client, tenant, recent
):
    reply = admin_client.post(reverse(ADD), form(tenant, _preview="Preview"))

    page = unescape(reply.content.decode())
    incidents = page[page.index('id="preview-incidents"') :].split("</table>")[0]
    triggers = page[page.index('id="preview-triggers"') :].split("</table>")[0]
    assert "queue too deep on checkout" in incidents
    assert "<td>open</td><td>critical</td><td>1</td>" in incidents
    assert "AlertTriggered" in triggers and "service.name=checkout" in triggers
    assert not AlertRule.objects.exists()


def test_it_saves_a_rule_and_a_revision_on_each_save(admin_client, tenant, recent):
    admin_client.post(reverse(ADD), form(tenant))
    saved = AlertRule.objects.get()
    change = reverse("admin:alerting_alertrule_change", args=[saved.pk])

    page = admin_client.get(change).content.decode()
    admin_client.post(change, form(tenant, critical="80"))

    assert 'value="queue.depth"' in page and 'id="rule-preview"' in page
    saved.refresh_from_db()
    assert (saved.revision, saved.spec["critical"], saved.created_by) == (
        2,
        80.0,
        "console user admin",
    )
    assert list(
        AlertRuleRevision.objects.values_list("revision", flat=True).order_by("revision")
    ) == [1, 2]
    assert saved.spec["query"]["filters"] == {"service.name": "checkout"}


def test_it_lists_rules_instances_and_their_history(admin_client, tenant):
    Telemetry(tenant).gauge("queue.depth", [95, 95])
    aggregate(1)
    found = rule(tenant)
    tick(1)
    instance = found.instances.get()

    rules = admin_client.get(reverse("admin:alerting_alertrule_changelist")).content.decode()
    instances = admin_client.get(reverse("admin:alerting_alertinstance_changelist"))
    page = admin_client.get(reverse("admin:alerting_alertinstance_change", args=[instance.pk]))

    assert "queue too deep" in rules and "last of queue.depth &gt; 90" in rules
    assert instances.status_code == 200 and "firing" in instances.content.decode()
    assert 'id="instance-history"' in page.content.decode()
    assert "AlertTriggered" in page.content.decode()


def test_it_creates_a_silence_from_matcher_lines_and_lists_what_it_matches(admin_client, tenant):
    Telemetry(tenant).gauge("queue.depth", [95])
    aggregate(1)
    rule(tenant)
    tick(1)
    data = {
        "tenant": str(tenant.pk),
        "matchers_text": 'service.name="checkout"\nalertname=~queue.*',
        "starts_at_0": "2026-11-30",
        "starts_at_1": "08:00:00",
        "ends_at_0": "2026-11-30",
        "ends_at_1": "12:00:00",
        "created_by": "ops",
        "comment": "deploying",
    }

    reply = admin_client.post(reverse("admin:alerting_silence_add"), data)

    assert reply.status_code == 302, reply.content.decode()[-3000:]
    silence = Silence.objects.get()
    assert silence.matchers == [
        {"label": "service.name", "op": "=", "value": "checkout"},
        {"label": "alertname", "op": "=~", "value": "queue.*"},
    ]
    page = admin_client.get(reverse("admin:alerting_silence_change", args=[silence.pk]))
    assert "queue too deep" in page.content.decode()


def test_it_refuses_a_silence_of_everything_beside_its_matchers(admin_client, tenant):
    data = {
        "tenant": str(tenant.pk),
        "matchers_text": "service.name=~.*",
        "starts_at_0": "2026-11-30",
        "starts_at_1": "08:00:00",
        "ends_at_0": "2026-11-30",
        "ends_at_1": "12:00:00",
        "created_by": "ops",
        "comment": "deploying",
    }

    reply = admin_client.post(reverse("admin:alerting_silence_add"), data)

    assert "silence of everything" in field_errors(reply.content.decode(), "matchers_text")


def test_it_edits_an_slo_with_its_problems_beside_the_spec(admin_client, tenant):
    telemetry = Telemetry(tenant)
    telemetry.counter("http.requests", [100])
    telemetry.counter("http.errors", [1])
    aggregate(1)
    spec = (
        '{"service": "checkout", "objective": 99.9, "sli": {"type": "ratio", '
        '"events": {"metric": "http.errors"}, "total": {"metric": "http.requests"}}}'
    )
    data = {"tenant": str(tenant.pk), "name": "availability", "enabled": "on", "spec": spec}

    refused = admin_client.post(reverse("admin:alerting_slo_add"), data)
    saved = admin_client.post(
        reverse("admin:alerting_slo_add"), data | {"spec": spec.replace("99.9", "0.999")}
    )

    assert "99.9% is 0.999" in field_errors(refused.content.decode(), "spec")
    assert saved.status_code == 302
    assert Slo.objects.get().spec["rows"][0]["name"] == "page-fast"
    listing = admin_client.get(reverse("admin:alerting_slo_changelist"))
    assert "availability" in listing.content.decode()


SLO_SPEC = {
    "service": "checkout",
    "objective": 0.999,
    "sli": {
        "type": "ratio",
        "events": {"metric": "http.errors"},
        "total": {"metric": "http.requests"},
    },
}


def test_it_draws_an_slos_budget_and_burn_over_its_period(admin_client, tenant):
    """100 requests a minute over the last half hour, 10 of them errors in the last ten
    minutes: a 10% error ratio, 100x the budget's pace, which spends the budget."""
    first = int((timezone.now() - T0 - timedelta(minutes=35)) / timedelta(minutes=1))
    telemetry = Telemetry(tenant)
    telemetry.counter("http.requests", [100] * 30, start=first)
    telemetry.counter("http.errors", [0] * 20 + [10] * 10, start=first)
    aggregate(first + 30, since=first)
    objective = alerting.create_slo(tenant=tenant, name="availability", spec=SLO_SPEC)

    page = admin_client.get(reverse("admin:alerting_slo_change", args=[objective.pk]))

    html = unescape(page.content.decode())
    panel = html[html.index('id="slo-charts"') :].split("</div>")[0]
    assert panel.count("<svg") == 2
    assert "Error budget left over the rolling 30d" in panel
    assert "14.4x page-fast" in panel and "1x ticket-slow" in panel
    assert "0% exhausted" in panel
    # Hour by hour, the half hour is at most two instants: a dot, or a line of two.
    assert "<circle" in panel or "<polyline" in panel


def test_it_puts_an_slos_rows_thresholds_at_their_burn_rates():
    spec = specs.slo_of(SLO_SPEC)
    at = T0 + timedelta(hours=2)
    windows = [
        slo.SliWindow(T0 + i * timedelta(minutes=1), T0 + (i + 1) * timedelta(minutes=1), 1, 100)
        for i in range(120)
    ]

    budget, burn = charts.slo_charts(spec, windows, at, span=timedelta(hours=1))

    assert [(t.name, t.value) for t in burn.thresholds] == [
        ("ticket-slow", "1x"),
        ("ticket-fast", "3x"),
        ("page-slow", "6x"),
        ("page-fast", "14.4x"),
    ]
    assert [name for name, _ in burn.legend] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    # A steady 1% error ratio burns at 10x in every window, and has spent the budget 10 times.
    assert burn.high_label == "14.4x" and burn.lines
    assert budget.low_label == "-900%"


def test_it_keeps_the_instances_list_free_of_edits(admin_client):
    assert admin_client.get(reverse("admin:alerting_alertinstance_add")).status_code == 403


def test_it_draws_a_budget_consumed_ten_days_ago_over_the_slos_whole_period(admin_client, tenant):
    """Two hours of 100 requests a minute ten days ago, 30 errors in the second: at an objective
    of 99%, a quarter of the budget spent then, and still missing from it now."""
    hour = timedelta(hours=1)
    spent = (timezone.now() - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    first = int((spent - hour - T0) / timedelta(minutes=1))
    telemetry = Telemetry(tenant)
    telemetry.counter("http.requests", [100] * 120, start=first)
    telemetry.counter("http.errors", [0] * 60 + [1] * 30 + [0] * 30, start=first)
    for start in (spent - hour, spent):
        aggregation.aggregate_window(tenant.pk, "1h", start, now=timezone.now())
    spec = SLO_SPEC | {"objective": 0.99}
    objective = alerting.create_slo(tenant=tenant, name="availability", spec=spec)

    page = admin_client.get(reverse("admin:alerting_slo_change", args=[objective.pk]))

    assert "Budget and burn over the last 30d" in page.content.decode()
    budget, burn = page.context["slo_charts"]["charts"]
    assert budget.instants[-1] - budget.instants[0] > timedelta(days=29)
    before, after = budget.instants.index(spent), budget.instants.index(spent + hour)
    assert min(budget.values) == before  # no events before the first hour's end
    assert budget.values[before] == {"budget left": pytest.approx(100)}
    # 30 errors of 12,000 requests: a 0.25% error ratio, a quarter of the 1% budget.
    assert budget.values[after] == {"budget left": pytest.approx(75)}
    assert budget.values[len(budget.instants) - 1] == {"budget left": pytest.approx(75)}
    assert burn.values[after]["1h"] == pytest.approx(0.5)  # 30 / 6,000 in budgets of 1%
    assert "5m" not in burn.values[after]  # hourly windows hold no 5-minute span
    assert budget.lines and budget.ticks[0].label.count("-") == 2  # dates


def test_it_resolves_the_open_alert_of_a_rule_deleted_in_the_console(admin_client, tenant):
    telemetry = Telemetry(tenant)
    telemetry.gauge("queue.depth", [95, 95])
    aggregate(2)
    found = rule(tenant)
    tick(1)
    tick(2)
    assert [e.type for e in events(tenant)] == ["AlertTriggered"]

    url = reverse("admin:alerting_alertrule_delete", args=[found.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302

    triggered, resolved = events(tenant)
    assert (triggered.type, resolved.type) == ("AlertTriggered", "AlertResolved")
    assert resolved.data["triggerKey"] == triggered.data["triggerKey"]
    assert resolved.data["reason"] == "the rule was deleted: the alert no longer fires"
    assert not AlertRule.objects.exists()
