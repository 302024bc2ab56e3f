"""Looking up the object a request names, for the API views."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404


def get_or_404(queryset: QuerySet | type[Model], message: str, **lookup: Any) -> Any:
    """DRF's `get_object_or_404` (a malformed id is a 404 too, never a 500), answering with the
    view's specific message (e.g. "run … not found") in the API's one error shape."""
    try:
        return get_object_or_404(queryset, **lookup)
    except Http404:
        raise NotFound(message) from None
