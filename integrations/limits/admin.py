"""The console's rate buckets and circuits: read-only (every process writes them, through
integrations.limits), with isolating and closing a circuit as object actions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from core.admin import ReadOnlyMixin, clipped_cell
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from core.formats import format_count, format_moment, format_value
from integrations.connections.models import IntegrationConnection, IntegrationCredential
from integrations.limits import circuits
from integrations.limits.decisions import CLOSED, ISOLATED
from integrations.limits.models import Circuit, RateBucket, as_datetime

BUCKET_FIELDS = (
    "key", "subject", "tenant", "rate_text", "burst", "available_now", "theoretical_arrival",
    "blocked", "blocked_reason", "grants", "updated",
)  # fmt: skip


def _ids(keys: Iterable[str], prefix: str) -> dict[uuid.UUID, str]:
    found = {}
    for key in keys:
        if key.startswith(prefix):
            with contextlib.suppress(ValueError):  # not an id: named by the key alone
                found[uuid.UUID(key.removeprefix(prefix))] = key
    return found


def subjects(keys: Iterable[str]) -> dict[str, str]:
    """What each key limits, in words: a key names a connection or a credential by its id only,
    which tells an operator nothing. Two queries for a whole list page."""
    keys = list(keys)
    named: dict[str, str] = {}
    connections = _ids(keys, "connection:")
    for pk, name in IntegrationConnection.objects.filter(pk__in=connections).values_list(
        "pk", "name"
    ):
        named[connections[pk]] = f"connection {name}"
    credentials = _ids(keys, "credential:")
    rows = IntegrationCredential.objects.filter(pk__in=credentials).values_list(
        "pk", "name", "connection__name"
    )
    for pk, name, connection in rows:
        named[credentials[pk]] = f"credential {name or '(unnamed)'} of {connection}"
    for key in keys:
        if key.startswith("host:"):
            named[key] = f"vendor host {key.removeprefix('host:')}, every tenant"
        elif key.startswith("tenant:") and ":host:" in key:
            named[key] = f"webhook endpoints on {key.split(':host:', 1)[1]}"
    return named


class KeyedAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    """A list of rows named by a limits key (buckets, circuits), each shown with what its key
    limits, in words. The platform's list styles (templates/admin/core/change_list.html): a
    clipped key wraps anywhere, its whole in the tooltip, so the list fits 1440 px."""

    change_list_template = "admin/core/change_list.html"
    list_display_links = ["key_cell"]
    search_fields = ["key"]
    search_help_text = "A key, or part of one: a connection's or credential's id, a host."
    list_select_related = ["tenant"]

    def get_changelist_instance(self, request: HttpRequest):
        """The page's subjects looked up at once, not a query per row: kept on the rows, which
        the list renders from the same evaluated queryset."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        named = subjects(row.key for row in rows)
        for row in rows:
            row.subject_text = named.get(row.key, "-")
        return changelist

    @admin.display(description="key", ordering="key")
    def key_cell(self, row: RateBucket | Circuit) -> str:
        return clipped_cell(row.key, 48)

    @admin.display(description="limits")
    def subject(self, row: RateBucket | Circuit) -> str:
        text = getattr(row, "subject_text", None)
        if text is None:  # the change page: one row
            text = subjects([row.key]).get(row.key, "-")
        return text


@admin.register(RateBucket)
class RateBucketAdmin(KeyedAdmin):
    list_display = [
        "key_cell", "subject", "tenant", "rate_text", "burst", "available_now", "blocked",
        "grants_text", "updated",
    ]  # fmt: skip
    show_full_result_count = False
    fields = BUCKET_FIELDS
    readonly_fields = BUCKET_FIELDS

    @admin.display(description="rate", ordering="rate")
    def rate_text(self, bucket: RateBucket) -> str:
        """Per second as stored, and per hour, which is how vendors state their limits (GitHub:
        5,000 an hour is 1.39 a second)."""
        return f"{format_value(bucket.rate, 3)}/s ({format_value(bucket.rate * 3600, 4)}/h)"

    @admin.display(description="grants", ordering="grants")
    def grants_text(self, bucket: RateBucket) -> str:
        return format_count(bucket.grants)

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
    "key", "subject", "tenant", "state", "reason", "opened_at", "open_until", "closed_at", "trips",
    "window_start", "calls", "failures", "slow", "permits_left", "permits_given_at",
    "updated",
)  # fmt: skip


@admin.register(Circuit)
class CircuitAdmin(KeyedAdmin):
    list_display = [
        "key_cell", "subject", "tenant", "state", "trips", "open_until", "reason_cell", "updated",
    ]  # fmt: skip
    list_filter = ["state"]
    fields = CIRCUIT_FIELDS
    readonly_fields = CIRCUIT_FIELDS
    object_actions = ["isolate", "close"]

    @admin.display(description="reason")
    def reason_cell(self, circuit: Circuit) -> str:
        return clipped_cell(circuit.reason, 60) if circuit.reason else "-"

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
