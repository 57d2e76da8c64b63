"""A JSON REST API described by its connection's config, for vendors without a provider.

Config (all but `path` optional):
- `path`: the list endpoint, e.g. "/v1/tickets"; `query`: fixed query parameters.
- `records_path`: dotted path of the list in the reply ("" when the reply is the list);
  `id_field`, `cursor_field` (dotted; default "id" and "updated_at"); `deleted_field`: a
  boolean that marks a record deleted (the vendor's own deletion flag).
- `cursor_param`: the query parameter that asks for records updated at or after a cursor
  (inclusive; the cursor is an ISO 8601 instant or a number). Without it every run is a full
  read, and deletions are found by mark-and-sweep.
- `pagination`: "link" (RFC 8288 Link rel="next"), "cursor" (the reply's `next_cursor_path`
  sent back as `cursor_request_param`), "page" (`page_param` from 1, with `page_size_param`
  and `page_size`; the last page is a short one), or "none".
- `auth_header`: the header a token goes in (default Authorization: Bearer); `verify_path`
  and `probe_path` (default: the list endpoint, one record).
Within a run it pages by the vendor's scheme from the run's starting cursor; between runs the
checkpoint is the latest cursor and the records seen at it (base.py's module doc).

- Key API (for credentials that rotate by `vendor_key`), when the vendor has one:
  `key_create_path` (e.g. "/v1/api-keys"; the request is `POST` with `{"name"}` under an
  Idempotency-Key, authenticated with the current key), `key_revoke_path` (default
  "<key_create_path>/{id}", `DELETE`), `key_create_method`/`key_revoke_method` to change
  those, and `key_id_path`/`key_token_path` (dotted; default "id" and "token") to read the
  answer. Without `key_create_path` a generic connection has no key API: its credentials
  rotate by OAuth 2.0 refresh (`token_url`) or a secret their operator supplies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

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
    dig,
    header,
    json_body,
    link_next,
    parse_instant,
)

HEADERS = {"Accept": "application/json"}


GENERIC_RATE_LIMIT = RateLimitPolicy(
    rate=5.0,
    burst=10,
    scope="connection",
    limit_header="ratelimit-limit",
    remaining_header="ratelimit-remaining",
    reset_header="ratelimit-reset",
    reset_kind="seconds",  # the IETF draft's delta-seconds
    retry_after_header="retry-after",
    statuses=(429,),
)

GENERIC_RETRY = RetryDefaults()

# The shape a connection's config fills in (key_api_for): no path is assumed, since a vendor
# without a key API must not be sent key requests.
GENERIC_KEY_API = KeyApi(
    "POST",
    "",
    "DELETE",
    "",
    "configured per connection: key_create_path (POST → {id, token}), key_revoke_path "
    "(DELETE, with {id})",
)
KEY_CONFIG = (
    "key_create_path",
    "key_revoke_path",
    "key_create_method",
    "key_revoke_method",
    "key_id_path",
    "key_token_path",
)

GENERIC_OAUTH2 = OAuth2(token_url="", grants=("refresh_token", "client_credentials"))


@dataclass(frozen=True)
class Generic(Provider):
    name: str = "generic"
    title: str = "Generic JSON REST API"
    default_base_url: str = ""
    auth_kinds: tuple[str, ...] = ("token", "api_key", "basic", "oauth2")
    streams: tuple[Stream, ...] = (Stream("records", "The configured list endpoint", event=""),)
    rate_limit: RateLimitPolicy = GENERIC_RATE_LIMIT
    retryable_statuses: tuple[int, ...] = (408, 500, 502, 503, 504)
    retry: RetryDefaults = GENERIC_RETRY
    key_api: KeyApi | None = GENERIC_KEY_API
    oauth2: OAuth2 | None = GENERIC_OAUTH2
    rotation: str = "vendor_key"
    docs_url: str = ""
    config_fields: tuple[str, ...] = (
        "path",
        "query",
        "records_path",
        "id_field",
        "cursor_field",
        "deleted_field",
        "cursor_param",
        "pagination",
        "next_cursor_path",
        "cursor_request_param",
        "page_param",
        "page_size_param",
        "page_size",
        "auth_header",
        "verify_path",
        "probe_path",
        "token_url",
        *KEY_CONFIG,
    )
    no_key_api_reason: str = (
        "the connection's config names no key API (set key_create_path, and key_revoke_path "
        "with {id} if it is not <key_create_path>/{id})"
    )

    def auth_headers(
        self, secret: dict[str, Any], config: dict[str, Any] | None = None
    ) -> dict[str, str]:
        name = (config or {}).get("auth_header") or secret.get("header")
        token = secret.get("access_token") or secret.get("token") or secret.get("api_key")
        if name and token and name.lower() != "authorization":
            return {name: token}
        return super().auth_headers(secret)

    def verification_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        path = config.get("verify_path") or config.get("path") or "/"
        return OutboundRequest("GET", f"{self._base(base_url)}{path}", HEADERS)

    def probe_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        path = config.get("probe_path") or config.get("path") or "/"
        return OutboundRequest("GET", f"{self._base(base_url)}{path}", HEADERS)

    def key_api_for(self, config: dict[str, Any]) -> KeyApi | None:
        create = config.get("key_create_path")
        if not create or not isinstance(create, str) or not create.startswith("/"):
            return None
        assert self.key_api is not None
        revoke = config.get("key_revoke_path") or f"{create.rstrip('/')}/{{id}}"
        if not isinstance(revoke, str) or "{id}" not in revoke:
            return None  # a revocation that cannot name its key would revoke something else
        create_method = str(config.get("key_create_method") or self.key_api.create_method).upper()
        revoke_method = str(config.get("key_revoke_method") or self.key_api.revoke_method).upper()
        if create_method not in ("POST", "PUT") or revoke_method not in ("DELETE", "POST"):
            return None  # a GET that mints, or one that revokes, is no API to trust with keys
        return replace(
            self.key_api,
            create_method=create_method,
            create_path=create,
            revoke_method=revoke_method,
            revoke_path=str(revoke),
            id_path=str(config.get("key_id_path") or self.key_api.id_path),
            token_path=str(config.get("key_token_path") or self.key_api.token_path),
        )

    def _base(self, base_url: str) -> str:
        return self.api_base(base_url)

    # --- paging -------------------------------------------------------------------------------

    def first_request(
        self, stream: str, *, base_url: str, checkpoint: dict[str, Any], config: dict[str, Any]
    ) -> OutboundRequest:
        self.stream(stream)
        run = checkpoint.get("run") or {}
        if run.get("next_url"):
            return OutboundRequest("GET", run["next_url"], HEADERS)
        return self._list(base_url, config, checkpoint.get("since"), {})

    def _list(
        self, base_url: str, config: dict[str, Any], since: Any, extra: dict[str, Any]
    ) -> OutboundRequest:
        if not config.get("path"):
            raise ValueError("A generic connection's config needs the list endpoint's path.")
        query = dict(config.get("query") or {})
        if config.get("cursor_param") and since is not None:
            query[config["cursor_param"]] = since
        pagination = config.get("pagination") or "link"
        if pagination == "page":
            query[config.get("page_param") or "page"] = extra.get("page", 1)
            query[config.get("page_size_param") or "per_page"] = _size(config)
        query.update({k: v for k, v in extra.items() if k != "page"})
        url = f"{self._base(base_url)}{config['path']}"
        return OutboundRequest("GET", f"{url}?{urlencode(query)}" if query else url, HEADERS)

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
        items = dig(reply, config.get("records_path") or "")
        if not isinstance(items, list):
            raise ValueError("The reply has no list at the configured records_path.")
        id_field = config.get("id_field") or "id"
        cursor_field = config.get("cursor_field") or "updated_at"
        deleted_field = config.get("deleted_field")
        records = [
            Record(
                external_id=str(dig(item, id_field)),
                cursor=str(dig(item, cursor_field) or ""),
                data=item,
                deleted=bool(deleted_field and dig(item, deleted_field)),
            )
            for item in items
        ]
        since = checkpoint.get("since")
        seen = dict(checkpoint.get("seen") or {})
        kept, skipped = [], 0
        for record in records:
            if (
                since is not None
                and record.cursor == str(since)
                and seen.get(record.external_id) == self.content_hash(stream, record.data)
            ):
                skipped += 1
            else:
                kept.append(record)
        run = checkpoint.get("run") or {}
        top = run.get("since", since) if run else since
        top_seen = dict(run.get("seen", seen)) if run else seen
        for record in records:
            if not record.cursor:
                continue
            if top is None or _order(record.cursor) > _order(str(top)):
                top, top_seen = record.cursor, {}
            if record.cursor == str(top):
                top_seen[record.external_id] = self.content_hash(stream, record.data)
        following = self._next(request, headers, reply, items, config)
        if following is None:
            saved = {"since": top if config.get("cursor_param") else None, "seen": top_seen}
            return Page(kept, None, saved, complete=True, skipped=skipped)
        saved = {
            "since": since,
            "seen": seen,
            "run": {"since": top, "seen": top_seen, "next_url": following.url},
        }
        return Page(kept, following, saved, complete=False, skipped=skipped)

    def _next(
        self,
        request: OutboundRequest,
        headers: Mapping[str, str],
        reply: Any,
        items: list[Any],
        config: dict[str, Any],
    ) -> OutboundRequest | None:
        pagination = config.get("pagination") or "link"
        if pagination == "link":
            url = link_next(header(headers, "link"))
            return OutboundRequest("GET", url, HEADERS) if url else None
        if pagination == "cursor":
            token = dig(reply, config.get("next_cursor_path") or "next_cursor")
            if not token or not items:
                return None
            param = config.get("cursor_request_param") or "cursor"
            return OutboundRequest("GET", _with_param(request.url, param, str(token)), HEADERS)
        if pagination == "page":
            if len(items) < _size(config):
                return None
            param = config.get("page_param") or "page"
            current = _param(request.url, param)
            return OutboundRequest(
                "GET", _with_param(request.url, param, str(int(current or 1) + 1)), HEADERS
            )
        return None

    def factory_event(
        self,
        stream: str,
        record: Record,
        action: Action,
        *,
        previous: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]] | None:
        return None  # a generic record means nothing to the factory until someone maps it


def _size(config: dict[str, Any]) -> int:
    return int(config.get("page_size") or 100)


def _order(cursor: str) -> tuple[int, Any]:
    try:
        return (0, float(cursor))
    except ValueError:
        pass
    try:
        return (1, parse_instant(cursor))
    except ValueError:
        return (2, cursor)


def _param(url: str, name: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get(name)
    return values[0] if values else None


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return parts._replace(query=urlencode(query)).geturl()


GENERIC = Generic()
