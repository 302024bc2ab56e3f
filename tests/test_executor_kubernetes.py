"""The Kubernetes executor through the real `kubernetes` client, against the HTTP-level API
server of `helpers_k8s.py`, whose kubelet runs each pod's container on the real Docker engine."""

from __future__ import annotations

import time

import pytest

from runs_app.engine.base import InfrastructureError
from runs_app.engine.executors import get_executor
from runs_app.engine.k8s_executor import NO_METRICS_NOTE, KubernetesExecutor
from runs_app.engine.k8s_relay import relay_code
from runs_app.engine.wrapper import wrapper_code
from tests.helpers_executor import (
    check_a_pipeline_cannot_forge_notes_or_the_ready_line,
    check_secrets_are_masked_across_split_writes,
    check_the_log_cap_truncates_with_a_notice,
    log_entries,
    log_lines,
    make_spec,
    metric_samples,
    run_to_end,
    user_lines,
    wait_for_line,
    wait_in_thread,
)
from tests.helpers_k8s import NAMESPACE, FakeCluster

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
COUNTING = (
    "import time\nfor i in range(1, 9):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
)


@pytest.fixture
def executor(k8s_cluster) -> KubernetesExecutor:
    return get_executor()


def pod_deletions(k8s_cluster: FakeCluster) -> list[tuple[str, dict]]:
    return [(name, options) for kind, name, options in k8s_cluster.deletions if kind == "pod"]


def job_deletions(k8s_cluster: FakeCluster) -> list[tuple[str, dict]]:
    return [(name, options) for kind, name, options in k8s_cluster.deletions if kind == "job"]


def test_the_job_holds_one_locked_down_pod_with_the_runs_limits(
    k8s_cluster, executor, settings, make_pipeline_dir
):
    settings.FASTFLOW_K8S_PIPELINES_VOLUME = ("pvc", "fastflow-pipelines")
    settings.FASTFLOW_K8S_SERVICE_ACCOUNT = "fastflow-run"
    settings.FASTFLOW_K8S_NODE_SELECTOR = {"pool": "runs"}
    toleration = {"key": "runs", "operator": "Exists", "effect": "NoSchedule"}
    settings.FASTFLOW_K8S_TOLERATIONS = [toleration]
    settings.FASTFLOW_K8S_IMAGE_PULL_SECRETS = ("registry",)
    settings.FASTFLOW_K8S_JOB_TTL_SECONDS = 600
    settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = 120
    k8s_cluster.behaviour = "unschedulable"  # nothing runs: the test is about what was sent
    executor = get_executor()
    folder = make_pipeline_dir("shaped")
    spec = make_spec(
        folder,
        env={"GREETING": "hi", "PATH": "/evil"},
        mem_hard_limit=256 * MIB,
        cpu_hard_limit=0.5,
        tmp_size=64 * MIB,
        pids_limit=100,
        timeout=30,
    )
    execution = executor.start(spec)
    execution.cancel()
    outcome = execution.wait()
    assert outcome.cancelled and outcome.error == "cancelled"

    labels = {"fastflow.managed": "1", "fastflow.scope": executor.pod.scope}
    labels |= {"fastflow.run_id": spec.run_id, "fastflow.env": "none"}
    env = {
        "FASTFLOW_PIPELINE": "shaped",
        "FASTFLOW_RUN_ID": spec.run_id,
        "GREETING": "hi",
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": "/tmp",
        "UV_CACHE_DIR": "/tmp/uv-cache",
        "UV_NO_PROGRESS": "1",
        "UV_PYTHON_DOWNLOADS": "never",
    }
    python = "python" + settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    program = wrapper_code(app_dir="/app", python_version=settings.FASTFLOW_DEFAULT_PYTHON_VERSION)
    assert k8s_cluster.created_jobs == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"fastflow-run-{spec.run_id}",
                "namespace": NAMESPACE,
                "labels": labels,
                "annotations": {"fastflow.pipeline": "shaped"},
            },
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                "activeDeadlineSeconds": 150,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "run",
                                "image": f"fastflow-runner:{python}",
                                "imagePullPolicy": "Never",
                                "command": [python, "-u", "-c", relay_code()],
                                "args": [python, "-u", "-c", program],
                                "workingDir": "/app",
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                                "resources": {
                                    "requests": {"memory": str(256 * MIB), "cpu": "500m"},
                                    "limits": {"memory": str(256 * MIB), "cpu": "500m"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "privileged": False,
                                    "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "tmp", "mountPath": "/tmp"},
                                    {
                                        "name": "pipelines",
                                        "mountPath": "/app",
                                        "subPath": "shaped",
                                        "readOnly": True,
                                    },
                                ],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "tmp",
                                "emptyDir": {"medium": "Memory", "sizeLimit": str(64 * MIB)},
                            },
                            {
                                "name": "pipelines",
                                "persistentVolumeClaim": {
                                    "claimName": "fastflow-pipelines",
                                    "readOnly": True,
                                },
                            },
                        ],
                        "serviceAccountName": "fastflow-run",
                        "nodeSelector": {"pool": "runs"},
                        "tolerations": [toleration],
                        "imagePullSecrets": [{"name": "registry"}],
                    },
                },
            },
        }
    ]
    limits = executor.limits_in_force(spec)
    assert limits == {
        "executor": "kubernetes",
        "memory_bytes": 256 * MIB,
        "cpus": 0.5,
        "tmp_bytes": 64 * MIB,
        "timeout_seconds": 30,
        "log_max_bytes": spec.log_max_bytes,
    }  # no per-pod process limit in Kubernetes: pids is not claimed


