"""Persistent database connections: a real engine on PostgreSQL opens no connection per run and
none per idle second (its connections come from the process's psycopg pool and outlive the
per-run worker threads), and it survives a database outage: a run that ends while the
database refuses connections is recorded once it is back, and the engine goes on claiming. A
pool whose idle connections a restart killed serves the next query at once; a connection handed
out again moments after its last checkout skips the check's round trip unless its backend has
gone."""

from __future__ import annotations

import contextlib
import functools
import tempfile
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from fastflow_site import dbpool
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue
from tests.helpers_engine import EngineProcess, make_pipeline, wait_for, wait_until_finished

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.skipif(
        "not __import__('os').environ.get('DATABASE_URL', '').startswith('postgres')",
        reason="PostgreSQL's connections (SQLite opens a file)",
    ),
]


def sessions_opened() -> int:
    """Connections ever established to the test database (PostgreSQL counts them as they
    open); the test process itself keeps using the one connection it has."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        (sessions,) = cursor.fetchone()
    return sessions


def run_one(pipeline) -> PipelineRun:
    run = wait_until_finished(run_enqueue(pipeline=pipeline, triggered_by="manual"), timeout=60)
    assert run.status == RunStatus.SUCCESS, run.error_message
    return run


def test_an_engine_opens_no_connection_per_run_or_per_idle_second():
    pipeline = make_pipeline("steady")
    # The pool opens 8 connections at start, more than the engine uses at once here, so any
    # session opened below is a connect the engine should not have made.
    with EngineProcess("steady", FASTFLOW_DB_POOL_MIN_SIZE="8") as engine:
        engine.wait_registered()
        run_one(pipeline)
        time.sleep(2.0)  # the pool has finished opening its connections
        before = sessions_opened()

        for _ in range(10):
            run_one(pipeline)
        time.sleep(3.0)  # idle seconds: the engine used to reconnect once a second

        assert sessions_opened() - before == 0
        engine.assert_alive()


def test_without_the_pool_every_run_connects_anew():
    """The contrast that makes the test above meaningful: per-thread connections (Django's
    CONN_MAX_AGE) die with each run's worker thread."""
    pipeline = make_pipeline("churn")
    with EngineProcess("churn", FASTFLOW_DB_POOL="false") as engine:
        engine.wait_registered()
        run_one(pipeline)
        before = sessions_opened()
        for _ in range(3):
            run_one(pipeline)
        assert sessions_opened() - before >= 3


@contextlib.contextmanager
def database_refusing_connections() -> Iterator[None]:
    """A real outage as the engine sees it: its connections are killed and new ones refused
    (`ALLOW_CONNECTIONS false`, set from another database), then the database comes back."""
    params = connection.get_connection_params()
    name = connection.settings_dict["NAME"]
    params.update(dbname="postgres", autocommit=True)
    params.pop("context", None)
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'runscheduler%%'",
                [name],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_an_engine_survives_a_database_outage_and_records_the_run_that_ended_during_it():
    pipeline = make_pipeline(
        "outage", "import time\nprint('start', flush=True)\ntime.sleep(3)\nprint('end')\n"
    )
    quick = make_pipeline("after_outage")
    with EngineProcess("outage") as engine:
        engine.wait_registered()
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(
            lambda: (
                PipelineRun.objects.filter(id=run.id, status=RunStatus.RUNNING)
                .exclude(container_id="")
                .exists()
            ),
            what="the run to start",
        )
        with database_refusing_connections():
            time.sleep(8.0)  # the run ends meanwhile; its result waits in the worker
            engine.assert_alive()

        finished = wait_until_finished(run, timeout=90)
        assert finished.status == RunStatus.SUCCESS, finished.error_message
        assert finished.exit_code == 0
        after = run_one(quick)  # and the engine claims again
        assert after.engine_id == finished.engine_id
        engine.assert_alive()
    output = engine.read_output()
    assert "database unavailable" in output or "engine step failed" in output, output


def test_after_a_restart_killed_every_idle_pooled_connection_the_next_query_is_served():
    """A database restart leaves the pool full of dead connections. psycopg_pool backs off 1,
    2, 4 s between failed checks, so with five of them the next query used to give up at the
    pool timeout (5 s) with the database long back; our check replaces them all at the first."""
    from pipelines_app.models import Pipeline

    pool = connection.pool
    assert pool is not None  # FASTFLOW_DB_POOL is on by default
    ours = connection.cursor().connection.info.backend_pid  # this thread's, checked out
    held = [pool.getconn() for _ in range(6)]  # six more, idle in the pool afterwards
    for conn in held:
        pool.putconn(conn)
    params = connection.get_connection_params()
    params.update(dbname="postgres", autocommit=True)
    params.pop("context", None)
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as admin:
        killed = admin.execute(
            # With a timeout the call returns once each backend has gone (its FATAL sent).
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s AND backend_type = 'client backend'",
            [connection.settings_dict["NAME"], ours],
        ).fetchone()[0]
    assert killed >= 6

    result: list[object] = []

    def query() -> None:  # a new thread takes a connection from the pool, like a request
        try:
            result.append(Pipeline.objects.count())
        except Exception as exc:  # noqa: BLE001 - reported below
            result.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=query)
    worker.start()
    worker.join(30)
    assert result == [0], result
    assert pool.get_stats()["connections_lost"] >= 5


def plain_connection(**overrides: object) -> psycopg.Connection:
    """A connection of our own, outside Django and its pool (the test database's settings)."""
    params = connection.get_connection_params()
    params.update(autocommit=True, **overrides)
    params.pop("context", None)
    params.pop("cursor_factory", None)
    return psycopg.connect(**params)


def round_trips(conn: psycopg.Connection, action) -> list[str]:
    """The messages `action` sends to the server on `conn`, from libpq's protocol trace."""
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            action()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return [line.split("\t")[2] for line in trace.read().splitlines() if line[0] == "F"]


def test_a_connection_checked_out_again_moments_later_is_handed_out_without_a_round_trip():
    with plain_connection() as conn:
        check = functools.partial(dbpool.pooled_connection_check, conn)
        assert round_trips(conn, check) == ["Query"]  # never checked out: the full check
        assert round_trips(conn, check) == []  # moments later, nothing on its socket
        assert conn.execute("SELECT 1").fetchone() == (1,)  # and it does work


def test_a_connection_idle_longer_than_the_quiet_time_gets_the_full_check(monkeypatch):
    with plain_connection() as conn:
        check = functools.partial(dbpool.pooled_connection_check, conn)
        assert round_trips(conn, check) == ["Query"]
        monkeypatch.setattr(dbpool, "QUIET_SECONDS", 0.0)
        time.sleep(0.01)
        assert round_trips(conn, check) == ["Query"]


def test_a_connection_whose_backend_ended_fails_the_check_at_once():
    """A restart or pg_terminate_backend: the backend's FATAL makes the idle socket readable,
    so the check goes to the server (and fails) instead of handing the connection out."""
    with plain_connection() as conn, plain_connection(dbname="postgres") as admin:
        dbpool.pooled_connection_check(conn)
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [conn.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            dbpool.pooled_connection_check(conn)
