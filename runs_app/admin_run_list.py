"""The run list's machinery, shaped so every option it offers is answered by an index at any
history size (docs/admin-runs.md, "Large histories"): a capped count, one sort column with a
fixed tie-break, a search by run id prefix or exact pipeline name, and date links from index
probes instead of SELECT DISTINCT over every run."""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime
from functools import cached_property
from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import OrderBy, QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from pipelines_app.models import Pipeline

# A shorter prefix matches 1/16 of all runs per character left out, which no index narrows.
MIN_ID_PREFIX = 4
HEX = frozenset("0123456789abcdef")


# The list filters that fix a sort column to one value: sorting by it then costs nothing.
FILTER_PARAMS = {
    "status": ("status__exact",),
    "triggered_by": ("triggered_by",),
    "pipeline_id": ("pipeline__pipeline_name__exact",),
}


class CappedPaginator(Paginator):
    """Counts at most CAP rows: an exact COUNT(*) over millions of runs is not worth its
    cost, and nobody pages to run 10,001 (they filter, search or pick a date)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        known = getattr(self.object_list, "capped_count", None)  # see RunChangeList
        if known is not None:
            return known
        # Unordered: any index that covers the filter can be counted, not only the sorted one.
        return self.object_list.order_by()[: self.CAP].count()

    @property
    def capped(self) -> bool:
        return self.count >= self.CAP

    @property
    def cap_label(self) -> str:
        return f"{self.CAP:,}"


class RunChangeList(ChangeList):
    """Sorted by one column at a time, ties broken by (queued_at, id) in the same direction:
    each sortable column leads an index whose next column is queued_at (docs/schema.md)."""

    requested_page: int | None = None
    date_range: tuple[datetime, datetime] | None = None
    sorted_within_cap = False

    def get_filters(self, request: HttpRequest) -> tuple:
        # The date links' range is kept apart and applied last (get_queryset), so the probes of
        # `date_links` can run on the list without it: SQLite uses one lower and one upper
        # bound per column, and given the year's bounds and a month's it may scan the year.
        specs, has_filters, remaining, may_have_duplicates, active = super().get_filters(request)
        field = self.date_hierarchy
        self.date_range = None
        if field and f"{field}__gte" in remaining and f"{field}__year" in self.params:
            start = remaining.pop(f"{field}__gte")[0]
            end = remaining.pop(f"{field}__lt")[0]
            self.date_range = (start, end)
        return specs, has_filters, remaining, may_have_duplicates, active

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        if exclude_parameters is not None:
            return queryset
        self.undated_queryset = queryset
        start, end = self.date_range or (None, None)
        dated = self._dated(queryset, start, end)
        boundary = self._sort_boundary(dated)
        if boundary is None:
            return dated
        # Newer than the boundary only: one lower bound on queued_at, not the date's and this
        # one (SQLite would use either).
        self.sorted_within_cap = True
        bounded = self._dated(queryset, boundary, end)
        bounded.capped_count = CappedPaginator.CAP  # known: the paginator need not count
        return bounded

    def _dated(self, queryset: QuerySet, start: datetime | None, end: datetime | None) -> QuerySet:
        field = self.date_hierarchy
        if start is not None:
            queryset = queryset.filter(**{f"{field}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{field}__lt": end})
        return queryset

    def _sort_boundary(self, queryset: QuerySet) -> datetime | None:
        """A filter (or search, or date) with a sort on another column: the database would
        read every matching run to sort them (O(matches): seconds for a big pipeline's
        runs). Past the count's cap the list is the newest CAP matches, so only those are
        sorted: this returns the queue time of the CAP-th newest match (an index-only lookup),
        or None when there are fewer matches or no such sort."""
        ordering = list(queryset.query.order_by)
        first = _order_name(ordering[0]) if ordering else "queued_at"
        fixed_by_filter = any(p in self.params for p in FILTER_PARAMS.get(first, ()))
        if first == "queued_at" or fixed_by_filter or not queryset.query.where:
            return None
        cap = CappedPaginator.CAP
        newest = queryset.order_by("-queued_at").values_list("queued_at", flat=True)
        return newest[cap - 1 : cap].first()

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list:
        if self.params.get(ORDER_VAR):
            # A second sort column would need an index per pair of columns.
            self.params[ORDER_VAR] = self.params[ORDER_VAR].split(".")[0]
        return super().get_ordering(request, queryset)

    def _get_deterministic_ordering(self, ordering: list) -> list:
        ordering = list(ordering)
        names = [_order_name(part) for part in ordering]
        if {"pk", "id"} & set(names):
            return ordering
        sign = "-" if not ordering or _descending(ordering[0]) else ""
        if "queued_at" not in names:
            ordering.append(f"{sign}queued_at")
        ordering.append(f"{sign}pk")
        return ordering

    def get_results(self, request: HttpRequest) -> None:
        try:
            super().get_results(request)
        except IncorrectLookupParameters:
            # Past the last page: show the last one and say so (the admin's default is a
            # redirect to page 1 that hides why).
            last = self.model_admin.get_paginator(
                request, self.queryset, self.list_per_page
            ).num_pages
            if self.page_num <= last:
                raise
            self.requested_page, self.page_num = self.page_num, last
            super().get_results(request)


def _order_name(part: Any) -> str:
    if isinstance(part, OrderBy):
        return getattr(part.expression, "name", "")
    return str(part).lstrip("-")


def _descending(part: Any) -> bool:
    return part.descending if isinstance(part, OrderBy) else str(part).startswith("-")


# --- search ---------------------------------------------------------------------------------------


def run_id_bounds(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The id range of runs whose id starts with `term` (hex, dashes optional), or None."""
    digits = term.strip().lower().replace("-", "")
    if not MIN_ID_PREFIX <= len(digits) <= 32 or not set(digits) <= HEX:
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def run_search(queryset: QuerySet, term: str) -> QuerySet:
    """An exact pipeline name, else a run id or id prefix; anything else matches nothing
    (substring search would read every run, four times)."""
    term = term.strip()
    if not term:
        return queryset
    if Pipeline.objects.filter(pipeline_name=term).exists():
        return queryset.filter(pipeline_id=term)
    bounds = run_id_bounds(term)
    if bounds is None:
        return queryset.none()
    return queryset.filter(id__gte=bounds[0], id__lte=bounds[1])


