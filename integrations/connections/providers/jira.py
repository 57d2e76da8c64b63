"""Jira: Cloud (REST v3) and Data Center / Server (REST v2), issues by JQL `updated >=`.

Wire format, from developer.atlassian.com:
- Cloud: `POST /rest/api/3/search/jql` ("Search for issues using JQL enhanced search"), body
  `{"jql", "maxResults", "fields", "nextPageToken"}`, reply `{"issues": [...], "nextPageToken",
  "isLast"}`; Cloud removed the startAt search (`/rest/api/3/search`) in 2025. The last page
  may omit `nextPageToken` altogether (JRACLOUD-92184), so either sign ends the search. Only
  `id` comes back unless `fields` are asked for, so they are.
- Data Center: `GET /rest/api/2/search?jql=&startAt=&maxResults=&fields=`, reply
  `{"startAt", "maxResults", "total", "issues": [...]}`.
- JQL: `project = "X" AND updated >= "yyyy-MM-dd HH:mm" ORDER BY updated ASC, key ASC`. A JQL
  date has minute precision and is read in the time zone of the user the credential belongs
  to (config `timezone`, an IANA name, default UTC; `GET /rest/api/3/myself` reports it).
  Checkpoint: the latest `updated` truncated to the minute, plus every issue read inside that
  minute with its hash; the next query asks from that minute inclusive and drops what it has
  seen (base.py's module doc). Each page is a fresh query from the checkpoint (keyset); the
  vendor's own paging (token or startAt) is followed only while more than a page of issues
  share one minute. A token Cloud refuses (expired: a paused run resumed late) restarts the
  query from the checkpoint (`restart_checkpoint`).
- Auth: Basic with the account's email and an API token (Cloud), Bearer with a personal access
  token (Data Center) or an OAuth 2.0 (3LO) access token (Cloud; refresh at
  https://auth.atlassian.com/oauth/token with a JSON body, as Atlassian documents it; refresh
  tokens rotate). A 3LO token works only through Atlassian's gateway, so such a connection's
  base URL is https://api.atlassian.com/ex/jira/<cloudId> (the site's own URL is refused for
  it). Atlassian has no public API that creates API tokens: rotation is a token an operator
  supplies, or the OAuth refresh.
- Rate limits, Cloud: 429 (or 503) with `Retry-After` (seconds) and `X-RateLimit-Reset` (ISO
  8601), `X-RateLimit-Limit/-Remaining`, `RateLimit-Reason`. Data Center (when an admin turns
  it on): `X-RateLimit-Limit/-Remaining/-Interval-Seconds/-FillRate`, `retry-after`.
- Verification `GET /rest/api/{3|2}/myself`; probe `GET /rest/api/{3|2}/serverInfo`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

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
    iso,
    json_body,
    parse_instant,
)

MAX_RESULTS = 100
FIELDS = (
    "summary",
    "status",
    "issuetype",
    "priority",
    "assignee",
    "reporter",
    "labels",
    "project",
    "created",
    "updated",
    "resolutiondate",
)
HEADERS = {"Accept": "application/json"}
ISSUES = Stream(
    "issues",
    "Issues matching the connection's JQL",
    # lastViewed is the time the *credential's user* last opened the issue, isWatching and
    # hasVoted are that user's flags, and `expand` echoes the request: none is the issue.
    ignored_fields=(
        "expand",
        "fields.lastViewed",
        "fields.watches.isWatching",
        "fields.votes.hasVoted",
    ),
    event="WorkItemCreated/WorkItemUpdated",
)


JIRA_RATE_LIMIT = RateLimitPolicy(
    rate=10.0,  # Atlassian publishes none (cost-based); a polite default
    burst=20,
    scope="credential",
    limit_header="x-ratelimit-limit",
    remaining_header="x-ratelimit-remaining",
    reset_header="x-ratelimit-reset",
    reset_kind="iso",
    retry_after_header="retry-after",
    statuses=(429,),
)

JIRA_RETRY = RetryDefaults()

JIRA_OAUTH2 = OAuth2(
    token_url="https://auth.atlassian.com/oauth/token",
    grants=("refresh_token",),
    rotating_refresh_token=True,
)


@dataclass(frozen=True)
class Jira(Provider):
    name: str = "jira"
    title: str = "Jira Cloud"
    default_base_url: str = ""  # every site has its own: https://<site>.atlassian.net
    auth_kinds: tuple[str, ...] = ("basic", "token", "oauth2")
    streams: tuple[Stream, ...] = (ISSUES,)
    rate_limit: RateLimitPolicy = JIRA_RATE_LIMIT
    retryable_statuses: tuple[int, ...] = (408, 500, 502, 503, 504)
    retry: RetryDefaults = JIRA_RETRY
    key_api: KeyApi | None = None
    oauth2: OAuth2 | None = JIRA_OAUTH2
    rotation: str = "operator"
    docs_url: str = (
        "https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/"
    )
    config_fields: tuple[str, ...] = ("project", "jql", "timezone", "fields", "max_results")
    api: str = "3"
    cloud: bool = True

    def verification_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        return OutboundRequest("GET", f"{self._base(base_url)}/rest/api/{self.api}/myself", HEADERS)

    def probe_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        url = f"{self._base(base_url)}/rest/api/{self.api}/serverInfo"
        return OutboundRequest("GET", url, HEADERS)

    def _base(self, base_url: str) -> str:
        base = self.base_url(base_url)
        if not base:
            raise ValueError(f"A {self.title} connection needs its site's base URL.")
        return base

    # --- paging -------------------------------------------------------------------------------

    def jql(self, config: dict[str, Any], since: str | None) -> str:
        clauses = []
        if config.get("jql"):
            clauses.append(f"({config['jql']})")
        if config.get("project"):
            project = str(config["project"]).replace("\\", "\\\\").replace('"', '\\"')
            clauses.append(f'project = "{project}"')
        if not clauses:
            raise ValueError("A Jira connection's config needs a project or a jql filter.")
        if since:
            clauses.append(f'updated >= "{_jql_date(parse_instant(since), config)}"')
        return " AND ".join(clauses) + " ORDER BY updated ASC, key ASC"

    def first_request(
        self, stream: str, *, base_url: str, checkpoint: dict[str, Any], config: dict[str, Any]
    ) -> OutboundRequest:
        self.stream(stream)
        page = checkpoint.get("page") or {}
        since = page.get("since", checkpoint.get("since")) if page else checkpoint.get("since")
        return self._search(base_url, config, since, page)

    def _search(
        self, base_url: str, config: dict[str, Any], since: str | None, page: dict[str, Any]
    ) -> OutboundRequest:
        size = int(config.get("max_results") or MAX_RESULTS)
        fields = list(config.get("fields") or FIELDS)
        jql = self.jql(config, since)
        if self.cloud:
            body: dict[str, Any] = {"jql": jql, "maxResults": size, "fields": fields}
            if page.get("token"):
                body["nextPageToken"] = page["token"]
            return OutboundRequest(
                "POST",
                f"{self._base(base_url)}/rest/api/3/search/jql",
                {**HEADERS, "Content-Type": "application/json"},
                json.dumps(body).encode(),
            )
        query = {
            "jql": jql,
            "startAt": int(page.get("startAt") or 0),
            "maxResults": size,
            "fields": ",".join(fields),
        }
        return OutboundRequest(
            "GET", f"{self._base(base_url)}/rest/api/2/search?{urlencode(query)}", HEADERS
        )

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
        config = config or {}
        reply = json_body(body)
        if not isinstance(reply, dict) or not isinstance(reply.get("issues"), list):
            raise ValueError("Jira's search reply has no issues list.")
        issues = reply["issues"]
        since = parse_instant(checkpoint["since"]) if checkpoint.get("since") else None
        seen = dict(checkpoint.get("seen") or {})
        pairs = [(_record(issue), parse_instant(issue["fields"]["updated"])) for issue in issues]

        def hash_of(record: Record) -> str:
            return self.content_hash(stream, record.data)

        kept, skipped = boundary_filter(
            pairs, since=since, seen=seen, precision="minute", hash_of=hash_of
        )
        new_since, new_seen = advance(
            pairs, since=since, seen=seen, precision="minute", hash_of=hash_of
        )
        saved: dict[str, Any] = {"since": iso(new_since) if new_since else None, "seen": new_seen}
        if self.cloud:
            last = bool(reply.get("isLast")) or not reply.get("nextPageToken") or not issues
        else:
            start = int(reply.get("startAt") or 0)
            last = not issues or start + len(issues) >= int(reply.get("total") or 0)
        base_url = request.url.split("/rest/api/", 1)[0]
        if last:
            return Page(kept, None, saved, complete=True, skipped=skipped)
        if new_since is not None and (since is None or new_since > since):
            following = self._search(base_url, config, saved["since"], {})
            return Page(kept, following, saved, complete=False, skipped=skipped)
        # A whole page inside the boundary minute: page on with the same query.
        if self.cloud:
            page = {"token": reply["nextPageToken"]}
        else:
            page = {"startAt": int(reply.get("startAt") or 0) + len(issues)}
        page["since"] = checkpoint.get("since")
        saved["page"] = page
        following = self._search(base_url, config, page["since"], page)
        return Page(kept, following, saved, complete=False, skipped=skipped)

    def refuse_kind(self, kind: str, *, base_url: str = "") -> str | None:
        """An OAuth 2.0 (3LO) access token works only through Atlassian's API gateway: the
        site's own URL answers it 401 however valid it is."""
        if kind == "oauth2" and self.cloud and _is_site(base_url):
            return (
                "Jira Cloud accepts OAuth 2.0 (3LO) tokens only through Atlassian's gateway: "
                "set the connection's base URL to https://api.atlassian.com/ex/jira/<cloudId>, "
                "not the site's own (it answers such a token 401)."
            )
        return super().refuse_kind(kind, base_url=base_url)

    def token_body(self, form: dict[str, str]) -> tuple[str, bytes]:
        """Atlassian's token endpoint as its documentation calls it: a JSON body."""
        return "application/json", json.dumps(form).encode()

    def restart_checkpoint(self, status: int, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
        """Where to read from when Jira refused the paging position a request carried, or None
        when the refusal stands. Cloud's nextPageToken expires (a run paused for a long rate
        limit resumes with a stale one), and Jira answers an expired or unknown token 400 in
        its errorMessages envelope, worded in the account's language: so a 400 to a request
        that carried a token is read as the token's refusal, and the same query runs afresh
        from the checkpoint's inclusive minute, whose seen hashes drop what the token had
        paged past. A second 400, to the fresh query, is the query's own and fails the run."""
        page = checkpoint.get("page") or {}
        if not (self.cloud and status == 400 and page.get("token")):
            return None
        fresh = {name: value for name, value in checkpoint.items() if name != "page"}
        fresh["since"] = page.get("since", checkpoint.get("since"))
        return fresh

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
        fields = data.get("fields") or {}
        status = fields.get("status") or {}
        site = (data.get("self") or "").split("/rest/api/", 1)[0]
        key = data.get("key") or ""
        kind = "WorkItemCreated" if action == "added" else "WorkItemUpdated"
        return kind, {
            "source": self.name,
            "externalId": record.external_id,
            "key": key,
            "project": (fields.get("project") or {}).get("key"),
            "title": fields.get("summary") or "",
            "state": status.get("name") or "",
            "statusCategory": (status.get("statusCategory") or {}).get("key"),
            "type": (fields.get("issuetype") or {}).get("name"),
            "priority": (fields.get("priority") or {}).get("name"),
            "labels": list(fields.get("labels") or []),
            "assignees": [_person(fields.get("assignee"))] if fields.get("assignee") else [],
            "author": _person(fields.get("reporter")),
            "url": f"{site}/browse/{key}" if site and key else "",
            "createdAt": fields.get("created"),
            "updatedAt": fields.get("updated"),
            "closedAt": fields.get("resolutiondate"),
            "deleted": action == "deleted",
        }


def _record(issue: dict[str, Any]) -> Record:
    return Record(external_id=str(issue["id"]), cursor=issue["fields"]["updated"], data=issue)


def _person(person: dict[str, Any] | None) -> str | None:
    if not person:
        return None
    return person.get("accountId") or person.get("name") or person.get("displayName")


def _jql_date(since: datetime, config: dict[str, Any]) -> str:
    """The boundary minute in the credential user's time zone. Near a daylight-saving change
    a local minute can be ambiguous: ask from an hour earlier then (what comes back older than
    the boundary is dropped)."""
    zone = ZoneInfo(config.get("timezone") or "UTC")
    local = since.astimezone(zone)
    if local.utcoffset() != (since - timedelta(hours=2)).astimezone(zone).utcoffset():
        local = (since - timedelta(hours=1)).astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M")


JIRA_CLOUD = Jira()
JIRA_DATA_CENTER = Jira(
    name="jira_datacenter",
    title="Jira Data Center",
    auth_kinds=("token", "basic"),
    rate_limit=RateLimitPolicy(
        rate=5.0,
        burst=10,
        scope="credential",
        limit_header="x-ratelimit-limit",
        remaining_header="x-ratelimit-remaining",
        reset_header="",
        reset_kind="",
        retry_after_header="retry-after",
        statuses=(429,),
    ),
    oauth2=None,
    docs_url="https://developer.atlassian.com/server/jira/platform/rest/v10000/api-group-search/",
    api="2",
    cloud=False,
)


def _is_site(base_url: str) -> bool:
    """Whether the URL is a Jira Cloud site's own (https://<site>.atlassian.net)."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host == "atlassian.net" or host.endswith(".atlassian.net")
