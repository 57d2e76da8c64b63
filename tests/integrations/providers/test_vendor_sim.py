"""The simulator's switches, read through the providers as the sync will read them, and the
simulator as a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from core import outbound
from integrations.connections import providers
from tests.integrations.vendor_sim import SimClient

GITHUB = providers.get("github")
CONFIG = {"owner": "acme", "repo": "app"}


def get(provider, sim, secret=None):
    ask = provider.first_request("issues", base_url=sim.url, checkpoint={}, config=CONFIG)
    auth = provider.auth_headers(secret or {"token": "ghp-good"})
    return outbound.request(ask.method, ask.url, headers={**ask.headers, **auth})


def test_it_answers_with_the_faults_it_is_told(sim):
    sim.github_issue(number=1, updated_at="2024-05-01T10:00:00Z")
    now = datetime.now(UTC)
    sim.fail(status=429, headers={"Retry-After": "7"}, path="/issues")
    reply = get(GITHUB, sim)
    assert GITHUB.classify(reply.status, reply.headers, reply.body) == "rate_limited"
    wait = GITHUB.wait_until(reply.status, reply.headers, now=now, body=reply.body)
    assert wait == now + timedelta(seconds=7)

    sim.fail(status=403, body={"message": "You have exceeded a secondary rate limit."})
    reply = get(GITHUB, sim)
    assert GITHUB.classify(reply.status, reply.headers, reply.body) == "rate_limited"

    sim.fail(status=502, times=2)
    assert [get(GITHUB, sim).status for _ in range(3)] == [502, 502, 200]

    sim.fail(status=0, delay=0.3)  # slow, then the normal answer
    reply = get(GITHUB, sim)
    assert reply.status == 200 and reply.seconds >= 0.3

    sim.set(rate_remaining=0)
    reply = get(GITHUB, sim)
    assert reply.status == 403 and GITHUB.classify(403, reply.headers, reply.body) == "rate_limited"
    sim.set(rate_remaining=10)

    sim.expire(token="ghp-good")
    reply = get(GITHUB, sim)
    assert GITHUB.classify(reply.status, reply.headers, reply.body) == "auth"
    assert [r.status for r in sim.log("/issues")] == [429, 403, 502, 502, 200, 200, 403, 401]


def test_it_runs_as_a_process_driven_over_http(tmp_path, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    state = tmp_path / "state.json"
    calls = [
        {"method": "add_token", "kwargs": {"token": "t"}},
        {"method": "github_issue", "kwargs": {"number": 1, "updated_at": "2024-05-01T10:00:00Z"}},
    ]
    state.write_text(json.dumps({"calls": calls}))
    ready = tmp_path / "url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integrations.vendor_sim",
            "--state",
            str(state),
            "--ready",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        client = SimClient(ready.read_text())
        client.github_issue(number=2, updated_at="2024-05-01T10:01:00Z")
        ask = GITHUB.first_request("issues", base_url=client.url, checkpoint={}, config=CONFIG)
        reply = outbound.request(
            "GET", ask.url, headers={**ask.headers, **GITHUB.auth_headers({"token": "t"})}
        )
        page = GITHUB.parse_page(
            "issues",
            request=ask,
            status=reply.status,
            headers=reply.headers,
            body=reply.body,
            checkpoint={},
            config=CONFIG,
        )
        assert [r.data["number"] for r in page.records] == [1, 2]
        assert [r["status"] for r in client.log("/issues")] == [200]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_it_has_no_key_api_where_github_has_none(sim):
    """A key request at a GitHub base URL is a 404, as api.github.com answers it; only the
    generic API's /api/keys mints."""
    auth = {"Authorization": "Bearer ghp-good", "Content-Type": "application/json"}
    reply = outbound.request("POST", f"{sim.url}/keys", headers=auth, body=b'{"name": "x"}')
    assert reply.status == 404 and sim.created == 0
    minted = outbound.request("POST", f"{sim.url}/api/keys", headers=auth, body=b"{}")
    assert minted.status == 201 and sim.created == 1
