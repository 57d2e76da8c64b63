"""The REST API's one parser: JSON, bounded before it is read.

Its own module: DRF imports the parser classes while it builds APIView, so this module must not
import DRF's views (core.api does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any, NoReturn

from django.conf import settings
from rest_framework import exceptions, parsers, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class JsonParser(parsers.BaseParser):
    """A JSON body, refused unread over API_MAX_BODY_BYTES. DRF's JSONParser reads the whole
    body first, up to Django's DATA_UPLOAD_MAX_MEMORY_SIZE (as large as an OTLP request), and
    lets a deeply nested body crash the decoder (a 500); both are a 4xx here. JSON is UTF-8
    (RFC 8259), whatever charset the Content-Type names. Not a subclass of JSONParser: DRF
    reads the body whole for its subclasses."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        cap = settings.API_MAX_BODY_BYTES
        request = (parser_context or {})["request"]
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        body = b"" if declared > cap else stream.read(cap + 1)
        if declared > cap or len(body) > cap:
            raise PayloadTooLarge(f"The body is over the limit of {cap} bytes.")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(
                f"The body is not UTF-8 (byte {exc.start} is {body[exc.start]:#04x})."
            ) from None
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError("The JSON body is nested too deeply.") from None
        except ValueError as exc:  # the advice after a ";" is Python's (int digits), not theirs
            reason = str(exc).split(";", 1)[0]
            raise exceptions.ParseError(f"The body is not valid JSON: {reason}.") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")
