"""The web tier under gunicorn (gunicorn.conf.py): an event loop receives each request whole,
headers and body, and only then does a thread of a fixed pool serve it with the WSGI
application (core.wsgi: Django behind its body guard).

With gunicorn's sync or gthread workers a thread (or a whole process) reads the request, so a
client sending a byte every few seconds held one for as long as it liked, and ten of them took
the API, OTLP and the health endpoint down. Here a slow client holds a socket and a little
memory, never a thread, and its body must arrive at a minimum rate (408 otherwise). The pool
keeps what the threaded WSGI setup had: Django's persistent database connections, one a thread
(Django's own ASGI handler runs each request in a new thread, with a new connection).
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from django.conf import settings

from core.wsgi import application as wsgi_application

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

Scope = dict[str, Any]  # ASGI's: a connection's, and each message
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]

# Besides its deadline (REQUEST_BODY_TIMEOUT_SECONDS, REQUEST_BODY_MIN_RATE), a body may pause
# no longer than this: gunicorn gives up a body after its `timeout` (30 s) without bytes and
# answers 500; this answers 408 first.
BODY_IDLE = 15.0

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class ClientGone(Exception):
    """The client closed the connection before its body ended."""


async def receive_body(receive: Receive, *, limit: int | None) -> bytes:
    """The whole body of the request; past `limit`, the first limit + 1 bytes (the WSGI guard
    then refuses it as too large without reading). TimeoutError when it comes too slowly."""
    loop = asyncio.get_running_loop()
    grace, rate = settings.REQUEST_BODY_TIMEOUT_SECONDS, settings.REQUEST_BODY_MIN_RATE
    started = loop.time()
    chunks, size = list[bytes](), 0
    while True:
        deadline = min(started + grace + size / rate, loop.time() + BODY_IDLE)
        async with asyncio.timeout_at(deadline):
            message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body") or (limit is not None and size > limit):
            return b"".join(chunks)


def environ_of(scope: Scope, body: bytes) -> WSGIEnvironment:
    """The WSGI environ (PEP 3333) of an ASGI HTTP scope, with the whole body as its input."""
    root = scope.get("root_path", "")
    # PATH_INFO is the percent-decoded path's bytes as latin-1, as gunicorn's WSGI gives it.
    path = unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path.removeprefix(root),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "SERVER_NAME": (scope.get("server") or ("localhost", 80))[0],
        "SERVER_PORT": str((scope.get("server") or ("localhost", 80))[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name == "CONTENT_LENGTH":
            continue  # the body's own length, set above
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def respond(app: WSGIApplication, environ: WSGIEnvironment) -> Response:
    """Call the WSGI application and collect its whole response (in a pool thread: the thread
    is free again before a slow client has read it)."""
    chunks: list[bytes] = []
    started: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()  # Django's request_finished: in this thread, with its connection
    status, headers = started
    encoded = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    return int(status[:3]), encoded, b"".join(chunks)


class Front:
    """The ASGI application: receive the request whole in the event loop, then hand it to the
    WSGI application on one of `threads` threads."""

    def __init__(self, app: WSGIApplication, *, threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets; lifespan is off (gunicorn.conf.py)
        try:
            body = await receive_body(receive, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except ClientGone:
            return  # nobody to answer, and nothing of it reached Django
        except TimeoutError:
            status, headers, content = _error(scope, 408, _too_slow())
        else:
            loop = asyncio.get_running_loop()
            status, headers, content = await loop.run_in_executor(
                self.pool, respond, self.app, environ_of(scope, body)
            )
        if status >= 200 and status not in (204, 304) and not _has_length(headers):
            # The whole body is in hand: its length, rather than chunked framing.
            headers = [*headers, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-length" for name, _ in headers)


def _too_slow() -> str:
    return (
        f"The request body came too slowly: it must arrive within "
        f"{settings.REQUEST_BODY_TIMEOUT_SECONDS:g} s plus 1 s per "
        f"{settings.REQUEST_BODY_MIN_RATE} bytes, without a pause over {BODY_IDLE:g} s."
    )


def _error(scope: Scope, status: int, message: str) -> Response:
    """An error answered before Django, as Django's would be (core.middleware): JSON, and
    under /v1 a google.rpc.Status in the request's OTLP encoding."""
    from core.middleware import error_body

    content_type = next(
        (value.decode("latin-1") for name, value in scope["headers"] if name == b"content-type"),
        "",
    )
    media, content = error_body(scope["path"], content_type, status, message)
    headers = [(b"content-type", media.encode()), (b"connection", b"close")]
    return status, headers, content


application = Front(wsgi_application, threads=settings.WEB_THREADS)
