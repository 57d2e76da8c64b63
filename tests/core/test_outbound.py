"""core.outbound's guard: what a webhook (or any outbound call) may target, when a URL is saved
and again when its connection is made. Addresses and URLs in, verdicts out."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import outbound
from core.outbound import Allowed, BlockedDestination, parse_allowed, refusal

# --- Addresses: the pure verdict --------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),  # cloud metadata
    ("100.64.0.1", "a shared (carrier-grade NAT) address"),
    ("0.0.0.0", "a 'this network' address"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("240.0.0.1", "a reserved or broadcast address"),
    ("255.255.255.255", "a reserved or broadcast address"),
    ("192.0.0.8", "an IETF protocol address"),
    ("192.0.2.1", "a documentation address"),
    ("192.88.99.1", "a 6to4 relay address"),
    ("198.18.0.1", "a benchmarking address"),
    ("::1", "a loopback address"),
    ("::", "the unspecified address"),
    ("::127.0.0.1", "an IPv4-compatible address (deprecated)"),
    ("::8.8.8.8", "an IPv4-compatible address (deprecated)"),
    ("::ffff:127.0.0.1", "which embeds 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.1", "which embeds 10.0.0.1, a private address"),
    ("64:ff9b::7f00:1", "which embeds 127.0.0.1, a loopback address"),  # NAT64
    ("64:ff9b::a00:1", "which embeds 10.0.0.1, a private address"),
    ("64:ff9b::a9fe:a9fe", "which embeds 169.254.169.254, a link-local address"),
    ("64:ff9b::e000:1", "which embeds 224.0.0.1, a multicast address"),
    ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
    ("64:ff9b:1::808:808", "a local-use NAT64 address"),
    ("2002:7f00:1::1", "which embeds 127.0.0.1, a loopback address"),  # 6to4
    ("2002:a00:1::1", "which embeds 10.0.0.1, a private address"),
    ("2002:c0a8:101::1", "which embeds 192.168.1.1, a private address"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "which embeds 127.0.0.1"),  # Teredo, its client
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "which embeds 192.0.2.45"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "which embeds 10.0.0.1"),  # Teredo, its server
    ("2001:2::1", "an IETF protocol address"),
    ("2001:db8::1", "a documentation address"),
    ("3fff::1", "a documentation address"),
    ("fc00::1", "a unique local (private) address"),
    ("fd12:3456::1", "a unique local (private) address"),
    ("fe80::1", "a link-local address"),
    ("fec0::1", "a site-local address"),
    ("ff02::1", "a multicast address"),
    ("ff0e::1", "a multicast address"),  # global scope, but multicast
    ("100::1", "a discard-only address"),
    ("5f00::1", "not a global unicast address"),
    ("4000::1", "not a global unicast address"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address: how an IPv6-only host reaches it
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo of a public client
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_it_refuses_every_address_that_is_not_public_unicast(address, why):
    assert why in refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_it_accepts_public_unicast_addresses(address):
    assert refusal(ipaddress.ip_address(address)) is None


# --- The allowlist -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "allowed"),
    [
        ("hooks.internal", Allowed(host="hooks.internal")),
        ("Hooks.Internal.", Allowed(host="hooks.internal")),
        ("hooks.internal:8443", Allowed(host="hooks.internal", port=8443)),
        ("10.0.0.0/8", Allowed(network=ipaddress.ip_network("10.0.0.0/8"))),
        ("10.0.0.0/8:9000", Allowed(network=ipaddress.ip_network("10.0.0.0/8"), port=9000)),
        ("127.0.0.1", Allowed(network=ipaddress.ip_network("127.0.0.1/32"))),
        ("127.0.0.1:9000", Allowed(network=ipaddress.ip_network("127.0.0.1/32"), port=9000)),
        ("::1", Allowed(network=ipaddress.ip_network("::1/128"))),
        ("fd00::/8", Allowed(network=ipaddress.ip_network("fd00::/8"))),
        ("[::1]", Allowed(network=ipaddress.ip_network("::1/128"))),
        ("[::1]:9000", Allowed(network=ipaddress.ip_network("::1/128"), port=9000)),
        ("[fd00::/8]:9000", Allowed(network=ipaddress.ip_network("fd00::/8"), port=9000)),
    ],
)
def test_it_reads_allowlist_entries_with_or_without_a_port(entry, allowed):
    assert parse_allowed(entry) == allowed


@pytest.mark.parametrize(
    "entry",
    ["127.0.0.1:0", "127.0.0.1:65536", "hooks:https", "[hooks.internal]:80", "a b", "[::1]:x"],
)
def test_it_refuses_allowlist_entries_it_cannot_read(entry):
    with pytest.raises(ValueError):
        parse_allowed(entry)


PLATFORM_PORT = 8000


@pytest.mark.parametrize(
    ("allow", "host", "address", "port", "verdict"),
    [
        ([], "h", "127.0.0.1", 9000, "WEBHOOK_ALLOWED_HOSTS"),
        (["127.0.0.1"], "h", "127.0.0.1", 9000, None),
        (["127.0.0.1:9000"], "h", "127.0.0.1", 9000, None),
        (["127.0.0.1:9000"], "h", "127.0.0.1", 9001, "on port 9000 only, not on port 9001"),
        (["127.0.0.0/8:9000"], "h", "127.0.0.2", 9000, None),
        (["127.0.0.0/8:9000"], "h", "127.0.0.2", 80, "on port 9000 only"),
        (["::1"], "h", "::1", 9000, None),
        (["[::1]:9000"], "h", "::1", 9000, None),
        (["[::1]:9000"], "h", "::1", 9001, "on port 9000 only"),
        (["127.0.0.1"], "h", "::ffff:127.0.0.1", 9000, None),  # the same address on the wire
        (["127.0.0.1"], "h", "64:ff9b::7f00:1", 9000, "which embeds 127.0.0.1"),  # not NAT64
        (["hooks.internal"], "hooks.internal", "10.0.0.5", 443, None),
        (["hooks.internal:8443"], "hooks.internal", "10.0.0.5", 8443, None),
        (["hooks.internal:8443"], "hooks.internal", "10.0.0.5", 443, "on port 8443 only"),
        (["hooks.internal"], "other.internal", "10.0.0.5", 443, "WEBHOOK_ALLOWED_HOSTS"),
        (["10.0.0.0/8", "10.0.0.0/8:9000"], "h", "10.0.0.5", 80, None),  # any port, by one
        (["10.0.0.0/33"], "h", "10.0.0.5", 80, "WEBHOOK_ALLOWED_HOSTS"),  # unreadable: none
        # The platform's own port on this machine, whatever the allowlist says.
        (["127.0.0.1"], "h", "127.0.0.1", PLATFORM_PORT, "this platform's own address"),
        (["127.0.0.1:8000"], "h", "127.0.0.1", PLATFORM_PORT, "this platform's own address"),
        (["127.0.0.0/8"], "h", "127.0.0.5", PLATFORM_PORT, "this platform's own address"),
        (["::1"], "h", "::1", PLATFORM_PORT, "this platform's own address"),
        (["127.0.0.1"], "h", "::ffff:127.0.0.1", PLATFORM_PORT, "this platform's own address"),
        (["0.0.0.0/8"], "h", "0.0.0.0", PLATFORM_PORT, "this platform's own address"),
        (["::/128"], "h", "::", PLATFORM_PORT, "this platform's own address"),
        (["8.8.8.8"], "h", "8.8.8.8", PLATFORM_PORT, None),  # another machine's port
        (["198.51.100.0/24"], "h", "198.51.100.7", PLATFORM_PORT, None),
    ],
)
def test_it_applies_the_allowlist_and_never_allows_the_platform_itself(
    settings, allow, host, address, port, verdict
):
    settings.WEBHOOK_ALLOWED_HOSTS = allow
    settings.PORT = PLATFORM_PORT
    if verdict is None:
        outbound.check_address(host, address, port)
    else:
        with pytest.raises(BlockedDestination, match=verdict):
            outbound.check_address(host, address, port)


def test_it_refuses_an_address_of_this_machine_on_the_platforms_port(settings):
    address = _local_address()
    network = ipaddress.ip_network(address).supernet(new_prefix=8)
    settings.WEBHOOK_ALLOWED_HOSTS = [str(network)]
    settings.PORT = PLATFORM_PORT

    outbound.check_address("h", address, PLATFORM_PORT + 1)
    with pytest.raises(BlockedDestination, match="this platform's own address"):
        outbound.check_address("h", address, PLATFORM_PORT)


def _local_address() -> str:
    """A non-loopback address of this machine: the source of its route out (no packet is
    sent by connecting a UDP socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            pytest.skip("no route out of this machine")
        address = probe.getsockname()[0]
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine has no address but loopback")
    return address


# --- URLs, when they are saved ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "verdict"),
    [
        ("http://8.8.8.8/h", None),
        ("http://[2606:4700:4700::1111]:8443/h", None),
        ("http://[64:ff9b::808:808]/h", None),
        ("http://127.0.0.1/h", "a loopback address"),
        ("http://localhost/h", "a loopback address"),  # a name that resolves to one
        ("http://2130706433/h", "a loopback address"),  # 127.0.0.1 as one number
        ("http://0x7f.1/h", "a loopback address"),
        ("http://[64:ff9b::7f00:1]/h", "which embeds 127.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "which embeds 169.254.169.254"),
        ("http://[64:ff9b:1::a00:1]/h", "a local-use NAT64 address"),
        ("http://[2002:7f00:1::1]/h", "which embeds 127.0.0.1"),
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/h", "which embeds 127.0.0.1"),
        ("http://[::127.0.0.1]/h", "an IPv4-compatible address"),
        ("http://[::ffff:127.0.0.1]/h", "a loopback address"),
        ("http://[::ffff:7f00:1]/h", "a loopback address"),
        ("http://224.0.0.1/h", "a multicast address"),
        ("http://[ff02::1]/h", "a multicast address"),
        ("http://[fe80::1]/h", "a link-local address"),
        ("http://8.8.8.8/a b", "a space (character 17)"),
        ("http://8.8.8.8/h\r\nX-Injected: 1", "a carriage return (CR) (character 17)"),
        ("http://8.8.8.8/h\nX-Injected: 1", "a line feed (LF) (character 17)"),
        ("http://8.8.8.8/h\t", "U+0009"),
        ("http://8.8.8.8/h\x00", "U+0000"),
        ("http://8.8.8.8/h\x7f", "U+007F"),
        ("http://8.8.8.8/h\u200b", "U+200B"),  # invisible
        ("http://8.8.8.8/h\u00a0", "U+00A0"),
        (" http://8.8.8.8/h", "a space (character 1)"),
        ("http://8.8.8.8/h ", "a space (character 17)"),
        ("http://8.8.8.8:0/h", "port must be a number from 1 to 65535"),
        ("http://8.8.8.8:65536/h", "port must be a number from 1 to 65535"),
        ("http://user:pw@8.8.8.8/h", "user name or password"),
    ],
)
def test_it_checks_a_url_when_it_is_saved(settings, url, verdict):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    if verdict is None:
        outbound.check_url(url, require_https=False)
    else:
        with pytest.raises(BlockedDestination, match=re.escape(verdict)):
            outbound.check_url(url, require_https=False)


@pytest.mark.parametrize(
    ("allow", "url", "verdict"),
    [
        (["127.0.0.1:9000"], "http://127.0.0.1:9000/h", None),
        (["127.0.0.1:9000"], "http://127.0.0.1:9001/h", "on port 9000 only"),
        (["127.0.0.1:443"], "https://127.0.0.1/h", None),  # the scheme's port
        (["127.0.0.1:443"], "http://127.0.0.1/h", "on port 443 only, not on port 80"),
        (["[::1]:9000"], "http://[::1]:9000/h", None),
        (["localhost:9000"], "http://localhost:9000/h", None),
        (["127.0.0.1"], f"http://127.0.0.1:{PLATFORM_PORT}/api/events", "platform's own"),
        (["localhost"], f"http://localhost:{PLATFORM_PORT}/h", "platform's own"),
        (["::1"], f"http://[::1]:{PLATFORM_PORT}/h", "platform's own"),
    ],
)
def test_it_checks_the_allowlist_and_the_port_when_a_url_is_saved(settings, allow, url, verdict):
    settings.WEBHOOK_ALLOWED_HOSTS = allow
    settings.PORT = PLATFORM_PORT
    if verdict is None:
        outbound.check_url(url, require_https=False)
    else:
        with pytest.raises(BlockedDestination, match=verdict):
            outbound.check_url(url, require_https=False)


# --- Connections, when they are made ---------------------------------------------------------


class _Server:
    """A plain HTTP server on a loopback address that answers 204 to any POST."""

    def __init__(self, address: str) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = Server((address, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["127.0.0.1", "::1"])
def server(request):
    try:
        server = _Server(request.param)
    except OSError:
        pytest.skip(f"cannot listen on {request.param}")
    yield request.param, server.port
    server.close()


@pytest.mark.parametrize(
    ("allow", "verdict"),
    [
        ([], "WEBHOOK_ALLOWED_HOSTS"),
        (["{address}"], None),
        (["{bracketed}:{port}"], None),
        (["{bracketed}:{other}"], "on port {other} only, not on port {port}"),
        (["localhost"], "WEBHOOK_ALLOWED_HOSTS"),  # a name allows that name, not its address
    ],
)
def test_it_checks_the_address_and_port_it_connects_to(settings, server, allow, verdict):
    address, port = server
    bracketed = f"[{address}]" if ":" in address else address
    names = {"address": address, "bracketed": bracketed, "port": port, "other": port + 1}
    settings.WEBHOOK_ALLOWED_HOSTS = [entry.format(**names) for entry in allow]
    url = f"http://{bracketed}:{port}/h"
    # The guard on the socket, not the one on the URL: this is what a URL saved under another
    # allowlist, or a name that resolves elsewhere since, meets.
    if verdict is None:
        assert outbound.post(url, body=b"{}", headers={}).status == 204
    else:
        with pytest.raises(BlockedDestination, match=verdict.format(**names)):
            outbound.post(url, body=b"{}", headers={})


def test_it_never_connects_to_the_platforms_own_port(settings, server):
    address, port = server
    settings.WEBHOOK_ALLOWED_HOSTS = [address, "localhost"]
    settings.PORT = port  # as if the platform listened where this server does
    bracketed = f"[{address}]" if ":" in address else address
    urls = [f"http://{bracketed}:{port}/h"]
    if address == "127.0.0.1":
        urls.append(f"http://localhost:{port}/h")

    for url in urls:
        with pytest.raises(BlockedDestination, match="this platform's own address"):
            outbound.post(url, body=b"{}", headers={})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:{port}/h\r\nX-Injected: 1", "http://127.0.0.1:{port}/a b"]
)
def test_it_refuses_to_send_a_url_stored_with_a_control_character(settings, url):
    server = _Server("127.0.0.1")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    try:
        with pytest.raises(BlockedDestination, match="percent-encode"):
            outbound.post(url.format(port=server.port), body=b"{}", headers={})
    finally:
        server.close()
