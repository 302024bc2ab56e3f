"""A run's `finished_at` is when its process exited, not when the engine could record it.

The database goes away (for real: SQLite's write lock taken by another process, PostgreSQL
refusing and dropping the engine's connections) just before the pipeline exits, and comes back
seconds later; the engine keeps the outcome in memory and records it then.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs_app.models import RunStatus
from runs_app.services import run_enqueue
from tests.helpers_engine import (
    EngineProcess,
    log_text,
    make_pipeline,
    run_refreshed,
    wait_for,
    wait_until_finished,
)
from tests.helpers_executor import use_runner_image

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 8.0
# Waits for the file `go` in its folder (the test creates it), then exits at once.
GATED_EXIT = (
    "import os, time\nprint('waiting', flush=True)\n"
    "while not os.path.exists(os.path.join(os.path.dirname(os.path.abspath('main.py')), 'go')):\n"
    "    time.sleep(0.05)\n"
)


@contextlib.contextmanager
def database_outage() -> Iterator[None]:
    """No engine can write to the test database until the block ends."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        # Another process's write lock (WAL: readers go on, every writer gets "locked").
        holder = sqlite3.connect(db["NAME"], timeout=30, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    name = db["NAME"]
    # From the maintenance database: a database cannot refuse connections to itself.
    admin = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )
    ours = connection.cursor().connection.info.backend_pid  # the test's own stays up
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s",
            [name, ours],
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def engine_env(request, settings) -> dict[str, str]:
    env = {"executor": request.param, "FASTFLOW_SQLITE_BUSY_TIMEOUT_MS": "300"}
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
        use_runner_image(settings)
        env |= {"FASTFLOW_RUNNER_IMAGE": settings.FASTFLOW_RUNNER_IMAGE}
        env |= {"FASTFLOW_RUNNER_NETWORK": "none"}
    return env


def test_finished_at_is_the_exit_time_even_when_the_database_was_down(engine_env):
    pipeline = make_pipeline("ends_in_an_outage", GATED_EXIT)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    with EngineProcess("outage", **engine_env) as engine:
        engine.wait_registered()
        wait_for(lambda: "waiting" in log_text(run), timeout=120, what="the run to start")
        with database_outage():
            exited = timezone.now()
            (pipeline.folder / "go").write_text("")
            time.sleep(OUTAGE_SECONDS)
            # Exited long ago, but the engine could not record it yet.
            assert run_refreshed(run).status == RunStatus.RUNNING
        wait_until_finished(run, timeout=120)
        engine.assert_alive()  # the engine carried on through the outage

    assert run.status == RunStatus.SUCCESS, run.error_message
    # The real exit (the file appeared, the process ended within its next 50 ms poll) ...
    assert exited - timedelta(seconds=1) <= run.finished_at <= exited + timedelta(seconds=3)
    # ... and not when the result could be written, OUTAGE_SECONDS later.
    assert run.finished_at < exited + timedelta(seconds=OUTAGE_SECONDS - 2)
    assert run.started_at <= run.finished_at
