"""The README's first command (`make run` → scripts/quickstart.py), end to end.

It must bring up the web server and the engine together, print a working one-time login link,
run a pipeline triggered from the admin, and stop both processes on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def test_make_run_starts_web_and_engine_and_a_run_from_the_admin_finishes(tmp_path):
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, "greet", "import os\nprint('hi', os.environ['WHO'])\n")
    port = free_port()
    env = {
        **os.environ,
        "FASTFLOW_PORT": str(port),
        "FASTFLOW_EXECUTOR": "local",
        "FASTFLOW_DATA_DIR": str(tmp_path / "data"),
        "FASTFLOW_PIPELINES_DIR": str(pipelines),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'quickstart.sqlite3'}",
        "FASTFLOW_UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "quickstart.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = Output(proc)
    try:
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

        deadline = time.monotonic() + 60
        state = {}
        while time.monotonic() < deadline:
            output.pump(0)
            state = browser.get(log_url, params={"offset": 0}, timeout=10).json()
            if state.get("status") in {"SUCCESS", "FAILED", "CANCELLED"}:
                break
            time.sleep(0.2)
        assert state.get("status") == "SUCCESS", (state, output.text)
        assert "hi Ada" in state["text"]
    finally:
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
