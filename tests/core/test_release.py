"""A release is `manage.py migrate` and nothing else: a database made by it alone, on its own,
serves the API through the real web tier. Until the cache's table came with a migration, it
answered 500 (`relation "platform_cache" does not exist`) without a `createcachetable`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from django.db import connection

from tests.webtier import web_tier

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_database(tmp_path) -> Iterator[str]:
    """The URL of an empty database of the suite's kind, dropped afterwards."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"{db['NAME']}_fresh_release"
    server = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"]}
    if db["PASSWORD"]:
        server["password"] = db["PASSWORD"]
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(database_url: str, *argv: str) -> str:
    """A manage.py command with the production settings on `database_url`; its output."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "SECRET_KEY": "release-test",
        "DATABASE_URL": database_url,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_it_serves_the_api_from_a_database_that_migrate_alone_made(fresh_database, tmp_path):
    manage(fresh_database, "migrate", "--noinput")
    manage(fresh_database, "create_tenant", "fresh")
    key = re.search(r"pk_\S+", manage(fresh_database, "create_api_key", "--tenant", "fresh"))[0]

    with web_tier(
        tmp_path,
        DJANGO_SETTINGS_MODULE="core.settings",
        SECRET_KEY="release-test",
        DATABASE_URL=fresh_database,
        WORKER_MODULES="",  # the tests' workers need the tests' settings
    ) as base:
        health = requests.get(f"{base}/api/health/workers", timeout=30)
        traces = requests.get(
            f"{base}/api/traces", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    # No cluster runs here: the workers' health is "unhealthy" (503), and says so in JSON.
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unhealthy"
    assert traces.status_code == 200, traces.text
    assert traces.json()["results"] == []


def test_it_migrates_a_database_that_has_the_cache_table_already(fresh_database):
    # As a database released before, with `createcachetable` run by hand: going back before
    # the migration leaves the table, so running it again meets a table that exists.
    manage(fresh_database, "migrate", "--noinput")
    manage(fresh_database, "migrate", "--noinput", "core", "0005")

    out = manage(fresh_database, "migrate", "--noinput")

    assert "Applying core.0006_cache_table... OK" in out
