"""The operator's console for telemetry: read-only lists, and a trace's waterfall."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from core import services
from core.models import Message
from core.runtime import dispatch
from observability import admin as observability_admin
from observability import otlp
from observability.admin import ns_to_datetime, ticks, tree_order, waterfall
from observability.models import Span, TelemetryBatch, TraceRecord
from observability.traces import refresh_trace_records

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
    while Message.objects.filter(worker="TraceIngestionWorker", state="pending").exists():
        dispatch.drain("TraceIngestionWorker")


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
    for span in spans:
        span.tenant = tenant
    Span.objects.bulk_create(spans)
    refresh_trace_records(tenant.id, {s.trace_id for s in spans})
    return TraceRecord.objects.get(tenant=tenant, trace_id=spans[0].trace_id)


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
    assert "100.000" in page  # duration (ms)
    start = ns_to_datetime(T0)
    assert f"{start:%Y-%m-%d %H:%M:%S}.{start.microsecond // 1000:03d} UTC" in page


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


def test_it_labels_the_time_axis_from_zero_to_the_total():
    assert [(t.x, t.label) for t in ticks(100, chart_width=720)] == [
        (0, "0 ms"),
        (180, "25.0 ms"),
        (360, "50.0 ms"),
        (540, "75.0 ms"),
        (720, "100 ms"),
    ]


def test_it_converts_nanoseconds_to_a_datetime_to_the_microsecond():
    assert ns_to_datetime(1_700_000_000_123_456_789) == datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC
    )
    assert ns_to_datetime(10**30) is None


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
    monkeypatch.setattr(observability_admin, "MAX_SPANS", 3)
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
