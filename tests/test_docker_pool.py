"""The Docker executor's warm pool, against a real Docker engine and the offline runner image:
a pooled run is the container an unpooled run would be, used once, and nothing leaks."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from runs_app.engine.base import ExecutionNeverStarted
from runs_app.engine.docker_executor import DockerExecutor
from runs_app.engine.docker_pool import (
    LABEL_POOL,
    POOL_PREFIX,
    RUN_PREFIX,
    UNUSED_EXIT_CODE,
    run_container_name,
)
from tests.helpers_executor import (
    engine_process,
    make_spec,
    run_to_end,
    use_runner_image,
    user_lines,
    wait_for_line,
    wait_in_thread,
)

MIB = 1024 * 1024
COUNTING = (
    "import time\nfor i in range(1, 9):\n    print(f'line {i}', flush=True)\n    time.sleep(0.4)\n"
)
ENGINE_SCRIPT = """
import json, sys, time
from pathlib import Path
import django
django.setup()
from runs_app.engine.base import RunSpec
from runs_app.engine.docker_executor import DockerExecutor
def spec(raw):
    raw.update(pipeline_dir=Path(raw["pipeline_dir"]), log_file=Path(raw["log_file"]),
               metrics_file=Path(raw["metrics_file"]), mask_values=tuple(raw["mask_values"]),
               output_dir=Path(raw["output_dir"]))
    return RunSpec(**raw)
first, second = (spec(raw) for raw in json.loads(sys.argv[1]))
executor = DockerExecutor()
executor.start(first).wait()
deadline = time.monotonic() + 60
while executor.pool.idle_count() < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
execution = executor.start(second)
print(execution.handle_id, flush=True)
execution.wait()
"""


@pytest.fixture
def pool_settings(docker_engine, settings):
    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    settings.FASTFLOW_DOCKER_POOL_SIZE = 4
    settings.FASTFLOW_DOCKER_POOL_PER_PIPELINE = 2
    settings.FASTFLOW_DOCKER_POOL_IDLE_SECONDS = 300
    return settings


@pytest.fixture
def executor(pool_settings):
    executor = DockerExecutor()
    yield executor
    executor.close()
    for container in scope_containers(executor):
        container.remove(force=True)


def scope_containers(executor: DockerExecutor) -> list:
    filters = {"label": [LABEL_POOL, f"fastflow.scope={executor.scope()}"]}
    return docker.from_env().containers.list(all=True, filters=filters, ignore_removed=True)


def idle_members(executor: DockerExecutor) -> list:
    return [c for c in scope_containers(executor) if c.name.startswith(POOL_PREFIX)]


def wait_for_idle(executor: DockerExecutor, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while executor.pool.idle_count() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the pool never had {count} idle members")
        time.sleep(0.05)


def output_spec(folder: Path, settings, **overrides):
    spec = make_spec(folder, **overrides)
    output_dir = Path(settings.DATA_DIR) / "run-outputs" / spec.run_id
    return make_spec(folder, run_id=spec.run_id, output_dir=output_dir, **overrides)


def primed(executor: DockerExecutor, folder: Path, settings, **overrides):
    """Run the pipeline once (unpooled: the pool is empty), then wait for its two members."""
    first = output_spec(folder, settings, **overrides)
    outcome = run_to_end(executor, first)
    assert outcome.succeeded, outcome.error
    wait_for_idle(executor, 2)
    return first


def inspect(handle: str) -> dict:
    return docker.from_env().api.inspect_container(handle)


def isolation(attrs: dict) -> dict:
    """What makes a run's container what it is, without what differs per run."""
    host = attrs["HostConfig"]
    mounts = sorted(
        (m["Destination"], m["RW"], m["Source"] if m["Destination"] != "/fastflow" else "")
        for m in attrs["Mounts"]
    )
    labels = {
        k: v
        for k, v in attrs["Config"]["Labels"].items()
        if k not in ("fastflow.run_id", LABEL_POOL)
    }
    return {
        "image": attrs["Image"],
        "user": attrs["Config"]["User"],
        "workdir": attrs["Config"]["WorkingDir"],
        "labels": labels,
        "mounts": mounts,
        **{
            key: host[key]
            for key in (
                "ReadonlyRootfs",
                "CapDrop",
                "SecurityOpt",
                "PidsLimit",
                "Memory",
                "MemorySwap",
                "NanoCpus",
                "Tmpfs",
                "NetworkMode",
                "Privileged",
                "CapAdd",
            )
        },
    }


