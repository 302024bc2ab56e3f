"""The README's first command (`make run` → scripts/quickstart.py), end to end.

It must bring up the web server and the engine together, print a working one-time login link,
run a pipeline triggered from the admin, and stop both processes on Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import write_pipeline

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """Collects a child's combined output without blocking, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.text = ""
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            chunk = os.read(key.fileobj.fileno(), 65536)
            self.text += chunk.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            if self.proc.poll() is not None:
                self.pump(0)
                break
            self.pump(0.2)
        found = re.search(pattern, self.text)
        assert found, f"{pattern!r} not printed within {timeout} s; output:\n{self.text}"
        return found


def quickstart_env(tmp_path: Path, port: int, **overrides: str) -> dict[str, str]:
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, "greet", "import os\nprint('hi', os.environ['WHO'])\n")
    env = {
        **os.environ,
        "FASTFLOW_PORT": str(port),
        "FASTFLOW_EXECUTOR": "local",
        "FASTFLOW_DATA_DIR": str(tmp_path / "data"),
        "FASTFLOW_PIPELINES_DIR": str(pipelines),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'quickstart.sqlite3'}",
        "FASTFLOW_UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    return {k: v for k, v in env.items() if v is not None}


def start_quickstart(env: dict[str, str]) -> tuple[subprocess.Popen, Output]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "quickstart.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, Output(proc)


def run_greet_from_the_admin(output: Output, port: int) -> tuple[dict, str]:
    """Log in with the printed link, Run now with WHO=Ada, follow the run to its end."""
    link = output.wait_for(r"http://localhost:\d+/login-link/\S+", timeout=90).group(0)
    output.wait_for(r"Fast-Flow is running at", timeout=30)
    base = f"http://127.0.0.1:{port}"

    browser = requests.Session()
    landing = browser.get(link.replace("http://localhost", "http://127.0.0.1"), timeout=10)
    assert landing.status_code == 200
    assert landing.url.endswith("/admin/")
    pipelines_page = browser.get(f"{base}/admin/pipelines_app/pipeline/", timeout=10)
    assert "greet" in pipelines_page.text

    form_url = f"{base}/admin/pipelines_app/pipeline/greet/run/"
    form = browser.get(form_url, timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    queued = browser.post(
        form_url,
        data={"csrfmiddlewaretoken": csrf, "run_config_id": "", "parameters": "WHO=Ada"},
        headers={"Referer": form_url},
        timeout=10,
    )
    run_page = re.search(r"/admin/runs_app/pipelinerun/([0-9a-f-]{36})/change/", queued.url)
    assert run_page, queued.url
    log_url = f"{base}/admin/runs_app/pipelinerun/{run_page.group(1)}/log/"

    deadline = time.monotonic() + 90
    state = {}
    while time.monotonic() < deadline:
        output.pump(0)
        state = browser.get(log_url, params={"offset": 0}, timeout=10).json()
        if state.get("status") in {"SUCCESS", "FAILED", "CANCELLED"}:
            break
        time.sleep(0.2)
    return state, run_page.group(1)


def stop_quickstart(proc: subprocess.Popen, output: Output, port: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    output.pump(0)
    assert proc.returncode == 0, output.text
    assert "[fastflow] stopped" in output.text
    # Both children are gone: nothing still answers on the port.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_make_run_starts_web_and_engine_and_a_run_from_the_admin_finishes(tmp_path):
    port = free_port()
    proc, output = start_quickstart(quickstart_env(tmp_path, port))
    try:
        state, _ = run_greet_from_the_admin(output, port)
        assert state.get("status") == "SUCCESS", (state, output.text)
        assert any("hi Ada" in line["text"] for line in state["lines"])
    finally:
        stop_quickstart(proc, output, port)


@pytest.mark.docker
def test_make_run_builds_a_local_runner_when_the_image_cannot_be_pulled(tmp_path, docker_engine):
    """A fresh machine with a working Docker and no registry: runs still execute in Docker."""
    port = free_port()
    env = quickstart_env(
        tmp_path,
        port,
        FASTFLOW_EXECUTOR=None,  # let the quick start choose
        FASTFLOW_RUNNER_IMAGE="registry.fastflow.invalid/runner:python{python_version}",
        FASTFLOW_RUNNER_CA_BUNDLE=None,
    )
    proc, output = start_quickstart(env)
    try:
        output.wait_for(r"runner image registry\.fastflow\.invalid/\S+ cannot be pulled", 60)
        output.wait_for(r"runs use the local runner image fastflow-runner:python3\.11", 300)
        output.wait_for(r"Docker is ready", 30)
        state, run_id = run_greet_from_the_admin(output, port)
        assert state.get("status") == "SUCCESS", (state, output.text)
        assert any("hi Ada" in line["text"] for line in state["lines"])
    finally:
        stop_quickstart(proc, output, port)

    assert "LOCAL executor" not in output.text
    with sqlite3.connect(tmp_path / "quickstart.sqlite3") as db:
        (container_id,) = db.execute(
            "SELECT container_id FROM pipeline_runs WHERE id = ?", [run_id.replace("-", "")]
        ).fetchone()
    assert re.fullmatch(r"[0-9a-f]{64}", container_id), container_id  # a container, not a pid


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "scripts" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("docker_host", "cause"),
    [
        ("unix:///tmp/fastflow-no-docker-here.sock", "there is no Docker socket at /tmp/fastflow"),
        ("tcp://127.0.0.1:{port}", "nothing answers at tcp://127.0.0.1:"),
    ],
    ids=["no-socket", "daemon-down"],
)
def test_without_usable_docker_it_falls_back_to_local_naming_the_cause(
    docker_host, cause, monkeypatch, capsys
):
    monkeypatch.setenv("DOCKER_HOST", docker_host.format(port=free_port()))
    env: dict[str, str] = {}

    load_quickstart().choose_executor(env)

    printed = capsys.readouterr().out
    assert env["FASTFLOW_EXECUTOR"] == "local"
    assert cause in printed
    assert "LOCAL executor" in printed and "Fix Docker" in printed


def test_a_busy_port_is_named_with_the_setting_to_change(capsys):
    quickstart = load_quickstart()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            quickstart.check_port(str(port))

    assert stopped.value.code == 1
    printed = capsys.readouterr().out
    assert f"port {port} is not free" in printed
    assert f"FASTFLOW_PORT={port + 1} make run" in printed


def test_a_malformed_port_is_refused_naming_fastflow_port(capsys):
    with pytest.raises(SystemExit) as stopped:
        load_quickstart().check_port("80a")

    assert stopped.value.code == 2
    assert "FASTFLOW_PORT must be a port number (1-65535), got '80a'" in capsys.readouterr().out


@pytest.mark.docker
def test_the_host_ca_bundle_is_compared_with_the_runner_images_own(tmp_path, docker_engine):
    import docker

    image = "fastflow-runner:python3.11"
    client = docker.from_env(version="auto")
    own = client.containers.run(
        image, ["cat", "/etc/ssl/certs/ca-certificates.crt"], remove=True, network_mode="none"
    )
    same, more = tmp_path / "same.crt", tmp_path / "more.crt"
    same.write_bytes(own)
    more.write_bytes(own + b"-----BEGIN CERTIFICATE-----\nproxy\n-----END CERTIFICATE-----\n")
    quickstart = load_quickstart()

    assert quickstart.image_ca_bundle_differs(client, image, same) is False
    assert quickstart.image_ca_bundle_differs(client, image, more) is True
