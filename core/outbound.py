"""The one outbound HTTP client: webhooks, syncs and probes all leave the platform through it.

It gives timeouts (connect and total), connection reuse per endpoint, and the guard against
server-side request forgery: a URL whose host is, or resolves to, anything but a globally
routable unicast address (private, loopback, link-local, multicast, reserved, or an IPv6 form
that embeds such an IPv4 address: mapped, NAT64, 6to4, Teredo) is refused unless an operator
listed the host, the address or a network containing it, perhaps with a port, in
WEBHOOK_ALLOWED_HOSTS or OUTBOUND_ALLOWED_HOSTS (one allowlist for every outbound call,
under either name); the platform's own web port on this machine is refused even then. The
guard runs twice: on the URL when a user saves it (so they hear at once), and on the socket
itself after it connects, against the address and port actually connected to, so a name that
resolves elsewhere later (DNS rebinding) is still refused. Proxies from the environment are
ignored: they would hide the real target.

`post` and `post_all` are the webhooks' POSTs; `request` is the general call (syncs, probes,
vendor key APIs): any method, the reply's status, headers and a bounded body.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import math
import re
import socket
import threading
import unicodedata
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.utils import timezone
from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.runtime.errors import Deferred

log = logging.getLogger(__name__)
RESPONSE_SNIPPET_BYTES = 1024


class BlockedDestination(Exception):
    """The target is not a public address and is not allowlisted, or is the platform itself,
    or the URL cannot be sent as it is."""


class ReplyTooSlow(TimeoutError):
    """The reply did not arrive whole within the request's timeout (a trickling sender)."""


@dataclass(frozen=True)
class Reply:
    status: int
    # Case-insensitive (`reply.headers["X-RateLimit-Reset"]` finds x-ratelimit-reset); a
    # header sent twice is one value, joined with ", ".
    headers: Mapping[str, str]
    # Bounded: a webhook receiver's reply is kept as a snippet of RESPONSE_SNIPPET_BYTES;
    # request()'s up to its max_body, `truncated` when there was more.
    body: bytes
    seconds: float  # from sending to the reply read
    finished: datetime  # when the reply had been read
    truncated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.headers, HTTPHeaderDict):
            object.__setattr__(self, "headers", HTTPHeaderDict(self.headers))

    @property
    def elapsed(self) -> float:
        return self.seconds


DEFAULT_PORTS = {"http": 80, "https": 443}


