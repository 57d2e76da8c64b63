"""`manage.py run_platform` (what `make run` calls): the whole platform on one machine.

Migrates, sets up local credentials, then runs gunicorn and the qcluster side by side until
Ctrl-C, which stops both cleanly (the cluster drains within SHUTDOWN_DRAIN_TIMEOUT).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from core import services
from core.models import ApiKey, Tenant

DEMO_TENANT = "demo"
LOCAL_KEY_NAME = "make run"
ADMIN = "admin"


class Command(BaseCommand):
    help = "Run gunicorn and the worker cluster together (local use)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, port: int, host: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "run_platform is for local use and sets fresh local credentials; it runs only "
                "with DEBUG=1. In production run gunicorn and `manage.py qcluster` (README)."
            )
        call_command("migrate", interactive=False, verbosity=0)
        credentials = local_credentials(settings.VAR_DIR / "local-credentials.json")
        # Both children's PORT setting: the webhook guard refuses the platform's own port.
        os.environ["PORT"] = str(port)
        processes = [
            _spawn(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--config",
                    str(settings.BASE_DIR / "gunicorn.conf.py"),  # production's, see there
                    "--bind",
                    f"{host}:{port}",
                ]
            ),
            _spawn([sys.executable, "manage.py", "qcluster"]),
        ]
        _wait_for_port(host, port)
        self.stdout.write(banner(host=host, port=port, credentials=credentials))
        self.stdout.flush()  # whole, also into a pipe (`make run | tee`)
        _supervise(processes)


@dataclass(frozen=True)
class Credentials:
    password: str
    key: str
    password_kept: bool
    key_kept: bool
    store: Path


@transaction.atomic
def local_credentials(store: Path) -> Credentials:
    """A staff `admin` and a `demo` tenant with an API key, the same on every run against the
    same database: an app instrumented against `make run` keeps sending across restarts, and so
    does the console's login (a new password would end the operator's session at each run).

    Both are this checkout's development secrets: kept in `store` (under var/, readable by its
    owner only, one entry per database) to be shown again in the banner, and never logged.
    One that no longer works there (never kept, lost, revoked, changed) is replaced by a fresh
    one, and the previous runs' `make run` keys are revoked then."""
    kept = _read(store)
    database = _database()
    mine = kept.get(database, {})
    password, password_kept = _admin_password(mine.get("password", ""))
    key, key_kept = _demo_key(mine.get("key", ""))
    kept[database] = {"password": password, "key": key}
    _write(store, kept)
    return Credentials(password, key, password_kept, key_kept, store)


def _admin_password(kept: str) -> tuple[str, bool]:
    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN, defaults={"is_staff": True, "is_superuser": True}
    )
    if kept and user.check_password(kept):
        return kept, True
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save()
    return password, False


def _demo_key(kept: str) -> tuple[str, bool]:
    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or services.create_tenant(
        slug=DEMO_TENANT, name="Demo"
    )
    live = ApiKey.objects.filter(tenant=tenant, name=LOCAL_KEY_NAME, revoked__isnull=True)
    lookup, _, secret = kept.removeprefix(ApiKey.PREFIX).partition("_")
    found = live.filter(lookup=lookup).first() if lookup else None
    if found is not None and found.matches(secret):
        return kept, True
    live.update(revoked=timezone.now())
    return services.issue_api_key(tenant=tenant, name=LOCAL_KEY_NAME), False


def _database() -> str:
    """Which database the credentials are kept for: the kept ones of another do not apply."""
    db = connection.settings_dict
    return f"{connection.vendor}://{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _read(store: Path) -> dict[str, Any]:
    try:
        kept: dict[str, Any] = json.loads(store.read_text())
        return kept
    except (FileNotFoundError, ValueError):
        return {}


def _write(store: Path, kept: dict[str, Any]) -> None:
    """Replaced whole, and never readable by anyone but the owner, not even while written."""
    partial = store.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(kept, out, indent=2)
    partial.replace(store)


def banner(*, host: str, port: int, credentials: Credentials) -> str:
    base = f"http://{host}:{port}"
    key = credentials.key
    kept = "the same as last time" if credentials.password_kept else "new"
    login = f"password: {credentials.password}   ({kept})"
    if credentials.key_kept:
        about_key = "the same key as last time: what sends with it keeps working"
    else:
        about_key = "a new key, kept for the next runs on this database"
    local = Path(settings.LOCAL_ENV_FILE) if settings.LOCAL_ENV_FILE else None
    if local is not None and local.is_file():
        local_line = f"\n  Local settings  {local} (DEBUG, SECRET_KEY; this checkout's own)"
    else:
        local_line = ""
    body = json.dumps(
        {
            "type": "DeploymentPromoted",
            "data": {"service": "checkout", "version": "1.4.2", "env": "prod"},
        }
    )
    return f"""
  The platform is running at {base}

  Admin console   {base}/admin/   user: {ADMIN}   {login}
  Worker health   {base}/admin/core/deadletter/health/
                  (JSON: {base}/api/health/workers)
  Demo API key    {key}
                  (tenant "{DEMO_TENANT}"; {about_key})
  Both kept in    {credentials.store} (this checkout's secrets){local_line}

  Send a test event:
    curl -sS -X POST {base}/api/events \\
      -H "Authorization: Bearer {key}" \\
      -H "Content-Type: application/json" \\
      -d '{body}'

  Point an OpenTelemetry SDK or Collector at it (OTLP/HTTP, protobuf or JSON):
    export OTEL_EXPORTER_OTLP_ENDPOINT={base}
    export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer {key}"
  then see the traces at {base}/api/traces (same header) and in the admin.

  Subscribe an endpoint to events (the reply holds its signing secret, shown once):
    curl -sS -X POST {base}/api/webhooks/subscriptions \\
      -H "Authorization: Bearer {key}" \\
      -H "Content-Type: application/json" \\
      -d '{{"url": "https://example.com/hooks", "eventTypes": ["Deployment*"]}}'
  (a receiver on this machine needs WEBHOOK_ALLOWED_HOSTS=127.0.0.1 make run)

  Ctrl-C stops the web server and the cluster.
"""


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
    return subprocess.Popen(argv, start_new_session=True)


def _wait_for_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)


def _supervise(processes: list[subprocess.Popen[bytes]]) -> None:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.SHUTDOWN_DRAIN_TIMEOUT + 5
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    if not stopping:
        raise CommandError("a process of the platform exited; stopped the others (see above)")
