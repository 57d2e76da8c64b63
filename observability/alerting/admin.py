"""The operator's console for alerting: rule editing, alert instances, silences and SLOs.

A rule is edited field by field (the spec's fields, not its JSON) with the API's validation
(services.rule_problems), each problem beside its field; saving goes through the same services
(a new revision, under the console user's name). "Preview" draws the draft rule over the stored
windows of the last hours or days, with its thresholds and would-be state bands (the same
evaluator as the live tick), without saving. Instances and their history are the worker's
record: read only. Silences are written as one matcher per line.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.admin import (
    ModelForm,
    ReadOnlyMixin,
    clipped_cell,
    fieldset_fields,
    moment_column,
    pretty_json,
)
from core.admin_actions import ModelAdmin
from core.formats import format_moment, format_value
from observability.alerting import (
    charts,
    preview,
    rules,
    selectors,
    services,
    silences,
    slo,
    specs,
)
from observability.alerting.models import AlertInstance, AlertRule, Silence, Slo

PREVIEW_RANGES = [("1h", "last hour"), ("6h", "last 6 hours"), ("1d", "last day"),
                  ("3d", "last 3 days")]  # fmt: skip
RANGE_LENGTHS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "1d": timedelta(days=1),
                 "3d": timedelta(days=3)}  # fmt: skip


def actor(request: HttpRequest) -> str:
    return f"console user {request.user.get_username()}"


def _pairs(text: str) -> dict[str, str]:
    """ "service.name=checkout, region=eu" as a dict; ValueError naming a bad pair."""
    found = {}
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part!r} is not label=value")
        found[key.strip()] = value.strip()
    return found


def _text_of(pairs: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in pairs.items())


# Rules

CHOICES_FIELD = [(f.value, f.value) for f in rules.Field]
NUMBERS = (
    "critical", "warning", "resolve", "for_seconds", "keep_firing_for_seconds", "delay_seconds",
    "cadence_seconds", "flap_window", "flap_changes",
)  # fmt: skip
# The spec's paths, as rules.validate and specs name them, and the form fields they sit beside.
FIELD_OF_PATH = {
    "query.metric": "metric",
    "query.window": "window",
    "query.field": "field",
    "query.filters": "filters",
    "denominator": "denominator_metric",
    "denominator.metric": "denominator_metric",
    "denominator.window": "window",
    "denominator.field": "denominator_field",
    "denominator.filters": "denominator_filters",
    "groupBy": "group_by",
    "groupKey": "group_key",
    **{camel: snake for camel, snake in specs.RULE_FIELDS.items()},
}


class RuleForm(ModelForm):
    """The rule's spec as form fields; clean() validates it as the API does."""

    metric = forms.CharField(max_length=255, help_text="The metric's name, as received.")
    window = forms.ChoiceField(choices=[(w, w) for w in rules.WINDOWS], initial="1m")
    field = forms.ChoiceField(
        choices=CHOICES_FIELD, initial="last", help_text="One the metric's kind stores."
    )
    filters = forms.CharField(required=False, help_text="label=value, label=value")
    denominator_metric = forms.CharField(
        required=False, max_length=255, help_text="A ratio's denominator (errors / requests)."
    )
    denominator_field = forms.ChoiceField(choices=CHOICES_FIELD, initial="delta", required=False)
    denominator_filters = forms.CharField(required=False, help_text="label=value, ...")
    group_by = forms.CharField(
        required=False, help_text="Label keys, comma separated: one instance per group."
    )
    op = forms.ChoiceField(choices=[(o.value, o.value) for o in rules.Op], initial=">")
    critical = forms.FloatField()
    warning = forms.FloatField(required=False, help_text="Must trigger before critical.")
    resolve = forms.FloatField(
        required=False, help_text="Hysteresis: an open alert resolves only past this."
    )
    comparison = forms.ChoiceField(
        choices=[(c.value, c.value) for c in rules.Comparison], initial="static"
    )
    offset = forms.ChoiceField(
        choices=[("", "-")] + [(o, o) for o in rules.OFFSETS], required=False
    )
    for_seconds = forms.IntegerField(initial=0, label="For (seconds)")
    keep_firing_for_seconds = forms.IntegerField(initial=0, label="Keep firing for (seconds)")
    delay_seconds = forms.IntegerField(initial=0, label="Evaluation delay (seconds)")
    cadence_seconds = forms.IntegerField(initial=60, label="Cadence (seconds)")
    nodata = forms.ChoiceField(
        choices=[(n.value, n.value) for n in rules.NoData], initial="nodata", label="No data"
    )
    flap_window = forms.IntegerField(initial=10, help_text="Windows flap detection looks at.")
    flap_changes = forms.IntegerField(initial=4, help_text="Changes that make it flap; 0: off.")
    preview_range = forms.ChoiceField(
        choices=PREVIEW_RANGES, initial="6h", required=False, label="Preview over the"
    )

    class Meta:
        model = AlertRule
        fields = ["tenant", "name", "description", "enabled", "group_key"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = None if self.instance._state.adding else self.instance.spec
        if spec:
            try:
                rule = specs.rule_of(str(self.instance.pk), spec)
            except specs.SpecError:
                return
            self.initial.update(self._initial_of(rule))

    @staticmethod
    def _initial_of(rule: rules.AlertRule) -> dict[str, Any]:
        den = rule.denominator
        initial: dict[str, Any] = {
            "metric": rule.query.metric,
            "window": rule.query.window,
            "field": rule.query.field.value,
            "filters": _text_of(dict(rule.query.filters)),
            "denominator_metric": den.metric if den else "",
            "denominator_field": den.field.value if den else "delta",
            "denominator_filters": _text_of(dict(den.filters)) if den else "",
            "group_by": ", ".join(rule.group_by),
            "offset": rule.offset or "",
        }
        for name in ("op", "comparison", "nodata"):
            initial[name] = getattr(rule, name).value
        for name in NUMBERS:
            initial[name] = getattr(rule, name)
        return initial

    def spec(self) -> dict[str, Any]:
        """The spec the cleaned fields describe."""
        data = self.cleaned_data
        spec: dict[str, Any] = {
            "query": {
                "metric": data.get("metric", ""),
                "window": data.get("window", "1m"),
                "field": data.get("field", "last"),
                "filters": self._pairs("filters"),
            },
            "denominator": None,
            "groupBy": [k.strip() for k in (data.get("group_by") or "").split(",") if k.strip()],
        }
        if data.get("denominator_metric"):
            spec["denominator"] = {
                "metric": data["denominator_metric"],
                "window": data.get("window", "1m"),
                "field": data.get("denominator_field") or "delta",
                "filters": self._pairs("denominator_filters"),
            }
        for camel, snake in specs.RULE_FIELDS.items():
            value = data.get(snake)
            if snake == "offset":
                value = value or None
            if value is not None:
                spec[camel] = value
        return spec

    def _pairs(self, name: str) -> dict[str, str]:
        try:
            return _pairs(self.cleaned_data.get(name) or "")
        except ValueError as exc:
            self.add_error(name, str(exc))
            return {}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is None:
            return data
        rule_id = "draft" if self.instance._state.adding else str(self.instance.pk)
        spec = self.spec()
        problems = services.rule_problems(tenant, spec, data["group_key"], rule_id=rule_id)
        for path, message in problems:
            field = FIELD_OF_PATH.get(path, path)
            self.add_error(field if field in self.fields else None, message)
        name = data.get("name")
        taken = AlertRule.objects.filter(tenant=tenant, name=name).exclude(pk=self.instance.pk)
        if name and taken.exists():
            self.add_error("name", f"a rule named {name!r} exists already")
        data["spec"] = spec
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(ModelAdmin):
    form = RuleForm
    change_form_template = "admin/alerting/alertrule/change_form.html"
    list_display = ["name", "enabled", "health", "what", "firing", "revision", "updated_cell"]
    list_filter = ["enabled", "health", "tenant"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["tenant", "name", "enabled", "description"]}),
        ("What it reads", {"fields": [
            "metric", "window", "field", "filters", "denominator_metric", "denominator_field",
            "denominator_filters", "group_by",
        ]}),
        ("When it fires", {"fields": [
            "op", "critical", "warning", "resolve", "comparison", "offset", "for_seconds",
            "keep_firing_for_seconds",
        ]}),
        ("How it is evaluated", {"fields": [
            "delay_seconds", "cadence_seconds", "nodata", "flap_window", "flap_changes",
            "group_key",
        ]}),
        ("Preview", {"fields": ["preview_range"]}),
        ("State", {"fields": ["revision", "health", "last_error", "evaluated", "window_done"]}),
        ("Revisions", {"fields": ["revisions_panel"]}),
    ]  # fmt: skip
    readonly_fields = ["revision", "health", "last_error", "evaluated", "window_done",
                       "revisions_panel"]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRule]:
        from django.db.models import Count, Q

        return (
            super()
            .get_queryset(request)
            .annotate(firing_count=Count("instances", filter=Q(instances__state_name="firing")))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: AlertRule | None = None) -> list[str]:
        fields = list(self.readonly_fields)
        return [*fields, "tenant"] if obj is not None else fields

    def get_fieldsets(self, request: HttpRequest, obj: AlertRule | None = None) -> Any:
        if obj is None:  # a new rule has no state nor revisions yet
            return self.fieldsets[:5]
        return self.fieldsets

    @admin.display(description="reads")
    def what(self, rule: AlertRule) -> str:
        try:
            parsed = specs.rule_of(str(rule.pk), rule.spec)
        except specs.SpecError:
            return "(unreadable)"
        text = f"{parsed.describe()} {parsed.op} {format_value(parsed.critical)}"
        return clipped_cell(text, 60)

    @admin.display(description="firing", ordering="firing_count")
    def firing(self, rule: Any) -> int:
        return int(rule.firing_count)

    updated_cell = moment_column("updated", "updated")

    @admin.display(description="evaluated")
    def evaluated(self, rule: AlertRule) -> str:
        return format_moment(rule.evaluated_at)

    @admin.display(description="newest window evaluated")
    def window_done(self, rule: AlertRule) -> str:
        return format_moment(rule.last_window)

    @admin.display(description="revisions")
    def revisions_panel(self, rule: AlertRule) -> str:
        found = selectors.revisions(rule).order_by("-revision")[:20]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    r.revision,
                    format_moment(r.created),
                    r.created_by or "-",
                    clipped_cell(json_line(r.spec), 90),
                )
                for r in found
            ),
        )
        return format_html(
            '<table class="wf-table"><thead><tr><th>revision</th><th>saved</th><th>by</th>'
            "<th>spec</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request: HttpRequest, obj: AlertRule, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "name": data["name"],
            "description": data.get("description", ""),
            "enabled": data.get("enabled", True),
            "group_key": data["group_key"],
            "spec": data["spec"],
        }
        if change:
            saved = services.update_rule(rule=obj, actor=actor(request), **fields)
        else:
            saved = services.create_rule(tenant=data["tenant"], actor=actor(request), **fields)
        obj.pk, obj.revision, obj.spec = saved.pk, saved.revision, saved.spec
        obj._state.adding = False

    # Deleting goes through the services too: a firing alert publishes AlertResolved first.
    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The rule's instances are the worker's (read only here): the services retire them with
        # it, so they need no delete permission of their own.
        perms_needed.discard(AlertInstance._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: AlertRule) -> None:
        services.delete_rule(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        for rule in queryset:
            services.delete_rule(rule=rule)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and "_preview" in request.POST:
            return self._preview(request, object_id, form_url, extra_context or {})
        extra = dict(extra_context or {})
        if object_id and request.method == "GET":
            obj = self.get_object(request, object_id)
            if obj is not None:
                named = preview.Named(obj.name, obj.group_key, obj.revision)
                extra["preview"] = rule_preview(obj.tenant, str(obj.pk), obj.spec, "6h", named)
        return super().changeform_view(request, object_id, form_url, extra)

    def _preview(
        self, request: HttpRequest, object_id: str | None, form_url: str, extra: dict[str, Any]
    ) -> HttpResponse:
        """The posted draft validated and drawn over stored windows, not saved."""
        add = object_id is None
        obj = None if object_id is None else self.get_object(request, object_id)
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(
            request, obj, change=not add, fields=flatten_fieldsets(fieldsets)
        )
        form = form_class(request.POST, request.FILES, instance=obj)
        drawn = None
        if form.is_valid():
            tenant = form.cleaned_data.get("tenant") or (obj.tenant if obj else None)
            named = preview.Named(
                form.cleaned_data.get("name") or "preview",
                form.cleaned_data.get("group_key") or specs.DEFAULT_GROUP_KEY,
                obj.revision if obj is not None else 0,
            )
            drawn = rule_preview(
                tenant,
                object_id or "draft",
                form.cleaned_data["spec"],
                form.cleaned_data.get("preview_range") or "6h",
                named,
            )
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),
            {},
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview of a rule (not saved)",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "preview": drawn,
            **extra,
        }
        return self.render_change_form(
            request, context, add=add, change=not add, obj=obj, form_url=form_url
        )


