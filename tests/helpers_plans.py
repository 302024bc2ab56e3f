"""Query plans of the hot queries, on SQLite and PostgreSQL: what the database would do with
them at a million rows.

SQLite plans do not depend on the row count (a default installation has no ANALYZE statistics),
so a tiny test table gets the production plan, and `Planned.served_by` checks that plan.
PostgreSQL would read a tiny table sequentially whatever its indexes, so its plans are taken
with sequential scans and explicit sorts priced out (`enable_seqscan`/`enable_sort` off): it
then still scans or sorts only if no index can serve the query, which is what these tests must
catch. Which of several usable indexes it picks depends on statistics a test table cannot
have, so `served_by` asks the sharper question there: with every other index of the table
dropped (inside a savepoint, rolled back), is the query still answered by this one index?
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

# Names that differ: SQLite names the indexes of a primary key or an inline UNIQUE itself.
ALIASES = {
    "PK": {"sqlite": "sqlite_autoindex_pipeline_runs_1", "postgresql": "pipeline_runs_pkey"},
    "run_period_stats_key": {"sqlite": "sqlite_autoindex_run_period_stats_1"},
}
DML = re.compile(r"^\s*(SELECT|UPDATE|DELETE)\b", re.IGNORECASE)
PG_SORT_NODE = re.compile(r"^\s*(->\s+)?Sort\s+\(")


@dataclass
class Planned:
    sql: str
    plan: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.plan)

    def uses(self, index: str) -> bool:
        return _names(self.text, index)

    def served_by(self, *indexes: str, table: str = "pipeline_runs", sorts: bool = False) -> bool:
        """Whether these indexes answer this query without a scan of `table` (see the
        module); several for a query with a subquery."""
        if connection.vendor == "sqlite":
            return all(self.uses(index) for index in indexes)
        alone = Planned(sql=self.sql, plan=explain(self.sql, only=(table, *indexes)))
        return all(alone.uses(i) for i in indexes) and not scan_problems(alone, table, sorts=sorts)


def _names(text: str, index: str) -> bool:
    name = ALIASES.get(index, {}).get(connection.vendor, index)
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _drop_indexes_but(cursor, table: str, *keep: str) -> None:
    """PostgreSQL, inside a savepoint: drop every index of `table` but its primary key and
    `keep` (unique constraints through their constraint)."""
    keep = {ALIASES.get(name, {}).get("postgresql", name) for name in keep}
    cursor.execute(
        """SELECT c.relname, i.indisunique, con.conname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid
        WHERE t.relname = %s AND NOT i.indisprimary""",
        [table],
    )
    for name, _, constraint in cursor.fetchall():
        if name in keep:
            continue
        if constraint:
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
        else:
            cursor.execute(f'DROP INDEX "{name}"')


def explain(sql: str, *, only: tuple[str, ...] | None = None) -> list[str]:
    """The plan of `sql`; on PostgreSQL with `only=(table, index, …)`, as if these indexes
    (and the primary key) were the table's only ones."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            return [row[3] for row in cursor.fetchall()]
        with transaction.atomic():
            # Undone with the savepoint (SET LOCAL too): nothing leaks into the test.
            if only is not None:
                _drop_indexes_but(cursor, *only)
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            transaction.set_rollback(True)
            return plan


def scan_problems(planned: Planned, table: str, *, sorts: bool = False) -> list[str]:
    """What makes a plan O(rows of `table`): a full scan, an index walked without a LIMIT to
    stop it, or (unless `sorts`) a sort of every matching row (a sort of ties only is fine)."""
    problems = []
    for line in planned.plan:
        if connection.vendor == "sqlite":
            if re.match(rf"SCAN {table}\b(?! USING)", line):
                problems.append(f"full scan: {line}")
            elif re.match(rf"SCAN {table} USING", line) and " LIMIT " not in planned.sql:
                problems.append(f"whole index walked without a LIMIT: {line}")
            elif "USE TEMP B-TREE FOR ORDER BY" in line and not sorts:
                problems.append(f"sort of every matching row: {line}")
        else:
            if f"Seq Scan on {table}" in line:
                problems.append(f"full scan: {line.strip()}")
            elif PG_SORT_NODE.match(line) and not sorts:
                problems.append(f"sort of every matching row: {line.strip()}")
    return problems


@contextmanager
def planned_queries(table: str = "pipeline_runs") -> Iterator[list[Planned]]:
    """Capture the statements run inside the block that touch `table`, with their plans."""
    found: list[Planned] = []
    with CaptureQueriesContext(connection) as captured:
        yield found
    for query in captured.captured_queries:
        sql = query["sql"]
        if DML.match(sql) and re.search(rf'\b"?{table}"?\b', sql):
            found.append(Planned(sql=sql, plan=explain(sql)))


def assert_indexed(
    found: list[Planned], table: str = "pipeline_runs", *, sorts: bool = False
) -> None:
    assert found, f"no query touched {table}"
    problems = [(p.sql, scan_problems(p, table, sorts=sorts)) for p in found]
    bad = [f"{sql}\n  → {'; '.join(why)}" for sql, why in problems if why]
    assert not bad, "queries that read the whole history:\n" + "\n".join(bad)


def the_query(found: list[Planned], marker: str | Callable[[str], bool]) -> Planned:
    """The one captured statement whose SQL contains `marker` (e.g. the page's LIMIT)."""
    match = marker if callable(marker) else (lambda sql: marker in sql)
    matching = [p for p in found if match(p.sql)]
    assert len(matching) == 1, f"expected one query matching {marker!r}, got {len(matching)}"
    return matching[0]
