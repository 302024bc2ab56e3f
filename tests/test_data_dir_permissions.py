"""Data-dir files are 0600 and folders 0700 whatever the umask: the SQLite database and its
WAL/SHM files, the development keys, run logs and metrics, the local uv cache (issue 8, item 9).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_settings import PROJECT_DIR, clean_env

# The umask a default Linux account has: without our own modes everything would be 0644/0755.
USUAL_UMASK = 0o022


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def django(tmp_path: Path, code: str, **env: str) -> str:
    """Run `code` after django.setup() in a fresh interpreter with the usual umask."""
    script = "import django\ndjango.setup()\n" + code
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        umask=USUAL_UMASK,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


WRITE_AND_STAT = """
import os, stat
from django.core.management import call_command
from django.db import connection
from django.conf import settings
call_command("migrate", verbosity=0)
with connection.cursor() as cursor:  # a write while the connection stays open: WAL and SHM
    cursor.execute("UPDATE django_migrations SET app = app")
db = settings.DATABASES["default"]["NAME"]
for path in (settings.DATA_DIR, db, db + "-wal", db + "-shm",
             settings.DATA_DIR / "secret_key", settings.DATA_DIR / "encryption.key"):
    print(os.path.basename(str(path)), oct(stat.S_IMODE(os.stat(path).st_mode)))
"""


def modes_printed(output: str) -> dict[str, str]:
    return dict(line.split() for line in output.splitlines() if line.strip())


def test_a_fresh_installation_creates_private_files(tmp_path):
    root = tmp_path / "install"  # nothing exists yet, not even the data dir

    printed = modes_printed(django(root, WRITE_AND_STAT, DEBUG="true"))

    assert printed == {
        "data": "0o700",
        "fastflow.db": "0o600",
        "fastflow.db-wal": "0o600",
        "fastflow.db-shm": "0o600",
        "secret_key": "0o600",
        "encryption.key": "0o600",
    }


def test_an_installation_created_world_readable_is_tightened_on_start(tmp_path):
    root = tmp_path / "install"
    data = root / "data"
    data.mkdir(parents=True)
    os.chmod(data, 0o755)  # noqa: S103 - what an older version left behind
    previous = os.umask(USUAL_UMASK)
    try:
        sqlite3.connect(data / "fastflow.db").execute("CREATE TABLE t (x)").connection.close()
    finally:
        os.umask(previous)
    assert mode(data / "fastflow.db") == 0o644

    printed = modes_printed(django(root, WRITE_AND_STAT, DEBUG="true"))

    assert printed["data"] == "0o700"
    assert printed["fastflow.db"] == "0o600"
    assert printed["fastflow.db-wal"] == "0o600"


def test_a_folder_of_someone_else_is_left_alone(tmp_path, monkeypatch):
    from fastflow_site import datadir

    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o755)  # noqa: S103 - a folder shared on purpose
    monkeypatch.setattr(datadir.os, "geteuid", lambda: os.getuid() + 1)

    datadir.private_dir(folder)

    assert mode(folder) == 0o755


@pytest.fixture
def usual_umask():
    previous = os.umask(USUAL_UMASK)
    yield
    os.umask(previous)


def check_run_files_are_private(executor: str, settings) -> None:
    from runs_app.models import RunStatus
    from runs_app.services import run_enqueue
    from tests.helpers_engine import ThreadEngine, make_pipeline, wait_until_finished

    pipeline = make_pipeline("private", "import time\nprint('hello')\ntime.sleep(1.5)\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor=executor):
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    data = Path(settings.DATA_DIR)
    log, metrics = Path(run.log_file), Path(run.metrics_file)
    assert mode(log) == 0o600 and mode(metrics) == 0o600
    for folder in (log.parent, log.parent.parent, metrics.parent):
        assert folder.is_relative_to(data)
        assert mode(folder) == 0o700, folder


@pytest.mark.django_db(transaction=True)
def test_run_logs_and_metrics_are_private_local(usual_umask, settings):
    check_run_files_are_private("local", settings)
    cache = Path(settings.FASTFLOW_UV_CACHE_DIR) / "local"
    assert mode(cache) == 0o700


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_run_logs_and_metrics_are_private_docker(usual_umask, docker_engine, settings):
    from tests.helpers_executor import use_runner_image

    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    check_run_files_are_private("docker", settings)