PROBE = (
    "import os\n"
    "print('uid', os.getuid())\n"
    "print('pid1', open('/proc/1/cmdline').read().split(chr(0))[:2])\n"
    "print('app', sorted(os.listdir('/app')))\n"
    "print('greeting', os.environ.get('GREETING'))\n"
    "print('run', os.environ.get('FASTFLOW_RUN_ID'))\n"
    "print('home', os.environ.get('HOME'))\n"
    "open('/fastflow/route', 'w').write('next')\n"
    "import time\n"
    "print('started', flush=True)\n"
    "time.sleep(float(os.environ.get('NAP', '0')))\n"
)


def test_a_pooled_run_has_exactly_the_isolation_and_limits_of_an_unpooled_one(
    executor, settings, make_pipeline_dir
):
    folder = make_pipeline_dir("probe", PROBE)
    limits = {"mem_hard_limit": 128 * MIB, "cpu_hard_limit": 0.5, "pids_limit": 64}
    env = {"GREETING": "hi there", "NAP": "30"}
    unpooled = output_spec(folder, settings, env=env, **limits)
    pooled_specs = []
    attrs = {}
    for name in ("unpooled", "pooled"):
        spec = unpooled if name == "unpooled" else output_spec(folder, settings, env=env, **limits)
        execution = executor.start(spec)
        result, thread = wait_in_thread(execution)
        wait_for_line(spec, "started")
        attrs[name] = inspect(execution.handle_id)
        execution.cancel()
        thread.join(30)
        assert result[0].cancelled
        if name == "unpooled":
            wait_for_idle(executor, 2)
        else:
            pooled_specs.append(spec)
    [pooled] = pooled_specs
    assert attrs["pooled"]["Name"].lstrip("/").startswith(RUN_PREFIX + pooled.run_id)
    assert attrs["unpooled"]["Config"]["Labels"]["fastflow.run_id"] == unpooled.run_id
    assert isolation(attrs["pooled"]) == isolation(attrs["unpooled"])
    host = attrs["pooled"]["HostConfig"]
    assert host["Memory"] == 128 * MIB and host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64 and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert host["NetworkMode"] == "none"
    # The run's variables reach a pooled container at hand-over only: not in `docker inspect`.
    assert not any(v.startswith("GREETING=") for v in attrs["pooled"]["Config"]["Env"])
    # Inside, the same run: the pipeline is PID 1 (the waiter exec'd it), same user, same view.
    strip_run = [line for line in user_lines(unpooled) if not line.startswith("run ")]
    assert [line for line in user_lines(pooled) if not line.startswith("run ")] == strip_run
    assert f"run {pooled.run_id}" in user_lines(pooled)
    assert "greeting hi there" in user_lines(pooled) and "uid 65534" in user_lines(pooled)
    assert "pid1 ['python3.11', '-u']" in user_lines(pooled)


def test_a_pooled_run_sees_only_its_pipeline_and_is_destroyed_after_it(
    executor, settings, make_pipeline_dir
):
    folder = make_pipeline_dir("mine", PROBE)
    make_pipeline_dir("theirs", "print('not yours')\n")
    primed(executor, folder, settings)
    members = {c.id for c in idle_members(executor)}
    spec = output_spec(folder, settings, env={"GREETING": "hello"})
    execution = executor.start(spec)
    assert execution.handle_id in members  # handed a member, not created now
    outcome = execution.wait_for_outcome()
    assert outcome.succeeded, outcome.error
    lines = user_lines(spec)
    assert "app ['main.py']" in lines and "greeting hello" in lines
    assert f"run {spec.run_id}" in lines
    # Its output directory is the run's: the engine reads the route from there.
    assert (spec.output_dir / "route").read_text() == "next"
    execution.cleanup()
    with pytest.raises(NotFound):
        docker.from_env().containers.get(execution.handle_id)
    # The pool refills in the background, with new containers.
    wait_for_idle(executor, 2)
    assert execution.handle_id not in {c.id for c in idle_members(executor)}


