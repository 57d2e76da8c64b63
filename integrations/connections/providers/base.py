"""What every provider declares, and the pure helpers they share.

A provider is data plus pure functions: it builds requests (without the secret, which only
`auth_headers` turns into headers), reads replies into pages of records, and says what a
record means to the factory. It never opens a socket, reads a clock or touches the database:
the sync handler, the health probe and the rotation worker do that, and call these same
functions, so a test can replay a vendor's exact reply through them.

Incremental cursors (the trap every sync engine falls into at least once: airbyte#14732,
#21500): a vendor filters by "updated at or after T" at some precision (GitHub a second, Jira
JQL a minute). A checkpoint is therefore `{"since": T, "seen": {id: hash}}`: T truncated to
the vendor's precision, and every record read whose cursor falls inside T's unit with the hash
it had. The next request asks from T *inclusive*; what comes back older than T, or inside T
with a hash in `seen`, was already handled and is dropped; what is inside T with another hash
changed and is kept. Ties at a boundary are so neither lost nor duplicated. The same holds at
page boundaries: each page of GitHub issues and Jira searches is a fresh query from the
checkpoint of the page before (keyset paging), not an offset, so a record updated while a run
pages moves to the end of the result instead of shifting an unread one off the page before it;
only when a single unit of T holds more than a page of records is the vendor's own page link
or token followed, until the page leaves that unit.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import msgspec

HASH_ALGORITHM = "sha256-canonical-json-v1"

Action = Literal["added", "updated", "deleted"]
Outcome = Literal["ok", "not_modified", "rate_limited", "auth", "retryable", "fatal"]


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # never the secret's
    body: bytes | None = None

    def with_headers(self, extra: Mapping[str, str]) -> OutboundRequest:
        return replace(self, headers={**self.headers, **extra})


@dataclass(frozen=True)
class Record:
    external_id: str
    cursor: str  # the vendor's "updated at", as it sent it ("" when the stream has none)
    data: dict[str, Any]
    deleted: bool = False


@dataclass(frozen=True)
class Page:
    records: list[Record]
    next_request: OutboundRequest | None
    checkpoint: dict[str, Any]  # what to save after this page, with its records, in one commit
    complete: bool  # the stream has been read to its end (a full run may now sweep deletions)
    not_modified: bool = False  # a 304 to a conditional request
    skipped: int = 0  # records read again at a boundary and dropped as already handled


@dataclass(frozen=True)
class Stream:
    name: str
    title: str
    # Dotted paths left out of the content hash: values that change without the record
    # changing (Nango's "spurious updates": view times, per-viewer flags, embedded counters).
    ignored_fields: tuple[str, ...] = ()
    incremental: bool = True
    # How deletions are found: "sweep" (mark-and-sweep after a complete full run), "flag" (the
    # vendor marks records deleted), "none".
    deletion: str = "sweep"
    event: str = ""  # the factory event family it maps to, for the registry's readers
    # Whether factory_event needs the stored data of the record's previous version.
    needs_previous: bool = False


@dataclass(frozen=True)
class RateLimitPolicy:
    """The vendor's budget and how it reports it. `rate`/`burst` seed our own bucket (per
    `scope`); the headers tighten it (integrations.limits.buckets.observe)."""

    rate: float  # requests per second, sustained
    burst: int
    scope: Literal["credential", "connection", "host"]
    limit_header: str = ""
    remaining_header: str = ""
    reset_header: str = ""
    # epoch: UTC epoch seconds; iso: an ISO 8601 instant; seconds: seconds from now
    reset_kind: Literal["epoch", "iso", "seconds", ""] = ""
    retry_after_header: str = "retry-after"
    # Statuses that mean "rate limited" (GitHub: 403 too, when the headers say so).
    statuses: tuple[int, ...] = (429,)
    # With no header to go by, how long a secondary (abuse) limit makes us wait.
    default_wait_seconds: float = 60.0


@dataclass(frozen=True)
class RetryDefaults:
    """Temporal's fields, the defaults for this provider's sync failures."""

    initial_seconds: float = 30.0
    coefficient: float = 2.0
    maximum_seconds: float = 3600.0
    maximum_attempts: int = 5
    non_retryable: tuple[str, ...] = ("auth", "permanent")


@dataclass(frozen=True)
class KeyApi:
    """A vendor API that mints and revokes keys, for rotation without an operator: the new
    key is asked for with the current secret, under an Idempotency-Key, and answered as JSON
    with its id and token at `id_path` and `token_path` (dotted)."""

    create_method: str
    create_path: str
    revoke_method: str
    revoke_path: str  # with {id}
    description: str = ""
    id_path: str = "id"
    token_path: str = "token"


# How a rotation gets its new secret (IntegrationCredential.Method's values).
VENDOR_KEY, OAUTH2_REFRESH, OPERATOR = "vendor_key", "oauth2_refresh", "operator"
# The secret's fields that carry what authenticates: a minted key replaces them.
AUTHENTICATING = ("token", "access_token", "api_key", "api_token", "password")


@dataclass(frozen=True)
class OAuth2:
    token_url: str  # overridable per connection: config["token_url"]
    grants: tuple[str, ...] = ("refresh_token",)
    # Whether a refresh answers with a new refresh token that replaces the old one.
    rotating_refresh_token: bool = False


class Provider:
    """Subclassed per vendor family (frozen dataclasses); the instances are the registry."""

    name: str
    title: str
    default_base_url: str
    auth_kinds: tuple[str, ...]
    streams: tuple[Stream, ...]
    rate_limit: RateLimitPolicy
    retryable_statuses: tuple[int, ...]
    retry: RetryDefaults
    key_api: KeyApi | None
    oauth2: OAuth2 | None
    rotation: str  # "vendor_key" | "oauth2_refresh" | "operator": how a new secret is had
    docs_url: str
    config_fields: tuple[str, ...]

    # --- requests ---------------------------------------------------------------------------

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(f"{self.name} has no stream {name!r}")

    def base_url(self, base_url: str) -> str:
        return (base_url or self.default_base_url).rstrip("/")

    def first_request(
        self, stream: str, *, base_url: str, checkpoint: dict[str, Any], config: dict[str, Any]
    ) -> OutboundRequest:
        raise NotImplementedError

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
        raise NotImplementedError

    def auth_headers(
        self, secret: dict[str, Any], config: dict[str, Any] | None = None
    ) -> dict[str, str]:
        return standard_auth_headers(secret)

    def verification_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        raise NotImplementedError

    # --- rotation: what this provider can mint, and how ---------------------------------------

    # Why a connection of this provider has no key API, said to whoever asks for vendor_key.
    no_key_api_reason: str = "it has no API that creates keys"

    def key_api_for(self, config: dict[str, Any]) -> KeyApi | None:
        """The key API a connection with this config may rotate through, or None."""
        return self.key_api

    def rotation_methods(self, config: dict[str, Any]) -> tuple[str, ...]:
        """How a credential of a connection with this config can get a new secret: always
        from its operator; by OAuth 2.0 refresh where the provider declares a token endpoint
        (its own, or the connection's `token_url`); from the vendor's key API where it has
        one."""
        methods = [OPERATOR]
        if self.oauth2 is not None and (config.get("token_url") or self.oauth2.token_url):
            methods.append(OAUTH2_REFRESH)
        if self.key_api_for(config) is not None:
            methods.append(VENDOR_KEY)
        return tuple(methods)

    def refuse_method(self, method: str, config: dict[str, Any]) -> str | None:
        """Why a credential rotating by `method` cannot exist for a connection with this
        config, or None when it can."""
        if method in self.rotation_methods(config):
            return None
        allowed = ", ".join(self.rotation_methods(config))
        if method == VENDOR_KEY:
            why = self.no_key_api_reason
        elif method == OAUTH2_REFRESH:
            why = "it declares no OAuth 2.0 token endpoint" + (
                " (set the connection's config token_url)" if self.oauth2 is not None else ""
            )
        else:
            why = "it is not a rotation method"
        return f"{self.title} cannot rotate by {method}: {why}. Use one of: {allowed}."

    def refuse_kind(self, kind: str, *, base_url: str = "") -> str | None:
        """Why a credential of this auth kind cannot authenticate to this provider (at the
        connection's base URL), or None."""
        if kind in self.auth_kinds:
            return None
        return f"{self.title} accepts these auth kinds: {', '.join(self.auth_kinds)}; not {kind}."

    def key_create_request(
        self, *, base_url: str, config: dict[str, Any], name: str
    ) -> OutboundRequest:
        """The key API's request for a new key (the caller adds the current secret's headers
        and the Idempotency-Key)."""
        key_api = self._key_api(config)
        return OutboundRequest(
            key_api.create_method,
            f"{self.api_base(base_url)}{key_api.create_path}",
            {"Accept": "application/json", "Content-Type": "application/json"},
            json.dumps({"name": name}).encode(),
        )

    def parse_key_created(
        self, *, config: dict[str, Any], secret: dict[str, Any], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        """The new key's id at the vendor, and the secret it makes: the current secret's other
        fields (a header name, a user) with the new token in place of what authenticated."""
        key_api = self._key_api(config)
        reply = json_body(body)
        key_id, token = dig(reply, key_api.id_path), dig(reply, key_api.token_path)
        if key_id in (None, "") or not isinstance(token, str) or not token:
            raise ValueError(
                f"The key API's reply has no id at {key_api.id_path!r} "
                f"and token at {key_api.token_path!r}."
            )
        kept = {k: v for k, v in secret.items() if k not in AUTHENTICATING}
        return str(key_id), {**kept, "token": token}

    def key_revoke_request(
        self, *, base_url: str, config: dict[str, Any], key_id: str
    ) -> OutboundRequest:
        key_api = self._key_api(config)
        path = key_api.revoke_path.replace("{id}", quote(key_id, safe=""))
        return OutboundRequest(
            key_api.revoke_method,
            f"{self.api_base(base_url)}{path}",
            {"Accept": "application/json"},
        )

    def api_base(self, base_url: str) -> str:
        """The base URL requests go to; a provider without a default needs the connection's."""
        base = self.base_url(base_url)
        if not base:
            raise ValueError(f"A {self.title} connection needs a base URL.")
        return base

    def _key_api(self, config: dict[str, Any]) -> KeyApi:
        key_api = self.key_api_for(config)
        if key_api is None:
            raise ValueError(f"{self.title} cannot mint keys: {self.no_key_api_reason}.")
        return key_api

    def probe_request(self, *, base_url: str, config: dict[str, Any]) -> OutboundRequest:
        raise NotImplementedError

    # --- records ----------------------------------------------------------------------------

    def content_hash(self, stream: str, data: dict[str, Any]) -> str:
        return content_hash(data, ignored=self.stream(stream).ignored_fields)

    def factory_event(
        self,
        stream: str,
        record: Record,
        action: Action,
        *,
        previous: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]] | None:
        """The catalog event (its type's name) and data for a record's change, or None."""
        return None

    # --- replies ----------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> Outcome:
        """What the sync does with a reply: read it, wait (rate_limited: `wait_until`),
        refresh the token once (auth), retry later, or give up."""
        if 200 <= status < 300:
            return "ok"
        if status == 304:
            return "not_modified"
        if status in self.rate_limit.statuses and self.is_rate_limited(status, headers, body):
            return "rate_limited"
        if status == 401:
            return "auth"
        if status in self.retryable_statuses or status >= 500:
            return "retryable"
        return "fatal"

    def is_rate_limited(self, status: int, headers: Mapping[str, str], body: bytes) -> bool:
        return status == 429

    def wait_until(
        self, status: int, headers: Mapping[str, str], *, now: datetime, body: bytes = b""
    ) -> datetime | None:
        """When the vendor lets us call again after this reply, if it says; the longest wait
        of the headers wins (Nango's "most restrictive")."""
        policy = self.rate_limit
        waits = []
        after = retry_after(header(headers, policy.retry_after_header), now=now)
        if after is not None:
            waits.append(after)
        remaining = header(headers, policy.remaining_header) if policy.remaining_header else None
        limited = self.classify(status, headers, body) == "rate_limited"
        if (remaining is not None and remaining.strip() == "0") or limited:
            reset = parse_reset(header(headers, policy.reset_header), policy.reset_kind, now=now)
            if reset is not None:
                waits.append(reset)
        if limited and not waits:
            waits.append(now + timedelta(seconds=policy.default_wait_seconds))
        return max(waits) if waits else None

    def restart_checkpoint(self, status: int, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
        """Where a stream reads from when the vendor refused the paging position its request
        carried (an expired page token), or None: the refusal stands and the run fails."""
        return None

    # --- OAuth 2.0 ----------------------------------------------------------------------------

    def token_request(
        self, *, secret: dict[str, Any], config: dict[str, Any]
    ) -> OutboundRequest | None:
        """The request that mints a new access token (refresh_token grant when the secret has
        a refresh token, client_credentials otherwise, each only where the provider declares
        the grant), or None when the secret cannot."""
        if self.oauth2 is None:
            return None
        token_url = config.get("token_url") or self.oauth2.token_url
        if not token_url or not secret.get("client_id"):
            return None
        form = {"client_id": secret["client_id"]}
        if secret.get("client_secret"):
            form["client_secret"] = secret["client_secret"]
        # Only a grant the provider declares: GitHub and Atlassian have no client_credentials.
        if secret.get("refresh_token") and "refresh_token" in self.oauth2.grants:
            form.update(grant_type="refresh_token", refresh_token=secret["refresh_token"])
        elif "client_credentials" in self.oauth2.grants and not secret.get("refresh_token"):
            form["grant_type"] = "client_credentials"
            if secret.get("scope"):
                form["scope"] = secret["scope"]
        else:
            return None
        content_type, body = self.token_body(form)
        return OutboundRequest(
            "POST", token_url, {"Content-Type": content_type, "Accept": "application/json"}, body
        )

    def token_body(self, form: dict[str, str]) -> tuple[str, bytes]:
        """The token request's content type and body: a form, as RFC 6749 §4.1.3 has it."""
        return "application/x-www-form-urlencoded", urlencode(form).encode()

    def parse_token(self, *, secret: dict[str, Any], body: bytes, now: datetime) -> dict[str, Any]:
        """The new secret from a token endpoint's reply (RFC 6749 §5.1): the access token, the
        refresh token if the server rotated it (else the old one is kept), and when it
        expires."""
        reply = json.loads(body)
        if not isinstance(reply, dict) or not reply.get("access_token"):
            raise ValueError("The token endpoint's reply has no access_token.")
        new = {**secret, "access_token": reply["access_token"]}
        new.pop("token", None)
        if reply.get("refresh_token"):
            new["refresh_token"] = reply["refresh_token"]
        if reply.get("expires_in"):
            new["expires_at"] = (now + timedelta(seconds=int(reply["expires_in"]))).isoformat()
        return new

    # --- the registry's public description -----------------------------------------------------

    def describe(self) -> dict[str, Any]:
        policy = self.rate_limit
        return {
            "name": self.name,
            "title": self.title,
            "defaultBaseUrl": self.default_base_url,
            "authKinds": list(self.auth_kinds),
            "streams": [
                {
                    "name": s.name,
                    "title": s.title,
                    "incremental": s.incremental,
                    "deletion": s.deletion,
                    "ignoredFields": list(s.ignored_fields),
                    "event": s.event,
                }
                for s in self.streams
            ],
            "rateLimit": {
                "rate": policy.rate,
                "burst": policy.burst,
                "scope": policy.scope,
                "limitHeader": policy.limit_header,
                "remainingHeader": policy.remaining_header,
                "resetHeader": policy.reset_header,
                "resetKind": policy.reset_kind,
                "retryAfterHeader": policy.retry_after_header,
                "statuses": list(policy.statuses),
            },
            "retryableStatuses": list(self.retryable_statuses),
            "keyApi": bool(self.key_api),
            "oauth2": bool(self.oauth2),
            "rotation": self.rotation,
            # What the provider declares; the generic one's key API and token endpoint are a
            # connection's config (rotation_methods(config) says for a connection).
            "rotationMethods": [
                OPERATOR,
                *([OAUTH2_REFRESH] if self.oauth2 is not None else []),
                *([VENDOR_KEY] if self.key_api is not None else []),
            ],
            "configFields": list(self.config_fields),
            "docsUrl": self.docs_url,
            "hashAlgorithm": HASH_ALGORITHM,
        }


# --- hashing ---------------------------------------------------------------------------------


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same data is the same bytes whatever order the
    vendor sent its keys in. `data` is decoded JSON (a vendor's reply, a stored record).

    The bytes are json.dumps's (sort_keys, compact separators, ensure_ascii=False,
    allow_nan=False): every stored hash was taken over them, and other bytes would make every
    record look changed. msgspec writes the same bytes for strings, integers, booleans and
    null, in a fifth of the time (measured: content_hash over bench/sync.py's 5,000 records,
    17 ms against 46 ms), but not for floats: it writes 1e16 where json writes 1e+16, and
    NaN as null where json refuses it. So data with a float, or beyond msgspec (an integer
    past 64 bits), goes through json.dumps itself; a float is found in msgspec's MessagePack
    of the data, where every float, NaN included, is the byte 0xcb and its 8 bytes (the byte
    may also occur inside a string or an integer: then json.dumps too, as the same bytes)."""
    try:
        packed = _MSGPACK.encode(data)
    except (TypeError, OverflowError, UnicodeEncodeError):
        packed = _FLOAT
    if _FLOAT not in packed:
        try:
            return _SORTED_JSON.encode(data)
        except TypeError:  # a key beyond JSON's text: json.dumps decides, as it did
            pass
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


_SORTED_JSON = msgspec.json.Encoder(order="sorted")
_MSGPACK = msgspec.msgpack.Encoder()
_FLOAT = b"\xcb"  # MessagePack's float 64 (msgspec writes every float so, never float 32)


def content_hash(data: dict[str, Any], *, ignored: tuple[str, ...] = ()) -> str:
    return hashlib.sha256(canonical_json(without(data, ignored))).hexdigest()


def without(data: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `data` without the dotted paths (absent ones are fine)."""
    if not paths:
        return data
    return _dropped(data, _drop_plan(paths))


# {key: None (drop it) or the plan for the dict under it}. A stream's ignored fields, grouped
# once rather than for every record hashed.
_Plan = dict[str, "_Plan | None"]


@functools.lru_cache(maxsize=64)
def _drop_plan(paths: tuple[str, ...]) -> _Plan:
    grouped: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        grouped.setdefault(head, []).append(rest)
    return {
        head: None if "" in rests else _drop_plan(tuple(rests)) for head, rests in grouped.items()
    }


def _dropped(data: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    out = dict(data)  # the same keys in the same order, less the dropped ones
    for key, inner in plan.items():
        if key not in out:
            continue
        if inner is None:
            del out[key]
        elif isinstance(out[key], dict):
            out[key] = _dropped(out[key], inner)
    return out


# --- cursors and checkpoints -----------------------------------------------------------------


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as vendors write it: `Z`, `+00:00` or Jira's `+0000`."""
    try:
        # Python 3.11's fromisoformat reads all three (and nanoseconds) itself: a ninth of the
        # time of what follows, which takes what it does not (surrounding spaces).
        instant = datetime.fromisoformat(text)
    except ValueError:
        return _parse_instant(text)
    if instant.tzinfo is UTC:
        return instant
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _parse_instant(text: str) -> datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)([+-]\d\d)(\d\d)$", text)
    if match:
        text = f"{match.group(1)}{match.group(2)}:{match.group(3)}"
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def truncate(instant: datetime, precision: Literal["second", "minute"]) -> datetime:
    # replace() only where it changes something: this runs for every record of every page.
    if instant.microsecond:
        instant = instant.replace(microsecond=0)
    return instant.replace(second=0) if precision == "minute" and instant.second else instant


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def boundary_filter(
    records: list[tuple[Record, datetime]],
    *,
    since: datetime | None,
    seen: dict[str, str],
    precision: Literal["second", "minute"],
    hash_of: Any,
) -> tuple[list[Record], int]:
    """Drop what an inclusive re-read brings back already handled: records older than the
    boundary unit, and records inside it whose hash is the one seen (see the module's doc)."""
    kept, skipped = [], 0
    for record, instant in records:
        unit = truncate(instant, precision)
        if (since is not None and unit < since) or (
            since is not None and unit == since and seen.get(record.external_id) == hash_of(record)
        ):
            skipped += 1
        else:
            kept.append(record)
    return kept, skipped


def advance(
    records: list[tuple[Record, datetime]],
    *,
    since: datetime | None,
    seen: dict[str, str],
    precision: Literal["second", "minute"],
    hash_of: Any,
) -> tuple[datetime | None, dict[str, str]]:
    """The boundary after reading `records` (all of a page, kept or dropped): the latest unit,
    and every record read inside it with its hash."""
    latest = since
    for _, instant in records:
        unit = truncate(instant, precision)
        if latest is None or unit > latest:
            latest = unit
    new_seen = dict(seen) if latest == since else {}
    for record, instant in records:
        if truncate(instant, precision) == latest:
            new_seen[record.external_id] = hash_of(record)
    return latest, new_seen


# --- headers ---------------------------------------------------------------------------------


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def link_next(header: str | None) -> str | None:
    """The rel="next" target of an RFC 8288 Link header."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2)
        rel = re.search(r';\s*rel\s*=\s*"?([^";]+)"?', params)
        if rel and "next" in rel.group(1).split():
            return match.group(1)
    return None


def retry_after(value: str | None, *, now: datetime) -> datetime | None:
    """Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when, now)


def parse_reset(value: str | None, kind: str, *, now: datetime) -> datetime | None:
    if not value or not kind:
        return None
    value = value.strip()
    try:
        if kind == "epoch":
            return max(datetime.fromtimestamp(float(value), tz=UTC), now)
        if kind == "seconds":
            return now + timedelta(seconds=float(value))
        if kind == "iso":
            return max(parse_instant(value), now)
    except (ValueError, OverflowError):
        return None
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup on any mapping (urllib3's is; a dict may not be)."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def standard_auth_headers(secret: dict[str, Any]) -> dict[str, str]:
    """Basic for a user (or email) and a password (or API token); Bearer for a token, a
    personal access token or an OAuth access token."""
    user = secret.get("email") or secret.get("username")
    password = secret.get("api_token") or secret.get("password")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    token = secret.get("access_token") or secret.get("token")
    if token:
        return {"Authorization": f"Bearer {token}"}
    raise ValueError("The secret has neither a token nor a user and password.")


def json_body(body: bytes) -> Any:
    """A reply's JSON. By msgspec, in half of json.loads's time on a page of a hundred issues;
    what msgspec refuses and json.loads reads (a number past a float's range, a lone
    surrogate, UTF-16), json.loads reads as it always did."""
    try:
        return msgspec.json.decode(body or b"null")
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"The vendor's reply is not JSON: {exc}") from exc


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ("" is the data itself), or None."""
    if not path:
        return data
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