def test_a_run_succeeds_with_its_streams_apart_and_its_setup_time(
    k8s_cluster, executor, make_pipeline_dir
):
    folder = make_pipeline_dir(
        "hello",
        "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
        "sys.stdout.write('no newline at the end')\n",
    )
    spec = make_spec(folder)
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, outcome.error
    assert outcome.exit_code == 0 and outcome.error == ""
    assert outcome.finished_at is not None
    assert outcome.setup_duration is not None and outcome.setup_duration < 30
    entries = [(line.source, line.text) for line in log_entries(spec.log_file)]
    assert ("o", "to stdout") in entries and ("e", "to stderr") in entries
    assert ("o", "no newline at the end") in entries
    assert [t for s, t in entries if s == "n"][0].startswith("environment ready in ")
    follow = k8s_cluster.log_requests[0]
    assert follow["follow"] == ["true"] and follow["timestamps"] == ["true"]
    assert "sinceTime" not in follow
    # Deleted once recorded (cleanup), with its pod.
    assert job_deletions(k8s_cluster)[-1] == (
        f"fastflow-run-{spec.run_id}",
        {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
    )
    assert k8s_cluster.jobs == {}


def test_a_failing_pipeline_reports_its_exit_code(executor, make_pipeline_dir):
    spec = make_spec(make_pipeline_dir("fails", "print('about to fail')\nraise SystemExit(3)\n"))
    outcome = run_to_end(executor, spec)
    assert outcome.exit_code == 3 and not outcome.oom_killed
    assert outcome.error == "pipeline exited with code 3"
    assert user_lines(spec) == ["about to fail"]


def test_a_pod_over_its_memory_limit_is_oom_killed(executor, make_pipeline_dir):
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))\n"
    spec = make_spec(make_pipeline_dir("hog", hog), mem_hard_limit=64 * MIB)
    outcome = run_to_end(executor, spec)
    assert outcome.oom_killed and outcome.exit_code == 137
    assert outcome.error == "out of memory: exceeded the 64.0 MiB memory limit"
    assert any("out of memory: the container was killed" in line for line in log_lines(spec))


def test_a_run_past_its_timeout_is_killed(k8s_cluster, executor, make_pipeline_dir):
    spec = make_spec(
        make_pipeline_dir(
            "sleeper", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"
        ),
        timeout=2,
    )
    started = time.monotonic()
    outcome = run_to_end(executor, spec)
    assert time.monotonic() - started < 20
    assert outcome.timed_out and outcome.error == "timed out after 2 s"
    assert "[fastflow] timeout after 2 s: pod deleted" in log_lines(spec)
    assert pod_deletions(k8s_cluster)[0][1]["gracePeriodSeconds"] == 0


