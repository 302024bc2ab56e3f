"""SQLite: the web process and the engine write at the same time without "database is locked".

Two real OS processes hammer one SQLite file with short write transactions, the read-then-write
kind included (the case a DEFERRED transaction turns into an instant SQLITE_BUSY).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers_settings import PROJECT_DIR, clean_env, manage, run_django

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="SQLite-specific (WAL, busy timeout, IMMEDIATE transactions); "
    "PostgreSQL has row-level locking",
)

TRANSACTIONS_PER_WORKER = 200

WORKER = """
import sys, time
from pathlib import Path
import django
django.setup()
from django.db import transaction
from django.db.models import F
from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun, RunStatus

name, count, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
while not go.exists():  # start both workers at the same moment
    time.sleep(0.01)
for i in range(count):
    with transaction.atomic():
        # Read, then write in the same transaction: the web process and the engine both do this.
        pipeline = Pipeline.objects.get(pk="shared")
        Pipeline.objects.filter(pk=pipeline.pk).update(total_runs=F("total_runs") + 1)
        run = PipelineRun.objects.create(pipeline=pipeline, triggered_by=name)
    if i % 4 == 0:
        # A conditional claim outside any explicit transaction (autocommit).
        PipelineRun.objects.filter(id=run.id, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING
        )
print("done", name)
"""


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    result = manage(tmp_path, "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stderr
    seeded = run_django(
        tmp_path,
        "from pipelines_app.models import Pipeline\n"
        "Pipeline.objects.create(pipeline_name='shared')\n",
    )
    assert seeded.returncode == 0, seeded.stderr
    return tmp_path


def test_every_connection_uses_wal_a_busy_timeout_and_immediate_transactions(migrated):
    result = run_django(
        migrated,
        "from django.db import connection\n"
        "for _ in range(2):\n"
        "    with connection.cursor() as c:\n"
        "        c.execute('PRAGMA journal_mode'); mode = c.fetchone()[0]\n"
        "        c.execute('PRAGMA busy_timeout'); timeout = c.fetchone()[0]\n"
        "    print(mode, timeout, connection.transaction_mode)\n"
        "    connection.close()  # the next round opens a fresh connection\n",
        FASTFLOW_SQLITE_BUSY_TIMEOUT_MS="7000",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["wal 7000 IMMEDIATE", "wal 7000 IMMEDIATE"]


def test_two_processes_write_concurrently_without_database_is_locked(migrated):
    go = migrated / "go"
    env = clean_env(migrated)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, str(TRANSACTIONS_PER_WORKER), str(go)],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("web", "engine")
    ]
    go.touch()
    outputs = [worker.communicate(timeout=300) for worker in workers]

    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert "database is locked" not in stderr
        assert worker.returncode == 0, stderr[-3000:]
        assert stdout.startswith("done")

    counted = run_django(
        migrated,
        "from pipelines_app.models import Pipeline\n"
        "from runs_app.models import PipelineRun\n"
        "print(Pipeline.objects.get(pk='shared').total_runs)\n"
        "print(PipelineRun.objects.filter(triggered_by='web').count())\n"
        "print(PipelineRun.objects.filter(triggered_by='engine').count())\n",
    )
    assert counted.returncode == 0, counted.stderr
    total = 2 * TRANSACTIONS_PER_WORKER
    assert counted.stdout.split() == [str(total), *[str(TRANSACTIONS_PER_WORKER)] * 2]
