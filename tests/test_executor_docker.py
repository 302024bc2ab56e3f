"""The Docker executor against a real Docker engine and the offline runner image."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path

import docker
import pytest

from runs_app.engine.base import ExecutionNeverStarted, InfrastructureError, RunSpec
from runs_app.engine.docker_executor import DockerExecution, DockerExecutor
from runs_app.engine.executors import get_executor
from tests.helpers_executor import (
    assert_metrics_with_one_note_per_soft_limit,
    check_a_pipeline_cannot_forge_notes_or_the_ready_line,
    check_encoded_secrets_are_masked,
    check_secrets_are_masked_across_split_writes,
    check_the_log_cap_truncates_with_a_notice,
    engine_process,
    log_lines,
    make_spec,
    metric_samples,
    run_to_end,
    use_runner_image,
    user_lines,
    wait_for_line,
    wait_in_thread,
)

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
COUNTING = (
    "import time\nfor i in range(1, 9):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
)


@pytest.fixture
def executor(docker_engine, settings) -> DockerExecutor:
    use_runner_image(settings)
    settings.FASTFLOW_EXECUTOR = "docker"
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    settings.FASTFLOW_CANCEL_GRACE_SECONDS = 1
    settings.FASTFLOW_METRICS_INTERVAL_SECONDS = 0.5
    return get_executor()


def containers_of(spec: RunSpec) -> list:
    client = docker.from_env()
    return client.containers.list(
        all=True, filters={"label": f"fastflow.run_id={spec.run_id}"}, ignore_removed=True
    )


def test_it_runs_a_pipeline_and_removes_its_container(executor, make_pipeline_dir):
    folder = make_pipeline_dir("hello", "import os\nprint('hello from', os.getcwd())\n")
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded and outcome.exit_code == 0 and outcome.error == ""
    assert user_lines(spec) == ["hello from /app"]
    assert outcome.setup_duration is not None and outcome.setup_duration >= 0
    assert outcome.uv_version.count(".") == 2
    assert containers_of(spec) == []


def test_a_failing_pipeline_reports_its_exit_code(executor, make_pipeline_dir):
    folder = make_pipeline_dir("fails", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    assert outcome.exit_code == 3 and not outcome.succeeded
    assert outcome.error == "pipeline exited with code 3"
    assert "about to fail" in user_lines(spec)
    assert containers_of(spec) == []


def test_it_kills_a_container_at_its_timeout(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "slow", "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    )
    spec = make_spec(folder, timeout=2)
    outcome = run_to_end(executor, spec)
    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error == "timed out after 2 s"
    assert "[fastflow] timeout after 2 s: container killed" in log_lines(spec)
    assert containers_of(spec) == []


def test_it_detects_an_out_of_memory_kill(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "greedy", "print('allocating', flush=True)\nblob = b'x' * (200 * 1024 * 1024)\n"
    )
    spec = make_spec(folder, mem_hard_limit=64 * MIB)
    outcome = run_to_end(executor, spec)
    assert outcome.oom_killed and not outcome.succeeded
    assert outcome.error == "out of memory: exceeded the 64.0 MiB memory limit"
    assert any(x.startswith("[fastflow] out of memory") for x in log_lines(spec))


def test_cancel_stops_a_running_container(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "cancel_me", "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    )
    spec = make_spec(folder)
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "started")
    execution.cancel()
    thread.join(30)
    outcome = result[0]
    assert outcome.cancelled and outcome.error == "cancelled" and not outcome.succeeded
    assert any(x.startswith("[fastflow] cancelled") for x in log_lines(spec))
    assert containers_of(spec) == []


def test_secrets_are_masked_even_when_split_across_writes(executor, make_pipeline_dir):
    check_secrets_are_masked_across_split_writes(executor, make_pipeline_dir)


def test_encoded_forms_of_secrets_are_masked(executor, make_pipeline_dir):
    check_encoded_secrets_are_masked(executor, make_pipeline_dir)


def test_parameters_arrive_as_env_vars_and_engine_variables_win(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "env_check",
        "import os\n"
        "for name in ('GREETING', 'FASTFLOW_RUN_ID', 'UV_CACHE_DIR', 'HOME'):\n"
        "    print(name, os.environ.get(name))\n"
        "print('uid', os.getuid())\n",
    )
    spec = make_spec(folder, env={"GREETING": "hi there", "UV_CACHE_DIR": "/elsewhere"})
    assert run_to_end(executor, spec).succeeded
    lines = dict(line.split(" ", 1) for line in user_lines(spec))
    assert lines == {
        "GREETING": "hi there",
        "FASTFLOW_RUN_ID": spec.run_id,
        "UV_CACHE_DIR": "/tmp/uv-cache",  # the run's own: the shared cache is not mounted
        "HOME": "/tmp",
        "uid": "65534",
    }


def test_the_outcome_is_known_before_the_container_is_removed(executor, make_pipeline_dir):
    """The engine records the run's status between `wait_for_outcome()` and `cleanup()`:
    removing the container is a daemon round trip that must not delay it."""
    spec = make_spec(make_pipeline_dir("quick", "print('hi')\nraise SystemExit(4)\n"))
    execution = executor.start(spec)
    outcome = execution.wait_for_outcome()
    assert outcome.exit_code == 4 and not outcome.succeeded
    assert user_lines(spec) == ["hi"]  # the log is complete
    assert outcome.setup_duration is not None and outcome.uv_version
    assert [c.status for c in containers_of(spec)] == ["exited"]
    execution.cleanup()
    assert containers_of(spec) == []
    execution.cleanup()  # a second clean-up is harmless


def test_the_container_is_locked_down(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "inspected",
        "import time\nprint('started', flush=True)\ntime.sleep(30)\n",
    )
    spec = make_spec(folder, mem_hard_limit=128 * MIB, cpu_hard_limit=0.5)
    execution = executor.start(spec)
    try:
        attrs = docker.from_env().api.inspect_container(execution.handle_id)
    finally:
        execution.cancel()
        execution.wait()
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 512
    assert host["Memory"] == host["MemorySwap"] == 128 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert "/tmp" in host["Tmpfs"]
    assert attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    assert attrs["Config"]["WorkingDir"] == "/app"
    app = next(m for m in attrs["Mounts"] if m["Destination"] == "/app")
    assert app["RW"] is False and Path(app["Source"]) == folder.resolve()
    # A run mounts nothing writable: no shared cache (only warm-ups write it), no environment.
    assert [m["Destination"] for m in attrs["Mounts"] if m["RW"]] == []
    labels = attrs["Config"]["Labels"]
    assert labels["fastflow.run_id"] == spec.run_id
    assert labels["fastflow.pipeline"] == "inspected"
    assert labels["fastflow.managed"] == "1"
    assert containers_of(spec) == []


def test_the_pipeline_folder_is_read_only_inside(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "writer",
        "try:\n    open('/app/out.txt', 'w')\n"
        "except OSError as exc:\n    print('refused', exc.errno)\n",
    )
    spec = make_spec(folder)
    assert run_to_end(executor, spec).succeeded
    assert user_lines(spec) == ["refused 30"]  # EROFS
    assert not (folder / "out.txt").exists()


def test_a_missing_image_is_an_infrastructure_error(executor, settings, make_pipeline_dir):
    settings.FASTFLOW_RUNNER_IMAGE = "fastflow-runner:does-not-exist-{python_version}"
    spec = make_spec(make_pipeline_dir("no_image"))
    with pytest.raises(InfrastructureError, match="fastflow-runner:does-not-exist-3.11 not found"):
        executor.start(spec)


def test_with_pulls_on_a_missing_image_is_pulled_and_the_failure_named(
    executor, settings, make_pipeline_dir
):
    settings.FASTFLOW_RUNNER_PULL = True
    # A registry on a closed local port: the pull is really attempted, and fails at once.
    settings.FASTFLOW_RUNNER_IMAGE = "127.0.0.1:9/fastflow-runner:absent-{python_version}"
    spec = make_spec(make_pipeline_dir("pull_fails"))
    with pytest.raises(InfrastructureError, match="not found locally and pulling it failed"):
        executor.start(spec)


def test_an_unreachable_daemon_is_an_infrastructure_error(settings, tmp_path):
    settings.FASTFLOW_DOCKER_HOST = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(InfrastructureError, match="Docker engine not reachable at unix://"):
        DockerExecutor().check()


def test_the_log_cap_truncates_with_a_notice(executor, make_pipeline_dir):
    check_the_log_cap_truncates_with_a_notice(executor, make_pipeline_dir)


def test_metrics_have_samples_peak_memory_and_soft_limit_notes(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "busy",
        "import time\nblob = b'x' * (80 * 1024 * 1024)\n"
        "end = time.time() + 3\nwhile time.time() < end:\n    sum(range(10000))\n",
    )
    spec = make_spec(folder, mem_soft_limit=20 * MIB, cpu_soft_limit=0.1)
    outcome = run_to_end(executor, spec)
    assert_metrics_with_one_note_per_soft_limit(spec, outcome, min_peak_bytes=80 * MIB)


def test_orphans_are_listed_and_removed(executor, make_pipeline_dir):
    folder = make_pipeline_dir("orphan", "import time\ntime.sleep(60)\n")
    spec = make_spec(folder)
    handle = executor.start(spec).handle_id  # the Execution is dropped: nobody waits for it
    assert executor.running_handles()[spec.run_id] == handle
    executor.remove_orphan(handle)
    assert spec.run_id not in executor.running_handles()
    assert containers_of(spec) == []
    executor.remove_orphan(handle)  # a second removal is harmless


# An engine process that starts a run and streams it until it is killed with SIGKILL.
ENGINE_SCRIPT = """
import json, sys
from pathlib import Path
import django
django.setup()
from runs_app.engine.base import RunSpec
from runs_app.engine.executors import get_executor
raw = json.loads(sys.argv[1])
raw.update(pipeline_dir=Path(raw["pipeline_dir"]), log_file=Path(raw["log_file"]),
           metrics_file=Path(raw["metrics_file"]), mask_values=tuple(raw["mask_values"]))
