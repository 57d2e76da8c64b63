"""The operator's console for integration failures and retry policies.

A failure is the worker's record, so nothing on it is edited by hand; its attempts are shown
inline, and the operator's writes are the object actions Retry, Acknowledge and Ignore and the
list action "Retry selected failures" (core.admin_actions), through the same services as the
API, under the console user's name. Retry policies are the operator's: each row overrides the
code's default (integrations.failures.decisions.DEFAULT_POLICIES) for a provider and kind.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin import ReadOnlyMixin, clipped_cell, fieldset_fields, pretty_json
from core.admin_actions import (
    Cell,
    Done,
    ModelAdmin,
    ObjectActionsAdmin,
    Preview,
    confirmed,
    object_action,
)
from core.formats import format_duration, format_moment
from integrations.failures import decisions, services
from integrations.failures.models import (
    FailureAttempt,
    IntegrationFailure,
    RetryPolicy,
    Status,
)

CHANGE = "failures.change_integrationfailure"
ATTEMPT_FIELDS = ("number", "at", "outcome", "by", "error")


class AttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = FailureAttempt
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    extra = 0
    can_delete = False
    ordering = ["-number"]
    max_num = 0


@admin.register(IntegrationFailure)
class IntegrationFailureAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    list_display = [
        "failure_id_cell", "kind", "subject_cell", "error_class", "status", "attempts",
        "next_attempt", "last_seen_cell", "escalated",
    ]  # fmt: skip
    list_display_links = ["failure_id_cell"]
    # The platform's list styles: a clipped id or subject wraps anywhere, its whole in the tooltip.
    change_list_template = "admin/core/change_list.html"
    list_filter = ["status", "kind", "error_class", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=failure_id", "=subject_id", "=group_key"]
    search_help_text = (
        "A failureId, a subject's id (connection, credential, subscription), or a group key."
    )
    ordering = ["-first_seen"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "failure_id", "tenant", "kind", "provider", "subject_id", "subject", "status",
            "status_reason", "status_by", "attempts", "next_attempt_at", "error_class",
            "status_code", "error", "group_key", "first_seen", "last_seen", "escalated_at",
            "escalated_as", "policy_panel", "detail_json",
        ]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)
    inlines = [AttemptInline]
    actions = ["retry_selected"]
    object_actions = ["retry", "acknowledge", "ignore"]

    @admin.display(description="failure", ordering="failure_id")
    def failure_id_cell(self, failure: IntegrationFailure) -> str:
        return clipped_cell(failure.failure_id, 24)

    @admin.display(description="subject", ordering="subject_id")
    def subject_cell(self, failure: IntegrationFailure) -> str:
        return clipped_cell(failure.subject or failure.subject_id, 40)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, failure: IntegrationFailure) -> str:
        return format_moment(failure.next_attempt_at) if failure.next_attempt_at else "-"

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen_cell(self, failure: IntegrationFailure) -> str:
        return format_moment(failure.last_seen)

    @admin.display(description="escalated", boolean=True)
    def escalated(self, failure: IntegrationFailure) -> bool:
        return failure.escalated_at is not None

    @admin.display(description="retry policy")
    def policy_panel(self, failure: IntegrationFailure) -> str:
        policy = services.policy_of(failure, services.load_policies())
        return format_html(
            "<dl>{}</dl>",
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", policy_items(policy)),
        )

    @admin.display(description="detail")
    def detail_json(self, failure: IntegrationFailure) -> str:
        return pretty_json(failure.detail)

    # The operator's writes: object actions, through integrations.failures.services.

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CHANGE))

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CHANGE))

    def has_ignore_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CHANGE))

    @object_action(
        label="Retry now",
        permission="retry",
        shown=lambda failure: failure.retryable_by_hand,
        help="A sync resumes, a rotation resumes its step, an outage re-probes, a webhook "
        "delivery is redelivered.",
    )
    def retry(self, request: HttpRequest, failure: IntegrationFailure) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        try:
            services.retry(failure=failure, actor=actor)
        except services.Refused as exc:
            return Done(str(exc), messages.WARNING)
        self.log_change(request, failure, "Retried")
        return Done(f"Retried failure {failure.failure_id}.")

    @object_action(
        label="Acknowledge",
        permission="acknowledge",
        shown=lambda failure: failure.status in (Status.OPEN, Status.RETRYING, Status.POISONED),
        help="Someone is on it: no more automatic retries.",
    )
    def acknowledge(self, request: HttpRequest, failure: IntegrationFailure) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        try:
            changed = services.acknowledge(failure=failure, actor=actor)
        except services.Refused as exc:
            return Done(str(exc), messages.WARNING)
        if not changed:
            return Done(f"Failure {failure.failure_id} was acknowledged already.", messages.WARNING)
        self.log_change(request, failure, "Acknowledged")
        return Done(f"Acknowledged failure {failure.failure_id}.")

    @object_action(
        label="Ignore",
        permission="ignore",
        shown=lambda failure: failure.status not in (Status.RESOLVED, Status.IGNORED),
        help="It needs nothing: no more retries; its escalation resolves.",
    )
    def ignore(self, request: HttpRequest, failure: IntegrationFailure) -> Done:
        actor = services.actor_of_user(request.user.get_username())
        try:
            changed = services.ignore(failure=failure, actor=actor)
        except services.Refused as exc:
            return Done(str(exc), messages.WARNING)
        if not changed:
            return Done(f"Failure {failure.failure_id} was ignored already.", messages.WARNING)
        self.log_change(request, failure, "Ignored")
        return Done(f"Ignored failure {failure.failure_id}.")

    @admin.action(description="Retry selected failures now", permissions=["retry"])
    def retry_selected(
        self, request: HttpRequest, queryset: QuerySet[IntegrationFailure]
    ) -> HttpResponse | None:
        failures = list(queryset)
        if (page := confirmed(self, request, failures, self._retry_preview(failures))) is not None:
            return page
        actor = services.actor_of_user(request.user.get_username())
        retried: list[IntegrationFailure] = []
        refused: dict[str, str] = {}
        by_tenant: dict[Any, list[IntegrationFailure]] = {}
        for failure in failures:
            by_tenant.setdefault(failure.tenant, []).append(failure)
        for tenant, mine in by_tenant.items():
            done, not_done = services.retry_many(tenant=tenant, failures=mine, actor=actor)
            retried += done
            refused.update(not_done)
        for failure in retried:
            self.log_change(request, failure, "Retried")
        text = f"{len(retried)} retried"
        if refused:
            text += f"; {len(refused)} not: " + "; ".join(
                f"{k}: {v}" for k, v in list(refused.items())[:5]
            )
        self.message_user(request, text, messages.WARNING if refused else messages.SUCCESS)
        return None

    def _retry_preview(self, failures: list[IntegrationFailure]) -> Preview:
        rows = []
        for failure in failures:
            url = reverse("admin:failures_integrationfailure_change", args=[failure.pk])
            what = {
                "sync": "resume the sync from its checkpoint",
                "rotation": "resume the rotation's step",
                "outage": "re-probe the connection",
                "webhook": "redeliver the delivery",
            }[failure.kind]
            if not failure.retryable_by_hand:
                what = f"nothing: it is {failure.status}"
            rows.append(
                [
                    Cell(failure.failure_id, url),
                    Cell(failure.kind),
                    Cell(failure.status),
                    Cell(what),
                ]
            )
        count = sum(1 for f in failures if f.retryable_by_hand)
        return Preview(
            title="Retry failures now?",
            summary=f"{count} of {len(failures)} selected failures would be retried now.",
            columns=["failure", "kind", "status", "would"],
            rows=rows,
            act="Retry them" if count else "",
        )


@admin.register(RetryPolicy)
class RetryPolicyAdmin(ModelAdmin):
    # In words, under short headers (a list's headers do not wrap): the fields' own names,
    # in seconds, make a table wider than a laptop's 1440 px.
    list_display = [
        "__str__", "schedule", "attempts_cell", "not_retried", "timeout", "updated",
    ]  # fmt: skip
    list_filter = ["kind"]
    change_list_template = "admin/core/change_list.html"
    readonly_fields = ["updated", "code_defaults"]
    fields = [
        "provider", "kind", "initial_interval_seconds", "backoff_coefficient",
        "maximum_interval_seconds", "maximum_attempts", "non_retryable_error_classes",
        "attempt_timeout_seconds", "updated", "code_defaults",
    ]  # fmt: skip

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new override starts with the classes every code default leaves alone: an empty
        list (the model's default) would have auth and permanent errors retried, which waiting
        never heals, unless the operator remembered to type them."""
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("non_retryable_error_classes", [decisions.AUTH, decisions.PERMANENT])
        return initial

    @admin.display(description="retries after")
    def schedule(self, policy: RetryPolicy) -> str:
        """The backoff as the worker applies it: the first wait, its growth, its ceiling."""
        applied = policy.as_policy()
        return (
            f"{format_duration(applied.initial_interval)}, then {applied.backoff_coefficient:g} "
            f"times longer each time, at most {format_duration(applied.ceiling())}"
        )

    @admin.display(description="attempts", ordering="maximum_attempts")
    def attempts_cell(self, policy: RetryPolicy) -> str:
        return str(policy.maximum_attempts) if policy.maximum_attempts else "unlimited"

    @admin.display(description="not retried")
    def not_retried(self, policy: RetryPolicy) -> str:
        return ", ".join(policy.non_retryable_error_classes or []) or "-"

    @admin.display(description="attempt timeout", ordering="attempt_timeout_seconds")
    def timeout(self, policy: RetryPolicy) -> str:
        return format_duration(policy.attempt_timeout_seconds)

    @admin.display(
        description="the code's defaults (overridden by a row of the same provider and kind)"
    )
    def code_defaults(self, policy: RetryPolicy | None = None) -> str:
        return format_html_join(
            "",
            "<div><b>{}</b>: {}</div>",
            (
                (f"{provider or 'every provider'} / {kind}", pretty_policy(p))
                for (provider, kind), p in decisions.DEFAULT_POLICIES.items()
            ),
        )

    def save_model(self, request: HttpRequest, obj: RetryPolicy, form: Any, change: bool) -> None:
        from django.utils import timezone

        obj.updated = timezone.now()
        super().save_model(request, obj, form, change)


# The policy's fields that are seconds: shown as the console shows every duration.
DURATIONS = ("initialInterval", "maximumInterval", "attemptTimeout")


def policy_items(policy: decisions.Policy) -> list[tuple[str, str]]:
    """The policy's fields by their API names, each value for a person: "2 min 0 s", not 120;
    "auth, permanent", not a Python list."""
    items = []
    for name, value in policy.as_dict().items():
        if name in DURATIONS:
            text = format_duration(value)
        elif isinstance(value, list | tuple):
            text = ", ".join(value) or "-"
        else:
            text = str(value)
        items.append((name, text))
    return items


def pretty_policy(policy: decisions.Policy) -> str:
    return ", ".join(f"{name} {text}" for name, text in policy_items(policy))
