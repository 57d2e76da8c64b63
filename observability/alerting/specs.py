"""A rule's and an SLO's specification as JSON (the API's shape, the `spec` column) to and from
the pure values of observability.alerting.rules and .slo; and the group-key template of a
rule's triggers. Pure: no database, no clock.

A rule's spec (camelCase, as the API takes it; absent keys take the defaults of
rules.AlertRule):
    {"query": {"metric": "http.errors", "window": "1m", "field": "delta",
               "filters": {"service.name": "checkout"}},
     "denominator": null | {...a query...}, "groupBy": ["service.name"],
     "op": ">", "critical": 0.05, "warning": null, "resolve": null,
     "comparison": "static" | "percent_change", "offset": null | "1h" | "1d" | "1w",
     "forSeconds": 120, "keepFiringForSeconds": 0, "delaySeconds": 0, "cadenceSeconds": 60,
     "noData": "nodata" | "alerting" | "ok" | "keep_last" | "prometheus",
     "flapWindow": 10, "flapChanges": 4}
An SLO's:
    {"service": "checkout",
     "sli": {"type": "ratio", "events": {"metric": "http.errors", "filters": {}},
             "total": {"metric": "http.requests", "filters": {}}, "counts": "bad"}
          | {"type": "latency", "histogram": {"metric": ..., "filters": {}}, "bound": 0.3},
     "objective": 0.999, "period": "30d", "minEvents": 0,
     "rows": null (the SRE workbook's table) | [{"name": "page-fast", "severity": "page",
              "burnRate": 14.4, "longWindow": "1h", "shortWindow": "5m"}]}

Problems are named by their path in the spec ("query.field", "forSeconds"), so that the API's
errors and the admin's sit beside the field they concern.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from observability.alerting import rules, slo
from observability.alerting.rules import AlertRule, Query

DEFAULT_GROUP_KEY = "alert:{ruleId}:{service}"
SERVICE_LABEL = "service.name"
MAX_FILTERS = 20
MAX_GROUP_BY = 10
MAX_TEXT = 255
# An instance remembers this many outcomes at most (flap detection's window).
MAX_FLAP_WINDOW = 100
# The bounds of a rule's whole numbers beyond rules.validate's: what a state can hold.
INTEGER_BOUNDS = {"flapWindow": (1, MAX_FLAP_WINDOW), "flapChanges": (0, MAX_FLAP_WINDOW)}

# The rule's fields: the spec's name, the dataclass's.
RULE_FIELDS = {
    "op": "op",
    "critical": "critical",
    "warning": "warning",
    "resolve": "resolve",
    "comparison": "comparison",
    "offset": "offset",
    "forSeconds": "for_seconds",
    "keepFiringForSeconds": "keep_firing_for_seconds",
    "delaySeconds": "delay_seconds",
    "cadenceSeconds": "cadence_seconds",
    "noData": "nodata",
    "flapWindow": "flap_window",
    "flapChanges": "flap_changes",
}
SPEC_NAMES = {snake: camel for camel, snake in RULE_FIELDS.items()} | {"group_by": "groupBy"}
RULE_KEYS = {"query", "denominator", "groupBy", *RULE_FIELDS}
QUERY_KEYS = {"metric", "window", "field", "filters"}
_DEFAULTS = AlertRule(id="", query=Query(metric=""), op=rules.Op.GT, critical=0.0)


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a spec is refused, by its path in the spec ("query.field")."""

    field: str
    message: str


