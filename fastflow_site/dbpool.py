"""The check a pooled PostgreSQL connection passes before the pool hands it out.

psycopg_pool checks a connection on checkout (Django passes it `check_connection` with
CONN_HEALTH_CHECKS) and, when the check fails, backs off before trying the next one: 1 s, then
2 s, 4 s, ... as if the database were down. After a database restart every idle connection in
the pool is dead at once, so with four of them the next query would wait 1 + 2 + 4 s and give
up at FASTFLOW_DB_POOL_TIMEOUT (5 s) with the database long back: a failed web request, an
engine step retried. So the first dead connection found makes the pool check all its idle
connections at once (`ConnectionPool.check()`: the dead ones are replaced in the background),
and the client waits one back-off step for a fresh connection instead of one per dead one.

The check itself is a round trip (an empty query), paid at every checkout: twice per run in
the engine (a run's thread gives its connection back while the run runs), once per web
request. It is skipped for a connection that passed a checkout within QUIET_SECONDS and on
whose socket nothing has arrived since: a backend that ends (a restart, pg_terminate_backend,
idle_session_timeout) sends its FATAL and closes, which makes the idle socket readable, and a
readable or closed one gets the full check. (What no check catches in time is a silently
dropped network path: the round trip would wait for TCP's timeout as the query does.)

Django builds the pool itself and passes its own `check`, so the check is put in place on the
pool when Django opens its first connection (`connection_created`, see apps.py).
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

logger = logging.getLogger(__name__)


# A connection checked out again this soon after its last checkout, with a quiet socket, is
# handed out without the round trip (see above).
QUIET_SECONDS = 10.0


def _quiet_since_last_checkout(conn: Any, now: float) -> bool:  # noqa: ANN401
    last = getattr(conn, "_fastflow_checked_out_at", None)
    if last is None or now - last > QUIET_SECONDS or conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def pooled_connection_check(conn: Any) -> None:  # noqa: ANN401 - a psycopg connection
    """The pool's `check` callback: raise if `conn` does not work (see above)."""
    from psycopg_pool import ConnectionPool

    now = time.monotonic()
    if _quiet_since_last_checkout(conn, now):
        conn._fastflow_checked_out_at = now
        return
    try:
        ConnectionPool.check_connection(conn)
        conn._fastflow_checked_out_at = now
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
