"""The console's health board: every connection's state, its circuit, uptime over the last day,
its probes' latency as a chart, its last error; isolating or closing the connection's circuit
as object actions. Read-only otherwise (the worker writes it)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db.models import Count, Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html

from core import charts
from core.admin import ReadOnlyMixin, clipped_cell, first_line, moment_cell, moment_column, under
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from integrations.health.models import ConnectionHealth, ProbeResult
from integrations.limits import circuits, keys
from integrations.limits.decisions import CLOSED, ISOLATED
from integrations.limits.models import Circuit

CHART_WINDOWS = 60


def _circuit(health: ConnectionHealth) -> Circuit | None:
    return Circuit.objects.filter(key=keys.connection(health.connection_id)).first()


HEALTH_FIELDS = (
    "connection", "tenant", "state", "breaker", "uptime", "latency", "latency_chart",
    "window", "failures", "successes", "last_error", "changed", "outage_since",
    "outage_failure_id", "updated",
)  # fmt: skip


@admin.register(ConnectionHealth)
class ConnectionHealthAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    # At 1440 px beside the filters, in the platform's list styles: the provider under the
    # connection's name, the latest latency over its chart, the last error clipped (whole in
    # its tooltip and on the page), the time of the change free to wrap between date and time.
    list_display = [
        "connection_cell", "state", "breaker", "uptime", "latency_cell", "last_error_cell",
        "changed_cell",
    ]  # fmt: skip
    list_display_links = ["connection_cell"]
    change_list_template = "admin/core/change_list.html"
    list_filter = ["state"]
    list_select_related = ["connection"]
    search_fields = ["connection__name", "=connection__id"]
    fields = HEALTH_FIELDS
    readonly_fields = HEALTH_FIELDS
    object_actions = ["isolate", "close"]

    @admin.display(description="connection", ordering="connection__name")
    def connection_cell(self, health: ConnectionHealth) -> str:
        return under(health.connection.name, health.connection.provider)

    @admin.display(description="circuit")
    def breaker(self, health: ConnectionHealth) -> str:
        circuit = _circuit(health)
        if circuit is None or circuit.state == CLOSED:
            return CLOSED
        if circuit.open_until and circuit.state == "open":
            return format_html("open until {}", moment_cell(circuit.open_until))
        return circuit.state

    @admin.display(description="uptime (24 h)")
    def uptime(self, health: ConnectionHealth) -> str:
        since = timezone.now() - timedelta(hours=24)
        counted = ProbeResult.objects.filter(
            connection_id=health.connection_id, window__gte=since
        ).aggregate(total=Count("id"), ok=Count("id", filter=Q(ok=True)))
        if not counted["total"]:
            return "-"
        return f"{100 * counted['ok'] / counted['total']:.2f} %"

    @admin.display(description="latency")
    def latency(self, health: ConnectionHealth) -> str:
        return "-" if health.latency_ms is None else f"{health.latency_ms} ms"

    @admin.display(description=f"latency, last {CHART_WINDOWS} probes")
    def latency_cell(self, health: ConnectionHealth) -> str:
        """The latest probe's latency over the chart of the last ones."""
        chart = self.latency_chart(health)
        return self.latency(health) if chart == "-" else under(self.latency(health), chart)

    @admin.display(description="last error", ordering="last_error")
    def last_error_cell(self, health: ConnectionHealth) -> str:
        if not health.last_error:
            return "-"
        return clipped_cell(first_line(health.last_error, 200), 60)

    changed_cell = moment_column("changed", "changed")

    @admin.display(description=f"latency, last {CHART_WINDOWS} probes")
    def latency_chart(self, health: ConnectionHealth) -> str:
        recent = ProbeResult.objects.filter(connection_id=health.connection_id).order_by("-window")
        values = [
            None if ms is None else float(ms)
            for ms in recent.values_list("latency_ms", flat=True)[:CHART_WINDOWS]
        ][::-1]
        if not values:
            return "-"
        chart = charts.sparkline(values, width=180, height=24)
        label = "probe latency (ms), oldest first"
        return format_html(
            "{}",
            render_to_string("admin/core/sparkline.html", {"chart": chart, "label": label}),
        )

    def has_isolate_permission(self, request: HttpRequest) -> bool:
        # Holding a connection's circuit open, or closing it, is the one change an operator
        # makes here, granted by the circuit's change permission.
        return request.user.has_perm("limits.change_circuit")

    has_close_permission = has_isolate_permission

    @object_action(
        label="Isolate",
        permission="isolate",
        help="Hold the connection's circuit open: syncs wait, without spending attempts.",
        shown=lambda health: (c := _circuit(health)) is None or c.state != ISOLATED,
    )
    def isolate(self, request: HttpRequest, health: ConnectionHealth) -> Done:
        key = keys.connection(health.connection_id)
        reason = f"isolated by {request.user.get_username()}"
        circuits.isolate(key, reason=reason, tenant_id=health.tenant_id)
        self.log_change(request, health, "Isolated its circuit")
        return Done(f"Isolated {health.connection}: its calls wait until the circuit is closed.")

    @object_action(
        label="Close circuit",
        permission="close",
        help="Let the connection's calls through again now.",
        shown=lambda health: (c := _circuit(health)) is not None and c.state != CLOSED,
    )
    def close(self, request: HttpRequest, health: ConnectionHealth) -> Done:
        circuits.close(keys.connection(health.connection_id), tenant_id=health.tenant_id)
        self.log_change(request, health, "Closed its circuit")
        return Done(f"Closed the circuit of {health.connection}.")


@admin.register(ProbeResult)
class ProbeResultAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["window", "connection", "ok", "slow", "status_code", "latency_ms", "error"]
    list_filter = ["ok", "slow"]
    list_select_related = ["connection"]
    search_fields = ["=connection__id"]
    show_full_result_count = False
