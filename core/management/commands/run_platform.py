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

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from core import services
from core.models import ApiKey, Tenant

DEMO_TENANT = "demo"
LOCAL_KEY_NAME = "make run"


class Command(BaseCommand):
    help = "Run gunicorn and the worker cluster together (local use)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, port: int, host: str, **options):
        if not settings.DEBUG:
            raise CommandError(
                "run_platform is for local use and sets fresh local credentials; it runs only "
                "with DEBUG=1. In production run gunicorn and `manage.py qcluster` (README)."
            )
        call_command("migrate", interactive=False, verbosity=0)
        password, key = local_credentials()
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
        self.stdout.write(banner(host=host, port=port, password=password, key=key))
        _supervise(processes)


@transaction.atomic
def local_credentials() -> tuple[str, str]:
    """A staff `admin` and a `demo` tenant; every run gives both fresh secrets, printed once,
    and revokes the previous run's key, so that no secret has to be stored to be shown again."""
    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    user.set_password(password)
    user.save()
    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or services.create_tenant(
        slug=DEMO_TENANT, name="Demo"
    )
    ApiKey.objects.filter(tenant=tenant, name=LOCAL_KEY_NAME, revoked__isnull=True).update(
        revoked=timezone.now()
    )
    return password, services.issue_api_key(tenant=tenant, name=LOCAL_KEY_NAME)


def banner(*, host: str, port: int, password: str, key: str) -> str:
    base = f"http://{host}:{port}"
    body = json.dumps(
        {
            "type": "DeploymentPromoted",
            "data": {"service": "checkout", "version": "1.4.2", "env": "prod"},
        }
    )
    return f"""
  The platform is running at {base}

  Admin console   {base}/admin/   user: admin   password: {password}
  Worker health   {base}/admin/core/deadletter/health/
                  (JSON: {base}/api/health/workers)
  Demo API key    {key}
                  (tenant "{DEMO_TENANT}"; shown once; each `make run` issues a new one)

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


def _spawn(argv: list[str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
    return subprocess.Popen(argv, start_new_session=True)


def _wait_for_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)


def _supervise(processes: list[subprocess.Popen]) -> None:
    stopping = False

    def stop(signum, frame):
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
