"""The operator's console for outbound webhooks: subscriptions, and their deliveries with every
attempt.

Subscriptions are created through the API, which shows the new signing secret once, so the admin
adds none. Neither the secret nor the previous one is loaded, listed or rendered here, with one
exception: rotating the secret (an object action, through integrations.webhooks.subscriptions'
rotate_secret, as POST /api/webhooks/subscriptions/<id>/rotate-secret) answers with the one page
that shows the new one. An operator may change a subscription's event types, description and
`enabled`; the change goes through integrations.webhooks.subscriptions.update_subscription, so the
API's validation and its re-enable rule (a fresh failing period) hold here too.

Deliveries and attempts are the worker's record of what was sent and what came back, so they are
read-only. The operator's writes are redelivering deliveries and recovering a subscription's
failed ones, through integrations.webhooks.delivery's redeliver and recover: the same delivery,
same webhook-id, sent again by the worker.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core import events
from core.admin import (
    ReadOnlyMixin,
    clipped_cell,
    fieldset_fields,
    moment_cell,
    moment_column,
    pretty_json,
    under,
)
from core.admin_actions import Done, ObjectActionsAdmin, Preview, object_action
from core.formats import format_duration, format_moment
from core.models import Message
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from integrations.webhooks import WORKER
from integrations.webhooks.decisions import delivery_id, queued_event_id
from integrations.webhooks.delivery import FAILED, recover, redeliver

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class SubscriptionUrl(TypedDict):
        subscription_url: str


from integrations.webhooks.subscriptions import (
    SECRET_FIELDS,
    check_event_types,
    rotate_secret,
    update_subscription,
)

State = WebhookDelivery.State
RECOVER_WINDOW = timedelta(days=7)
LATEST_DELIVERIES = 20  # on a subscription's page; the rest are a link away
# Never loaded by the admin's querysets: what is not in memory cannot leak into a page.


def deliveries_url(subscription_pk) -> str:
    """The deliveries changelist narrowed to one subscription."""
    changelist = reverse("admin:integrations_webhookdelivery_changelist")
    return f"{changelist}?subscription__id__exact={subscription_pk}"


def format_wait(seconds: float) -> str:
    """The wait between two attempts, which is the retry policy's backoff made visible."""
    if seconds < 10:  # retries brought forward, or Retry-After: 1
        return f"{max(seconds, 0):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def payload_html(payload: str) -> str:
    """The delivery's body, indented; as stored if it is not JSON (it always should be)."""
    try:
        return pretty_json(json.loads(payload))
    except ValueError:
        return format_html("<pre>{}</pre>", payload)


def parse_delivery_id(term: str) -> uuid.UUID | None:
    """A delivery id, an event id, or the webhook-id a receiver logged (msg_ and the hex)."""
    term = term.strip()
    term = term.removeprefix("msg_")
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


# --- Subscriptions ---------------------------------------------------------------------------


class EventTypesField(forms.Field):
    """The subscription's event types as one line, comma-separated: easier to edit than the
    JSON list they are stored as."""

    widget = forms.TextInput(attrs={"size": 80})

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value

    def to_python(self, value) -> list[str]:
        if isinstance(value, list | tuple):
            return list(value)
        return [
            name.strip() for name in (value or "").replace("\n", ",").split(",") if name.strip()
        ]


class SubscriptionForm(forms.ModelForm):
    event_types = EventTypesField(
        help_text="Event types or patterns, comma-separated: DeploymentPromoted, Incident*, "
        "or * for every public event type."
    )

    class Meta:
        model = WebhookSubscription
        fields = ["event_types", "description", "enabled"]

    def clean_event_types(self) -> list[str]:
        # The service's own check, so that a bad pattern is a form error here rather than an
        # exception when the change is saved.
        try:
            return check_event_types(self.cleaned_data["event_types"])
        except ValidationError as exc:
            raise ValidationError(
                [message.removeprefix("event_types: ") for message in exc.messages]
            ) from None


