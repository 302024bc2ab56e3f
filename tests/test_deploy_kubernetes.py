"""deploy/kubernetes renders with `kubectl kustomize` and validates against the API's schemas;
so does the Job the Kubernetes executor sends for a run (no cluster needed for either)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from runs_app.engine.base import InfrastructureError, RunSpec
from runs_app.engine.k8s_spec import PodSettings, job_manifest
from tests.helpers_executor import make_spec

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
VALIDATE = ROOT / "scripts" / "validate-k8s.sh"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing (.ci/run installs Debian's kubernetes-client)")
    return found


def run_validate(base: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(VALIDATE), str(base)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def rendered(kubectl) -> list[dict]:
    output = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def test_the_base_renders_and_every_object_is_valid(kubectl):
    result = run_validate(BASE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 objects rendered and valid" in result.stdout


def test_an_invalid_object_fails_the_validation(kubectl, tmp_path):
    broken = tmp_path / "base"
    shutil.copytree(BASE, broken)
    web = broken / "web.yaml"
    web.write_text(web.read_text().replace("replicas: 2", "replicas: 2\n  replicaz: 3", 1))
    result = run_validate(broken)
    assert result.returncode != 0
    assert "replicaz" in result.stdout + result.stderr


def test_everything_is_in_one_namespace_and_the_engine_may_touch_only_runs(rendered):
    assert {obj["metadata"].get("namespace") for obj in rendered if obj["kind"] != "Namespace"} == {
        "fastflow"
    }
    kinds = {obj["kind"] for obj in rendered}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = by_kind(rendered, "Role").values()
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {resource for _, resource, _ in granted} == {"jobs", "pods", "pods/log"}
    assert {(g, r) for g, r, _ in granted} == {
        ("batch", "jobs"),
        ("", "pods"),
        ("", "pods/log"),
        ("metrics.k8s.io", "pods"),
    }
    assert ("", "pods", "create") not in granted  # pods come from Jobs only
    (binding,) = by_kind(rendered, "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fastflow-engine", "namespace": "fastflow"}
    ]


def test_web_and_engine_are_probed_and_a_job_migrates(rendered):
    deployments = by_kind(rendered, "Deployment")
    (web,) = deployments["fastflow-web"]["spec"]["template"]["spec"]["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    engine_pod = deployments["fastflow-engine"]["spec"]["template"]["spec"]
    assert engine_pod["serviceAccountName"] == "fastflow-engine"
    (engine,) = engine_pod["containers"]
    assert engine["args"] == ["runscheduler"]
    assert engine["livenessProbe"]["exec"]["command"] == ["fastflow", "healthcheck"]
    (config,) = by_kind(rendered, "ConfigMap").values()
    assert config["data"]["FASTFLOW_EXECUTOR"] == "kubernetes"
    migrate = by_kind(rendered, "Job")["fastflow-migrate"]["spec"]["template"]["spec"]
    assert migrate["containers"][0]["args"] == ["migrate", "--no-input"]
    assert "fastflow-web" in by_kind(rendered, "Service")
    for pod in (engine_pod, deployments["fastflow-web"]["spec"]["template"]["spec"], migrate):
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def _pod_settings(tmp_path: Path, pipelines: Path) -> PodSettings:
    return PodSettings(
        namespace="fastflow",
        scope="0123456789abcdef",
        image_template="registry.example.com/runner:python{python_version}",
        pull=True,
        user="65534:65534",
        service_account="fastflow-run",
        node_selector={"pool": "runs"},
        tolerations=[{"key": "runs", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=("registry",),
        pipelines_volume=("pvc", "fastflow-pipelines"),
        cache_volume=("pvc", "fastflow-uv-cache"),
        pipelines_root=pipelines,
        cache_root=tmp_path / "cache",
    )


def test_the_run_job_the_executor_sends_is_valid_against_the_schema(
    tmp_path, pipelines_dir, make_pipeline_dir
):
    folder = make_pipeline_dir("deps", requirements="six\n")
    prepared = tmp_path / "cache" / "kubernetes-envs" / "abc"
    prepared.mkdir(parents=True)
    spec: RunSpec = make_spec(
        folder, mem_hard_limit=512 * MIB, cpu_hard_limit=1.5, tmp_size=128 * MIB, timeout=60
    )
    pod = _pod_settings(tmp_path, pipelines_dir)
    for environment in (prepared, None):  # prepared (mounted at /venv) and cold
        manifest = job_manifest(spec, pod, prepared=environment)
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
    mounts = job_manifest(spec, pod, prepared=prepared)["spec"]["template"]["spec"]
    (container,) = mounts["containers"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {
        "/tmp": False,
        "/app": True,
        "/venv": True,
    }
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in mounts["volumes"]}
    assert claims["envs"] == {"claimName": "fastflow-uv-cache", "readOnly": True}
    assert container["volumeMounts"][2]["subPath"] == "kubernetes-envs/abc"


def test_with_git_sync_a_run_mounts_its_own_commits_checkout(tmp_path, settings):
    """The pipelines directory is a symlink to the current checkout; a run mounts the checkout
    of its own commit (a subPath of the volume holding both), whatever the symlink says now."""
    volume = tmp_path / "data"
    old, new = volume / "git/checkouts/aaa111", volume / "git/checkouts/bbb222"
    for checkout in (old, new):
        (checkout / "etl").mkdir(parents=True)
        (checkout / "etl" / "main.py").write_text("print('hi')\n")
    (volume / "pipelines").symlink_to("git/checkouts/bbb222")  # synced on since the run began
    pod = replace(_pod_settings(tmp_path, volume / "pipelines"), cache_volume=None)
    spec = make_spec(old / "etl")
    with pytest.raises(InfrastructureError, match="FASTFLOW_K8S_PIPELINES_VOLUME_PATH"):
        job_manifest(spec, pod, prepared=None)
    manifest = job_manifest(spec, replace(pod, pipelines_root=volume), prepared=None)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    app = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app")
    assert app == {
        "name": "pipelines",
        "mountPath": "/app",
        "subPath": "git/checkouts/aaa111/etl",
        "readOnly": True,
    }
