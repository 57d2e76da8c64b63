"""core.outbound.request, the general outbound call (syncs, probes, vendor key APIs): any
method; the reply's status, case-insensitive headers and bounded body; the same guard and
connection pools as the webhooks' POSTs; no redirects followed. Against a real server on
127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import outbound
from core.outbound import BlockedDestination, ReplyTooSlow


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that a reused connection shows

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def do_DELETE(self) -> None:
        self.answer()

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.peers.append(self.client_address[1])
        path = self.path
        if path.startswith("/status/"):
            self.reply(int(path.rsplit("/", 1)[1]), b"{}", {"X-RateLimit-Remaining": "0"})
        elif path == "/redirect":
            self.reply(302, b"", {"Location": "/echo"})
        elif path.startswith("/big/"):
            self.reply(200, b"x" * int(path.rsplit("/", 1)[1]))
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"ab", b"cd", b""):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.01)
        else:
            echoed = {
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self.reply(200, json.dumps(echoed).encode(), {"Content-Type": "application/json"})

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def vendor(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.peers = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_it_sends_a_method_its_headers_and_body_and_returns_the_reply(vendor):
    _, base = vendor
    reply = outbound.request(
        "post", f"{base}/echo?x=1", headers={"Authorization": "Bearer t"}, body=b'{"a":1}'
    )

    assert reply.status == 200 and not reply.truncated
    echoed = json.loads(reply.body)
    assert echoed["method"] == "POST" and echoed["path"] == "/echo?x=1"
    assert echoed["headers"]["authorization"] == "Bearer t" and echoed["body"] == '{"a":1}'
    assert reply.elapsed > 0 and reply.elapsed == reply.seconds


def test_it_sends_a_request_from_its_threads_while_the_caller_goes_on(vendor):
    _, base = vendor
    sent = outbound.request_soon("GET", f"{base}/trickle", timeout=5)

    assert not sent.done()  # a second's trickle: the caller had its hands free meanwhile
    reply = sent.result(timeout=10)
    assert (reply.status, reply.body) == (200, b"x" * 100)


def test_it_raises_from_a_request_sent_soon_what_the_request_would(vendor, settings):
    _, base = vendor
    settings.OUTBOUND_ALLOWED_HOSTS = []
    sent = outbound.request_soon("GET", f"{base}/echo")

    with pytest.raises(BlockedDestination, match="OUTBOUND_ALLOWED_HOSTS"):
        sent.result(timeout=10)


def test_it_returns_an_error_status_with_headers_found_in_any_case(vendor):
    _, base = vendor
    reply = outbound.request("GET", f"{base}/status/429")

    assert reply.status == 429
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert reply.headers["X-RATELIMIT-REMAINING"] == "0"
    assert reply.headers.get("x-missing") is None


def test_it_does_not_follow_a_redirect(vendor):
    server, base = vendor
    reply = outbound.request("GET", f"{base}/redirect")

    assert reply.status == 302 and reply.headers["location"] == "/echo"
    assert len(server.peers) == 1  # the Location was not fetched


@pytest.mark.parametrize(("size", "truncated"), [(100, False), (101, True), (5000, True)])
def test_it_bounds_the_body_and_says_when_it_cut_it(vendor, size, truncated):
    _, base = vendor
    reply = outbound.request("GET", f"{base}/big/{size}", max_body=100)

    assert reply.body == b"x" * min(size, 100) and reply.truncated is truncated


def test_it_reads_a_chunked_reply_whole(vendor):
    _, base = vendor
    reply = outbound.request("GET", f"{base}/chunked", max_body=4)

    assert (reply.body, reply.truncated) == (b"abcd", False)


def test_it_reuses_the_connection_for_the_next_request(vendor):
    server, base = vendor
    for _ in range(3):
        assert outbound.request("GET", f"{base}/echo").status == 200

    assert len(server.peers) == 3 and len(set(server.peers)) == 1


def test_it_gives_up_on_a_reply_that_trickles_past_its_timeout(vendor):
    _, base = vendor
    with pytest.raises(ReplyTooSlow):
        outbound.request("GET", f"{base}/trickle", timeout=0.2)


def test_it_refuses_a_private_target_unless_allowed(vendor, settings):
    _, base = vendor
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(BlockedDestination, match="OUTBOUND_ALLOWED_HOSTS"):
        outbound.request("GET", f"{base}/echo")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # either list allows it
    assert outbound.request("GET", f"{base}/echo").status == 200


def test_it_refuses_a_url_with_a_control_character_and_an_unknown_method(vendor):
    _, base = vendor
    with pytest.raises(BlockedDestination, match="line feed"):
        outbound.request("GET", f"{base}/echo\nX-Injected: 1")
    with pytest.raises(ValueError, match="unknown HTTP method"):
        outbound.request("BREW", f"{base}/echo")


def test_it_keeps_replies_built_by_hand_case_insensitive():
    reply = outbound.Reply(
        status=503, headers={"Retry-After": "5"}, body=b"", seconds=0.1, finished=None
    )

    assert reply.headers["retry-after"] == "5"
