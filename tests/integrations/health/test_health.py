"""ExternalApiHealthWorker against a real vendor endpoint on 127.0.0.1: pending, then down
after three failed windows (one IntegrationFailed, the circuit open), up again after two good
ones (the circuit closed), degraded when slow, latest-wins windows; and its decisions alone."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from core import services
from core.models import Event
from core.runtime import dispatch, scheduling
from integrations.connections import credentials
from integrations.health import decisions
from integrations.health import prometheus as health_metrics
from integrations.health.decisions import DEGRADED, DOWN, PENDING, UP, HealthPolicy, Probe, Window
from integrations.health.models import ConnectionHealth, ProbeResult
from integrations.limits import circuits, keys

WORKER = "ExternalApiHealthWorker"
# An hour ago, on a whole minute: the windows are the schedule's slots of the last hour.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)

# --- The decisions -----------------------------------------------------------------------------


PROBE = Probe(connected=True, status=200, latency_ms=120, body=b'{"status": "UP", "n": [3]}')


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ("[STATUS] == 200", True),
        ("[STATUS] < 300", True),
        ("[STATUS] == any(201, 204)", False),
        ("[RESPONSE_TIME] < 100", False),
        ("[CONNECTED] == true", True),
        ("[BODY].status == UP", True),
        ("[BODY].n.0 >= 3", True),
        ("[BODY].missing == x", False),
        ("[BODY] == pat(*UP*)", True),
    ],
)
def test_it_checks_gatus_style_conditions(condition, holds):
    assert (decisions.evaluate([condition], PROBE) == []) is holds


def test_it_fails_every_condition_but_not_connected_when_nothing_answered():
    down = Probe(connected=False, error="ConnectionRefusedError")
    failed = decisions.evaluate([*decisions.DEFAULT_CONDITIONS, "[CONNECTED] == false"], down)
    assert len(failed) == 2 and "[CONNECTED] == true (was False)" in failed
    with pytest.raises(ValueError, match="is not a condition"):
        decisions.check_conditions(["STATUS = 200"])


def windows(*outcomes: str) -> list[Window]:
    """Newest first: "ok", "slow", "fail"."""
    return [
        Window(T0 - timedelta(minutes=i), ok=o != "fail", slow=o == "slow")
        for i, o in enumerate(outcomes)
    ]


POLICY = HealthPolicy()


def test_it_is_pending_before_it_is_down_and_down_until_it_has_been_up_twice():
    assert decisions.assess(windows("fail", "ok"), before=UP, policy=POLICY) == PENDING
    assert decisions.assess(windows("fail", "fail"), before=PENDING, policy=POLICY) == PENDING
    assert decisions.assess(windows("fail", "fail", "fail"), before=PENDING, policy=POLICY) == DOWN
    assert decisions.assess(windows("ok", "fail"), before=DOWN, policy=POLICY) == DOWN
    assert decisions.assess(windows("ok", "ok", "fail"), before=DOWN, policy=POLICY) == UP
    assert decisions.assess(windows("ok", "fail"), before=PENDING, policy=POLICY) == UP
    assert decisions.assess(windows("slow"), before=UP, policy=POLICY) == DEGRADED


def test_it_tells_only_of_transitions_an_operator_cares_about():
    told = [
        (a, b)
        for a in ("unknown", UP, PENDING, DEGRADED, DOWN)
        for b in ("unknown", UP, PENDING, DEGRADED, DOWN)
        if decisions.important(a, b)
    ]
    assert (UP, PENDING) not in told and (PENDING, UP) not in told and ("unknown", UP) not in told
    assert {(PENDING, DOWN), (UP, DOWN), (DOWN, UP), (UP, DEGRADED), (DEGRADED, UP)} <= set(told)


# --- The worker ----------------------------------------------------------------------------------


class Vendor:
    """A vendor's status endpoint whose answer the test sets."""

    def __init__(self) -> None:
        self.status, self.delay = 200, 0.0
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(vendor.delay)
                body = b'{"status": "UP"}'
                self.send_response(vendor.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vendor(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_REQUIRE_HTTPS = False
    vendor = Vendor()
    yield vendor
    vendor.close()


@pytest.fixture
def connection(tenant, vendor):
    connection = credentials.create_connection(
        tenant=tenant,
        provider="generic",
        name="status",
        base_url=vendor.url,
        config={"path": "/items", "probe_path": "/health"},
    )
    credentials.create_credential(connection=connection, secret={"token": "s3cret-token"})
    return connection


def probe_window(minute: int) -> None:
    scheduling.fire(WORKER, "probe", now=T0 + timedelta(minutes=minute))
    dispatch.drain(WORKER)


def health(connection) -> ConnectionHealth:
    return ConnectionHealth.objects.get(connection=connection)


def published(type_: str) -> list[Event]:
    return list(Event.objects.filter(type=type_).order_by("recorded_at"))


@pytest.mark.django_db
def test_it_goes_down_after_three_failed_windows_and_up_after_two_good_ones(vendor, connection):
    key = keys.connection(connection.pk)
    probe_window(0)
    assert health(connection).state == UP and not published("ConnectionHealthChanged")

    vendor.status = 503
    probe_window(1)
    probe_window(2)
    assert health(connection).state == PENDING and not published("ConnectionHealthChanged")
    probe_window(3)
    probe_window(4)  # still down: nothing more to say

    state = health(connection)
    assert (state.state, state.failures) == (DOWN, 4)
    assert "[STATUS] < 400 (was 503)" in state.last_error
    (changed,) = published("ConnectionHealthChanged")
    assert (changed.data["from"], changed.data["to"]) == (PENDING, DOWN)
    (failed,) = published("IntegrationFailed")
    assert failed.data["kind"] == "outage" and failed.data["failureId"] == str(
        state.outage_failure_id
    )
    assert "s3cret" not in str(failed.data)
    assert circuits.current(key=key) == "open"

    vendor.status = 200
    probe_window(5)
    assert health(connection).state == DOWN  # one good window is not enough
    probe_window(6)

    state = health(connection)
    assert (state.state, state.outage_failure_id) == (UP, None)
    assert [e.data["to"] for e in published("ConnectionHealthChanged")] == [DOWN, UP]
    assert len(published("IntegrationFailed")) == 1  # one per outage, not per probe
    assert circuits.current(key=key) == "closed"
    assert ProbeResult.objects.filter(connection=connection).count() == 7


@pytest.mark.django_db
def test_it_keeps_the_newest_windows_health_when_an_older_one_comes_late(vendor, connection):
    probe_window(5)
    vendor.status = 500
    probe_window(4)  # a late window: recorded, but the health stays the newest one's

    assert health(connection).state == UP and health(connection).window == T0 + timedelta(minutes=5)
    assert ProbeResult.objects.get(window=T0 + timedelta(minutes=4)).ok is False


@pytest.mark.django_db
def test_it_overwrites_a_windows_result_when_the_window_is_probed_again(vendor, connection):
    vendor.status = 500
    probe_window(0)
    vendor.status = 200
    probe_window(0)  # the same slot again: nothing new (its message is handled once)
    services.publish(  # "probe now" in the same window: its result replaces the first
        tenant=connection.tenant,
        type="ConnectionProbeRequested",
        data={"connectionId": str(connection.pk)},
        occurred_at=T0,
    )
    dispatch.drain(WORKER)

    (result,) = ProbeResult.objects.filter(connection=connection)
    assert result.ok and result.status_code == 200
    assert health(connection).state == UP


@pytest.mark.django_db
def test_it_calls_a_slow_vendor_degraded_and_exports_the_state(vendor, connection):
    connection.config = {**connection.config, "probe_slow_ms": 50}
    connection.save()
    vendor.delay = 0.1
    probe_window(0)

    assert health(connection).state == DEGRADED
    (changed,) = published("ConnectionHealthChanged")
    assert changed.data["to"] == DEGRADED
    families = {f.metric.name: f for f in health_metrics.families(counters={})}
    states = families["platform_integration_health_state"].samples
    assert states[(str(connection.pk), "generic", DEGRADED)] == 1.0
    assert states[(str(connection.pk), "generic", UP)] == 0.0
    latency = families["platform_integration_probe_latency_seconds"].samples
    assert latency[(str(connection.pk), "generic")] >= 0.1


# --- API and admin -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_shows_health_and_probes_now(api, vendor, connection, other_tenant):
    probe_window(0)

    (listed,) = api("get", "/api/integrations/health").json()["results"]
    assert (listed["connectionId"], listed["state"], listed["circuit"]) == (
        str(connection.pk),
        UP,
        "closed",
    )
    detail = api("get", f"/api/integrations/connections/{connection.pk}/health").json()
    assert detail["probes"][0]["statusCode"] == 200
    assert "s3cret" not in str(detail)

    accepted = api("post", f"/api/integrations/connections/{connection.pk}/probe")
    assert accepted.status_code == 202
    dispatch.drain(WORKER)
    assert ProbeResult.objects.filter(connection=connection).count() == 2
    assert api("post", "/api/integrations/connections/not-an-id/probe").status_code == 404


@pytest.mark.django_db
def test_the_health_board_isolates_a_connection(admin_client, vendor, connection):
    probe_window(0)
    board = admin_client.get(reverse("admin:health_connectionhealth_changelist"))
    assert board.status_code == 200 and b"<svg" in board.content and b"100.00 %" in board.content

    admin_client.post(reverse("admin:health_connectionhealth_isolate", args=[connection.pk]))
    assert circuits.current(key=keys.connection(connection.pk)) == "isolated"
    admin_client.post(reverse("admin:health_connectionhealth_close", args=[connection.pk]))
    assert circuits.current(key=keys.connection(connection.pk)) == "closed"


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "webhooks"), [(503, "open"), (401, "closed")])
def test_an_outage_of_the_host_opens_the_tenants_webhook_circuit_there_too(
    vendor, connection, status, webhooks
):
    """A 5xx is the vendor's host down: the tenant's webhooks to that host wait with it. A 401
    is our credential refused: the host is there, its webhooks go."""
    webhook_key = keys.webhook_host(connection.tenant_id, vendor.url)
    vendor.status = status
    for minute in range(3):
        probe_window(minute)
    assert health(connection).state == DOWN
    assert (circuits.current(key=webhook_key), webhooks) == (webhooks, webhooks)

    vendor.status = 200
    probe_window(3)
    probe_window(4)
    assert health(connection).state == UP
    assert circuits.current(key=webhook_key) == "closed"


@pytest.mark.django_db
def test_coming_back_up_leaves_an_isolated_webhook_circuit_isolated(vendor, connection):
    webhook_key = keys.webhook_host(connection.tenant_id, vendor.url)
    vendor.status = 500
    for minute in range(3):
        probe_window(minute)
    circuits.isolate(webhook_key, reason="an operator's hold")

    vendor.status = 200
    probe_window(3)
    probe_window(4)
    assert circuits.current(key=webhook_key) == "isolated"
