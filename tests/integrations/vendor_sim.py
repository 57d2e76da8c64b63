"""A vendor simulator on 127.0.0.1 that speaks the GitHub and Jira (Cloud and Data Center) wire
formats, an OAuth 2.0 token endpoint and a small "generic" JSON API with a key API, for the
sync, health and rotation tests. One real HTTP server (ThreadingHTTPServer).

In a thread:  sim = VendorSim(); sim.start(); ...; sim.close()
As a process: python -m tests.integrations.vendor_sim --port 0 --state seed.json [--ready f]
  (prints "listening on http://127.0.0.1:PORT"; --ready writes that URL to a file). A process
  is driven over HTTP: `POST /_sim/call {"method": name, "kwargs": {...}}` calls one of the
  public methods below (SimClient does it), `GET /_sim/log` returns the request log.

What it speaks (the parts the providers use, wire-exact):
- GitHub: `GET /repos/{o}/{r}/issues` (state, sort=updated|created, direction, since
  inclusive, per_page ≤ 100, page; pull requests appear as issues with a `pull_request` key),
  `GET /repos/{o}/{r}/pulls` (no since), `GET /repos/{o}/{r}`, `GET /user`, `GET /rate_limit`;
  Link rel="next"/"last"; ETag + If-None-Match → 304 (not counted); x-ratelimit-* headers
  counting down, 403 with remaining 0 when spent; Bearer tokens.
- Jira Cloud `POST /rest/api/3/search/jql` (nextPageToken, isLast; the last page has no
  token), Data Center `GET /rest/api/2/search` (startAt, maxResults, total); JQL `project =`,
  `updated >= "yyyy-MM-dd HH:mm"` read at minute precision in `jira_timezone`, ORDER BY updated
  ASC, key ASC; `/rest/api/{2,3}/myself`, `/serverInfo`; Basic (email:token) or Bearer.
- `POST /oauth/token`: refresh_token (rotating) and client_credentials grants.
- Generic: `GET /api/items` (updated_since inclusive; page/per_page), `GET /api/me`, and a
  key API for a generic connection configured with `key_create_path: "/api/keys"`:
  `POST /api/keys` → 201 {"id": "key-N", "token"} (an Idempotency-Key repeated gets the first
  answer again, as Stripe's API does, and mints nothing), `DELETE /api/keys/{id}` (the key's
  token answers 401 from then on). Only the generic API has one: GitHub and Jira paths answer
  404 to key requests, as the real services would. `add_key` seeds a key; `created` counts
  the keys minted, `token_of`/`revoked` read them.
Switches: `fail(...)` queues faults (429 + Retry-After, secondary-limit 403, 5xx bursts, slow
replies, a refused verification) for matching paths, `clear_faults()` drops those left;
`expire(token)` makes a token answer 401 until a refresh mints a new one;
`expire_jira_page_tokens()` makes every Jira Cloud nextPageToken issued so far answer 400;
`rate_remaining`;
every request is logged (`requests`, `log()`) before it is answered.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import threading
import time
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0  # seconds before answering (a slow reply; with status 0, then normal)
    times: int = 1
    path: str = ""  # only requests whose path contains this


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def iso_z(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jira_time(instant: datetime) -> str:
    instant = instant.astimezone(UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}+0000"


@functools.lru_cache(maxsize=65536)  # every list request sorts and filters by these
def parse_time(text: str) -> datetime:
    text = text.replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and ":" not in text[-5:]:
        text = text[:-2] + ":" + text[-2:]
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


JIRA_BAD_PAGE_TOKEN = {
    "errorMessages": ["The provided nextPageToken is invalid or has expired."],
    "errors": {},
}


class VendorSim:
    PUBLIC = (
        "github_issue",
        "github_pull",
        "jira_issue",
        "generic_item",
        "delete",
        "fail",
        "expire",
        "expire_jira_page_tokens",
        "add_token",
        "add_basic",
        "add_client",
        "add_key",
        "token_of",
        "revoked",
        "set",
        "clear_faults",
        "clear_log",
    )

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self.github: dict[str, dict[str, dict[str, Any]]] = {}  # "o/r" → issues/pulls by id
        self.jira: dict[str, dict[str, Any]] = {}  # id → issue
        self.items: dict[str, dict[str, Any]] = {}  # generic records by id
        self.tokens: dict[str, bool] = {}  # bearer token → valid
        self.basic: set[tuple[str, str]] = set()
        self.clients: dict[str, str] = {}  # OAuth client id → secret
        self.refresh_tokens: dict[str, str] = {}  # refresh token → client id
        self.keys: dict[str, dict[str, Any]] = {}  # key id → {"token", "revoked"}
        self.created = 0  # keys minted by POST /api/keys
        self.key_replies: dict[str, bytes] = {}  # Idempotency-Key → the first answer
        self.token_bodies: list[str] = []  # per /oauth/token request: "form" or "json"
        self.faults: deque[Fault] = deque()
        self.requests: list[Logged] = []
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self.rate_reset = int(time.time()) + 3600
        self.jira_timezone = "UTC"
        self.jira_lastviewed = True  # answer fields.lastViewed with "now" when asked for it
        self._next_id = 1000
        self._numbers: dict[tuple[str, str, Any], Any] = {}  # (repo, kind, number) → id
        # A list query's items in order, by its filter and order, until a GitHub item changes
        # (which empties it): a page then costs the simulator its page, not the repository (as
        # an indexed store answers), and its CPU is not taken from the platform beside it.
        self._github_lists: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._jira_tokens: dict[str, int] = {}
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> VendorSim:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- seeding ------------------------------------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def github_issue(
        self,
        *,
        repo: str = "acme/app",
        number: int,
        updated_at: str,
        title: str = "",
        state: str = "open",
        labels: list[str] | None = None,
        created_at: str | None = None,
        reactions: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create or update (by number) an issue with GitHub's shape."""
        with self.lock:
            issues = self.github.setdefault(repo, {"issues": {}, "pulls": {}})["issues"]
            old = issues.get(str(self._numbers.get((repo, "issues", number))))
            ident = old["id"] if old else self._id()
            api = f"{self.url}/repos/{repo}"
            item = {
                "id": ident,
                "node_id": f"I_{ident}",
                "number": number,
                "url": f"{api}/issues/{number}",
                "repository_url": api,
                "html_url": f"https://github.com/{repo}/issues/{number}",
                "title": title or f"Issue {number}",
                "state": state,
                "labels": [{"name": name} for name in labels or []],
                "user": {"login": "octocat", "id": 1},
                "assignees": [],
                "comments": 0,
                "created_at": created_at or (old["created_at"] if old else updated_at),
                "updated_at": updated_at,
                "closed_at": updated_at if state == "closed" else None,
                "reactions": {"total_count": reactions, "+1": reactions},
                **extra,
            }
            issues[str(ident)] = item
            self._numbers[(repo, "issues", number)] = ident
            self._github_lists.clear()
            return item

    def github_pull(
        self,
        *,
        repo: str = "acme/app",
        number: int,
        updated_at: str,
        title: str = "",
        merged_at: str | None = None,
        pushed_at: str = "2024-01-01T00:00:00Z",
        **extra: Any,
    ) -> dict[str, Any]:
        with self.lock:
            pulls = self.github.setdefault(repo, {"issues": {}, "pulls": {}})["pulls"]
            old = pulls.get(str(self._numbers.get((repo, "pulls", number))))
            ident = old["id"] if old else self._id()
            api = f"{self.url}/repos/{repo}"
            repository = {"full_name": repo, "url": api, "pushed_at": pushed_at}
            item = {
                "id": ident,
                "number": number,
                "url": f"{api}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "title": title or f"Pull {number}",
                "state": "closed" if merged_at else "open",
                "user": {"login": "octocat", "id": 1},
                "created_at": old["created_at"] if old else updated_at,
                "updated_at": updated_at,
                "closed_at": merged_at,
                "merged_at": merged_at,
                "merge_commit_sha": hashlib.sha1(f"{ident}{merged_at}".encode()).hexdigest()
                if merged_at
                else None,
                "head": {"ref": f"feature-{number}", "repo": dict(repository)},
                "base": {"ref": "main", "repo": dict(repository)},
                **extra,
            }
            pulls[str(ident)] = item
            self._numbers[(repo, "pulls", number)] = ident
            self._github_lists.clear()
            return item

    def jira_issue(
        self,
        *,
        key: str,
        updated: str,
        summary: str = "",
        status: str = "To Do",
        created: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create or update (by key) an issue; `updated` any ISO instant (kept to the ms)."""
        with self.lock:
            old = self.jira.get(str(self._numbers.get(("jira", "issues", key))))
            ident = old["id"] if old else str(self._id())
            when = parse_time(updated)
            issue = {
                "expand": "operations,versionedRepresentations,editmeta,changelog",
                "id": ident,
                "self": f"{self.url}/rest/api/3/issue/{ident}",
                "key": key,
                "fields": {
                    "summary": summary or f"Issue {key}",
                    "status": {"name": status, "statusCategory": {"key": "new"}},
                    "issuetype": {"name": "Task"},
                    "priority": {"name": "Medium"},
                    "assignee": None,
                    "reporter": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Ann"},
                    "labels": [],
                    "project": {"key": key.split("-")[0]},
                    "created": created or (old["fields"]["created"] if old else jira_time(when)),
                    "updated": jira_time(when),
                    "resolutiondate": None,
                    **fields,
                },
                "_updated": when.timestamp(),
            }
            self.jira[ident] = issue
            self._numbers[("jira", "issues", key)] = ident
            return issue

    def generic_item(self, *, id: str, updated_at: str, **data: Any) -> dict[str, Any]:
        with self.lock:
            item = {"id": id, "updated_at": updated_at, **data}
            self.items[id] = item
            return item

    def delete(self, *, kind: str, id: str, repo: str = "acme/app") -> None:
        with self.lock:
            if kind == "jira":
                self.jira.pop(id, None)
            elif kind == "generic":
                self.items.pop(id, None)
            else:
                self.github.get(repo, {}).get(kind, {}).pop(id, None)
                self._github_lists.clear()

    # --- switches -----------------------------------------------------------------------------

    def fail(
        self,
        *,
        status: int = 500,
        times: int = 1,
        path: str = "",
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
    ) -> None:
        """Queue `times` faulty answers for requests whose path and (decoded) query contain
        `path`. Status 0 with
        a delay: slow, then the normal answer. Examples: fail(status=429,
        headers={"Retry-After": "2"}); fail(status=403, body={"message": "You have exceeded a
        secondary rate limit."}); fail(status=502, times=3)."""
        with self.lock:
            self.faults.append(Fault(status, dict(headers or {}), body, delay, times, path))

    def expire_jira_page_tokens(self) -> None:
        """Every nextPageToken issued so far is refused from now on, as Jira Cloud's expire."""
        with self.lock:
            self._jira_tokens.clear()

    def add_token(self, *, token: str) -> None:
        with self.lock:
            self.tokens[token] = True

    def expire(self, *, token: str) -> None:
        """The token answers 401 from now on (a refresh mints a valid one)."""
        with self.lock:
            self.tokens[token] = False

    def add_basic(self, *, user: str, password: str) -> None:
        with self.lock:
            self.basic.add((user, password))

    def add_client(
        self, *, client_id: str, client_secret: str, refresh_token: str | None = None
    ) -> None:
        with self.lock:
            self.clients[client_id] = client_secret
            if refresh_token:
                self.refresh_tokens[refresh_token] = client_id

    def add_key(self, *, key_id: str, token: str) -> None:
        """A key that exists at the vendor already (a credential's first version)."""
        with self.lock:
            self.keys[key_id] = {"token": token, "revoked": False}
            self.tokens[token] = True

    def token_of(self, key_id: str) -> str:
        with self.lock:
            return str(self.keys[key_id]["token"])

    def revoked(self, key_id: str) -> bool:
        with self.lock:
            return bool(self.keys[key_id]["revoked"])

    def set(self, **values: Any) -> None:
        """Set plain attributes: rate_remaining, rate_limit, rate_reset, jira_timezone."""
        with self.lock:
            for name, value in values.items():
                if name not in ("rate_remaining", "rate_limit", "rate_reset", "jira_timezone"):
                    raise ValueError(f"cannot set {name}")
                setattr(self, name, value)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def log(self, path: str = "") -> list[Logged]:
        with self.lock:
            return [r for r in self.requests if path in r.path]

    def _fault_for(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- auth ---------------------------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        scheme, _, credentials = value.partition(" ")
        with self.lock:
            if scheme.lower() in ("bearer", "token"):
                return self.tokens.get(credentials, False)
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(credentials).decode().partition(":")
                except ValueError:
                    return False
                return (user, password) in self.basic
        return False

    # --- dispatch -----------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        target: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        """`target`: the path and the decoded query, which a fault's `path` is matched in."""
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        fault = self._fault_for(target or path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                payload = fault.body if fault.body is not None else {"message": "simulated"}
                return fault.status, dict(fault.headers), json.dumps(payload).encode()
        if path == "/oauth/token" and method == "POST":
            return self._token(body)
        if not self._authorized(headers):
            if path.startswith("/rest/api/"):
                return 401, {}, b'{"errorMessages":["You are not authenticated."]}'
            return 401, {}, b'{"message":"Bad credentials","status":"401"}'
        if path.startswith("/rest/api/"):
            return self._jira(method, path, query, body)
        if path.startswith("/api/"):
            return self._generic(method, path, query, headers)
        return self._github(method, path, query, headers)

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/_sim/log":
            with self.lock:
                rows = [
                    {**asdict(r), "body": r.body.decode(errors="replace")} for r in self.requests
                ]
            return 200, {}, json.dumps(rows).encode()
        if path == "/_sim/call" and method == "POST":
            call = json.loads(body)
            if call["method"] not in self.PUBLIC:
                return 400, {}, b'{"message":"not a public method"}'
            result = getattr(self, call["method"])(**call.get("kwargs", {}))
            return 200, {}, json.dumps(result).encode()
        return 404, {}, b"{}"

    def _token(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        # A form (RFC 6749), or JSON as Atlassian's token endpoint takes it; `token_bodies`
        # keeps which each request sent.
        text = body.decode()
        if text.lstrip().startswith("{"):
            self.token_bodies.append("json")
            form = {k: str(v) for k, v in json.loads(text).items()}
        else:
            self.token_bodies.append("form")
            form = {k: v[0] for k, v in parse_qs(text).items()}
        with self.lock:
            client = form.get("client_id", "")
            if self.clients.get(client) != form.get("client_secret"):
                return 401, {}, b'{"error":"invalid_client"}'
            grant = form.get("grant_type")
            reply: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3600}
            if grant == "refresh_token":
                old = form.get("refresh_token", "")
                if self.refresh_tokens.get(old) != client:
                    return 400, {}, b'{"error":"invalid_grant"}'
                del self.refresh_tokens[old]  # rotating refresh tokens
                new_refresh = "rt-" + secrets.token_hex(8)
                self.refresh_tokens[new_refresh] = client
                reply["refresh_token"] = new_refresh
            elif grant != "client_credentials":
                return 400, {}, b'{"error":"unsupported_grant_type"}'
            token = "at-" + secrets.token_hex(8)
            self.tokens[token] = True
            reply["access_token"] = token
        return 200, {}, json.dumps(reply).encode()

    # --- GitHub -------------------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_remaining),
            "x-ratelimit-used": str(self.rate_limit - self.rate_remaining),
            "x-ratelimit-reset": str(self.rate_reset),
            "x-ratelimit-resource": "core",
        }

    def _github(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        parts = path.strip("/").split("/")
        with self.lock:
            if path == "/rate_limit":
                core = {
                    "limit": self.rate_limit,
                    "remaining": self.rate_remaining,
                    "reset": self.rate_reset,
                    "used": self.rate_limit - self.rate_remaining,
                }
                body = {"resources": {"core": core}, "rate": core}
                return 200, self._rate_headers(), json.dumps(body).encode()
            if self.rate_remaining <= 0:
                body = {
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                }
                return 403, self._rate_headers(), json.dumps(body).encode()
            if path == "/user":
                payload: Any = {"login": "octocat", "id": 1}
            elif len(parts) == 3 and parts[0] == "repos":
                repo = f"{parts[1]}/{parts[2]}"
                if repo not in self.github:
                    return 404, self._rate_headers(), b'{"message":"Not Found"}'
                payload = {"id": 1, "full_name": repo, "private": True}
            elif len(parts) == 4 and parts[0] == "repos" and parts[3] in ("issues", "pulls"):
                repo = f"{parts[1]}/{parts[2]}"
                if repo not in self.github:
                    return 404, self._rate_headers(), b'{"message":"Not Found"}'
                return self._github_list(path, repo, parts[3], query, headers)
            else:
                return 404, self._rate_headers(), b'{"message":"Not Found"}'
            self.rate_remaining -= 1
            return 200, self._rate_headers(), json.dumps(payload).encode()

    def _github_list(
        self,
        path: str,
        repo: str,
        kind: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
    ) -> tuple[int, dict[str, str], bytes]:
        def arg(name: str, default: str) -> str:
            return query.get(name, [default])[0]

        since, state, sort = arg("since", ""), arg("state", "open"), arg("sort", "created")
        direction = arg("direction", "desc")
        query_key = (repo, kind, since, state, sort, direction)
        items = self._github_lists.get(query_key)
        if items is None:
            items = self._github_query(repo, kind, since, state, sort, direction)
            if len(self._github_lists) >= 64:  # each run's checkpoint is a query of its own
                self._github_lists.clear()
            self._github_lists[query_key] = items
        per_page = min(int(arg("per_page", "30")), 100)
        page = int(arg("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        body = json.dumps(chunk).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        reply_headers = {**self._rate_headers(), "ETag": etag}
        if headers.get("if-none-match") == etag:
            return 304, reply_headers, b""
        self.rate_remaining -= 1
        reply_headers = {**self._rate_headers(), "ETag": etag}
        pages = max(1, -(-len(items) // per_page))
        links = []
        base = {k: v[0] for k, v in query.items()}
        if page < pages:
            links.append(f'<{self.url}{path}?{urlencode({**base, "page": page + 1})}>; rel="next"')
            links.append(f'<{self.url}{path}?{urlencode({**base, "page": pages})}>; rel="last"')
        if links:
            reply_headers["Link"] = ", ".join(links)
        return 200, reply_headers, body

    def _github_query(
        self, repo: str, kind: str, since: str, state: str, sort: str, direction: str
    ) -> list[dict[str, Any]]:
        store = self.github[repo]
        if kind == "issues":
            items = list(store["issues"].values()) + [
                self._pull_as_issue(repo, p) for p in store["pulls"].values()
            ]
            if since:
                after = parse_time(since)
                items = [i for i in items if parse_time(i["updated_at"]) >= after]
        else:
            items = list(store["pulls"].values())
        if state != "all":
            items = [i for i in items if i["state"] == state]
        key = "updated_at" if sort == "updated" else "created_at"
        items.sort(key=lambda i: (parse_time(i[key]), i["id"]), reverse=direction == "desc")
        return items

    def _pull_as_issue(self, repo: str, pull: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": pull["id"] + 10_000_000,
            "number": pull["number"],
            "repository_url": f"{self.url}/repos/{repo}",
            "title": pull["title"],
            "state": pull["state"],
            "created_at": pull["created_at"],
            "updated_at": pull["updated_at"],
            "pull_request": {"url": pull["url"], "merged_at": pull["merged_at"]},
        }

    # --- Jira ---------------------------------------------------------------------------------

    def _jira(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"}
        if path.endswith("/myself"):
            return (
                200,
                headers,
                json.dumps({"accountId": "x", "timeZone": self.jira_timezone}).encode(),
            )
        if path.endswith("/serverInfo"):
            return 200, headers, b'{"version":"1001.0.0","deploymentType":"Cloud"}'
        if path == "/rest/api/3/search/jql" and method == "POST":
            request = json.loads(body)
            token = request.get("nextPageToken")
            start = self._jira_tokens.get(token, -1) if token else 0
            if start < 0:
                # Jira Cloud's refusal of a token it did not issue or that has expired: 400 in
                # its errorMessages envelope (the sentence is localised to the account's
                # language on the real service; the envelope and status are what a client sees).
                return 400, headers, json.dumps(JIRA_BAD_PAGE_TOKEN).encode()
            size = int(request.get("maxResults", 50))
            matches = self._jql(request["jql"])
            fields = request.get("fields") or ["id"]
            chunk = [self._jira_view(i, fields) for i in matches[start : start + size]]
            reply: dict[str, Any] = {"issues": chunk}
            if start + size < len(matches):
                new_token = secrets.token_urlsafe(12)
                with self.lock:
                    self._jira_tokens[new_token] = start + size
                reply.update(nextPageToken=new_token, isLast=False)
            else:
                reply["isLast"] = True
            return 200, headers, json.dumps(reply).encode()
        if path == "/rest/api/2/search" and method == "GET":
            start = int(query.get("startAt", ["0"])[0])
            size = int(query.get("maxResults", ["50"])[0])
            fields = (query.get("fields", ["*navigable"])[0]).split(",")
            matches = self._jql(query.get("jql", [""])[0])
            chunk = [self._jira_view(i, fields) for i in matches[start : start + size]]
            reply = {"startAt": start, "maxResults": size, "total": len(matches), "issues": chunk}
            return 200, headers, json.dumps(reply).encode()
        return 404, headers, b'{"errorMessages":["Not found"]}'

    def _jql(self, jql: str) -> list[dict[str, Any]]:
        """The subset of JQL the providers send: project = "X", updated >= "yyyy-MM-dd HH:mm"
        (minute precision, in the searching user's time zone), ORDER BY updated ASC, key ASC."""
        with self.lock:
            issues = list(self.jira.values())
        project = re.search(r'project\s*=\s*"?([A-Za-z0-9_]+)"?', jql)
        if project:
            issues = [i for i in issues if i["key"].split("-")[0] == project.group(1)]
        since = re.search(r'updated\s*>=\s*"(\d{4}[-/]\d\d[-/]\d\d \d\d:\d\d)"', jql)
        if since:
            local = datetime.strptime(since.group(1).replace("/", "-"), "%Y-%m-%d %H:%M")
            bound = local.replace(tzinfo=ZoneInfo(self.jira_timezone)).timestamp()
            issues = [i for i in issues if i["_updated"] >= bound]
        issues.sort(
            key=lambda i: (i["_updated"], i["key"].split("-")[0], int(i["key"].split("-")[1]))
        )
        return issues

    def _jira_view(self, issue: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        view = {k: v for k, v in issue.items() if not k.startswith("_") and k != "fields"}
        every = any(f in ("*all", "*navigable") for f in fields)
        view["fields"] = {k: v for k, v in issue["fields"].items() if every or k in fields}
        if self.jira_lastviewed and (every or "lastViewed" in fields):
            view["fields"]["lastViewed"] = jira_time(datetime.now(UTC))
        return view

    # --- generic ------------------------------------------------------------------------------

    def _generic(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if path == "/api/keys" and method == "POST":
                idempotency = headers.get("idempotency-key", "")
                if idempotency in self.key_replies:
                    return 201, {"Idempotent-Replayed": "true"}, self.key_replies[idempotency]
                self.created += 1
                ident = f"key-{self.created}"
                token = f"gk-{self.created}-" + secrets.token_hex(8)
                self.keys[ident] = {"token": token, "revoked": False}
                self.tokens[token] = True
                reply = json.dumps({"id": ident, "token": token}).encode()
                if idempotency:
                    self.key_replies[idempotency] = reply
                return 201, {}, reply
            if path.startswith("/api/keys/") and method == "DELETE":
                key = self.keys.get(path.rsplit("/", 1)[1])
                if key is None:
                    return 404, {}, b'{"message":"no such key"}'
                key["revoked"] = True
                self.tokens[key["token"]] = False
                return 204, {}, b""
            if path == "/api/me":
                return 200, {}, b'{"id":"me"}'
            if path == "/api/items":
                items = sorted(self.items.values(), key=lambda i: (i["updated_at"], i["id"]))
                since = query.get("updated_since", [""])[0]
                if since:
                    items = [i for i in items if i["updated_at"] >= since]
                size = int(query.get("per_page", ["100"])[0])
                page = int(query.get("page", ["1"])[0])
                chunk = items[(page - 1) * size : page * size]
                return 200, {"RateLimit-Remaining": "50"}, json.dumps({"data": chunk}).encode()
        return 404, {}, b'{"message":"Not Found"}'

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm, the second waits
            # for the client's delayed ACK (40 ms a reply).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                headers = {k.lower(): v for k, v in self.headers.items()}
                logged = Logged(self.command, parts.path, query, headers, body, at=time.time())
                if not parts.path.startswith("/_sim/"):
                    with sim.lock:
                        sim.requests.append(logged)
                try:
                    target = parts.path + ("?" + unquote(parts.query) if parts.query else "")
                    status, reply_headers, payload = sim.handle(
                        self.command, parts.path, query, headers, body, target
                    )
                except Exception as exc:  # a simulator bug shows as a 500 with its text
                    status, reply_headers, payload = 500, {}, repr(exc).encode()
                logged.status = status
                self.send_response(status)
                if payload or status not in (204, 304):
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Date", formatdate(usegmt=True))
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class SimClient:
    """Drives a simulator running as a process, with the in-thread methods' names."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def __getattr__(self, name: str) -> Any:
        if name not in VendorSim.PUBLIC:
            raise AttributeError(name)

        def call(**kwargs: Any) -> Any:
            request = urllib.request.Request(
                f"{self.url}/_sim/call",
                data=json.dumps({"method": name, "kwargs": kwargs}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                return json.loads(reply.read())

        return call

    def log(self, path: str = "") -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_sim/log", timeout=10) as reply:
            return [r for r in json.loads(reply.read()) if path in r["path"]]


def load_state(sim: VendorSim, state: dict[str, Any]) -> None:
    """A state file: {"calls": [{"method": name, "kwargs": {...}}, ...]}, replayed in order."""
    for call in state.get("calls", []):
        if call["method"] not in VendorSim.PUBLIC:
            raise ValueError(f"not a public method: {call['method']}")
        getattr(sim, call["method"])(**call.get("kwargs", {}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", help="a JSON file of calls to replay at start")
    parser.add_argument("--ready", help="write the URL to this file once listening")
    args = parser.parse_args(argv)
    sim = VendorSim(port=args.port)
    if args.state:
        with open(args.state) as handle:
            load_state(sim, json.load(handle))
    print(f"listening on {sim.url}", flush=True)
    if args.ready:
        with open(args.ready + ".tmp", "w") as handle:
            handle.write(sim.url)
        os.replace(args.ready + ".tmp", args.ready)
    with contextlib.suppress(KeyboardInterrupt):
        sim.server.serve_forever()


if __name__ == "__main__":
    main()
