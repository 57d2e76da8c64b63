"""The console's rate buckets and circuits: read-only (every process writes them, through
integrations.limits), with isolating and closing a circuit as object actions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from core.admin import ReadOnlyMixin
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from core.formats import format_moment
from integrations.limits import circuits
from integrations.limits.decisions import CLOSED, ISOLATED
from integrations.limits.models import Circuit, RateBucket, as_datetime

BUCKET_FIELDS = (
    "key", "tenant", "rate", "burst", "available_now", "theoretical_arrival", "blocked",
    "blocked_reason", "grants", "updated",
)  # fmt: skip


@admin.register(RateBucket)
class RateBucketAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "key", "tenant", "rate", "burst", "available_now", "blocked", "grants", "updated",
    ]  # fmt: skip
    search_fields = ["key"]
    list_select_related = ["tenant"]
    fields = BUCKET_FIELDS
    readonly_fields = BUCKET_FIELDS

    @admin.display(description="available now")
    def available_now(self, bucket: RateBucket) -> str:
        return f"{bucket.available(now=timezone.now()):.1f} of {bucket.burst}"

    @admin.display(description="blocked until")
    def blocked(self, bucket: RateBucket) -> str:
        until = bucket.blocked_until_at
        if until is None or until <= timezone.now():
            return "-"
        return format_moment(until)

    @admin.display(description="theoretical arrival time")
    def theoretical_arrival(self, bucket: RateBucket) -> str:
        at = as_datetime(bucket.tat)
        return format_moment(at) if at else "-"


CIRCUIT_FIELDS = (
    "key", "tenant", "state", "reason", "opened_at", "open_until", "closed_at", "trips",
    "window_start", "calls", "failures", "slow", "permits_left", "permits_given_at",
    "updated",
)  # fmt: skip


@admin.register(Circuit)
class CircuitAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    list_display = ["key", "tenant", "state", "trips", "open_until", "reason", "updated"]
    list_filter = ["state"]
    search_fields = ["key"]
    list_select_related = ["tenant"]
    fields = CIRCUIT_FIELDS
    readonly_fields = CIRCUIT_FIELDS
    object_actions = ["isolate", "close"]

    def has_isolate_permission(self, request: HttpRequest) -> bool:
        # The circuit is otherwise read-only: holding it open or closing it is the change an
        # operator makes, granted by the change permission.
        return request.user.has_perm("limits.change_circuit")

    has_close_permission = has_isolate_permission

    @object_action(
        label="Isolate",
        permission="isolate",
        shown=lambda circuit: circuit.state != ISOLATED,
        help="Hold the circuit open: no call goes through until it is closed.",
    )
    def isolate(self, request: HttpRequest, circuit: Circuit) -> Done:
        circuits.isolate(circuit.key, reason=f"isolated by {request.user.get_username()}")
        self.log_change(request, circuit, "Isolated")
        return Done(f"Isolated {circuit.key}: calls wait until it is closed.")

    @object_action(
        label="Close",
        permission="close",
        shown=lambda circuit: circuit.state != CLOSED,
        help="Let calls through again now, its trips forgotten.",
    )
    def close(self, request: HttpRequest, circuit: Circuit) -> Done:
        circuits.close(circuit.key)
        self.log_change(request, circuit, "Closed")
        return Done(f"Closed {circuit.key}.", messages.SUCCESS)