class SpecError(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = list(problems)


# Alert rules


def rule_of(rule_id: str, spec: Any) -> AlertRule:
    """The rule a spec describes; SpecError naming every structural problem (a wrong type, an
    unknown key or choice). The rule's own sense (thresholds, times) is rules.validate's."""
    problems: list[Problem] = []
    if not isinstance(spec, Mapping):
        raise SpecError([Problem("spec", "must be an object")])
    for key in sorted(set(spec) - RULE_KEYS):
        problems.append(Problem(key, "is not a field of a rule"))
    query = _query("query", spec.get("query"), problems)
    denominator = None
    if spec.get("denominator") is not None:
        denominator = _query("denominator", spec["denominator"], problems)
    group_by = spec.get("groupBy", [])
    if not isinstance(group_by, list) or not all(isinstance(k, str) for k in group_by):
        problems.append(Problem("groupBy", "must be a list of label keys"))
        group_by = []
    elif len(group_by) > MAX_GROUP_BY:
        problems.append(Problem("groupBy", f"at most {MAX_GROUP_BY} label keys"))
    fields: dict[str, Any] = {}
    for name, attribute in RULE_FIELDS.items():
        if name in spec:
            fields[attribute] = _field(name, spec[name], problems)
    if "critical" not in spec:
        problems.append(Problem("critical", "a rule needs a critical threshold"))
    if "op" not in spec:
        problems.append(Problem("op", f"choose one of {_choices(rules.Op)}"))
    if problems or query is None:
        raise SpecError(problems)
    return AlertRule(
        id=rule_id,
        query=query,
        denominator=denominator,
        group_by=tuple(group_by),
        **fields,
    )


def _query(path: str, data: Any, problems: list[Problem]) -> Query | None:
    if not isinstance(data, Mapping):
        problems.append(Problem(path, "must be an object with metric, window, field, filters"))
        return None
    for key in sorted(set(data) - QUERY_KEYS):
        problems.append(Problem(f"{path}.{key}", "is not a field of a query"))
    metric, window = data.get("metric"), data.get("window", "1m")
    if not isinstance(metric, str) or not metric.strip() or len(metric) > MAX_TEXT:
        problems.append(Problem(f"{path}.metric", "name a metric"))
        metric = ""
    if window not in rules.WINDOWS:
        problems.append(Problem(f"{path}.window", f"must be one of {', '.join(rules.WINDOWS)}"))
        window = "1m"
    field = data.get("field", rules.Field.LAST.value)
    if field not in set(rules.Field):
        problems.append(Problem(f"{path}.field", f"choose one of {_choices(rules.Field)}"))
        field = rules.Field.LAST.value
    filters = data.get("filters", {})
    if (
        not isinstance(filters, Mapping)
        or len(filters) > MAX_FILTERS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in filters.items())
    ):
        problems.append(
            Problem(f"{path}.filters", f"must map up to {MAX_FILTERS} label keys to values")
        )
        filters = {}
    return Query(metric=metric, window=window, field=rules.Field(field), filters=dict(filters))


_NUMBERS = {"critical", "warning", "resolve"}
_OPTIONAL = {"warning", "resolve", "offset"}
_INTEGERS = {
    "forSeconds", "keepFiringForSeconds", "delaySeconds", "cadenceSeconds", "flapWindow",
    "flapChanges",
}  # fmt: skip
_ENUMS: dict[str, Any] = {
    "op": rules.Op,
    "comparison": rules.Comparison,
    "noData": rules.NoData,
}


def _field(name: str, value: Any, problems: list[Problem]) -> Any:
    default = getattr(_DEFAULTS, RULE_FIELDS[name])
    if value is None and name in _OPTIONAL:
        return None
    if name in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(name, "must be a number"))
            return default
        return float(value)
    if name in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(Problem(name, "must be a whole number"))
            return default
        low, high = INTEGER_BOUNDS.get(name, (-(2**31), 2**31))
        if not low <= value <= high:
            problems.append(Problem(name, f"must be between {low} and {high}"))
            return default
        return value
    if name == "offset":
        if value not in rules.OFFSETS:
            problems.append(Problem(name, f"must be one of {', '.join(rules.OFFSETS)}"))
            return None
        return value
    enum = _ENUMS[name]
    if value not in {member.value for member in enum}:
        problems.append(Problem(name, f"choose one of {_choices(enum)}"))
        return default
    return enum(value)


def _choices(enum: Any) -> str:
    return ", ".join(member.value for member in enum)


def rule_spec(rule: AlertRule) -> dict[str, Any]:
    """The spec of a rule, every field written out: rule_of(rule_spec(r)) == r."""
    spec: dict[str, Any] = {
        "query": _query_spec(rule.query),
        "denominator": _query_spec(rule.denominator) if rule.denominator else None,
        "groupBy": list(rule.group_by),
    }
    for name, attribute in RULE_FIELDS.items():
        value = getattr(rule, attribute)
        spec[name] = value.value if hasattr(value, "value") else value
    return spec


def _query_spec(query: Query) -> dict[str, Any]:
    return {
        "metric": query.metric,
        "window": query.window,
        "field": query.field.value,
        "filters": dict(query.filters),
    }


