"""The private APScheduler 3 internals `runs_app/engine/scheduler.py` builds on are still there.

APScheduler 3 has no public hook for "which scheduled time is this call for", so the engine
overrides `BasePoolExecutor._do_submit_job`, `BaseExecutor._run_job_success` / `_run_job_error`
and `BlockingScheduler._main_loop`, and hands `run_job` a proxy of the `Job`. None of that is
API: an APScheduler release may rename or re-sign any of it (the `<4` pin in pyproject.toml only
keeps 4.x out). These tests fail loudly, naming what moved, instead of the scheduler silently
firing without its tick (duplicate runs) or leaking connections.

The signatures are checked first; then the hooks are driven through a real BackgroundScheduler,
so a method that still exists but is no longer called is caught too.
"""

from __future__ import annotations

import inspect
import threading
from datetime import UTC, datetime, timedelta

import apscheduler
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from runs_app.engine.scheduler import FireTimeExecutor, _Scheduler, _WithFireTime

WAIT_SECONDS = 10


def _parameters(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_it_runs_on_apscheduler_3():
    assert apscheduler.__version__.split(".")[0] == "3", apscheduler.__version__


def test_the_overridden_methods_exist_with_the_signatures_the_engine_calls():
    expected = {
        (BasePoolExecutor, "__init__"): ["self", "pool"],
        (BasePoolExecutor, "_do_submit_job"): ["self", "job", "run_times"],
        (BaseExecutor, "_run_job_success"): ["self", "job_id", "events"],
        (BaseExecutor, "_run_job_error"): ["self", "job_id", "exc", "traceback"],
        (BlockingScheduler, "_main_loop"): ["self"],
    }
    found = {
        (owner, name): _parameters(getattr(owner, name)) if hasattr(owner, name) else None
        for owner, name in expected
    }
    moved = {
        f"{owner.__name__}.{name}": (found[owner, name], want)
        for (owner, name), want in expected.items()
        if found[owner, name] != want
    }
    assert moved == {}, f"APScheduler internals changed (found, expected): {moved}"
    assert issubclass(BackgroundScheduler, BlockingScheduler)
    # `traceback` is optional: the pool's done-callback may pass two or three arguments.
    default = inspect.signature(BaseExecutor._run_job_error).parameters["traceback"].default
    assert default is None


def test_run_job_still_takes_the_job_object_the_proxy_stands_in_for():
    assert _parameters(run_job) == ["job", "jobstore_alias", "run_times", "logger_name"]
    # What the pool and run_job read from the job, forwarded by _WithFireTime.__getattr__.
    read = ("id", "func", "args", "kwargs", "misfire_grace_time", "max_instances")
    job_slots = set(Job.__slots__)
    assert {name for name in read if name not in job_slots} == set()
    assert "_jobstore_alias" in job_slots


class _RecordingExecutor(FireTimeExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.successes: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.done = threading.Event()

    def _run_job_success(self, job_id: str, events: list) -> None:
        super()._run_job_success(job_id, events)
        self.successes.append(job_id)
        self.done.set()

    def _run_job_error(self, job_id: str, exc: BaseException, traceback: object = None) -> None:
        super()._run_job_error(job_id, exc, traceback)
        self.errors.append((job_id, type(exc).__name__))
        self.done.set()


class _RecordingScheduler(_Scheduler):
    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.loop_entered = threading.Event()

    def _main_loop(self) -> None:
        self.loop_entered.set()
        super()._main_loop()


def _scheduler(executor: FireTimeExecutor) -> _RecordingScheduler:
    scheduler = _RecordingScheduler(timezone=UTC, executors={"default": executor})
    scheduler.add_jobstore(MemoryJobStore(), "default")
    return scheduler


def test_a_fired_job_gets_its_scheduled_time_and_the_success_hook_runs():
    calls: list[dict] = []
    executor = _RecordingExecutor()
    scheduler = _scheduler(executor)
    run_at = datetime.now(UTC) + timedelta(milliseconds=500)
    scheduler.start()
    try:
        entered = scheduler.loop_entered.wait(WAIT_SECONDS)
        assert entered, "BackgroundScheduler no longer runs _main_loop in its thread"
        scheduler.add_job(
            lambda **kwargs: calls.append(kwargs),
            "date",
            run_date=run_at,
            id="tick",
            kwargs={"version": "v1"},
        )
        assert executor.done.wait(WAIT_SECONDS), "the job never reported back to the executor"
    finally:
        scheduler.shutdown(wait=True)
    assert executor.errors == []
    assert executor.successes == ["tick"]
    assert calls == [{"version": "v1", "fire_time": run_at.isoformat()}]


def test_an_error_outside_the_job_function_reaches_the_error_hook():
    executor = _RecordingExecutor()
    scheduler = _scheduler(executor)
    scheduler.start()
    try:
        later = datetime.now(UTC) + timedelta(hours=1)
        job = scheduler.add_job(print, "date", run_date=later, id="broken")
        broken = _WithFireTime(job, later)
        # run_job reads the grace time before its own try/except: this raises in the pool.
        broken.misfire_grace_time = "not a number"
        executor.submit_job(broken, [datetime.now(UTC)])
        assert executor.done.wait(WAIT_SECONDS), "the error never reported back to the executor"
    finally:
        scheduler.shutdown(wait=True)
    assert executor.successes == []
    assert executor.errors == [("broken", "TypeError")]