def check_url(url: str, *, require_https: bool | None = None) -> None:
    """Refuse a URL a webhook may not target; the message says what to change."""
    check_text(url)
    parts = urlsplit(url)
    if require_https is None:
        require_https = settings.WEBHOOK_REQUIRE_HTTPS
    allowed_schemes = ("https",) if require_https else ("https", "http")
    if parts.scheme not in allowed_schemes:
        raise BlockedDestination(f"The URL must start with {' or '.join(allowed_schemes)}://.")
    if not parts.hostname:
        raise BlockedDestination("The URL has no host.")
    if parts.username or parts.password:
        raise BlockedDestination("The URL may not carry a user name or password.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise BlockedDestination("The URL's port must be a number from 1 to 65535.")
    port = port or DEFAULT_PORTS[parts.scheme]
    for address in _resolve(parts.hostname, port):
        check_address(parts.hostname, address, port)


def check_text(url: str) -> None:
    """Refuse spaces, line breaks and other control or invisible characters anywhere in a URL:
    Python's URL parser drops tabs and line breaks silently, and what it keeps would be sent
    in the request line (header injection) or be a URL other than the one its owner sees."""
    for position, char in enumerate(url):
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Zs"):
            raise BlockedDestination(
                f"The URL contains {_char_name(char)} (character {position + 1}): remove it, "
                "or percent-encode it (a space is %20)."
            )


def _char_name(char: str) -> str:
    names = {" ": "a space", "\r": "a carriage return (CR)", "\n": "a line feed (LF)"}
    return names.get(char, f"the character U+{ord(char):04X}")


def check_address(host: str, address: str, port: int) -> None:
    """Refuse to connect to `address`:`port` (what `host` resolved to) unless it is a public
    address, or an operator allowed it (WEBHOOK_ALLOWED_HOSTS); never to the platform itself."""
    ip = ipaddress.ip_address(address.split("%")[0])  # without an IPv6 zone
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # on the wire, an IPv4-mapped address is the IPv4 one
    if _is_own(ip, port):
        raise BlockedDestination(
            f"{host} port {port} is this platform's own address ({ip}): a webhook may not call "
            "the platform itself."
        )
    why = refusal(ip)
    if why is None:
        return
    entries = [entry for entry in allowlist() if entry.names(host, ip)]
    if any(entry.port in (None, port) for entry in entries):
        return
    if entries:
        ports = ", ".join(sorted({str(entry.port) for entry in entries}))
        raise BlockedDestination(
            f"{host} resolves to {ip}, {why}; WEBHOOK_ALLOWED_HOSTS allows it on port {ports} "
            f"only, not on port {port}."
        )
    raise BlockedDestination(
        f"{host} resolves to {ip}, {why}: not a public address. An operator can allow it with "
        "WEBHOOK_ALLOWED_HOSTS (or OUTBOUND_ALLOWED_HOSTS)."
    )


# --- What is a public address ----------------------------------------------------------------


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _table(rows: list[tuple[str, str]]) -> list[tuple[Network, str]]:
    return [(ipaddress.ip_network(network), what) for network, what in rows]


# From the IANA special-purpose address registries: every block that is not globally
# reachable unicast, plus the anycast and relay blocks, which are no webhook's business.
_V4_SPECIAL = _table(
    [
        ("0.0.0.0/8", "a 'this network' address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved or broadcast address"),
    ]
)
# Global unicast IPv6 is 2000::/3; outside it, nothing is a webhook target (the embedding
# forms below are judged by what they embed).
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_V6_OUTSIDE = _table(
    [
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    ]
)
_V6_SPECIAL = _table(
    [
        ("2001::/23", "an IETF protocol address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
    ]
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_V6_OTHER = "not a global unicast address"


def refusal(ip: Address) -> str | None:
    """Why `ip` is not a public webhook target (None when it is one): a webhook goes only to
    a globally routable unicast address, and not to one that embeds an address that is not
    (IPv4-mapped, NAT64, 6to4, Teredo). Pure: the allowlist and the platform's own address
    are check_address's business."""
    if ip.version == 4:
        return _named(ip, _V4_SPECIAL)
    embedded = _embedded(ip)
    for inner in embedded:
        if (why := refusal(inner)) is not None:
            return f"which embeds {inner}, {why}"
    if embedded:
        return None
    if ip not in _V6_GLOBAL_UNICAST:
        return _named(ip, _V6_OUTSIDE) or _V6_OTHER
    return _named(ip, _V6_SPECIAL)


def _embedded(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address stands for, if it is one of the forms that do."""
    if mapped := ip.ipv4_mapped:
        return (mapped,)
    if ip in _NAT64:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip in _SIX_TO_FOUR and (six_to_four := ip.sixtofour):
        return (six_to_four,)
    if ip in _TEREDO and (teredo := ip.teredo):
        return teredo  # the server's, and the client's (its NAT's public address)
    return ()


def _named(ip: Address, table: list[tuple[Network, str]]) -> str | None:
    return next((what for network, what in table if ip in network), None)


# --- The operator's allowlist and the platform's own address -------------------------------


@dataclass(frozen=True)
class Allowed:
    """One WEBHOOK_ALLOWED_HOSTS entry: a host name, or an address or network, and perhaps a
    port, in which case only that port is allowed."""

    host: str | None = None
    network: Network | None = None
    port: int | None = None

    def names(self, host: str, ip: Address) -> bool:
        if self.network is not None:
            return ip.version == self.network.version and ip in self.network
        return _bare_host(host) == self.host


def parse_allowed(entry: str) -> Allowed:
    """`hooks.internal`, `hooks.internal:8443`, `10.0.0.0/8`, `10.0.0.0/8:9000`, `127.0.0.1`,
    `127.0.0.1:9000`, `::1`, `fd00::/8`, `[::1]:9000`, `[fd00::/8]:9000`. ValueError if not."""
    text, port = entry.strip().lower(), None
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if bracketed:
        text, port = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:  # a host or an IPv4 address or network, with a port
        text, port = text.split(":")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    port = int(port) if port is not None else None
    try:
        return Allowed(network=ipaddress.ip_network(text, strict=False), port=port)
    except ValueError:
        pass
    if bracketed or not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?", text):
        raise ValueError(f"{entry!r} is neither a host name nor an address or network")
    return Allowed(host=_bare_host(text), port=port)


def allowlist() -> list[Allowed]:
    """WEBHOOK_ALLOWED_HOSTS, parsed; an entry that does not parse allows nothing (and is
    logged), so a typo refuses rather than allows."""
    entries = []
    outbound_hosts = getattr(settings, "OUTBOUND_ALLOWED_HOSTS", [])
    for entry in [*settings.WEBHOOK_ALLOWED_HOSTS, *outbound_hosts]:
        if not entry.strip():
            continue
        try:
            entries.append(parse_allowed(entry))
        except ValueError as exc:
            log.warning("WEBHOOK_ALLOWED_HOSTS: %s; ignored", exc)
    return entries


def _bare_host(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _is_own(ip: Address, port: int) -> bool:
    """Whether `ip`:`port` reaches this platform's web tier: its port (PORT, which gunicorn
    binds in the Docker image and under `make run`) on a loopback, unspecified or local
    address of this machine."""
    if port != settings.PORT:
        return False
    return ip.is_loopback or ip.is_unspecified or _assigned_here(ip)


def _assigned_here(ip: Address) -> bool:
    # Only an address of this machine's own interfaces can be bound to.
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise BlockedDestination(f"{host} does not resolve: {exc.strerror}.") from None
    return sorted({str(info[4][0]) for info in infos})


class _Guarded(HTTPConnection):
    """Checks the peer of every new connection before a byte of the request is sent."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            address, port = sock.getpeername()[:2]
            check_address(self.host, address, port)
        except BlockedDestination:
            sock.close()
            raise
        return sock


class _GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_pools: urllib3.PoolManager | None = None
_pools_lock = threading.Lock()


def pools() -> urllib3.PoolManager:
    """One pool manager per process, shared by its threads (urllib3's pools are thread-safe),
    keeping up to WEBHOOK_PER_ENDPOINT_CONCURRENCY connections open per endpoint. urllib3
    itself rather than requests: one POST from one thread cost 0.49 ms of CPU against 0.88
    through requests (measured; under 32 threads requests cost 1.9-2.1 ms)."""
    global _pools
    with _pools_lock:
        if _pools is None:
            _pools = urllib3.PoolManager(
                num_pools=256,
                maxsize=settings.WEBHOOK_PER_ENDPOINT_CONCURRENCY,
                retries=False,
            )
            _pools.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
        return _pools


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Reply:
    """POST and read at most a snippet of the reply. Raises BlockedDestination, or urllib3's
    errors (timeouts, refused connections, broken replies); a reply of any status is returned,
    not raised. No redirects are followed: a 3xx is the endpoint's answer."""
    check_text(url)  # one stored before it was refused when saved
    started = monotonic()
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, read=settings.WEBHOOK_TIMEOUT_SECONDS
    )
    response = pools().request(
        "POST",
        url,
        body=body,
        headers=headers,
        timeout=timeout,
        redirect=False,
        retries=False,
        preload_content=False,
    )
    try:
        snippet = _read_snippet(response, deadline=started + settings.WEBHOOK_TIMEOUT_SECONDS)
    finally:
        response.release_conn()
    return Reply(
        status=response.status,
        headers=HTTPHeaderDict(response.headers),
        body=snippet,
        seconds=monotonic() - started,
        finished=timezone.now(),
    )


REQUEST_MAX_BODY_BYTES = 16 * 1024 * 1024
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
    max_body: int | None = None,
) -> Reply:
    """One request through the same guard and connection pools as `post`: a reply of any
    status is returned, not raised, and no redirect is followed (a 3xx, with its Location, is
    the answer). `timeout` (default WEBHOOK_TIMEOUT_SECONDS) bounds the whole call: connecting
    (at most WEBHOOK_CONNECT_TIMEOUT_SECONDS of it), then the reply, whose body must be read
    within it, or ReplyTooSlow; a partial body is never passed off as a whole one. The body is
    read up to `max_body` bytes (default REQUEST_MAX_BODY_BYTES); beyond that it is cut and
    `truncated` says so, and the connection is closed rather than drained. Raises
    BlockedDestination, ValueError for a method it does not know, and urllib3's errors
    (refused connections, timeouts, broken replies)."""
    verb = method.upper()
    if verb not in METHODS:
        raise ValueError(f"unknown HTTP method {method!r}")
    check_text(url)
    total = settings.WEBHOOK_TIMEOUT_SECONDS if timeout is None else timeout
    limit = REQUEST_MAX_BODY_BYTES if max_body is None else max_body
    started = monotonic()
    response = pools().request(
        verb,
        url,
        body=body,
        headers=headers or {},
        timeout=urllib3.Timeout(
            connect=min(settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, total), read=total
        ),
        redirect=False,
        retries=False,
        preload_content=False,
    )
    try:
        data, truncated = _read_body(response, limit=limit, deadline=started + total)
    finally:
        response.release_conn()
    return Reply(
        status=response.status,
        headers=HTTPHeaderDict(response.headers),
        body=data,
        seconds=monotonic() - started,
        finished=timezone.now(),
        truncated=truncated,
    )


def request_soon(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
    max_body: int | None = None,
) -> Future[Reply]:
    """`request`, sent from this module's threads while the caller goes on (a sync reads one
    page while the vendor serves the next). The Future's result is the Reply, or raises what
    `request` would; the caller's context (its span) goes with it."""
    context = contextvars.copy_context()
    return _executor().submit(
        context.run,
        request,
        method,
        url,
        headers=headers,
        body=body,
        timeout=timeout,
        max_body=max_body,
    )


def _read_body(
    response: urllib3.BaseHTTPResponse, *, limit: int, deadline: float
) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if monotonic() >= deadline:
            response.close()
            raise ReplyTooSlow(f"the reply was not read whole in time ({size} bytes so far)")
        chunk = response.read1(min(limit - size, 65536))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    if _at_end(response):
        return b"".join(chunks), False
    response.close()
    return b"".join(chunks), True


def _read_snippet(response: urllib3.BaseHTTPResponse, *, deadline: float) -> bytes:
    """The first KB of the reply, read by `deadline` at the latest (a receiver that sends a
    byte at a time cannot hold a worker). The connection is kept only when the whole reply
    was read; otherwise it is closed rather than drained."""
    snippet = b""
    while len(snippet) < RESPONSE_SNIPPET_BYTES and monotonic() < deadline:
        chunk = response.read1(RESPONSE_SNIPPET_BYTES - len(snippet))
        if not chunk:
            break
        snippet += chunk
    if monotonic() >= deadline or not _at_end(response):
        response.close()
    return snippet


def _at_end(response: urllib3.BaseHTTPResponse) -> bool:
    if response.length_remaining is not None:
        return response.length_remaining == 0
    # A chunked reply: only a read can tell, and one of nothing left is cheap.
    return not response.read1(1)


Endpoint = tuple[str, str, int | None]  # scheme, host, port: the line a request waits in


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]

    @property
    def endpoint(self) -> Endpoint:
        parts = urlsplit(self.url)
        return parts.scheme, (parts.hostname or "").lower(), parts.port


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    # Made on first use, in the process that sends: django-q2 forks its workers, and threads
    # do not survive a fork.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.WEBHOOK_CONCURRENCY, thread_name_prefix="outbound"
            )
        return _pool