def test_the_timeout_counts_from_the_hand_over_not_from_the_members_start(
    executor, settings, make_pipeline_dir
):
    folder = make_pipeline_dir("punctual", COUNTING)
    primed(executor, folder, settings)
    time.sleep(3)  # the members idle longer than the run's whole timeout
    spec = output_spec(folder, settings, timeout=6)
    outcome = executor.start(spec).wait()
    assert outcome.succeeded and not outcome.timed_out, outcome.error
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]
    assert outcome.setup_duration is not None and outcome.setup_duration < 2


def test_a_broken_member_is_replaced_never_handed_out(executor, settings, make_pipeline_dir):
    folder = make_pipeline_dir("sturdy", "print('fine')\n")
    primed(executor, folder, settings)
    broken = idle_members(executor)
    assert len(broken) == 2
    for container in broken:
        container.kill()
    spec = output_spec(folder, settings)
    execution = executor.start(spec)
    assert execution.handle_id not in {c.id for c in broken}
    outcome = execution.wait()
    assert outcome.succeeded and user_lines(spec) == ["fine"]
    for container in broken:
        with pytest.raises(NotFound):
            container.reload()
    wait_for_idle(executor, 2)


def test_a_member_renamed_but_never_given_its_command_is_a_run_that_never_started(
    executor, settings, make_pipeline_dir
):
    folder = make_pipeline_dir("abandoned", "print('never')\n")
    primed(executor, folder, settings)
    spec = output_spec(folder, settings)
    # What an engine dying mid hand-over leaves: the member renamed, its stdin closed unsent.
    with executor.pool._lock:
        member = next(m for members in executor.pool._idle.values() for m in members)
        executor.pool._idle[member.key].remove(member)
    member.container.rename(run_container_name(spec.run_id, datetime.now(UTC)))
    executor.pool._close_stdin(member)
    assert member.container.wait(timeout=30)["StatusCode"] == UNUSED_EXIT_CODE
    assert executor.find_handle(spec.run_id) == member.container.id
    with pytest.raises(ExecutionNeverStarted):
        executor.reattach(spec, member.container.id)
    with pytest.raises(NotFound):
        member.container.reload()


def test_a_killed_engine_leaves_no_pool_containers_after_the_next_start(
    executor, settings, make_pipeline_dir
):
    """The dead engine's idle members end on their own (their stdin closes with the engine)
    and the next engine's first check sweeps them; its handed-over run is re-attached."""
    folder = make_pipeline_dir("survivor", COUNTING)
    first, second = (output_spec(folder, settings) for _ in range(2))
    payload = json.dumps([asdict(first), asdict(second)], default=str)
    engine = engine_process(
        ENGINE_SCRIPT,
        payload,
        settings,
        FASTFLOW_DOCKER_POOL_SIZE="4",
        FASTFLOW_DOCKER_POOL_PER_PIPELINE="2",
    )
    try:
        handle = engine.stdout.readline().strip()
        wait_for_line(second, "line 3")
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    assert handle, "the engine process did not start the pooled run"
    assert inspect(handle)["Name"].lstrip("/").startswith(RUN_PREFIX + second.run_id)
    # Its refill had time to create members; they are idle, and now ownerless.
    deadline = time.monotonic() + 30
    while not idle_members(executor) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = idle_members(executor)
    assert orphans, "the killed engine's pool had no idle members"
    for container in orphans:
        assert container.wait(timeout=30)["StatusCode"] == UNUSED_EXIT_CODE
    assert executor.find_handle(second.run_id) == handle
    executor.check()  # the next engine's start: sweeps before it refills
    deadline = time.monotonic() + 30
    while {c.id for c in idle_members(executor)} & {c.id for c in orphans}:
        assert time.monotonic() < deadline, "the dead engine's pool containers were not swept"
        time.sleep(0.1)
    slots = list((Path(settings.DATA_DIR) / "run-outputs").glob(".pool-*"))
    live = {c.name for c in idle_members(executor)}
    assert {s.name.removeprefix(".pool-") for s in slots} <= live
    outcome = executor.reattach(second, handle).wait()
    assert outcome.succeeded
    assert user_lines(second) == [f"line {i}" for i in range(1, 9)]


