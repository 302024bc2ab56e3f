"""The local executor, with real `uv run` subprocesses."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from runs_app.engine.executors import get_executor
from runs_app.engine.local_executor import LocalExecutor
from tests.helpers_executor import (
    assert_metrics_with_one_note_per_soft_limit,
    check_a_pipeline_cannot_forge_notes_or_the_ready_line,
    check_encoded_secrets_are_masked,
    check_secrets_are_masked_across_split_writes,
    check_the_log_cap_truncates_with_a_notice,
    log_lines,
    make_spec,
    run_to_end,
    user_lines,
    wait_for_line,
    wait_in_thread,
)


@pytest.fixture
def executor(settings) -> LocalExecutor:
    settings.FASTFLOW_EXECUTOR = "local"
    settings.FASTFLOW_CANCEL_GRACE_SECONDS = 1
    settings.FASTFLOW_METRICS_INTERVAL_SECONDS = 0.1
    return get_executor()


def test_get_executor_follows_the_setting(executor):
    assert isinstance(executor, LocalExecutor)
    executor.check()


def test_it_runs_a_pipeline_to_success(executor, make_pipeline_dir):
    folder = make_pipeline_dir("hello", "print('hello from main')\n")
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded and outcome.exit_code == 0 and outcome.error == ""
    assert user_lines(spec) == ["hello from main"]
    assert outcome.setup_duration is not None and outcome.setup_duration >= 0
    assert outcome.uv_version.count(".") == 2


def test_it_runs_main_like_python_main_py(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "like_python",
        "import os, sys, helper\n"
        "print(__name__, sys.argv, os.getcwd() == os.path.dirname(os.path.abspath(__file__)))\n"
        "print(helper.VALUE)\n",
    )
    (folder / "helper.py").write_text("VALUE = 'sibling import works'\n")
    spec = make_spec(folder)
    assert run_to_end(executor, spec).succeeded
    assert user_lines(spec) == ["__main__ ['main.py'] True", "sibling import works"]


def test_a_failing_pipeline_reports_its_exit_code(executor, make_pipeline_dir):
    folder = make_pipeline_dir("fails", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    assert outcome.exit_code == 3 and not outcome.succeeded
    assert outcome.error == "pipeline exited with code 3"


def test_an_exception_shows_a_traceback_of_user_code(executor, make_pipeline_dir):
    folder = make_pipeline_dir("raises", "def boom():\n    raise ValueError('bad input')\nboom()\n")
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    text = "\n".join(log_lines(spec))
    assert outcome.exit_code == 1
    assert "ValueError: bad input" in text and "main.py" in text
    assert "runpy" not in text


def test_it_kills_a_run_at_its_timeout(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "slow", "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    )
    spec = make_spec(folder, timeout=2)
    outcome = run_to_end(executor, spec)
    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error == "timed out after 2 s"
    assert "[fastflow] timeout after 2 s: process group killed" in log_lines(spec)


def test_it_reports_out_of_memory_under_rlimit_as(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "greedy", "print('allocating', flush=True)\nblob = bytearray(1024 * 1024 * 1024)\n"
    )
    spec = make_spec(folder, mem_hard_limit=256 * 1024 * 1024)
    outcome = run_to_end(executor, spec)
    assert outcome.oom_killed and not outcome.succeeded
    assert outcome.exit_code == 137
    assert "out of memory" in outcome.error
    lines = log_lines(spec)
    assert any(line.startswith("MemoryError") for line in lines)
    assert any("out of memory: the pipeline exceeded its 256.0 MiB limit" in x for x in lines)


def test_cancel_stops_the_whole_process_group(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "cancel_me",
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(120)\n",
    )
    spec = make_spec(folder)
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "child ")
    child_pid = int(next(x for x in user_lines(spec) if x.startswith("child ")).split()[1])
    execution.cancel()
    thread.join(30)
    outcome = result[0]
    assert outcome.cancelled and not outcome.succeeded and outcome.error == "cancelled"
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"
    assert any(line.startswith("[fastflow] cancelled") for line in log_lines(spec))


def test_secrets_are_masked_even_when_split_across_writes(executor, make_pipeline_dir):
    check_secrets_are_masked_across_split_writes(executor, make_pipeline_dir)


def test_encoded_forms_of_secrets_are_masked(executor, make_pipeline_dir):
    check_encoded_secrets_are_masked(executor, make_pipeline_dir)


def test_parameters_arrive_as_environment_variables(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "env_check",
        "import os\n"
        "for name in ('GREETING', 'FASTFLOW_PIPELINE', 'UV_CACHE_DIR', 'UV_PYTHON_DOWNLOADS', "
        "'HOME'):\n"
        "    print(name, os.environ.get(name))\n"
        "print('home is tmp', os.environ['HOME'] != os.path.expanduser('~root'))\n",
    )
    spec = make_spec(folder, env={"GREETING": "hi there", "UV_CACHE_DIR": "/elsewhere"})
    assert run_to_end(executor, spec).succeeded
    lines = dict(line.split(" ", 1) for line in user_lines(spec))
    assert lines["GREETING"] == "hi there"
    assert lines["FASTFLOW_PIPELINE"] == "env_check"
    # The engine's value wins: a cache of the run's own (the shared one is the warm-up's).
    assert lines["UV_CACHE_DIR"] == lines["HOME"] + "/uv-cache"
    assert lines["UV_PYTHON_DOWNLOADS"] == "never"


def test_the_log_cap_truncates_with_a_notice_without_blocking(executor, make_pipeline_dir):
    check_the_log_cap_truncates_with_a_notice(executor, make_pipeline_dir)


def test_metrics_are_sampled_with_peak_memory_and_soft_limit_notes(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "busy",
        "import time\nblob = bytearray(80 * 1024 * 1024)\n"
        "end = time.time() + 1.5\nwhile time.time() < end:\n    blob[0] = (blob[0] + 1) % 256\n",
    )
    spec = make_spec(folder, mem_soft_limit=20 * 1024 * 1024, cpu_soft_limit=0.1)
    outcome = run_to_end(executor, spec)
    assert_metrics_with_one_note_per_soft_limit(spec, outcome, min_peak_bytes=80 * 1024 * 1024)


def test_reattach_kills_a_survivor_and_returns_none(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "orphaned", "import time\nprint('up', flush=True)\ntime.sleep(120)\n"
    )
    spec = make_spec(folder)
    execution = executor.start(spec)
    pid = int(execution.handle_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "FASTFLOW_RUN_ID" not in psutil.Process(pid).environ():
        time.sleep(0.05)
    # Simulated engine restart: the Execution is dropped, a new executor finds the pid.
    assert get_executor("local").reattach(spec, execution.handle_id) is None
    execution._process.wait(timeout=10)  # reap our own child so the pid is really gone
    assert not psutil.pid_exists(pid)
    assert any(line.startswith("[fastflow] the engine restarted") for line in log_lines(spec))


def test_reattach_leaves_a_foreign_pid_alone(executor, make_pipeline_dir):
    folder = make_pipeline_dir("gone")
    assert executor.reattach(make_spec(folder), str(os.getpid())) is None
    assert psutil.pid_exists(os.getpid())
    assert executor.running_handles() == {}


def timed_run(executor, folder):
    spec = make_spec(folder)
    started = time.monotonic()
    outcome = run_to_end(executor, spec)
    return spec, outcome, time.monotonic() - started


def test_a_background_child_holding_the_output_does_not_keep_the_run_going(
    executor, make_pipeline_dir
):
    """The pipeline exits while a child it started still holds stdout: the run ends with the
    pipeline (the child is killed with the process group), not when the child would."""
    folder = make_pipeline_dir(
        "leaves_child",
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('parent done', flush=True)\n",
    )
    spec, outcome, seconds = timed_run(executor, folder)
    assert outcome.succeeded, log_lines(spec)
    assert seconds < 30  # not the child's 60 s
    assert "parent done" in user_lines(spec)


def test_a_pipeline_that_closes_its_output_early_still_runs_to_its_end(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "closes_stdout",
        "import os, sys, time\n"
        "print('closing', flush=True)\n"
        "os.close(1); os.close(2)\n"
        "time.sleep(1.5)\n"
        "sys.exit(4)\n",
    )
    _, outcome, seconds = timed_run(executor, folder)
    assert outcome.exit_code == 4  # its real end, not the end of its output
    assert seconds >= 1.5


def test_a_pipeline_cannot_forge_engine_notes_or_the_ready_line(executor, make_pipeline_dir):
    check_a_pipeline_cannot_forge_notes_or_the_ready_line(executor, make_pipeline_dir)
