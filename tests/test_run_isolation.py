"""No run can change what another pipeline's run imports or executes (the shared uv cache).

The attack (issue 8, item 1): a pipeline without secrets plants a `.pth` file and edits a module
wherever it finds the packages another pipeline's runs import; that pipeline's next run executes
the planted code and prints its secret. Here the attacker even has the very same requirements
as the victim, so it is handed the same prepared environment, and it tries every path it can
see. With Docker nothing it writes outlives its container; the local executor cannot stop a
determined process of the same user (docs/security.md), only accidents.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from runs_app.engine.executors import get_executor
from runs_app.engine.uvcache import envs_dir, uv_cache_dir
from runs_app.engine.warmup import warm_cache
from tests.helpers_executor import (
    HOST_CA_BUNDLE,
    make_spec,
    run_to_end,
    use_runner_image,
    user_lines,
)

REQUIREMENT = "tomli-w==1.0.0\n"
SECRET = "victim-api-key-7c1e9d"

# Walks everything it can see (but /proc, /sys, /dev and its own /tmp) for the victim's package
# and for site-packages directories, and plants code in each place it can write.
ATTACKER = """\
import os
PLANT = ("import sys; sys.stdout.write('PWNED ' + "
         "__import__('os').environ.get('API_KEY', '') + chr(10))")
planted, refused = 0, 0
for root, dirs, files in os.walk('/', topdown=True):
    if root.startswith(('/proc', '/sys', '/dev', '/tmp')):
        dirs[:] = []
        continue
    targets = []
    if root.endswith('site-packages'):
        targets.append((os.path.join(root, 'zz_fastflow_evil.pth'), PLANT + chr(10)))
    if os.path.basename(root) == 'tomli_w' and '__init__.py' in files:
        targets.append((os.path.join(root, '__init__.py'), PLANT + chr(10)))
    for path, text in targets:
        try:
            with open(path, 'a') as fh:
                fh.write(text)
            planted += 1
        except OSError:
            refused += 1