# --- date links -----------------------------------------------------------------------------------


def _nonempty(queryset: QuerySet, field: str, ranges: list[tuple[datetime, datetime]]) -> list:
    """Which [start, end) ranges hold at least one row: one query of probes, each an index
    seek, instead of a DISTINCT over every row. A probe is "the first value in the range, by
    the field's order", not EXISTS: PostgreSQL drops ORDER BY/LIMIT inside EXISTS and may then
    read the table from its start, expecting a match soon, while the rows of a late range sit
    at its end (rows are stored in the order they were queued)."""
    if not ranges:
        return []
    base = queryset.order_by(field).values(field)
    parts, params = [], []
    for start, end in ranges:
        probe = base.filter(**{f"{field}__gte": start, f"{field}__lt": end})[:1]
        sql, args = probe.query.sql_with_params()
        parts.append(f"({sql}) IS NOT NULL")
        params.extend(args)
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return [bool(value) for value in cursor.fetchone()]


def _local(year: int, month: int = 1, day: int = 1) -> datetime:
    return timezone.make_aware(datetime(year, month, day))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _int_param(cl: ChangeList, name: str) -> int | None:
    value = cl.params.get(name)
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def date_links(cl: ChangeList) -> dict:
    """The context of admin/date_hierarchy.html, from bounded queries: MIN/MAX on the index to
    pick the level, then one probe per year, month or day shown."""
    field = cl.date_hierarchy
    runs = getattr(cl, "undated_queryset", cl.queryset)
    keys = {part: f"{field}__{part}" for part in ("year", "month", "day")}
    year, month, day = (_int_param(cl, keys[part]) for part in ("year", "month", "day"))

    def link(**values: int) -> str:
        return cl.get_query_string({keys[k]: v for k, v in values.items()}, [f"{field}__"])

    if year is None:
        # Two queries: SQLite reads MIN or MAX off an index end only when it is alone.
        ends = runs.order_by().values_list(field, flat=True)
        first, last = ends.order_by(field).first(), ends.order_by(f"-{field}").first()
        if first is None or last is None:
            return {"show": False}
        first, last = timezone.localtime(first), timezone.localtime(last)
        if first.year != last.year:
            years = list(range(first.year, last.year + 1))
            found = _nonempty(runs, field, [(_local(y), _local(y + 1)) for y in years])
            choices = [
                {"link": link(year=y), "title": str(y)}
                for y, ok in zip(years, found, strict=True)
                if ok
            ]
            return {"show": True, "choices": choices}
        year = first.year
        if first.month == last.month:
            month = first.month
    if month is None:
        months = [_local(year, m) for m in range(1, 13)]
        ends = [*months[1:], _local(year + 1)]
        found = _nonempty(runs, field, list(zip(months, ends, strict=True)))
        return {
            "show": True,
            "back": {"link": link(), "title": _("All dates")},
            "choices": [
                {
                    "link": link(year=year, month=start.month),
                    "title": capfirst(formats.date_format(start, "YEAR_MONTH_FORMAT")),
                }
                for start, ok in zip(months, found, strict=True)
                if ok
            ],
        }
    if day is None:
        days = [_local(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
        ends = [*days[1:], _local(*_next_month(year, month))]
        found = _nonempty(runs, field, list(zip(days, ends, strict=True)))
        return {
            "show": True,
            "back": {"link": link(year=year), "title": str(year)},
            "choices": [
                {
                    "link": link(year=year, month=month, day=start.day),
                    "title": capfirst(formats.date_format(start, "MONTH_DAY_FORMAT")),
                }
                for start, ok in zip(days, found, strict=True)
                if ok
            ],
        }
    try:
        chosen = _local(year, month, day)
    except ValueError:
        return {"show": False}
    return {
        "show": True,
        "back": {
            "link": link(year=year, month=month),
            "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
        },
        "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
    }
