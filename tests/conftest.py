"""Shared fixtures. Tests talk to the real database (PostgreSQL in CI, via DATABASE_URL)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from django.db import connection
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import services
from core.runtime import registry, shutdown
from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker
from integrations.limits import store
from integrations.limits.models import Circuit, RateBucket

_exporter = InMemorySpanExporter()
TEST_RETRY = RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=8)


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs PostgreSQL")


# --- Rate buckets and circuits left behind ---------------------------------------------------
# integrations.limits writes them on a connection of its own that commits at once (its
# store.py), so on PostgreSQL a test's rows outlive the transaction the test is rolled back
# in, and the next tests would see them (as would those whose processes write to a SQLite
# file). After each test that had the database, once its fixtures are torn down (its
# transaction rolled back: the order of fixtures cannot promise that), one query looks, and
# only when either table has rows are they deleted.
_DB_FIXTURES = {
    "db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
    "live_server",
}  # fmt: skip
_LIMITS_TABLES = (RateBucket._meta.db_table, Circuit._meta.db_table)
_blocker = pytest.StashKey()


@pytest.fixture(scope="session", autouse=True)
def _limits_blocker(pytestconfig, django_db_blocker):
    pytestconfig.stash[_blocker] = django_db_blocker


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        # No next item: the test database is being destroyed, and the connection points at
        # the real one again.
        if nextitem is not None and _had_database(item) and _blocker in item.config.stash:
            with item.config.stash[_blocker].unblock():
                _delete_limits()
        if nextitem is None:
            # The limits' kept connection must not hold the test database its DROP waits on.
            store.close()


def _had_database(item) -> bool:
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker("django_db") is not None or not _DB_FIXTURES.isdisjoint(names)


def _delete_limits() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in _LIMITS_TABLES)
        )
        if cursor.fetchone()[0]:
            for table in _LIMITS_TABLES:
                cursor.execute(f"DELETE FROM {table}")


@pytest.fixture(scope="session", autouse=True)
def _spans_in_memory():
    # core.telemetry installed the SDK provider at start-up; add a processor we can read.
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture
def spans():
    _exporter.clear()
    yield _exporter
    _exporter.clear()


# --- Processes a test started and left running ---------------------------------------------
# tests.core.test_processes.spawn records each process (a qcluster, gunicorn, a shell) here. A
# test that fails before it stops its own (a wait that timed out) would leave it running,
# holding the test database: every later test would fail on it, and the database could not be
# dropped. After each test, what it started (not what a wider fixture started before it: those
# are set up first) and left running is killed, with its process group.
SPAWNED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    mark = len(SPAWNED)
    yield
    for process in SPAWNED[mark:]:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    del SPAWNED[mark:]


@pytest.fixture(autouse=True)
def _no_leftover_shutdown():
    yield
    shutdown.reset()


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")


@pytest.fixture
def tenant(db):
    return services.create_tenant(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db):
    return services.create_tenant(slug="globex", name="Globex")


@pytest.fixture
def without_workers():
    """Take catalog workers out of the registry for one test, and put them back afterwards:
    for runtime tests about an event that no built worker receives, which the wildcard
    TelemetryCorrelationWorker otherwise makes impossible."""
    removed = []

    def remove(*names: str) -> None:
        for name in names:
            removed.append(registry.get(name))
            registry.unregister(name)

    yield remove
    for worker in removed:
        registry.register(worker)


@pytest.fixture
def make_worker():
    """Register a built worker for the test (the catalog's thirteen are declared but, until
    later issues, not built), and take it away afterwards."""
    names = []

    def make(
        name="TestWorker",
        *,
        handler=lambda envelope: None,
        events=("DeploymentPromoted",),
        commands=(),
        schedules=(),
        retry=TEST_RETRY,
        key=None,
        group="reaction",
        batch_handler=None,
        batch_size=1,
        on_dead=None,
    ):
        worker = Worker(
            name=name,
            module=f"tests.{name}",
            app="tests",
            group=group,
            purpose="A worker for tests.",
            trigger=Trigger(
                events=tuple(events),
                commands=tuple(commands),
                schedules=tuple(schedules),
                description="test",
            ),
            retry=retry,
            idempotency=Idempotency("test key" if key else "eventId", key=key),
            handler=None if batch_handler else handler,
            batch_handler=batch_handler,
            batch_size=batch_size,
            on_dead=on_dead,
        )
        registry.register(worker)
        names.append(name)
        return worker

    yield make
    for name in names:
        registry.unregister(name)


@pytest.fixture
def expiring_connections(monkeypatch):
    """Database connections past CONN_MAX_AGE as soon as they open, as every SQLite connection
    is (its CONN_MAX_AGE is 0): what close_old_connections() closes. For tests with
    transaction=True, outside of which nothing is closed."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    connection.close()
    yield
    connection.close()