def json_line(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))


def rule_preview(
    tenant: Any, rule_id: str, spec: Any, span: str, named: preview.Named | None = None
) -> dict[str, Any]:
    """What the preview panel draws: the charts, the triggers and incidents, or why there are
    none."""
    try:
        rule = specs.rule_of(rule_id, spec)
    except specs.SpecError as exc:
        return {"error": str(exc)}
    end = timezone.now()
    try:
        start = end - RANGE_LENGTHS.get(span, timedelta(hours=6))
        found = preview.preview(tenant.pk, rule, start, end, named)
    except preview.TooLong as exc:
        return {"error": f"No preview: {exc}"}
    return {
        "found": found,
        "charts": charts.preview_charts(rule, found),
        "span": dict(PREVIEW_RANGES).get(span, span),
        "states": charts.STATE_COLORS,
        "triggers": [_trigger_row(t) for t in found.triggers[:MAX_TRIGGER_ROWS]],
        "incidents": [_incident_row(i) for i in found.incidents],
        "silenced": sum(1 for i in found.instances if i.silenced),
    }


MAX_TRIGGER_ROWS = 50  # of the preview's triggers, the first


def _trigger_row(trigger: preview.Trigger) -> dict[str, str]:
    data = trigger.data
    labels = _text_of(data.get("labels") or {}) or "(no labels)"
    value = data.get("value")
    return {
        "at": format_moment(trigger.transition.window_end),
        "event": trigger.event_type,
        "labels": labels,
        "severity": str(data.get("severity", "")),
        "value": "-" if value is None else format_value(value),
        "reason": str(data.get("reason", "")),
    }


