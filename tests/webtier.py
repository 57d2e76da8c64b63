"""The web tier as production runs it: a real gunicorn started with gunicorn.conf.py, on the
test database, and the raw-socket clients that the HTTP libraries will not be."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.core.test_processes import spawn, wait_until

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def web_tier(tmp_path: Path, **env: str) -> Iterator[str]:
    """gunicorn with the production configuration on a free port; its base URL."""
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    config = str(ROOT / "gunicorn.conf.py")
    argv = [sys.executable, "-m", "gunicorn", "--config", config, "--bind", f"127.0.0.1:{port}"]
    process = spawn(argv, log, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base), timeout=60, what="gunicorn to answer", log=log)
        yield base
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def access_log(tmp_path: Path) -> str:
    return (tmp_path / "gunicorn.log").read_text()


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket) -> bytes:
    """What the server sent until it closed the connection (or 30 s passed)."""
    chunks = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _answers(base: str) -> bool:
    try:
        requests.get(f"{base}/api/health/workers", timeout=5)
    except requests.RequestException:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