def rule_problems(
    rule_id: str, spec: Any, metrics: Mapping[str, rules.MetricKind] | None = None
) -> list[Problem]:
    """Every problem of a spec: its structure, then the rule's sense (rules.validate, with the
    tenant's metrics when given), each by its path in the spec."""
    try:
        rule = rule_of(rule_id, spec)
    except SpecError as exc:
        return exc.problems
    return [Problem(spec_path(p.field), p.message) for p in rules.validate(rule, metrics)]


def spec_path(field: str) -> str:
    """rules.validate's field names as the spec's: for_seconds -> forSeconds."""
    head, _, rest = field.partition(".")
    head = SPEC_NAMES.get(head, head)
    return f"{head}.{rest}" if rest else head


def metrics_of(rule: AlertRule) -> list[str]:
    return [q.metric for q in (rule.query, rule.denominator) if q is not None]


# The group key of a rule's triggers

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NAMES = ("ruleId", "ruleName", "service", "instanceKey")


def group_key_problems(template: str, group_by: Sequence[str]) -> list[str]:
    """A template may name ruleId, ruleName, service (the service.name label), instanceKey,
    and the labels the rule groups by (any other label would be "" for every instance)."""
    problems = []
    if not template.strip():
        problems.append("a group key cannot be empty")
    if len(template) > 500:
        problems.append("at most 500 characters")
    stripped = PLACEHOLDER.sub("", template)
    if "{" in stripped or "}" in stripped:
        problems.append("braces must pair up around a name: {ruleId}")
    for name in PLACEHOLDER.findall(template):
        if name not in NAMES and name not in group_by:
            known = ", ".join([*NAMES, *group_by])
            problems.append(f"{{{name}}} is unknown: use one of {known}")
    return problems


def render_group_key(
    template: str,
    *,
    rule_id: str,
    rule_name: str,
    labels: Mapping[str, str],
    instance_key: str,
) -> str:
    values = {
        "ruleId": rule_id,
        "ruleName": rule_name,
        "service": labels.get(SERVICE_LABEL, ""),
        "instanceKey": instance_key,
    }
    return PLACEHOLDER.sub(lambda m: values.get(m[1], labels.get(m[1], "")), template)


# SLOs

SLO_KEYS = {"service", "sli", "objective", "period", "rows", "minEvents"}
ROW_KEYS = {"name", "severity", "burnRate", "longWindow", "shortWindow"}


def slo_of(spec: Any) -> slo.Slo:
    """The SLO a spec describes; SpecError naming every structural problem. Its sense is
    slo.validate's."""
    problems: list[Problem] = []
    if not isinstance(spec, Mapping):
        raise SpecError([Problem("spec", "must be an object")])
    for key in sorted(set(spec) - SLO_KEYS):
        problems.append(Problem(key, "is not a field of an SLO"))
    service = spec.get("service")
    if not isinstance(service, str) or len(service) > 200:
        problems.append(Problem("service", "name the service"))
        service = ""
    sli = _sli(spec.get("sli"), problems)
    objective = spec.get("objective")
    if isinstance(objective, bool) or not isinstance(objective, int | float):
        problems.append(Problem("objective", "must be a number such as 0.999"))
        objective = 0.999
    period = _window("period", spec.get("period", "30d"), problems)
    rows: tuple[slo.AlertRow, ...] = slo.WORKBOOK_ROWS
    if spec.get("rows") is not None:
        rows = _rows(spec["rows"], problems)
    min_events = spec.get("minEvents", 0)
    if isinstance(min_events, bool) or not isinstance(min_events, int):
        problems.append(Problem("minEvents", "must be a whole number"))
        min_events = 0
    if problems or sli is None:
        raise SpecError(problems)
    return slo.Slo(
        service=service,
        sli=sli,
        objective=float(objective),
        period=period,
        rows=rows,
        min_events=min_events,
    )


def _selector(path: str, data: Any, problems: list[Problem]) -> slo.Selector:
    if not isinstance(data, Mapping) or set(data) - {"metric", "filters"}:
        problems.append(Problem(path, "must be an object with metric and filters"))
        return slo.Selector("")
    metric, filters = data.get("metric"), data.get("filters", {})
    if not isinstance(metric, str) or not metric.strip() or len(metric) > MAX_TEXT:
        problems.append(Problem(f"{path}.metric", "name a metric"))
        metric = ""
    if (
        not isinstance(filters, Mapping)
        or len(filters) > MAX_FILTERS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in filters.items())
    ):
        problems.append(
            Problem(f"{path}.filters", f"must map up to {MAX_FILTERS} label keys to values")
        )
        filters = {}
    return slo.Selector(metric, dict(filters))