def rotation_summary(subscription: WebhookSubscription, *, now: datetime) -> str:
    """What rotating `subscription`'s secret would do, said before it is done."""
    overlap = timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS)
    summary = (
        f"A new signing secret for {subscription.url}, shown once on the next page. The "
        f"current secret keeps signing beside it until about {format_moment(now + overlap)} "
        f"({format_duration(overlap.total_seconds())}), time for the subscriber to switch."
    )
    expires = subscription.previous_secret_expires
    if expires is not None and expires > now:
        # The model keeps one previous secret: the one a recent rotation replaced goes now.
        summary += (
            f" The secret before it, which an earlier rotation left signing until "
            f"{format_moment(expires)}, stops signing now."
        )
    return summary


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ObjectActionsAdmin):
    form = SubscriptionForm
    # At 1440 px beside the filters, in the platform's list styles: whether it is enabled, with
    # why not; how its deliveries go (the last success, since when they fail) with the link to
    # them; the URL clipped (whole in its tooltip), times free to wrap between date and time.
    list_display = [
        "short_url", "tenant", "event_types_list", "state", "deliveries", "created_cell",
    ]  # fmt: skip
    change_list_template = "admin/core/change_list.html"
    list_filter = ["enabled", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["url", "description"]
    # secret and previous_secret are in no list: see SECRET_FIELDS.
    fields = [
        "tenant", "url", "event_types", "description", "enabled", "disabled_reason",
        "failing_since", "last_success", "previous_secret_expires", "created", "updated",
        "deliveries_panel",
    ]  # fmt: skip
    # The URL is not editable here: changing it must pass subscriptions.check_url, and the API is
    # where a subscriber does that.
    readonly_fields = [
        "tenant", "url", "disabled_reason", "failing_since", "last_success",
        "previous_secret_expires", "created", "updated", "deliveries_panel",
    ]  # fmt: skip
    actions = ["recover_failed"]
    object_actions = ["rotate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Deleted ones are gone here too, though their rows may wait for a batch.
        return super().get_queryset(request).filter(deleted__isnull=True).defer(*SECRET_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Created through the API, which shows the new secret once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting cascades to every delivery and attempt, the history an operator comes here
        # for; disabling stops the traffic. Subscribers delete through the API.
        return False

    @admin.display(description="url", ordering="url")
    def short_url(self, subscription: WebhookSubscription) -> str:
        return clipped_cell(subscription.url, 80)

    @admin.display(description="state", ordering="enabled")
    def state(self, subscription: WebhookSubscription) -> str:
        """Enabled or disabled, and under it why it was disabled."""
        if subscription.enabled:
            return "Enabled"
        if not subscription.disabled_reason:
            return "Disabled"
        return under("Disabled", clipped_cell(subscription.disabled_reason, 60))

    @admin.display(description="deliveries", ordering="last_success")
    def deliveries(self, subscription: WebhookSubscription) -> str:
        """The last successful delivery, since when they fail if they do, and the link to them
        all."""
        lines = [
            format_html("last success {}", moment_cell(subscription.last_success))
            if subscription.last_success
            else "no success yet"
        ]
        if subscription.failing_since:
            lines.append(format_html("failing since {}", moment_cell(subscription.failing_since)))
        link = deliveries_url(subscription.pk)
        lines.append(format_html('<a href="{}">all deliveries</a>', link))
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    created_cell = moment_column("created", "created")

    @admin.display(description="event types")
    def event_types_list(self, subscription: WebhookSubscription) -> str:
        return ", ".join(subscription.event_types)

    @admin.display(description="latest deliveries")
    def deliveries_panel(self, subscription: WebhookSubscription) -> str:
        if subscription.pk is None:
            return "-"
        # Filtered by tenant too, so that the (tenant, subscription, created) index serves it.
        mine = WebhookDelivery.objects.filter(
            tenant_id=subscription.tenant_id, subscription=subscription
        )
        since = timezone.now() - RECOVER_WINDOW
        return render_to_string(
            "admin/integrations/webhooksubscription/deliveries.html",
            {
                "deliveries": mine.order_by("-created")[:LATEST_DELIVERIES],
                "limit": LATEST_DELIVERIES,
                "failed_recently": mine.filter(created__gte=since, state__in=FAILED).count(),
                "recover_days": RECOVER_WINDOW.days,
                "all_url": deliveries_url(subscription.pk),
            },
        )

    def save_model(self, request, obj, form, change) -> None:
        """Through the service, which decides on the stored row, locked (not on `obj`, onto
        which the form has written its values already: that would hide that `enabled` is being
        turned on), and writes only the changed columns, so that a rotation or the worker's
        health update committed meanwhile is not undone."""
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if changes:
            update_subscription(subscription=obj, **changes)

    @admin.action(description="Recover failed deliveries (last 7 days)", permissions=["change"])
    def recover_failed(self, request: HttpRequest, queryset: QuerySet) -> None:
        since = timezone.now() - RECOVER_WINDOW
        enabled = [s for s in queryset if s.enabled]
        resent = sum(self._recover(request, s, since) for s in enabled)
        self.message_user(
            request,
            f"Re-sent {resent} failed deliveries of {len(enabled)} subscription(s).",
            messages.SUCCESS,
        )
        skipped = len(queryset) - len(enabled)
        if skipped:
            # Sent to a disabled subscription, a delivery fails at once and is dead again.
            self.message_user(
                request,
                f"Skipped {skipped} disabled subscription(s): enable them, then recover.",
                messages.WARNING,
            )

    def _recover(self, request: HttpRequest, subscription: WebhookSubscription, since) -> int:
        resent = recover(subscription=subscription, since=since)
        if resent:
            self.log_change(request, subscription, f"Recovered {resent} failed deliveries")
        return resent

    # Rotating the signing secret: the API's service, and its new secret shown once.

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("integrations.change_webhooksubscription"))

    def rotate_preview(self, request: HttpRequest, subscription: WebhookSubscription) -> Preview:
        return Preview(
            title="Rotate the signing secret",
            summary=rotation_summary(subscription, now=timezone.now()),
            act="Rotate the secret",
        )

    @object_action(
        label="Rotate secret",
        permission="rotate",
        preview="rotate_preview",
        help="A new signing secret, shown once; the current one keeps signing for a while.",
    )
    def rotate(self, request: HttpRequest, subscription: WebhookSubscription) -> Done:
        try:
            secret, expires = rotate_secret(subscription=subscription)
        except WebhookSubscription.DoesNotExist:  # deleted through the API meanwhile
            raise Http404 from None
        self.log_change(request, subscription, "Rotated the signing secret")
        # The new secret answers the POST (Done.page), so it is in no URL, message or session.
        page = TemplateResponse(
            request,
            "admin/integrations/webhooksubscription/rotated.html",
            {
                **self.admin_site.each_context(request),
                "title": "New signing secret",
                "opts": self.opts,
                "subscription": subscription,
                "secret": secret,
                "previous_expires": format_moment(expires),
                "subscription_url": reverse(
                    "admin:integrations_webhooksubscription_change", args=[subscription.pk]
                ),
            },
        )
        return Done(
            "Rotated the signing secret: the previous one signs beside it until "
            f"{format_moment(expires)}.",
            page=page,
        )


# --- Deliveries ------------------------------------------------------------------------------


class EventTypeFilter(admin.SimpleListFilter):
    """The public event types, the only ones delivered: listing them from the catalog spares a
    DISTINCT over every delivery."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in events.public_types()]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@dataclass(frozen=True)
class TimelineRow:
    attempt: WebhookAttempt
    at: str
    after: str | None  # the wait since the previous attempt

    @property
    def outcome(self) -> str:
        if self.attempt.status_code is not None:
            return str(self.attempt.status_code)
        return "no answer"


def timeline(attempts: list[WebhookAttempt]) -> list[TimelineRow]:
    """The delivery's attempts in order, each with the wait since the one before."""
    rows: list[TimelineRow] = []
    previous: datetime | None = None
    for attempt in attempts:
        after = None if previous is None else format_wait((attempt.at - previous).total_seconds())
        rows.append(TimelineRow(attempt=attempt, at=format_moment(attempt.at), after=after))
        previous = attempt.at
    return rows


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    list_display = [
        "created_cell", "subscription_url", "event_type", "state_cell", "attempts_cell",
        "next_attempt_cell", "delivered_cell",
    ]  # fmt: skip
    list_display_links = ["created_cell"]
    # The platform's list styles (clipped values wrap anywhere, a quieter second line): seven
    # columns, some of two facts, fit a laptop's 1440 px beside the filters.
    change_list_template = "admin/core/change_list.html"
    list_filter = ["state", EventTypeFilter]
    list_select_related = ["tenant"]
    search_fields = ["=id", "=event_id"]  # see get_search_results
    search_help_text = "A delivery id, its webhook-id (msg_…), or an event id."
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": [
            "webhook_id", "tenant", "subscription", "event_link", "event_type", "state",
            "attempts", "round_attempts", "waited", "created", "last_attempt_at", "next_attempt_at",
            "delivered_at", "last_status", "last_error", "runtime_message", "trace_id", "span_id",
        ]}),
        ("Attempts", {"fields": ["attempts_timeline"]}),
        ("Payload", {"fields": ["payload_json"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)
    actions = ["redeliver_selected"]
    object_actions = ["redeliver"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The subscription's url, not the subscription: a row needs no secret.
        return super().get_queryset(request).annotate(subscription_url=F("subscription__url"))

    def get_search_results(self, request, queryset, search_term):
        """Ids only, answered by the primary key alone. The default `=id` compares text, and
        no index starts with event_id: both would read every delivery. A delivery's id derives
        from (subscription, event), so an event's deliveries have ids known in advance."""
        if not search_term.strip():
            return queryset, False
        found = parse_delivery_id(search_term)
        if found is None:
            return queryset.none(), False
        subscriptions = WebhookSubscription.objects.values_list("pk", flat=True)
        of_event = [delivery_id(pk, found) for pk in subscriptions.iterator()]
        return queryset.filter(pk__in=[found, *of_event]), False

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # The readonly FK shows str(subscription): load it without its secrets.
            obj.subscription = WebhookSubscription.objects.defer(*SECRET_FIELDS).get(
                pk=obj.subscription_id
            )
        return obj

    @admin.display(description="endpoint", ordering="subscription__url")
    def subscription_url(self, delivery: WithAnnotations[WebhookDelivery, SubscriptionUrl]) -> str:
        return under(clipped_cell(delivery.subscription_url, 60), str(delivery.tenant))

    @admin.display(description="state", ordering="state")
    def state_cell(self, delivery: WebhookDelivery) -> str:
        """The state, and under it the last reply's status code, when there was one."""
        state = delivery.get_state_display()
        if delivery.last_status is None:
            return state
        return under(state, f"last reply {delivery.last_status}")

    # Times that may wrap between date and time of day, under short headers (a list's headers
    # do not wrap).
    created_cell = moment_column("created", "created")
    next_attempt_cell = moment_column("next_attempt_at", "next attempt")
    delivered_cell = moment_column("delivered_at", "delivered")

    @admin.display(description="attempts", ordering="attempts")
    def attempts_cell(self, delivery: WebhookDelivery) -> str:
        """The attempts, and under them the round's wait on the receiver's word when there was
        one: a delivery that is late with few attempts spent was waiting, not failing."""
        if not delivery.waited_seconds:
            return str(delivery.attempts)
        return under(str(delivery.attempts), f"waited {format_duration(delivery.waited_seconds)}")

    @admin.display(description="waited this round")
    def waited(self, delivery: WebhookDelivery) -> str:
        """Time spent on a 429's Retry-After or an open circuit since the delivery was last sent
        from scratch, which spends no attempt; bounded by WEBHOOK_MAX_WAIT_SECONDS."""
        if not delivery.waited_seconds:
            return "-"
        return f"{format_duration(delivery.waited_seconds)}, no attempt spent"

    @admin.display(description="webhook-id")
    def webhook_id(self, delivery: WebhookDelivery) -> str:
        return delivery.webhook_id

    @admin.display(description="event")
    def event_link(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:core_event_change", args=[delivery.event_id])
        return format_html('<a href="{}">{}</a>', url, delivery.event_id)

    @admin.display(description="runtime message")
    def runtime_message(self, delivery: WebhookDelivery) -> str:
        """The worker's message for this delivery: when it is due next (next_attempt_at is
        empty when the runtime's backoff decides), and its failures with tracebacks."""
        message = Message.objects.filter(
            event_id=queued_event_id(delivery.pk),
            worker=WORKER,
            tenant_id=delivery.tenant_id,
        ).first()
        if message is None:
            return "-"
        url = reverse("admin:core_message_change", args=[message.pk])
        due = (
            f", due {format_moment(message.due_at)}"
            if message.state == Message.State.PENDING
            else ""
        )
        return format_html('<a href="{}">{}{}</a>', url, message.get_state_display(), due)

    @admin.display(description="attempts timeline")
    def attempts_timeline(self, delivery: WebhookDelivery) -> str:
        attempts = list(delivery.attempt_log.order_by("number"))
        return render_to_string(
            "admin/integrations/webhookdelivery/attempts.html", {"rows": timeline(attempts)}
        )

    @admin.display(description="payload")
    def payload_json(self, delivery: WebhookDelivery) -> str:
        return payload_html(delivery.payload)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Deliveries are otherwise read-only; sending one again is the one change an operator
        # makes to them, so it is granted by the model's change permission.
        return request.user.has_perm("integrations.change_webhookdelivery")

    @admin.action(description="Redeliver selected deliveries", permissions=["redeliver"])
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Listed first: under a state filter, the queryset would lose what was just re-sent.
        deliveries = list(queryset.select_related(None).defer("payload"))
        enabled = self._enabled_subscriptions(deliveries)
        resent = skipped = 0
        for delivery in deliveries:
            if delivery.state in FAILED and delivery.subscription_id not in enabled:
                skipped += 1
            else:
                resent += self._redeliver(request, delivery)
        text = f"{resent} re-sent, {len(deliveries) - resent - skipped} were not failed"
        if skipped:
            text += (
                f"; {skipped} skipped: their subscription is disabled (enable it, then redeliver)"
            )
        self.message_user(request, text, messages.WARNING if skipped else messages.SUCCESS)

    @staticmethod
    def _enabled_subscriptions(deliveries: list[WebhookDelivery]) -> set:
        # A delivery to a disabled subscription fails at once and is dead again: not sent.
        ids = {d.subscription_id for d in deliveries}
        return set(
            WebhookSubscription.objects.filter(pk__in=ids, enabled=True).values_list(
                "pk", flat=True
            )
        )

    def _redeliver(self, request: HttpRequest, delivery: WebhookDelivery) -> bool:
        resent = redeliver(delivery=delivery)
        if resent:
            self.log_change(request, delivery, "Redelivered")
        return resent

    @object_action(
        label="Redeliver", permission="redeliver", shown=lambda delivery: delivery.state in FAILED
    )
    def redeliver(self, request: HttpRequest, delivery: WebhookDelivery) -> Done:
        if not delivery.subscription.enabled:
            return Done(
                "Not re-sent: the subscription is disabled. Enable it, then redeliver.",
                messages.WARNING,
            )
        if self._redeliver(request, delivery):
            return Done(f"Re-sent {delivery.webhook_id}.")
        return Done(f"{delivery.webhook_id} is not failed: not re-sent.", messages.WARNING)
