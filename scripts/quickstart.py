"""`make run`: prepare the embedded defaults and run the web server and the engine together.

Steps: migrate the database, seed ./pipelines with the examples when it is empty, discover
pipelines, choose the executor (Docker when reachable, otherwise the local executor — said
loudly), make sure an ADMIN exists and print a one-time login link, then supervise
`runserver` and `runscheduler`. Ctrl-C (or SIGTERM) stops both cleanly; if either dies, the
other is stopped too and the exit code says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = [PYTHON, str(ROOT / "manage.py")]
DEFAULT_IMAGE = "ghcr.io/astral-sh/uv:python{python_version}-bookworm-slim"


def say(message: str) -> None:
    print(f"[fastflow] {message}", flush=True)


def manage(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(
        [*MANAGE, *args], env=env, cwd=ROOT, check=True, text=True, capture_output=capture
    )
    return result.stdout if capture else ""


def docker_unusable_reason(env: dict[str, str]) -> str:
    """Why the Docker executor cannot run the quick start here ("" when it can)."""
    try:
        import docker

        client = docker.from_env(version="auto", timeout=5)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"Docker is not reachable ({exc.__class__.__name__})"
    template = env.get("FASTFLOW_RUNNER_IMAGE", DEFAULT_IMAGE)
    image = template.format(python_version=env.get("FASTFLOW_DEFAULT_PYTHON_VERSION", "3.11"))
    if any(image in img.tags for img in client.images.list()):
        return ""
    say(f"pulling the runner image {image} ...")
    try:
        client.images.pull(image)
        return ""
    except Exception as exc:  # noqa: BLE001
        return f"the runner image {image} is not available ({exc.__class__.__name__})"


def seed_pipelines(env: dict[str, str]) -> None:
    target = Path(env.get("FASTFLOW_PIPELINES_DIR") or ROOT / "pipelines")
    if target.exists() and any(p for p in target.iterdir() if not p.name.startswith(".")):
        return
    if "FASTFLOW_PIPELINES_DIR" in env:
        say(f"{target} is empty; add pipeline folders there (see examples/pipelines/)")
        return
    shutil.copytree(ROOT / "examples" / "pipelines", target, dirs_exist_ok=True)
    say(f"copied the example pipelines into {target}")


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local server
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    port = env.get("FASTFLOW_PORT", "8000")
    env.setdefault("FASTFLOW_BASE_URL", f"http://localhost:{port}")

    if "FASTFLOW_EXECUTOR" not in env:
        reason = docker_unusable_reason(env)
        if not reason:
            env["FASTFLOW_EXECUTOR"] = "docker"
            say("Docker is ready: runs execute in locked-down containers.")
        else:
            env["FASTFLOW_EXECUTOR"] = "local"
            say(
                f"{reason}: using the LOCAL executor (runs are subprocesses on this machine, "
                "not isolated). Fix Docker and set FASTFLOW_EXECUTOR=docker for real isolation."
            )

    manage("migrate", "--no-input", "-v", "0", env=env)
    seed_pipelines(env)
    print(manage("syncpipelines", env=env, capture=True), end="", flush=True)

    admin_name = env.get("FASTFLOW_ADMIN_USERNAME", "admin")
    link_output = manage("createadmin", admin_name, env=env, capture=True)

    web = subprocess.Popen(
        [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"], env=env, cwd=ROOT
    )
    engine = subprocess.Popen([*MANAGE, "runscheduler"], env=env, cwd=ROOT)
    children = {"web server": web, "engine": engine}

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    if wait_for_http(f"http://127.0.0.1:{port}/healthz", web):
        print(link_output, end="", flush=True)
        say(f"Fast-Flow is running at http://localhost:{port}/admin/  (Ctrl-C stops it)")

    exit_code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                say(f"the {name} exited with code {proc.returncode}; stopping")
                exit_code = proc.returncode or 1
                stopping = True
        time.sleep(0.3)

    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in children.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    say("stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
