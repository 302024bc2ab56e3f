"""The check a pooled PostgreSQL connection passes before the pool hands it out.

psycopg_pool checks a connection on checkout (Django passes it `check_connection` with
CONN_HEALTH_CHECKS) and, when the check fails, backs off before trying the next one: 1 s, then
2 s, 4 s, ... as if the database were down. After a database restart every idle connection in
the pool is dead at once, so with four of them the next query would wait 1 + 2 + 4 s and give
up at FASTFLOW_DB_POOL_TIMEOUT (5 s) with the database long back: a failed web request, an
engine step retried. So the first dead connection found makes the pool check all its idle
connections at once (`ConnectionPool.check()`: the dead ones are replaced in the background),
and the client waits one back-off step for a fresh connection instead of one per dead one.

Django builds the pool itself and passes its own `check`, so the check is put in place on the
pool when Django opens its first connection (`connection_created`, see apps.py).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def pooled_connection_check(conn: Any) -> None:  # noqa: ANN401 - a psycopg connection
    """The pool's `check` callback: raise if `conn` does not work (see above)."""
    from psycopg_pool import ConnectionPool

    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        # The pool handing this connection out (psycopg sets it on checkout).
        pool = getattr(conn, "_pool", None)
        if isinstance(pool, ConnectionPool):
            logger.info("a pooled database connection was broken: checking the idle ones")
            pool.check()
        raise


def install_pool_check(sender: Any, connection: Any, **kwargs: Any) -> None:  # noqa: ANN401
    """`connection_created` receiver: the pool of a pooled PostgreSQL connection uses
    `pooled_connection_check` (idempotent; Django re-creates pools, e.g. for the test DB)."""
    if connection.vendor != "postgresql" or not connection.settings_dict["CONN_HEALTH_CHECKS"]:
        return
    pool = connection.pool
    # psycopg_pool keeps its check callback in `_check` (3.2 and later).
    if pool is not None and getattr(pool, "_check", None) is not pooled_connection_check:
        pool._check = pooled_connection_check
