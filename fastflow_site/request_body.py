"""Request bodies without a Content-Length (`Transfer-Encoding: chunked`), for WSGI servers.

Django reads a request body only as far as Content-Length says: without one the body is empty,
so a chunked webhook call started a run with no parameters and a chunked API call lost its
JSON, each with a success status. This WSGI wrapper runs before Django sees the request:

- when the server has decoded the chunks and marks the stream as ending on its own
  (`wsgi.input_terminated`, as gunicorn does), the body is read here, at most one byte past
  the largest body any endpoint accepts (413 beyond it), and handed to Django as a body with a
  Content-Length, so every endpoint applies its own limit exactly as for any other body;
- otherwise (runserver, wsgiref) the raw chunks cannot be read: 411 Length Required.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings

from fastflow_site.api.errors import error_body

READ_SIZE = 64 * 1024
# After refusing an oversized body, this much more of it is read and dropped, so that a client
# still sending can finish and read the 413 (closing on unread data resets the connection and
# the client sees "broken pipe" instead of the answer). Beyond it the connection is closed.
DRAIN_BYTES = 64 * 1024 * 1024


def body_limit() -> int:
    """The largest body any endpoint accepts: webhooks have their own cap, everything else
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE."""
    return max(settings.FASTFLOW_WEBHOOK_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)


def _read_at_most(stream: Any, limit: int) -> bytes | None:
    """The whole stream, or None when it holds more than `limit` bytes."""
    buffer = bytearray()
    while len(buffer) <= limit:
        chunk = stream.read(min(READ_SIZE, limit + 1 - len(buffer)))
        if not chunk:
            return bytes(buffer)
        buffer += chunk
    return None


def _drain(stream: Any, limit: int) -> None:
    drained = 0
    while drained < limit and (chunk := stream.read(READ_SIZE)):
        drained += len(chunk)


def _refuse(start_response: Callable, status: int, code: str, detail: str) -> Iterable[bytes]:
    payload = json.dumps(error_body(code, detail)).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


class ChunkedBodies:
    """WSGI middleware around Django's application (see the module docstring)."""

    def __init__(self, application: Callable) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_TRANSFER_ENCODING") and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                return _refuse(
                    start_response,
                    411,
                    "length_required",
                    "this server cannot read a chunked request body; send a Content-Length",
                )
            limit = body_limit()
            body = _read_at_most(environ["wsgi.input"], limit)
            if body is None:
                _drain(environ["wsgi.input"], DRAIN_BYTES)
                return _refuse(
                    start_response,
                    413,
                    "payload_too_large",
                    f"request body is larger than {limit} bytes",
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)
