"""Pagination for the API's list endpoints (APIViews paginate explicitly).

Small tables (pipelines, schedules, secrets, users, tokens) use page numbers with a count.
Tables that grow without bound (runs) use a keyset cursor: every page is an index range seek,
as fast at run 1,000,000 as at run 50, and no page pays for a COUNT(*) over the history.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def paginated_response(
    *,
    request: Request,
    view: APIView,
    queryset: QuerySet,
    serializer_class: type[serializers.BaseSerializer],
    context: dict[str, Any] | None = None,
) -> Response:
    paginator = PagePagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    serializer = serializer_class(page, many=True, context=context or {"request": request})
    return paginator.get_paginated_response(serializer.data)


class KeysetPagination(CursorPagination):
    """DRF's cursor pagination (position = the first ordering column, ties broken by an offset
    inside the cursor), with a 400 for a cursor that was not one of ours."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def __init__(self, ordering: tuple[str, ...]) -> None:
        self.ordering = ordering

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            message = "not a cursor of this list: follow the `next` or `previous` link"
            raise ValidationError({self.cursor_query_param: message}) from None


def cursor_paginated_response(
    *,
    request: Request,
    view: APIView,
    queryset: QuerySet,
    ordering: tuple[str, ...],
    serializer_class: type[serializers.BaseSerializer],
) -> Response:
    """One page of `queryset` in `ordering` (its first column must be indexed and nearly
    unique, e.g. queued_at), as {"next", "previous", "results"}."""
    if "page" in request.query_params:
        raise ValidationError(
            {"page": "this list is paginated by cursor: follow the `next` or `previous` link"}
        )
    paginator = KeysetPagination(ordering)
    page = paginator.paginate_queryset(queryset, request, view=view)
    serializer = serializer_class(page, many=True, context={"request": request})
    return paginator.get_paginated_response(serializer.data)


def cursor_paginated_schema(serializer_class: type[serializers.BaseSerializer], name: str) -> Any:
    """The response schema of `cursor_paginated_response` for the OpenAPI document."""
    return inline_serializer(
        name=name,
        fields={
            "next": serializers.URLField(allow_null=True, help_text="the next (older) page"),
            "previous": serializers.URLField(allow_null=True, help_text="the newer page"),
            "results": serializer_class(many=True),
        },
    )


def paginated_schema(serializer_class: type[serializers.BaseSerializer], name: str) -> Any:
    """The response schema of `paginated_response` for the OpenAPI document."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
