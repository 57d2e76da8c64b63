"""The alerting domain's stored shapes: specs to and from the pure values, group keys,
silence matchers; and the services' revisions and retirements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from observability.alerting import services, silences, slo, specs
from observability.alerting.models import AlertRuleRevision, Silence
from observability.alerting.rules import Field, NoData, Op

SPEC = {
    "query": {"metric": "http.errors", "field": "delta"},
    "op": ">",
    "critical": 5,
    "groupBy": ["service.name"],
}
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_it_reads_a_spec_with_the_rules_defaults_and_writes_every_field_back():
    rule = specs.rule_of("r", SPEC)

    assert (rule.query.field, rule.op, rule.critical, rule.nodata) == (
        Field.DELTA,
        Op.GT,
        5.0,
        NoData.NODATA,
    )
    written = specs.rule_spec(rule)
    assert written["forSeconds"] == 0 and written["query"]["window"] == "1m"
    assert specs.rule_of("r", written) == rule


def test_it_names_each_structural_problem_by_its_path():
    bad = {"query": {"metric": "", "field": "median"}, "op": "~", "forSeconds": "2m", "x": 1}

    problems = {p.field for p in specs.rule_problems("r", bad)}

    assert problems == {"x", "query.metric", "query.field", "op", "forSeconds", "critical"}


def test_it_names_the_rules_own_problems_by_the_specs_paths():
    problems = specs.rule_problems("r", SPEC | {"keepFiringForSeconds": -1, "warning": 9})

    assert {p.field for p in problems} == {"keepFiringForSeconds", "warning"}


def test_it_bounds_what_an_instance_remembers_for_flap_detection():
    problems = specs.rule_problems("r", SPEC | {"flapWindow": 10_000})

    assert [p.field for p in problems] == ["flapWindow"]


def test_it_renders_a_group_key_from_the_rule_and_the_instances_labels():
    key = specs.render_group_key(
        "alert:{ruleId}:{service}:{region}",
        rule_id="r1",
        rule_name="errors",
        labels={"service.name": "checkout", "region": "eu"},
        instance_key="k",
    )

    assert key == "alert:r1:checkout:eu"


@pytest.mark.parametrize(
    ("template", "words"),
    [("alert:{zone}", "{zone} is unknown"), ("alert:{ruleId", "braces must pair"), ("", "empty")],
)
def test_it_refuses_a_group_key_it_could_not_render(template, words):
    assert words in " ".join(specs.group_key_problems(template, ["region"]))


def test_it_reads_an_slo_spec_with_the_workbooks_rows_by_default():
    objective = specs.slo_of(
        {
            "service": "checkout",
            "objective": 0.999,
            "sli": {"type": "ratio", "events": {"metric": "e"}, "total": {"metric": "t"}},
        }
    )

    assert objective.rows == slo.WORKBOOK_ROWS and objective.period == timedelta(days=30)
    assert specs.slo_of(specs.slo_spec(objective)) == objective


def test_it_matches_silences_as_alertmanager_does():
    matchers = silences.matchers_of(
        [
            {"label": "service.name", "op": "=~", "value": "check.*"},
            {"label": "region", "op": "!=", "value": "us"},
            {"label": "alertname", "op": "!~", "value": "disk.*"},
        ]
    )
    span = silences.Span("s", matchers, AT, AT + timedelta(hours=1))

    assert span.matches({"service.name": "checkout", "alertname": "errors"})  # region "" != us
    assert not span.matches({"service.name": "xcheckout", "alertname": "errors"})  # anchored
    assert not span.matches({"service.name": "checkout", "alertname": "disk full"})
    assert span.active(AT) and not span.active(AT + timedelta(hours=1))


def test_it_refuses_a_silence_of_everything_and_a_backwards_one():
    problems = silences.validate([{"label": "a", "op": "=~", "value": ".*"}], AT, AT)

    assert [p.field for p in problems] == ["matchers", "endsAt"]


@pytest.mark.django_db
def test_it_keeps_an_unchanged_copy_of_each_save(tenant):
    from tests.observability.alerting.stored import Telemetry, aggregate

    Telemetry(tenant).counter("http.errors", [1])
    aggregate(1)
    rule = services.create_rule(tenant=tenant, name="errors", spec=SPEC, actor="ann")

    services.update_rule(rule=rule, actor="bob", spec=SPEC | {"critical": 9})

    revisions = AlertRuleRevision.objects.filter(rule=rule).order_by("revision")
    assert [(r.revision, r.spec["critical"], r.created_by) for r in revisions] == [
        (1, 5.0, "ann"),
        (2, 9.0, "bob"),
    ]


@pytest.mark.django_db
def test_it_tells_a_silences_state_at_an_instant(tenant):
    silence = Silence(tenant=tenant, matchers=[], starts_at=AT, ends_at=AT + timedelta(hours=1))

    assert [
        silence.state_at(AT - timedelta(seconds=1)),
        silence.state_at(AT),
        silence.state_at(AT + timedelta(hours=1)),
    ] == ["pending", "active", "expired"]
