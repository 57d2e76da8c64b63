"""The console's charts (core.charts' pieces; inline SVG drawn by the admin's templates).

A rule's preview: per instance, its values window by window, the rule's thresholds across them,
and the state it would have been in as a band of colour under the plot
(admin/alerting/alertrule/change_form.html). An SLO's: its error budget left and its burn rate
per alert window against its rows' thresholds, over its whole period, hour by hour
(admin/alerting/slo/change_form.html)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from core import charts
from core.formats import format_moment, format_value
from observability.alerting import slo
from observability.alerting.preview import InstancePreview, Preview
from observability.alerting.rules import AlertRule
from observability.charts import time_ticks

WIDTH, HEIGHT, STRIP = 960.0, 140.0, 14.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CHARTS = 6
STATE_COLORS = {
    "normal": "#59a14f",
    "pending": "#edc948",
    "firing": charts.ERROR_COLOR,
    "recovering": "#f28e2b",
    "nodata": "#bab0ac",
    "error": "#6b2d5c",
}
THRESHOLD_COLORS = {"critical": charts.ERROR_COLOR, "warning": "#f28e2b", "resolve": "#4e79a7"}


@dataclass(frozen=True)
class Threshold:
    name: str
    value: str
    y: float
    color: str


@dataclass(frozen=True)
class Band:
    x: float
    width: float
    color: str
    title: str


@dataclass(frozen=True)
class InstanceChart:
    title: str
    lines: list[charts.Line]
    dots: list[charts.Dot]
    thresholds: list[Threshold]
    bands: list[Band]
    ticks: list[charts.Tick]
    low_label: str
    high_label: str
    width: float = WIDTH
    height: float = HEIGHT
    strip: float = STRIP


def preview_charts(rule: AlertRule, preview: Preview) -> list[InstanceChart]:
    """One chart per instance of the preview, the first MAX_CHARTS."""
    return [_chart(rule, preview, instance) for instance in preview.instances[:MAX_CHARTS]]


def _chart(rule: AlertRule, preview: Preview, instance: InstancePreview) -> InstanceChart:
    size, slots = rule.size, preview.windows
    slot_of = {start: (start - preview.first) // size for start, _ in instance.values}
    values = {
        slot_of[start]: {"value": value}
        for start, value in instance.values
        if value is not None and math.isfinite(value)
    }
    lines = {"critical": rule.critical, "warning": rule.warning, "resolve": rule.resolve}
    drawn = {name: value for name, value in lines.items() if value is not None}
    low, high = charts.value_range(
        [v["value"] for v in values.values()] + list(drawn.values()), with_zero=False
    )
    axes = charts.Axes(slot_width=WIDTH / max(slots, 1), low=low, high=high, height=HEIGHT)
    color = {"value": charts.PALETTE[0]}
    dots = [
        charts.Dot("value", axes.center(slot), axes.y(v["value"]), charts.PALETTE[0])
        for slot, v in values.items()
        if slot - 1 not in values and slot + 1 not in values
    ]
    bands = [
        Band(
            x=axes.x((interval.start - preview.first) // size),
            width=round((interval.end - interval.start) / size * axes.slot_width, 2),
            color=STATE_COLORS.get(interval.state, "#bab0ac"),
            title=f"{interval.state} {interval.severity} from {format_moment(interval.start)} "
            f"to {format_moment(interval.end)}: {interval.reason}".replace("  ", " "),
        )
        for interval in instance.intervals
    ]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(instance.labels.items())) or "(no labels)"
    return InstanceChart(
        title=labels,
        lines=charts.lines(values, color, axes),
        dots=dots,
        thresholds=[
            Threshold(name, format_value(value), axes.y(value), THRESHOLD_COLORS[name])
            for name, value in drawn.items()
        ],
        bands=bands,
        ticks=time_ticks(preview.first, size, slots=slots, slot_width=axes.slot_width),
        low_label=format_value(low, 4),
        high_label=format_value(high, 4),
    )


# An SLO's charts: its error budget remaining and its burn rates, each instant a status
# (slo.status) over the stored windows, as the worker and the API compute it.

SLO_SPAN = timedelta(days=1)  # by default: the day before the SLO's newest minute
SLO_STEP = timedelta(minutes=15)  # a status every 15 minutes: 97 points across the day
# Over a whole period (the console's charts), a status every hour: 673 or 721 points, each at
# the end of an hour, so that the hourly windows the older part of a period is read from
# (windows.sli_windows) lie wholly inside every span ending there and count.
SLO_PERIOD_STEP = timedelta(hours=1)
DAY = timedelta(days=1)
ROW_COLORS = {"page": charts.ERROR_COLOR, "ticket": "#f28e2b"}
TICK_MIN_PX = 80.0  # between two date labels: "2026-11-30" is about 66 px


@dataclass(frozen=True)
class SloChart:
    title: str
    lines: list[charts.Line]
    dots: list[charts.Dot]
    legend: list[tuple[str, str]]  # (figure, colour)
    thresholds: list[Threshold]
    ticks: list[charts.Tick]
    low_label: str
    high_label: str
    instants: list[datetime]  # slot i is the status at instants[i]
    values: dict[int, dict[str, float]]  # by slot, the figures drawn
    width: float = WIDTH
    height: float = HEIGHT


def slo_instants(at: datetime, span: timedelta, step: timedelta) -> list[datetime]:
    """The instants the `span` ending at `at` is drawn at: every whole `step` (from the epoch)
    in it, and `at` itself last."""
    aligned = EPOCH + (at - EPOCH) // step * step
    count = span // step
    if aligned == at:
        return [at - (count - i) * step for i in range(count + 1)]
    return [aligned - (count - 1 - i) * step for i in range(count)] + [at]


def slo_charts(
    objective: slo.Slo,
    windows: Sequence[slo.SliWindow],
    at: datetime,
    *,
    span: timedelta = SLO_SPAN,
    step: timedelta = SLO_STEP,
) -> list[SloChart]:
    """The budget chart and the burn-rate chart of the `span` ending at `at`: `windows` must
    reach a period back from its start (windows.sli_windows)."""
    instants = slo_instants(at, span, step)
    # Each status is handed only the windows of the period before its instant (no span of it
    # reaches further): over a whole period that halves what each one indexes again.
    ordered = sorted(windows, key=lambda w: (w.start, w.end))
    starts = [w.start for w in ordered]
    statuses = [
        slo.status(
            objective,
            ordered[bisect_left(starts, moment - objective.period) : bisect_left(starts, moment)],
            moment,
        )
        for moment in instants
    ]
    return [
        _budget_chart(statuses, instants, step),
        _burn_chart(objective, statuses, instants, step),
    ]


def _budget_chart(
    statuses: list[slo.SloStatus], instants: list[datetime], step: timedelta
) -> SloChart:
    period = slo.window_label(statuses[-1].period.window)
    values = {
        i: {"budget left": s.budget_remaining * 100}
        for i, s in enumerate(statuses)
        if s.budget_remaining is not None and math.isfinite(s.budget_remaining)
    }
    # 0% is where the budget runs out: always on the axis, and drawn.
    exhausted = Threshold("exhausted", "0%", 0.0, charts.ERROR_COLOR)
    return _slo_chart(
        f"Error budget left over the rolling {period}, in %",
        values,
        {"budget left": charts.PALETTE[0]},
        [(exhausted, 0.0)],
        instants,
        step,
        unit="%",
    )


def _burn_chart(
    objective: slo.Slo, statuses: list[slo.SloStatus], instants: list[datetime], step: timedelta
) -> SloChart:
    used = sorted({w for r in objective.rows for w in (r.long_window, r.short_window)})
    labels = [slo.window_label(w) for w in used]
    colors = {label: charts.PALETTE[i % len(charts.PALETTE)] for i, label in enumerate(labels)}
    values: dict[int, dict[str, float]] = {}
    for i, status in enumerate(statuses):
        rates = status.burn_rates
        found = {k: v for k in labels if (v := rates.get(k)) is not None and math.isfinite(v)}
        if found:
            values[i] = found
    by_rate: dict[float, list[slo.AlertRow]] = {}
    for row in objective.rows:
        by_rate.setdefault(row.burn_rate, []).append(row)
    thresholds = [
        (
            Threshold(
                ", ".join(r.name for r in rows),
                f"{format_value(rate, 3)}x",
                0.0,
                ROW_COLORS["page" if any(r.severity == "page" for r in rows) else "ticket"],
            ),
            rate,
        )
        for rate, rows in sorted(by_rate.items())
    ]
    title = "Burn rate per alert window (x the budget's pace), against each row's threshold"
    if step >= timedelta(hours=1):
        # Older hours are read from hourly windows, which no span shorter than an hour holds.
        title += "; windows under an hour only over the last hours, from minute windows"
    return _slo_chart(title, values, colors, thresholds, instants, step, unit="x")


def _slo_chart(
    title: str,
    values: dict[int, dict[str, float]],
    colors: dict[str, str],
    thresholds: list[tuple[Threshold, float]],
    instants: list[datetime],
    step: timedelta,
    *,
    unit: str,
) -> SloChart:
    slots = len(instants)
    figures = [v for by_name in values.values() for v in by_name.values()]
    low, high = charts.value_range(figures + [value for _, value in thresholds], with_zero=True)
    axes = charts.Axes(slot_width=WIDTH / max(slots, 1), low=low, high=high, height=HEIGHT)
    dots = [
        charts.Dot(name, axes.center(slot), axes.y(value), colors[name])
        for slot, by_name in values.items()
        for name, value in by_name.items()
        if name not in values.get(slot - 1, {}) and name not in values.get(slot + 1, {})
    ]
    if instants[-1] - instants[0] >= 2 * DAY:
        ticks = day_ticks(instants, slot_width=axes.slot_width)
    else:
        ticks = time_ticks(instants[0], step, slots=slots, slot_width=axes.slot_width)
    return SloChart(
        title=title,
        lines=charts.lines(values, colors, axes),
        dots=dots,
        legend=list(colors.items()),
        thresholds=[replace(t, y=axes.y(value)) for t, value in thresholds],
        ticks=ticks,
        low_label=f"{format_value(low, 4)}{unit}",
        high_label=f"{format_value(high, 4)}{unit}",
        instants=instants,
        values=values,
    )


def day_ticks(instants: Sequence[datetime], *, slot_width: float) -> list[charts.Tick]:
    """Dates along a chart of days: at the slots that start a local day, every so many days
    that TICK_MIN_PX lies between two labels."""
    starts = [
        slot
        for slot, moment in enumerate(instants)
        if (local := timezone.localtime(moment)).hour == 0 and local.minute == 0
    ]
    per_day = max(DAY / (instants[1] - instants[0]), 1.0) if len(instants) > 1 else 1.0
    every = max(1, math.ceil(TICK_MIN_PX / (per_day * slot_width)))
    return [
        charts.Tick(
            x=round(slot * slot_width, 2), label=f"{timezone.localtime(instants[slot]):%Y-%m-%d}"
        )
        for slot in starts[::every]
    ]
