"""Resource caps by default: the installation's defaults and maxima, pipeline.json tightening or
raising them up to the maximum, the limits in force recorded on the run and shown on its page."""

from __future__ import annotations

import os

import docker
import pytest
from django.urls import reverse

from accounts_app.models import Role
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue
from tests.conftest import write_pipeline
from tests.helpers_admin import client_for
from tests.helpers_engine import (
    ThreadEngine,
    log_text,
    make_pipeline,
    wait_for,
    wait_until_finished,
)
from tests.helpers_executor import use_runner_image

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024
# Prints the size of its /tmp, then waits for the test's go-ahead (the file `go`).
REPORTS_TMP = (
    "import os, time\n"
    "st = os.statvfs('/tmp')\n"
    "print('tmp', st.f_blocks * st.f_frsize, flush=True)\n"
    "here = os.path.dirname(os.path.abspath('main.py'))\n"
    "while not os.path.exists(os.path.join(here, 'go')):\n"
    "    time.sleep(0.05)\n"
)


def discovery_error(pipelines_dir, name: str, pipeline_json: dict) -> str:
    write_pipeline(pipelines_dir, name, pipeline_json=pipeline_json)
    pipelines_sync()
    return Pipeline.objects.get(pipeline_name=name).discovery_error


@pytest.fixture
def caps(settings):
    settings.FASTFLOW_RUN_MEM_DEFAULT = 192 * MIB
    settings.FASTFLOW_RUN_MEM_MAX = 512 * MIB
    settings.FASTFLOW_RUN_CPU_DEFAULT = 0.5
    settings.FASTFLOW_RUN_CPU_MAX = 1.0
    settings.FASTFLOW_RUNNER_PIDS_LIMIT = 100
    settings.FASTFLOW_RUNNER_PIDS_LIMIT_MAX = 200
    settings.FASTFLOW_RUNNER_TMPFS_SIZE = 32 * MIB
    settings.FASTFLOW_RUNNER_TMPFS_SIZE_MAX = 64 * MIB
    return settings


@pytest.mark.parametrize(
    ("key", "value", "maximum"),
    [
        ("mem_hard_limit", "1g", "512.0 MiB (FASTFLOW_RUN_MEM_MAX)"),
        ("cpu_hard_limit", 2, "1 cores (FASTFLOW_RUN_CPU_MAX)"),
        ("pids_limit", 201, "200 (FASTFLOW_RUNNER_PIDS_LIMIT_MAX)"),
        ("tmp_size", "65m", "64.0 MiB (FASTFLOW_RUNNER_TMPFS_SIZE_MAX)"),
    ],
)
def test_a_pipeline_json_above_a_maximum_is_a_discovery_error_naming_key_and_maximum(
    caps, pipelines_dir, key, value, maximum
):
    top = discovery_error(pipelines_dir, "greedy", {key: value})
    nested = discovery_error(pipelines_dir, "greedy_rc", {"schedules": [{"id": "big", key: value}]})

    assert f"key '{key}':" in top and f"above the maximum of this installation, {maximum}" in top
    assert f"key 'schedules[0].{key}':" in nested and maximum in nested
    assert not Pipeline.objects.get(pipeline_name="greedy").is_runnable


def test_limits_up_to_the_maximum_are_accepted(caps, pipelines_dir):
    limits = {"mem_hard_limit": "512m", "cpu_hard_limit": 1, "pids_limit": 200, "tmp_size": "64m"}
    assert discovery_error(pipelines_dir, "at_the_cap", limits) == ""


