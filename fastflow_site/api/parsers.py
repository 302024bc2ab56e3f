"""Request body parsers for the API."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Python's JSON decoder recurses once per nesting level and gives up at the interpreter's
# recursion limit (about 1000) with RecursionError, which is not a ValueError: without this a
# body of 100 000 `[` was a 500. The webhook view uses the same wording.
NESTED_TOO_DEEPLY = "malformed JSON body: nested too deeply"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested beyond the decoder's limit is a parse error (400)."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: dict | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(NESTED_TOO_DEEPLY) from None
