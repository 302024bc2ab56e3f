"""Path converters for the API's URLs."""

from __future__ import annotations

from django.urls import register_converter


class NameConverter:
    """A path segment without control characters.

    Pipeline names and secret keys end up in SQL parameters, and PostgreSQL refuses strings
    containing NUL; rejecting such paths at routing turns them into a clean 404.
    """

    regex = r"[^/\x00-\x1f\x7f]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NameConverter, "name")
