"""An engine in a container: the bind mounts of a run use the Docker host's paths.

The whole chain (the image's engine container with a named data volume and a bind-mounted
pipelines folder, driving the host's Docker through its socket) runs in
scripts/smoke-image.sh; here each piece runs against the real Docker engine.
"""

from __future__ import annotations

import os
import uuid

import docker
import pytest

from runs_app.engine.base import InfrastructureError
from runs_app.engine.executors import get_executor
from runs_app.engine.hostpaths import HostPaths, container_id_from_mountinfo, mounts_of
from tests.conftest import write_pipeline
from tests.helpers_executor import TEST_IMAGE, make_spec, run_to_end, use_runner_image, user_lines
from tests.helpers_settings import config_error, run_django

pytestmark = pytest.mark.docker


@pytest.fixture
def client(docker_engine, settings) -> docker.DockerClient:
    use_runner_image(settings)
    return docker.from_env(version="auto")


@pytest.fixture
def engine_like_container(client, tmp_path):
    """A container mounted the way compose.yaml mounts the engine: a named volume for the data
    dir, the pipelines folder bind-mounted read-only, a tmpfs."""
    pipelines = tmp_path / "checkout"
    pipelines.mkdir()
    volume = client.volumes.create(f"fastflow-test-data-{uuid.uuid4().hex[:8]}")
    container = client.containers.create(
        TEST_IMAGE.format(python_version="3.11"),
        ["sleep", "60"],
        volumes={
            volume.name: {"bind": "/data", "mode": "rw"},
            str(pipelines): {"bind": "/pipelines", "mode": "ro"},
        },
        tmpfs={"/tmp": ""},
        network_mode="none",
    )
    try:
        yield container, volume, pipelines
    finally:
        container.remove(force=True)
        volume.remove(force=True)


def inspector():
    return get_executor("docker").inspect_container


def in_that_container(container) -> HostPaths:
    return HostPaths(inspector(), container_id=lambda: container.id)


def test_a_containerised_engine_maps_its_mounts_to_the_hosts_paths(client, engine_like_container):
    container, volume, pipelines = engine_like_container
    paths = in_that_container(container)

    assert paths.source("/pipelines/etl") == str(pipelines / "etl")
    assert paths.source("/pipelines") == str(pipelines)
    mountpoint = client.api.inspect_volume(volume.name)["Mountpoint"]
    assert paths.source("/data/uv-cache/docker") == f"{mountpoint}/uv-cache/docker"


def test_a_path_on_none_of_its_mounts_is_refused_with_what_to_do(client, engine_like_container):
    container, _, _ = engine_like_container
    paths = in_that_container(container)

    for private in ("/tmp/uv-cache", "/app/pipelines/etl"):
        with pytest.raises(InfrastructureError) as refused:
            paths.source(private)
        assert "exists only inside the engine's container" in str(refused.value)
        assert "FASTFLOW_DOCKER_PATH_MAP" in str(refused.value)


def test_an_engine_container_the_daemon_does_not_know_asks_for_the_path_map(client):
    paths = HostPaths(inspector(), container_id=lambda: "f" * 64)
    with pytest.raises(InfrastructureError, match="set FASTFLOW_DOCKER_PATH_MAP"):
        paths.source("/data/uv-cache")


def test_the_engine_finds_its_own_container_id_in_mountinfo(client):
    container = client.containers.run(
        TEST_IMAGE.format(python_version="3.11"),
        ["sleep", "30"],
        detach=True,
        network_mode="none",
        hostname="renamed-engine",  # the host name does not tell the id
    )
    try:
        code, output = container.exec_run(["cat", "/proc/self/mountinfo"])
        assert code == 0
        assert container_id_from_mountinfo(output.decode()) == container.id
    finally:
        container.remove(force=True)


def test_without_a_container_and_a_map_paths_stay_as_they_are(client, tmp_path):
    paths = HostPaths(inspector(), container_id=lambda: "")

    assert paths.source(tmp_path / "p") == str(tmp_path / "p")


