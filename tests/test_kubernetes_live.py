"""The Kubernetes executor against a real cluster (kind or k3s), when one is configured.

Runs only with FASTFLOW_TEST_KUBECONFIG set (docs/scaling.md, "Testing against a real
cluster", has the steps for kind and k3s); otherwise the whole module is skipped with that
reason. Settings (environment variables):

- FASTFLOW_TEST_KUBECONFIG: the cluster's kubeconfig.
- FASTFLOW_TEST_K8S_NAMESPACE: an existing namespace for the test Jobs (default fastflow-test).
- FASTFLOW_TEST_K8S_PIPELINES_DIR: a directory on this machine that every node sees at the
  same path (kind: an extraMount; k3s on this machine: any directory), for the pipelines.
- FASTFLOW_TEST_K8S_IMAGE: the runner image as the nodes know it (default
  fastflow-runner:python{python_version}, loaded with `kind load docker-image`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from runs_app.engine.executors import get_executor
from tests.helpers_executor import (
    log_lines,
    make_spec,
    run_to_end,
    user_lines,
    wait_for_line,
    wait_in_thread,
)

KUBECONFIG = os.environ.get("FASTFLOW_TEST_KUBECONFIG", "")
pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="FASTFLOW_TEST_KUBECONFIG is not set (no Kubernetes cluster to test)"
)
MIB = 1024 * 1024


@pytest.fixture
def live(settings):
    pipelines = Path(os.environ.get("FASTFLOW_TEST_K8S_PIPELINES_DIR", "/tmp/fastflow-kind"))
    folder = pipelines / f"session-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    settings.PIPELINES_DIR = folder
    settings.FASTFLOW_EXECUTOR = "kubernetes"
    settings.FASTFLOW_K8S_KUBECONFIG = KUBECONFIG
    settings.FASTFLOW_K8S_NAMESPACE = os.environ.get("FASTFLOW_TEST_K8S_NAMESPACE", "fastflow-test")
    settings.FASTFLOW_K8S_PIPELINES_VOLUME = ("host", str(folder))
    # Run output directories on the same node path as the pipelines (the kind node mounts it).
    data = pipelines / f"data-{folder.name}"
    data.mkdir(mode=0o700)
    settings.DATA_DIR = data
    settings.FASTFLOW_K8S_OUTPUT_VOLUME = ("host", str(data))
    settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = 120
    settings.FASTFLOW_RUNNER_IMAGE = os.environ.get(
        "FASTFLOW_TEST_K8S_IMAGE", "fastflow-runner:python{python_version}"
    )
    settings.FASTFLOW_RUNNER_PULL = False
    settings.FASTFLOW_CANCEL_GRACE_SECONDS = 2

    def make(name: str, main_py: str) -> Path:
        path = folder / name
        path.mkdir()
        (path / "main.py").write_text(main_py)
        path.chmod(0o755)
        (path / "main.py").chmod(0o644)
        return path

    return get_executor(), make


def test_a_run_succeeds_with_its_streams_apart(live):
    executor, make = live
    spec = make_spec(make("hello", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"))
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, outcome.error
    assert sorted(user_lines(spec)) == ["err", "out"]
    assert outcome.setup_duration is not None


def test_an_exit_code_and_an_oom_kill_are_reported(live):
    executor, make = live
    failing = make_spec(make("fails", "raise SystemExit(3)\n"))
    assert run_to_end(executor, failing).exit_code == 3
    hog = "b = []\nwhile True:\n    b.append(bytearray(8 * 1024 * 1024))\n"
    oom = run_to_end(executor, make_spec(make("hog", hog), mem_hard_limit=64 * MIB))
    assert oom.oom_killed, oom.error


def test_cancel_and_timeout_stop_the_pod(live):
    executor, make = live
    sleeper = make("sleeper", "import time\nprint('waiting', flush=True)\ntime.sleep(300)\n")
    spec = make_spec(sleeper)
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "waiting", timeout=120)
    execution.cancel()
    thread.join(60)
    assert result and result[0].cancelled
    timed = run_to_end(executor, make_spec(sleeper, timeout=5))
    assert timed.timed_out, timed.error


def test_an_engine_restart_reattaches_and_resumes_the_log(live):
    executor, make = live
    counting = (
        "import time\nfor i in range(1, 9):\n    print('line', i, flush=True)\n"
        "    time.sleep(0.5)\n"
    )
    spec = make_spec(make("counter", counting))
    first = executor.start(spec)
    result, thread = wait_in_thread(first)
    wait_for_line(spec, "line 3", timeout=120)
    first.abandon()
    thread.join(30)
    restarted = get_executor()
    outcome = restarted.reattach(spec, restarted.running_handles()[spec.run_id]).wait()
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]
    assert not any("interrupted" in line for line in log_lines(spec))