def _sli(data: Any, problems: list[Problem]) -> slo.RatioSli | slo.LatencySli | None:
    if not isinstance(data, Mapping) or data.get("type") not in ("ratio", "latency"):
        problems.append(Problem("sli.type", "choose ratio or latency"))
        return None
    if data["type"] == "ratio":
        if set(data) - {"type", "events", "total", "counts"}:
            problems.append(Problem("sli", "a ratio SLI has events, total and counts"))
        counts = data.get("counts", "bad")
        if counts not in ("bad", "good"):
            problems.append(Problem("sli.counts", "choose bad or good"))
            counts = "bad"
        return slo.RatioSli(
            events=_selector("sli.events", data.get("events"), problems),
            total=_selector("sli.total", data.get("total"), problems),
            counts=counts,
        )
    if set(data) - {"type", "histogram", "bound"}:
        problems.append(Problem("sli", "a latency SLI has histogram and bound"))
    bound = data.get("bound")
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
        problems.append(Problem("sli.bound", "must be a number: a bucket boundary"))
        bound = 0.0
    return slo.LatencySli(
        histogram=_selector("sli.histogram", data.get("histogram"), problems), bound=float(bound)
    )


def _window(path: str, text: Any, problems: list[Problem]) -> timedelta:
    try:
        return slo.parse_window(text) if isinstance(text, str) else slo.parse_window("")
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return timedelta(days=30)


def _rows(data: Any, problems: list[Problem]) -> tuple[slo.AlertRow, ...]:
    if not isinstance(data, list) or not data or len(data) > 10:
        problems.append(Problem("rows", "must be a list of 1 to 10 rows, or null for the default"))
        return ()
    rows = []
    for i, row in enumerate(data):
        path = f"rows.{i}"
        if not isinstance(row, Mapping) or set(row) != ROW_KEYS:
            problems.append(Problem(path, f"a row has {', '.join(sorted(ROW_KEYS))}"))
            continue
        rate = row["burnRate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            problems.append(Problem(f"{path}.burnRate", "must be a number"))
            rate = 1.0
        if not isinstance(row["name"], str) or row["severity"] not in ("page", "ticket"):
            problems.append(Problem(path, "name is text; severity is page or ticket"))
            continue
        rows.append(
            slo.AlertRow(
                name=row["name"],
                severity=row["severity"],
                burn_rate=float(rate),
                long_window=_window(f"{path}.longWindow", row["longWindow"], problems),
                short_window=_window(f"{path}.shortWindow", row["shortWindow"], problems),
            )
        )
    return tuple(rows)


def slo_spec(objective: slo.Slo) -> dict[str, Any]:
    """The spec of an SLO, every field written out: slo_of(slo_spec(s)) == s."""
    sli = objective.sli
    if isinstance(sli, slo.RatioSli):
        sli_spec: dict[str, Any] = {
            "type": "ratio",
            "events": _selector_spec(sli.events),
            "total": _selector_spec(sli.total),
            "counts": sli.counts,
        }
    else:
        histogram = _selector_spec(sli.histogram)
        sli_spec = {"type": "latency", "histogram": histogram, "bound": sli.bound}
    return {
        "service": objective.service,
        "sli": sli_spec,
        "objective": objective.objective,
        "period": slo.window_label(objective.period),
        "minEvents": objective.min_events,
        "rows": [
            {
                "name": row.name,
                "severity": row.severity,
                "burnRate": row.burn_rate,
                "longWindow": slo.window_label(row.long_window),
                "shortWindow": slo.window_label(row.short_window),
            }
            for row in objective.rows
        ],
    }


def _selector_spec(selector: slo.Selector) -> dict[str, Any]:
    return {"metric": selector.metric, "filters": dict(selector.filters)}


def slo_problems(spec: Any, histogram_bounds: Sequence[float] | None = None) -> list[Problem]:
    try:
        objective = slo_of(spec)
    except SpecError as exc:
        return exc.problems
    problems = slo.validate(objective, histogram_bounds=histogram_bounds)
    return [Problem(_slo_path(p.field), p.message) for p in problems]


def _slo_path(field: str) -> str:
    return {"min_events": "minEvents"}.get(field, field)


def slo_metrics(objective: slo.Slo) -> list[str]:
    sli = objective.sli
    if isinstance(sli, slo.RatioSli):
        return [sli.events.metric, sli.total.metric]
    return [sli.histogram.metric]
