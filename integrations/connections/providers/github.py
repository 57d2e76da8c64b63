"""GitHub REST API (api.github.com, or GitHub Enterprise Server at https://HOST/api/v3).

Wire format, from docs.github.com/rest:
- `GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&per_page=100&since=`
  ("List repository issues"; `since` is ISO 8601 `YYYY-MM-DDTHH:MM:SSZ`, updated at or after).
  GitHub's REST API considers every pull request an issue: items with a `pull_request` key
  are pull requests and are left to the pull_requests stream.
- `GET /repos/{owner}/{repo}/pulls?state=all&sort=updated&direction=desc&per_page=100`
  ("List pull requests"; it has no `since`): newest first, read until the checkpoint.
  Descending order is safe while a run pages: a pull request updated meanwhile jumps to the
  front (read by the next run, since it is newer than this run's checkpoint) and can only
  shift an already-read one onto the next page (read twice, dropped by its hash), never shift
  an unread one away.
- Pagination by `Link: <...>; rel="next"`; headers `Accept: application/vnd.github+json`,
  `X-GitHub-Api-Version: 2022-11-28`, a User-Agent (required), `Authorization: Bearer`.
- Conditional requests: the reply's ETag, sent back as If-None-Match; a 304 does not count
  against the primary rate limit.
- Rate limits: `x-ratelimit-limit/-remaining/-used/-reset` (reset in UTC epoch seconds);
  primary limit exhausted: 403 or 429 with remaining 0, wait until reset; secondary limits:
  403 or 429, `retry-after` if present, else reset if remaining is 0, else at least a minute.
- Verification `GET /repos/{owner}/{repo}` (token valid and the repository readable; `GET
  /user` when no repository is configured, which installation tokens cannot call); probe
  `GET /rate_limit`, which does not count against the limit.
- Keys: GitHub has no API that creates personal access tokens, so rotation is a token an
  operator supplies, or an OAuth refresh for GitHub App user tokens (which expire after 8
  hours; refresh tokens rotate) at https://github.com/login/oauth/access_token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from integrations.connections.providers.base import (
    Action,
    KeyApi,
    OAuth2,
    OutboundRequest,
    Page,
    Provider,
    RateLimitPolicy,
    Record,
    RetryDefaults,
    Stream,
    advance,
    boundary_filter,
    header,
    iso,
    json_body,
    link_next,
    parse_instant,
)

API_VERSION = "2022-11-28"
PER_PAGE = 100
HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": API_VERSION,
    "User-Agent": "worker-platform-integrations",
}
# The repository objects embedded in a pull request (head.repo, base.repo) carry counters and
# push times of the whole repository: they change with every push to any branch.
_REPO_VOLATILE = (
    "pushed_at",
    "updated_at",
    "stargazers_count",
    "watchers_count",
    "watchers",
    "forks_count",
    "forks",
    "open_issues_count",
    "open_issues",
    "size",
)


GITHUB_RATE_LIMIT = RateLimitPolicy(
    rate=5000 / 3600,  # a personal access token's primary limit
    burst=100,  # GitHub's concurrency guidance: no more than 100 at once
    scope="credential",
    limit_header="x-ratelimit-limit",
    remaining_header="x-ratelimit-remaining",
    reset_header="x-ratelimit-reset",
    reset_kind="epoch",
    retry_after_header="retry-after",
    statuses=(403, 429),
    default_wait_seconds=60.0,
)

GITHUB_RETRY = RetryDefaults()

GITHUB_OAUTH2 = OAuth2(
    token_url="https://github.com/login/oauth/access_token",
    grants=("refresh_token",),
    rotating_refresh_token=True,
)


@dataclass(frozen=True)
class GitHub(Provider):
    name: str = "github"
    title: str = "GitHub"
    default_base_url: str = "https://api.github.com"
    auth_kinds: tuple[str, ...] = ("token", "oauth2")
    streams: tuple[Stream, ...] = (
        Stream(
            "issues",
            "Issues of a repository (pull requests excluded)",
            # Reactions change without the issue's updated_at changing; `score` is search's.
            ignored_fields=("reactions", "score"),
            event="WorkItemCreated/WorkItemUpdated",
        ),
        Stream(
            "pull_requests",
            "Pull requests of a repository",
            ignored_fields=tuple(
                f"{side}.repo.{name}" for side in ("head", "base") for name in _REPO_VOLATILE
            ),
            event="PullRequestMerged",
            needs_previous=True,  # a merge is news when merged_at first appears
        ),
    )
    rate_limit: RateLimitPolicy = GITHUB_RATE_LIMIT
    retryable_statuses: tuple[int, ...] = (408, 500, 502, 503, 504)
    retry: RetryDefaults = GITHUB_RETRY
    key_api: KeyApi | None = None
    oauth2: OAuth2 | None = GITHUB_OAUTH2
    rotation: str = "operator"
    no_key_api_reason: str = (
        "GitHub has no API that creates personal access tokens, and an installation token is "
        "minted by a GitHub App's private key, not by a token; rotate a GitHub App user token "
        "by OAuth refresh, or supply a new token"
    )
    docs_url: str = "https://docs.github.com/en/rest/issues/issues#list-repository-issues"
    config_fields: tuple[str, ...] = ("owner", "repo", "per_page")

    def is_rate_limited(self, status: int, headers: Mapping[str, str], body: bytes) -> bool:
        if status == 429:
            return True
        # A 403 is a rate limit only when GitHub says so; otherwise it is a permission.
        return (
            header(headers, "x-ratelimit-remaining") == "0"
            or header(headers, "retry-after") is not None
            or b"rate limit" in body.lower()
        )

    def auth_headers(
        self, secret: dict[str, Any], config: dict[str, Any] | None = None
    ) -> dict[str, str]:
        token = secret.get("access_token") or secret.get("token")
        if not token:
            raise ValueError("A GitHub secret needs a token (or an OAuth access_token).")
        return {"Authorization": f"Bearer {token}"}

    def verification_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        if config.get("owner") and config.get("repo"):
            return OutboundRequest("GET", self._repo_url(base_url, config), HEADERS)
        return OutboundRequest("GET", f"{self.base_url(base_url)}/user", HEADERS)

    def probe_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        return OutboundRequest("GET", f"{self.base_url(base_url)}/rate_limit", HEADERS)

    # --- paging -------------------------------------------------------------------------------

    def first_request(
        self, stream: str, *, base_url: str, checkpoint: dict[str, Any], config: dict[str, Any]
    ) -> OutboundRequest:
        self.stream(stream)
        if stream == "issues":
            if checkpoint.get("next_url"):  # resuming inside one second of > a page of issues
                return OutboundRequest("GET", checkpoint["next_url"], HEADERS)
            url = self._issues_url(base_url, config, checkpoint.get("since"))
        else:
            run = checkpoint.get("run") or {}
            if run.get("next_url"):
                return OutboundRequest("GET", run["next_url"], HEADERS)
            url = self._pulls_url(base_url, config)
        request = OutboundRequest("GET", url, HEADERS)
        if checkpoint.get("etag") and checkpoint.get("etag_url") == url:
            request = request.with_headers({"If-None-Match": checkpoint["etag"]})
        return request

    def parse_page(
        self,
        stream: str,
        *,
        request: OutboundRequest,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        checkpoint: dict[str, Any],
        config: dict[str, Any] | None = None,
    ) -> Page:
        if status == 304:  # nothing changed since the ETag was taken
            kept = {k: v for k, v in checkpoint.items() if k not in ("next_url", "run")}
            return Page([], None, kept, complete=True, not_modified=True)
        items = json_body(body)
        if not isinstance(items, list):
            raise ValueError("GitHub answered a list request with something not a list.")
        if stream == "issues":
            return self._issues_page(request, headers, items, checkpoint, config or {})
        return self._pulls_page(request, headers, items, checkpoint)

    def _issues_page(
        self,
        request: OutboundRequest,
        headers: Mapping[str, str],
        items: list[dict[str, Any]],
        checkpoint: dict[str, Any],
        config: dict[str, Any],
    ) -> Page:
        since = parse_instant(checkpoint["since"]) if checkpoint.get("since") else None
        seen = dict(checkpoint.get("seen") or {})
        pairs = [(_record(item), parse_instant(item["updated_at"])) for item in items]
        issues = [(r, t) for r, t in pairs if "pull_request" not in r.data]

        def hash_of(record: Record) -> str:
            return self.content_hash("issues", record.data)

        kept, skipped = boundary_filter(
            issues, since=since, seen=seen, precision="second", hash_of=hash_of
        )
        new_since, new_seen = advance(
            issues, since=since, seen=seen, precision="second", hash_of=hash_of
        )
        # The boundary moves with pull requests too (they share the ordering), so a page of
        # only pull requests still makes progress; they are never in `seen`'s business.
        for _, instant in pairs:
            unit = instant.replace(microsecond=0)
            if new_since is None or unit > new_since:
                new_since, new_seen = unit, {}
        saved: dict[str, Any] = {"since": iso(new_since) if new_since else None, "seen": new_seen}
        etag = header(headers, "etag")
        if etag:
            saved.update(etag=etag, etag_url=request.url)
        elif checkpoint.get("etag"):
            saved.update(etag=checkpoint["etag"], etag_url=checkpoint.get("etag_url"))
        following = link_next(header(headers, "link"))
        if following is None:
            return Page(kept, None, saved, complete=True, skipped=skipped)
        if new_since is not None and (since is None or new_since > since):
            # Keyset: the next page is a fresh query from the new boundary.
            base = request.url.split("/repos/", 1)[0]
            url = self._issues_url(base, config, iso(new_since), base_is_api=True)
            return Page(kept, OutboundRequest("GET", url, HEADERS), saved, False, skipped=skipped)
        # More than a page of issues inside one second: follow GitHub's own link until the
        # page leaves that second.
        saved["next_url"] = following
        return Page(kept, OutboundRequest("GET", following, HEADERS), saved, False, skipped=skipped)

    def _pulls_page(
        self,
        request: OutboundRequest,
        headers: Mapping[str, str],
        items: list[dict[str, Any]],
        checkpoint: dict[str, Any],
    ) -> Page:
        since = parse_instant(checkpoint["since"]) if checkpoint.get("since") else None
        seen = dict(checkpoint.get("seen") or {})
        run = checkpoint.get("run") or {}
        pairs = [(_record(item), parse_instant(item["updated_at"])) for item in items]

        def hash_of(record: Record) -> str:
            return self.content_hash("pull_requests", record.data)

        reached = since is not None and any(t.replace(microsecond=0) < since for _, t in pairs)
        fresh = [(r, t) for r, t in pairs if since is None or t.replace(microsecond=0) >= since]
        kept, skipped = boundary_filter(
            fresh, since=since, seen=seen, precision="second", hash_of=hash_of
        )
        run_since = parse_instant(run["since"]) if run.get("since") else since
        run_seen = run.get("seen", seen) if run else seen
        run_since, run_seen = advance(
            fresh, since=run_since, seen=run_seen, precision="second", hash_of=hash_of
        )
        etag = run.get("etag") if run else header(headers, "etag")
        etag_url = run.get("etag_url") if run else request.url
        following = link_next(header(headers, "link"))
        if following is not None and not reached:
            saved = {
                "since": checkpoint.get("since"),
                "seen": seen,
                "etag": checkpoint.get("etag"),
                "etag_url": checkpoint.get("etag_url"),
                "run": {
                    "since": iso(run_since) if run_since else None,
                    "seen": run_seen,
                    "next_url": following,
                    "etag": etag,
                    "etag_url": etag_url,
                },
            }
            request = OutboundRequest("GET", following, HEADERS)
            return Page(kept, request, saved, complete=False, skipped=skipped)
        saved = {"since": iso(run_since) if run_since else None, "seen": run_seen}
        if etag:
            saved.update(etag=etag, etag_url=etag_url)
        return Page(kept, None, saved, complete=True, skipped=skipped)

    # --- URLs ---------------------------------------------------------------------------------

    def _repo_url(self, base_url: str, config: dict[str, Any], *, base_is_api: bool = False) -> str:
        owner, repo = config.get("owner"), config.get("repo")
        if not owner or not repo:
            raise ValueError("A GitHub connection's config needs owner and repo.")
        base = base_url.rstrip("/") if base_is_api else self.base_url(base_url)
        return f"{base}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"

    def _issues_url(
        self,
        base_url: str,
        config: dict[str, Any],
        since: str | None,
        *,
        base_is_api: bool = False,
    ) -> str:
        query = {
            "state": "all",
            "sort": "updated",
            "direction": "asc",
            "per_page": int(config.get("per_page") or PER_PAGE),
        }
        if since:
            query["since"] = since
        repo = self._repo_url(base_url, config, base_is_api=base_is_api)
        return f"{repo}/issues?{urlencode(query)}"

    def _pulls_url(self, base_url: str, config: dict[str, Any]) -> str:
        query = {
            "state": "all",
            "sort": "updated",
            "direction": "desc",
            "per_page": int(config.get("per_page") or PER_PAGE),
        }
        return f"{self._repo_url(base_url, config)}/pulls?{urlencode(query)}"

    # --- the factory's view ---------------------------------------------------------------------

    def factory_event(
        self,
        stream: str,
        record: Record,
        action: Action,
        *,
        previous: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]] | None:
        data = record.data
        repository = _repository(data)
        if stream == "issues":
            kind = "WorkItemCreated" if action == "added" else "WorkItemUpdated"
            return kind, {
                "source": self.name,
                "externalId": record.external_id,
                "key": f"{repository}#{data.get('number')}",
                "repository": repository,
                "number": data.get("number"),
                "title": data.get("title") or "",
                "state": data.get("state") or "",
                "url": data.get("html_url") or "",
                "labels": [_name(label) for label in data.get("labels") or []],
                "assignees": [a.get("login") for a in data.get("assignees") or [] if a],
                "author": (data.get("user") or {}).get("login"),
                "createdAt": data.get("created_at"),
                "updatedAt": data.get("updated_at"),
                "closedAt": data.get("closed_at"),
                "deleted": action == "deleted",
            }
        # pull_requests: a merge is news once, when merged_at first appears.
        if action == "deleted" or not data.get("merged_at"):
            return None
        if previous is not None and previous.get("merged_at"):
            return None
        return "PullRequestMerged", {
            "source": self.name,
            "externalId": record.external_id,
            "repository": repository,
            "number": data.get("number"),
            "title": data.get("title") or "",
            "url": data.get("html_url") or "",
            "mergedAt": data.get("merged_at"),
            "mergeCommitSha": data.get("merge_commit_sha"),
            "baseRef": (data.get("base") or {}).get("ref"),
            "headRef": (data.get("head") or {}).get("ref"),
            "author": (data.get("user") or {}).get("login"),
        }


def _record(item: dict[str, Any]) -> Record:
    return Record(external_id=str(item["id"]), cursor=item["updated_at"], data=item)


def _repository(data: dict[str, Any]) -> str:
    url = data.get("repository_url") or ((data.get("base") or {}).get("repo") or {}).get("url")
    if url and "/repos/" in url:
        return url.split("/repos/", 1)[1]
    return ((data.get("base") or {}).get("repo") or {}).get("full_name") or ""


def _name(label: Any) -> str:
    return label.get("name", "") if isinstance(label, dict) else str(label)


GITHUB = GitHub()
