"""Shared test fixtures. Area-specific helpers live in tests/helpers_<area>.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from tests.helpers_browser import CHROMIUM_FLAGS

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Engines the tests start as subprocesses inherit this; the in-process settings are set below.
os.environ["FASTFLOW_RUNNER_PULL"] = "false"
# No warm pool unless a test asks for one (tests/test_docker_pool.py): the other Docker tests
# check the unpooled path and count their containers.
os.environ["FASTFLOW_DOCKER_POOL_SIZE"] = "0"
# One uv cache for the whole test session, so requirement installs are paid once.
SHARED_UV_CACHE = Path(os.environ.get("FASTFLOW_TEST_UV_CACHE", "/tmp/fastflow-test-uv-cache"))


# Modules whose outcome does not depend on the database: executors driven without the engine's
# database side, and browser tests of pages whose queries the other modules check on both
# databases. CI runs them once, on SQLite (`-m "not db_independent"` on PostgreSQL, .ci/run).
DB_INDEPENDENT_MODULES = frozenset(
    {
        "test_executor_docker",
        "test_docker_pool",
        "test_executor_local",
        "test_docker_host_paths",
        "test_run_isolation",
        "test_admin_live_log_browser",
        "test_api_docs_browser",
        "test_admin_console_browser",
        "test_executor_kubernetes",
        "test_kubernetes_outputs",
        "test_deploy_kubernetes",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in (
            DB_INDEPENDENT_MODULES
        ):
            item.add_marker(pytest.mark.db_independent)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """On SQLite the test database is a file, not shared memory: engine subprocesses (the
    multi-engine and crash tests) must open it too, and in-memory shared-cache locking ignores
    busy_timeout when engine threads write concurrently. One file per pytest process."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    test = db.setdefault("TEST", {})
    if db["ENGINE"] == "django.db.backends.sqlite3" and not test.get("NAME"):
        test["NAME"] = str(Path("/tmp") / f"fastflow-test-{os.getpid()}.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _test_run_settings() -> Iterator[None]:
    """What a test run needs that production must not do (the settings never sniff for tests).

    No image pulls: a missing runner image fails loudly instead of reaching out to a registry.
    The plain static files storage: pages render without `collectstatic`'s manifest.
    """
    storages = {
        **django_settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(
        FASTFLOW_RUNNER_PULL=False, FASTFLOW_DOCKER_POOL_SIZE=0, STORAGES=storages
    ):
        yield


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, settings) -> Path:
    """Every test gets its own data dir (logs, metrics) and pipelines dir."""
    data = tmp_path / "data"
    pipelines = tmp_path / "pipelines"
    data.mkdir()
    pipelines.mkdir()
    SHARED_UV_CACHE.mkdir(parents=True, exist_ok=True)
    settings.DATA_DIR = data
    settings.LOGS_DIR = data / "logs"
    settings.METRICS_DIR = data / "metrics"
    settings.PIPELINES_DIR = pipelines
    settings.FASTFLOW_GIT_DIR = data / "git"
    settings.FASTFLOW_UV_CACHE_DIR = SHARED_UV_CACHE
    # Its default is this machine's CPU count; pipeline.json fixtures ask for up to 4 cores.
    settings.FASTFLOW_RUN_CPU_MAX = 16.0
    return data


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Nothing cached (allauth's throttles use Django's cache) may leak between tests. Fast-Flow's
    own rate limits are database rows, rolled back with each test."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def pipelines_dir(settings) -> Path:
    return Path(settings.PIPELINES_DIR)


def write_pipeline(
    root: Path,
    name: str,
    main_py: str = "print('hello')\n",
    *,
    pipeline_json: dict | str | None = None,
    requirements: str | None = None,
) -> Path:
    """Create a pipeline folder; a str pipeline_json is written verbatim (for broken JSON)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main_py)
    if pipeline_json is not None:
        text = pipeline_json if isinstance(pipeline_json, str) else json.dumps(pipeline_json)
        (folder / "pipeline.json").write_text(text)
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


@pytest.fixture
def make_pipeline_dir(pipelines_dir: Path):
    def make(name: str, main_py: str = "print('hello')\n", **kwargs) -> Path:
        return write_pipeline(pipelines_dir, name, main_py, **kwargs)

    return make


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Docker tests run for real. In CI a missing engine fails; locally it skips with a reason."""
    if docker_engine_available():
        return
    if IN_CI:
        pytest.fail("CI=true but no Docker engine is reachable (scripts/start-docker.sh failed?)")
    pytest.skip("no Docker engine reachable on this machine (run scripts/start-docker.sh)")


@pytest.fixture
def docker_env(docker_engine, settings) -> dict[str, str]:
    """What an engine subprocess with the docker executor needs: the offline runner image."""
    from tests.helpers_executor import use_runner_image

    use_runner_image(settings)
    return {
        "FASTFLOW_RUNNER_IMAGE": settings.FASTFLOW_RUNNER_IMAGE,
        "FASTFLOW_RUNNER_NETWORK": "none",
        "FASTFLOW_CANCEL_GRACE_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[object]:
    """moto's S3 server on 127.0.0.1 (a subprocess), for the whole session."""
    from tests.helpers_object_store import s3_server_start

    server = s3_server_start(tmp_path_factory.mktemp("s3") / "moto.out")
    yield server
    server.stop()


@pytest.fixture
def object_store(s3_server, settings, monkeypatch) -> object:
    """FASTFLOW_RUN_STORAGE=s3 with a fresh bucket: in this process's settings (read through
    the real settings code) and in the environment engine subprocesses inherit."""
    from fastflow_site import settings as site_settings
    from tests.helpers_object_store import ObjectStore, new_bucket, object_store_env

    bucket = new_bucket(s3_server)
    env = object_store_env(s3_server, bucket)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.FASTFLOW_RUN_STORAGE = "s3"
    settings.FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS = 0.2
    settings.STORAGES = {
        **settings.STORAGES,
        settings.RUN_OUTPUT_STORAGE: site_settings._s3_storage(),
    }
    return ObjectStore(server=s3_server, bucket=bucket, env=env)


def _browser_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """A headless Chromium (selenium). In CI a missing browser fails; locally it skips."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        paths = None
    else:
        paths = _browser_paths()
    if paths is None:
        reason = "needs selenium, chromium and chromium-driver (apt-get install chromium-driver)"
        if IN_CI:
            pytest.fail(f"CI=true but the browser test cannot run: it {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # The page's console (script errors, resources that failed to load), for driver.get_log.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def k8s_cluster(docker_engine, settings, tmp_path: Path, pipelines_dir: Path):
    """The Kubernetes API server of tests/helpers_k8s.py, its kubelet on the Docker engine."""
    from tests.helpers_k8s import serve_fake_cluster

    yield from serve_fake_cluster(settings, tmp_path, pipelines_dir)