print('planted', planted, 'refused', refused)
"""
VICTIM = "import tomli_w\nprint(tomli_w.dumps({'safe': True}).strip())\n"


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def docker_executor(docker_engine, settings):
    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_CA_BUNDLE = HOST_CA_BUNDLE if Path(HOST_CA_BUNDLE).is_file() else ""
    recorded = Path("/run/fastflow-runner-network")  # written by scripts/start-docker.sh
    settings.FASTFLOW_RUNNER_NETWORK = (
        recorded.read_text().strip() if recorded.is_file() else "bridge"
    )
    return get_executor("docker")


@pytest.mark.docker
def test_a_docker_run_cannot_plant_code_in_what_another_pipelines_runs_import(
    docker_executor, settings, make_pipeline_dir
):
    victim = make_pipeline_dir("victim", VICTIM, requirements=REQUIREMENT)
    attacker = make_pipeline_dir("attacker", ATTACKER, requirements=REQUIREMENT)
    for folder in (victim, attacker):
        result = warm_cache(
            pipeline_name=folder.name,
            pipeline_dir=folder,
            python_version="3.11",
            executor=docker_executor,
        )
        assert result.ok, result.message
    envs = envs_dir("docker")
    cache = uv_cache_dir("docker")
    before = (tree_digest(envs), tree_digest(cache))

    attack = make_spec(attacker)
    assert run_to_end(docker_executor, attack).succeeded, attack.log_file.read_text()
    [report] = user_lines(attack)
    assert report.startswith("planted 0 refused "), report
    assert int(report.split()[-1]) > 0  # it did find the victim's package, read-only

    settings.FASTFLOW_RUNNER_NETWORK = "none"  # the victim runs from its prepared environment
    run = make_spec(victim, env={"API_KEY": SECRET}, mask_values=(SECRET,))
    outcome = run_to_end(docker_executor, run)
    assert outcome.succeeded, run.log_file.read_text()
    assert user_lines(run) == ["safe = true"]
    assert "PWNED" not in run.log_file.read_text()
    assert (tree_digest(envs), tree_digest(cache)) == before  # nothing a run wrote remains


def test_a_local_run_never_writes_the_shared_cache_and_its_environment_refuses_accidents(
    settings, make_pipeline_dir, tmp_path
):
    """The local executor isolates nothing from a determined pipeline (same user: it could
    add the write bits back); what it does guarantee: runs use the shared cache not at all, and
    the prepared environment is read-only against accidents (`pip install` at run time)."""
    settings.FASTFLOW_RUNNER_CA_BUNDLE = HOST_CA_BUNDLE if Path(HOST_CA_BUNDLE).is_file() else ""
    settings.FASTFLOW_UV_CACHE_DIR = tmp_path / "uv-cache"  # nothing prepared yet
    executor = get_executor("local")
    folder = make_pipeline_dir(
        "careless",
        "import os, sysconfig\n"
        "target = os.path.join(sysconfig.get_paths()['purelib'], 'added_at_run_time.py')\n"
        "try:\n    open(target, 'w').write('x = 1')\n    print('written')\n"
        "except PermissionError:\n    print('refused')\n"
        "print(os.environ['UV_CACHE_DIR'].startswith(os.environ['HOME']))\n",
        requirements=REQUIREMENT,
    )
    cold = make_spec(folder)  # not prepared yet: installs for itself, in its own home
    cache = uv_cache_dir("local")
    before = tree_digest(cache)
    assert run_to_end(executor, cold).succeeded, cold.log_file.read_text()
    assert tree_digest(cache) == before
    assert user_lines(cold)[-1] == "True"
    assert any(
        "installing them for this run only" in x for x in cold.log_file.read_text().splitlines()
    )

    result = warm_cache(
        pipeline_name="careless", pipeline_dir=folder, python_version="3.11", executor=executor
    )
    assert result.ok, result.message
    [env] = [p for p in envs_dir("local").iterdir() if ".build-" not in p.name]
    assert not any(p.stat().st_mode & 0o222 for p in env.rglob("*") if not p.is_symlink())
    warm = make_spec(folder)
    assert run_to_end(executor, warm).succeeded, warm.log_file.read_text()
    # Permission bits stop an engine user's accident; root ignores them (as documented).
    assert user_lines(warm) == ["written" if os.geteuid() == 0 else "refused", "True"]


@pytest.mark.docker
def test_a_cold_docker_run_imports_compiled_packages_from_its_own_cache(
    docker_executor, settings, make_pipeline_dir, tmp_path
):
    """Before the warm-up, a run installs its requirements into a cache in its /tmp. A tmpfs
    is noexec by default, where a compiled module cannot be loaded ("failed to map segment
    from shared object"): a cold run's /tmp allows it; a prepared run's stays noexec."""
    settings.FASTFLOW_UV_CACHE_DIR = tmp_path / "uv-cache"  # nothing prepared yet
    folder = make_pipeline_dir(
        "compiled",
        "from markupsafe import _speedups\n"
        "print('compiled', _speedups.__file__.endswith('.so'))\n"
        "print([line.split()[3] for line in open('/proc/mounts') if line.split()[1] == '/tmp'])\n",
        requirements="markupsafe==3.0.2\n",
    )
    cold = make_spec(folder)
    assert run_to_end(docker_executor, cold).succeeded, cold.log_file.read_text()
    assert user_lines(cold)[-2] == "compiled True"
    assert "noexec" not in user_lines(cold)[-1]

    result = warm_cache(
        pipeline_name="compiled",
        pipeline_dir=folder,
        python_version="3.11",
        executor=docker_executor,
    )
    assert result.ok, result.message
    warm = make_spec(folder)
    assert run_to_end(docker_executor, warm).succeeded, warm.log_file.read_text()
    assert user_lines(warm)[0] == "compiled True"
    assert "noexec" in user_lines(warm)[1]
