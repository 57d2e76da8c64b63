"""Every reply under /api and /v1 is the API's own: JSON `{"error": ...}` under /api (as
core.api.exception_handler makes them), and under /v1 a google.rpc.Status in the request's OTLP
encoding (JSON when its Content-Type names neither), as OtlpView's are.

Django answers some requests before, around or instead of a view, in HTML or with an empty
body: an unknown URL or a trailing slash (404), a method a plain view lacks (405: GET, HEAD or
OPTIONS on /v1), a Host outside ALLOWED_HOSTS or too many query fields (400), a crash (500).
ApiReplies, the outermost middleware, turns those replies into the API's; the error handlers
(core.urls) give the ones whose cause only they know their exact message. What never reaches
Django (a request line gunicorn cannot parse) is answered by the server in front.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from opentelemetry import trace

from observability import otlp

API, OTLP = "/api", "/v1"
# Headers of Django's reply that the API's keeps: what to do next.
_KEPT = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiReplies:
    """An error reply under /api or /v1 that is not in the API's encoding (one of Django's
    own) becomes the API's error, with its status and the headers that say what to do next."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or _is_the_apis(request, response):
            return response  # a redirect (to https, say) says what to do in its Location
        reply = error_reply(request, response.status_code, _message(request, response))
        for header in _KEPT:
            if header in response:
                reply[header] = response[header]
        return reply


def reply_media(request: HttpRequest) -> str | None:
    """The media type of the request's replies: JSON under /api, the request's OTLP encoding
    under /v1; None elsewhere (the admin's pages are HTML)."""
    return _media(request.path_info, request.headers.get("Content-Type", ""))


def error_reply(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """An error under /api or /v1, in the request's reply encoding."""
    media, body = error_body(
        request.path_info, request.headers.get("Content-Type", ""), status, message
    )
    return HttpResponse(body, status=status, content_type=media)


def error_body(path: str, content_type: str, status: int, message: str) -> tuple[str, bytes]:
    """The media type and body of an error for a request to `path` sent as `content_type`:
    {"error": ...} in JSON, and under /v1 a google.rpc.Status in the request's OTLP encoding.
    Plain values, so that what answers before Django (a WSGI or ASGI guard) can answer alike."""
    media = _media(path, content_type) or otlp.JSON
    if _area(path) == OTLP:
        return media, otlp.status_body(message, media, status)
    return media, json.dumps({"error": message}).encode()


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: Django's SuspiciousOperation and BadRequest, named under the API."""
    if reply_media(request) is None:
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_reply(request, 413, f"The body is over the limit of {limit} bytes.")
    if isinstance(exception, DisallowedHost):
        message = "The Host header names a host this server does not answer for."
    elif isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        message = f"More than {limit} query or form fields."
    else:
        message = "The request is malformed."
    return error_reply(request, 400, message)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the trace id lets the operator find the traceback in the logs."""
    if reply_media(request) is None:
        return defaults.server_error(request)
    context = trace.get_current_span().get_span_context()
    seen = f" (trace_id {context.trace_id:032x})" if context.is_valid else ""
    return error_reply(
        request, 500, f"Internal server error: the platform logged it{seen}. Retry later."
    )


def _media(path: str, content_type: str) -> str | None:
    area = _area(path)
    if area == API:
        return otlp.JSON
    if area == OTLP:
        try:
            return otlp.media_type(content_type)
        except otlp.OtlpError:
            return otlp.JSON
    return None


def _area(path: str) -> str | None:
    return next((area for area in (API, OTLP) if path == area or path.startswith(area + "/")), None)


def _is_the_apis(request: HttpRequest, response: HttpResponse) -> bool:
    """Whether the reply is already the API's: in its encoding, or outside the API."""
    area = _area(request.path_info)
    if area is None or getattr(response, "streaming", False):
        return True
    media = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media == otlp.JSON or (media == otlp.PROTOBUF and area == OTLP)


def _message(request: HttpRequest, response: HttpResponse) -> str:
    path, status = request.path_info, response.status_code
    if status == 404:
        return f"No such API endpoint: {path}.{_without_slash_hint(path)}"
    if status == 405:
        allowed = response.get("Allow", "")
        return f"{request.method} is not allowed on {path}; allowed: {allowed or 'none'}."
    return f"{status} {response.reason_phrase}."


def _without_slash_hint(path: str) -> str:
    """The API's paths have no trailing slash; say so when the path without it is one."""
    if not path.endswith("/") or path == "/":
        return ""
    try:
        resolve(path.rstrip("/"))
    except Resolver404:
        return ""
    return f" Did you mean {path.rstrip('/')} (no trailing slash)?"
