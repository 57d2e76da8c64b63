"""The alerting API: alert rules (with revisions and a preview over stored windows), alert
instances and their state history, silences (with a preview of what they match) and SLOs (with
their status). Thin views over observability.alerting's selectors, services and pure
functions, with input and output serializers. Every lookup is by the caller's tenant, so
another tenant's rule, silence or SLO is simply not found.

A refused specification answers 400 with each problem beside its path in the body
(`details`: {"spec.query.field": [...]}), from the same validation the admin uses."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, SinceField, paged
from core.auth import TenantPrincipal
from core.models import Tenant
from core.openapi import errors
from observability.alerting import preview as previews
from observability.alerting import rules as rule_values
from observability.alerting import selectors, services, silences, slo, specs
from observability.alerting.models import (
    AlertInstance,
    AlertRule,
    AlertRuleRevision,
    AlertStateChange,
    Health,
    Severity,
    Silence,
    Slo,
    State,
)


def _principal(request: Request) -> TenantPrincipal:
    assert isinstance(request.user, TenantPrincipal)  # IsTenant let no one else in
    return request.user


def _tenant(request: Request) -> Tenant:
    return _principal(request).tenant


def _actor(request: Request) -> str:
    key = _principal(request).key
    return f"API key {key.PREFIX}{key.lookup}" + (f" ({key.name})" if key.name else "")


def _refused(exc: services.Refused, prefix: str = "") -> exceptions.ValidationError:
    """A service's problems as a 400's details, by field ("spec.query.field")."""
    outside = {"name", "groupKey", "description", "enabled"}
    details = {
        (name if not prefix or name in outside else f"{prefix}{name}"): messages
        for name, messages in exc.problems.items()
    }
    return exceptions.ValidationError(details)


def _plain(data: Any) -> Any:
    """Validated serializer data (OrderedDicts) as plain JSON values."""
    return json.loads(json.dumps(data))


# Rules: the specification


class QueryFields(serializers.Serializer[Any]):
    metric = serializers.CharField(max_length=255)
    window = serializers.ChoiceField(choices=list(rule_values.WINDOWS), default="1m")
    field = serializers.ChoiceField(
        choices=[f.value for f in rule_values.Field],
        default="last",
        help_text="last, mean, min, max, count, sum, delta, rate (delta per second), p50, p95, "
        "p99: one the metric's kind stores (no p95 of a gauge, no delta of a histogram).",
    )
    filters = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True),
        default=dict,
        help_text='Label filters the series must match: {"service.name": "checkout"}.',
    )


class RuleSpecFields(serializers.Serializer[Any]):
    """What a rule selects and compares (observability.alerting.specs)."""

    query = QueryFields()
    denominator = QueryFields(
        required=False,
        allow_null=True,
        default=None,
        help_text="When given, the value is query / denominator per window (Σ / Σ).",
    )
    groupBy = serializers.ListField(
        child=serializers.CharField(max_length=255),
        max_length=specs.MAX_GROUP_BY,
        default=list,
        help_text="Label keys: each group of series is one alert instance.",
    )
    op = serializers.ChoiceField(choices=[o.value for o in rule_values.Op])
    critical = serializers.FloatField()
    warning = serializers.FloatField(
        required=False, allow_null=True, default=None, help_text="Must trigger before critical."
    )
    resolve = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Hysteresis: an open alert resolves only once op no longer holds against it.",
    )
    comparison = serializers.ChoiceField(
        choices=[c.value for c in rule_values.Comparison], default="static"
    )
    offset = serializers.ChoiceField(
        choices=list(rule_values.OFFSETS), required=False, allow_null=True, default=None
    )
    forSeconds = serializers.IntegerField(default=0, min_value=0, max_value=86400)
    keepFiringForSeconds = serializers.IntegerField(default=0, min_value=0, max_value=86400)
    delaySeconds = serializers.IntegerField(
        default=0,
        min_value=0,
        max_value=3600,
        help_text="How long after a window ends it is evaluated, for late points.",
    )
    cadenceSeconds = serializers.IntegerField(
        default=60, min_value=60, max_value=3600, help_text="Whole minutes."
    )
    noData = serializers.ChoiceField(
        choices=[n.value for n in rule_values.NoData],
        default="nodata",
        help_text="A window without a value: nodata (an open alert stays open), alerting, ok, "
        "keep_last, or prometheus (a value counts for 5 minutes; no value is no breach).",
    )
    flapWindow = serializers.IntegerField(default=10, min_value=1, max_value=specs.MAX_FLAP_WINDOW)
    flapChanges = serializers.IntegerField(
        default=4,
        min_value=0,
        max_value=specs.MAX_FLAP_WINDOW,
        help_text="0 turns flap detection off.",
    )


class RuleOutput(serializers.ModelSerializer[AlertRule]):
    spec = RuleSpecFields()
    groupKey = serializers.CharField(source="group_key")
    lastError = serializers.CharField(source="last_error")
    evaluatedAt = serializers.DateTimeField(
        source="evaluated_at", allow_null=True, help_text="The tick that last evaluated it."
    )
    lastWindow = serializers.DateTimeField(
        source="last_window", allow_null=True, help_text="The newest window evaluated (start)."
    )
    firingCount = serializers.IntegerField(source="firing_count")
    createdBy = serializers.CharField(source="created_by")
    updatedBy = serializers.CharField(source="updated_by")

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "description", "enabled", "spec", "groupKey", "revision", "health",
            "lastError", "evaluatedAt", "lastWindow", "firingCount", "created", "createdBy",
            "updated", "updatedBy",
        ]  # fmt: skip


class RuleInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, default="", allow_blank=True)
    enabled = serializers.BooleanField(default=True)
    groupKey = serializers.CharField(
        max_length=500,
        default=specs.DEFAULT_GROUP_KEY,
        help_text="The incident group key of its triggers: {ruleId}, {ruleName}, {service}, "
        "{instanceKey} or a label it groups by, in braces.",
    )
    spec = RuleSpecFields()


class RulePatchInput(RuleInput):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    groupKey = serializers.CharField(max_length=500, required=False)
    spec = RuleSpecFields(required=False)


class RulePage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


class RuleFilters(serializers.Serializer[Any]):
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    health = serializers.ChoiceField(choices=Health.values, required=False, default="")


RULE_ID = OpenApiParameter(
    "rule_id", str, OpenApiParameter.PATH, description="The rule's id (a UUID)."
)


def _rule_or_404(request: Request, rule_id: str) -> AlertRule:
    found = selectors.rule(tenant=_tenant(request), rule_id=rule_id)
    if found is None:
        raise exceptions.NotFound(
            f"No alert rule {rule_id} for this tenant (GET /api/alerts/rules lists them)."
        )
    return found


class RuleListView(APIView):
    """POST /api/alerts/rules: create a rule (revision 1), validated against the tenant's
    metrics. GET: the caller's rules, newest first, paged."""

    pagination_class = RulePage

    @extend_schema(
        summary="Create an alert rule",
        request=RuleInput,
        responses={201: RuleOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = RuleInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = _plain(body.validated_data)
        try:
            created = services.create_rule(
                tenant=_tenant(request),
                name=v["name"],
                description=v["description"],
                enabled=v["enabled"],
                group_key=v["groupKey"],
                spec=v["spec"],
                actor=_actor(request),
            )
        except services.Refused as exc:
            raise _refused(exc, "spec.") from None
        found = _rule_or_404(request, str(created.pk))
        return Response(RuleOutput(found).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List alert rules",
        parameters=[RuleFilters],
        responses={200: RuleOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = RuleFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.rules(tenant=_tenant(request), **query.validated_data)
        return paged(self, request, found, output=RuleOutput)


class RuleDetailView(APIView):
    """GET, PATCH (name, description, enabled, groupKey, spec: a new revision) and DELETE one
    rule. Changing what a rule selects, disabling or deleting it resolves its open alerts."""

    @extend_schema(
        summary="An alert rule",
        parameters=[RULE_ID],
        responses={200: RuleOutput, **errors(401, 404)},
    )
    def get(self, request: Request, rule_id: str) -> Response:
        return Response(RuleOutput(_rule_or_404(request, rule_id)).data)

    @extend_schema(
        summary="Change an alert rule",
        parameters=[RULE_ID],
        request=RulePatchInput,
        responses={200: RuleOutput, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, rule_id: str) -> Response:
        found = _rule_or_404(request, rule_id)
        body = RulePatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        v = _plain(body.validated_data)
        names = {"groupKey": "group_key"}
        try:
            services.update_rule(
                rule=found, actor=_actor(request), **{names.get(k, k): x for k, x in v.items()}
            )
        except services.Refused as exc:
            raise _refused(exc, "spec.") from None
        except AlertRule.DoesNotExist:  # deleted meanwhile
            raise exceptions.NotFound(f"No alert rule {rule_id} for this tenant.") from None
        return Response(RuleOutput(_rule_or_404(request, rule_id)).data)

    @extend_schema(
        summary="Delete an alert rule",
        parameters=[RULE_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, rule_id: str) -> Response:
        services.delete_rule(rule=_rule_or_404(request, rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RevisionOutput(serializers.ModelSerializer[AlertRuleRevision]):
    spec = RuleSpecFields()
    groupKey = serializers.CharField(source="group_key")
    createdBy = serializers.CharField(source="created_by")

    class Meta:
        model = AlertRuleRevision
        fields = ["revision", "name", "description", "enabled", "spec", "groupKey", "created",
                  "createdBy"]  # fmt: skip


class RevisionPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-revision",)


class RevisionListView(APIView):
    """GET /api/alerts/rules/<id>/revisions: the rule as each save left it, newest first."""

    pagination_class = RevisionPage

    @extend_schema(
        summary="A rule's revisions",
        parameters=[RULE_ID],
        responses={200: RevisionOutput(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, rule_id: str) -> Response:
        found = _rule_or_404(request, rule_id)
        return paged(self, request, selectors.revisions(found), output=RevisionOutput)


# Preview


class PreviewInput(serializers.Serializer[Any]):
    spec = RuleSpecFields()
    name = serializers.CharField(
        max_length=200, default="preview", help_text="The rule's name, as its events say it."
    )
    groupKey = serializers.CharField(
        max_length=500,
        default=specs.DEFAULT_GROUP_KEY,
        help_text="The incident group key of its triggers, as a rule's: what the incidents "
        "it would have produced are grouped by.",
    )
    start = SinceField(help_text="The range's start: an ISO time or a duration back (6h).")
    end = SinceField(
        required=False, default=None, help_text="The range's end (exclusive); default now."
    )


class IntervalOutput(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=State.choices)
    severity = serializers.CharField(help_text='"warning", "critical", or "" for none.')
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    reason = serializers.CharField()


class TransitionOutput(serializers.Serializer[Any]):
    kind = serializers.CharField()
    windowStart = serializers.DateTimeField(source="window_start")
    windowEnd = serializers.DateTimeField(source="window_end")
    previous = serializers.CharField()
    state = serializers.CharField()
    severity = serializers.CharField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    reason = serializers.CharField()
    event = serializers.CharField(
        source="event_type", allow_null=True, help_text="The event it would have published."
    )
    traceIds = serializers.ListField(source="trace_ids", child=serializers.CharField())


class ValueOutput(serializers.Serializer[Any]):
    windowStart = serializers.DateTimeField()
    value = serializers.FloatField(allow_null=True)


class InstancePreviewOutput(serializers.Serializer[Any]):
    instanceKey = serializers.CharField(source="key")
    labels = serializers.DictField(child=serializers.CharField())
    values = serializers.SerializerMethodField(help_text="Each window's value, with a series.")
    intervals = IntervalOutput(many=True)
    transitions = TransitionOutput(many=True)

    @extend_schema_field(ValueOutput(many=True))
    def get_values(self, instance: previews.InstancePreview) -> list[dict[str, Any]]:
        return [
            {"windowStart": start.isoformat(), "value": value} for start, value in instance.values
        ]


class PreviewTriggerOutput(serializers.Serializer[Any]):
    event = serializers.ChoiceField(
        source="event_type", choices=["AlertTriggered", "AlertResolved"]
    )
    # Named as an envelope's: DRF's metaclass takes declared fields off the class, so the field
    # does not shadow Serializer.data (which mypy cannot know).
    data = serializers.DictField(  # type: ignore[assignment]
        help_text="The event's data, as the live tick publishes it (triggerKey, groupKey, "
        "instanceKey, labels, severity, value, threshold, windowStart, windowEnd, reason, "
        "traceIds, ...)."
    )


class PreviewIncidentChangeOutput(serializers.Serializer[Any]):
    change = serializers.ChoiceField(choices=["opened", "resolved"])
    at = serializers.DateTimeField()


class IncidentPreviewOutput(serializers.Serializer[Any]):
    number = serializers.IntegerField(help_text="In the order they would have opened, from 1.")
    title = serializers.CharField()
    groupKey = serializers.CharField(source="group_key")
    status = serializers.CharField(help_text="At the range's end: open, resolved or closed.")
    severity = serializers.CharField(help_text='"warning" or "critical".')
    openedAt = serializers.DateTimeField(source="opened_at")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)
    reopened = serializers.IntegerField(help_text="How often it would have reopened.")
    instanceKeys = serializers.ListField(source="instance_keys", child=serializers.CharField())
    changes = serializers.SerializerMethodField(help_text="Its openings and resolutions.")

    @extend_schema_field(PreviewIncidentChangeOutput(many=True))
    def get_changes(self, incident: previews.IncidentPreview) -> list[dict[str, Any]]:
        return [{"change": name, "at": at.isoformat()} for name, at in incident.changes]


class PreviewOutput(serializers.Serializer[Any]):
    first = serializers.DateTimeField(help_text="The first window evaluated (its start).")
    last = serializers.DateTimeField(help_text="The last window evaluated (its start).")
    windows = serializers.IntegerField()
    events = serializers.IntegerField(help_text="Events it would have published.")
    instanceCount = serializers.IntegerField(source="instance_count")
    instances = InstancePreviewOutput(many=True, help_text="The first 100, by key.")
    triggers = PreviewTriggerOutput(
        many=True, help_text="The events those instances would have published, in time order."
    )
    incidents = IncidentPreviewOutput(
        many=True,
        help_text="The incidents those triggers would have opened, reopened and resolved, "
        "grouped by IncidentAnalysisWorker's own decision with its windows (silences left "
        "out).",
    )


class RulePreviewView(APIView):
    """POST /api/alerts/rules/preview: a draft rule over the stored windows of a range, with
    the live evaluator, from a fresh state: per instance its values, state intervals and
    transitions with the events it would have published; those triggers, and the incidents
    they would have produced. Nothing is saved."""

    @extend_schema(
        summary="Preview (backtest) an alert rule",
        request=PreviewInput,
        responses={200: PreviewOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = PreviewInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        tenant = _tenant(request)
        spec = _plain(v["spec"])
        problems = services.rule_problems(tenant, spec, v["groupKey"])
        if problems:
            raise _refused(services.Refused(dict(_grouped(problems))), "spec.")
        rule = specs.rule_of("preview", spec)
        end = v["end"] or timezone.now()
        named = previews.Named(name=v["name"], group_key=v["groupKey"])
        try:
            found = previews.preview(tenant.pk, rule, v["start"], end, named)
        except previews.TooLong as exc:
            raise exceptions.ValidationError({"start": [str(exc)]}) from None
        return Response(PreviewOutput(found).data)


def _grouped(problems: list[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in problems:
        found.setdefault(name, []).append(message)
    return found


# Instances and their history


class InstanceOutput(serializers.ModelSerializer[AlertInstance]):
    ruleId = serializers.UUIDField(source="rule_id")
    ruleName = serializers.CharField(source="rule.name")
    instanceKey = serializers.CharField(source="instance_key")
    labels = serializers.DictField(child=serializers.CharField())
    state = serializers.ChoiceField(source="state_name", choices=State.choices)
    severity = serializers.CharField(help_text='The open alert\'s: "warning", "critical" or "".')
    lastWindow = serializers.DateTimeField(source="last_window", allow_null=True)
    lastValue = serializers.FloatField(source="last_value", allow_null=True)
    since = serializers.DateTimeField(help_text="When it entered its state.")
    firedAt = serializers.DateTimeField(source="fired_at", allow_null=True)
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)
    notified = serializers.CharField(
        help_text='The severity the outside world last heard of (AlertTriggered), "" after '
        "AlertResolved."
    )

    class Meta:
        model = AlertInstance
        fields = [
            "id", "ruleId", "ruleName", "instanceKey", "labels", "state", "severity", "reason",
            "flapping", "silenced", "notified", "lastWindow", "lastValue", "since", "firedAt",
            "resolvedAt", "updated",
        ]  # fmt: skip


class InstancePage(Pager):
    page_size = 100
    max_page_size = 1000
    ordering = ("-id",)


class InstanceFilters(serializers.Serializer[Any]):
    rule = serializers.CharField(max_length=64, required=False, default="")
    state = serializers.ChoiceField(choices=State.values, required=False, default="")
    severity = serializers.ChoiceField(choices=Severity.values, required=False, default="")
    service = serializers.CharField(max_length=200, required=False, default="")
    silenced = serializers.BooleanField(required=False, allow_null=True, default=None)


class InstanceListView(APIView):
    """GET /api/alerts/instances?rule=&state=&severity=&service=&silenced=: alert instances
    with their state and reason."""

    pagination_class = InstancePage

    @extend_schema(
        summary="List alert instances",
        parameters=[InstanceFilters],
        responses={200: InstanceOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = InstanceFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        v = query.validated_data
        found = selectors.instances(
            tenant=_tenant(request),
            rule_id=v["rule"],
            state=v["state"],
            severity=v["severity"],
            service=v["service"],
            silenced=v["silenced"],
        )
        return paged(self, request, found, output=InstanceOutput)


class ChangeOutput(serializers.ModelSerializer[AlertStateChange]):
    ruleId = serializers.UUIDField(source="rule_id")
    ruleRevision = serializers.IntegerField(source="rule_revision")
    instanceKey = serializers.CharField(source="instance_key")
    labels = serializers.DictField(child=serializers.CharField())
    state = serializers.CharField(source="state_name")
    windowStart = serializers.DateTimeField(source="window_start")
    windowEnd = serializers.DateTimeField(source="window_end")
    traceIds = serializers.ListField(source="trace_ids", child=serializers.CharField())
    published = serializers.CharField(help_text='The event it published, "" for none.')
    recordedAt = serializers.DateTimeField(source="recorded_at")

    class Meta:
        model = AlertStateChange
        fields = [
            "id", "ruleId", "ruleRevision", "instanceKey", "labels", "kind", "previous", "state",
            "severity", "value", "threshold", "reason", "windowStart", "windowEnd", "traceIds",
            "published", "silenced", "late", "recordedAt",
        ]  # fmt: skip


class ChangePage(Pager):
    page_size = 100
    max_page_size = 1000
    ordering = ("-window_start", "-id")


class ChangeFilters(serializers.Serializer[Any]):
    rule = serializers.CharField(max_length=64, required=False, default="")
    instanceKey = serializers.CharField(max_length=64, required=False, default="")
    since = SinceField(required=False, default=None)


class ChangeListView(APIView):
    """GET /api/alerts/changes?rule=&instanceKey=&since=: every evaluation that changed an
    instance's state, newest first: why an alert fired, and what it published."""

    pagination_class = ChangePage

    @extend_schema(
        summary="List alert state changes",
        parameters=[ChangeFilters],
        responses={200: ChangeOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = ChangeFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        v = query.validated_data
        found = selectors.changes(
            tenant=_tenant(request),
            rule_id=v["rule"],
            instance_key=v["instanceKey"],
            since=v["since"],
        )
        return paged(self, request, found, output=ChangeOutput)


# Silences


class MatcherFields(serializers.Serializer[Any]):
    label = serializers.CharField(max_length=silences.MAX_TEXT)  # type: ignore[assignment]
    op = serializers.ChoiceField(choices=[m.value for m in silences.MatchOp])
    value = serializers.CharField(max_length=silences.MAX_TEXT, allow_blank=True)


class SilenceOutput(serializers.ModelSerializer[Silence]):
    matchers = MatcherFields(many=True)
    startsAt = serializers.DateTimeField(source="starts_at")
    endsAt = serializers.DateTimeField(source="ends_at")
    createdBy = serializers.CharField(source="created_by")
    state = serializers.SerializerMethodField(help_text="pending, active or expired, now.")

    class Meta:
        model = Silence
        fields = ["id", "matchers", "startsAt", "endsAt", "createdBy", "comment", "state",
                  "created", "updated"]  # fmt: skip

    def get_state(self, silence: Silence) -> str:
        return silence.state_at(timezone.now())


class SilenceInput(serializers.Serializer[Any]):
    matchers = serializers.ListField(child=MatcherFields(), max_length=silences.MAX_MATCHERS)
    startsAt = serializers.DateTimeField(required=False, default=None, help_text="Default now.")
    endsAt = serializers.DateTimeField()
    createdBy = serializers.CharField(max_length=200)
    comment = serializers.CharField(max_length=2000)


class SilencePatchInput(SilenceInput):
    matchers = serializers.ListField(
        child=MatcherFields(), max_length=silences.MAX_MATCHERS, required=False
    )
    startsAt = serializers.DateTimeField(required=False)
    endsAt = serializers.DateTimeField(required=False)
    createdBy = serializers.CharField(max_length=200, required=False)
    comment = serializers.CharField(max_length=2000, required=False)


class SilencePage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


class SilenceFilters(serializers.Serializer[Any]):
    state = serializers.ChoiceField(
        choices=["pending", "active", "expired"], required=False, default=""
    )


SILENCE_ID = OpenApiParameter(
    "silence_id", str, OpenApiParameter.PATH, description="The silence's id (a UUID)."
)
SILENCE_FIELDS = {
    "startsAt": "starts_at",
    "endsAt": "ends_at",
    "createdBy": "created_by",
    "matchers": "matchers",
    "comment": "comment",
}


def _silence_or_404(request: Request, silence_id: str) -> Silence:
    found = selectors.silence(tenant=_tenant(request), silence_id=silence_id)
    if found is None:
        raise exceptions.NotFound(f"No silence {silence_id} for this tenant.")
    return found


def _reasonable(moment: datetime | None, name: str) -> None:
    """A silence is hours or weeks long: a time near the calendar's ends is a typo, and
    arithmetic on it would overflow."""
    if moment is None:
        return
    low, high = (datetime(year, 1, 1, tzinfo=moment.tzinfo) for year in (2000, 9000))
    if not low <= moment <= high:
        raise exceptions.ValidationError({name: ["must be between the years 2000 and 9000"]})


class SilenceListView(APIView):
    """POST /api/alerts/silences: silence the instances whose labels (and `alertname`, the
    rule's name) match every matcher, from startsAt until endsAt. GET: the silences."""

    pagination_class = SilencePage

    @extend_schema(
        summary="Create a silence",
        request=SilenceInput,
        responses={201: SilenceOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = SilenceInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = _plain_times(body.validated_data)
        _reasonable(v["startsAt"], "startsAt")
        _reasonable(v["endsAt"], "endsAt")
        try:
            created = services.create_silence(
                tenant=_tenant(request),
                matchers=v["matchers"],
                starts_at=v["startsAt"] or timezone.now(),
                ends_at=v["endsAt"],
                created_by=v["createdBy"],
                comment=v["comment"],
            )
        except services.Refused as exc:
            raise _refused(exc) from None
        return Response(SilenceOutput(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List silences",
        parameters=[SilenceFilters],
        responses={200: SilenceOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = SilenceFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.silences(
            tenant=_tenant(request), state=query.validated_data["state"], now=timezone.now()
        )
        return paged(self, request, found, output=SilenceOutput)


def _plain_times(data: dict[str, Any]) -> dict[str, Any]:
    """Validated silence data: the matchers as plain dicts, the times as they are."""
    found = dict(data)
    if "matchers" in found:
        found["matchers"] = _plain(found["matchers"])
    return found


class SilenceDetailView(APIView):
    """GET, PATCH (matchers, startsAt, endsAt, createdBy, comment) and DELETE one silence."""

    @extend_schema(
        summary="A silence",
        parameters=[SILENCE_ID],
        responses={200: SilenceOutput, **errors(401, 404)},
    )
    def get(self, request: Request, silence_id: str) -> Response:
        return Response(SilenceOutput(_silence_or_404(request, silence_id)).data)

    @extend_schema(
        summary="Change a silence",
        parameters=[SILENCE_ID],
        request=SilencePatchInput,
        responses={200: SilenceOutput, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, silence_id: str) -> Response:
        found = _silence_or_404(request, silence_id)
        body = SilencePatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        v = _plain_times(body.validated_data)
        _reasonable(v.get("startsAt"), "startsAt")
        _reasonable(v.get("endsAt"), "endsAt")
        try:
            changed = services.update_silence(
                silence=found, **{SILENCE_FIELDS[k]: x for k, x in v.items()}
            )
        except services.Refused as exc:
            raise _refused(exc) from None
        except Silence.DoesNotExist:
            raise exceptions.NotFound(f"No silence {silence_id} for this tenant.") from None
        return Response(SilenceOutput(changed).data)

    @extend_schema(
        summary="Delete a silence",
        parameters=[SILENCE_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, silence_id: str) -> Response:
        services.delete_silence(silence=_silence_or_404(request, silence_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SilencePreviewInput(serializers.Serializer[Any]):
    matchers = serializers.ListField(child=MatcherFields(), max_length=silences.MAX_MATCHERS)


class SilencePreviewOutput(serializers.Serializer[Any]):
    matched = serializers.IntegerField(help_text="How many instances it matches.")
    instances = InstanceOutput(many=True, help_text="The first 500, in every state.")


class SilencePreviewView(APIView):
    """POST /api/alerts/silences/preview {"matchers": [...]}: the instances a silence with
    these matchers would hold, whatever their state (pending and normal ones too: they are the
    ones that would page next)."""

    @extend_schema(
        summary="Preview the instances a silence matches",
        request=SilencePreviewInput,
        responses={200: SilencePreviewOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = SilencePreviewInput(data=request.data)
        body.is_valid(raise_exception=True)
        raw = _plain(body.validated_data["matchers"])
        problems = [p for p in silences.validate(raw, None, None)]
        if problems:
            raise exceptions.ValidationError({p.field: [p.message] for p in problems})
        span = silences.Span("preview", silences.matchers_of(raw), datetime.min, datetime.max)
        found = [
            instance
            for instance in selectors.instances(tenant=_tenant(request)).order_by("id")
            if span.matches(silences.instance_labels(instance.labels, instance.rule.name))
        ]
        reply = {"matched": len(found), "instances": found[: selectors.MAX_MATCHED]}
        return Response(SilencePreviewOutput(reply).data)


# SLOs


class SelectorFields(serializers.Serializer[Any]):
    metric = serializers.CharField(max_length=255)
    filters = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True), default=dict
    )


class SliFields(serializers.Serializer[Any]):
    """A ratio SLI (events over total, two counters) or a latency SLI (the observations of a
    histogram at or under a bucket boundary)."""

    type = serializers.ChoiceField(choices=["ratio", "latency"])
    events = SelectorFields(required=False, help_text="Ratio: the counter of bad or good events.")
    total = SelectorFields(required=False, help_text="Ratio: the counter of all events.")
    counts = serializers.ChoiceField(choices=["bad", "good"], required=False)
    histogram = SelectorFields(required=False, help_text="Latency: the histogram.")
    bound = serializers.FloatField(required=False, help_text="Latency: a bucket boundary.")


class RowFields(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=40)
    severity = serializers.ChoiceField(choices=["page", "ticket"])
    burnRate = serializers.FloatField()
    longWindow = serializers.CharField(max_length=10, help_text="5m, 1h, 3d...")
    shortWindow = serializers.CharField(max_length=10)


class SloSpecFields(serializers.Serializer[Any]):
    service = serializers.CharField(max_length=200)
    sli = SliFields()
    objective = serializers.FloatField(help_text="A fraction: 0.999 for 99.9%.")
    period = serializers.ChoiceField(choices=["28d", "30d"], default="30d")
    minEvents = serializers.IntegerField(
        default=0, help_text="Events each row window needs before the row fires or clears."
    )
    rows = RowFields(
        many=True,
        required=False,
        allow_null=True,
        default=None,
        help_text="Burn-rate alert rows; null for the SRE workbook's multiwindow table.",
    )


class SloOutput(serializers.ModelSerializer[Slo]):
    spec = SloSpecFields()
    firingRows = serializers.ListField(source="firing_rows", child=serializers.CharField())
    evaluatedAt = serializers.DateTimeField(source="evaluated_at", allow_null=True)
    budgetRemaining = serializers.FloatField(source="budget_remaining", allow_null=True)
    burnRates = serializers.DictField(source="burn_rates", child=serializers.FloatField())
    lastError = serializers.CharField(source="last_error")
    createdBy = serializers.CharField(source="created_by")

    class Meta:
        model = Slo
        fields = [
            "id", "name", "service", "enabled", "spec", "firingRows", "evaluatedAt", "status",
            "reason", "sli", "budgetRemaining", "burnRates", "health", "lastError", "created",
            "createdBy", "updated",
        ]  # fmt: skip


class SloInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    enabled = serializers.BooleanField(default=True)
    spec = SloSpecFields()


class SloPatchInput(SloInput):
    name = serializers.CharField(max_length=200, required=False)
    enabled = serializers.BooleanField(required=False)
    spec = SloSpecFields(required=False)


class SloPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


class SloFilters(serializers.Serializer[Any]):
    service = serializers.CharField(max_length=200, required=False, default="")
    status = serializers.ChoiceField(
        choices=["no_data", "absent", "breaching", "low_traffic", "ok"], required=False, default=""
    )


SLO_ID = OpenApiParameter("slo_id", str, OpenApiParameter.PATH, description="The SLO's id.")


def _slo_or_404(request: Request, slo_id: str) -> Slo:
    found = selectors.slo(tenant=_tenant(request), slo_id=slo_id)
    if found is None:
        raise exceptions.NotFound(f"No SLO {slo_id} for this tenant (GET /api/slos lists them).")
    return found


def _slo_spec(data: Any) -> dict[str, Any]:
    """The posted spec without the SLI keys its type does not use."""
    spec: dict[str, Any] = _plain(data)
    sli = spec.get("sli", {})
    keep = (
        ("type", "events", "total", "counts")
        if sli.get("type") == "ratio"
        else ("type", "histogram", "bound")
    )
    spec["sli"] = {k: v for k, v in sli.items() if k in keep}
    return spec


class SloListView(APIView):
    """POST /api/slos: create an SLO (its burn-rate rows are evaluated each minute). GET: the
    caller's SLOs with their status at their last evaluation."""

    pagination_class = SloPage

    @extend_schema(
        summary="Create an SLO",
        request=SloInput,
        responses={201: SloOutput, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = SloInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        try:
            created = services.create_slo(
                tenant=_tenant(request),
                name=v["name"],
                enabled=v["enabled"],
                spec=_slo_spec(v["spec"]),
                actor=_actor(request),
            )
        except services.Refused as exc:
            raise _refused(exc, "spec.") from None
        return Response(SloOutput(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List SLOs",
        parameters=[SloFilters],
        responses={200: SloOutput(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = SloFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.slos(tenant=_tenant(request), **query.validated_data)
        return paged(self, request, found, output=SloOutput)


class SloDetailView(APIView):
    """GET, PATCH (name, enabled, spec) and DELETE one SLO. Changing, disabling or deleting
    an SLO clears its firing rows with SloRecovered."""

    @extend_schema(
        summary="An SLO", parameters=[SLO_ID], responses={200: SloOutput, **errors(401, 404)}
    )
    def get(self, request: Request, slo_id: str) -> Response:
        return Response(SloOutput(_slo_or_404(request, slo_id)).data)

    @extend_schema(
        summary="Change an SLO",
        parameters=[SLO_ID],
        request=SloPatchInput,
        responses={200: SloOutput, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, slo_id: str) -> Response:
        found = _slo_or_404(request, slo_id)
        body = SloPatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        v = dict(body.validated_data)
        if "spec" in v:
            v["spec"] = _slo_spec(v["spec"])
        try:
            changed = services.update_slo(objective=found, **v)
        except services.Refused as exc:
            raise _refused(exc, "spec.") from None
        except Slo.DoesNotExist:
            raise exceptions.NotFound(f"No SLO {slo_id} for this tenant.") from None
        return Response(SloOutput(changed).data)

    @extend_schema(
        summary="Delete an SLO", parameters=[SLO_ID], responses={204: None, **errors(401, 404)}
    )
    def delete(self, request: Request, slo_id: str) -> Response:
        services.delete_slo(objective=_slo_or_404(request, slo_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BurnOutput(serializers.Serializer[Any]):
    window = serializers.CharField(source="label")
    windows = serializers.IntegerField(help_text="Aggregation windows found in the span.")
    bad = serializers.FloatField()
    total = serializers.FloatField()
    ratio = serializers.FloatField(allow_null=True, help_text="Σbad / Σtotal.")
    rate = serializers.FloatField(allow_null=True, help_text="The burn rate.")


class RowStatusOutput(serializers.Serializer[Any]):
    name = serializers.CharField(source="row.name")
    severity = serializers.CharField(source="row.severity")
    burnRate = serializers.FloatField(source="row.burn_rate")
    state = serializers.ChoiceField(choices=["burning", "ok", "low_traffic", "absent"])
    long = BurnOutput()
    short = BurnOutput()


class SloStatusOutput(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["no_data", "absent", "breaching", "low_traffic", "ok"])
    reason = serializers.CharField()
    sli = serializers.FloatField(allow_null=True, help_text="Σgood / Σtotal over the period.")
    budgetRemaining = serializers.FloatField(source="budget_remaining", allow_null=True)
    exhaustionSeconds = serializers.FloatField(
        allow_null=True, help_text="At the last hour's burn; null when not burning."
    )
    period = BurnOutput()
    burns = BurnOutput(many=True)
    rows = RowStatusOutput(many=True)
    firingRows = serializers.ListField(child=serializers.CharField())


class SloStatusView(APIView):
    """GET /api/slos/<id>/status: the SLO now (at the end of the newest aggregated minute):
    SLI and budget over the period, burn rate per window, time to exhaustion, each row."""

    @extend_schema(
        summary="An SLO's status",
        parameters=[SLO_ID],
        responses={200: SloStatusOutput, **errors(401, 404)},
    )
    def get(self, request: Request, slo_id: str) -> Response:
        found = _slo_or_404(request, slo_id)
        try:
            objective = specs.slo_of(found.spec)
        except specs.SpecError as exc:
            raise exceptions.ValidationError({"spec": [str(exc)]}) from None
        at, windows = selectors.slo_windows(found, objective, now=timezone.now())
        current = slo.status(objective, windows, at)
        exhaustion = current.exhaustion
        reply = {
            "at": current.at,
            "state": current.state,
            "reason": current.reason,
            "sli": current.sli,
            "budget_remaining": current.budget_remaining,
            "exhaustionSeconds": exhaustion.total_seconds() if exhaustion is not None else None,
            "period": current.period,
            "burns": current.burns,
            "rows": current.rows,
            "firingRows": found.firing_rows,
        }
        return Response(SloStatusOutput(reply).data)