def test_cancel_deletes_the_job_and_its_pod_gets_sigterm(k8s_cluster, executor, make_pipeline_dir):
    folder = make_pipeline_dir(
        "patient",
        "import signal, sys, time\n"
        "def bye(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('waiting', flush=True)\ntime.sleep(60)\n",
    )
    spec = make_spec(folder)
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "waiting")
    execution.cancel()
    thread.join(30)
    (outcome,) = result
    assert outcome.cancelled and outcome.error == "cancelled"
    lines = log_lines(spec)
    assert "got SIGTERM" in lines  # the relay forwarded the kubelet's SIGTERM to the pipeline
    assert any(line.startswith("[fastflow] cancelled: deleting the Job") for line in lines)
    job = f"fastflow-run-{spec.run_id}"
    assert pod_deletions(k8s_cluster)[0][1]["gracePeriodSeconds"] == 1
    assert job_deletions(k8s_cluster)[0] == (
        job,
        {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Foreground",
            "gracePeriodSeconds": 1,
        },
    )


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("unschedulable", "Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
        ("image-pull-backoff", 'ImagePullBackOff: Back-off pulling image "fastflow-runner:'),
    ],
)
def test_a_pod_pending_too_long_fails_the_run_with_the_reason(
    k8s_cluster, executor, settings, make_pipeline_dir, behaviour, reason
):
    settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = 1.5
    k8s_cluster.behaviour = behaviour
    executor = get_executor()
    spec = make_spec(make_pipeline_dir("stuck"))
    outcome = run_to_end(executor, spec)
    assert outcome.exit_code is None and not outcome.succeeded
    assert outcome.error.startswith(
        "the run's pod did not start within 1.5 s (FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS): " + reason
    ), outcome.error
    assert f"[fastflow] {outcome.error}" in log_lines(spec)
    assert job_deletions(k8s_cluster)[0][0] == f"fastflow-run-{spec.run_id}"
    assert k8s_cluster.jobs == {}


def test_a_lost_node_fails_the_run_with_the_reason(k8s_cluster, executor, make_pipeline_dir):
    spec = make_spec(
        make_pipeline_dir("stranded", "import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    )
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "working")
    k8s_cluster.lose_node(k8s_cluster.pod_of(execution.handle_id)["metadata"]["name"])
    thread.join(30)
    (outcome,) = result
    assert not outcome.succeeded
    assert outcome.error == (
        "the run's pod was lost before it ended: DeletionByTaintManager: "
        "Taint manager: deleting due to NoExecute taint"
    )
    assert f"[fastflow] {outcome.error}" in log_lines(spec)


def test_an_engine_restart_reattaches_by_label_and_resumes_the_log(
    k8s_cluster, executor, make_pipeline_dir
):
    spec = make_spec(make_pipeline_dir("counter", COUNTING))
    first = executor.start(spec)
    result, thread = wait_in_thread(first)
    wait_for_line(spec, "line 3")
    first.abandon()  # the engine is gone: it stops writing and leaves the Job running
    thread.join(30)
    assert result[0].error.startswith("abandoned")
    assert f"fastflow-run-{spec.run_id}" in k8s_cluster.jobs

    restarted = get_executor()
    handles = restarted.running_handles()
    assert handles == {spec.run_id: f"fastflow-run-{spec.run_id}"}
    outcome = restarted.reattach(spec, handles[spec.run_id]).wait()
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]  # none twice, none lost
    notes = [line for line in log_lines(spec) if line.startswith("[fastflow] environment ready")]
    assert len(notes) == 1 and outcome.setup_duration is not None
    assert "sinceTime" in k8s_cluster.log_requests[-1]
    assert restarted.reattach(spec, handles[spec.run_id]) is None  # gone after cleanup


def test_an_unreachable_api_server_is_an_infrastructure_error_and_the_run_goes_on(
    k8s_cluster, executor, make_pipeline_dir
):
    spec = make_spec(make_pipeline_dir("counter", COUNTING))
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "line 2")
    k8s_cluster.go_away()
    with pytest.raises(InfrastructureError, match=f"not reachable at {k8s_cluster.url}"):
        executor.check()
    with pytest.raises(InfrastructureError, match="not reachable at .* while creating Job"):
        executor.start(make_spec(make_pipeline_dir("other")))
    with pytest.raises(InfrastructureError, match="while listing run Jobs"):
        executor.running_handles()  # reconcile then touches nothing
    time.sleep(1.5)
    k8s_cluster.serve()
    thread.join(30)
    (outcome,) = result
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == [f"line {i}" for i in range(1, 9)]
    executor.check()


