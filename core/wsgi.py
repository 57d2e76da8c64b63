"""The WSGI application: Django, behind a guard that reads every request body whole first.

Django reads CONTENT_LENGTH bytes of a body, so a body sent without one (`Transfer-Encoding:
chunked`, as the OpenTelemetry JavaScript exporter sends) reached the views as b"" and was
acknowledged unread; and a client gone mid-body left a short body that a view could take for a
whole one. The guard makes the body one thing for every endpoint: all the bytes the client
sent, read up to DATA_UPLOAD_MAX_MEMORY_SIZE as they arrive, or no call to Django at all.

gunicorn serves this through core.asgi (gunicorn.conf.py), which receives the body in an event
loop first; this guard is what makes `core.wsgi:application` right under any WSGI server too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.wsgi import get_wsgi_application

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

READ_SIZE = 64 * 1024


class BodyRefused(Exception):
    """A body that cannot be handed to Django: answered here, without calling it."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def whole_bodies(app: WSGIApplication) -> WSGIApplication:
    """`app` with every request's body read whole before it is called (see the module)."""

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            read_whole_body(environ, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except BodyRefused as refused:
            from core.middleware import error_body  # after Django's set-up: it imports views

            media, body = error_body(
                environ.get("PATH_INFO", ""),
                environ.get("CONTENT_TYPE", ""),
                int(refused.status[:3]),
                refused.message,
            )
            start_response(
                refused.status,
                [
                    ("Content-Type", media),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),  # what is left of the body is not read
                ],
            )
            return [body]
        return app(environ, start_response)

    return guarded


def read_whole_body(environ: WSGIEnvironment, *, limit: int | None) -> None:
    """Replace wsgi.input by the whole body, with its CONTENT_LENGTH; or, past `limit` bytes,
    by a stream that raises RequestDataTooBig, so that each endpoint answers its own 413 the
    way it answers Django's (the OTLP view in the request's encoding, the API in JSON)."""
    stream = environ["wsgi.input"]
    announced = environ.get("CONTENT_LENGTH") or ""
    if announced:
        try:
            length = int(announced)
        except ValueError:
            raise BodyRefused("400 Bad Request", "The Content-Length is not a number.") from None
        if length < 0:
            raise BodyRefused("400 Bad Request", "The Content-Length is negative.")
        if limit is not None and length > limit:
            return _too_large(environ, length, limit)
        body = _read(stream, length)
        if len(body) < length:
            # The client went away (or stalled past the server's timeout) mid-body.
            raise BodyRefused(
                "400 Bad Request",
                f"The body ended after {len(body)} of the {length} bytes its Content-Length "
                "announced.",
            )
    elif environ.get("wsgi.input_terminated"):
        # The server decoded the framing (chunked) and ends the input with the body.
        body = _read(stream, None if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            return _too_large(environ, len(body), limit)
    elif environ.get("HTTP_TRANSFER_ENCODING"):
        raise BodyRefused(
            "411 Length Required",
            "This server cannot read a body without a Content-Length here: send one.",
        )
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _read(stream: IO[bytes], length: int | None) -> bytes:
    """Up to `length` bytes of `stream` (all of it for None); fewer when it ends first."""
    chunks, size = list[bytes](), 0
    while length is None or size < length:
        chunk = stream.read(READ_SIZE if length is None else min(READ_SIZE, length - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_large(environ: WSGIEnvironment, length: int, limit: int) -> None:
    environ["CONTENT_LENGTH"] = str(length)  # over the limit: Django refuses before reading
    environ["wsgi.input"] = _TooLarge(limit)


class _TooLarge(io.RawIOBase):
    """The input of a body over the limit: reading it is refused (DRF reads the stream
    instead of request.body, where Django checks the limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise RequestDataTooBig(f"The body is over the limit of {self.limit} bytes.")


application = whole_bodies(get_wsgi_application())

from core.runtime import heap  # noqa: E402 - after Django is set up, which it imports

heap.settle()
