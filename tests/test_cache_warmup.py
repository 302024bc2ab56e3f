"""Cache warm-up: requirements resolved and installed once, then used by the next run."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs_app.engine.executors import get_executor
from runs_app.engine.warmup import warm_cache
from tests.helpers_executor import (
    HOST_CA_BUNDLE,
    make_spec,
    run_to_end,
    use_runner_image,
    user_lines,
)

REQUIREMENT = "tomli-w==1.0.0\n"
USES_IT = "import tomli_w\nprint(tomli_w.dumps({'answer': 42}).strip())\n"
UNRESOLVABLE = "fastflow-no-such-package-d1x9==1.0\n"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def executor(request, settings):
    settings.FASTFLOW_EXECUTOR = request.param
    # The package index may sit behind a TLS-intercepting proxy: trust the host's CA bundle.
    settings.FASTFLOW_RUNNER_CA_BUNDLE = HOST_CA_BUNDLE if Path(HOST_CA_BUNDLE).is_file() else ""
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
        use_runner_image(settings)
        settings.FASTFLOW_RUNNER_NETWORK = _network()
    return get_executor()


def _network() -> str:
    recorded = Path("/run/fastflow-runner-network")  # written by scripts/start-docker.sh
    return recorded.read_text().strip() if recorded.is_file() else "bridge"


def test_a_pipeline_without_requirements_needs_no_warm_up(make_pipeline_dir):
    folder = make_pipeline_dir("plain")
    result = warm_cache(
        pipeline_name="plain", pipeline_dir=folder, python_version="3.11", executor=None
    )
    assert result.ok and result.duration == 0.0
    assert result.message == "no requirements.txt: nothing to warm up"


def test_a_warm_run_uses_the_requirements_from_the_cache(executor, settings, make_pipeline_dir):
    folder = make_pipeline_dir("with_reqs", USES_IT, requirements=REQUIREMENT)
    before = snapshot(folder)
    result = warm_cache(
        pipeline_name="with_reqs", pipeline_dir=folder, python_version="3.11", executor=executor
    )
    assert result.ok, result.message
    assert result.duration > 0
    assert snapshot(folder) == before  # nothing written into the pipeline folder

    # Offline (and without a network in Docker): the packages can only come from the cache.
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    spec = make_spec(folder, env={"UV_OFFLINE": "1"})
    assert spec.has_requirements
    outcome = run_to_end(executor, spec)
    assert outcome.succeeded, spec.log_file.read_text()
    assert "answer = 42" in user_lines(spec)
    assert outcome.setup_duration is not None and outcome.setup_duration > 0


def test_an_unresolvable_requirement_fails_the_warm_up_clearly(executor, make_pipeline_dir):
    folder = make_pipeline_dir("bad_reqs", USES_IT, requirements=UNRESOLVABLE)
    before = snapshot(folder)
    result = warm_cache(
        pipeline_name="bad_reqs", pipeline_dir=folder, python_version="3.11", executor=executor
    )
    assert not result.ok
    assert result.message.startswith("resolving requirements (uv pip compile) failed")
    assert "fastflow-no-such-package-d1x9" in result.message
    assert snapshot(folder) == before


def test_a_missing_runner_image_fails_the_warm_up(docker_engine, settings, make_pipeline_dir):
    settings.FASTFLOW_RUNNER_IMAGE = "fastflow-runner:does-not-exist-{python_version}"
    folder = make_pipeline_dir("no_image", USES_IT, requirements=REQUIREMENT)
    result = warm_cache(
        pipeline_name="no_image",
        pipeline_dir=folder,
        python_version="3.11",
        executor=get_executor("docker"),
    )
    assert not result.ok
    assert "fastflow-runner:does-not-exist-3.11 not found" in result.message
