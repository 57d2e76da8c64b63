"""GET /metrics: the platform in Prometheus' text format, behind a bearer token, read back by
promtool and by Prometheus' own Python parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core import prometheus, services
from core.models import ClusterHeartbeat, Event, Message, PlatformCounter, WorkerState
from core.prometheus import Family, Metric
from tests.webtier import web_tier

pytestmark = pytest.mark.django_db
TOKEN = "scrape-me-3f9a"
GOLDEN_LOGS = Path(__file__).parents[1] / "observability" / "golden" / "logs.json"
WORKER = "TraceIngestionWorker"
REQUESTS = "platform_otlp_requests_total"


@pytest.fixture
def token(settings):
    settings.METRICS_BEARER_TOKEN = TOKEN


def scrape(client, authorization: str = f"Bearer {TOKEN}"):
    return client.get("/metrics", headers={"Authorization": authorization})


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition, as prometheus_client parses it: (name, labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[name, tuple(sorted(labels.items()))]


def promtool(text: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is absent: `apt-get install prometheus` (Debian) to run this test")
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def test_it_is_not_there_while_no_token_is_set(client, settings):
    settings.METRICS_BEARER_TOKEN = ""

    response = scrape(client, "Bearer ")

    assert response.status_code == 404
    assert "set METRICS_BEARER_TOKEN" in response.content.decode()


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}"],
)
def test_it_asks_for_the_token(client, token, authorization):
    response = scrape(client, authorization)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_it_answers_the_token_in_the_text_format(client, token):
    response = scrape(client, f"bearer  {TOKEN} ")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_promtool_finds_nothing_wrong_with_a_scrape(client, token, tenant):
    WorkerState.objects.update_or_create(worker=WORKER, defaults={"last_success": timezone.now()})
    with transaction.atomic():
        prometheus.add({(Metric("platform_test_total", "counter", "A test.", ("a",)), ("x",)): 2})

    checked = promtool(scrape(client).content.decode())

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_it_escapes_label_values_and_help_as_the_format_says():
    odd = 'a "quoted" \\ back\nslash'
    metric = Metric("platform_test_things", "gauge", "Help with \\ and\na line.", ("name",))

    text = prometheus.render([Family(metric, {(odd,): 1.5, ("plain",): float("nan")})])

    assert promtool(text).returncode == 0
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == "Help with \\ and\na line."
    assert [s.labels["name"] for s in family.samples] == [odd, "plain"]
    assert family.samples[0].value == 1.5


def make_message(tenant, state: str, *, due: timedelta, leased: bool = False) -> Message:
    now = timezone.now()
    event = Event.objects.create(
        id=uuid.uuid4(),
        type="TelemetryBatchReceived",
        tenant=tenant,
        trace_id="a" * 32,
        span_id="b" * 16,
        occurred_at=now,
    )
    return Message.objects.create(
        event=event,
        worker=WORKER,
        tenant=tenant,
        state=state,
        due_at=now - due,
        leased_until=now + timedelta(minutes=5) if leased else None,
    )


def test_it_shows_each_workers_figures_as_the_health_endpoint_has_them(client, token, tenant):
    make_message(tenant, "pending", due=timedelta(minutes=3))
    make_message(tenant, "pending", due=timedelta(seconds=10))
    make_message(tenant, "pending", due=timedelta(minutes=9), leased=True)
    make_message(tenant, "pending", due=-timedelta(minutes=5))  # not due yet
    make_message(tenant, "dead", due=timedelta(hours=1))

    text = scrape(client).content.decode()

    workers = client.get("/api/health/workers").json()["workers"]
    health = next(w for w in workers if w["name"] == WORKER)
    assert value(text, "platform_worker_backlog_messages", worker=WORKER) == 2
    assert value(text, "platform_worker_in_flight_messages", worker=WORKER) == 1
    assert value(text, "platform_worker_dead_letter_messages", worker=WORKER) == 1
    assert 180 <= value(text, "platform_worker_oldest_due_age_seconds", worker=WORKER) < 240
    assert (health["backlog"], health["inFlight"], health["deadLetters"]) == (2, 1, 1)
    assert value(text, "platform_worker_backlog_messages", worker="IncidentAnalysisWorker") == 0


def test_it_shows_the_last_success_and_the_clusters_heartbeats(client, token):
    success = timezone.now() - timedelta(minutes=2)
    WorkerState.objects.update_or_create(worker=WORKER, defaults={"last_success": success})
    for minutes in (1, 30):
        ClusterHeartbeat.objects.create(
            cluster_id=uuid.uuid4(),
            name="ingestion",
            host="h",
            pid=1,
            beat_at=timezone.now() - timedelta(minutes=minutes),
        )

    text = scrape(client).content.decode()

    last = value(text, "platform_worker_last_success_timestamp_seconds", worker=WORKER)
    assert last == pytest.approx(success.timestamp())
    beat = value(text, "platform_cluster_last_heartbeat_timestamp_seconds", cluster="ingestion")
    assert beat == pytest.approx((timezone.now() - timedelta(minutes=1)).timestamp(), abs=5)
    never = ("platform_worker_last_success_timestamp_seconds", (("worker", "CostAnomalyWorker"),))
    assert never not in samples(text)


def otlp(client, signal: str, body: bytes, *, key: str | None, media: str = "application/json"):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(f"/v1/{signal}", data=body, content_type=media, headers=headers)


SPAN = {
    "traceId": "ab" * 16,
    "name": "GET /",
    "kind": 2,
    "startTimeUnixNano": "1750000000000000000",
    "endTimeUnixNano": "1750000000100000000",
}


def spans(*ids: str, invalid: tuple[str, ...] = ()) -> bytes:
    """An OTLP JSON trace request: spans with these ids, and `invalid` ones (a kind of 99,
    rejected in partialSuccess)."""
    batch = [{**SPAN, "spanId": i} for i in ids] + [
        {**SPAN, "spanId": i, "kind": 99} for i in invalid
    ]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": batch}]}]}).encode()


def test_it_counts_otlp_requests_by_signal_and_status_and_their_items(
    client, token, tenant, django_capture_on_commit_callbacks
):
    key = services.issue_api_key(tenant=tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert otlp(client, "traces", spans("1" * 16, "2" * 16), key=key).status_code == 200
        partial = otlp(client, "traces", spans("3" * 16, invalid=("6" * 16,)), key=key)
        assert partial.json()["partialSuccess"]["rejectedSpans"] == "1"
        assert otlp(client, "logs", GOLDEN_LOGS.read_bytes(), key=key).status_code == 200
        assert otlp(client, "traces", spans("4" * 16), key=None).status_code == 401
        assert otlp(client, "metrics", b"{}", key=key, media="text/plain").status_code == 415

    text = scrape(client).content.decode()

    requests_total = "platform_otlp_requests_total"
    assert value(text, requests_total, signal="traces", code="200") == 2
    assert value(text, requests_total, signal="logs", code="200") == 1
    assert value(text, requests_total, signal="traces", code="401") == 1
    assert value(text, requests_total, signal="metrics", code="415") == 1
    items = "platform_otlp_items_total"
    assert value(text, items, signal="traces", outcome="accepted") == 3
    assert value(text, items, signal="traces", outcome="rejected") == 1
    assert value(text, items, signal="logs", outcome="accepted") == 3
    assert value(text, items, signal="metrics", outcome="accepted") == 0  # there from the start


def test_it_adds_counts_up_across_calls_and_keeps_label_values_apart(
    django_capture_on_commit_callbacks,
):
    metric = Metric("platform_test_total", "counter", "A test.", ("a",))
    with django_capture_on_commit_callbacks(execute=True):
        prometheus.add({(metric, ("x",)): 2, (metric, ("y",)): 1})
        prometheus.add({(metric, ("x",)): 3})

    assert prometheus.stored_counters()["platform_test_total"] == {("x",): 5, ("y",): 1}


def test_it_counts_each_minute_of_the_last_two_hours_beside_the_total(
    django_capture_on_commit_callbacks,
):
    metric = Metric("platform_test_total", "counter", "A test.", ("a",))
    start = timezone.now().replace(second=30, microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        prometheus.add({(metric, ("x",)): 2}, now=start)
        prometheus.add({(metric, ("x",)): 3, (metric, ("y",)): 1}, now=start)
        prometheus.add({(metric, ("x",)): 4}, now=start + timedelta(minutes=2))

    counts = prometheus.per_minute([metric], minutes=3, now=start + timedelta(minutes=2))
    assert counts["platform_test_total"] == {("x",): [5, 0, 4], ("y",): [1, 0, 0]}
    assert prometheus.stored_counters()["platform_test_total"] == {("x",): 9, ("y",): 1}

    # Two hours on, the first minute's slot counts that minute alone, from zero.
    later = start + timedelta(minutes=PlatformCounter.MINUTE_SLOTS)
    with django_capture_on_commit_callbacks(execute=True):
        prometheus.add({(metric, ("x",)): 7}, now=later)
    counts = prometheus.per_minute([metric], minutes=60, now=later)
    assert counts["platform_test_total"] == {("x",): [0] * 59 + [7]}
    assert prometheus.stored_counters()["platform_test_total"] == {("x",): 16, ("y",): 1}
    assert PlatformCounter.objects.count() == 2 + 3  # two totals, three minutes in the ring


def test_it_counts_nothing_of_a_transaction_rolled_back(django_capture_on_commit_callbacks):
    metric = Metric("platform_test_total", "counter", "A test.", ("a",))
    with (
        django_capture_on_commit_callbacks(execute=True),
        suppress(RuntimeError),
        transaction.atomic(),
    ):
        prometheus.add({(metric, ("x",)): 2})
        raise RuntimeError("the change fails")

    assert not PlatformCounter.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_every_web_process_answers_the_same_counts(tmp_path, tenant):
    key = services.issue_api_key(tenant=tenant)
    with web_tier(tmp_path, METRICS_BEARER_TOKEN=TOKEN, WEB_CONCURRENCY="2") as base:
        for _ in range(6):  # a connection each, so that both processes take some
            with requests.Session() as session:
                reply = session.post(
                    f"{base}/v1/traces",
                    data=spans("5" * 16),
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                    timeout=30,
                )
                assert reply.status_code == 200
        scrapes = []
        for _ in range(6):
            with requests.Session() as session:
                reply = session.get(
                    f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
                )
                found = value(
                    reply.text, "platform_otlp_requests_total", signal="traces", code="200"
                )
                scrapes.append(found)

    assert scrapes == [6] * 6