execution = get_executor("docker").start(RunSpec(**raw))
print(execution.handle_id, flush=True)
execution.wait()
"""


def start_engine_and_kill_it(spec: RunSpec, settings, after_line: str) -> str:
    """Run `spec` in a separate engine process, SIGKILL it once `after_line` is logged."""
    engine = engine_process(ENGINE_SCRIPT, json.dumps(asdict(spec), default=str), settings)
    handle = engine.stdout.readline().strip()
    try:
        wait_for_line(spec, after_line)
        # And its first metrics sample: Docker's first stats reading comes about as late as the
        # third line, and a killed engine that never sampled leaves nothing to carry on from.
        deadline = time.monotonic() + 30
        while not metric_samples(spec) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    assert handle, "the engine process did not start the run"
    return handle


@pytest.mark.parametrize("container_state", ["running", "exited"])
def test_reattach_after_an_engine_crash_finishes_without_duplicate_lines(
    executor, settings, make_pipeline_dir, container_state
):
    folder = make_pipeline_dir("survivor", COUNTING)
    spec = make_spec(folder)
    handle = start_engine_and_kill_it(spec, settings, "line 3")
    if container_state == "exited":
        docker.from_env().containers.get(handle).wait(timeout=30)
    execution = executor.reattach(spec, handle)
    assert isinstance(execution, DockerExecution)
    outcome = execution.wait()
    assert outcome.succeeded
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]
    assert outcome.setup_duration is not None
    if container_state == "running":
        # The new engine keeps sampling into the same file. (An exited container has no stats;
        # whether the first engine got its first reading, ~1 s in, before line 3 is timing.)
        assert metric_samples(spec)
    assert containers_of(spec) == []


def test_a_run_that_ended_on_its_own_past_its_timeout_while_unwatched_succeeds(
    executor, settings, make_pipeline_dir
):
    folder = make_pipeline_dir("late", COUNTING)
    spec = make_spec(folder)
    handle = start_engine_and_kill_it(spec, settings, "line 2")
    docker.from_env().containers.get(handle).wait(timeout=30)
    outcome = executor.reattach(replace(spec, timeout=1), handle).wait()
    assert outcome.succeeded and not outcome.timed_out
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]


def test_reattach_to_a_container_that_never_started_removes_it_and_says_so(
    executor, make_pipeline_dir
):
    spec = make_spec(make_pipeline_dir("never_started"))
    options = executor.container_options(
        spec,
        image=executor.ensure_image(spec.python_version),
        command=["python3", "-c", "pass"],
        labels={"fastflow.run_id": spec.run_id},
    )
    container = executor.client.containers.create(**options)
    with pytest.raises(ExecutionNeverStarted):
        executor.reattach(spec, container.id)
    assert containers_of(spec) == []


def test_reattach_to_a_vanished_container_returns_none(executor, make_pipeline_dir):
    spec = make_spec(make_pipeline_dir("vanished"))
    assert executor.reattach(spec, "0" * 64) is None


def test_the_log_is_written_while_the_run_is_live(executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "live", "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')\n"
    )
    spec = make_spec(folder)
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "first")
    assert "second" not in user_lines(spec)  # still running: the first line arrived alone
    thread.join(30)
    assert result[0].succeeded and user_lines(spec) == ["first", "second"]
    assert containers_of(spec) == []


def test_a_pipeline_cannot_forge_engine_notes_or_the_ready_line(executor, make_pipeline_dir):
    check_a_pipeline_cannot_forge_notes_or_the_ready_line(executor, make_pipeline_dir)
