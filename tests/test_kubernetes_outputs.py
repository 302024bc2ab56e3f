"""Main's executor contract on the Kubernetes executor: the run's output directory (route file,
executed notebook) on FASTFLOW_K8S_OUTPUT_VOLUME, notebook runs, and extra requirements in
cold runs and warm-up Jobs (against the API server of `helpers_k8s.py`, pods on Docker)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from runs_app.engine.base import InfrastructureError
from runs_app.engine.executors import get_executor
from runs_app.engine.outputs import output_dir_for
from tests.helpers_executor import make_spec, run_to_end, user_lines

pytestmark = pytest.mark.docker

ROUTE = (
    "import os\npath = os.environ['FASTFLOW_ROUTE_FILE']\nprint(path)\n"
    "open(path, 'w').write('left')\n"
)
IMPORTS_TINY = "import tiny\nprint('tiny says', tiny.HELLO)\n"


def write_wheel(folder: Path) -> str:
    """A pure-Python wheel in the pipeline folder, so installing it needs no package index."""
    name = "tiny-0.1-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as wheel:
        wheel.writestr("tiny/__init__.py", "HELLO = 'hi'\n")
        wheel.writestr(
            "tiny-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 0.1\n"
        )
        wheel.writestr(
            "tiny-0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("tiny-0.1.dist-info/RECORD", "")
    return f"/app/{name}"


def test_a_run_writes_its_route_file_into_its_output_directory(
    k8s_cluster, settings, make_pipeline_dir
):
    executor = get_executor()
    run_id = "5b1f6d1e-0000-4000-8000-000000000001"
    spec = make_spec(
        make_pipeline_dir("routed", ROUTE), run_id=run_id, output_dir=output_dir_for(run_id)
    )

    outcome = run_to_end(executor, spec)

    assert outcome.succeeded, outcome.error
    assert user_lines(spec) == ["/fastflow/route"]
    assert (spec.output_dir / "route").read_text() == "left"
    (job,) = k8s_cluster.created_jobs
    pod = job["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/fastflow"]
    assert mount == {
        "name": "outputs",
        "mountPath": "/fastflow",
        "subPath": f"run-outputs/{spec.run_id}",
    }
    (volume,) = [v for v in pod["volumes"] if v["name"] == "outputs"]
    assert volume == {
        "name": "outputs",
        "hostPath": {"path": str(settings.DATA_DIR), "type": "Directory"},
    }


def test_the_output_volume_as_a_claim_is_mounted_writable(k8s_cluster, settings, make_pipeline_dir):
    settings.FASTFLOW_K8S_OUTPUT_VOLUME = ("pvc", "fastflow-data")
    settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = 1
    k8s_cluster.behaviour = "unschedulable"  # the test is about what was sent
    spec = make_spec(make_pipeline_dir("claimed"), output_dir=output_dir_for("claimed-run"))
    outcome = run_to_end(get_executor(), spec)
    assert not outcome.succeeded
    (job,) = k8s_cluster.created_jobs
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "outputs"]
    assert volume["persistentVolumeClaim"] == {"claimName": "fastflow-data", "readOnly": False}


def test_without_an_output_volume_a_run_fails_to_start_naming_the_setting(
    k8s_cluster, settings, make_pipeline_dir
):
    settings.FASTFLOW_K8S_OUTPUT_VOLUME = None
    spec = make_spec(make_pipeline_dir("lost"), output_dir=output_dir_for("lost-run"))
    with pytest.raises(InfrastructureError, match="FASTFLOW_K8S_OUTPUT_VOLUME is not set"):
        get_executor().start(spec)
    assert k8s_cluster.created_jobs == []
    # A run without an output directory (an executor used directly) needs no such volume.
    assert run_to_end(get_executor(), make_spec(spec.pipeline_dir)).succeeded


def test_a_notebook_run_starts_the_notebook_runner_writing_to_fastflow(
    k8s_cluster, settings, make_pipeline_dir
):
    settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = 1
    k8s_cluster.behaviour = "unschedulable"
    spec = make_spec(
        make_pipeline_dir("nb"),
        notebook=True,
        extra_requirements=("nbclient>=0.10,<1", "ipykernel>=6.29,<8"),
        output_dir=output_dir_for("nb-run"),
    )
    run_to_end(get_executor(), spec)
    (job,) = k8s_cluster.created_jobs
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:5] == ["uv", "run", "--no-project", "--python", spec.python_version]
    assert args[args.index("nbclient>=0.10,<1") - 1] == "--with"
    assert args[args.index("ipykernel>=6.29,<8") - 1] == "--with"
    assert "--with-requirements" not in args  # the folder has no requirements.txt
    config = json.loads(args[-1])
    assert config["notebook"] == "/app/main.ipynb"
    assert config["output"] == "/fastflow/main.ipynb"


def test_extra_requirements_install_cold_and_the_warm_up_prepares_them(
    k8s_cluster, settings, make_pipeline_dir, tmp_path
):
    """A folder without requirements.txt whose runs need an extra package: a cold run installs
    it with --with; the warm-up (two Jobs: no requirements to resolve) prepares it and a run
    then uses the prepared environment."""
    folder = make_pipeline_dir("extra", IMPORTS_TINY)
    extra = (write_wheel(folder),)
    settings.FASTFLOW_UV_CACHE_DIR = tmp_path / "uv-cache"
    settings.FASTFLOW_K8S_CACHE_VOLUME = ("host", str(settings.FASTFLOW_UV_CACHE_DIR))
    executor = get_executor()

    cold = make_spec(folder, extra_requirements=extra)
    outcome = run_to_end(executor, cold)
    assert outcome.succeeded, user_lines(cold)
    assert "tiny says hi" in user_lines(cold)
    assert k8s_cluster.created_jobs[-1]["metadata"]["labels"]["fastflow.env"] == "cold"

    message = executor.warm(
        pipeline_name="extra",
        pipeline_dir=folder,
        python_version=cold.python_version,
        timeout=120,
        extra_requirements=extra,
    )
    assert message == ""
    jobs = k8s_cluster.created_jobs
    warm_jobs = [j for j in jobs if "fastflow.warmup" in j["metadata"]["labels"]]
    assert len(warm_jobs) == 2
    install = warm_jobs[-1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert extra[0] in install
    assert executor.prepared_env(cold) is not None
    # The key holds the extra requirements: the same folder without them is not prepared.
    assert executor.prepared_env(make_spec(folder)) is None

    warm = make_spec(folder, extra_requirements=extra)
    outcome = run_to_end(executor, warm)
    assert outcome.succeeded, outcome.error
    assert user_lines(warm) == ["tiny says hi"]
    assert k8s_cluster.created_jobs[-1]["metadata"]["labels"]["fastflow.env"] == "prepared"
