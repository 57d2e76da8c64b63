"""The GitHub provider against the simulator: keyset paging of issues, ties inside one second,
ETag/304, pull requests newest first, rate-limit replies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from integrations.connections import providers
from tests.integrations.providers.paging import run

GITHUB = providers.get("github")
SECRET = {"token": "ghp-good"}


def config(**extra):
    return {"owner": "acme", "repo": "app", **extra}


def at(minute: int, second: int = 0) -> str:
    return f"2024-05-01T10:{minute:02d}:{second:02d}Z"


def test_it_reads_every_issue_once_without_pull_requests(sim):
    for number in range(1, 8):
        sim.github_issue(number=number, updated_at=at(number))
    sim.github_pull(number=50, updated_at=at(3, 30))
    sim.github_pull(number=51, updated_at=at(9))

    result = run(GITHUB, "issues", base_url=sim.url, config=config(per_page=3), secret=SECRET)

    assert sorted(r.data["number"] for r in result.records) == list(range(1, 8))
    assert all("pull_request" not in r.data for r in result.records)
    assert result.checkpoint["since"] == at(9)  # the pull request moved the boundary too
    first = sim.log("/issues")[0]
    assert first.headers["accept"] == "application/vnd.github+json"
    assert first.headers["x-github-api-version"] == "2022-11-28"
    assert first.headers["authorization"] == "Bearer ghp-good"
    assert first.headers["user-agent"]
    assert first.query == {
        "state": ["all"],
        "sort": ["updated"],
        "direction": ["asc"],
        "per_page": ["3"],
    }
    # Each later page is a fresh query from the boundary before it (keyset), inclusive.
    assert [r.query.get("since") for r in sim.log("/issues")[1:]] == [[at(3)], [at(4)], [at(6)]]


def test_it_loses_no_issue_when_one_is_updated_while_it_pages(sim):
    for number in range(1, 7):
        sim.github_issue(number=number, updated_at=at(number))

    def touch(page):
        if page == 1:  # issue 1, already read, is updated: it moves to the end
            sim.github_issue(number=1, updated_at=at(30), title="changed")

    result = run(
        GITHUB,
        "issues",
        base_url=sim.url,
        config=config(per_page=2),
        secret=SECRET,
        between_pages=touch,
    )

    numbers = [r.data["number"] for r in result.records]
    assert sorted(set(numbers)) == [1, 2, 3, 4, 5, 6]
    assert numbers.count(1) == 2  # the first version, then the changed one
    assert result.records[-1].data["title"] == "changed"


def test_it_keeps_ties_inside_one_second_across_pages_and_runs(sim):
    for number in range(1, 6):
        sim.github_issue(number=number, updated_at=at(5))

    first = run(GITHUB, "issues", base_url=sim.url, config=config(per_page=2), secret=SECRET)

    assert sorted(r.data["number"] for r in first.records) == [1, 2, 3, 4, 5]
    assert first.checkpoint["since"] == at(5)
    assert len(first.checkpoint["seen"]) == 5
    # More than a page inside one second: after the keyset query from that second found
    # only issues already read, GitHub's own Link was followed.
    assert [r.query.get("page") for r in sim.log("/issues")] == [None, None, ["2"], ["3"]]

    # The next run: one more issue lands in the same second, one of the five changes.
    sim.github_issue(number=6, updated_at=at(5))
    sim.github_issue(number=2, updated_at=at(5), title="renamed")
    second = run(
        GITHUB,
        "issues",
        base_url=sim.url,
        config=config(per_page=2),
        secret=SECRET,
        checkpoint=first.checkpoint,
    )

    assert sorted(r.data["number"] for r in second.records) == [2, 6]
    assert sum(page.skipped for page in second.pages) == 4


def test_it_answers_a_conditional_request_with_not_modified(sim):
    sim.github_issue(number=1, updated_at=at(1))
    first = run(GITHUB, "issues", base_url=sim.url, config=config(), secret=SECRET)
    second = run(
        GITHUB,
        "issues",
        base_url=sim.url,
        config=config(),
        secret=SECRET,
        checkpoint=first.checkpoint,
    )
    assert second.records == []  # the boundary issue read again, and dropped
    remaining = sim.rate_remaining

    third = run(
        GITHUB,
        "issues",
        base_url=sim.url,
        config=config(),
        secret=SECRET,
        checkpoint=second.checkpoint,
    )

    assert third.pages[0].not_modified
    assert third.records == []
    assert sim.log("/issues")[-1].headers["if-none-match"] == second.checkpoint["etag"]
    assert sim.log("/issues")[-1].status == 304
    assert sim.rate_remaining == remaining  # a 304 costs nothing
    assert third.checkpoint["since"] == second.checkpoint["since"]

    sim.github_issue(number=1, updated_at=at(2), title="new")
    fourth = run(
        GITHUB,
        "issues",
        base_url=sim.url,
        config=config(),
        secret=SECRET,
        checkpoint=third.checkpoint,
    )
    assert [r.data["title"] for r in fourth.records] == ["new"]


def test_it_reads_pull_requests_newest_first_until_the_checkpoint(sim):
    for number in range(1, 6):
        sim.github_pull(number=number, updated_at=at(number))

    first = run(GITHUB, "pull_requests", base_url=sim.url, config=config(per_page=2), secret=SECRET)
    assert sorted(r.data["number"] for r in first.records) == [1, 2, 3, 4, 5]
    assert first.checkpoint["since"] == at(5)
    assert sim.log("/pulls")[0].query["direction"] == ["desc"]
    assert "since" not in sim.log("/pulls")[0].query  # the endpoint has none

    sim.clear_log()
    sim.github_pull(number=2, updated_at=at(20), merged_at=at(20))
    second = run(
        GITHUB,
        "pull_requests",
        base_url=sim.url,
        config=config(per_page=2),
        secret=SECRET,
        checkpoint=first.checkpoint,
    )

    assert [r.data["number"] for r in second.records] == [2]
    assert len(sim.log("/pulls")) == 2  # stopped at the first page older than the checkpoint
    assert second.checkpoint["since"] == at(20)


def test_it_tells_rate_limits_from_permissions():
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    reset = int((now + timedelta(minutes=7)).timestamp())
    primary = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    assert GITHUB.classify(403, primary) == "rate_limited"
    assert GITHUB.wait_until(403, primary, now=now) == now + timedelta(minutes=7)

    secondary = b'{"message": "You have exceeded a secondary rate limit."}'
    headers = {"x-ratelimit-remaining": "4000"}
    assert GITHUB.classify(403, headers, secondary) == "rate_limited"
    # No retry-after and requests left: wait at least a minute.
    assert GITHUB.wait_until(403, headers, now=now, body=secondary) == now + timedelta(minutes=1)
    assert GITHUB.wait_until(429, {"Retry-After": "90"}, now=now) == now + timedelta(seconds=90)

    assert GITHUB.classify(403, headers, b'{"message": "Resource not accessible"}') == "fatal"
    assert GITHUB.classify(401, {}) == "auth"
    assert GITHUB.classify(502, {}) == "retryable"
    # Retry-After and an exhausted budget: the longest wait wins.
    both = {**primary, "retry-after": "30"}
    assert GITHUB.wait_until(429, both, now=now) == now + timedelta(minutes=7)


def test_it_verifies_and_probes_against_the_vendor(sim):
    from core import outbound

    sim.github_issue(number=1, updated_at=at(1))
    verify = GITHUB.verification_request(base_url=sim.url, config=config())
    probe = GITHUB.probe_request(base_url=sim.url, config=config())
    good = GITHUB.auth_headers(SECRET)

    assert outbound.request("GET", verify.url, headers={**verify.headers, **good}).status == 200
    bad = {**verify.headers, **GITHUB.auth_headers({"token": "wrong"})}
    assert outbound.request("GET", verify.url, headers=bad).status == 401
    assert verify.url.endswith("/repos/acme/app")
    reply = outbound.request("GET", probe.url, headers={**probe.headers, **good})
    assert reply.status == 200 and reply.headers["x-ratelimit-limit"] == "5000"
