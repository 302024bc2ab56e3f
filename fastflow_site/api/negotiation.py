"""Content negotiation for endpoints whose success body is not JSON (logs, SSE)."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FirstRendererNegotiation(BaseContentNegotiation):
    """Always pick the first renderer (JSON), whatever the client's Accept header says.

    The text/plain and text/event-stream bodies are built as Django responses and bypass
    renderers; only error bodies are rendered, and they are JSON. Without this, a client sending
    `Accept: text/event-stream` would get 406 instead of the stream.
    """

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type
