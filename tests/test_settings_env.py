"""Settings come from the environment: safe defaults, and a bad value names its variable.

Each case starts Django in a fresh interpreter, because settings are read once at import.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers_settings import (
    PROJECT_DIR,
    clean_env,
    config_error,
    manage,
    production_env,
    run_django,
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"FASTFLOW_MAX_CONCURRENT_RUNS": "abc"},
            "FASTFLOW_MAX_CONCURRENT_RUNS: invalid value 'abc'",
        ),
        ({"FASTFLOW_MAX_CONCURRENT_RUNS": "0"}, "FASTFLOW_MAX_CONCURRENT_RUNS: must be >= 1"),
        (
            {"FASTFLOW_CANCEL_GRACE_SECONDS": "2s"},
            "FASTFLOW_CANCEL_GRACE_SECONDS: expected a number",
        ),
        (
            {"FASTFLOW_CANCEL_GRACE_SECONDS": "inf"},
            "FASTFLOW_CANCEL_GRACE_SECONDS: expected a finite",
        ),
        ({"DEBUG": "maybe"}, "DEBUG: expected a boolean"),
        ({"FASTFLOW_SECURE_COOKIES": "perhaps"}, "FASTFLOW_SECURE_COOKIES: expected a boolean"),
        ({"DATABASE_URL": "nonsense://"}, "DATABASE_URL: unsupported or malformed URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL: unsupported or malformed URL"),
        ({"DATABASE_URL": "mysql://u:p@db/fastflow"}, "DATABASE_URL: unsupported or malformed URL"),
        ({"DATABASE_URL": "postgres://"}, "DATABASE_URL: the URL names no database"),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL: the URL names no database"),
        (
            {"FASTFLOW_EXECUTOR": "k8s"},
            "FASTFLOW_EXECUTOR: must be one of docker, local, kubernetes",
        ),
        ({"FASTFLOW_K8S_NAMESPACE": "Runs_Here"}, "FASTFLOW_K8S_NAMESPACE: 'Runs_Here' is not a"),
        ({"FASTFLOW_K8S_NODE_SELECTOR": "pool"}, "FASTFLOW_K8S_NODE_SELECTOR: 'pool' is not"),
        ({"FASTFLOW_K8S_TOLERATIONS": "[oops"}, "FASTFLOW_K8S_TOLERATIONS: not valid JSON"),
        ({"FASTFLOW_K8S_TOLERATIONS": '{"key": "a"}'}, "FASTFLOW_K8S_TOLERATIONS: expected a JSON"),
        ({"FASTFLOW_K8S_IMAGE_PULL_SECRETS": "ok,No_Way"}, "FASTFLOW_K8S_IMAGE_PULL_SECRETS: 'No_"),
        (
            {"FASTFLOW_K8S_PIPELINES_VOLUME": "nfs:/x"},
            "FASTFLOW_K8S_PIPELINES_VOLUME: expected pvc",
        ),
        ({"FASTFLOW_K8S_CACHE_VOLUME": "host:relative"}, "FASTFLOW_K8S_CACHE_VOLUME: expected pvc"),
        (
            {"FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS": "0"},
            "FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS: must be >= 1",
        ),
        ({"DEBUG": "false"}, "SECRET_KEY: required when DEBUG is off"),
        (
            {"DEBUG": "false", "SECRET_KEY": "x" * 50},
            "FASTFLOW_ENCRYPTION_KEY: required when DEBUG is off",
        ),
        ({"FASTFLOW_ENCRYPTION_KEY": "abc"}, "FASTFLOW_ENCRYPTION_KEY: every comma-separated key"),
        (
            {"FASTFLOW_DB_POOL_MIN_SIZE": "8", "FASTFLOW_DB_POOL_MAX_SIZE": "4"},
            "FASTFLOW_DB_POOL_MAX_SIZE: must be >= FASTFLOW_DB_POOL_MIN_SIZE (8), got 4",
        ),
        ({"FASTFLOW_DB_POOL": "sometimes"}, "FASTFLOW_DB_POOL: expected a boolean"),
        ({"FASTFLOW_DISPATCH_POLL_SECONDS": "0"}, "FASTFLOW_DISPATCH_POLL_SECONDS: must be >="),
        (
            {"FASTFLOW_RUNNER_NETWORK": "container:db"},
            "FASTFLOW_RUNNER_NETWORK: 'container:db' is not a Docker network name",
        ),
        (
            {"FASTFLOW_RUNNER_NETWORKS_ALLOWED": "none, bad name"},
            "FASTFLOW_RUNNER_NETWORKS_ALLOWED: 'bad name' is not a Docker network name",
        ),
        (
            {"FASTFLOW_WARMUP_NETWORK": "-x"},
            "FASTFLOW_WARMUP_NETWORK: '-x' is not a Docker network name",
        ),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_a_malformed_value_names_the_variable(tmp_path, env, expected):
    result = run_django(tmp_path, **env)
    assert result.returncode != 0
    assert config_error(result).startswith(expected), result.stderr[-2000:]


def test_manage_py_check_reports_the_variable_too(tmp_path):
    result = manage(tmp_path, "check", FASTFLOW_MAX_CONCURRENT_RUNS="lots")
    assert result.returncode != 0
    assert config_error(result).startswith("FASTFLOW_MAX_CONCURRENT_RUNS: invalid value 'lots'")


def test_a_complete_production_environment_passes_the_checks(tmp_path):
    result = manage(tmp_path, "check", **production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_defaults_put_everything_in_the_data_dir(tmp_path):
    result = run_django(
        tmp_path,
        "print(settings.DATABASES['default']['ENGINE'])\n"
        "print(settings.DATABASES['default']['NAME'])\n"
        "print(settings.DATA_DIR)\n"
        "print(settings.PIPELINES_DIR)\n"
        "print(settings.DEBUG, settings.USE_TZ, settings.TIME_ZONE)\n",
    )
    assert result.returncode == 0, result.stderr
    engine, name, data_dir, pipelines_dir, flags = result.stdout.splitlines()
    assert engine == "django.db.backends.sqlite3"
    assert Path(name) == tmp_path / "data" / "fastflow.db"
    assert Path(data_dir) == tmp_path / "data"
    assert Path(pipelines_dir) == tmp_path / "pipelines"
    assert flags == "True True UTC"


def test_a_postgres_url_configures_postgres(tmp_path):
    result = run_django(
        tmp_path,
        "d = settings.DATABASES['default']\n"
        "print(d['ENGINE'], d['NAME'], d['USER'], d['HOST'], d['PORT'])\n",
        DATABASE_URL="postgres://ff:pw@db.internal:5433/fastflow",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "fastflow",
        "ff",
        "db.internal",
        "5433",
    ]


def test_postgres_connections_come_from_a_pool_and_sqlite_ones_persist(tmp_path):
    script = (
        "d = settings.DATABASES['default']\n"
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d['OPTIONS'].get('pool'))\n"
    )
    postgres = "postgres://ff:pw@db.internal:5433/fastflow"

    pooled = run_django(tmp_path, script, DATABASE_URL=postgres, FASTFLOW_DB_POOL_MAX_SIZE="30")
    unpooled = run_django(tmp_path, script, DATABASE_URL=postgres, FASTFLOW_DB_POOL="false")
    sqlite = run_django(tmp_path, script, FASTFLOW_DB_CONN_MAX_AGE="120")

    for result in (pooled, unpooled, sqlite):
        assert result.returncode == 0, result.stderr
    assert pooled.stdout.strip() == (
        "0 True {'min_size': 2, 'max_size': 30, 'timeout': 5.0, 'reconnect_timeout': 10.0}"
    )
    assert unpooled.stdout.strip() == "600 True None"
    assert sqlite.stdout.strip() == "120 True None"


def test_the_development_secret_key_is_generated_once_and_kept(tmp_path):
    show = "print(settings.SECRET_KEY)"
    first = run_django(tmp_path, show)
    second = run_django(tmp_path, show)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) >= 50
    assert second.stdout == first.stdout
    assert (tmp_path / "data" / "secret_key").read_text().strip() == first.stdout.strip()


def test_explicit_values_win_over_defaults(tmp_path):
    result = run_django(
        tmp_path,
        "print(settings.SECRET_KEY == 'from-env-' + 'x' * 50)\n"
        "print(settings.ALLOWED_HOSTS)\n"
        "print(settings.FASTFLOW_MAX_CONCURRENT_RUNS, settings.FASTFLOW_EXECUTOR)\n",
        **production_env(
            SECRET_KEY="from-env-" + "x" * 50,
            ALLOWED_HOSTS="flow.example.com,10.0.0.5",
            FASTFLOW_MAX_CONCURRENT_RUNS="3",
            FASTFLOW_EXECUTOR="LOCAL",
        ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True",
        "['flow.example.com', '10.0.0.5']",
        "3 local",
    ]
    assert not (tmp_path / "data" / "secret_key").exists()


def test_env_example_documents_every_variable_the_settings_read():
    settings_source = (PROJECT_DIR / "fastflow_site" / "settings.py").read_text()
    example = (PROJECT_DIR / ".env.example").read_text()
    reader = r"""(?:env_\w+|_read|env\.\w+|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)\""""
    read = set(re.findall(reader, settings_source))
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert read >= {"DATABASE_URL", "SECRET_KEY", "FASTFLOW_ENCRYPTION_KEY", "FASTFLOW_ENV_FILE"}
    undocumented = sorted(read - documented)
    assert not undocumented, (
        f"settings.py reads variables .env.example does not list: {undocumented}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local URL
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_gunicorn_serves_static_files_with_debug_off(tmp_path):
    env = production_env(FASTFLOW_STATIC_ROOT=str(tmp_path / "static"))
    collected = manage(tmp_path, "collectstatic", "--noinput", "-v0", **env)
    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "fastflow_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=PROJECT_DIR,
        env=clean_env(tmp_path, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/static/admin/css/base.css"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, content_type, body = _get(url)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"gunicorn did not come up: {server.stderr.read()}"
                    ) from None
                time.sleep(0.2)
        assert status == 200
        assert content_type.startswith("text/css")
        assert body == (tmp_path / "static" / "admin" / "css" / "base.css").read_bytes()
        missing, _, _ = _get(f"http://127.0.0.1:{port}/static/admin/css/nope.css")
        assert missing == 404
        # The API docs page's Swagger UI is collected and served the same way (no CDN).
        bundle = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
        status, content_type, body = _get(f"http://127.0.0.1:{port}/static/{bundle}")
        assert status == 200
        assert "javascript" in content_type
        assert body == (tmp_path / "static" / bundle).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_value_persisted_meanwhile_by_another_process_wins(tmp_path):
    from fastflow_site import settings as site_settings

    target = tmp_path / "keys" / "secret_key"

    def make() -> str:
        target.parent.mkdir(exist_ok=True)
        target.write_text("written-by-the-other-process")  # it won the race while we generated
        return "ours"

    assert site_settings._persisted_value(target, make) == "written-by-the-other-process"
    assert list(target.parent.iterdir()) == [target]  # no draft left behind


def test_processes_starting_together_on_a_fresh_data_dir_agree_on_the_keys(tmp_path):
    go = tmp_path / "go"
    script = (
        "import pathlib, sys, time\n"
        "go = pathlib.Path(sys.argv[1])\n"
        "while not go.exists():\n"
        "    time.sleep(0.005)\n"
        "import django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "print(settings.SECRET_KEY, settings.FASTFLOW_ENCRYPTION_KEYS[0])\n"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go)],
            cwd=PROJECT_DIR,
            env=clean_env(tmp_path, DEBUG="true"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    outputs = [process.communicate(timeout=120) for process in starts]
    for process, (_, stderr) in zip(starts, outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    assert len({stdout for stdout, _ in outputs}) == 1
    secret_key, encryption_key = outputs[0][0].split()
    assert (tmp_path / "data" / "secret_key").read_text() == secret_key
    assert (tmp_path / "data" / "encryption.key").read_text() == encryption_key


def test_an_empty_runner_image_means_the_default(tmp_path):
    # compose passes variables the operator did not set as "".
    result = run_django(tmp_path, "print(settings.FASTFLOW_RUNNER_IMAGE)", FASTFLOW_RUNNER_IMAGE="")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ghcr.io/astral-sh/uv:python{python_version}-bookworm-slim"


def test_empty_network_variables_mean_their_defaults(tmp_path):
    # compose passes the network variables the operator did not set as "".
    result = run_django(
        tmp_path,
        "print(settings.FASTFLOW_RUNNER_NETWORK, settings.FASTFLOW_RUNNER_NETWORKS_ALLOWED,"
        " repr(settings.FASTFLOW_WARMUP_NETWORK))",
        FASTFLOW_RUNNER_NETWORK="",
        FASTFLOW_RUNNER_NETWORKS_ALLOWED="",
        FASTFLOW_WARMUP_NETWORK="",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bridge ('none', 'bridge') ''"