@pytest.mark.docker
def test_a_docker_run_gets_the_defaults_or_what_pipeline_json_asks_and_records_them(
    docker_engine, caps
):
    use_runner_image(caps)
    caps.FASTFLOW_RUNNER_NETWORK = "none"
    plain = make_pipeline("plain_limits", REPORTS_TMP)
    tuned = make_pipeline(
        "tuned_limits",
        REPORTS_TMP,
        pipeline_json={"mem_hard_limit": "256m", "cpu_hard_limit": 1, "pids_limit": 50},
    )
    client = docker.from_env()
    observed = {}
    with ThreadEngine(executor="docker"):
        runs = [run_enqueue(pipeline=p, triggered_by="manual") for p in (plain, tuned)]
        for run in runs:
            wait_for(lambda run=run: "tmp " in log_text(run), timeout=120, what="the run to start")
            [container] = client.containers.list(filters={"label": f"fastflow.run_id={run.id}"})
            observed[run.pipeline_id] = container.attrs["HostConfig"]
            (run.pipeline.folder / "go").write_text("")
        for run in runs:
            wait_until_finished(run, timeout=120)

    assert [run.status for run in runs] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
    host = observed["plain_limits"]
    assert (host["Memory"], host["MemorySwap"]) == (192 * MIB, 192 * MIB)
    assert (host["NanoCpus"], host["PidsLimit"]) == (500_000_000, 100)
    assert f"tmp {32 * MIB}" in log_text(runs[0])
    assert runs[0].limits == {
        "executor": "docker",
        "memory_bytes": 192 * MIB,
        "cpus": 0.5,
        "pids": 100,
        "tmp_bytes": 32 * MIB,
        "timeout_seconds": None,
        "log_max_bytes": caps.FASTFLOW_LOG_MAX_BYTES,
    }
    host = observed["tuned_limits"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (256 * MIB, 10**9, 50)
    assert runs[1].limits["memory_bytes"] == 256 * MIB and runs[1].limits["pids"] == 50

    page = client_for(Role.READONLY).get(
        reverse("admin:runs_app_pipelinerun_change", args=[runs[0].pk])
    )
    assert "memory 192.0 MiB · CPUs 0.5 · processes 100 · /tmp 32.0 MiB" in page.text


@pytest.mark.docker
def test_what_a_docker_run_can_write_is_capped_by_its_tmp_size(docker_engine, caps):
    use_runner_image(caps)
    caps.FASTFLOW_RUNNER_NETWORK = "none"
    pipeline = make_pipeline(
        "fills_tmp",
        "import errno\nwritten = 0\n"
        "try:\n    with open('/tmp/big', 'wb') as fh:\n"
        "        for _ in range(1000):\n            fh.write(b'x' * 1024 * 1024); fh.flush()\n"
        "            written += 1\nexcept OSError as exc:\n"
        "    print('refused after', written, 'MiB:', errno.errorcode[exc.errno])\n",
        pipeline_json={"tmp_size": "16m", "mem_hard_limit": "256m"},
    )
    with ThreadEngine(executor="docker"):
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS, run.error_message
    line = next(x for x in log_text(run).splitlines() if "refused after" in x)
    assert line.endswith("ENOSPC") and int(line.split()[-3]) <= 16


def test_a_local_run_gets_the_default_memory_limit_and_says_what_it_cannot_enforce(caps):
    pipeline = make_pipeline(
        "local_limits",
        "import resource\nprint('as', resource.getrlimit(resource.RLIMIT_AS)[0])\n",
    )
    with ThreadEngine():
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert f"as {192 * MIB}" in log_text(run)
    assert run.limits == {
        "executor": "local",
        "memory_bytes": 192 * MIB,
        "timeout_seconds": None,
        "log_max_bytes": caps.FASTFLOW_LOG_MAX_BYTES,
    }
    page = client_for(Role.READONLY).get(
        reverse("admin:runs_app_pipelinerun_change", args=[run.pk])
    )
    assert "not enforced by the local executor: CPUs, processes, /tmp" in page.text


def test_a_run_whose_limits_are_above_a_lowered_maximum_does_not_start(caps):
    pipeline = make_pipeline("was_fine", pipeline_json={"mem_hard_limit": "512m"})
    caps.FASTFLOW_RUN_MEM_MAX = 256 * MIB  # lowered after discovery accepted it
    with ThreadEngine():
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_until_finished(run)

    assert run.status == RunStatus.FAILED
    assert "mem_hard_limit 512.0 MiB is above the maximum" in run.error_message
    assert PipelineRun.objects.filter(id=run.id, container_id="").exists()
    assert os.path.exists(run.pipeline.folder)
