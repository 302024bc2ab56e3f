"""Helpers for the engine tests: pipelines on disk + in the DB, an engine in a thread or in a
real `runscheduler` subprocess, and polling with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.engine.executors import get_executor
from runs_app.engine.loop import Engine
from runs_app.logs import log_lines_parse
from runs_app.models import EngineLease, PipelineRun
from runs_app.outcome import Outcome
from runs_app.services import run_claim_next, run_enqueue, run_finish
from tests.conftest import write_pipeline

ROOT = Path(__file__).resolve().parent.parent


def lease_holder(*, name: str) -> str | None:
    """Who holds the named lease now (None when nobody does or it expired)."""
    lease = EngineLease.objects.filter(name=name, expires_at__gte=timezone.now()).first()
    return lease.holder if lease else None


def make_pipeline(
    name: str,
    main_py: str = "print('hello')\n",
    *,
    pipeline_json: dict | None = None,
    requirements: str | None = None,
) -> Pipeline:
    """Write the folder into the (per-test) pipelines dir and sync it into a Pipeline row."""
    write_pipeline(
        Path(settings.PIPELINES_DIR),
        name,
        main_py,
        pipeline_json=pipeline_json,
        requirements=requirements,
    )
    pipelines_sync()
    pipeline = Pipeline.objects.get(pipeline_name=name)
    assert not pipeline.discovery_error, pipeline.discovery_error
    return pipeline


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


def run_refreshed(run: PipelineRun) -> PipelineRun:
    run.refresh_from_db()
    return run


def wait_until_finished(run: PipelineRun, *, timeout: float = 60.0) -> PipelineRun:
    wait_for(lambda: run_refreshed(run).is_terminal, timeout=timeout, what=f"run {run.id} to end")
    return run


def claimed_run(pipeline: Pipeline, **enqueue: Any) -> PipelineRun:
    """A RUNNING run of `pipeline`, claimed by the real service (no executor involved)."""
    run = run_enqueue(
        pipeline=pipeline, triggered_by=enqueue.pop("triggered_by", "manual"), **enqueue
    )
    claimed = run_claim_next(engine_id="test-engine")
    assert claimed is not None and claimed.id == run.id
    return claimed


def claim_now(run: PipelineRun) -> PipelineRun:
    """Claim a queued run at once (its delay dropped), as an engine would once it is due."""
    PipelineRun.objects.filter(id=run.id).update(not_before=None)
    claimed = run_claim_next(engine_id="test-engine")
    assert claimed is not None and claimed.id == run.id
    return claimed


def wait_until_idle(*, timeout: float = 60.0) -> None:
    """Until no run is PENDING or RUNNING any more."""
    from runs_app.models import RunStatus

    wait_for(
        lambda: (
            not PipelineRun.objects.filter(
                status__in=[RunStatus.PENDING, RunStatus.RUNNING]
            ).exists()
        ),
        timeout=timeout,
        what="every run to end",
    )


def finish_claimed(run: PipelineRun, exit_code: int, **outcome: Any) -> PipelineRun:
    return run_finish(run=run, outcome=Outcome(exit_code=exit_code, **outcome))


def log_text(run: PipelineRun) -> str:
    """The run's log so far ("" until the executor created it)."""
    run.refresh_from_db()
    path = Path(run.log_file) if run.log_file else None
    return path.read_text() if path and path.is_file() else ""


def log_notes(run: PipelineRun) -> list[str]:
    """The engine notes of the run's log (by their source, never their text)."""
    return [line.note_text for line in log_lines_parse(log_text(run).encode()) if line.is_note]


class ThreadEngine:
    """The real Engine with the local executor, stepped in a background thread of the test
    process (tests using it need `django_db(transaction=True)`)."""

    def __init__(self, *, executor: str = "local", schedules: bool = False) -> None:
        self.engine = Engine(executor=get_executor(executor), schedules=schedules)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-engine", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> Engine:
        self.engine.start()
        self._thread.start()
        return self.engine

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.engine.wake()
        self._thread.join(30)
        self.engine.stop()
        if self.errors:
            raise self.errors[0]

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.engine.step()
                self.engine.wait()
        except BaseException as exc:  # surfaced in __exit__
            self.errors.append(exc)
        finally:
            connection.close()


def database_url() -> str:
    """The URL of the test database, for engine subprocesses."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


class EngineProcess:
    """A real `manage.py runscheduler` subprocess against the test database and dirs."""

    def __init__(
        self, name: str, *, executor: str = "local", args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.name = name
        self.args = args
        self.output = Path(settings.DATA_DIR) / f"engine-{name}.out"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "FASTFLOW_DATA_DIR": str(settings.DATA_DIR),
            "FASTFLOW_PIPELINES_DIR": str(settings.PIPELINES_DIR),
            "FASTFLOW_UV_CACHE_DIR": str(settings.FASTFLOW_UV_CACHE_DIR),
            "FASTFLOW_EXECUTOR": executor,
            "FASTFLOW_ENCRYPTION_KEY": ",".join(settings.FASTFLOW_ENCRYPTION_KEYS),
            "SECRET_KEY": settings.SECRET_KEY,
            "FASTFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> EngineProcess:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "runscheduler", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_registered(self, timeout: float = 60.0) -> str:
        """Wait for the engine's heartbeat row; returns its engine id."""
        from runs_app.models import EngineInstance

        def registered() -> str | None:
            self.assert_alive()
            return EngineInstance.objects.filter(pid=self.pid).values_list("id", flat=True).first()

        return wait_for(registered, timeout=timeout, what=f"engine {self.name} to register")

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"engine {self.name} exited early:\n{self.read_output()}")

    def read_output(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