def post_all(batch: list[Request], *, deadline: float = math.inf) -> list[Reply | Exception]:
    """POST every request, WEBHOOK_CONCURRENCY at a time and at most
    WEBHOOK_PER_ENDPOINT_CONCURRENCY to one endpoint; the result of each, in order, is its Reply
    or the exception that stopped it. A request waits in its endpoint's line, not in the pool's,
    so a slow endpoint holds only its own share of the connections. One not started by
    `deadline` (time.monotonic()) is not sent: its result is Deferred."""
    results: list[Reply | Exception | None] = [None] * len(batch)
    lines: dict[Endpoint, deque[int]] = defaultdict(deque)
    for index, request in enumerate(batch):
        lines[request.endpoint].append(index)
    running: dict[Future[Reply | Exception], tuple[Endpoint, int]] = {}
    busy: Counter[Endpoint] = Counter()

    def launch() -> None:
        if monotonic() > deadline:
            for line in lines.values():
                while line:
                    results[line.popleft()] = Deferred("not sent: the batch's time ran out")
            return
        for endpoint, line in lines.items():
            while line and busy[endpoint] < settings.WEBHOOK_PER_ENDPOINT_CONCURRENCY:
                if len(running) >= settings.WEBHOOK_CONCURRENCY:
                    return
                index = line.popleft()
                running[_executor().submit(_post_one, batch[index])] = (endpoint, index)
                busy[endpoint] += 1

    launch()
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            endpoint, index = running.pop(future)
            busy[endpoint] -= 1
            results[index] = future.result()
        launch()
    return results  # type: ignore[return-value]


def _post_one(request: Request) -> Reply | Exception:
    try:
        return post(request.url, body=request.body, headers=request.headers)
    except Exception as exc:  # the caller records it as the attempt's outcome
        return exc
