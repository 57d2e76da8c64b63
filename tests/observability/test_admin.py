"""The operator's console for telemetry: read-only lists, and a trace's waterfall."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from itertools import pairwise

import pytest
from django.urls import reverse

from core import services
from core.charts import value_range
from core.formats import format_moment, format_ns
from core.models import Event
from observability import charts as observability_charts
from observability import otlp, traces
from observability.admin import (
    clipped,
    finest_window,
    main_figure,
    match_log_records,
    window_figures,
)
from observability.charts import (
    histogram_buckets,
    series_chart,
    time_ticks,
    tree_order,
    waterfall,
)
from observability.models import (
    LogRecord,
    MetricPoint,
    MetricSeries,
    Span,
    TelemetryBatch,
    TelemetryCorrelation,
    TraceRecord,
)
from tests.helpers import drain_all
from tests.observability.test_metric_aggregation import T0 as AGGREGATION_T0
from tests.observability.test_metric_aggregation import add, at, histogram, run

T0 = time.time_ns()
MS = 1_000_000
TRACE = "5b8efff798038103d269b633813fc60c"
ROOT, CHILD_A, CHILD_B, GRANDCHILD = (
    "aaaaaaaaaaaaaaa1",
    "aaaaaaaaaaaaaaa2",
    "aaaaaaaaaaaaaaa3",
    "aaaaaaaaaaaaaaa4",
)


# Spans as an OTLP exporter sends them (tests/observability/test_ingest.py has the same).


def otlp_span(span_id, name, *, parent="", start_ms=0.0, end_ms=5.0, error=False, trace=TRACE):
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(T0 + int(start_ms * MS)),
        "endTimeUnixNano": str(T0 + int(end_ms * MS)),
        "status": {"code": 2, "message": "boom"} if error else {"code": 1},
        "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
    }


def otlp_batch(*spans, service="checkout") -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    return json.dumps(
        {
            "resourceSpans": [
                {"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}
            ]
        }
    ).encode()


def send(client, tenant, *spans, service="checkout"):
    key = services.issue_api_key(tenant=tenant)
    response = client.post(
        "/v1/traces",
        data=otlp_batch(*spans, service=service),
        content_type=otlp.JSON,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
    drain_all("TraceIngestionWorker")


# Spans as rows, for the geometry (never saved) and for pages that need no HTTP round trip.


def row(span_id, *, parent="", start_ms, end_ms, name=None, status=1, trace=TRACE):
    return Span(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        name=name or f"span {span_id[-1]}",
        service="checkout",
        start_ns=T0 + int(start_ms * MS),
        end_ns=T0 + int(end_ms * MS),
        status_code=status,
    )


def store(tenant, *spans: Span) -> TraceRecord:
    traces.project(tenant.id, [as_row(span) for span in spans])
    return TraceRecord.objects.get(tenant=tenant, trace_id=spans[0].trace_id)


def as_row(span: Span) -> traces.SpanRow:
    return traces.SpanRow(
        span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind, span.service,
        span.start_ns, span.end_ns, span.status_code, span.status_message, "{}", "{}",
        span.scope, "", "{}", "[]", "[]",
    )  # fmt: skip


def family() -> list[Span]:
    """A root, two children and a grandchild under the second child, in no particular order."""
    return [
        row(GRANDCHILD, parent=CHILD_B, start_ms=50, end_ms=60),
        row(CHILD_B, parent=ROOT, start_ms=40, end_ms=90),
        row(ROOT, start_ms=0, end_ms=100),
        row(CHILD_A, parent=ROOT, start_ms=10, end_ms=30),
    ]


def trace_page(admin_client, record: TraceRecord) -> str:
    response = admin_client.get(reverse("admin:observability_tracerecord_change", args=[record.pk]))
    assert response.status_code == 200
    return response.content.decode()


def bars(page: str) -> list[str]:
    return re.findall(r'<rect class="wf-bar[^"]*"[^>]*>', page)


def bar_of(page: str, span_id: str) -> str:
    return next(b for b in bars(page) if f'data-span-id="{span_id}"' in b)


# Who may see what.


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["tracerecord", "span", "telemetrybatch"])
def test_it_requires_a_staff_login(client, model):
    response = client.get(reverse(f"admin:observability_{model}_changelist"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_it_requires_a_staff_login_for_a_trace_page(client, tenant):
    record = store(tenant, *family())
    response = client.get(reverse("admin:observability_tracerecord_change", args=[record.pk]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", ["tracerecord", "span", "telemetrybatch"])
def test_it_renders_every_changelist(admin_client, client, tenant, model):
    send(client, tenant, otlp_span(ROOT, "GET /cart", end_ms=20))
    assert admin_client.get(reverse(f"admin:observability_{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", ["tracerecord", "span", "telemetrybatch"])
def test_it_allows_no_add_change_or_delete(admin_client, client, tenant, model):
    send(client, tenant, otlp_span(ROOT, "GET /cart", end_ms=20))
    obj = {"tracerecord": TraceRecord, "span": Span, "telemetrybatch": TelemetryBatch}[model]
    pk = obj.objects.get().pk

    assert admin_client.get(reverse(f"admin:observability_{model}_add")).status_code == 403
    assert (
        admin_client.get(reverse(f"admin:observability_{model}_delete", args=[pk])).status_code
        == 403
    )
    page = admin_client.get(reverse(f"admin:observability_{model}_change", args=[pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


# The trace list.


def test_it_lists_traces_with_duration_and_start_time(admin_client, tenant):
    store(tenant, *family())

    response = admin_client.get(reverse("admin:observability_tracerecord_changelist"))

    page = response.content.decode()
    assert TRACE in page and "span 1" in page
    assert "100 ms" in page  # duration
    date, time = format_ns(T0).split(" ", 1)  # the start may wrap between the two
    assert date in page and time in page


def test_it_lists_the_newest_trace_first(admin_client, tenant):
    store(tenant, row(ROOT, start_ms=0, end_ms=1, trace="1" * 32))
    store(tenant, row(ROOT, start_ms=500, end_ms=501, trace="2" * 32))

    response = admin_client.get(reverse("admin:observability_tracerecord_changelist"))

    assert [r.trace_id for r in response.context["cl"].result_list] == ["2" * 32, "1" * 32]


def test_it_filters_traces_by_status_and_finds_them_by_trace_id(admin_client, tenant):
    store(tenant, row(ROOT, start_ms=0, end_ms=1, trace="1" * 32, status=2))
    store(tenant, row(ROOT, start_ms=0, end_ms=1, trace="2" * 32))
    url = reverse("admin:observability_tracerecord_changelist")

    errors = admin_client.get(url, {"status": "error"}).context["cl"].result_list
    found = admin_client.get(url, {"q": "2" * 32}).context["cl"].result_list

    assert [r.trace_id for r in errors] == ["1" * 32]
    assert [r.trace_id for r in found] == ["2" * 32]


# The waterfall's geometry.


def test_it_orders_spans_as_a_tree_with_children_by_start_time():
    ordered = tree_order(family())

    assert [(s.span_id, depth) for s, depth in ordered] == [
        (ROOT, 0),
        (CHILD_A, 1),
        (CHILD_B, 1),
        (GRANDCHILD, 2),
    ]


def test_it_indents_and_stacks_rows_by_depth_and_order():
    rows = waterfall(family())

    assert [(r.span.span_id, r.depth, r.indent, r.y) for r in rows] == [
        (ROOT, 0, 0, 0),
        (CHILD_A, 1, 12, 20),
        (CHILD_B, 1, 12, 40),
        (GRANDCHILD, 2, 24, 60),
    ]


def test_it_scales_bars_to_the_trace_duration():
    rows = {r.span.span_id: r for r in waterfall(family(), chart_width=720)}

    assert (rows[ROOT].x, rows[ROOT].width) == (0, 720)
    assert (rows[CHILD_A].x, rows[CHILD_A].width) == (72, 144)
    assert (rows[CHILD_B].x, rows[CHILD_B].width) == (288, 360)
    assert (rows[GRANDCHILD].x, rows[GRANDCHILD].width) == (360, 72)
    assert (rows[CHILD_B].offset_ms, rows[CHILD_B].duration_ms) == (40, 50)


def test_it_scales_bars_to_the_bounds_it_is_given():
    spans = [row(ROOT, start_ms=0, end_ms=50)]

    [only] = waterfall(spans, start_ns=T0, end_ns=T0 + 200 * MS, chart_width=400)

    assert (only.x, only.width) == (0, 100)


def test_it_keeps_an_instantaneous_span_visible():
    rows = waterfall([row(ROOT, start_ms=0, end_ms=0)])

    assert (rows[0].x, rows[0].width) == (0, 1)


def test_it_keeps_a_span_that_ends_before_it_starts_on_the_axis():
    spans = [row(ROOT, start_ms=0, end_ms=10), row(CHILD_A, parent=ROOT, start_ms=20, end_ms=15)]

    rows = {r.span.span_id: r for r in waterfall(spans, chart_width=200)}

    assert (rows[CHILD_A].x, rows[CHILD_A].width, rows[CHILD_A].duration_ms) == (200, 1, 0)


def test_it_draws_a_span_whose_parent_is_missing_as_a_root():
    spans = [
        row(CHILD_A, parent="ffffffffffffffff", start_ms=5, end_ms=9),
        row(ROOT, start_ms=0, end_ms=10),
    ]

    assert [(s.span_id, d) for s, d in tree_order(spans)] == [(ROOT, 0), (CHILD_A, 0)]


def test_it_loses_no_span_of_a_parent_cycle():
    spans = [
        row(CHILD_A, parent=CHILD_B, start_ms=1, end_ms=2),
        row(CHILD_B, parent=CHILD_A, start_ms=0, end_ms=3),
        row(ROOT, parent=ROOT, start_ms=0, end_ms=4),
    ]

    ordered = [(s.span_id, d) for s, d in tree_order(spans)]

    assert ordered == [(ROOT, 0), (CHILD_B, 0), (CHILD_A, 1)]


def test_it_orders_a_deep_chain_without_recursion():
    parents = [""] + [f"{i:016x}" for i in range(2999)]
    chain = [row(f"{i:016x}", parent=parents[i], start_ms=i, end_ms=5000) for i in range(3000)]

    assert [d for _, d in tree_order(chain[::-1])] == list(range(3000))


# The trace page.


def test_it_draws_one_bar_per_span_on_the_trace_page(admin_client, client, tenant):
    send(
        client,
        tenant,
        otlp_span(ROOT, "GET /cart", end_ms=100),
        otlp_span(CHILD_A, "load cart", parent=ROOT, start_ms=10, end_ms=30),
        otlp_span(CHILD_B, "SELECT cart", parent=ROOT, start_ms=40, end_ms=90, error=True),
    )
    grandchild = otlp_span(GRANDCHILD, "read", parent=CHILD_B, start_ms=50, end_ms=60)
    send(client, tenant, grandchild, service="db")

    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    assert page.count('<svg class="waterfall"') == 1
    assert len(bars(page)) == 4
    assert [b for b in bars(page) if "wf-error" in b] == [bar_of(page, CHILD_B)]
    assert 'fill="#d32f2f"' in bar_of(page, CHILD_B)
    assert "GET /cart · checkout · 100 ms" in page
    assert "read · db · 10.0 ms" in page
    assert "0 ms</text>" in page and "100 ms</text>" in page  # the axis, 0 ms .. total
    assert re.search(r"<title>SELECT cart \(checkout\)\nspan aaaaaaaaaaaaaaa3, SERVER, error", page)
    assert "status message: boom" in page
    assert "{&quot;http.route&quot;:&quot;/cart&quot;}" in page  # attributes, compact


def test_it_places_bars_on_the_page_as_the_geometry_says(admin_client, tenant):
    record = store(tenant, *family())

    page = trace_page(admin_client, record)

    assert 'x="288.0" y="4" width="360.0"' in bar_of(page, CHILD_B)
    assert 'x="360.0" y="4" width="72.0"' in bar_of(page, GRANDCHILD)
    rows_in_order = re.findall(r'data-span-id="(\w+)"', page)
    assert rows_in_order == [ROOT, CHILD_A, CHILD_B, GRANDCHILD]


def test_it_lists_the_spans_in_a_table_below_the_waterfall(admin_client, tenant):
    record = store(tenant, *family())

    page = trace_page(admin_client, record)

    table = page[page.index('id="spans"') :]
    assert table.index("span 1") < table.index("span 2") < table.index("span 3")
    assert "+40.000 ms" in table and "50.000 ms" in table
    span = Span.objects.get(span_id=GRANDCHILD)
    assert reverse("admin:observability_span_change", args=[span.pk]) in table


def test_it_escapes_span_names_and_attributes(admin_client, client, tenant):
    evil = otlp_span(ROOT, "<script>alert(1)</script>", end_ms=10)
    evil["attributes"] = [{"key": "q", "value": {"stringValue": "<img src=x onerror=alert(2)>"}}]
    send(client, tenant, evil, service="<b>svc</b>")

    page = trace_page(admin_client, TraceRecord.objects.get())

    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page and "<b>svc" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def test_it_keeps_another_tenants_spans_out_of_the_waterfall(admin_client, tenant, other_tenant):
    ours = store(tenant, *family())
    theirs = store(
        other_tenant,
        row(ROOT, start_ms=0, end_ms=5, name="globex root"),
        row("bbbbbbbbbbbbbbb9", parent=ROOT, start_ms=1, end_ms=2, name="globex secret"),
    )

    page = trace_page(admin_client, ours)
    their_page = trace_page(admin_client, theirs)

    assert len(bars(page)) == 4
    assert "globex root" not in page and "globex secret" not in page
    assert len(bars(their_page)) == 2 and "span 4" not in their_page


def test_it_draws_at_most_the_cap_and_says_so(admin_client, tenant, monkeypatch):
    monkeypatch.setattr(observability_charts, "MAX_SPANS", 3)
    record = store(tenant, *family())

    page = trace_page(admin_client, record)

    assert len(bars(page)) == 3
    assert "This trace has 4 spans: only the first 3, by start time, are drawn." in page
    assert bar_of(page, ROOT).count('width="720.0"') == 1  # still scaled to the whole trace


# Spans and batches.


def test_it_links_a_span_to_its_trace_record(admin_client, tenant):
    record = store(tenant, *family())
    Span.objects.create(
        tenant=tenant, trace_id="9" * 32, span_id=ROOT, name="no record yet", start_ns=1, end_ns=2
    )

    page = admin_client.get(reverse("admin:observability_span_changelist")).content.decode()

    link = reverse("admin:observability_tracerecord_change", args=[record.pk])
    assert page.count(f'<a href="{link}">{TRACE}</a>') == 4
    assert "9" * 32 in page and "tracerecord/None" not in page


def test_it_filters_spans_by_status_and_finds_them_by_span_id(admin_client, tenant):
    store(
        tenant,
        row(ROOT, start_ms=0, end_ms=10),
        row(CHILD_A, parent=ROOT, start_ms=1, end_ms=2, status=2),
    )
    url = reverse("admin:observability_span_changelist")

    errors = admin_client.get(url, {"status_code": "2"}).context["cl"].result_list
    found = admin_client.get(url, {"q": ROOT}).context["cl"].result_list

    assert [s.span_id for s in errors] == [CHILD_A]
    assert [s.span_id for s in found] == [ROOT]


def test_it_shows_a_batchs_size_not_its_bytes(admin_client, client, tenant):
    send(client, tenant, otlp_span(ROOT, "payload-only-name", end_ms=20))
    batch = TelemetryBatch.objects.get()
    size = f"{len(bytes(batch.payload)):,} bytes"

    listing = admin_client.get(reverse("admin:observability_telemetrybatch_changelist"))
    detail = admin_client.get(reverse("admin:observability_telemetrybatch_change", args=[batch.pk]))

    for page in (listing.content.decode(), detail.content.decode()):
        assert size in page
        assert "payload-only-name" not in page  # the span's name is in the payload
    assert "payload" not in detail.context["adminform"].form.fields


# Metric series: rows as MetricAggregationWorker writes them, one per (series, window); the page's
# window is W0, and `ago` counts windows before it.

Kind = MetricPoint.Kind
W0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SIZES = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
KEY = "c" * 64


def series_row(ago=0, *, name="queue.size", kind=Kind.GAUGE, size="1m", key=KEY, **figures):
    start = W0 - ago * SIZES[size]
    figures.setdefault("points", 1)
    return MetricSeries(
        series_key=key,
        window=size,
        window_start=start,
        window_end=start + SIZES[size],
        name=name,
        kind=kind,
        temporality=figures.pop("temporality", 0),
        computed_at=start + SIZES[size],
        **figures,
    )


def store_series(tenant, *rows: MetricSeries) -> list[MetricSeries]:
    for series in rows:
        series.tenant = tenant
        series.save()
    return list(rows)


def gauge(ago=0, mean=5.0, spread=1.0, **fields):
    fields.setdefault("last", mean)
    return series_row(ago, mean=mean, min=mean - spread, max=mean + spread, **fields)


def series_page(admin_client, series: MetricSeries) -> str:
    url = reverse("admin:observability_metricseries_change", args=[series.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def chart_points(page: str) -> list[tuple[str, int]]:
    """(class, slot) of each window drawn on a series page."""
    found = re.findall(r'<g class="(mc-point[^"]*)" data-slot="(\d+)">', page)
    return [(css, int(slot)) for css, slot in found]


def tooltips(page: str) -> list[str]:
    """The chart's tooltips (not the document's own <title>)."""
    chart = page[page.index('<svg class="metric-chart"') :]
    return re.findall(r"<title>([^<]*)</title>", chart)


def series_list(admin_client, **params) -> list[MetricSeries]:
    url = reverse("admin:observability_metricseries_changelist")
    return list(admin_client.get(url, params).context["cl"].result_list)


# Who may see metric series.


def test_it_requires_a_staff_login_for_metric_series(client, tenant):
    [series] = store_series(tenant, gauge())

    for url in (
        reverse("admin:observability_metricseries_changelist"),
        reverse("admin:observability_metricseries_change", args=[series.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_it_refuses_metric_series_to_a_user_who_is_not_staff(client, tenant, django_user_model):
    [series] = store_series(tenant, gauge(name="not-for-you"))
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))

    listing = client.get(reverse("admin:observability_metricseries_changelist"))
    page = client.get(reverse("admin:observability_metricseries_change", args=[series.pk]))

    for response in (listing, page):
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
        assert "not-for-you" not in response.content.decode()


def test_it_allows_no_add_change_or_delete_of_a_metric_series(admin_client, tenant):
    [series] = store_series(tenant, gauge())
    delete = reverse("admin:observability_metricseries_delete", args=[series.pk])

    assert admin_client.get(reverse("admin:observability_metricseries_add")).status_code == 403
    assert admin_client.get(delete).status_code == 403
    assert 'name="_save"' not in series_page(admin_client, series)


# The list of metric series.


def test_it_lists_metric_series_newest_first_with_their_main_figure(admin_client, tenant):
    store_series(
        tenant,
        series_row(3, name="bytes.sent", kind=Kind.SUM, delta=1536.0, unit="By"),
        gauge(2, name="queue.size", mean=4.5, last=6.0),
        series_row(1, name="latency", kind=Kind.HISTOGRAM, count=1200, p95=87.5, unit="ms"),
        series_row(0, name="rpc.size", kind=Kind.SUMMARY, count=42, sum=8.0),
    )
    url = reverse("admin:observability_metricseries_changelist")

    page = admin_client.get(url).content.decode()

    names = [s.name for s in series_list(admin_client)]
    assert names == ["rpc.size", "latency", "queue.size", "bytes.sent"]
    assert "Δ 1,536 By" in page
    assert "mean 4.5, last 6" in page
    assert "count 1,200, p95 87.5 ms" in page
    assert "count 42" in page
    assert '<td class="field-window_start_time">2025-06-02 11:57:00 UTC</td>' in page
    assert '<td class="field-kind">Histogram</td>' in page
    assert '<td class="field-tenant nowrap">acme</td>' in page


def test_it_filters_metric_series_by_window_kind_and_tenant_and_finds_them_by_name(
    admin_client, tenant, other_tenant
):
    store_series(tenant, gauge(name="queue.size"), gauge(name="queue.size", size="5m"))
    store_series(tenant, series_row(name="requests", kind=Kind.SUM, delta=3.0, key="e" * 64))
    store_series(other_tenant, gauge(name="queue.size"))

    by_window = series_list(admin_client, window__exact="5m")
    by_kind = series_list(admin_client, kind__exact=str(Kind.SUM.value))
    by_tenant = series_list(admin_client, tenant__id__exact=str(other_tenant.pk))
    by_name = series_list(admin_client, q="queue")

    assert [(s.name, s.window) for s in by_window] == [("queue.size", "5m")]
    assert [s.name for s in by_kind] == ["requests"]
    assert [s.tenant_id for s in by_tenant] == [other_tenant.pk]
    assert sorted(s.name for s in by_name) == ["queue.size"] * 3


def test_it_states_the_main_figure_of_each_kind():
    assert main_figure(series_row(kind=Kind.SUM, delta=-2.5, unit="1")) == "Δ -2.5 1"
    assert main_figure(gauge(mean=0.25, last=None)) == "mean 0.25, last -"
    assert main_figure(series_row(kind=Kind.HISTOGRAM, count=3)) == "count 3, p95 -"
    assert main_figure(series_row(kind=Kind.EXPONENTIAL_HISTOGRAM, count=7)) == "count 7"


# A series' chart: the geometry.


def test_it_draws_deltas_of_a_sum_as_bars_from_zero():
    rows = [series_row(ago, kind=Kind.SUM, delta=d) for ago, d in [(3, 20.0), (1, -5.0), (0, 0)]]

    chart = series_chart(rows[-1], rows, slots=4, width=400, height=100)

    # low -5, high 20: zero is 80 px down; a slot is 100 px, its bar 70 px wide.
    bars = [(p.slot, p.bar.x, p.bar.y, p.bar.width, p.bar.height) for p in chart.points]
    assert bars == [(0, 15, 0, 70, 80), (2, 215, 80, 70, 20), (3, 315, 80, 70, 1)]
    assert chart.baseline == 80
    assert (chart.low_label, chart.high_label) == ("-5", "20")
    assert chart.lines == [] and all(p.dots == () for p in chart.points)
    assert [p.current for p in chart.points] == [False, False, True]


def test_it_draws_a_gauges_mean_inside_its_min_max_band():
    rows = [gauge(2, mean=10.0, spread=10.0), gauge(1, mean=5.0, spread=0.0), gauge(0, mean=15.0)]

    chart = series_chart(rows[-1], rows, slots=3, width=300, height=200)

    # low 0 (the first window's min), high 20 (its max): 10 px of height per unit.
    assert [(p.band.y, p.band.height) for p in chart.points] == [(0, 200), (150, 0), (40, 20)]
    assert [[(d.figure, d.cx, d.cy) for d in p.dots] for p in chart.points] == [
        [("mean", 50, 100)],
        [("mean", 150, 150)],
        [("mean", 250, 50)],
    ]
    assert [(line.figure, line.points) for line in chart.lines] == [
        ("mean", "50.0,100.0 150.0,150.0 250.0,50.0")
    ]
    assert [label for label, _ in chart.legend] == ["mean", "min-max"]


def test_it_draws_p50_p95_p99_lines_of_a_histogram():
    rows = [
        series_row(ago, kind=Kind.HISTOGRAM, count=10, p50=p50, p95=p50 * 2, p99=p50 * 4)
        for ago, p50 in [(1, 10.0), (0, 20.0)]
    ]

    chart = series_chart(rows[-1], rows, slots=2, width=200, height=80)

    # low 10 (the first p50), high 80 (the last p99).
    assert [(line.figure, line.points) for line in chart.lines] == [
        ("p50", "50.0,80.0 150.0,68.57"),
        ("p95", "50.0,68.57 150.0,45.71"),
        ("p99", "50.0,45.71 150.0,0.0"),
    ]
    assert [[d.figure for d in p.dots] for p in chart.points] == [["p50", "p95", "p99"]] * 2
    assert all(p.bar is None and p.band is None for p in chart.points)


@pytest.mark.parametrize("kind", [Kind.SUMMARY, Kind.EXPONENTIAL_HISTOGRAM])
def test_it_draws_the_count_of_summaries_and_exponential_histograms(kind):
    rows = [series_row(1, kind=kind, count=30, sum=2.0), series_row(0, kind=kind, count=10)]

    chart = series_chart(rows[-1], rows, slots=2, width=200, height=60)

    assert [(p.bar.y, p.bar.height) for p in chart.points] == [(0, 60), (40, 20)]
    assert [label for label, _ in chart.legend] == ["count"]
    assert "count 30, sum 2" in chart.points[0].tooltip


def test_it_breaks_a_line_at_a_missing_window_and_keeps_a_lone_window_as_a_dot():
    rows = [gauge(5, mean=1.0), gauge(4, mean=2.0), gauge(2, mean=3.0), gauge(0, mean=4.0)]

    chart = series_chart(rows[-1], rows, slots=6, width=600, height=100)

    assert [p.slot for p in chart.points] == [0, 1, 3, 5]
    assert [line.points.count(",") for line in chart.lines] == [2]  # windows 5 and 4 ago only
    assert all(len(p.dots) == 1 for p in chart.points)


def test_it_leaves_windows_outside_the_axis_off_the_chart():
    rows = [gauge(ago) for ago in (-1, 0, 1, 59, 60)]

    chart = series_chart(rows[1], rows)

    assert [p.slot for p in chart.points] == [0, 58, 59]
    assert chart.first_label == "2025-06-02 11:01:00 UTC"
    assert chart.last_label == "2025-06-02 12:00:00 UTC"


def test_it_keeps_a_flat_series_mid_height_and_nan_off_the_axis():
    rows = [gauge(1, mean=7.0, spread=0.0), gauge(0, mean=float("nan"), spread=float("inf"))]

    chart = series_chart(rows[-1], rows, slots=2, width=200, height=100)

    assert value_range([7.0, 7.0], with_zero=False) == pytest.approx((6.3, 7.7))
    assert value_range([], with_zero=False) == value_range([0.0], with_zero=True) == (0.0, 1.0)
    assert [[d.cy for d in p.dots] for p in chart.points] == [[50.0], []]
    assert chart.points[1].band is None and chart.points[1].current


# A series' page.


def test_it_draws_the_recent_windows_of_the_series_with_this_one_highlighted(
    admin_client, tenant, other_tenant
):
    ours = store_series(tenant, *(gauge(ago, mean=float(ago)) for ago in (0, 1, 2, 4, 59)))
    store_series(
        tenant,
        gauge(60, name="too old"),
        gauge(-1, name="newer than the page"),
        gauge(0, size="5m", name="another window size"),
        gauge(0, key="d" * 64, name="another series"),
    )
    store_series(other_tenant, gauge(0, name="another tenant"))

    page = series_page(admin_client, ours[0])

    assert page.count('<svg class="metric-chart"') == 1
    assert chart_points(page) == [
        ("mc-point", 0),
        ("mc-point", 55),
        ("mc-point", 57),
        ("mc-point", 58),
        ("mc-point mc-current", 59),
    ]
    assert page.count('class="mc-current-slot"') == 1
    assert "mean 0, min -1, max 1, last 0" in tooltips(page)[-1]
    assert tooltips(page)[0].startswith("2025-06-02 11:01:00 UTC (1m)\n")
    assert "11:01:00 UTC</text>" in page and "12:00:00 UTC</text>" in page  # the time axis
    assert ">60</text>" in page and ">-1</text>" in page  # the value axis: max 59 + 1, min 0 - 1
    others = ["too old", "newer than the page", "another window size", "another series"]
    for other in [*others, "another tenant"]:
        assert other not in page
    link = reverse("admin:observability_metricseries_change", args=[ours[1].pk])
    assert f'<a href="{link}">' in page


def test_it_draws_an_older_window_with_this_window_at_the_right(admin_client, tenant):
    rows = store_series(tenant, *(gauge(ago) for ago in (0, 1, 2)))

    page = series_page(admin_client, rows[1])

    assert chart_points(page) == [("mc-point", 58), ("mc-point mc-current", 59)]


def test_it_draws_each_kinds_figure_on_the_page(admin_client, tenant):
    [total] = store_series(tenant, series_row(key="1" * 64, kind=Kind.SUM, delta=3.0))
    [level] = store_series(tenant, gauge(key="2" * 64))
    percentiles = {"kind": Kind.HISTOGRAM, "p50": 1.0, "p95": 2.0, "p99": 3.0}
    *_, latency = store_series(
        tenant, *(series_row(a, key="3" * 64, **percentiles) for a in (1, 0))
    )
    summary_row = series_row(key="4" * 64, kind=Kind.SUMMARY, count=5, unit="By")
    [summary] = store_series(tenant, summary_row)

    sums, gauges, histograms, summaries = (
        series_page(admin_client, s) for s in (total, level, latency, summary)
    )

    assert sums.count('class="mc-bar"') == 1 and '<circle class="mc-dot"' not in sums
    assert gauges.count('class="mc-band"') == 1 and 'data-figure="mean"' in gauges
    assert "queue.size (1m): mean, min-max" in gauges
    for figure in ("p50", "p95", "p99"):
        assert histograms.count(f'<polyline class="mc-line" data-figure="{figure}"') == 1
        assert histograms.count(f'<circle class="mc-dot" data-figure="{figure}"') == 2
    assert summaries.count('class="mc-bar"') == 1
    assert "queue.size (1m): count</h2>" in summaries  # a count, not bytes


def test_it_draws_windows_rolled_up_from_real_points(admin_client, tenant):
    for minute in range(3):
        histogram(tenant, "http.duration", at(minute, seconds=10), [minute + 1, 2, 1, 0])
        add(tenant, "queue.size", at(minute, seconds=20), value=float(minute))
        run(tenant, "1m", AGGREGATION_T0 + timedelta(minutes=minute))
    latest = MetricSeries.objects.filter(window_start=AGGREGATION_T0 + timedelta(minutes=2))

    for series in latest:
        page = series_page(admin_client, series)

        assert [slot for _, slot in chart_points(page)] == [57, 58, 59]
        assert chart_points(page)[-1][0] == "mc-point mc-current"
    assert {s.name for s in latest} == {"http.duration", "queue.size"}


def test_it_escapes_metric_names_units_and_attributes(admin_client, tenant):
    evil = "<script>alert(1)</script>"
    [series] = store_series(
        tenant,
        gauge(name=evil, unit="<b>u</b>", attributes={"q": "<img src=x onerror=alert(2)>"}),
    )

    page = series_page(admin_client, series)
    listing = admin_client.get(reverse("admin:observability_metricseries_changelist"))

    for html in (page, listing.content.decode()):
        assert "<script>alert(1)" not in html and "<b>u</b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'aria-label="&lt;script&gt;alert(1)&lt;/script&gt;: mean' in page
    assert "mean 5 &lt;b&gt;u&lt;/b&gt;" in tooltips(page)[0]


# A trace's correlated telemetry: logs, metrics and traces sent as an exporter sends them, stored
# by ingestion and stitched to the trace by TelemetryCorrelationWorker, as in production.


def send_signal(client, tenant, signal: str, body: dict) -> None:
    key = services.issue_api_key(tenant=tenant)
    response = client.post(
        f"/v1/{signal}",
        data=json.dumps(body),
        content_type=otlp.JSON,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200 and response.json() == {}, response.content
    drain("TraceIngestionWorker")


def send_logs(client, tenant, *records: dict, service="checkout") -> None:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    resource_logs = {"resource": resource, "scopeLogs": [{"logRecords": list(records)}]}
    send_signal(client, tenant, "logs", {"resourceLogs": [resource_logs]})


def otlp_log(body, *, severity=9, text="INFO", offset_ms=0, span_id=CHILD_A) -> dict:
    return {
        "timeUnixNano": str(T0 + offset_ms * MS),
        "severityNumber": severity,
        "severityText": text,
        "body": body if isinstance(body, dict) else {"stringValue": body},
        "traceId": TRACE,
        "spanId": span_id,
    }


def send_exemplar(client, tenant, metric: str, value: float, *, span_id=CHILD_A) -> None:
    exemplar = {"timeUnixNano": str(T0), "asDouble": value, "traceId": TRACE, "spanId": span_id}
    point = {"timeUnixNano": str(T0 + MS), "asDouble": value, "exemplars": [exemplar]}
    gauge = {"name": metric, "unit": "ms", "gauge": {"dataPoints": [point]}}
    resource_metrics = {"scopeMetrics": [{"metrics": [gauge]}]}
    send_signal(client, tenant, "metrics", {"resourceMetrics": [resource_metrics]})


def drain(worker: str) -> None:
    drain_all(worker)


def correlate() -> None:
    drain("TelemetryCorrelationWorker")


def section(page: str, anchor: str) -> str:
    """The part of the trace page from `id="anchor"` to the next section or the end."""
    start = page.index(f'id="{anchor}"')
    ends = [
        page.find(f'id="{a}"', start + 1) for a in ("correlated-exemplars", "correlated-events")
    ]
    return page[start : min([e for e in ends if e > start] or [len(page)])]


@pytest.fixture
def correlated(client, tenant):
    """A trace of two spans (one failed) with two log records and an exemplar, correlated."""
    send(
        client,
        tenant,
        otlp_span(ROOT, "GET /cart", end_ms=100),
        otlp_span(CHILD_A, "charge card", parent=ROOT, start_ms=10, end_ms=30, error=True),
    )
    send_logs(
        client,
        tenant,
        otlp_log("cart loaded", offset_ms=1, span_id=ROOT),
        otlp_log("card declined", severity=17, text="ERROR", offset_ms=2),
    )
    send_exemplar(client, tenant, "http.server.request.duration", 42.5)
    correlate()
    return TelemetryCorrelation.objects.get(tenant=tenant, trace_id=TRACE)


def test_it_shows_the_correlated_telemetry_below_the_spans(admin_client, tenant, correlated):
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    assert page.index('id="waterfall"') < page.index('id="spans"') < page.index('id="correlation"')
    assert f"Last correlated {format_moment(correlated.updated)}" in page
    snapshot = reverse("admin:observability_telemetrycorrelation_change", args=[correlated.pk])
    assert f'<a href="{snapshot}">snapshot</a>' in page


def test_it_shows_the_log_records_of_the_trace_newest_first(admin_client, tenant, correlated):
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    logs = section(page, "correlated-logs")
    assert "Log records (2)</h3>" in logs and "By severity: ERROR 1, INFO 1" in logs
    assert logs.index("card declined") < logs.index("cart loaded")
    assert '<td class="wf-severity">ERROR</td>' in logs and CHILD_A in logs and ROOT in logs
    assert format_ns(T0 + 2 * MS) in logs
    assert logs.count("wf-row-error") == 1  # the ERROR record, not the INFO one


def test_it_shows_the_metric_exemplars_pointing_at_the_trace(admin_client, tenant, correlated):
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    exemplars = section(page, "correlated-exemplars")
    assert "Metric exemplars (1)</h3>" in exemplars
    assert "http.server.request.duration" in exemplars
    assert '<td class="wf-num">42.5</td>' in exemplars and "<td>ms</td>" in exemplars
    assert CHILD_A in exemplars and format_ns(T0) in exemplars


def test_it_shows_the_platform_events_that_named_the_trace(admin_client, tenant, correlated):
    named = Event.objects.filter(tenant=tenant, data__traceId=TRACE)

    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    events = section(page, "correlated-events")
    assert "Platform events (2)</h3>" in events
    assert "TraceRecorded" in events and "RuntimeSignalDetected" in events
    assert "<td>TraceIngestionWorker</td>" in events and "<td>error</td>" in events
    assert all(str(event.id) in events for event in named)
    assert all(format_moment(event.occurred_at) in events for event in named)


def test_it_says_how_many_of_the_trace_log_records_the_snapshot_holds(admin_client, client, tenant):
    send(client, tenant, otlp_span(ROOT, "GET /cart", end_ms=100))
    send_logs(client, tenant, *(otlp_log(f"line {n}", offset_ms=n) for n in range(25)))
    correlate()

    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    logs = section(page, "correlated-logs")
    assert "Log records (20 of 25 shown)</h3>" in logs
    assert "line 24" in logs and "line 4" not in logs  # the newest 20
    assert (
        "Metric exemplars (0)</h3>" in page and "No metric exemplar points at this trace." in page
    )


def test_it_says_when_a_trace_is_not_correlated_yet(admin_client, tenant):
    page = trace_page(admin_client, store(tenant, *family()))

    assert 'id="correlation"' in page
    assert "Not correlated yet" in page and 'id="correlated-logs"' not in page


def test_it_keeps_another_tenants_correlation_off_the_trace_page(
    admin_client, client, tenant, other_tenant
):
    send(client, other_tenant, otlp_span(ROOT, "GET /cart", end_ms=100))
    send_logs(client, other_tenant, otlp_log("globex secret"))
    correlate()
    ours = store(tenant, *family())  # the same trace id, never correlated

    page = trace_page(admin_client, ours)

    assert "Not correlated yet" in page and "globex secret" not in page


def test_it_escapes_correlated_log_bodies_and_services(admin_client, client, tenant):
    send(client, tenant, otlp_span(ROOT, "GET /cart", end_ms=100))
    structured = {
        "kvlistValue": {
            "values": [{"key": "html", "value": {"stringValue": "<img src=x onerror=alert(2)>"}}]
        }
    }
    send_logs(
        client,
        tenant,
        otlp_log("<script>alert(1)</script>", offset_ms=1),
        otlp_log(structured, offset_ms=2),
        service="<b>svc</b>",
    )
    correlate()

    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    logs = section(page, "correlated-logs")
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>svc" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in logs
    assert "&lt;img src=x onerror=alert(2)&gt;" in logs
    assert "&lt;b&gt;svc&lt;/b&gt;" in logs


# On call, every id on a trace's page leads somewhere: a log record to its page, an exemplar to
# the metric window of its point, a platform event to its page, a span id to its span.


def span_link(tenant, span_id: str) -> str:
    span = Span.objects.get(tenant=tenant, trace_id=TRACE, span_id=span_id)
    return reverse("admin:observability_span_change", args=[span.pk])


def window_of(moment_ns: int, size: str) -> datetime:
    """The start of the `size` window that holds `moment_ns`."""
    seconds = int(SIZES[size].total_seconds())
    return datetime.fromtimestamp(moment_ns // 1_000_000_000 // seconds * seconds, tz=UTC)


def test_it_shows_each_span_id_beside_its_name_below_the_waterfall(admin_client, tenant):
    record = store(tenant, *family())

    spans = trace_page(admin_client, record).split('id="spans"')[1]

    for span_id in (ROOT, CHILD_A, CHILD_B, GRANDCHILD):
        assert f'<span class="wf-span-id">{span_id}</span>' in spans
        assert f'href="{span_link(tenant, span_id)}"' in spans


def test_it_links_each_correlated_log_record_to_its_page_and_its_span(
    admin_client, tenant, correlated
):
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    logs = section(page, "correlated-logs")
    for body in ("card declined", "cart loaded"):
        record = LogRecord.objects.get(tenant=tenant, body=body)
        link = reverse("admin:observability_logrecord_change", args=[record.pk])
        row = logs[: logs.index(body)].rsplit("<tr", 1)[1]
        assert f'<a href="{link}" title="The log record">{format_ns(record.time_ns)}</a>' in row
        assert f'<a href="{span_link(tenant, record.span_id)}" title="The span">' in row
    everything = reverse("admin:observability_logrecord_changelist") + f"?traceId={TRACE}"
    assert f'href="{everything}"' in logs


def test_it_links_each_log_record_of_the_snapshot_to_its_own_even_when_alike(
    admin_client, client, tenant
):
    send(client, tenant, otlp_span(ROOT, "GET /cart", end_ms=100))
    send_logs(client, tenant, otlp_log("retry 1", offset_ms=1), otlp_log("retry 2", offset_ms=1))
    correlate()

    logs = section(
        trace_page(admin_client, TraceRecord.objects.get(tenant=tenant)), "correlated-logs"
    )

    records = LogRecord.objects.filter(tenant=tenant)
    links = {reverse("admin:observability_logrecord_change", args=[r.pk]) for r in records}
    assert set(re.findall(r'<a href="([^"]+)" title="The log record">', logs)) == links


def test_it_matches_snapshot_log_entries_to_stored_records_once_each():
    entries = [
        {"timeUnixNano": 5, "spanId": "a", "severityNumber": 9, "service": "s"},
        {"timeUnixNano": 5, "spanId": "a", "severityNumber": 9, "service": "s"},
        {"timeUnixNano": 5, "spanId": "a", "severityNumber": 9, "service": "s"},
        {"timeUnixNano": 4, "spanId": "", "severityNumber": 0, "service": ""},
    ]
    rows = [(11, 5, 0, "a", 9, "s"), (12, 5, 0, "a", 9, "s"), (13, 0, 4, "", 0, "")]

    assert match_log_records(entries, rows) == [11, 12, None, 13]


def test_it_links_an_exemplar_to_the_finest_metric_window_of_its_point(
    admin_client, tenant, correlated
):
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))
    assert 'title="Not rolled up into a window yet">http.server.request.duration' in page

    point_ns = T0 + MS  # send_exemplar's point
    for size in ("5m", "1m"):
        run(tenant, size, window_of(point_ns, size))
    page = trace_page(admin_client, TraceRecord.objects.get(tenant=tenant))

    window = MetricSeries.objects.get(tenant=tenant, window="1m")
    link = reverse("admin:observability_metricseries_change", args=[window.pk])
    exemplars = section(page, "correlated-exemplars")
    assert f'<a href="{link}" title="The metric window of its point">' in exemplars
    assert f'<a href="{span_link(tenant, CHILD_A)}" title="The span">' in exemplars


def test_it_takes_the_smallest_window_of_the_series_that_holds_the_moment():
    start = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    windows = [
        (1, "k", "1h", start, start + SIZES["1h"]),
        (2, "k", "5m", start, start + SIZES["5m"]),
        (3, "other", "1m", start, start + SIZES["1m"]),
        (4, "k", "1m", start + SIZES["1m"], start + 2 * SIZES["1m"]),
    ]

    assert finest_window(windows, "k", start + timedelta(seconds=30)) == 2
    assert finest_window(windows, "k", start + timedelta(seconds=90)) == 4
    assert finest_window(windows, "k", start + SIZES["1h"]) is None


def test_it_links_each_platform_event_to_its_page_while_it_is_stored(
    admin_client, tenant, correlated
):
    recorded = Event.objects.get(tenant=tenant, type="TraceRecorded")
    signal = Event.objects.get(tenant=tenant, type="RuntimeSignalDetected")
    gone = str(signal.pk)
    signal.delete()  # retention: the correlation outlives it

    events = section(
        trace_page(admin_client, TraceRecord.objects.get(tenant=tenant)), "correlated-events"
    )

    link = reverse("admin:core_event_change", args=[recorded.pk])
    assert f'<a href="{link}" title="The event">TraceRecorded</a>' in events
    assert 'title="No longer in the event store (retention)">RuntimeSignalDetected' in events
    assert gone in events  # its id is still said


def test_it_lists_a_spans_own_log_records_and_links_its_parent(admin_client, tenant, correlated):
    span = Span.objects.get(tenant=tenant, span_id=CHILD_A)

    page = admin_client.get(reverse("admin:observability_span_change", args=[span.pk]))

    html = page.content.decode()
    declined = LogRecord.objects.get(tenant=tenant, body="card declined")
    assert reverse("admin:observability_logrecord_change", args=[declined.pk]) in html
    assert "card declined" in html and "cart loaded" not in html  # the root's record
    assert f'<a href="{span_link(tenant, ROOT)}">{ROOT}</a>' in html  # its parent


# The correlations themselves.


def correlation_list(admin_client, **params) -> list[TelemetryCorrelation]:
    url = reverse("admin:observability_telemetrycorrelation_changelist")
    return list(admin_client.get(url, params).context["cl"].result_list)


def test_it_lists_correlations_with_their_counts_and_a_link_to_the_trace(
    admin_client, tenant, correlated
):
    services.publish(tenant=tenant, type="FeedbackItemCreated", data={"traceId": "9" * 32})
    correlate()  # a trace named by feedback, with no span stored

    page = admin_client.get(reverse("admin:observability_telemetrycorrelation_changelist"))

    html = page.content.decode()
    record = TraceRecord.objects.get(tenant=tenant, trace_id=TRACE)
    link = reverse("admin:observability_tracerecord_change", args=[record.pk])
    assert f'<a href="{link}">{TRACE}</a>' in html and "</a></a>" not in html
    assert "9" * 32 in html and "tracerecord/None" not in html
    snapshot = reverse("admin:observability_telemetrycorrelation_change", args=[correlated.pk])
    assert f'<a href="{snapshot}">' in html
    assert '<td class="field-log_count">2</td>' in html
    assert '<td class="field-exemplar_count">1</td>' in html
    assert '<td class="field-event_count">2</td>' in html
    assert [r.trace_id for r in page.context["cl"].result_list] == ["9" * 32, TRACE]


def test_it_filters_correlations_by_tenant_and_finds_them_by_exact_trace_id(
    admin_client, tenant, other_tenant, correlated
):
    services.publish(tenant=other_tenant, type="FeedbackItemCreated", data={"traceId": TRACE})
    services.publish(tenant=tenant, type="FeedbackItemCreated", data={"traceId": "9" * 32})
    correlate()

    by_tenant = correlation_list(admin_client, tenant__id__exact=str(other_tenant.pk))
    by_id = correlation_list(admin_client, q=TRACE)
    by_part = correlation_list(admin_client, q=TRACE[:8])

    assert [(r.tenant_id, r.trace_id) for r in by_tenant] == [(other_tenant.pk, TRACE)]
    assert sorted(r.tenant_id for r in by_id) == sorted([tenant.pk, other_tenant.pk])
    assert by_part == []


def test_it_shows_a_correlation_read_only(admin_client, correlated):
    url = reverse("admin:observability_telemetrycorrelation_change", args=[correlated.pk])
    delete = reverse("admin:observability_telemetrycorrelation_delete", args=[correlated.pk])

    page = admin_client.get(url)

    assert page.status_code == 200
    assert "card declined" in page.content.decode() and 'name="_save"' not in page.content.decode()
    add = reverse("admin:observability_telemetrycorrelation_add")
    assert admin_client.get(add).status_code == 403
    assert admin_client.get(delete).status_code == 403


def test_it_refuses_correlations_to_anyone_but_staff(client, correlated, django_user_model):
    urls = [
        reverse("admin:observability_telemetrycorrelation_changelist"),
        reverse("admin:observability_telemetrycorrelation_change", args=[correlated.pk]),
    ]
    anonymous = [client.get(url) for url in urls]
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    not_staff = [client.get(url) for url in urls]

    for response in anonymous + not_staff:
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
        assert "card declined" not in response.content.decode()


# A metric window's own figures, distribution and exemplars.


def test_it_links_a_windows_exemplar_trace_ids_to_their_traces_of_its_tenant(
    admin_client, tenant, other_tenant
):
    store(tenant, *family())
    store(other_tenant, row(ROOT, start_ms=0, end_ms=1, trace="9" * 32))
    exemplars = [
        {"traceId": TRACE, "spanId": CHILD_A, "value": 42.5, "timeUnixNano": T0},
        {"traceId": "9" * 32, "spanId": ROOT, "value": 7.0, "attributes": {"k": "v"}},
    ]
    [series] = store_series(tenant, gauge(unit="ms", exemplars=exemplars))

    page = series_page(admin_client, series)

    table = page.split('id="exemplars"')[1].split("</table>")[0]
    ours = TraceRecord.objects.get(tenant=tenant)
    trace_link = reverse("admin:observability_tracerecord_change", args=[ours.pk])
    assert f'<a href="{trace_link}" title="The trace">{TRACE}</a>' in table
    assert f'<a href="{span_link(tenant, CHILD_A)}" title="The span">{CHILD_A}</a>' in table
    assert f'<td class="wf-id">{"9" * 32}</td>' in table  # another tenant's trace: no link
    assert "42.5 ms" in table and format_ns(T0) in table and "{&quot;k&quot;:" in table


def test_it_shows_a_histograms_buckets_as_ranges_with_counts_and_a_bar_chart(admin_client, tenant):
    buckets = {"bounds": [10.0, 50.0, 1000.0], "counts": [1, 5, 4, 0]}
    histogram_row = series_row(kind=Kind.HISTOGRAM, count=10, sum=300.0, buckets=buckets)
    [series] = store_series(tenant, histogram_row)

    page = series_page(admin_client, series)

    table = page.split('id="buckets"')[1].split("</table>")[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    assert cells == [
        "(-∞, 10]", "1", "10.0%",
        "(10, 50]", "5", "50.0%",
        "(50, 1000]", "4", "40.0%",
        "(1000, +∞)", "0", "0.0%",
    ]  # fmt: skip
    chart = page.split('<svg class="bucket-chart"')[1].split("</svg>")[0]
    assert chart.count('class="bk-bar"') == 4
    assert "<title>(10, 50]: 5 (50.0%)</title>" in chart
    assert "&quot;bounds&quot;" not in page  # not the raw lists


def test_it_draws_bucket_bars_in_proportion_to_their_counts():
    buckets = histogram_buckets({"bounds": [1, 2.5], "counts": [2, 4, 0]}, height=80)

    assert [b.range for b in buckets] == ["(-∞, 1]", "(1, 2.5]", "(2.5, +∞)"]
    assert [b.bar.height for b in buckets] == [40, 80, 1]  # an empty bucket keeps a hairline
    assert [b.bar.x for b in buckets] == sorted(b.bar.x for b in buckets)
    assert histogram_buckets({"bounds": [1], "counts": [1, 2, 3]}) == []  # do not match
    assert histogram_buckets({"quantiles": [[0.5, 1.0]]}) == histogram_buckets(None) == []


def test_it_shows_a_summarys_quantiles(admin_client, tenant):
    quantiles = {"quantiles": [[0.5, 1.5], [0.99, 9.0]]}
    summary = series_row(kind=Kind.SUMMARY, count=4, sum=8.0, unit="s", buckets=quantiles)
    [series] = store_series(tenant, summary)

    table = series_page(admin_client, series).split('id="quantiles"')[1].split("</table>")[0]

    assert re.findall(r"<td[^>]*>([^<]*)</td>", table) == ["p50", "1.5 s", "p99", "9 s"]


def test_it_shows_min_max_and_mean_where_the_points_sent_them(admin_client, tenant):
    sent = series_row(kind=Kind.HISTOGRAM, count=4, sum=10.0, min=0.5, max=6.0, unit="ms")
    unsent = series_row(kind=Kind.HISTOGRAM, count=4, sum=10.0, key="d" * 64, unit="ms")
    store_series(tenant, sent, unsent)

    with_them = window_figures(sent)
    without = window_figures(unsent)

    assert ("min", "0.5 ms") in with_them[0] and ("max", "6 ms") in with_them[0]
    assert ("mean", "2.5 ms") in with_them[0] and ("count", "4") in with_them[0]
    assert ("mean", "2.5 ms") in without[0] and without[1] == ["min", "max", "p50", "p95", "p99"]
    page = series_page(admin_client, unsent)
    assert "Not in this window: min, max, p50, p95, p99 (the points did not send them)" in page
    assert '<th scope="row">mean</th><td class="wf-num">2.5 ms</td>' in page


def test_it_labels_the_time_axis_at_round_steps_of_its_windows():
    first = datetime(2025, 6, 2, 11, 1, tzinfo=UTC)

    ticks = time_ticks(first, timedelta(minutes=1), slots=60, slot_width=14)
    hours = time_ticks(first.replace(minute=0), timedelta(hours=1), slots=60, slot_width=14)

    assert [t.label for t in ticks] == [
        "11:10:00", "11:20:00", "11:30:00", "11:40:00", "11:50:00", "12:00:00",
    ]  # fmt: skip
    assert [t.x for t in ticks] == [9 * 14 + n * 140 for n in range(6)]
    assert {t.label for t in hours} == {"00:00:00", "06:00:00", "12:00:00", "18:00:00"}


def test_it_writes_the_windows_figures_beside_the_chart_apart_from_each_other(admin_client, tenant):
    percentiles = [(0.0, 0.0, 100.0), (50.0, 50.5, 51.0)]
    rows = [
        series_row(ago, kind=Kind.HISTOGRAM, count=9, p50=p50, p95=p95, p99=p99, unit="ms")
        for ago, (p50, p95, p99) in zip((1, 0), percentiles, strict=True)
    ]

    chart = series_chart(rows[-1], rows, slots=2, width=200, height=100)

    assert [label.text for label in chart.values] == ["p50 50 ms", "p95 50.5 ms", "p99 51 ms"]
    ys = sorted(label.y for label in chart.values)
    assert all(b - a >= 13 for a, b in pairwise(ys))  # three values a pixel apart, readable
    assert [label.value_y for label in chart.values] == [50.0, 49.5, 49.0]  # their leaders
    page = series_page(admin_client, store_series(tenant, *rows)[-1])
    assert page.count('<text class="mc-value-label"') == 3 and ">p95 50.5 ms</text>" in page


# Log records: a list with GET /api/logs' filters, each a link to its page and its trace.

LOGS = reverse("admin:observability_logrecord_changelist")
NOW_NS = time.time_ns()
MINUTE_NS = 60 * 10**9
OTHER_TRACE = "2" * 32


def log(tenant, body, *, minutes_ago=0, severity=9, service="checkout", trace_id="", span_id=""):
    return LogRecord.objects.create(
        tenant=tenant,
        record_key=f"{LogRecord.objects.count():064d}",
        time_ns=NOW_NS - minutes_ago * MINUTE_NS,
        severity_number=severity,
        body=body,
        service=service,
        resource={"service.name": service},
        trace_id=trace_id,
        span_id=span_id,
    )


@pytest.fixture
def day_of_logs(tenant):
    log(tenant, "cart loaded", minutes_ago=1, trace_id=TRACE, span_id=ROOT)
    log(tenant, "Payment DECLINED", minutes_ago=2, severity=17, trace_id=TRACE, span_id=CHILD_A)
    log(tenant, {"event": "retry", "reason": "Timeout"}, minutes_ago=30, severity=13)
    log(tenant, "disk full", minutes_ago=90, severity=21, service="billing", trace_id=OTHER_TRACE)
    log(tenant, "cache warmed", minutes_ago=600, severity=5, service="billing")


def listed(admin_client, **params) -> list:
    response = admin_client.get(LOGS, params)
    assert response.status_code == 200
    return [record.body for record in response.context["cl"].result_list]


def test_it_requires_a_staff_login_for_log_records(client, tenant, day_of_logs):
    record = LogRecord.objects.first()
    for url in (LOGS, reverse("admin:observability_logrecord_change", args=[record.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_it_allows_no_add_change_or_delete_of_a_log_record(admin_client, tenant, day_of_logs):
    record = LogRecord.objects.first()
    page = admin_client.get(reverse("admin:observability_logrecord_change", args=[record.pk]))
    delete = reverse("admin:observability_logrecord_delete", args=[record.pk])

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.get(reverse("admin:observability_logrecord_add")).status_code == 403
    assert admin_client.get(delete).status_code == 403


def test_it_lists_log_records_newest_first_each_linking_to_its_trace(
    admin_client, tenant, day_of_logs
):
    record = store(tenant, *family())

    page = admin_client.get(LOGS).content.decode()

    assert listed(admin_client) == [
        "cart loaded",
        "Payment DECLINED",
        {"event": "retry", "reason": "Timeout"},
        "disk full",
        "cache warmed",
    ]
    trace_link = reverse("admin:observability_tracerecord_change", args=[record.pk])
    assert page.count(f'<a href="{trace_link}">{TRACE}</a>') == 2
    assert OTHER_TRACE in page and "tracerecord/None" not in page  # not ingested: no link
    declined = LogRecord.objects.get(body="Payment DECLINED")
    assert reverse("admin:observability_logrecord_change", args=[declined.pk]) in page
    assert '<span class="severity-error" title="SeverityNumber 17">ERROR</span>' in page


@pytest.mark.parametrize(
    "query",
    [
        {"traceId": TRACE.upper()},
        {"service": "billing"},
        {"severity": "WARN"},
        {"severity": "13"},
        {"since": "1h"},
        {"q": "timeout"},
        {"q": "declined", "traceId": TRACE, "severity": "ERROR", "since": "1h"},
    ],
)
def test_it_filters_log_records_as_get_api_logs_does(
    admin_client, client, tenant, day_of_logs, query
):
    key = services.issue_api_key(tenant=tenant)
    api = client.get("/api/logs", query, headers={"Authorization": f"Bearer {key}"})

    assert api.status_code == 200
    assert listed(admin_client, **query) == [r["body"] for r in api.json()["results"]]
    assert 0 < len(listed(admin_client, **query)) < 5


def test_it_says_an_invalid_filter_and_lists_nothing(admin_client, tenant, day_of_logs):
    response = admin_client.get(LOGS, {"traceId": "not-a-trace", "severity": "LOUD"}, follow=True)

    texts = [str(m) for m in response.context["messages"]]
    assert [t.split(":")[0] for t in texts] == ["traceId", "severity"]
    assert list(response.context["cl"].result_list) == []


def test_it_keeps_the_tenant_filter_beside_the_apis_filters(
    admin_client, tenant, other_tenant, day_of_logs
):
    log(other_tenant, "globex disk full", service="billing")
    mine = {"tenant__id__exact": str(tenant.pk), "service": "billing"}

    page = admin_client.get(LOGS, mine).content.decode()

    assert listed(admin_client, **mine) == ["disk full", "cache warmed"]
    assert sorted(listed(admin_client, service="billing"), key=str)[-1] == "globex disk full"
    assert f'<input type="hidden" name="tenant__id__exact" value="{tenant.pk}">' in page
    assert 'name="service" value="billing"' in page
    assert "service=billing" in page.split('id="result_list"')[1]  # kept by the sort links


def test_it_escapes_and_clips_log_bodies_in_the_list(admin_client, tenant):
    log(tenant, "<script>alert(1)</script> " + "x" * 300)

    page = admin_client.get(LOGS).content.decode()

    assert "<script>alert(1)" not in page
    (tooltip, shown) = re.findall(r'<span class="clip" title="([^"]*)">([^<]*)</span>', page)[0]
    assert tooltip == "&lt;script&gt;alert(1)&lt;/script&gt; " + "x" * 300  # whole
    assert shown.startswith("&lt;script&gt;alert(1)") and shown.endswith("x…")
    assert len(unescape(shown)) == 100


def test_it_shows_a_log_record_whole_with_links_to_its_trace_and_span(
    admin_client, tenant, day_of_logs
):
    record = store(tenant, *family())
    declined = LogRecord.objects.get(body="Payment DECLINED")

    page = admin_client.get(reverse("admin:observability_logrecord_change", args=[declined.pk]))

    html = page.content.decode()
    trace_link = reverse("admin:observability_tracerecord_change", args=[record.pk])
    assert f'<a href="{trace_link}">{TRACE}</a>' in html
    assert f'<a href="{span_link(tenant, CHILD_A)}">{CHILD_A}</a>' in html
    assert "ERROR (SeverityNumber 17)" in html and format_ns(declined.time_ns) in html
    assert f'href="{LOGS}?traceId={TRACE}">Log records of this trace</a>' in html


def test_it_clips_a_long_value_in_a_list_and_keeps_it_whole_in_its_tooltip():
    assert clipped("short") == '<span class="clip">short</span>'
    assert clipped("checkout", 24, nowrap=True) == '<span class="nowrap">checkout</span>'
    long = clipped("a" * 100, 10)
    assert long.startswith(f'<span class="clip" title="{"a" * 100}">')
    assert ">aaaaaaaaa…</span>" in long
