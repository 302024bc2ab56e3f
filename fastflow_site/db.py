"""Database helpers shared by the apps' services."""

from __future__ import annotations

from django.db import connection


def serialise(name: str) -> None:
    """Inside an atomic block: make concurrent check-then-write sections on `name` take turns.

    PostgreSQL: a transaction-level advisory lock (released at commit). SQLite: nothing to do,
    the settings open every transaction with BEGIN IMMEDIATE, which already takes the single
    write lock before the first read.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