def test_runs_and_warm_ups_mount_the_host_side_of_mapped_folders(settings, client, tmp_path):
    """FASTFLOW_DOCKER_PATH_MAP: the engine reads its own view, containers get the host's: the
    pipeline folder for a run, the shared uv cache for a warm-up (runs never mount it)."""
    settings.FASTFLOW_EXECUTOR = "docker"
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    engine_view, host_view = tmp_path / "engine", tmp_path / "host"
    write_pipeline(engine_view / "pipelines", "etl", "print('the engine side')\n")
    write_pipeline(host_view / "pipelines", "etl", "print('the host side')\n")
    # The cache lives on the same storage for both sides in real life: created by the engine.
    host_cache = host_view / "data" / "uv-cache" / "docker"
    host_cache.mkdir(parents=True)
    os.chmod(host_cache, 0o777)  # noqa: S103 - the runner uid of warm-ups writes the cache
    # The environments' directory is one storage seen from both sides (a build is renamed by
    # the engine after the warm-up container filled it): here, a symlink.
    (host_view / "data" / "uv-cache" / "docker-envs").mkdir()
    (engine_view / "data" / "uv-cache").mkdir(parents=True)
    (engine_view / "data" / "uv-cache" / "docker-envs").symlink_to(
        host_view / "data" / "uv-cache" / "docker-envs"
    )
    settings.FASTFLOW_UV_CACHE_DIR = engine_view / "data" / "uv-cache"
    settings.FASTFLOW_DOCKER_PATH_MAP = (
        (str(engine_view / "pipelines"), str(host_view / "pipelines")),
        (str(engine_view / "data"), str(host_view / "data")),
    )
    executor = get_executor()
    spec = make_spec(engine_view / "pipelines" / "etl")

    outcome = run_to_end(executor, spec)

    assert outcome.succeeded, (outcome, user_lines(spec))
    assert user_lines(spec) == ["the host side"]
    assert not any(host_cache.iterdir()), "a run wrote into the shared cache"

    for side in (engine_view, host_view):  # nothing to download: no network needed
        (side / "pipelines" / "etl" / "requirements.txt").write_text("# nothing yet\n")
    failure = executor.warm(
        pipeline_name="etl",
        pipeline_dir=engine_view / "pipelines" / "etl",
        python_version=spec.python_version,
        timeout=120,
    )
    assert failure == ""
    assert any(host_cache.iterdir()), "the warm-up wrote nothing into the host side of the cache"


def test_a_malformed_path_map_names_the_variable(tmp_path):
    result = run_django(tmp_path, FASTFLOW_DOCKER_PATH_MAP="/data:/srv/data")

    assert result.returncode != 0
    assert config_error(result) == (
        "FASTFLOW_DOCKER_PATH_MAP: '/data:/srv/data' is not "
        "'<absolute engine path>=<absolute host path>'"
    )


def test_the_path_map_is_parsed_longest_prefix_first(tmp_path):
    result = run_django(
        tmp_path,
        "print(settings.FASTFLOW_DOCKER_PATH_MAP)",
        FASTFLOW_DOCKER_PATH_MAP=" /data=/srv/d , /data/uv-cache=/fast/cache/",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(('/data/uv-cache', '/fast/cache'), ('/data', '/srv/d'))"


def test_mounts_of_ignores_tmpfs_and_anonymous_entries():
    attrs = {
        "Mounts": [
            {"Type": "bind", "Source": "/srv/p/", "Destination": "/pipelines"},
            {"Type": "tmpfs", "Destination": "/tmp"},
            {"Type": "volume", "Source": "/var/lib/docker/volumes/d/_data", "Destination": "/data"},
            {"Type": "bind", "Source": "/srv/data-cache", "Destination": "/data/uv-cache"},
        ]
    }

    assert mounts_of(attrs) == (
        ("/data/uv-cache", "/srv/data-cache"),
        ("/pipelines", "/srv/p"),
        ("/data", "/var/lib/docker/volumes/d/_data"),
    )


def test_two_containerised_installations_label_their_runs_apart(
    client, engine_like_container, settings, tmp_path
):
    """Both engines see their data dir as /data; the scope label comes from the host side, so
    one never lists (or reconciles away) the other's run containers."""
    container, _, _ = engine_like_container
    other_volume = client.volumes.create(f"fastflow-test-data-{uuid.uuid4().hex[:8]}")
    other = client.containers.create(
        TEST_IMAGE.format(python_version="3.11"),
        ["sleep", "60"],
        volumes={other_volume.name: {"bind": "/data", "mode": "rw"}},
        network_mode="none",
    )
    try:
        settings.DATA_DIR = "/data"
        first, second = get_executor("docker"), get_executor("docker")
        first.host_paths = in_that_container(container)
        second.host_paths = in_that_container(other)

        assert first.scope() != second.scope()
    finally:
        other.remove(force=True)
        other_volume.remove(force=True)