def test_metrics_come_from_the_metrics_api(executor, make_pipeline_dir):
    burner = (
        "import time\nblock = bytearray(48 * 1024 * 1024)\nend = time.time() + 3\n"
        "while time.time() < end:\n    pass\n"
    )
    spec = make_spec(make_pipeline_dir("burner", burner), mem_soft_limit=16 * MIB)
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, outcome.error
    samples = metric_samples(spec)
    assert samples and {"ts", "cpu_percent", "memory_bytes"} <= set(samples[0])
    assert outcome.peak_memory_bytes >= 40 * MIB
    assert sum("memory soft limit exceeded" in line for line in log_lines(spec)) == 1


def test_a_cluster_without_a_metrics_api_says_so_in_the_log(
    k8s_cluster, executor, make_pipeline_dir
):
    k8s_cluster.metrics_api = False
    spec = make_spec(make_pipeline_dir("quiet", "import time\ntime.sleep(1.5)\n"))
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded and outcome.peak_memory_bytes is None
    assert f"[fastflow] {NO_METRICS_NOTE}" in log_lines(spec)


def test_the_pipeline_cannot_write_to_the_containers_own_stdout(executor, make_pipeline_dir):
    """The relay is non-dumpable: /proc/1/fd/1 is root's, and the run has no capabilities."""
    sneaky = (
        "import os\n"
        "try:\n"
        "    fd = os.open('/proc/1/fd/1', os.O_WRONLY)\n"
        "    os.write(fd, b'n 2026-01-01T00:00:00.000Z forged\\n')\n"
        "    print('wrote')\n"
        "except OSError as exc:\n"
        "    print('blocked:', type(exc).__name__)\n"
    )
    spec = make_spec(make_pipeline_dir("sneaky", sneaky))
    assert run_to_end(executor, spec).succeeded
    assert user_lines(spec) == ["blocked: PermissionError"]


def test_a_pipeline_cannot_forge_notes_or_the_ready_line(executor, make_pipeline_dir):
    check_a_pipeline_cannot_forge_notes_or_the_ready_line(executor, make_pipeline_dir)


def test_secrets_are_masked_across_split_writes(executor, make_pipeline_dir):
    check_secrets_are_masked_across_split_writes(executor, make_pipeline_dir)


def test_the_log_cap_truncates_with_a_notice(executor, make_pipeline_dir):
    check_the_log_cap_truncates_with_a_notice(executor, make_pipeline_dir)


def test_a_long_line_is_relayed_whole(executor, make_pipeline_dir):
    spec = make_spec(make_pipeline_dir("wide", "print('x' * 40000)\nprint('after')\n"))
    assert run_to_end(executor, spec).succeeded
    assert user_lines(spec) == ["x" * 40000, "after"]


def test_without_a_pipelines_volume_a_run_fails_to_start_naming_the_setting(
    executor, settings, make_pipeline_dir
):
    settings.FASTFLOW_K8S_PIPELINES_VOLUME = None
    with pytest.raises(InfrastructureError, match="FASTFLOW_K8S_PIPELINES_VOLUME is not set"):
        get_executor().start(make_spec(make_pipeline_dir("nowhere")))


def test_the_warm_up_without_a_cache_volume_says_which_setting(executor, make_pipeline_dir):
    folder = make_pipeline_dir("needs", requirements="six\n")
    with pytest.raises(InfrastructureError, match="FASTFLOW_K8S_CACHE_VOLUME is not set"):
        executor.warm(pipeline_name="needs", pipeline_dir=folder, python_version="3.11", timeout=5)


