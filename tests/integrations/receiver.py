"""A real HTTP receiver on 127.0.0.1 for the webhook tests: it verifies every request with the
public `standardwebhooks` library, as a subscriber's service would, and answers as told."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0  # seconds between the bytes of the body
    gate: threading.Event | None = None  # held until the test opens it (at most a minute)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float
    payload: dict | None
    client_port: int = 0


class Receiver:
    """Answers with the queued answers in turn, then with `default`. `secrets` are the ones
    its owner holds; a request is verified if any of them verifies it."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.answers: deque[Answer] = deque()
        self.default = Answer()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.arrivals = 0  # requests that came in, answered or not yet
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def wait_for_arrivals(self, count: int = 1, *, timeout: float = 30) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: self.arrivals >= count, timeout=timeout):
                raise AssertionError(f"{self.arrivals} requests arrived, not {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verify(self, body: bytes, headers: dict[str, str]) -> dict | None:
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
        return None

    def _next_answer(self) -> Answer:
        with self.lock:
            return self.answers.popleft() if self.answers else self.default

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = receiver.verify(body, headers)
                answer = receiver._next_answer()
                with receiver.arrived:
                    receiver.arrivals += 1
                    receiver.arrived.notify_all()
                if answer.gate is not None:
                    answer.gate.wait(timeout=60)
                if answer.delay:
                    time.sleep(answer.delay)
                with receiver.lock:
                    receiver.received.append(
                        Received(
                            headers,
                            body,
                            payload is not None,
                            time.monotonic(),
                            payload,
                            self.client_address[1],
                        )
                    )
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if not answer.trickle:
                    self.wfile.write(answer.body)
                    return
                for byte in answer.body:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up on us, as it should
                        return
                    time.sleep(answer.trickle)

            def log_message(self, *args) -> None:
                pass

        return Handler
