"""Shared fixtures. Tests talk to the real database (PostgreSQL in CI, via DATABASE_URL)."""

from __future__ import annotations

import pytest
from django.db import connection
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import services
from core.runtime import registry, shutdown
from core.runtime.registry import Idempotency, RetryPolicy, Trigger, Worker

_exporter = InMemorySpanExporter()
TEST_RETRY = RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=8)


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs PostgreSQL")


@pytest.fixture(scope="session", autouse=True)
def _spans_in_memory():
    # core.telemetry installed the SDK provider at start-up; add a processor we can read.
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture
def spans():
    _exporter.clear()
    yield _exporter
    _exporter.clear()


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
