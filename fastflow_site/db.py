"""Database helpers shared by the apps' services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


def serialise(name: str) -> None:
    """Inside an atomic block: make concurrent check-then-write sections on `name` take turns.

    PostgreSQL: a transaction-level advisory lock (released at commit). SQLite: nothing to do,
    the settings open every transaction with BEGIN IMMEDIATE, which already takes the single
    write lock before the first read.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


def counters_add(
    model: type[Model], *, rows: list[dict[str, Any]], key: Sequence[str], add: Sequence[str]
) -> None:
    """Add each row's `add` values to the counters of the row with the same `key`, inserting
    it with those values when there is none: one statement for all rows (`INSERT … ON
    CONFLICT (key) DO UPDATE SET c = c + excluded.c`, on SQLite and PostgreSQL alike).

    Django's ORM cannot say it: `bulk_create(update_conflicts=True)` replaces a counter with
    the new value instead of adding to it, and an UPDATE then an INSERT on a miss costs two
    round trips per row plus a savepoint for the race with a concurrent first insert (which
    the upsert settles inside the database). `key` must be the fields of a unique constraint;
    every row must name the same fields; rows should come in one order everywhere (rows are
    locked in that order). Keys are field names (`pipeline` or `pipeline_id`), values Python
    values as the model takes them.
    """
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in rows[0]]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [field.column for field in fields]
    key_columns = [model._meta.get_field(name).column for name in key]
    add_columns = [model._meta.get_field(name).column for name in add]
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        field.get_db_prep_save(row[name], connection)
        for row in rows
        for name, field in zip(row, fields, strict=True)
    ]
    updates = ", ".join(
        f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in add_columns
    )
    # Identifiers come from the model's meta, quoted; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
        f"VALUES {', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT ({', '.join(quote(c) for c in key_columns)}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