def _incident_row(incident: preview.IncidentPreview) -> dict[str, Any]:
    changes = ", ".join(f"{name} {format_moment(at)}" for name, at in incident.changes)
    return {
        "number": incident.number,
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "triggers": len(incident.instance_keys),
        "group_key": incident.group_key,
        "changes": changes,
    }


# Instances


@admin.register(AlertInstance)
class AlertInstanceAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ["rule_name", "labels_cell", "state_name", "severity", "reason_cell",
                    "since_cell", "silenced"]  # fmt: skip
    list_filter = ["state_name", "severity", "silenced", "flapping", "tenant"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "=instance_key"]
    ordering = ["-updated"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["rule_link", "instance_key", "labels_json", "state_name", "severity",
                           "reason", "flapping", "silenced", "notified"]}),
        ("Times", {"fields": ["since_at", "fired", "resolved", "window", "last_value"]}),
        ("History", {"fields": ["history_panel"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)

    @admin.display(description="rule", ordering="rule__name")
    def rule_name(self, instance: AlertInstance) -> str:
        return clipped_cell(instance.rule.name, 40)

    @admin.display(description="rule")
    def rule_link(self, instance: AlertInstance) -> str:
        url = reverse("admin:alerting_alertrule_change", args=[instance.rule_id])
        return format_html('<a href="{}">{}</a>', url, instance.rule.name)

    @admin.display(description="labels")
    def labels_cell(self, instance: AlertInstance) -> str:
        return clipped_cell(_text_of(instance.labels) or "-", 50)

    @admin.display(description="labels")
    def labels_json(self, instance: AlertInstance) -> str:
        return pretty_json(instance.labels)

    @admin.display(description="reason")
    def reason_cell(self, instance: AlertInstance) -> str:
        return clipped_cell(instance.reason, 70)

    since_cell = moment_column("since", "since")

    @admin.display(description="since")
    def since_at(self, instance: AlertInstance) -> str:
        return format_moment(instance.since)

    @admin.display(description="fired")
    def fired(self, instance: AlertInstance) -> str:
        return format_moment(instance.fired_at)

    @admin.display(description="resolved")
    def resolved(self, instance: AlertInstance) -> str:
        return format_moment(instance.resolved_at)

    @admin.display(description="newest window evaluated")
    def window(self, instance: AlertInstance) -> str:
        return format_moment(instance.last_window)

    @admin.display(description="history (newest first)")
    def history_panel(self, instance: AlertInstance) -> str:
        found = selectors.changes(
            tenant=instance.rule.tenant,
            rule_id=str(instance.rule_id),
            instance_key=instance.instance_key,
        ).order_by("-window_start")[:50]
        return render_to_string(
            "admin/alerting/history.html",
            {"changes": [(format_moment(c.window_end), c) for c in found]},
        )


# Silences


class SilenceForm(ModelForm):
    matchers_text = forms.CharField(
        label="Matchers",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One a line: label=value, label!=value, label=~regex, label!~regex. "
        '"alertname" is the rule\'s name.',
    )

    class Meta:
        model = Silence
        fields = ["tenant", "starts_at", "ends_at", "created_by", "comment"]
        widgets = {"comment": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.initial["matchers_text"] = "\n".join(
                str(m) for m in silences.matchers_of(self.instance.matchers)
            )

    def clean_matchers_text(self) -> list[dict[str, str]]:
        found = []
        for line in self.cleaned_data["matchers_text"].splitlines():
            line = line.strip()
            if not line:
                continue
            for op in ("=~", "!~", "!=", "="):  # the two-character ones first
                label, sep, value = line.partition(op)
                if sep:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    found.append({"label": label.strip(), "op": op, "value": value})
                    break
            else:
                raise forms.ValidationError(f"{line!r} is not label=value (or !=, =~, !~)")
        return found

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        problems = services.silence_problems(
            data["matchers_text"],
            data.get("starts_at"),
            data.get("ends_at"),
            data.get("comment", ""),
            data.get("created_by", ""),
        )
        fields = {"matchers": "matchers_text", "endsAt": "ends_at", "comment": "comment",
                  "createdBy": "created_by"}  # fmt: skip
        for name, message in problems:
            self.add_error(fields.get(name), message)
        return data


@admin.register(Silence)
class SilenceAdmin(ModelAdmin):
    form = SilenceForm
    list_display = ["matchers_cell", "state", "starts", "ends", "created_by", "comment_cell"]
    list_filter = ["tenant"]
    search_fields = ["comment", "created_by"]
    ordering = ["-ends_at"]
    fields = ["tenant", "matchers_text", "starts_at", "ends_at", "created_by", "comment",
              "matched_panel"]  # fmt: skip
    readonly_fields = ["matched_panel"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        now = timezone.now().replace(second=0, microsecond=0)
        return {
            "starts_at": now,
            "ends_at": now + timedelta(hours=2),
            "created_by": request.user.get_username(),
        }

    @admin.display(description="matchers")
    def matchers_cell(self, silence: Silence) -> str:
        return clipped_cell(silences.describe_json(silence.matchers), 60)

    @admin.display(description="state")
    def state(self, silence: Silence) -> str:
        return silence.state_at(timezone.now())

    starts = moment_column("starts_at", "starts")
    ends = moment_column("ends_at", "ends")

    @admin.display(description="comment")
    def comment_cell(self, silence: Silence) -> str:
        return clipped_cell(silence.comment, 50)

    @admin.display(description="instances it matches (every state)")
    def matched_panel(self, silence: Silence) -> str:
        if silence._state.adding:
            return "-"
        matchers = silences.matchers_of(silence.matchers)
        span = silences.Span(str(silence.pk), matchers, silence.starts_at, silence.ends_at)
        found = [
            i
            for i in selectors.instances(tenant=silence.tenant).order_by("id")
            if span.matches(silences.instance_labels(i.labels, i.rule.name))
        ][:100]
        if not found:
            return "none now"
        rows = ((i.rule.name, _text_of(i.labels), i.state_name) for i in found)
        return format_html_join("", "<div>{} {{{}}}: {}</div>", rows)

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "matchers": data["matchers_text"],
            "starts_at": data["starts_at"],
            "ends_at": data["ends_at"],
            "created_by": data["created_by"],
            "comment": data["comment"],
        }
        if change:
            saved = services.update_silence(silence=obj, **fields)
        else:
            saved = services.create_silence(tenant=data["tenant"], **fields)
        obj.pk, obj.matchers = saved.pk, saved.matchers
        obj._state.adding = False


# SLOs


class SloForm(ModelForm):
    spec = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90}),
        help_text="service, sli (ratio: events, total, counts; latency: histogram, bound), "
        "objective (0.999), period (28d or 30d), minEvents, rows (null: the SRE workbook's).",
    )

    class Meta:
        model = Slo
        fields = ["tenant", "name", "enabled", "spec"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is not None:
            for path, message in services.slo_problems(tenant, data["spec"]):
                self.add_error("spec", f"{path}: {message}")
        return data


@admin.register(Slo)
class SloAdmin(ModelAdmin):
    form = SloForm
    change_form_template = "admin/alerting/slo/change_form.html"
    list_display = ["name", "service", "status", "budget", "burns", "firing", "evaluated"]
    list_filter = ["status", "enabled", "tenant"]
    search_fields = ["name", "service"]
    ordering = ["name"]
    readonly_fields = ["status", "reason", "budget", "burns", "firing", "evaluated", "last_error"]

    def get_fields(self, request: HttpRequest, obj: Slo | None = None) -> Any:
        fields = ["tenant", "name", "enabled", "spec"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Slo | None = None) -> list[str]:
        return [*self.readonly_fields, "tenant"] if obj is not None else self.readonly_fields

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        if object_id and request.method == "GET":
            obj = self.get_object(request, object_id)
            if obj is not None:
                extra["slo_charts"] = slo_charts(obj)
        return super().changeform_view(request, object_id, form_url, extra)

    @admin.display(description="budget left")
    def budget(self, objective: Slo) -> str:
        left = objective.budget_remaining
        return "-" if left is None else f"{format_value(left * 100, 3)}%"

    @admin.display(description="burn rates")
    def burns(self, objective: Slo) -> str:
        rates = objective.burn_rates or {}
        text = ", ".join(f"{k}: {format_value(v, 3)}x" for k, v in rates.items())
        return clipped_cell(text or "-", 50)

    @admin.display(description="firing rows")
    def firing(self, objective: Slo) -> str:
        return ", ".join(objective.firing_rows) or "-"

    evaluated = moment_column("evaluated_at", "evaluated")

    def save_model(self, request: HttpRequest, obj: Slo, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = services.update_slo(
                objective=obj, name=data["name"], enabled=data["enabled"], spec=data["spec"]
            )
        else:
            saved = services.create_slo(
                tenant=data["tenant"],
                name=data["name"],
                enabled=data["enabled"],
                spec=data["spec"],
                actor=actor(request),
            )
        obj.pk, obj.spec, obj.service = saved.pk, saved.spec, saved.service
        obj._state.adding = False

    # Deleting goes through the services too: each firing row publishes SloRecovered first,
    # so that the incident it opened resolves.
    def delete_model(self, request: HttpRequest, obj: Slo) -> None:
        services.delete_slo(objective=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Slo]) -> None:
        for objective in queryset:
            services.delete_slo(objective=objective)


def slo_charts(objective: Slo) -> dict[str, Any]:
    """What the SLO's charts panel draws: the budget and burn charts over its whole period,
    hour by hour, each instant slo.status over the stored windows, or why there are none."""
    try:
        spec = specs.slo_of(objective.spec)
    except specs.SpecError as exc:
        return {"error": f"No charts: {exc}"}
    # The budget at the chart's first instant sums the period before it: the windows of two
    # periods, read in one query by sli_windows as for a status over twice the period (hourly
    # windows, minute ones over the last hours only).
    reach = dataclasses.replace(spec, period=2 * spec.period)
    at, windows = selectors.slo_windows(objective, reach, now=timezone.now())
    drawn = charts.slo_charts(spec, windows, at, span=spec.period, step=charts.SLO_PERIOD_STEP)
    return {"charts": drawn, "at": format_moment(at), "period": slo.window_label(spec.period)}