def test_stopping_the_engine_removes_its_idle_members(executor, settings, make_pipeline_dir):
    folder = make_pipeline_dir("tidy", "print('hi')\n")
    primed(executor, folder, settings)
    assert len(idle_members(executor)) == 2
    executor.close()
    assert idle_members(executor) == []
    assert list((Path(settings.DATA_DIR) / "run-outputs").glob(".pool-*")) == []


def test_idle_members_and_pipelines_without_runs_expire(executor, settings, make_pipeline_dir):
    settings.FASTFLOW_DOCKER_POOL_IDLE_SECONDS = 5
    folder = make_pipeline_dir("fleeting", "print('hi')\n")
    primed(executor, folder, settings)
    deadline = time.monotonic() + 30
    while idle_members(executor):
        assert time.monotonic() < deadline, "idle members outlived the idle timeout"
        time.sleep(0.2)
    assert executor.pool.idle_count() == 0
    time.sleep(2)  # and the pipeline is no longer kept filled
    assert idle_members(executor) == []


def test_the_pool_makes_room_for_the_pipeline_that_ran_last(executor, settings, make_pipeline_dir):
    settings.FASTFLOW_DOCKER_POOL_SIZE = 2
    older = make_pipeline_dir("older", "print('a')\n")
    newer = make_pipeline_dir("newer", "print('b')\n")
    primed(executor, older, settings)
    assert {c.labels["fastflow.pipeline"] for c in idle_members(executor)} == {"older"}
    run_to_end(executor, output_spec(newer, settings))
    deadline = time.monotonic() + 60
    while {c.labels["fastflow.pipeline"] for c in idle_members(executor)} != {"newer"}:
        assert time.monotonic() < deadline, [c.labels for c in idle_members(executor)]
        time.sleep(0.1)
    assert len(idle_members(executor)) == 2


def test_with_the_pool_off_a_run_is_created_and_started_as_before(
    executor, settings, make_pipeline_dir
):
    settings.FASTFLOW_DOCKER_POOL_SIZE = 0
    folder = make_pipeline_dir("plain", "print('plain')\n")
    for _ in range(2):
        spec = output_spec(folder, settings)
        execution = executor.start(spec)
        attrs = inspect(execution.handle_id)
        assert attrs["Config"]["Labels"]["fastflow.run_id"] == spec.run_id
        assert LABEL_POOL not in attrs["Config"]["Labels"]
        assert execution.wait().succeeded
    assert scope_containers(executor) == []
    assert executor.pool.idle_count() == 0


def test_a_run_setting_a_python_start_up_variable_gets_a_fresh_interpreter(
    executor, settings, make_pipeline_dir
):
    """The waiter runs the program in its own process only when that is what `python -u -c`
    would do; a PYTHON* variable acts at interpreter start, so then it execs a new one."""
    folder = make_pipeline_dir(
        "startup",
        "import sys\nprint('lib', '/app/lib' in sys.path)\nprint('argv', sys.argv)\n",
    )
    primed(executor, folder, settings)
    plain = output_spec(folder, settings)
    assert executor.start(plain).wait().succeeded
    assert user_lines(plain) == ["lib False", "argv ['main.py']"]
    wait_for_idle(executor, 2)
    members = {c.id for c in idle_members(executor)}
    spec = output_spec(folder, settings, env={"PYTHONPATH": "/app/lib"})
    execution = executor.start(spec)
    assert execution.handle_id in members  # pooled all the same
    assert execution.wait().succeeded
    assert user_lines(spec) == ["lib True", "argv ['main.py']"]


def test_a_member_created_but_never_started_is_swept(executor, settings):
    """What an engine dying between create and start leaves (it attaches before starting, so
    a started member always had its stdin held): a created container, removed by the sweep."""
    client = docker.from_env()
    image = settings.FASTFLOW_RUNNER_IMAGE.format(python_version="3.11")
    labels = {LABEL_POOL: "k", "fastflow.scope": executor.scope(), "fastflow.managed": "1"}
    left = client.containers.create(image, ["true"], name=f"{POOL_PREFIX}left", labels=labels)
    assert left.id in executor.pool.sweep()
    with pytest.raises(NotFound):
        left.reload()
