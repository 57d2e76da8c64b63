"""A newcomer's checkout: `make run` twice on its SQLite file, then the README's commands as
written, each in a clean environment (no DEBUG, no SECRET_KEY), in a copy of the project.

These run on the SQLite pass only: `make run` uses its own SQLite file whatever the suite's
database, so the PostgreSQL pass would only repeat them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.core.test_processes import wait_until
from tests.webtier import _free_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ["core", "observability", "feedback", "integrations", "templates", "requirements"]
FILES = ["manage.py", "gunicorn.conf.py", "Makefile"]
READY = "Ctrl-C stops"  # the banner's last line

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="runs on the SQLite pass (`env -u DATABASE_URL make test`): make run's own database",
)


class Run:
    """`make run` in the checkout, its output as it comes."""

    def __init__(self, checkout: Path, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            # The virtualenv is the suite's own, installed by `make test`: not made again here.
            ["make", "--old-file=.venv/.base", "run", f"PORT={port}"],
            cwd=checkout,
            env=clean_env(checkout),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def banner(self) -> str:
        wait_until(
            lambda: READY in self.output or self.process.poll() is not None,
            timeout=180,
            what="make run's banner",
        )
        assert READY in self.output, self.output
        return self.output

    def stop(self) -> None:
        """Ctrl-C, as in a terminal: SIGINT to the foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        # make, interrupted, ends by the same signal once run_platform has stopped its children.
        assert self.process.wait(timeout=90) == -signal.SIGINT, self.output
        assert "Traceback" not in self.output and "stopped the others" not in self.output


@contextmanager
def make_run(checkout: Path) -> Iterator[Run]:
    run = Run(checkout, _free_port())
    try:
        run.banner()
        yield run
    finally:
        if run.process.poll() is None:
            run.stop()


def clean_env(checkout: Path) -> dict[str, str]:
    """A login shell's: nothing of the platform's settings, nothing of the tests'."""
    return {"PATH": os.environ["PATH"], "HOME": str(checkout.parent), "LANG": "C.UTF-8"}


def demo_key(banner: str) -> str:
    return re.search(r"Demo API key\s+(pk_\S+)", banner).group(1)


def admin_password(banner: str) -> str:
    return re.search(r"user: admin\s+password: (\S+)", banner).group(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the project (its virtualenv shared) in which `make run` ran once."""
    checkout = tmp_path_factory.mktemp("newcomer") / "platform"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in PROJECT:
        shutil.copytree(ROOT / name, checkout / name, ignore=ignore)
    for name in FILES:
        shutil.copy2(ROOT / name, checkout / name)
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    with make_run(checkout) as first:
        (checkout / "first-banner.txt").write_text(first.output)
    return checkout


def test_it_keeps_the_demo_key_and_the_admin_password_across_runs(checkout):
    first = (checkout / "first-banner.txt").read_text()
    key, password = demo_key(first), admin_password(first)
    assert "a new key" in first

    with make_run(checkout) as second:
        sent = requests.post(
            f"http://127.0.0.1:{second.port}/api/events",
            json={"type": "DeploymentPromoted", "data": {"service": "api"}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        banner = second.output

    assert sent.status_code == 202, sent.text
    assert demo_key(banner) == key
    assert "the same key as last time" in banner
    assert admin_password(banner) == password
    assert f"password: {password}   (the same as last time)" in banner
    assert key not in second.output.removeprefix(banner)  # nothing logs it
    secrets = checkout / "var" / "local-credentials.json"
    assert key in secrets.read_text() and secrets.stat().st_mode & 0o077 == 0
    local_settings = checkout / "var" / "local.env"
    assert "SECRET_KEY=" in local_settings.read_text() and key not in local_settings.read_text()
    assert local_settings.stat().st_mode & 0o077 == 0


def readme_commands() -> list[list[str]]:
    """The commands of the README's "Operating it", as written there; an optional part
    (`[--name ...]`) left out."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Operating it", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(_without_optional(words))
    return commands


def _without_optional(words: list[str]) -> list[str]:
    kept, optional = [], False
    for word in words:
        optional = optional or word.startswith("[")
        if not optional:
            kept.append(word)
        optional = optional and not word.endswith("]")
    return kept


def test_it_runs_the_readmes_commands_as_written_in_a_make_run_checkout(checkout):
    commands = readme_commands()
    named = {command[1] for command in commands if command[0] == "manage.py"}
    assert {
        "create_tenant",
        "create_api_key",
        "publish_event",
        "qcluster",
        "replay_deadletters",
    } <= named
    for command in commands:
        argv = [".venv/bin/python", *command]
        if command[1] == "qcluster":
            run_cluster_until_idle(checkout, argv)
            continue
        done = subprocess.run(
            argv, cwd=checkout, env=clean_env(checkout), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"
        assert "Local development settings DEBUG, SECRET_KEY from" in done.stderr


def run_cluster_until_idle(checkout: Path, argv: list[str]) -> None:
    """The cluster handles what publish_event queued, and stops on SIGTERM."""
    log = checkout / "cluster.log"
    with log.open("wb") as out:
        cluster = subprocess.Popen(
            argv, cwd=checkout, env=clean_env(checkout), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: handled(checkout), timeout=120, what="the cluster", log=log)
    finally:
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=60) == 0, log.read_text()


def handled(checkout: Path) -> bool:
    """Whether every message of the tenant's events is handled (and there are some)."""
    with sqlite3.connect(checkout / "var" / "platform.sqlite3") as db:
        states = dict(
            db.execute(
                "SELECT m.state, count(*) FROM core_message m JOIN core_tenant t"
                " ON t.id = m.tenant_id WHERE t.slug = 'acme' GROUP BY m.state"
            ).fetchall()
        )
    return states.get("done", 0) > 0 and not states.get("pending")