def test_the_warm_up_prepares_an_environment_that_runs_mount_read_only(
    k8s_cluster, settings, make_pipeline_dir, tmp_path
):
    """The warm-up steps run as Jobs with the cache volume's subPaths writable; the engine
    publishes the environment; a run then mounts it read-only at /venv (offline: the
    requirements name no package, so nothing is downloaded)."""
    settings.FASTFLOW_UV_CACHE_DIR = tmp_path / "uv-cache"  # nothing prepared yet
    settings.FASTFLOW_K8S_CACHE_VOLUME = ("host", str(settings.FASTFLOW_UV_CACHE_DIR))
    executor = get_executor()
    folder = make_pipeline_dir(
        "prepared",
        "import sys\nprint('prefix', sys.prefix)\n"
        "try:\n    open('/venv/planted.py', 'w')\nexcept OSError as exc:\n"
        "    print('venv is read-only:', type(exc).__name__)\n",
        requirements="# nothing pinned yet\n",
    )
    spec = make_spec(folder)
    message = executor.warm(
        pipeline_name="prepared", pipeline_dir=folder, python_version="3.11", timeout=120
    )
    assert message == ""
    warm_jobs = [
        job for job in k8s_cluster.created_jobs if "fastflow.warmup" in job["metadata"]["labels"]
    ]
    assert len(warm_jobs) == 3 and all(
        "fastflow.managed" not in job["metadata"]["labels"] for job in warm_jobs
    )
    assert executor.prepared_env(spec) is not None

    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == ["prefix /venv", "venv is read-only: OSError"]
    run_job = k8s_cluster.created_jobs[-1]
    assert run_job["metadata"]["labels"]["fastflow.env"] == "prepared"
    (container,) = run_job["spec"]["template"]["spec"]["containers"]
    assert {k: v for k, v in container["volumeMounts"][2].items() if k != "subPath"} == {
        "name": "envs",
        "mountPath": "/venv",
        "readOnly": True,
    }


def test_a_quiet_pipeline_outlasting_the_log_read_timeout_loses_nothing(
    executor, make_pipeline_dir, monkeypatch
):
    from runs_app.engine import k8s_api

    monkeypatch.setattr(k8s_api, "LOG_READ_TIMEOUT", 0.5)
    quiet = (
        "import time\nprint('before', flush=True)\ntime.sleep(2)\n"
        "print('after', flush=True)\ntime.sleep(1.5)\nprint('last')\n"
    )
    spec = make_spec(make_pipeline_dir("quiet", quiet))
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == ["before", "after", "last"]
    assert not any("interrupted" in line for line in log_lines(spec))  # a timeout is no error


def test_the_clusters_deadline_backstop_reads_as_a_timeout(
    k8s_cluster, executor, make_pipeline_dir
):
    spec = make_spec(
        make_pipeline_dir("overdue", "import time\nprint('long', flush=True)\ntime.sleep(60)\n"),
        timeout=60,
    )
    execution = executor.start(spec)
    result, thread = wait_in_thread(execution)
    wait_for_line(spec, "long")
    k8s_cluster.exceed_deadline(execution.handle_id)
    thread.join(30)
    (outcome,) = result
    assert outcome.timed_out and not outcome.oom_killed
    assert outcome.error == "timed out after 60 s"
    assert any("activeDeadlineSeconds" in line for line in log_lines(spec))


def test_a_kubeconfig_that_cannot_be_loaded_names_the_setting(settings, tmp_path):
    settings.FASTFLOW_K8S_KUBECONFIG = str(tmp_path / "missing.kubeconfig")
    with pytest.raises(InfrastructureError, match="FASTFLOW_K8S_KUBECONFIG: cannot load"):
        get_executor("kubernetes").check()


def test_a_refused_request_says_what_the_api_server_answered(k8s_cluster, settings, tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(config.read_text().replace("test-token", "wrong-token"))
    settings.FASTFLOW_K8S_KUBECONFIG = str(config)
    with pytest.raises(
        InfrastructureError, match="Kubernetes API error 401 while checking the API server"
    ):
        get_executor("kubernetes").check()


def test_with_git_sync_a_run_executes_its_own_commits_checkout(k8s_cluster, settings, tmp_path):
    volume = tmp_path / "shared"
    for commit, text in (("aaa111", "old"), ("bbb222", "new")):
        folder = volume / "git" / "checkouts" / commit / "etl"
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(f"print('{text} commit')\n")
    volume.chmod(0o755)
    (volume / "pipelines").symlink_to("git/checkouts/bbb222")  # synced on since the run began
    settings.PIPELINES_DIR = volume / "pipelines"
    settings.FASTFLOW_K8S_PIPELINES_VOLUME = ("host", str(volume))
    settings.FASTFLOW_K8S_PIPELINES_VOLUME_PATH = str(volume)
    spec = make_spec(volume / "git" / "checkouts" / "aaa111" / "etl")
    outcome = run_to_end(get_executor(), spec)
    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == ["old commit"]
